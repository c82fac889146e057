//! What the append benchmarks share: the events, and the hand-written
//! multi-row `INSERT` they are measured against.

use std::fmt::Write as _;

use sourcery_core::store::{EventId, NonEmpty, PersistableEvent};
use sqlx::PgPool;
use sqlx::types::Json;

/// Events per append.
pub(crate) const BATCH: usize = 10;
pub(crate) const KINDS: [&str; 4] = [
    "bench.opened",
    "bench.deposited",
    "bench.withdrawn",
    "bench.closed",
];

pub(crate) fn payload(n: usize) -> Vec<u8> {
    // ~250 bytes of JSON, like the notes' measurements.
    format!("{{\"n\":{n},\"text\":\"{}\"}}", "x".repeat(230)).into_bytes()
}

pub(crate) fn metadata(n: usize) -> serde_json::Value {
    serde_json::json!({ "actor": "bench", "n": n })
}

/// Events `from .. from + count`.
pub(crate) fn events(from: usize, count: usize) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = (from..from + count)
        .map(|n| PersistableEvent {
            id: EventId::new(),
            kind: KINDS[n % KINDS.len()].to_owned(),
            schema_version: 1,
            data: payload(n),
            metadata: metadata(n),
        })
        .collect();
    NonEmpty::from_vec(events).expect("count > 0")
}

/// Creates `<schema>.baseline`, built like the store's table (same columns,
/// indexes and constraints; positions from a column default). The store's
/// tables must exist in `schema`.
pub(crate) async fn create_baseline(pool: &PgPool, schema: &str) {
    for statement in [
        format!("CREATE SEQUENCE {schema}.baseline_position"),
        format!("CREATE TABLE {schema}.baseline (LIKE {schema}.sourcery_events INCLUDING ALL)"),
        format!(
            "ALTER TABLE {schema}.baseline ALTER position SET DEFAULT nextval('{schema}.baseline_position')"
        ),
    ] {
        sqlx::query(&statement)
            .execute(pool)
            .await
            .expect("baseline table");
    }
}

/// The baseline: a batch of events `from .. from + BATCH` as one multi-row
/// `INSERT` into `<schema>.baseline`, in autocommit (one round trip),
/// stream sequence numbers from `sequence`.
pub(crate) async fn insert_by_hand(pool: &PgPool, schema: &str, stream: &str, sequence: i64, from: usize) {
    let mut sql = format!(
        "INSERT INTO {schema}.baseline \
         (aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata, event_id) VALUES "
    );
    for row in 0..BATCH {
        let p = row * 7;
        if row > 0 {
            sql.push_str(", ");
        }
        let _ = write!(
            sql,
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        );
    }
    let mut query = sqlx::query(&sql);
    for (row, n) in (from..from + BATCH).enumerate() {
        query = query
            .bind("bench")
            .bind(stream)
            .bind(sequence + i64::try_from(row).expect("small"))
            .bind(KINDS[n % KINDS.len()])
            .bind(payload(n))
            .bind(Json(metadata(n)))
            // A client-chosen id, as the store's appends send.
            .bind(*EventId::new().as_uuid());
    }
    query.execute(pool).await.expect("baseline insert");
}

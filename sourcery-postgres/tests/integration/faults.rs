//! A writing backend terminated at random points: every batch is all there
//! or absent, and the store (pool, locks, frontier) keeps working.

use crate::support;

use std::time::Duration;

use sourcery_core::store::{AppendError, EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::{Error, Store};

const KIND: &str = "fault.noted";
const COMMITS: u64 = 200;
const BATCH: u64 = 10;

fn batch(commit: u64) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = (0..BATCH)
        .map(|part| PersistableEvent {
            id: EventId::new(),
            kind: KIND.to_owned(),
            // A version per part: the kills must not separate them from
            // their events.
            schema_version: u32::try_from(part + 1).expect("small"),
            // ~250 bytes, like the notes' measurements.
            data: format!("{commit}/{part}/{}", "x".repeat(240)).into_bytes(),
            metadata: serde_json::json!({ "commit": commit, "part": part }),
        })
        .collect();
    NonEmpty::from_vec(events).expect("BATCH > 0")
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_writing_backend_leaves_each_batch_whole_or_absent() {
    if support::database_url().is_none() {
        return;
    }
    let schema = support::fresh_schema_name();
    // The writer's pool has one connection, tagged so the killer finds it.
    let writer_name = format!("writer-{schema}");
    let writer_pool = support::pool(1, &writer_name).await.unwrap();
    let store: Store<String, serde_json::Value> = Store::with_schema(writer_pool, &schema).unwrap();
    store.migrate().await.unwrap();
    let killer = support::pool(1, "sourcery-postgres-killer").await.unwrap();

    let mut random = Random(0x5EED_CAFE_F00D_BEEF);
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for commit in 0..COMMITS {
        // The kill lands at a random point: before, during or after the
        // append's round trip (a delay picks the point; nothing waits on it).
        let delay = Duration::from_micros(random.below(2500));
        let kill = {
            let killer = killer.clone();
            let writer_name = writer_name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                )
                .bind(writer_name)
                .execute(&killer)
                .await
                .expect("the killer's query")
            })
        };
        let stream = format!("batch-{commit}");
        let outcome = support::bounded(
            "an append under fire",
            30,
            store.append_expecting_new("fault", &stream, batch(commit)),
        )
        .await;
        support::bounded("the kill", 30, kill).await.unwrap();
        match outcome {
            Ok(_) => acknowledged.push(commit),
            Err(error) => {
                assert!(!error.is_conflict(), "a new stream cannot conflict: {error:?}");
                failed.push(commit);
            }
        }
    }
    eprintln!(
        "fault test: {} appends acknowledged, {} failed with the backend terminated",
        acknowledged.len(),
        failed.len()
    );
    assert!(
        !failed.is_empty(),
        "some kills must land mid-append to test anything"
    );

    // Read with a fresh pool: every batch is whole or absent.
    let reader: Store<String, serde_json::Value> = Store::with_schema(
        support::pool(2, "sourcery-postgres-reader").await.unwrap(),
        &schema,
    )
    .unwrap();
    let written = whole_batches(&reader, &acknowledged).await;

    // The writer's store works again (its pool reconnects), no lock was
    // left behind, and followers are not held at a hole left by a kill.
    let mut last = None;
    for attempt in 0..3 {
        match store
            .append("fault", &"after".to_owned(), None, batch(COMMITS))
            .await
        {
            Ok(result) => {
                last = Some(result.last_position);
                break;
            }
            // The pool may hand out a connection killed after its last use once.
            Err(AppendError::Store(Error::Database(_))) if attempt < 2 => {}
            Err(error) => panic!("the store does not recover: {error}"),
        }
    }
    let last = last.expect("an append after the faults");
    let everything = reader.load_events(&[EventFilter::for_event(KIND)]).await.unwrap();
    assert_eq!(everything.len(), usize::try_from((written + 1) * BATCH).unwrap());
    assert_eq!(reader.safe_position().await.unwrap(), Some(last));
}

/// Checks every batch is whole or absent, and every acknowledged one whole;
/// returns how many are there.
async fn whole_batches(reader: &Store<String, serde_json::Value>, acknowledged: &[u64]) -> u64 {
    let mut written = 0;
    for commit in 0..COMMITS {
        let events = reader
            .load_events(&[EventFilter::for_aggregate(
                KIND,
                "fault",
                format!("batch-{commit}"),
            )])
            .await
            .unwrap();
        let count = u64::try_from(events.len()).unwrap();
        assert!(
            count == 0 || count == BATCH,
            "batch {commit} is torn: {count} events"
        );
        if acknowledged.contains(&commit) {
            assert_eq!(count, BATCH, "acknowledged batch {commit} is missing");
        }
        if count == BATCH {
            written += 1;
            let parts: Vec<u64> = events
                .iter()
                .map(|e| e.metadata["part"].as_u64().unwrap())
                .collect();
            assert_eq!(parts, (0..BATCH).collect::<Vec<_>>());
            let versions: Vec<u64> = events.iter().map(|e| u64::from(e.schema_version)).collect();
            assert_eq!(
                versions,
                (1..=BATCH).collect::<Vec<_>>(),
                "batch {commit}: each event keeps its schema version"
            );
        }
    }
    written
}

/// An append that fails inside its critical section (here: the position
/// sequence runs out after the order lock was taken) must not leave the lock
/// held on a pooled connection: appends through other connections would
/// then wait for it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_failing_inside_its_critical_section_does_not_keep_the_order_lock() {
    let Some(store) = support::store_with::<String, serde_json::Value>(1).await else {
        return;
    };
    let first = store
        .append("fault", &"a".to_owned(), None, batch(0))
        .await
        .expect("a first append");
    let sequence = format!("\"{}\".sourcery_positions", store.schema());
    sqlx::query(&format!(
        "ALTER SEQUENCE {sequence} MAXVALUE {}",
        first.last_position + 5
    ))
    .execute(store.pool())
    .await
    .unwrap();

    // Ten positions are needed, five are left: nextval fails after the lock.
    let failed = store.append("fault", &"b".to_owned(), None, batch(1)).await;
    assert!(
        matches!(failed, Err(AppendError::Store(Error::Database(_)))),
        "{failed:?}"
    );
    sqlx::query(&format!("ALTER SEQUENCE {sequence} NO MAXVALUE"))
        .execute(store.pool())
        .await
        .unwrap();

    // Another pool, another session: it would block on a leaked lock.
    let other_pool = support::pool(1, "sourcery-postgres-other").await.unwrap();
    let other: Store<String, serde_json::Value> = Store::with_schema(other_pool, store.schema()).unwrap();
    support::bounded(
        "an append from another session",
        10,
        other.append("fault", &"c".to_owned(), None, batch(2)),
    )
    .await
    .expect("the other session appends");
    support::bounded(
        "an append on the failed append's pool",
        10,
        store.append("fault", &"b".to_owned(), None, batch(1)),
    )
    .await
    .expect("the store appends again");
    let events = store.load_events(&[EventFilter::for_event(KIND)]).await.unwrap();
    assert_eq!(
        events.len(),
        3 * usize::try_from(BATCH).unwrap(),
        "the failed batch left nothing"
    );
}

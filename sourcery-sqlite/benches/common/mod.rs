//! What the SQLite benchmarks share: the events, the store and the
//! hand-written rusqlite side they are measured against.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sourcery_core::store::{EventId, EventStore, NonEmpty, PersistableEvent, StoredEvent};
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

pub(crate) const BATCH: usize = 10;
pub(crate) const STREAMS: usize = 100;
pub(crate) const LOADED: usize = 10_000;
pub(crate) const AGGREGATE: &str = "account";
pub(crate) const KINDS: [&str; 2] = ["account.deposited", "account.withdrawn"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) correlation_id: String,
    pub(crate) actor: String,
}

pub(crate) type BenchStore = Store<String, Meta>;
pub(crate) type Event = StoredEvent<String, i64, Meta>;

pub(crate) fn payload(n: usize) -> Vec<u8> {
    let mut data = format!("{{\"n\":{n},\"note\":\"").into_bytes();
    data.resize(240, b'x');
    data.extend_from_slice(b"\"}");
    data
}

pub(crate) fn batch(start: usize) -> Vec<PersistableEvent<Meta>> {
    (start..start + BATCH)
        .map(|n| PersistableEvent {
            id: EventId::new(),
            kind: KINDS[n % 2].to_owned(),
            schema_version: 1,
            data: payload(n),
            metadata: Meta {
                correlation_id: format!("corr-{:08}", n / BATCH),
                actor: "bench-user".to_owned(),
            },
        })
        .collect()
}

/// The same events under fresh ids: a batch appended again with its ids
/// would be a replay (and the baseline's insert would fail on the id index).
pub(crate) fn renewed(events: &[PersistableEvent<Meta>]) -> Vec<PersistableEvent<Meta>> {
    events
        .iter()
        .map(|event| event.clone().with_id(EventId::new()))
        .collect()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a Tokio runtime: {error}"),
    }
}

pub(crate) fn name(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Normal => "normal",
        _ => "full",
    }
}

pub(crate) fn open(runtime: &tokio::runtime::Runtime, path: &Path, synchronous: Synchronous) -> BenchStore {
    match runtime.block_on(OpenOptions::new().synchronous(synchronous).open(path)) {
        Ok(store) => store,
        Err(error) => panic!("cannot open the store: {error}"),
    }
}

/// The hand-written side: a connection on the store's schema (created by
/// opening a store there), WAL, the same durability.
pub(crate) fn baseline_connection(
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    synchronous: Synchronous,
) -> Connection {
    drop(open(runtime, path, synchronous));
    let connection = Connection::open(path).unwrap_or_else(|error| panic!("baseline: {error}"));
    connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .unwrap_or_else(|error| panic!("baseline: {error}"));
    connection
        .pragma_update(None, "synchronous", name(synchronous))
        .unwrap_or_else(|error| panic!("baseline: {error}"));
    connection
}

pub(crate) const INSERT: &str = "INSERT INTO sourcery_events \
                      (aggregate_kind, aggregate_id, event_kind, schema_version, data, metadata, event_id) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub(crate) fn baseline_append(
    connection: &mut Connection,
    stream: &str,
    events: &[PersistableEvent<Meta>],
) -> i64 {
    let mut run = || -> rusqlite::Result<i64> {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for event in events {
                let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
                insert.execute((
                    AGGREGATE,
                    stream,
                    event.kind.as_str(),
                    event.schema_version,
                    event.data.as_slice(),
                    metadata.as_str(),
                    event.id.as_bytes(),
                ))?;
            }
        }
        let last = transaction.last_insert_rowid();
        transaction.commit()?;
        Ok(last)
    };
    run().unwrap_or_else(|error| panic!("baseline append: {error}"))
}

pub(crate) const SELECT: &str = "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata, \
                      schema_version, event_id FROM sourcery_events \
                      WHERE aggregate_kind = ?1 AND aggregate_id = ?2 AND event_kind IN (?3, ?4) \
                      ORDER BY position";

pub(crate) fn baseline_load(connection: &Connection, stream: &str) -> Vec<Event> {
    let run = || -> rusqlite::Result<Vec<Event>> {
        let mut statement = connection.prepare_cached(SELECT)?;
        let rows = statement.query_map((AGGREGATE, stream, KINDS[0], KINDS[1]), |row| {
            let metadata: String = row.get(5)?;
            Ok(StoredEvent {
                id: EventId::from_bytes(row.get(7)?),
                position: row.get(0)?,
                aggregate_kind: row.get(1)?,
                aggregate_id: row.get(2)?,
                kind: row.get(3)?,
                schema_version: row.get(6)?,
                data: row.get(4)?,
                metadata: serde_json::from_str(&metadata)
                    .unwrap_or_else(|error| panic!("baseline metadata: {error}")),
            })
        })?;
        rows.collect()
    };
    run().unwrap_or_else(|error| panic!("baseline load: {error}"))
}

/// Writes the loaded stream (`LOADED` events in batches of 10) interleaved
/// with another stream's batches.
pub(crate) fn fill(runtime: &tokio::runtime::Runtime, store: &BenchStore) {
    runtime.block_on(async {
        for n in 0..LOADED / BATCH {
            for stream in ["loaded", "other"] {
                let Some(events) = NonEmpty::from_vec(batch(n * BATCH)) else {
                    unreachable!("a batch holds 10 events")
                };
                if let Err(error) = store.append(AGGREGATE, &stream.to_owned(), None, events).await {
                    panic!("filling: {error}");
                }
            }
        }
    });
}

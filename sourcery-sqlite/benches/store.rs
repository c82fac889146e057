//! The SQLite store beside hand-written rusqlite code doing the same work,
//! at both durability levels (`synchronous=FULL` and `NORMAL`), in WAL mode.
//!
//! - `append`: one batch of 10 events (~250-byte payloads, JSON metadata)
//!   per iteration, onto one of 100 streams. The store appends unchecked
//!   (`append(.., None, ..)`) and optimistically (`Some(version)`, which adds
//!   the version read); the baseline runs `BEGIN IMMEDIATE`, 10 cached
//!   `INSERT`s and `COMMIT` on its own connection, serialising the metadata
//!   as the store does.
//! - `load`: one stream of 10,000 events (written in batches of 10,
//!   interleaved with another stream's) into `StoredEvent`s, metadata
//!   decoded; the baseline runs the same `SELECT` with a cached statement
//!   and builds the same values.
//!
//! Both sides use the store's schema and each its own file. Compare times
//! within one run (run to run, figures on one machine vary by up to 20%).
//! Run with `cargo bench -p sourcery-sqlite --bench store`.

#![expect(missing_docs, reason = "criterion's macros write undocumented functions")]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sourcery_core::store::{EventFilter, EventStore, NonEmpty, PersistableEvent, StoredEvent};
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

const BATCH: usize = 10;
const STREAMS: usize = 100;
const LOADED: usize = 10_000;
const AGGREGATE: &str = "account";
const KINDS: [&str; 2] = ["account.deposited", "account.withdrawn"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    correlation_id: String,
    actor: String,
}

type BenchStore = Store<String, Meta>;
type Event = StoredEvent<String, i64, Meta>;

fn payload(n: usize) -> Vec<u8> {
    let mut data = format!("{{\"n\":{n},\"note\":\"").into_bytes();
    data.resize(240, b'x');
    data.extend_from_slice(b"\"}");
    data
}

fn batch(start: usize) -> Vec<PersistableEvent<Meta>> {
    (start..start + BATCH)
        .map(|n| PersistableEvent {
            kind: KINDS[n % 2].to_owned(),
            data: payload(n),
            metadata: Meta {
                correlation_id: format!("corr-{:08}", n / BATCH),
                actor: "bench-user".to_owned(),
            },
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a Tokio runtime: {error}"),
    }
}

fn name(synchronous: Synchronous) -> &'static str {
    match synchronous {
        Synchronous::Normal => "normal",
        _ => "full",
    }
}

fn open(runtime: &tokio::runtime::Runtime, path: &Path, synchronous: Synchronous) -> BenchStore {
    match runtime.block_on(OpenOptions::new().synchronous(synchronous).open(path)) {
        Ok(store) => store,
        Err(error) => panic!("cannot open the store: {error}"),
    }
}

/// The hand-written side: a connection on the store's schema (created by
/// opening a store there), WAL, the same durability.
fn baseline_connection(
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

const INSERT: &str = "INSERT INTO sourcery_events (aggregate_kind, aggregate_id, event_kind, data, metadata) \
                      VALUES (?1, ?2, ?3, ?4, ?5)";

fn baseline_append(connection: &mut Connection, stream: &str, events: &[PersistableEvent<Meta>]) -> i64 {
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
                    event.data.as_slice(),
                    metadata.as_str(),
                ))?;
            }
        }
        let last = transaction.last_insert_rowid();
        transaction.commit()?;
        Ok(last)
    };
    run().unwrap_or_else(|error| panic!("baseline append: {error}"))
}

const SELECT: &str = "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata \
                      FROM sourcery_events \
                      WHERE aggregate_kind = ?1 AND aggregate_id = ?2 AND event_kind IN (?3, ?4) \
                      ORDER BY position";

fn baseline_load(connection: &Connection, stream: &str) -> Vec<Event> {
    let run = || -> rusqlite::Result<Vec<Event>> {
        let mut statement = connection.prepare_cached(SELECT)?;
        let rows = statement.query_map((AGGREGATE, stream, KINDS[0], KINDS[1]), |row| {
            let metadata: String = row.get(5)?;
            Ok(StoredEvent {
                position: row.get(0)?,
                aggregate_kind: row.get(1)?,
                aggregate_id: row.get(2)?,
                kind: row.get(3)?,
                data: row.get(4)?,
                metadata: serde_json::from_str(&metadata)
                    .unwrap_or_else(|error| panic!("baseline metadata: {error}")),
            })
        })?;
        rows.collect()
    };
    run().unwrap_or_else(|error| panic!("baseline load: {error}"))
}

fn append(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let mut group = c.benchmark_group("append 10-event batch");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let level = name(synchronous);
        let events = batch(0);

        let store = open(
            &runtime,
            &dir.path().join(format!("append-store-{level}.db")),
            synchronous,
        );
        let mut n = 0;
        group.bench_function(format!("{level}/store"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    (format!("stream-{}", n % STREAMS), events.clone())
                },
                |(stream, events)| {
                    let Some(events) = NonEmpty::from_vec(events) else {
                        unreachable!("a batch holds 10 events")
                    };
                    runtime
                        .block_on(store.append(AGGREGATE, &stream, None, events))
                        .unwrap_or_else(|error| panic!("store append: {error}"))
                },
                BatchSize::SmallInput,
            );
        });

        let optimistic = open(
            &runtime,
            &dir.path().join(format!("append-opt-{level}.db")),
            synchronous,
        );
        let mut versions: Vec<Option<i64>> = vec![None; STREAMS];
        let mut n = 0;
        group.bench_function(format!("{level}/store optimistic"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    (n % STREAMS, events.clone())
                },
                |(slot, events)| {
                    let Some(events) = NonEmpty::from_vec(events) else {
                        unreachable!("a batch holds 10 events")
                    };
                    let stream = format!("stream-{slot}");
                    let written = runtime.block_on(async {
                        match versions[slot] {
                            Some(version) => {
                                optimistic.append(AGGREGATE, &stream, Some(version), events).await
                            }
                            None => optimistic.append_expecting_new(AGGREGATE, &stream, events).await,
                        }
                    });
                    let written = written.unwrap_or_else(|error| panic!("store append: {error}"));
                    versions[slot] = Some(written.last_position);
                },
                BatchSize::SmallInput,
            );
        });

        let mut connection = baseline_connection(
            &runtime,
            &dir.path().join(format!("append-baseline-{level}.db")),
            synchronous,
        );
        let mut n = 0;
        group.bench_function(format!("{level}/baseline rusqlite"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    (format!("stream-{}", n % STREAMS), events.clone())
                },
                |(stream, events)| baseline_append(&mut connection, &stream, &events),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Writes the loaded stream (`LOADED` events in batches of 10) interleaved
/// with another stream's batches.
fn fill(runtime: &tokio::runtime::Runtime, store: &BenchStore) {
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

fn load(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let mut group = c.benchmark_group("load one stream of 10000 events");
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let stream = "loaded".to_owned();
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let level = name(synchronous);
        let path = dir.path().join(format!("load-{level}.db"));
        let store = open(&runtime, &path, synchronous);
        fill(&runtime, &store);
        let filters: Vec<EventFilter<String, i64>> = KINDS
            .iter()
            .map(|kind| EventFilter::for_aggregate(*kind, AGGREGATE, stream.clone()))
            .collect();
        group.bench_function(format!("{level}/store"), |b| {
            b.iter(|| {
                let events = runtime
                    .block_on(store.load_events(&filters))
                    .unwrap_or_else(|error| panic!("store load: {error}"));
                assert_eq!(events.len(), LOADED);
                black_box(events)
            });
        });

        let connection = baseline_connection(&runtime, &path, synchronous);
        group.bench_function(format!("{level}/baseline rusqlite"), |b| {
            b.iter(|| {
                let events = baseline_load(&connection, &stream);
                assert_eq!(events.len(), LOADED);
                black_box(events)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, load);
criterion_main!(benches);

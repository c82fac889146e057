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
//!   decoded, through the stream's two event kinds and through the whole
//!   stream (`for_stream`, a repository's load); the baseline runs the
//!   kinds' `SELECT` with a cached statement and builds the same values.
//!
//! Both sides use the store's schema and each its own file. Compare times
//! within one run (run to run, figures on one machine vary by up to 20%).
//! Run with `cargo bench -p sourcery-es-sqlite --bench store`.

#![expect(missing_docs, reason = "criterion's macros write undocumented functions")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sourcery_core::store::{EventFilter, EventStore, NonEmpty};
use sourcery_sqlite::Synchronous;

mod common;

use common::{
    AGGREGATE, KINDS, LOADED, STREAMS, baseline_append, baseline_connection, baseline_load, batch, fill,
    name, open, renewed, runtime,
};

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
                    (format!("stream-{}", n % STREAMS), renewed(&events))
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
                    (n % STREAMS, renewed(&events))
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
                    (format!("stream-{}", n % STREAMS), renewed(&events))
                },
                |(stream, events)| baseline_append(&mut connection, &stream, &events),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
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
        let whole = [EventFilter::for_stream(AGGREGATE, stream.clone())];
        group.bench_function(format!("{level}/store, whole stream"), |b| {
            b.iter(|| {
                let events = runtime
                    .block_on(store.load_events(&whole))
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

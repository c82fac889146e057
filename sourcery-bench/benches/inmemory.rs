//! In-memory store throughput beside a plain `Vec` doing the same copying.
//!
//! - `append`: 1,000 batches of 10 events (~250-byte payloads) into a fresh
//!   store, against pushing the same bytes into a `Vec`.
//! - `load`: one stream of 10,000 events (interleaved with another stream's
//!   10,000), against cloning a `Vec` of the same events.
//!
//! Run with `cargo bench -p sourcery-bench --bench inmemory`.

#![expect(missing_docs, reason = "criterion's macros write undocumented functions")]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sourcery::store::{EventFilter, EventStore, NonEmpty, PersistableEvent, StoredEvent, inmemory};

const BATCHES: usize = 1_000;
const BATCH: usize = 10;
const STREAM: usize = 10_000;

fn payload(n: usize) -> Vec<u8> {
    let mut data = format!("{{\"n\":{n},\"note\":\"").into_bytes();
    data.resize(240, b'x');
    data.extend_from_slice(b"\"}");
    data
}

fn batch(start: usize) -> Vec<PersistableEvent<()>> {
    (start..start + BATCH)
        .map(|n| PersistableEvent::new("bench.happened", payload(n), ()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a Tokio runtime: {error}"),
    }
}

fn append(c: &mut Criterion) {
    let runtime = runtime();
    let batches: Vec<Vec<PersistableEvent<()>>> = (0..BATCHES).map(|b| batch(b * BATCH)).collect();
    let mut group = c.benchmark_group("append 1000 x 10-event batches");
    group.throughput(Throughput::Elements(
        u64::try_from(BATCHES * BATCH).unwrap_or(u64::MAX),
    ));

    group.bench_function("inmemory::Store", |b| {
        b.iter_batched(
            || (inmemory::Store::<String, ()>::new(), batches.clone()),
            |(store, batches)| {
                runtime.block_on(async {
                    for (n, events) in batches.into_iter().enumerate() {
                        let id = format!("stream-{}", n % 100);
                        let Some(events) = NonEmpty::from_vec(events) else {
                            continue;
                        };
                        let written = store.append("bench", &id, None, events).await;
                        black_box(written.is_ok());
                    }
                });
                store
            },
            BatchSize::PerIteration,
        );
    });

    group.bench_function("Vec baseline", |b| {
        b.iter_batched(
            || (Vec::new(), batches.clone()),
            |(mut log, batches): (Vec<StoredEvent<String, u64, ()>>, _)| {
                for (n, events) in batches.into_iter().enumerate() {
                    let id = format!("stream-{}", n % 100);
                    for event in events {
                        let position = u64::try_from(log.len()).unwrap_or(u64::MAX) + 1;
                        log.push(StoredEvent {
                            id: event.id,
                            aggregate_kind: "bench".to_owned(),
                            aggregate_id: id.clone(),
                            kind: event.kind,
                            position,
                            schema_version: event.schema_version,
                            data: event.data,
                            metadata: event.metadata,
                        });
                    }
                }
                log
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let runtime = runtime();
    let store = inmemory::Store::<String, ()>::new();
    runtime.block_on(async {
        for b in 0..STREAM / BATCH {
            for id in ["wanted", "other"] {
                let Some(events) = NonEmpty::from_vec(batch(b * BATCH)) else {
                    continue;
                };
                let written = store.append("bench", &id.to_owned(), None, events).await;
                assert!(written.is_ok());
            }
        }
    });
    let filters = [EventFilter::for_aggregate(
        "bench.happened",
        "bench",
        "wanted".to_owned(),
    )];
    let baseline: Vec<StoredEvent<String, u64, ()>> =
        runtime.block_on(store.load_events(&filters)).unwrap_or_default();
    assert_eq!(baseline.len(), STREAM);

    let mut group = c.benchmark_group("load one stream of 10000 events");
    group.throughput(Throughput::Elements(u64::try_from(STREAM).unwrap_or(u64::MAX)));
    group.bench_function("inmemory::Store", |b| {
        b.iter(|| black_box(runtime.block_on(store.load_events(&filters))));
    });
    group.bench_function("Vec baseline", |b| b.iter(|| black_box(baseline.clone())));
    group.finish();
}

criterion_group!(benches, append, load);
criterion_main!(benches);

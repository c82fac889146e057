//! Loading an aggregate after 1k, 10k and 100k events, with and without a
//! snapshot: with one (taken 10 events before the end), a load reads the
//! snapshot row and the 10 events after it, so its time should not grow with
//! the history; without, it replays every event.
//!
//! Each history is one stream in its own file (`synchronous=FULL`, the
//! default), written in batches of 1,000 events. The snapshot is saved
//! through the store's [`SnapshotStore`](sourcery_sqlite::SnapshotStore) as
//! the repository would have taken it; both variants load through a
//! [`Repository`] (`load_versioned`), and each checks once what it replayed.
//! Run with `cargo bench -p sourcery-es-sqlite --bench snapshots`.

#![expect(missing_docs, reason = "criterion's macros write undocumented functions")]

#[path = "../tests/support/counter.rs"]
mod counter;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sourcery_core::aggregate::Aggregate;
use sourcery_core::codec::Codec;
use sourcery_core::event::EventPayload;
use sourcery_core::repository::Repository;
use sourcery_core::snapshot::{Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore as _};
use sourcery_core::store::{EventStore, NonEmpty, PersistableEvent};
use sourcery_sqlite::Store;

use counter::{Added, Counter, CounterEvent};

const HISTORIES: [usize; 3] = [1_000, 10_000, 100_000];
const BATCH: usize = 1_000;
/// Events after the snapshot.
const TAIL: usize = 10;
const ID: &str = "counter-1";

type BenchStore = Store<String, ()>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime")
}

fn amount(n: usize) -> u64 {
    u64::try_from(n % 97).expect("small")
}

/// Writes `events` events to the counter's stream, then a snapshot of the
/// state after all but the last `TAIL`.
async fn fill(store: &BenchStore, events: usize) {
    let id = ID.to_owned();
    let mut state = Counter::default();
    let mut snapshot_position = None;
    for start in (0..events).step_by(BATCH) {
        let mut batch = Vec::with_capacity(BATCH);
        for n in start..(start + BATCH).min(events) {
            let event = CounterEvent(Added { amount: amount(n) });
            batch.push(PersistableEvent::new(
                event.kind(),
                event.encode_with(store.codec()).expect("the event encodes"),
                (),
            ));
            if n < events - TAIL {
                state.apply(&event);
            }
        }
        let batch = NonEmpty::try_from(batch).expect("a batch is not empty");
        let written = store
            .append(Counter::KIND, &id, None, batch)
            .await
            .expect("the batch is written");
        if snapshot_position.is_none() && start + BATCH >= events - TAIL {
            // The snapshot is at the event `events - TAIL`, in this batch.
            let behind = i64::try_from(start + BATCH.min(events - start) - (events - TAIL)).expect("small");
            snapshot_position = Some(written.last_position - behind);
        }
    }
    let key = SnapshotKey::for_aggregate::<Counter>(&id).expect("the key");
    let snapshot = Snapshot {
        position: snapshot_position.expect("a snapshot position"),
        schema_version: Counter::SNAPSHOT_VERSION,
        data: store.codec().encode(&state).expect("the state encodes"),
    };
    store
        .snapshots(SnapshotPolicy::Never)
        .save(&key, snapshot)
        .await
        .expect("the snapshot saves");
}

fn load(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut group = c.benchmark_group("load_aggregate");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for events in HISTORIES {
        let store: BenchStore = runtime
            .block_on(Store::open(dir.path().join(format!("history-{events}.db"))))
            .expect("the store opens");
        runtime.block_on(fill(&store, events));
        let id = ID.to_owned();
        let plain = Repository::new(store.clone());
        let snapshotting =
            Repository::new(store.clone()).with_snapshots(store.snapshots(SnapshotPolicy::Never));

        let full = runtime
            .block_on(plain.load_versioned::<Counter>(&id))
            .expect("the counter loads");
        let resumed = runtime
            .block_on(snapshotting.load_versioned::<Counter>(&id))
            .expect("the counter loads");
        assert_eq!(full.replayed, events);
        assert_eq!(resumed.replayed, TAIL, "{:?}", resumed.warnings);
        assert_eq!(resumed.state, full.state);

        group.bench_with_input(BenchmarkId::new("without_snapshot", events), &events, |b, _| {
            b.iter(|| {
                let loaded = runtime
                    .block_on(plain.load_versioned::<Counter>(&id))
                    .expect("the counter loads");
                black_box(loaded.state)
            });
        });
        group.bench_with_input(BenchmarkId::new("with_snapshot", events), &events, |b, _| {
            b.iter(|| {
                let loaded = runtime
                    .block_on(snapshotting.load_versioned::<Counter>(&id))
                    .expect("the counter loads");
                black_box(loaded.state)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);

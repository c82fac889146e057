//! The SQLite snapshot store keeps the snapshot store rules, snapshot plus
//! tail equals a full replay over the SQLite event store (property test),
//! and a repository with SQLite snapshots loads a snapshot and only the
//! events after it.

#[path = "../support/counter.rs"]
mod counter;

use std::num::NonZeroU64;
use std::sync::LazyLock;

use proptest::prelude::*;
use sourcery_core::repository::Repository;
use sourcery_core::snapshot::{Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore as _, conformance};
use sourcery_core::store::EventStore;
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

use counter::{Add, Counter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_survive_reopening() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("snapshots.db");
    let key = SnapshotKey::aggregate("account", SnapshotKey::id_text("a").expect("the id serialises"));
    let taken = Snapshot {
        position: 12,
        schema_version: 3,
        data: b"state".to_vec(),
    };
    {
        let store: Store<String, ()> = Store::open(&path).await.expect("the store opens");
        store
            .snapshots(SnapshotPolicy::Never)
            .save(&key, taken.clone())
            .await
            .expect("the snapshot saves");
    }
    let store: Store<String, ()> = Store::open(&path).await.expect("the store reopens");
    let snapshots = store.snapshots(SnapshotPolicy::Always);
    assert_eq!(snapshots.policy(), SnapshotPolicy::Always);
    assert_eq!(
        snapshots.load(&key).await.expect("the snapshot loads"),
        Some(taken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_loads_the_snapshot_and_the_tail() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Store<String, ()> = Store::open(dir.path().join("repository.db"))
        .await
        .expect("the store opens");
    let every_10 = SnapshotPolicy::EveryNEvents(NonZeroU64::new(10).expect("not zero"));
    let repository = Repository::new(store.clone()).with_snapshots(store.snapshots(every_10));
    let plain = Repository::new(store.clone());
    let id = "c-1".to_owned();
    let add = |times| Add { amount: 2, times };

    repository
        .create::<Counter, _>(&id, &add(4), ())
        .await
        .expect("the counter is created");
    let mut last = None;
    for _ in 0..3 {
        // 4 + 3 × 3 = 13 events; the snapshot is due once 10 were applied
        // since the start (after the third command, at event 10).
        let outcome = repository
            .execute::<Counter, _>(&id, &add(3), ())
            .await
            .expect("the command runs");
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        last = outcome.last_position;
    }
    let loaded = repository
        .load_versioned::<Counter>(&id)
        .await
        .expect("the counter loads");
    let full = plain
        .load_versioned::<Counter>(&id)
        .await
        .expect("the counter replays");
    assert_eq!(loaded.state, full.state);
    assert_eq!(loaded.state.events, 13);
    assert_eq!(loaded.version, last);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let snapshot_position = loaded.snapshot_position.expect("a snapshot was taken and used");
    assert_eq!(full.replayed, 13);
    assert_eq!(
        loaded.replayed, 3,
        "only the events after the snapshot at {snapshot_position}"
    );
    let stream_version = store
        .stream_version(<Counter as sourcery_core::aggregate::Aggregate>::KIND, &id)
        .await
        .expect("the version reads");
    assert_eq!(stream_version, last);
}

fn step() -> impl Strategy<Value = conformance::Step> {
    (any::<u32>(), 0_u8..4, any::<bool>(), any::<bool>()).prop_map(|(amount, events, snapshot, unchecked)| {
        conformance::Step {
            amount,
            events,
            snapshot,
            unchecked,
        }
    })
}

/// One event store and one snapshot store in a file for every case (each
/// case writes its own aggregate, so they also show that runs stay apart).
/// The store's threads outlive the runtime that opened it.
static STORES: LazyLock<(tempfile::TempDir, Store<String, serde_json::Value>)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let store = runtime
        .block_on(
            OpenOptions::new()
                .synchronous(Synchronous::Normal)
                .open(dir.path().join("law.db")),
        )
        .expect("the store opens");
    (dir, store)
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replay_equals_snapshot_plus_tail(steps in proptest::collection::vec(step(), 0..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let store = &STORES.1;
        let result = runtime.block_on(conformance::replay_equals_snapshot_plus_tail(
            store,
            &store.snapshots(SnapshotPolicy::Never),
            &steps,
            serde_json::json!({ "case": steps.len() }),
        ));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

//! A file written at an older schema version migrates forward when the store
//! opens it: its events stay, and the new tables work.

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::concurrency::Optimistic;
use sourcery_core::event::DomainEvent;
use sourcery_core::snapshot::{SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore as _};
use sourcery_core::store::{EventFilter, EventStore, PersistableEvent};
use sourcery_sqlite::{SCHEMA_VERSION, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "account.deposited";
}

/// A file as `sourcery-sqlite` at schema version 1 left it: the events
/// table, one event, and the migrations table recording version 1.
fn version_1_file(path: &std::path::Path) {
    let connection = rusqlite::Connection::open(path).expect("the database opens");
    connection
        .execute_batch(include_str!("../../migrations/0001_events.sql"))
        .expect("migration 1 applies");
    connection
        .execute_batch(
            "CREATE TABLE sourcery_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            ) STRICT;
            INSERT INTO sourcery_migrations (version, description) VALUES (1, 'events');
            INSERT INTO sourcery_events (aggregate_kind, aggregate_id, event_kind, data, metadata)
                VALUES ('account', 'ACC-1', 'account.deposited', CAST('{\"amount\":5}' AS BLOB), 'null');",
        )
        .expect("version 1 is recorded");
}

fn recorded_versions(path: &std::path::Path) -> Vec<i64> {
    let connection = rusqlite::Connection::open(path).expect("the database opens");
    let mut statement = connection
        .prepare("SELECT version FROM sourcery_migrations ORDER BY version")
        .expect("the query prepares");
    statement
        .query_map([], |row| row.get(0))
        .expect("the query runs")
        .collect::<Result<_, _>>()
        .expect("the versions read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_migrates_forward() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("old.db");
    version_1_file(&path);
    assert_eq!(recorded_versions(&path), [1]);

    let store: Store<String, ()> = Store::open(&path).await.expect("the old file opens");
    assert_eq!(recorded_versions(&path), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(SCHEMA_VERSION, 4);

    // The old event is there and the stream goes on.
    let id = "ACC-1".to_owned();
    let events = store
        .load_events(&[EventFilter::for_aggregate(Deposited::KIND, "account", id.clone())])
        .await
        .expect("the events load");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].schema_version, 1,
        "an event written before schema versions reads as version 1"
    );
    assert_eq!(
        events[0]
            .decode::<Deposited>(store.codec())
            .expect("the event decodes"),
        Deposited { amount: 5 }
    );
    let mut tx = store.begin::<Optimistic>("account", id, Some(events[0].position));
    tx.append(Deposited { amount: 7 }, ()).expect("the event encodes");
    let written = tx
        .commit()
        .await
        .expect("the append succeeds")
        .expect("one event was written");

    // The new tables work.
    store
        .checkpoints()
        .save("totals", written.last_position)
        .await
        .expect("a checkpoint saves");
    assert_eq!(
        store
            .checkpoints()
            .load("totals")
            .await
            .expect("the checkpoint loads"),
        Some(written.last_position)
    );
    let key = SnapshotKey::aggregate("account", "\"ACC-1\"");
    let snapshot = Snapshot {
        position: written.last_position,
        schema_version: 1,
        data: b"{}".to_vec(),
    };
    let snapshots = store.snapshots(SnapshotPolicy::Never);
    assert_eq!(
        snapshots
            .save(&key, snapshot.clone())
            .await
            .expect("a snapshot saves"),
        SaveOutcome::Saved
    );
    assert_eq!(
        snapshots.load(&key).await.expect("the snapshot loads"),
        Some(snapshot)
    );
    drop((store, snapshots));

    // Opening again changes nothing.
    let store: Store<String, ()> = Store::open(&path).await.expect("the migrated file opens");
    drop(store);
    assert_eq!(recorded_versions(&path), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_file_migrates_forward() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("v2.db");
    version_1_file(&path);
    {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        connection
            .execute_batch(include_str!("../../migrations/0002_checkpoints.sql"))
            .expect("migration 2 applies");
        connection
            .execute_batch(
                "INSERT INTO sourcery_migrations (version, description) VALUES (2, 'checkpoints');
                 INSERT INTO sourcery_checkpoints (name, position) VALUES ('totals', 1);",
            )
            .expect("version 2 is recorded");
    }
    let store: Store<String, ()> = Store::open(&path).await.expect("the old file opens");
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4]);
    assert_eq!(
        store
            .checkpoints()
            .load("totals")
            .await
            .expect("the checkpoint loads"),
        Some(1)
    );
    let key = SnapshotKey::projection("totals");
    assert_eq!(
        store
            .snapshots(SnapshotPolicy::Never)
            .load(&key)
            .await
            .expect("the snapshots table exists"),
        None
    );
}

/// A file as `sourcery-sqlite` at schema version 3 (before event schema
/// versions) left it, with events of two kinds in one stream, migrates
/// forward: the old events read back whole at schema version 1 through a
/// whole-stream load, and new events keep their schema versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_file_migrates_forward_and_its_events_read_as_version_1() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("v3.db");
    version_1_file(&path);
    {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        connection
            .execute_batch(include_str!("../../migrations/0002_checkpoints.sql"))
            .expect("migration 2 applies");
        connection
            .execute_batch(include_str!("../../migrations/0003_snapshots.sql"))
            .expect("migration 3 applies");
        connection
            .execute_batch(
                "INSERT INTO sourcery_migrations (version, description) VALUES (2, 'checkpoints'), (3, 'snapshots');
                 INSERT INTO sourcery_events (aggregate_kind, aggregate_id, event_kind, data, metadata)
                     VALUES ('account', 'ACC-1', 'account.renamed', CAST('{}' AS BLOB), 'null');",
            )
            .expect("version 3 is recorded");
    }
    assert_eq!(recorded_versions(&path), [1, 2, 3]);

    let store: Store<String, ()> = Store::open(&path).await.expect("the old file opens");
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4]);
    let id = "ACC-1".to_owned();
    let old = store
        .load_events(&[EventFilter::for_stream("account", id.clone())])
        .await
        .expect("the events load");
    let read: Vec<(&str, u32)> = old
        .iter()
        .map(|event| (event.kind.as_str(), event.schema_version))
        .collect();
    assert_eq!(
        read,
        [("account.deposited", 1), ("account.renamed", 1)],
        "the events written before the migration, at schema version 1"
    );

    let mut tx = store.begin::<Optimistic>("account", id.clone(), old.last().map(|event| event.position));
    tx.append_persistable(
        PersistableEvent::new("account.renamed", b"{}".to_vec(), ()).with_schema_version(2),
    );
    tx.commit()
        .await
        .expect("the append succeeds")
        .expect("one event was written");
    let all = store
        .load_events(&[EventFilter::for_stream("account", id)])
        .await
        .expect("the events load");
    let versions: Vec<u32> = all.iter().map(|event| event.schema_version).collect();
    assert_eq!(versions, [1, 1, 2], "the new event keeps its schema version");
}

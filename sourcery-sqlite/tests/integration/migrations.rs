//! A file written at an older schema version migrates forward when the store
//! opens it: its events stay, and the new tables work.

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::concurrency::Optimistic;
use sourcery_core::event::DomainEvent;
use sourcery_core::snapshot::{SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore as _};
use sourcery_core::store::{EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_sqlite::{SCHEMA_VERSION, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "account.deposited";
}

/// A file as the store at schema version 1 left it: the events
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
    assert_eq!(SCHEMA_VERSION, 7);

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
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4, 5, 6, 7]);
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

/// A file as the store at schema version 3 (before event schema
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
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4, 5, 6, 7]);
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

/// A file as the store at schema version 4 left it: version 1's file, then
/// the tables and columns of migrations 2 to 4, and events of stream
/// `account` / `ACC-1` with `metadata`.
fn version_4_file<'a>(path: &std::path::Path, metadata: impl IntoIterator<Item = &'a str>) {
    version_1_file(path);
    let connection = rusqlite::Connection::open(path).expect("the database opens");
    for migration in [
        include_str!("../../migrations/0002_checkpoints.sql"),
        include_str!("../../migrations/0003_snapshots.sql"),
        include_str!("../../migrations/0004_schema_version.sql"),
    ] {
        connection
            .execute_batch(migration)
            .expect("the migration applies");
    }
    connection
        .execute_batch(
            "INSERT INTO sourcery_migrations (version, description)
                 VALUES (2, 'checkpoints'), (3, 'snapshots'), (4, 'event schema versions');",
        )
        .expect("version 4 is recorded");
    for text in metadata {
        connection
            .execute(
                "INSERT INTO sourcery_events (aggregate_kind, aggregate_id, event_kind, data, metadata)
                     VALUES ('account', 'ACC-1', 'account.noted', CAST('{}' AS BLOB), ?1)",
                [text],
            )
            .expect("an event of version 4");
    }
}

/// Every event's position and id, read with plain SQL.
fn stored_ids(connection: &rusqlite::Connection) -> Vec<(i64, EventId)> {
    let mut statement = connection
        .prepare("SELECT position, event_id FROM sourcery_events ORDER BY position")
        .expect("the query prepares");
    statement
        .query_map([], |row| Ok((row.get(0)?, EventId::from_bytes(row.get(1)?))))
        .expect("the query runs")
        .collect::<Result<_, _>>()
        .expect("the ids read")
}

/// A file as the store at schema version 4 (before event ids) left it, its
/// events' metadata as earlier releases' `EventMetadata` wrote it (an
/// `event_id` key) or otherwise, migrates forward: an event keeps the id its
/// metadata names when that is a UUID no earlier event took, every other
/// event gets a random version 4 UUID, and the ids are unique and indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_file_migrates_and_keeps_the_event_ids_of_its_metadata() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("v4.db");
    let kept = "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b";
    let upper = "0190A5B2-7C3D-7E4F-8A1B-2C3D4E5F6A7C";
    let simple = "0190a5b27c3d7e4f8a1b2c3d4e5f6a7d";
    let nil = "00000000-0000-0000-0000-000000000000";
    // (metadata, the id the event must keep, if any). The event of version
    // 1's file is first, with metadata `null`.
    let metadata: [(String, Option<&str>); 12] = [
        (
            format!(
                r#"{{"event_id":"{kept}","correlation_id":"{kept}","recorded_at":"2026-01-01T00:00:00Z"}}"#
            ),
            Some(kept),
        ),
        (format!(r#"{{"event_id":"{upper}"}}"#), Some(upper)),
        (format!(r#"{{"event_id":"{simple}"}}"#), Some(simple)),
        (format!(r#"{{"event_id":"{nil}"}}"#), Some(nil)),
        // Taken by an earlier event.
        (format!(r#"{{"event_id":"{kept}","actor":"copied"}}"#), None),
        // Not UUIDs.
        (r#"{"event_id":"not-a-uuid"}"#.to_owned(), None),
        (
            r#"{"event_id":"0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7g"}"#.to_owned(),
            None,
        ),
        (
            r#"{"event_id":"0190a5b27-c3d-7e4f-8a1b-2c3d4e5f6a7b"}"#.to_owned(),
            None,
        ),
        (r#"{"event_id":12345}"#.to_owned(), None),
        (
            r#"{"event_id":["0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7e"]}"#.to_owned(),
            None,
        ),
        // Nested, not the top-level key; and metadata that is not JSON at all
        // (written by something else than the store).
        (format!(r#"{{"inner":{{"event_id":"{kept}"}}}}"#), None),
        ("{not json".to_owned(), None),
    ];
    version_4_file(&path, metadata.iter().map(|(text, _)| text.as_str()));
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4]);

    let store: Store<String, serde_json::Value> = Store::open(&path).await.expect("the old file opens");
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4, 5, 6, 7]);
    let id = "ACC-1".to_owned();
    // The metadata that is not JSON fails to decode; read the ids by hand.
    drop(store);
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let ids = stored_ids(&connection);
    assert_eq!(ids.len(), metadata.len() + 1);
    let expected = std::iter::once(None).chain(metadata.iter().map(|(_, id)| *id));
    for ((position, stored), expected) in ids.iter().zip(expected) {
        if let Some(text) = expected {
            assert_eq!(
                *stored,
                text.parse::<EventId>().expect("a UUID"),
                "the event at {position} keeps the id of its metadata"
            );
        } else {
            let bytes = stored.as_bytes();
            assert!(
                bytes[6] >> 4 == 4 && bytes[8] & 0xc0 == 0x80,
                "the event at {position} gets a random version 4 UUID: {stored}"
            );
        }
    }
    let distinct: std::collections::BTreeSet<EventId> = ids.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), ids.len(), "the ids are unique");
    let index: (String, bool) = connection
        .query_row(
            "SELECT name, \"unique\" FROM pragma_index_list('sourcery_events') WHERE name = 'sourcery_events_event_id'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the index exists");
    assert_eq!(index, ("sourcery_events_event_id".to_owned(), true));
    drop(connection);

    // The index works on the old events: the first one's id, appended again
    // to its stream, is a replay of it.
    let store: Store<String, serde_json::Value> = Store::open(&path).await.expect("the migrated file opens");
    let (first_position, first_id) = ids[1];
    let replayed = store
        .append(
            "account",
            &id,
            None,
            NonEmpty::new(
                PersistableEvent::new("account.noted", b"{}".to_vec(), serde_json::Value::Null)
                    .with_id(first_id),
            ),
        )
        .await
        .expect("a replay");
    assert!(replayed.replayed);
    assert_eq!(replayed.last_position, first_position);
    assert_eq!(
        store
            .event_positions("account", &id, &[first_id, ids[2].1])
            .await
            .expect("the positions read"),
        [Some(first_position), Some(ids[2].0)]
    );
}

/// Every column of every event, read with plain SQL, in position order.
type EventRow = (i64, String, String, String, Vec<u8>, String, i64);

fn event_rows(connection: &rusqlite::Connection) -> Vec<EventRow> {
    let mut statement = connection
        .prepare(
            "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version
             FROM sourcery_events ORDER BY position",
        )
        .expect("the query prepares");
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .expect("the query runs")
        .collect::<Result<_, _>>()
        .expect("the rows read")
}

/// The schema objects of `sourcery_events` (the table, its indexes and
/// triggers), as `sqlite_schema` has them.
fn events_schema(connection: &rusqlite::Connection) -> Vec<(String, String, Option<String>)> {
    let mut statement = connection
        .prepare("SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = 'sourcery_events' ORDER BY name")
        .expect("the query prepares");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("the query runs")
        .collect::<Result<_, _>>()
        .expect("the schema reads")
}

/// Migration 5 rebuilds the events table (without AUTOINCREMENT): every
/// event keeps its position and columns, gaps included; the next append
/// continues after the highest position; the table, its indexes and nothing
/// else are those of a fresh file, so an application's index and trigger on
/// the table are gone, while its view still reads the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_5_keeps_every_position_and_gives_the_schema_of_a_fresh_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("v4.db");
    version_4_file(&path, [r#"{"actor":"a"}"#, "null"]);
    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    connection
        .execute_batch(
            "INSERT INTO sourcery_events (position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version)
                 VALUES (7, 'account', 'ACC-2', 'account.noted', CAST('{\"n\":7}' AS BLOB), 'null', 3),
                        (40, 'account', 'ACC-2', 'account.noted', CAST('{\"n\":40}' AS BLOB), 'null', 1);
             CREATE VIEW app_kinds AS SELECT position, event_kind FROM sourcery_events;
             CREATE INDEX app_data ON sourcery_events (data);
             CREATE TRIGGER app_trigger AFTER INSERT ON sourcery_events BEGIN SELECT 1; END;",
        )
        .expect("events with gaps, and the application's objects");
    let before = event_rows(&connection);
    assert_eq!(
        before.iter().map(|row| row.0).collect::<Vec<_>>(),
        [1, 2, 3, 7, 40]
    );
    drop(connection);

    let store: Store<String, serde_json::Value> = Store::open(&path).await.expect("the old file opens");
    assert_eq!(recorded_versions(&path), [1, 2, 3, 4, 5, 6, 7]);
    let appended = store
        .append(
            "account",
            &"ACC-3".to_owned(),
            None,
            NonEmpty::new(PersistableEvent::new(
                "account.noted",
                b"{}".to_vec(),
                serde_json::Value::Null,
            )),
        )
        .await
        .expect("an append after the migration");
    assert_eq!(appended.last_position, 41, "after the highest position");
    drop(store);

    let connection = rusqlite::Connection::open(&path).expect("the database opens");
    let after = event_rows(&connection);
    assert_eq!(
        after[..before.len()],
        before[..],
        "every event as it was, at its position"
    );
    let sequence: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_sequence WHERE name = 'sourcery_events'",
            [],
            |row| row.get(0),
        )
        .expect("sqlite_sequence reads");
    assert_eq!(sequence, 0, "no AUTOINCREMENT counter");
    let viewed: i64 = connection
        .query_row("SELECT count(*) FROM app_kinds", [], |row| row.get(0))
        .expect("the application's view still reads the table");
    assert_eq!(viewed, 6);

    let fresh_path = dir.path().join("fresh.db");
    drop(
        Store::<String, serde_json::Value>::open(&fresh_path)
            .await
            .expect("a fresh file opens"),
    );
    let fresh = rusqlite::Connection::open(&fresh_path).expect("the database opens");
    let schema = events_schema(&connection);
    assert_eq!(schema, events_schema(&fresh), "the schema of a fresh file");
    let table = schema
        .iter()
        .find_map(|(kind, _, sql)| (kind == "table").then_some(sql.clone()))
        .flatten()
        .expect("the table's SQL");
    assert!(!table.contains("AUTOINCREMENT"), "{table}");
    assert_eq!(
        schema
            .iter()
            .map(|(_, name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            "sourcery_events",
            "sourcery_events_event_id",
            "sourcery_events_kind",
            "sourcery_events_stream"
        ]
    );
}

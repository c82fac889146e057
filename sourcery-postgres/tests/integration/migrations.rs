//! Migrations: fresh, repeated, concurrent, upgrading a schema an older
//! release left, and refusing what they do not know.

use crate::support;

use std::sync::Arc;

use sourcery_core::concurrency::Optimistic;
use sourcery_core::store::{EventFilter, EventId, EventStore, InvalidBatch, NonEmpty, PersistableEvent};
use sourcery_postgres::{Error, Store};
use tokio::sync::Barrier;

type PgStore = Store<String, serde_json::Value>;

async fn unmigrated() -> Option<PgStore> {
    let pool = support::pool(8, "sourcery-postgres-migrations").await?;
    Some(Store::with_schema(pool, support::fresh_schema_name()).unwrap())
}

async fn recorded(store: &PgStore) -> Vec<i64> {
    sqlx::query_scalar(&format!(
        "SELECT version FROM \"{}\".sourcery_migrations ORDER BY version",
        store.schema()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_fresh_schema_gets_every_migration_and_a_second_run_does_nothing() {
    let Some(store) = unmigrated().await else {
        return;
    };
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(recorded(&store).await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(store.migrate().await.unwrap(), Vec::<i64>::new());
    assert_eq!(recorded(&store).await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert!(
        store
            .load_events(&[EventFilter::for_event("x")])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_concurrent_migrations_apply_once() {
    let Some(store) = unmigrated().await else {
        return;
    };
    let barrier = Arc::new(Barrier::new(4));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        // Separate pools: as from separate processes.
        let pool = support::pool(2, "sourcery-postgres-migrations").await.unwrap();
        let store: PgStore = Store::with_schema(pool, store.schema()).unwrap();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.migrate().await
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.push(support::bounded("migrate", 60, task).await.unwrap().unwrap());
    }
    applied.sort();
    assert_eq!(
        applied,
        [vec![], vec![], vec![], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]],
        "one task applied everything"
    );
    assert_eq!(recorded(&store).await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
}

#[tokio::test]
async fn a_schema_from_a_newer_release_or_with_changed_migrations_is_refused() {
    let Some(store) = unmigrated().await else {
        return;
    };
    store.migrate().await.unwrap();
    let table = format!("\"{}\".sourcery_migrations", store.schema());
    sqlx::query(&format!(
        "UPDATE {table} SET checksum = 'edited' WHERE version = 2"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    assert!(matches!(
        store.migrate().await,
        Err(Error::MigrationChanged { version: 2, .. })
    ));
    sqlx::query(&format!(
        "INSERT INTO {table} (version, name, checksum) VALUES (99, 'future', '')"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    assert!(matches!(
        store.migrate().await,
        Err(Error::SchemaTooNew {
            found: 99,
            known: 11,
            ..
        })
    ));
}

/// Appends of a release before migration 0007 do not take the appender
/// lock the frontier waits for (ADR 2): after 0007 they fail, on the
/// position sequence's old name, instead of appending.
#[tokio::test]
async fn an_older_releases_append_fails_after_migration_7() {
    let Some(store) = unmigrated().await else {
        return;
    };
    store.migrate().await.unwrap();
    let old = sqlx::query(&format!(
        "SELECT nextval('\"{}\".sourcery_events_position_seq'::regclass)",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .expect_err("the old name is gone");
    let code = old
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned);
    assert_eq!(code.as_deref(), Some("42P01"), "undefined_table: {old}");
}

#[tokio::test]
async fn an_unmigrated_store_says_so() {
    let Some(store) = unmigrated().await else {
        return;
    };
    let error = store
        .load_events(&[EventFilter::for_event("x")])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotMigrated { .. }), "{error:?}");
    assert!(error.to_string().contains("run `Store::migrate` first"));
    let error = store.stream_version("a", &"b".to_owned()).await.unwrap_err();
    assert!(matches!(error, Error::NotMigrated { .. }), "{error:?}");
}

#[tokio::test]
async fn bad_schema_names_are_refused_before_touching_the_database() {
    let Some(pool) = support::pool(1, "sourcery-postgres-migrations").await else {
        return;
    };
    // `pg_…` is reserved by PostgreSQL: `migrate` would fail on it.
    for name in ["", "a;b", "it's", "1st", "x\"y", "pg_x", "pg_catalog"] {
        let result = Store::<String, ()>::with_schema(pool.clone(), name);
        assert!(matches!(result, Err(Error::InvalidSchemaName { .. })), "{name:?}");
    }
}

/// A schema as the release before schema versions left it (migrations 1 to
/// 7), with events in it, upgrades: the old rows read back at schema version
/// 1, and new appends keep theirs.
#[tokio::test]
async fn a_schema_from_before_schema_versions_upgrades_and_its_events_read_as_version_1() {
    let Some(store) = unmigrated().await else {
        return;
    };
    assert_eq!(store.migrate_up_to(7).await.unwrap(), [1, 2, 3, 4, 5, 6, 7]);
    // Rows as that release's append statement wrote them: no schema version.
    let events = format!("\"{}\".sourcery_events", store.schema());
    // Migration 7 renamed the positions sequence.
    let sequence = format!("\"{}\".sourcery_positions", store.schema());
    sqlx::query(&format!(
        "INSERT INTO {events} (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata) \
         SELECT nextval('{sequence}'), 'account', 'old', n, CASE WHEN n = 2 THEN 'noted' ELSE 'opened' END, \
                convert_to(n::text, 'UTF8'), '{{}}'::jsonb \
         FROM generate_series(1, 3) AS n"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    assert_eq!(
        store.migrate().await.unwrap(),
        [8, 9, 10, 11],
        "only the newer migrations apply"
    );
    assert_eq!(recorded(&store).await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let old = store
        .load_events(&[EventFilter::for_stream("account", "old".to_owned())])
        .await
        .unwrap();
    let read: Vec<(&str, u32, &[u8])> = old
        .iter()
        .map(|event| (event.kind.as_str(), event.schema_version, event.data.as_slice()))
        .collect();
    assert_eq!(
        read,
        [
            ("opened", 1, b"1".as_slice()),
            ("noted", 1, b"2".as_slice()),
            ("opened", 1, b"3".as_slice())
        ],
        "the events written before the migration, whole, at schema version 1"
    );

    // The stream goes on, with the schema versions of the new events.
    let mut tx = store.begin::<Optimistic>(
        "account",
        "old".to_owned(),
        old.last().map(|event| event.position),
    );
    tx.append_persistable(
        PersistableEvent::new("opened", b"4".to_vec(), serde_json::json!({})).with_schema_version(3),
    );
    let written = tx.commit().await.unwrap().unwrap();
    let tail = store
        .load_events(&[EventFilter::for_stream("account", "old".to_owned()).after(old[2].position)])
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].position, written.last_position);
    assert_eq!(tail[0].schema_version, 3, "a new event keeps its schema version");
}

/// A schema version the column cannot hold is refused before anything is
/// written, on both append statements (`VALUES` and arrays).
#[tokio::test]
async fn schema_versions_out_of_range_are_refused_and_write_nothing() {
    let Some(store) = unmigrated().await else {
        return;
    };
    store.migrate().await.unwrap();
    for (size, bad) in [(1_usize, 0_u32), (3, u32::MAX), (20, 0), (20, 2_147_483_648)] {
        let events: Vec<PersistableEvent<serde_json::Value>> = (0..size)
            .map(|n| {
                let version = if n == size - 1 { bad } else { 1 };
                PersistableEvent::new("opened", b"x".to_vec(), serde_json::Value::Null)
                    .with_schema_version(version)
            })
            .collect();
        let refused = store
            .append(
                "account",
                &"bad".to_owned(),
                None,
                NonEmpty::from_vec(events).unwrap(),
            )
            .await
            .unwrap_err();
        // 0 is refused by every store, as an invalid batch; above
        // `i32::MAX` only PostgreSQL's column refuses it.
        let named = if bad == 0 {
            refused.as_invalid() == Some(&InvalidBatch::SchemaVersionZero { index: size - 1 })
        } else {
            matches!(
                refused.as_store(),
                Some(Error::InvalidSchemaVersion { index, version }) if *index == size - 1 && *version == bad
            )
        };
        assert!(named, "a batch of {size} with schema version {bad}: {refused:?}");
    }
    assert_eq!(
        store.stream_version("account", &"bad".to_owned()).await.unwrap(),
        None,
        "nothing was written"
    );
}

/// A schema as the release before event ids left it (migrations 1 to 8),
/// with events in it, upgrades: an event whose metadata holds a UUID under
/// `event_id` (as the `EventMetadata` of earlier releases wrote it) keeps it
/// as its id, unless an earlier event took it; every other event gets a
/// fresh one; the metadata is left as it was. A retry with a kept id is a
/// replay of the old event.
#[tokio::test]
async fn a_schema_from_before_event_ids_upgrades_and_keeps_the_ids_in_metadata() {
    let Some(store) = unmigrated().await else {
        return;
    };
    assert_eq!(store.migrate_up_to(8).await.unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
    let kept = uuid::Uuid::now_v7();
    let braced = uuid::Uuid::now_v7();
    let simple = uuid::Uuid::now_v7();
    let metadata = [
        serde_json::json!({ "event_id": kept.to_string(), "actor": "alice" }),
        serde_json::json!({ "event_id": format!("{{{}}}", braced.to_string().to_uppercase()) }),
        // Taken by the first event: this one gets a fresh id.
        serde_json::json!({ "event_id": kept.to_string() }),
        serde_json::json!({ "event_id": "not-a-uuid" }),
        serde_json::json!({ "event_id": 42 }),
        serde_json::json!({ "event_id": simple.simple().to_string() }),
        serde_json::json!({ "nested": { "event_id": uuid::Uuid::now_v7().to_string() } }),
        serde_json::json!({}),
        serde_json::json!([1, 2]),
        serde_json::Value::Null,
    ];
    // Rows as that release's append statement wrote them: no event id.
    insert_without_ids(&store, &metadata).await;
    let events = format!("\"{}\".sourcery_events", store.schema());
    let sequence = format!("\"{}\".sourcery_positions", store.schema());

    assert_eq!(
        store.migrate().await.unwrap(),
        [9, 10, 11],
        "only the newer migrations apply"
    );
    let (not_null, constraint): (bool, Option<String>) = sqlx::query_as(
        "SELECT a.attnotnull, \
                (SELECT c.conname::text FROM pg_constraint c \
                 WHERE c.conrelid = a.attrelid AND c.contype = 'u' AND c.conkey = ARRAY[a.attnum]) \
         FROM pg_attribute a \
         WHERE a.attrelid = $1::regclass AND a.attname = 'event_id'",
    )
    .bind(&events)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(not_null, "event_id is NOT NULL");
    assert_eq!(constraint.as_deref(), Some("sourcery_events_event_id_key"));
    // A row as release 8 wrote it, without an id, is refused now.
    let without_id = sqlx::query(&format!(
        "INSERT INTO {events} (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata) \
         VALUES (nextval('{sequence}'), 'account', 'older-release', 1, 'noted', '', '{{}}')"
    ))
    .execute(store.pool())
    .await
    .expect_err("no event id");
    let code = without_id
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned);
    assert_eq!(code.as_deref(), Some("23502"), "not_null_violation: {without_id}");

    let old = store
        .load_events(&[EventFilter::for_stream("account", "old".to_owned())])
        .await
        .unwrap();
    assert_eq!(old.len(), metadata.len());
    let read: Vec<&serde_json::Value> = old.iter().map(|event| &event.metadata).collect();
    assert_eq!(
        read,
        metadata.iter().collect::<Vec<_>>(),
        "the metadata is untouched"
    );
    let ids: Vec<uuid::Uuid> = old.iter().map(|event| *event.id.as_uuid()).collect();
    assert_eq!(ids[0], kept, "a UUID in the metadata is kept");
    assert_eq!(ids[1], braced, "in any of PostgreSQL's spellings");
    assert_eq!(ids[5], simple);
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids are unique: {ids:?}");

    // A retry of the first event (its id from the metadata) is a replay.
    let retry = PersistableEvent::new("noted", b"0".to_vec(), serde_json::json!({}))
        .with_id(EventId::from_uuid(kept));
    let replayed = store
        .append("account", &"old".to_owned(), None, NonEmpty::new(retry.clone()))
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.last_position, old[0].position);
    let elsewhere = store
        .append("account", &"new".to_owned(), None, NonEmpty::new(retry))
        .await
        .unwrap_err();
    assert!(elsewhere.as_id_reused().is_some(), "{elsewhere:?}");
    // The stream goes on.
    let written = store
        .append(
            "account",
            &"old".to_owned(),
            old.last().map(|event| event.position),
            NonEmpty::new(PersistableEvent::new("noted", Vec::new(), serde_json::json!({}))),
        )
        .await
        .unwrap();
    assert!(!written.replayed);
}

/// Appends one event per `metadata` to the stream `account`/`old` as the
/// append of release 8 did (no event id).
async fn insert_without_ids(store: &PgStore, metadata: &[serde_json::Value]) {
    let events = format!("\"{}\".sourcery_events", store.schema());
    let sequence = format!("\"{}\".sourcery_positions", store.schema());
    for (index, metadata) in metadata.iter().enumerate() {
        sqlx::query(&format!(
            "INSERT INTO {events} (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, \
                                   metadata) \
             VALUES (nextval('{sequence}'), 'account', 'old', $1, 'noted', $2, $3)"
        ))
        .bind(i64::try_from(index).unwrap() + 1)
        .bind(index.to_string().into_bytes())
        .bind(metadata)
        .execute(store.pool())
        .await
        .unwrap();
    }
}

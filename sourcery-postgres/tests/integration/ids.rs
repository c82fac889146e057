//! Event ids and idempotent appends on PostgreSQL: a retry of a stored
//! batch is a replay in every mode, a batch reusing ids otherwise is
//! refused, racing appends of one batch write it once, and an append of ids
//! still in flight waits for their writer and then answers as if it had run
//! after it.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use sourcery_core::concurrency::ExpectedVersion;
use sourcery_core::store::{
    AppendOutcome, EventFilter, EventId, EventStore, IdReuse, InvalidBatch, NonEmpty, PersistableEvent,
    TextField,
};
use sourcery_core::subscription::Subscribe as _;
use sourcery_postgres::Store;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::Barrier;

type PgStore = Store<String, serde_json::Value>;

const KIND: &str = "ids.noted";

/// A batch of `size` events with fresh ids.
fn batch(size: usize) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = (0..size)
        .map(|n| PersistableEvent::new(KIND, n.to_string().into_bytes(), serde_json::json!({ "n": n })))
        .collect();
    NonEmpty::from_vec(events).expect("size is at least 1")
}

/// The events of `events`, with the ids `ids` (one each, in order).
fn with_ids(
    events: &NonEmpty<PersistableEvent<serde_json::Value>>,
    ids: &[EventId],
) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events: Vec<_> = events
        .iter()
        .zip(ids)
        .map(|(event, id)| event.clone().with_id(*id))
        .collect();
    NonEmpty::from_vec(events).expect("not empty")
}

fn ids_of(events: &NonEmpty<PersistableEvent<serde_json::Value>>) -> Vec<EventId> {
    events.iter().map(|event| event.id).collect()
}

/// Commits `events` in a transaction expecting `expected`.
async fn commit(
    store: &PgStore,
    id: &str,
    expected: ExpectedVersion<i64>,
    events: NonEmpty<PersistableEvent<serde_json::Value>>,
) -> AppendOutcome<i64, sourcery_postgres::Error> {
    let mut transaction = store.begin_expecting("ids", id.to_owned(), expected);
    for event in events.into_vec() {
        transaction.append_persistable(event);
    }
    transaction
        .commit()
        .await
        .map(|written| written.expect("events were buffered"))
}

async fn stream(store: &PgStore, id: &str) -> Vec<(EventId, i64)> {
    store
        .load_events(&[EventFilter::for_stream("ids", id.to_owned())])
        .await
        .expect("a load")
        .iter()
        .map(|event| (event.id, event.position))
        .collect()
}

/// A migrated store in a fresh schema whose connections carry
/// `application_name`, so a test can watch them wait.
async fn named_store(connections: u32, application_name: &str) -> Option<PgStore> {
    let pool = support::pool(connections, application_name).await?;
    let store = Store::with_schema(pool, support::fresh_schema_name()).expect("a valid name");
    store.migrate().await.expect("migrations apply");
    Some(store)
}

/// A test's own application name (at most 63 bytes).
fn application_name() -> String {
    format!("ids-{}", support::fresh_schema_name())
}

/// Waits (bounded) until a backend of `application_name` waits for a lock.
async fn until_waiting(store: &PgStore, application_name: &str) {
    support::bounded("an append waiting for a lock", 30, async {
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock')",
            )
            .bind(application_name)
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_activity");
            if waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Opens a transaction on a connection of its own and appends `events` to
/// `stream` in it through the store's statement (`'exact'`, a new stream),
/// without committing: an append whose commit is in flight.
async fn append_in_open_transaction(
    store: &PgStore,
    stream: &str,
    events: &NonEmpty<PersistableEvent<serde_json::Value>>,
) -> (PgConnection, i64) {
    let url = support::database_url().expect("DATABASE_URL is set");
    let mut connection = PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut connection)
        .await
        .expect("begin");
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    let data: Vec<&[u8]> = events.iter().map(|event| event.data.as_slice()).collect();
    let metadata: Vec<String> = events.iter().map(|event| event.metadata.to_string()).collect();
    let versions: Vec<i32> = events.iter().map(|_| 1).collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|event| *event.id.as_uuid()).collect();
    let positions: Vec<i64> = sqlx::query_scalar(store.append_statement())
        .bind("ids")
        .bind(stream)
        .bind("exact")
        .bind(None::<i64>)
        .bind(kinds)
        .bind(data)
        .bind(metadata)
        .bind(versions)
        .bind(ids)
        .fetch_all(&mut connection)
        .await
        .expect("an append in an open transaction");
    let last = positions.into_iter().max().expect("rows were written");
    (connection, last)
}

/// Every way of appending, for a stream that has events: the retry's
/// outcome is the first append's, whatever it expects now.
#[tokio::test]
async fn a_retry_of_a_stored_batch_is_a_replay_whatever_it_expects() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    // 1 and 3 events go through the `VALUES` statement, 20 through arrays.
    for size in [1, 3, 20] {
        let id = format!("retried-{size}");
        let first = batch(size);
        let written = store
            .append_expecting_new("ids", &id, first.clone())
            .await
            .expect("a new stream");
        assert!(!written.replayed);
        // The stream moves on after the batch: a replay still returns the
        // batch's own last position.
        let later = store
            .append("ids", &id, Some(written.last_position), batch(2))
            .await
            .expect("a later append");
        let before = stream(&store, &id).await;
        let retries: [(&str, AppendOutcome<i64, sourcery_postgres::Error>); 6] = [
            (
                "new stream",
                store.append_expecting_new("ids", &id, first.clone()).await,
            ),
            (
                "stale version",
                store
                    .append("ids", &id, Some(written.last_position), first.clone())
                    .await,
            ),
            (
                "current version",
                store
                    .append("ids", &id, Some(later.last_position), first.clone())
                    .await,
            ),
            ("unchecked", store.append("ids", &id, None, first.clone()).await),
            (
                "existing stream",
                store.append_expecting_existing("ids", &id, first.clone()).await,
            ),
            (
                "transaction",
                commit(&store, &id, ExpectedVersion::Exact(0), first.clone()).await,
            ),
        ];
        for (what, retry) in retries {
            let retry = retry.unwrap_or_else(|error| panic!("{what}, batch of {size}: {error:?}"));
            assert!(retry.replayed, "{what}, batch of {size}: {retry:?}");
            assert_eq!(
                retry.last_position, written.last_position,
                "{what}, batch of {size}"
            );
        }
        assert_eq!(
            stream(&store, &id).await,
            before,
            "batch of {size}: nothing written"
        );
    }
}

/// Reused ids that do not make a replay are refused before the version
/// check, and nothing of the batch is written.
#[tokio::test]
async fn reusing_stored_ids_otherwise_is_refused_and_writes_nothing() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let id = "reused".to_owned();
    let first = batch(3);
    let ids = ids_of(&first);
    let written = store
        .append_expecting_new("ids", &id, first.clone())
        .await
        .expect("a new stream");
    let fresh = EventId::new();
    let cases = [
        (
            "partial",
            vec![ids[0], fresh, ids[2]],
            "reused",
            IdReuse::Partial,
            0,
        ),
        (
            "partial, new first",
            vec![fresh, ids[1], ids[2]],
            "reused",
            IdReuse::Partial,
            1,
        ),
        ("order", vec![ids[1], ids[0], ids[2]], "reused", IdReuse::Order, 1),
        ("other stream", ids.clone(), "elsewhere", IdReuse::OtherStream, 0),
    ];
    for (what, reused, target, reason, index) in cases {
        let target = target.to_owned();
        let events = with_ids(&first, &reused);
        let version = store.stream_version("ids", &target).await.expect("a version");
        for expected in [version, Some(written.last_position - 1), None] {
            let refused = store
                .append("ids", &target, expected, events.clone())
                .await
                .expect_err(what);
            let Some(refusal) = refused.as_id_reused() else {
                panic!("{what}, expecting {expected:?}: an id reuse, got {refused:?}");
            };
            assert_eq!(refusal.reason, reason, "{what}");
            assert_eq!(refusal.index, index, "{what}");
            assert_eq!(refusal.event_id, reused[index], "{what}");
        }
        let refused = store
            .append_expecting_existing("ids", &target, events.clone())
            .await
            .expect_err(what);
        assert!(refused.as_id_reused().is_some(), "{what}: {refused:?}");
    }
    assert_eq!(stream(&store, "reused").await.len(), 3, "nothing more written");
    assert!(stream(&store, "elsewhere").await.is_empty(), "nothing written");
}

/// Eight appends of the same batch race, in every mode: one writes it, the
/// others return its replay (the same last position); never a duplicate,
/// never a conflict or a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_of_one_batch_write_it_once() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 10;
    let Some(store) = support::store_with::<String, serde_json::Value>(9).await else {
        return;
    };
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let modes = [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
    ];
    for mode in modes {
        for round in 0..ROUNDS {
            let id = format!("race-{mode:?}-{round}");
            let mut expected = mode;
            if mode != ExpectedVersion::NoStream {
                let created = store
                    .append_expecting_new("ids", &id, batch(1))
                    .await
                    .expect("the stream");
                if mode == ExpectedVersion::Exact(0) {
                    expected = ExpectedVersion::Exact(created.last_position);
                }
            }
            // Batches of 2 and, every other round, of 17 (arrays).
            let events = batch(if round % 2 == 0 { 2 } else { 17 });
            let mut tasks = Vec::new();
            for _ in 0..WRITERS {
                let (store, barrier, id, events) = (
                    Arc::clone(&store),
                    Arc::clone(&barrier),
                    id.clone(),
                    events.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    commit(&store, &id, expected, events).await
                }));
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                let outcome = support::bounded("a racing append", 30, task)
                    .await
                    .expect("the task")
                    .unwrap_or_else(|error| panic!("{mode:?}, round {round}: {error:?}"));
                outcomes.push(outcome);
            }
            let written: Vec<_> = outcomes.iter().filter(|outcome| !outcome.replayed).collect();
            assert_eq!(
                written.len(),
                1,
                "{mode:?}, round {round}: one writes, {outcomes:?}"
            );
            assert!(
                outcomes
                    .iter()
                    .all(|outcome| outcome.last_position == written[0].last_position),
                "{mode:?}, round {round}: every replay returns the writer's last position, {outcomes:?}"
            );
            let stored = stream(&store, &id).await;
            let ids: Vec<EventId> = stored.iter().map(|(id, _)| *id).collect();
            let created = usize::from(mode != ExpectedVersion::NoStream);
            assert_eq!(
                ids[created..],
                ids_of(&events)[..],
                "{mode:?}, round {round}: once"
            );
        }
    }
}

/// A retry that meets its first attempt still in flight waits on the index
/// for it: if it commits, the retry is its replay; if it rolls back, the
/// retry writes. The same ids for another stream are refused once they
/// commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_of_ids_in_flight_waits_for_their_writer() {
    let name = application_name();
    let Some(store) = named_store(4, &name).await else {
        return;
    };
    let store = Arc::new(store);
    for (case, commit) in [
        ("same stream, new", true),
        ("same stream, unchecked", true),
        ("same stream, new", false),
        ("same stream, unchecked", false),
        ("other stream", true),
        ("other stream", false),
    ] {
        let id = format!("flight-{case}-{commit}");
        let events = batch(3);
        let (mut open, held) = append_in_open_transaction(&store, &id, &events).await;
        let target = if case == "other stream" {
            format!("{id}-other")
        } else {
            id.clone()
        };
        let retry = {
            let (store, target, events) = (Arc::clone(&store), target.clone(), events.clone());
            tokio::spawn(async move {
                if case == "same stream, unchecked" {
                    store.append("ids", &target, None, events).await
                } else {
                    store.append_expecting_new("ids", &target, events).await
                }
            })
        };
        until_waiting(&store, &name).await;
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end)
            .execute(&mut open)
            .await
            .expect("the end of the first attempt");
        let outcome = support::bounded("the retry", 30, retry).await.expect("the task");
        match (case, commit) {
            ("other stream", true) => {
                let refused = outcome.expect_err("ids of another stream");
                assert_eq!(
                    refused.as_id_reused().map(|reused| reused.reason),
                    Some(IdReuse::OtherStream),
                    "{case}: {refused:?}"
                );
            }
            (_, true) => {
                let outcome = outcome.unwrap_or_else(|error| panic!("{case}: {error:?}"));
                assert!(outcome.replayed, "{case}: {outcome:?}");
                assert_eq!(outcome.last_position, held, "{case}");
            }
            (_, false) => {
                let outcome = outcome.unwrap_or_else(|error| panic!("{case}, rolled back: {error:?}"));
                assert!(!outcome.replayed, "{case}, rolled back: {outcome:?}");
                let stored = stream(&store, &target).await;
                let ids: Vec<EventId> = stored.iter().map(|(id, _)| *id).collect();
                assert_eq!(ids, ids_of(&events), "{case}, rolled back: written once");
            }
        }
    }
}

/// Two appends that reuse each other's ids in opposite orders can wait for
/// each other in the unique index; the server breaks the deadlock by
/// aborting the store's statement, which runs again and reports the reuse,
/// not a database failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_reused_in_opposite_orders_are_refused_not_deadlocked() {
    let name = application_name();
    let Some(store) = named_store(4, &name).await else {
        return;
    };
    let store = Arc::new(store);
    let x = batch(1);
    let y = EventId::new();
    let (mut open, _) = append_in_open_transaction(&store, "first", &x).await;
    // The other side detects the deadlock: its timeout is shorter.
    sqlx::query("SET LOCAL deadlock_timeout = '60s'")
        .execute(&mut open)
        .await
        .expect("set");
    let retry = {
        let store = Arc::clone(&store);
        let events = with_ids(&batch(2), &[y, x.first().id]);
        tokio::spawn(async move { store.append("ids", &"second".to_owned(), None, events).await })
    };
    // The store's append holds `y` and waits for `x`.
    until_waiting(&store, &name).await;
    // Now the open transaction takes `y`: a cycle, which the store's
    // backend breaks after its `deadlock_timeout` (1 s by default).
    sqlx::query(&format!(
        "INSERT INTO \"{}\".sourcery_events \
             (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata, event_id) \
         VALUES (nextval('\"{}\".sourcery_positions'), 'ids', 'first', 2, $1, '', '{{}}', $2)",
        store.schema(),
        store.schema()
    ))
    .bind(KIND)
    .bind(*y.as_uuid())
    .execute(&mut open)
    .await
    .expect("the open transaction's second event");
    // The store's append runs again and waits for the open transaction.
    until_waiting(&store, &name).await;
    sqlx::query("COMMIT").execute(&mut open).await.expect("commit");
    let refused = support::bounded("the append", 30, retry)
        .await
        .expect("the task")
        .expect_err("ids of another stream");
    assert_eq!(
        refused.as_id_reused().map(|reused| reused.reason),
        Some(IdReuse::OtherStream),
        "{refused:?}"
    );
    assert!(stream(&store, "second").await.is_empty(), "nothing written");
}

/// `append_expecting_existing` appends at any version of a stream that has
/// events, refuses an empty one with a `StreamExists` conflict, and refuses
/// an invalid batch as such first.
#[tokio::test]
async fn appending_to_an_existing_stream() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let id = "existing".to_owned();
    let refused = store
        .append_expecting_existing("ids", &id, batch(1))
        .await
        .expect_err("an empty stream");
    let conflict = refused.as_conflict().expect("a conflict");
    assert_eq!(conflict.expected, ExpectedVersion::StreamExists);
    assert_eq!(conflict.actual, None);
    let nul = store
        .append_expecting_existing("ids", &"nul\0".to_owned(), batch(1))
        .await
        .expect_err("a NUL in the id");
    assert_eq!(
        nul.as_invalid(),
        Some(&InvalidBatch::Nul {
            field: TextField::AggregateId
        })
    );
    let mut duplicate = batch(2).into_vec();
    duplicate[1].id = duplicate[0].id;
    let duplicate = store
        .append_expecting_existing("ids", &id, NonEmpty::from_vec(duplicate).expect("two"))
        .await
        .expect_err("a duplicate id");
    assert_eq!(
        duplicate.as_invalid(),
        Some(&InvalidBatch::DuplicateId { first: 0, second: 1 })
    );
    let created = store
        .append_expecting_new("ids", &id, batch(1))
        .await
        .expect("created");
    // Another writer moves the stream: any version will do.
    let moved = store.append("ids", &id, None, batch(2)).await.expect("moved");
    for size in [1, 20] {
        let written = store
            .append_expecting_existing("ids", &id, batch(size))
            .await
            .expect("an existing stream");
        assert!(!written.replayed);
        assert!(written.last_position > moved.last_position);
    }
    assert!(created.last_position < moved.last_position);
    assert_eq!(stream(&store, &id).await.len(), 1 + 2 + 1 + 20);
}

/// `event_positions` finds the ids of one stream, and only of that stream.
#[tokio::test]
async fn event_positions_reads_one_stream() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let first = batch(3);
    let written = store
        .append_expecting_new("ids", &"a".to_owned(), first.clone())
        .await
        .expect("a");
    let elsewhere = batch(1);
    store
        .append_expecting_new("ids", &"b".to_owned(), elsewhere.clone())
        .await
        .expect("b");
    let ids = ids_of(&first);
    let asked = [ids[2], EventId::new(), elsewhere.first().id, ids[0]];
    let found = store
        .event_positions("ids", &"a".to_owned(), &asked)
        .await
        .expect("positions");
    let last = written.last_position;
    assert_eq!(found, [Some(last), None, None, Some(last - 2)]);
    assert_eq!(
        store
            .event_positions("ids", &"a".to_owned(), &[])
            .await
            .expect("none asked"),
        Vec::<Option<i64>>::new()
    );
    assert_eq!(
        store
            .event_positions("ids", &"a\0".to_owned(), &asked)
            .await
            .expect("a NUL finds nothing"),
        [None; 4]
    );
}

/// Every read returns the ids the events were appended with: loads of a
/// stream and of a kind, and subscription pages.
#[tokio::test]
async fn every_read_returns_the_ids() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let events = batch(4);
    store
        .append_expecting_new("ids", &"read".to_owned(), events.clone())
        .await
        .expect("appended");
    let ids = ids_of(&events);
    let of_stream: Vec<EventId> = stream(&store, "read").await.iter().map(|(id, _)| *id).collect();
    assert_eq!(of_stream, ids);
    let of_kind: Vec<EventId> = store
        .load_events(&[EventFilter::for_event(KIND)])
        .await
        .expect("a load")
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(of_kind, ids);
    let page: Vec<EventId> = store
        .load_page(&[EventFilter::for_event(KIND)], 3)
        .await
        .expect("a page")
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(page, ids[..3]);
}

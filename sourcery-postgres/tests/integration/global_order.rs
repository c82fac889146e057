//! Invariant 5: a reader that follows positions never skips an event that
//! commits later with a lower position.
//!
//! The deterministic tests hold an append open on a connection of their own
//! (a transaction around the store's append statement, which the store
//! itself never does) to freeze the race the store must survive.
//!
//! They run in parallel, each in its own schema, although several make holes
//! in the positions while others keep transactions open: a hole waits only
//! for the appends of its own schema (issue 21).

use crate::support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sourcery_core::store::{EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::Store;
use sqlx::{Connection, PgConnection};
use support::Foreign;
use tokio::sync::Barrier;

type PgStore = Store<String, serde_json::Value>;

const KIND: &str = "order.noted";

fn event(n: u64) -> PersistableEvent<serde_json::Value> {
    PersistableEvent {
        id: EventId::new(),
        kind: KIND.to_owned(),
        schema_version: 1,
        data: n.to_string().into_bytes(),
        metadata: serde_json::json!({ "n": n }),
    }
}

async fn append(store: &PgStore, stream: &str, n: u64) -> i64 {
    support::bounded(
        "append",
        30,
        store.append("order", &stream.to_owned(), None, NonEmpty::new(event(n))),
    )
    .await
    .expect("append")
    .last_position
}

async fn follow(store: &PgStore, after: i64) -> Vec<i64> {
    support::bounded(
        "load",
        30,
        store.load_events(&[EventFilter::for_event(KIND).after(after)]),
    )
    .await
    .expect("load")
    .iter()
    .map(|event| event.position)
    .collect()
}

async fn connect() -> PgConnection {
    let url = support::database_url().expect("DATABASE_URL is set");
    PgConnection::connect(&url).await.expect("connect")
}

/// Opens a transaction on `connection` and appends one event in it, without
/// committing. Returns the position it drew.
async fn append_in_open_transaction(connection: &mut PgConnection, store: &PgStore, stream: &str) -> i64 {
    sqlx::query("BEGIN")
        .execute(&mut *connection)
        .await
        .expect("begin");
    let written: i64 = sqlx::query_scalar(store.append_statement())
        .bind("order")
        .bind(stream)
        .bind("any")
        .bind(None::<i64>)
        .bind(vec![KIND])
        .bind(vec![b"0".to_vec()])
        .bind(vec!["{}"])
        .bind(vec![1_i32])
        .bind(vec![uuid::Uuid::now_v7()])
        .fetch_one(&mut *connection)
        .await
        .expect("an append in an open transaction");
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_flight_holds_followers_below_its_position_until_it_commits() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let first = append(&store, "first", 1).await;

    // A draws a position and stays open; B commits after it, higher.
    let mut a = connect().await;
    let a_position = append_in_open_transaction(&mut a, &store, "a").await;
    let b_position = append(&store, "b", 3).await;
    assert!(first < a_position && a_position < b_position);

    // Followers stop below A's position: B is committed but not yet safe.
    assert_eq!(follow(&store, 0).await, [first]);
    assert_eq!(follow(&store, first).await, Vec::<i64>::new());
    assert_eq!(store.safe_position().await.unwrap(), Some(first));
    let a_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    let blockers = store.frontier_blockers().await.unwrap();
    assert_eq!(
        blockers.iter().map(|b| b.pid).collect::<Vec<_>>(),
        [Some(a_pid)],
        "the blocker is A: {blockers:?}"
    );

    // A plain read of B's stream (the repository's read) sees B at once.
    let stream_b = store
        .load_events(&[EventFilter::for_aggregate(KIND, "order", "b".to_owned())])
        .await
        .unwrap();
    assert_eq!(stream_b.len(), 1);
    assert_eq!(
        store.stream_version("order", &"b".to_owned()).await.unwrap(),
        Some(b_position)
    );

    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    assert_eq!(follow(&store, first).await, [a_position, b_position]);
    assert_eq!(store.safe_position().await.unwrap(), Some(b_position));
    assert!(store.frontier_blockers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_a_hole_followers_pass() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let first = append(&store, "first", 1).await;
    let mut a = connect().await;
    let a_position = append_in_open_transaction(&mut a, &store, "a").await;
    let b_position = append(&store, "b", 3).await;
    assert_eq!(follow(&store, 0).await, [first]);

    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    assert_eq!(follow(&store, first).await, [b_position]);
    assert!(a_position < b_position);

    // A store whose connection cached nothing finds the same frontier.
    let fresh: PgStore =
        Store::with_schema(support::pool(2, "fresh").await.unwrap(), store.schema()).unwrap();
    assert_eq!(fresh.safe_position().await.unwrap(), Some(b_position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_open_transaction_does_not_stall_followers() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    // A transaction that has written (so it has a transaction id and holds
    // the cluster's xmin back) but never appends.
    let mut unrelated = connect().await;
    sqlx::query("BEGIN").execute(&mut unrelated).await.unwrap();
    sqlx::query("CREATE TEMPORARY TABLE unrelated (x int)")
        .execute(&mut unrelated)
        .await
        .unwrap();
    sqlx::query("INSERT INTO unrelated VALUES (1)")
        .execute(&mut unrelated)
        .await
        .unwrap();

    let first = append(&store, "first", 1).await;
    // A hole after it: an append rolled back.
    let mut a = connect().await;
    append_in_open_transaction(&mut a, &store, "a").await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    let second = append(&store, "second", 2).await;

    assert_eq!(follow(&store, 0).await, [first, second]);
    assert!(store.frontier_blockers().await.unwrap().is_empty());
    sqlx::query("ROLLBACK").execute(&mut unrelated).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_a_transaction_that_already_wrote_is_refused() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    // Its transaction id would predate its positions: the order argument
    // would not hold, so the function refuses.
    let mut connection = connect().await;
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut connection)
        .await
        .unwrap();
    let refused = sqlx::query(store.append_statement())
        .bind("order")
        .bind("x")
        .bind("any")
        .bind(None::<i64>)
        .bind(vec!["k"])
        .bind(vec![b"0".to_vec()])
        .bind(vec!["{}"])
        .bind(vec![1_i32])
        .bind(vec![uuid::Uuid::now_v7()])
        .execute(&mut connection)
        .await
        .expect_err("refused");
    let code = refused
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned);
    assert_eq!(code.as_deref(), Some("25000"));
}

/// 8 writers append concurrently (some batches rolled back, leaving holes)
/// while a follower reads `after(cursor)` in a loop: it must see every
/// committed event exactly once, in ascending order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_sees_every_event_once_under_concurrent_writers() {
    const WRITERS: u64 = 8;
    const BATCHES: u64 = 60;
    let Some(store) = support::store_with::<String, serde_json::Value>(16).await else {
        return;
    };
    let store = Arc::new(store);
    let start = Arc::new(Barrier::new(usize::try_from(WRITERS).unwrap() + 1));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        writers.push(tokio::spawn(async move {
            let mut rollbacks = connect().await;
            start.wait().await;
            for batch in 0..BATCHES {
                let n = writer * 1000 + batch;
                if batch % 7 == 3 {
                    append_in_open_transaction(&mut rollbacks, &store, &format!("w{writer}")).await;
                    sqlx::query("ROLLBACK").execute(&mut rollbacks).await.unwrap();
                    continue;
                }
                // Some batches share a stream across writers, some do not.
                let stream = if batch % 3 == 0 {
                    "shared".to_owned()
                } else {
                    format!("w{writer}")
                };
                let size = 1 + batch % 4;
                let events =
                    NonEmpty::from_vec((0..size).map(|part| event(n * 10 + part)).collect()).unwrap();
                store
                    .append("order", &stream, None, events)
                    .await
                    .expect("append");
            }
        }));
    }
    start.wait().await;

    let writers_done = Arc::new(AtomicBool::new(false));
    let follower = {
        let store = Arc::clone(&store);
        let writers_done = Arc::clone(&writers_done);
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                // Read the flag first: a read that starts after the writers
                // finished must return everything left.
                let last_read = writers_done.load(Ordering::SeqCst);
                let batch = follow(&store, cursor).await;
                for &position in &batch {
                    assert!(position > cursor, "positions ascend: {position} after {cursor}");
                    cursor = position;
                }
                seen.extend(batch);
                if last_read {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for writer in writers {
        support::bounded("a writer", 60, writer).await.unwrap();
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = support::bounded("the follower", 60, follower).await.unwrap();

    let all: Vec<i64> = store
        .load_events(&[EventFilter::for_event(KIND)])
        .await
        .unwrap()
        .iter()
        .map(|event| event.position)
        .collect();
    let expected_events: u64 = (0..BATCHES)
        .filter(|b| b % 7 != 3)
        .map(|b| 1 + b % 4)
        .sum::<u64>()
        * WRITERS;
    assert_eq!(all.len(), usize::try_from(expected_events).unwrap());
    let missed: Vec<&i64> = all.iter().filter(|position| !seen.contains(position)).collect();
    assert!(
        missed.is_empty(),
        "the follower skipped {} events: {missed:?}",
        missed.len()
    );
    assert_eq!(seen, all, "the follower saw every committed event once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
}

/// A store on `schema` whose connections run every transaction under
/// REPEATABLE READ.
async fn repeatable_read_store(schema: &str) -> PgStore {
    let url = support::database_url().expect("DATABASE_URL is set");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(connection)
                    .await
                    .map(drop)
            })
        })
        .connect(&url)
        .await
        .expect("connect");
    let isolation: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(isolation, "repeatable read");
    Store::with_schema(pool, schema).unwrap()
}

async fn backend_pid(connection: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("a pid")
}

/// Issue 21: a transaction of another schema or another database obtains
/// its transaction id between the two rows around a hole (an append rolled
/// back after drawing its position) and stays open. Followers pass the hole
/// at once: it can only be filled by an append of this schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_transaction_does_not_hold_a_hole_of_this_schema() {
    for place in Foreign::ALL {
        let Some(store) = support::store::<String, serde_json::Value>().await else {
            return;
        };
        let first = append(&store, "first", 1).await;
        let mut a = connect().await;
        let hole = append_in_open_transaction(&mut a, &store, "a").await;
        // After A's id, before the next append's: bracketed by the hole.
        let mut foreign = support::foreign_transaction(place).await;
        sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
        let second = append(&store, "second", 2).await;
        assert!(first < hole && hole < second);

        assert_eq!(follow(&store, 0).await, [first, second], "{place:?}");
        assert_eq!(store.safe_position().await.unwrap(), Some(second), "{place:?}");
        assert!(
            store.frontier_blockers().await.unwrap().is_empty(),
            "{place:?}: nothing of this schema is in flight"
        );
        // Readers whose loads run under REPEATABLE READ (no fresh snapshot
        // for the frontier to look again) pass it too.
        let repeatable = repeatable_read_store(store.schema()).await;
        assert_eq!(follow(&repeatable, 0).await, [first, second], "{place:?}");
        sqlx::query("ROLLBACK").execute(&mut foreign).await.unwrap();
    }
}

/// The same without a hole: the frontier reaches the head while foreign
/// transactions of both kinds, older and newer than the appends, stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_transactions_do_not_hold_followers_without_a_hole() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let mut older_schema = support::foreign_transaction(Foreign::OtherSchema).await;
    let mut older_database = support::foreign_transaction(Foreign::OtherDatabase).await;
    let first = append(&store, "first", 1).await;
    let mut newer_schema = support::foreign_transaction(Foreign::OtherSchema).await;
    let mut newer_database = support::foreign_transaction(Foreign::OtherDatabase).await;
    let second = append(&store, "second", 2).await;
    assert_eq!(follow(&store, 0).await, [first, second]);
    assert_eq!(store.safe_position().await.unwrap(), Some(second));
    assert!(store.frontier_blockers().await.unwrap().is_empty());
    for connection in [
        &mut older_schema,
        &mut older_database,
        &mut newer_schema,
        &mut newer_database,
    ] {
        sqlx::query("ROLLBACK").execute(connection).await.unwrap();
    }
}

/// This schema's own append in flight still holds followers below its
/// position, with foreign transactions bracketed beside it, and it alone is
/// named as a blocker. When it commits, followers move on although the
/// foreign transactions stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_append_in_flight_holds_followers_and_alone_is_named_beside_foreign_transactions() {
    for place in Foreign::ALL {
        let Some(store) = support::store::<String, serde_json::Value>().await else {
            return;
        };
        let first = append(&store, "first", 1).await;
        let mut before = support::foreign_transaction(place).await;
        let mut a = connect().await;
        let a_pid = backend_pid(&mut a).await;
        let a_position = append_in_open_transaction(&mut a, &store, "a").await;
        let mut after = support::foreign_transaction(place).await;
        let b_position = append(&store, "b", 3).await;

        assert_eq!(follow(&store, 0).await, [first], "{place:?}");
        assert_eq!(store.safe_position().await.unwrap(), Some(first), "{place:?}");
        let blockers = store.frontier_blockers().await.unwrap();
        assert_eq!(
            blockers.iter().map(|b| b.pid).collect::<Vec<_>>(),
            [Some(a_pid)],
            "{place:?}: the blocker is A alone: {blockers:?}"
        );

        sqlx::query("COMMIT").execute(&mut a).await.unwrap();
        assert_eq!(follow(&store, first).await, [a_position, b_position], "{place:?}");
        assert_eq!(
            store.safe_position().await.unwrap(),
            Some(b_position),
            "{place:?}"
        );
        assert!(store.frontier_blockers().await.unwrap().is_empty(), "{place:?}");
        for connection in [&mut before, &mut after] {
            sqlx::query("ROLLBACK").execute(connection).await.unwrap();
        }
    }
}

/// Another store's append in flight, in another schema of the same
/// database, does not hold this schema's holes either: each schema has its
/// own log and order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_schemas_append_in_flight_does_not_hold_a_hole_of_this_schema() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let Some(other) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let first = append(&store, "first", 1).await;
    let mut a = connect().await;
    append_in_open_transaction(&mut a, &store, "a").await;
    let mut elsewhere = connect().await;
    let other_position = append_in_open_transaction(&mut elsewhere, &other, "x").await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    let second = append(&store, "second", 2).await;

    assert_eq!(follow(&store, 0).await, [first, second]);
    assert!(store.frontier_blockers().await.unwrap().is_empty());
    // The other schema's own frontier is held by it.
    assert_eq!(other.safe_position().await.unwrap(), None);
    sqlx::query("COMMIT").execute(&mut elsewhere).await.unwrap();
    assert_eq!(other.safe_position().await.unwrap(), Some(other_position));
}

/// Foreign transactions that begin and end all the time (an application
/// inserting into its own table on two connections, in autocommit) do not
/// hold a hole either, although some of them were running when a load took
/// its snapshot and have ended before the frontier looked at the lock
/// table: each of 30 holes, made just before one more append, is passed by
/// the first load after that append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_transactions_ending_all_the_time_do_not_hold_a_hole() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let application = support::fresh_schema_name();
    let pool = support::pool(2, "sourcery-postgres-test-churn").await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{application}\""))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE \"{application}\".orders (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            let stop = Arc::clone(&stop);
            let insert = format!("INSERT INTO \"{application}\".orders (at) VALUES (clock_timestamp())");
            tokio::spawn(async move {
                let mut inserted = 0_u64;
                while !stop.load(Ordering::SeqCst) {
                    sqlx::query(&insert).execute(&pool).await.expect("an insert");
                    inserted += 1;
                }
                inserted
            })
        })
        .collect();

    let mut a = connect().await;
    let mut last = append(&store, "first", 0).await;
    for round in 1..=30 {
        append_in_open_transaction(&mut a, &store, "a").await;
        sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
        let next = append(&store, "next", round).await;
        assert_eq!(
            follow(&store, last).await,
            [next],
            "round {round}: the hole is passed at once"
        );
        last = next;
    }
    stop.store(true, Ordering::SeqCst);
    for task in churn {
        let inserted = support::bounded("the churn", 30, task).await.unwrap();
        assert!(inserted > 0, "the application wrote while the holes were made");
    }
}

//! The reactor store on PostgreSQL: core's rules for every reactor store,
//! two processes sharing one database, hostile text, and scheduling a
//! large batch in one statement from two tasks at once.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use sourcery_core::reactor::{DeadLetter, ReactorStore as _};
use sourcery_core::schedule::{NewTimer, TimerId, TimerOutcome, TimerState};
use sourcery_core::store::{EventId, StoredEvent};
use sourcery_postgres::{Error, ReactorStore, Store};
use tokio::sync::Barrier;
use uuid::Uuid;

type PgStore = Store<String, serde_json::Value>;

/// A stored event at `position`, with metadata that exercises JSONB.
fn stored_event(position: i64) -> StoredEvent<String, i64, serde_json::Value> {
    StoredEvent {
        id: EventId::from_uuid(Uuid::from_u128(u128::from(position.unsigned_abs()) + 1000)),
        aggregate_kind: "order".to_owned(),
        aggregate_id: format!("order-{position}"),
        kind: "order.placed".to_owned(),
        position,
        schema_version: 2,
        data: br#"{"sku":"apple"}"#.to_vec(),
        metadata: serde_json::json!({
            "actor": "alice",
            "position": position,
            "nested": { "list": [1, 2, 3], "quote": "it's \"x\"", "none": null },
        }),
    }
}

/// Now, in whole milliseconds.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or_else(|_| Utc::now())
}

fn new_timer(reactor: &str, key: &str, n: u128, due: DateTime<Utc>, cause: i64) -> NewTimer<i64> {
    NewTimer {
        id: TimerId::from_uuid(Uuid::from_u128(n)),
        reactor: reactor.to_owned(),
        key: key.to_owned(),
        due,
        command: "invoice/invoice.remind".to_owned(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        cause,
    }
}

#[tokio::test]
async fn keeps_the_rules_of_reactor_stores() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let reactors = ReactorStore::new(&store);
    sourcery_core::test::reactor_store::check(&reactors, "pg-", [3, 7, 12], stored_event).await;
}

#[tokio::test]
async fn an_unmigrated_schema_is_reported() {
    let Some(pool) = support::pool(2, "sourcery-postgres-reactor").await else {
        return;
    };
    let store: PgStore = Store::with_schema(pool, support::fresh_schema_name()).unwrap();
    let reactors = ReactorStore::new(&store);
    assert!(matches!(
        reactors.next_due("r").await,
        Err(Error::NotMigrated { .. })
    ));
}

/// Two handles on two pools (as two processes) see each other's writes,
/// and a timer fired by both is finished once.
#[tokio::test]
async fn two_processes_share_timers_and_dead_letters() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let other_pool = support::pool(2, "sourcery-postgres-reactor").await.unwrap();
    let other: PgStore = Store::with_schema(other_pool, store.schema()).unwrap();
    let (a, b) = (ReactorStore::new(&store), ReactorStore::new(&other));
    let now = now();

    a.schedule(vec![new_timer("shared", "k", 1, now, 5)])
        .await
        .unwrap();
    let seen = b.due("shared", now, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].due, now);
    assert_eq!(b.next_due("shared").await.unwrap(), Some(now));

    let (first, second) = tokio::join!(
        a.finish(seen[0].id, TimerOutcome::Fired),
        b.finish(seen[0].id, TimerOutcome::Fired)
    );
    assert!(
        first.unwrap() ^ second.unwrap(),
        "exactly one of two runners finishing one timer records it"
    );
    assert_eq!(a.timers("shared").await.unwrap()[0].state, TimerState::Fired);

    b.park(DeadLetter::new("shared", stored_event(9), "boom", 3, now))
        .await
        .unwrap();
    let letters = a.dead_letters("shared").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event, stored_event(9));
    assert!(a.request_retry("shared", 9).await.unwrap());
    assert!(b.dead_letters("shared").await.unwrap()[0].retry_requested);
    assert!(b.discard("shared", 9).await.unwrap());
    assert!(a.dead_letters("shared").await.unwrap().is_empty());
}

/// Quotes, SQL, LIKE wildcards, backslashes, unicode and empty strings in
/// reactor names, keys, commands and errors come back as they went in;
/// NUL, which PostgreSQL text cannot hold, is refused on write and
/// selects nothing on read.
#[tokio::test]
async fn hostile_text_round_trips() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let reactors = ReactorStore::new(&store);
    let now = now();
    let texts = [
        "",
        "it's \"quoted\"; DROP TABLE sourcery_timers; --",
        "ünïcødé 🚀 日本語 \u{202e}rtl",
        "%_\\ \\\\ $1 \n\t\r",
        " ",
    ];
    for (n, text) in texts.iter().enumerate() {
        let n = u128::try_from(n).unwrap() + 1;
        let mut timer = new_timer(text, text, n, now, 1);
        (*text).clone_into(&mut timer.command);
        reactors.schedule(vec![timer.clone()]).await.unwrap();
        let stored = reactors.timers(text).await.unwrap();
        assert_eq!(stored.len(), 1, "{text:?}");
        assert_eq!(
            (
                stored[0].reactor.as_str(),
                stored[0].key.as_str(),
                stored[0].command.as_str()
            ),
            (*text, *text, *text)
        );
        reactors
            .finish(
                timer.id,
                TimerOutcome::Retry {
                    due: now,
                    error: (*text).to_owned(),
                },
            )
            .await
            .unwrap();
        let due = reactors.due(text, now, 10).await.unwrap();
        assert_eq!(due[0].last_error.as_deref(), Some(*text));
        assert_eq!(reactors.cancel(text, text, 2).await.unwrap(), 1, "{text:?}");

        let mut event = stored_event(i64::try_from(n).unwrap());
        (*text).clone_into(&mut event.aggregate_id);
        (*text).clone_into(&mut event.aggregate_kind);
        event.metadata = serde_json::Value::Object(
            [((*text).to_owned(), serde_json::Value::from(*text))]
                .into_iter()
                .collect(),
        );
        reactors
            .park(DeadLetter::new(*text, event.clone(), *text, 1, now))
            .await
            .unwrap();
        let letters = reactors.dead_letters(text).await.unwrap();
        assert_eq!(letters.len(), 1, "{text:?}");
        assert_eq!(
            (letters[0].reactor.as_str(), letters[0].error.as_str()),
            (*text, *text)
        );
        assert_eq!(letters[0].event, event);
    }
    // Each name selects only its own rows.
    assert_eq!(reactors.timers("%").await.unwrap().len(), 0);

    let refused = reactors.schedule(vec![new_timer("a\0b", "k", 99, now, 1)]).await;
    assert!(matches!(refused, Err(Error::Nul { .. })), "{refused:?}");
    let refused = reactors
        .park(DeadLetter::new("r", stored_event(1), "a\0b", 1, now))
        .await;
    assert!(matches!(refused, Err(Error::Nul { .. })), "{refused:?}");
    assert!(reactors.timers("a\0b").await.unwrap().is_empty());
    assert!(reactors.dead_letters("a\0b").await.unwrap().is_empty());
    assert_eq!(reactors.cancel("", "a\0b", 9).await.unwrap(), 0);
}

tokio::task_local! {
    /// The statements counted in the task's current scope.
    static STATEMENTS: Arc<AtomicUsize>;
}

/// Counts each statement sqlx runs (its `sqlx::query` event) in the scope
/// of [`STATEMENTS`]. Installed as the global subscriber, so that every
/// thread sees the same one (a scoped dispatcher misses events whose
/// callsite another thread registers first); outside a scope it does
/// nothing.
struct Statements;

impl tracing::Subscriber for Statements {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "sqlx::query" {
            let _ = STATEMENTS.try_with(|count| count.fetch_add(1, Ordering::SeqCst));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// `future`'s output and how many statements it ran.
async fn counting_statements<T>(future: impl Future<Output = T>) -> (T, usize) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Statements)
            .expect("no other test of the binary installs a global subscriber");
    });
    let count = Arc::new(AtomicUsize::new(0));
    let output = STATEMENTS.scope(Arc::clone(&count), future).await;
    (output, count.load(Ordering::SeqCst))
}

/// 1,000 timers are one statement; scheduled twice at once from two tasks
/// (one in another order), each is stored once, by one of the two
/// statements: both insert in id order, so the second waits on the
/// first's first row and then skips them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_timers_are_one_statement_and_stored_once_under_concurrency() {
    let Some(store) = support::store_with::<String, serde_json::Value>(1).await else {
        return;
    };
    let reactors = ReactorStore::new(&store);
    let now = now();
    let timers: Vec<_> = (1..=1000)
        .map(|n| new_timer("bulk", &format!("k{}", n % 7), n, now, i64::try_from(n).unwrap()))
        .collect();

    // Prepared once on the pool's one connection, so that the counted call
    // is one exchange: Bind, Execute, Sync and the answer.
    reactors
        .schedule(vec![new_timer("warm-up", "k", 5000, now, 1)])
        .await
        .unwrap();
    let (scheduled, statements) = counting_statements(reactors.schedule(timers[..10].to_vec())).await;
    scheduled.unwrap();
    assert_eq!(statements, 1, "a batch is one statement");
    let (scheduled, statements) = counting_statements(reactors.schedule(timers.clone())).await;
    scheduled.unwrap();
    assert_eq!(statements, 1, "1,000 timers are one statement");
    let table = format!("\"{}\".sourcery_timers", store.schema());
    sqlx::query(&format!("DELETE FROM {table} WHERE reactor = 'bulk'"))
        .execute(store.pool())
        .await
        .unwrap();

    // Two processes, each with its own pool.
    let barrier = Arc::new(Barrier::new(2));
    let mut tasks = Vec::new();
    for reversed in [false, true] {
        let pool = support::pool(1, "sourcery-postgres-reactor").await.unwrap();
        let store: PgStore = Store::with_schema(pool, store.schema()).unwrap();
        let reactors = ReactorStore::new(&store);
        let mut batch = timers.clone();
        if reversed {
            batch.reverse();
        }
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let (scheduled, statements) = counting_statements(reactors.schedule(batch)).await;
            scheduled.map(|()| statements)
        }));
    }
    for task in tasks {
        let statements = support::bounded("schedule", 60, task).await.unwrap().unwrap();
        // The first statement on a fresh connection is prepared first
        // (sqlx's Parse and Describe), still one statement.
        assert_eq!(statements, 1);
    }
    let (rows, ids, transactions): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT id), count(DISTINCT xmin::text) FROM {table} WHERE reactor = 'bulk'"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((rows, ids), (1000, 1000), "each timer stored once");
    assert_eq!(transactions, 1, "all by one of the two statements");
    let stored = reactors.timers("bulk").await.unwrap();
    let expected: Vec<_> = timers.iter().map(|timer| timer.id).collect();
    assert_eq!(stored.iter().map(|timer| timer.id).collect::<Vec<_>>(), expected);
    assert!(
        stored
            .iter()
            .all(|timer| timer.state == TimerState::Pending && timer.due == now)
    );
}

/// Times keep microseconds; rows changed by hand into values the store
/// cannot read are errors, not panics.
#[tokio::test]
async fn microseconds_round_trip_and_bad_rows_are_errors() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let reactors = ReactorStore::new(&store);
    let due = DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap();
    reactors
        .schedule(vec![new_timer(
            "micros",
            "k",
            1,
            due + TimeDelta::nanoseconds(789),
            1,
        )])
        .await
        .unwrap();
    assert_eq!(reactors.timers("micros").await.unwrap()[0].due, due);
    assert_eq!(reactors.next_due("micros").await.unwrap(), Some(due));

    let table = format!("\"{}\".sourcery_timers", store.schema());
    sqlx::query(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT sourcery_timers_state_check, \
                             DROP CONSTRAINT sourcery_timers_attempts_check"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!("UPDATE {table} SET state = 'exploded'"))
        .execute(store.pool())
        .await
        .unwrap();
    let read = reactors.timers("micros").await;
    assert!(
        matches!(&read, Err(Error::StoredTimerState { found, .. }) if found == "exploded"),
        "{read:?}"
    );
    sqlx::query(&format!("UPDATE {table} SET state = 'pending', attempts = -1"))
        .execute(store.pool())
        .await
        .unwrap();
    let read = reactors.due("micros", due, 1).await;
    assert!(
        matches!(read, Err(Error::StoredAttempts { found: -1, .. })),
        "{read:?}"
    );
}

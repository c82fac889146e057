//! Reactors' timers and dead letters in the SQLite file: the rules every
//! reactor store keeps, kept across reopening the file and between two
//! stores opened on it, with any text, and stored values the store never
//! writes refused with typed errors.

use std::path::Path;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sourcery_core::reactor::{DeadLetter, ReactorStore as _};
use sourcery_core::schedule::{NewTimer, Timer, TimerId, TimerOutcome, TimerState};
use sourcery_core::store::{EventId, StoredEvent};
use sourcery_sqlite::{Error, ReactorStore, Store};

type Metadata = serde_json::Value;

/// A stored event at `position` whose metadata has something of every JSON
/// shape, and whose data is not UTF-8.
fn stored_event(position: i64) -> StoredEvent<String, i64, Metadata> {
    let byte = u8::try_from(position).unwrap_or(u8::MAX);
    StoredEvent {
        id: EventId::from_bytes([byte; 16]),
        aggregate_kind: "order".to_owned(),
        aggregate_id: format!("order-{position}"),
        kind: "order.placed".to_owned(),
        position,
        schema_version: 2,
        data: vec![0, 159, 146, 150, byte],
        metadata: serde_json::json!({
            "correlation_id": format!("c-{position}"),
            "user": null,
            "tags": ["a", "b"],
            "nested": { "n": 1.5, "ok": true },
        }),
    }
}

/// Now, in whole milliseconds (what the store keeps).
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

fn timer(n: u128, reactor: &str, key: &str, due: DateTime<Utc>, cause: i64) -> NewTimer<i64> {
    NewTimer {
        id: TimerId::from_uuid(uuid::Uuid::from_u128(n)),
        reactor: reactor.to_owned(),
        key: key.to_owned(),
        due,
        command: "order/order.cancel".to_owned(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        cause,
    }
}

async fn open(path: &Path) -> Store<String, Metadata> {
    Store::open(path).await.expect("the store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_rules_of_reactor_stores() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(&dir.path().join("reactors.db")).await;
    sourcery_core::test::reactor_store::check(&store.reactors(), "sqlite-", [3, 7, 12], stored_event).await;
}

#[tokio::test]
async fn keeps_the_rules_of_reactor_stores_in_memory() {
    let store: Store<String, Metadata> = Store::open_in_memory().await.expect("the store opens");
    sourcery_core::test::reactor_store::check(&store.reactors(), "memory-", [3, 7, 12], stored_event).await;
}

/// Timers of "reminders" in every state (fired, failed, retried, cancelled)
/// and two dead letters, one with a retry requested.
async fn write_timers_and_letters(reactors: &ReactorStore<String, Metadata>, now: DateTime<Utc>) {
    reactors
        .schedule(vec![
            timer(1, "reminders", "a", now, 1),
            timer(2, "reminders", "b", now + TimeDelta::seconds(1), 1),
            timer(3, "reminders", "c", now + TimeDelta::seconds(2), 2),
            timer(4, "reminders", "d", now + TimeDelta::days(14), 2),
        ])
        .await
        .expect("the timers are scheduled");
    assert!(
        reactors
            .finish(timer_id(1), TimerOutcome::Fired)
            .await
            .expect("fired")
    );
    let retry = TimerOutcome::Retry {
        due: now + TimeDelta::minutes(5),
        error: "the stock is locked".to_owned(),
    };
    assert!(reactors.finish(timer_id(2), retry).await.expect("retried"));
    let failed = TimerOutcome::Failed {
        error: "the stock is gone".to_owned(),
    };
    assert!(reactors.finish(timer_id(3), failed).await.expect("failed"));
    assert_eq!(reactors.cancel("reminders", "d", 3).await.expect("cancelled"), 1);
    reactors
        .park(DeadLetter::new(
            "reminders",
            stored_event(5),
            "no such product",
            3,
            now,
        ))
        .await
        .expect("parked");
    reactors
        .park(DeadLetter::new(
            "reminders",
            stored_event(9),
            "no such customer",
            4,
            now,
        ))
        .await
        .expect("parked");
    assert!(
        reactors
            .request_retry("reminders", 9)
            .await
            .expect("a retry request")
    );
}

/// Timers in every state and dead letters (one with a retry requested) as
/// a reopened file reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_and_dead_letters_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reactors.db");
    let now = now();
    let (timers, letters) = {
        let store = open(&path).await;
        let reactors = store.reactors();
        write_timers_and_letters(&reactors, now).await;
        let timers = reactors.timers("reminders").await.expect("the timers list");
        let letters = reactors
            .dead_letters("reminders")
            .await
            .expect("the letters list");
        (timers, letters)
    };
    let states: Vec<TimerState> = timers.iter().map(|timer| timer.state).collect();
    assert_eq!(
        states,
        [
            TimerState::Fired,
            TimerState::Failed,
            TimerState::Pending,
            TimerState::Cancelled
        ],
        "earliest due first: {timers:?}"
    );
    assert_eq!(timers[2].attempts, 1);
    assert_eq!(timers[2].last_error.as_deref(), Some("the stock is locked"));

    let store = open(&path).await;
    let reactors = store.reactors();
    assert_eq!(
        reactors.timers("reminders").await.expect("the timers list"),
        timers
    );
    assert_eq!(
        reactors
            .dead_letters("reminders")
            .await
            .expect("the letters list"),
        letters
    );
    assert!(letters[1].retry_requested && !letters[0].retry_requested);
    assert_eq!(letters[0].event, stored_event(5));
    assert_eq!(
        reactors.next_due("reminders").await.expect("the next due time"),
        Some(now + TimeDelta::minutes(5))
    );
    // The stored timers are still known: scheduled again, nothing changes.
    reactors
        .schedule(vec![timer(1, "reminders", "a", now, 1)])
        .await
        .expect("scheduled again");
    assert_eq!(
        reactors.timers("reminders").await.expect("the timers list"),
        timers
    );
}

fn timer_id(n: u128) -> TimerId {
    TimerId::from_uuid(uuid::Uuid::from_u128(n))
}

/// Two stores opened on one file (each with its own connections, as two
/// processes have): what one's reactor store writes, the other's reads and
/// acts on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_others_timers_and_letters() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reactors.db");
    let first: ReactorStore<String, Metadata> = open(&path).await.reactors();
    let second: ReactorStore<String, Metadata> = open(&path).await.reactors();
    let now = now();

    first
        .schedule(vec![timer(1, "shared", "k", now, 4)])
        .await
        .expect("scheduled");
    let due = second.due("shared", now, 10).await.expect("the due timers");
    assert_eq!(due.len(), 1, "{due:?}");
    assert!(
        second
            .finish(due[0].id, TimerOutcome::Fired)
            .await
            .expect("fired")
    );
    assert!(
        !first
            .finish(due[0].id, TimerOutcome::Fired)
            .await
            .expect("finish"),
        "fired by the other store already"
    );
    assert_eq!(first.next_due("shared").await.expect("next due"), None);

    second
        .schedule(vec![timer(2, "shared", "k", now, 4)])
        .await
        .expect("scheduled");
    assert_eq!(first.cancel("shared", "k", 5).await.expect("cancelled"), 1);
    assert!(
        second
            .due("shared", now, 10)
            .await
            .expect("the due timers")
            .is_empty()
    );

    first
        .park(DeadLetter::new("shared", stored_event(4), "failed", 2, now))
        .await
        .expect("parked");
    assert!(second.request_retry("shared", 4).await.expect("a retry request"));
    let letters = first.dead_letters("shared").await.expect("the letters");
    assert!(letters.len() == 1 && letters[0].retry_requested, "{letters:?}");
    assert!(second.discard("shared", 4).await.expect("discarded"));
    assert!(
        first
            .dead_letters("shared")
            .await
            .expect("the letters")
            .is_empty()
    );
    assert!(!first.discard("shared", 4).await.expect("discard"));
}

/// Names, keys, commands and errors that are empty, quoted, SQL-looking
/// or far from ASCII come back as they went in, and names that look alike
/// (or like `LIKE` patterns) stay apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_text_round_trips() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(&dir.path().join("reactors.db")).await;
    let reactors = store.reactors();
    let now = now();
    let texts = [
        "",
        " ",
        "%",
        "_",
        "'",
        "\"",
        "''; DROP TABLE sourcery_timers; --",
        "Robert'); DELETE FROM sourcery_dead_letters WHERE ('1' = '1",
        "naïve café — 反応器 🚀",
        "\u{202e}right-to-left\u{200d}",
        "line\nbreak\ttab\\backslash",
    ];
    let mut n = 0;
    for reactor in texts {
        for key in texts {
            n += 1;
            let mut new = timer(n, reactor, key, now, 1);
            new.command = format!("{key}/{reactor}");
            reactors.schedule(vec![new]).await.expect("scheduled");
        }
    }
    for (index, reactor) in texts.iter().enumerate() {
        let stored = reactors.timers(reactor).await.expect("the timers");
        let keys: Vec<&str> = stored.iter().map(|timer| timer.key.as_str()).collect();
        assert_eq!(keys, texts, "the timers of {reactor:?}, in id order");
        assert!(stored.iter().all(|timer| timer.reactor == *reactor
            && timer.command == format!("{}/{reactor}", timer.key)));
        // A key's cancellation touches that key of that reactor only.
        let key = texts[index % (texts.len() - 1) + 1];
        assert_eq!(reactors.cancel(reactor, key, 2).await.expect("cancelled"), 1);

        let id = stored[0].id;
        let error = format!("failed on {reactor}: {key}");
        assert!(
            reactors
                .finish(id, TimerOutcome::Failed { error: error.clone() })
                .await
                .expect("failed")
        );
        let failed: Vec<Timer<i64>> = reactors.timers(reactor).await.expect("the timers");
        assert_eq!(failed[0].last_error.as_deref(), Some(error.as_str()));

        let position = i64::try_from(index).expect("a position") + 1;
        let mut event = stored_event(position);
        event.aggregate_kind = (*reactor).to_owned();
        event.aggregate_id = key.to_owned();
        event.kind = format!("{key}.{reactor}");
        let letter = DeadLetter::new(*reactor, event, *reactor, 1, now);
        reactors.park(letter.clone()).await.expect("parked");
        assert_eq!(
            reactors.dead_letters(reactor).await.expect("the letters"),
            [letter]
        );
    }
    for reactor in texts {
        let pending = reactors.due(reactor, now, 100).await.expect("the due timers");
        assert_eq!(
            pending.len(),
            texts.len() - 2,
            "one cancelled, one failed: {pending:?}"
        );
    }
}

/// Times before 1970 and far ahead keep their milliseconds; finer parts
/// are dropped (rounded down).
#[tokio::test]
async fn times_keep_their_milliseconds() {
    let store: Store<String, Metadata> = Store::open_in_memory().await.expect("the store opens");
    let reactors = store.reactors();
    let before_1970 = DateTime::from_timestamp_millis(-1).expect("a time");
    let far = DateTime::from_timestamp_millis(253_402_300_799_999).expect("a time");
    let fine = DateTime::from_timestamp(1_000, 1_500_000).expect("a time");
    reactors
        .schedule(vec![
            timer(1, "times", "a", before_1970, 1),
            timer(2, "times", "b", far, 1),
            timer(3, "times", "c", fine, 1),
        ])
        .await
        .expect("scheduled");
    let dues: Vec<DateTime<Utc>> = reactors
        .timers("times")
        .await
        .expect("the timers")
        .iter()
        .map(|timer| timer.due)
        .collect();
    let fine_millis = DateTime::from_timestamp(1_000, 1_000_000).expect("a time");
    assert_eq!(dues, [before_1970, fine_millis, far]);
    assert_eq!(
        reactors.next_due("times").await.expect("next due"),
        Some(before_1970)
    );
}

/// Rows written by something other than the store, with values it never
/// writes, fail with typed errors naming the row and the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_store_never_writes_are_typed_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reactors.db");
    let store = open(&path).await;
    let reactors = store.reactors();
    let now = now();
    reactors
        .schedule(vec![
            timer(1, "bad-state", "k", now, 1),
            timer(2, "bad-attempts", "k", now, 1),
        ])
        .await
        .expect("scheduled");
    reactors
        .park(DeadLetter::new("bad-metadata", stored_event(3), "failed", 1, now))
        .await
        .expect("parked");
    {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        connection
            .execute_batch(
                "UPDATE sourcery_timers SET state = 'exploded' WHERE reactor = 'bad-state';
                 UPDATE sourcery_timers SET attempts = -1 WHERE reactor = 'bad-attempts';
                 UPDATE sourcery_dead_letters SET metadata = '{not json' WHERE reactor = 'bad-metadata';",
            )
            .expect("the rows are spoilt");
    }

    let error = reactors.timers("bad-state").await.expect_err("a bad state");
    assert!(
        matches!(&error, Error::DecodeTimer { reactor, column: "state", timer, .. }
            if reactor == "bad-state" && *timer == timer_id(1).to_string()),
        "{error:?}"
    );
    let error = reactors
        .finish(timer_id(2), TimerOutcome::Fired)
        .await
        .expect_err("bad attempts");
    assert!(
        matches!(
            &error,
            Error::DecodeTimer {
                column: "attempts",
                ..
            }
        ),
        "{error:?}"
    );
    let (state, attempts): (String, i64) = rusqlite::Connection::open(&path)
        .expect("the database opens")
        .query_row(
            "SELECT state, attempts FROM sourcery_timers WHERE reactor = 'bad-attempts'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the row reads");
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", -1),
        "the failed finish changed nothing"
    );
    let error = reactors
        .dead_letters("bad-metadata")
        .await
        .expect_err("bad metadata");
    assert!(
        matches!(&error, Error::DecodeDeadLetter { reactor, position: 3, column: "metadata", .. }
            if reactor == "bad-metadata"),
        "{error:?}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the JSON error is the source"
    );
}

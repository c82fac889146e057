//! Subscriptions on PostgreSQL: the conformance suite, the in-flight gap,
//! checkpoints, the stall warning and a load test with several writers and
//! subscribers.

use crate::support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::runner::ProjectionRunner;
use sourcery_core::store::{EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_core::subscription::{Subscribe, Subscription};
use sourcery_postgres::{CheckpointStore, Store, SubscriptionOptions};
use sqlx::{Connection as _, PgConnection};
use support::Foreign;

type PgStore = Store<String, ()>;

#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: u64,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "subscriptions.noted";
}

fn noted(n: u64) -> PersistableEvent<()> {
    PersistableEvent {
        id: EventId::new(),
        kind: Noted::KIND.to_owned(),
        schema_version: 1,
        data: serde_json::to_vec(&Noted { n }).unwrap(),
        metadata: (),
    }
}

fn number(data: &[u8]) -> u64 {
    serde_json::from_slice::<Noted>(data).unwrap().n
}

async fn append(store: &PgStore, stream: &str, numbers: impl IntoIterator<Item = u64>) -> i64 {
    let batch = NonEmpty::from_vec(numbers.into_iter().map(noted).collect()).unwrap();
    support::bounded(
        "append",
        30,
        store.append("noter", &stream.to_owned(), None, batch),
    )
    .await
    .expect("append")
    .last_position
}

/// A store that polls often, so that waits in these tests stay short.
async fn quick_store(connections: u32, options: SubscriptionOptions) -> Option<PgStore> {
    let store: PgStore = support::store_with(connections).await?;
    Some(store.with_subscription_options(options.poll_interval(Duration::from_millis(20))))
}

async fn next_position(what: &str, subscription: &mut Subscription<PgStore>) -> i64 {
    support::bounded(what, 30, subscription.next())
        .await
        .expect("the subscription goes on")
        .expect("no store error")
        .position
}

/// Asserts that the subscription delivers nothing for a while (ten poll
/// intervals and more): only a bounded wait can show that nothing comes.
async fn assert_quiet(subscription: &mut Subscription<PgStore>) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await {
        panic!("expected nothing yet, got {item:?}");
    }
}

/// Opens a transaction on `connection` and appends one event in it without
/// committing (the store never does this; it freezes the race). Returns the
/// position drawn.
async fn append_in_open_transaction(connection: &mut PgConnection, store: &PgStore, n: u64) -> i64 {
    sqlx::query("BEGIN").execute(&mut *connection).await.unwrap();
    let written: i64 = sqlx::query_scalar(store.append_statement())
        .bind("noter")
        .bind("open")
        .bind("any")
        .bind(None::<i64>)
        .bind(vec![Noted::KIND])
        .bind(vec![serde_json::to_vec(&Noted { n }).unwrap()])
        .bind(vec!["null"])
        .bind(vec![1_i32])
        .bind(vec![uuid::Uuid::now_v7()])
        .fetch_one(&mut *connection)
        .await
        .expect("an append in an open transaction");
    written
}

async fn connect() -> PgConnection {
    PgConnection::connect(&support::database_url().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_waits_for_an_append_in_flight_then_delivers_in_order() {
    let Some(store) = quick_store(10, SubscriptionOptions::default()).await else {
        return;
    };
    let first = append(&store, "first", [1]).await;
    let mut subscription = store.subscribe(vec![EventFilter::for_event(Noted::KIND)], None);
    assert_eq!(next_position("history", &mut subscription).await, first);

    // A draws a lower position and stays open; B commits a higher one.
    let mut a = connect().await;
    let a_position = append_in_open_transaction(&mut a, &store, 2).await;
    let b_position = append(&store, "b", [3]).await;
    assert!(a_position < b_position);
    assert_quiet(&mut subscription).await;
    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    assert_eq!(next_position("A", &mut subscription).await, a_position);
    assert_eq!(next_position("B", &mut subscription).await, b_position);

    // Again, with A rolling back: B only.
    let rolled_back = append_in_open_transaction(&mut a, &store, 4).await;
    let b_position = append(&store, "b", [5]).await;
    assert!(rolled_back < b_position);
    assert_quiet(&mut subscription).await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    assert_eq!(
        next_position("B after the rollback", &mut subscription).await,
        b_position
    );

    // And a subscriber in another process (another store value: woken by
    // LISTEN/NOTIFY or its poll) sees the same.
    let other: PgStore =
        Store::with_schema(support::pool(4, "other").await.unwrap(), store.schema()).unwrap();
    let mut elsewhere = other.subscribe(vec![EventFilter::for_event(Noted::KIND)], Some(b_position));
    let live = append(&store, "b", [6]).await;
    assert_eq!(next_position("elsewhere", &mut elsewhere).await, live);
    assert_eq!(next_position("here", &mut subscription).await, live);
}

/// Collects `WARN` events as text.
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// One thread: the warning subscriber is set for this thread, where the
// follower runs.
#[tokio::test(flavor = "current_thread")]
async fn a_transaction_holding_the_frontier_back_is_named_in_a_warning() {
    let options = SubscriptionOptions::default().warn_on_stall_after(Duration::from_millis(200));
    let Some(store) = quick_store(10, options).await else {
        return;
    };
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _default = tracing::subscriber::set_default(Warnings(Arc::clone(&warnings)));
    let first = append(&store, "first", [1]).await;
    let mut a = connect().await;
    let a_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    append_in_open_transaction(&mut a, &store, 2).await;
    append(&store, "b", [3]).await;
    let mut subscription = store.subscribe(vec![EventFilter::for_event(Noted::KIND)], None);
    assert_eq!(next_position("history", &mut subscription).await, first);
    let named = format!("pid {a_pid}");
    support::bounded("the warning", 10, async {
        while !warnings.lock().unwrap().iter().any(|w| w.contains(&named)) {
            // Drives the follower (it reads, finds the frontier stuck, checks).
            let next = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
            assert!(next.is_err(), "nothing is delivered while A is open: {next:?}");
        }
    })
    .await;
    let count = warnings.lock().unwrap().len();
    // Rate-limited: at most one warning per threshold.
    let _ = tokio::time::timeout(Duration::from_millis(150), subscription.next()).await;
    assert_eq!(
        warnings.lock().unwrap().len(),
        count,
        "{:?}",
        warnings.lock().unwrap()
    );
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    assert!(next_position("B", &mut subscription).await > first);
}

/// Records every `n` it applies, in order.
#[derive(Debug, Default)]
struct Applied(Vec<u64>);

impl Projection for Applied {
    const KIND: &'static str = "applied";
    type Id = String;
    type Metadata = ();

    fn declare<S: EventStore<Id = String, Metadata = ()>>(
        events: ProjectionEvents<S, Self>,
    ) -> ProjectionEvents<S, Self> {
        events.event::<Noted>()
    }
}

impl ApplyProjection<Noted> for Applied {
    fn apply_projection(&mut self, _: &String, event: &Noted, (): &()) {
        self.0.push(event.n);
    }
}

/// Waits (bounded) until a backend of `application_name` holds a shared
/// advisory lock: a store's `LISTEN` connection has announced itself.
async fn wait_for_listener(observer: &mut PgConnection, application_name: &str) {
    support::bounded("a LISTEN connection's lock", 30, async {
        loop {
            let held: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.granted \
                   AND a.application_name = $1)",
            )
            .bind(application_name)
            .fetch_one(&mut *observer)
            .await
            .unwrap();
            if held {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A writer sends no `NOTIFY` while no other store listens (its own
/// listener does not count), and notifies again soon after another store
/// starts to listen, whose subscriber is then woken by it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doorbell_rings_only_while_another_store_listens() {
    let Some(url) = support::database_url() else {
        return;
    };
    let schema = support::fresh_schema_name();
    let (writer_name, other_name) = (format!("w{schema}"), format!("o{schema}"));
    let writer: PgStore = Store::with_schema(support::pool(4, &writer_name).await.unwrap(), &schema)
        .unwrap()
        .with_subscription_options(SubscriptionOptions::default().poll_interval(Duration::from_millis(20)));
    writer.migrate().await.unwrap();
    let mut observer = connect().await;

    // The writer's own subscriber: its LISTEN connection holds the lock.
    let mut here = writer.subscribe(vec![EventFilter::for_event(Noted::KIND)], None);
    wait_for_listener(&mut observer, &writer_name).await;

    // A bare LISTEN overhears NOTIFYs without counting as a listener.
    let mut ear = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    ear.listen(writer.notification_channel()).await.unwrap();
    let mut last = 0;
    for n in 0..3 {
        last = append(&writer, "quiet", [n]).await;
    }
    assert_eq!(next_position("here", &mut here).await, last - 2);
    // Bounded: only a wait can show that nothing comes (the doorbell looks
    // again every 50 ms).
    if let Ok(notification) = tokio::time::timeout(Duration::from_millis(300), ear.recv()).await {
        panic!("a NOTIFY while no other store listens: {notification:?}");
    }

    // Another store listens; its subscriber does not poll (an hour), so
    // only a NOTIFY wakes it for appends after it started.
    let other: PgStore = Store::with_schema(support::pool(4, &other_name).await.unwrap(), &schema)
        .unwrap()
        .with_subscription_options(SubscriptionOptions::default().poll_interval(Duration::from_secs(3600)));
    let mut elsewhere = other.subscribe(vec![EventFilter::for_event(Noted::KIND)], Some(last));
    wait_for_listener(&mut observer, &other_name).await;
    let live = append(&writer, "loud", [3]).await;
    let notification = support::bounded("a NOTIFY once another store listens", 30, ear.recv())
        .await
        .unwrap();
    assert_eq!(notification.channel(), writer.notification_channel());
    assert_eq!(next_position("elsewhere", &mut elsewhere).await, live);
    let later = append(&writer, "loud", [4]).await;
    assert_eq!(next_position("elsewhere, later", &mut elsewhere).await, later);
}

/// 8 writers × 5,000 events (batches of 10) on 100 streams, 3 subscribers
/// and a runner restarted twice while the writers run: every subscriber
/// receives every event once, in the same order, and the runner's state
/// equals a full replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_every_subscriber_sees_every_event_once_in_one_order() {
    const WRITERS: u64 = 8;
    const EVENTS_PER_WRITER: u64 = 5_000;
    const BATCH: u64 = 10;
    const STREAMS: u64 = 100;
    const TOTAL: u64 = WRITERS * EVENTS_PER_WRITER;
    let Some(store) = quick_store(20, SubscriptionOptions::default()).await else {
        return;
    };
    let total = usize::try_from(TOTAL).unwrap();
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let mut subscription = store.subscribe(vec![EventFilter::for_event(Noted::KIND)], None);
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(total);
                while seen.len() < total {
                    let event = subscription.next().await.expect("goes on").expect("no error");
                    seen.push((event.position, number(&event.data)));
                }
                seen
            })
        })
        .collect();

    let (progress, mut appended) = tokio::sync::watch::channel(0_u64);
    let progress = Arc::new(progress);
    let start = Arc::new(tokio::sync::Barrier::new(usize::try_from(WRITERS).unwrap()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let progress = Arc::clone(&progress);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                for batch in 0..EVENTS_PER_WRITER / BATCH {
                    let first = writer * EVENTS_PER_WRITER + batch * BATCH;
                    let stream = format!("s{}", (writer * 13 + batch) % STREAMS);
                    append(&store, &stream, first..first + BATCH).await;
                    progress.send_modify(|count| *count += BATCH);
                }
            })
        })
        .collect();

    let checkpoints = CheckpointStore::new(&store);
    let runner = || {
        ProjectionRunner::new(store.clone(), checkpoints.clone())
            .checkpoint_every(NonZeroUsize::new(500).unwrap())
    };
    let mut projection = Applied::default();
    for restart_at in [TOTAL / 3, 2 * TOTAL / 3] {
        let running = runner().start(projection).unwrap();
        support::bounded(
            "the writers' progress",
            120,
            appended.wait_for(|&n| n >= restart_at),
        )
        .await
        .unwrap();
        projection = support::bounded("a runner stop", 30, running.stop())
            .await
            .expect("stop");
    }
    let running = runner().start(projection).unwrap();
    for writer in writers {
        support::bounded("a writer", 120, writer).await.unwrap();
    }
    let all = store
        .load_events(&[EventFilter::for_event(Noted::KIND)])
        .await
        .unwrap();
    assert_eq!(all.len(), total);
    let expected: Vec<(i64, u64)> = all.iter().map(|e| (e.position, number(&e.data))).collect();
    for subscriber in subscribers {
        let seen = support::bounded("a subscriber", 120, subscriber).await.unwrap();
        assert!(seen == expected, "a subscriber saw another sequence than the log");
    }
    let last = expected.last().unwrap().0;
    running
        .wait_for(last, Duration::from_secs(60))
        .await
        .expect("the runner catches up");
    let projection = running.stop().await.expect("stop");
    let replay: Vec<u64> = expected.iter().map(|&(_, n)| n).collect();
    assert!(projection.0 == replay, "the runner's state is not a full replay");
    assert_eq!(replay.iter().collect::<BTreeSet<_>>().len(), total);
}

/// Races `racers` optimistic appends that all expect `stream` to be new:
/// one wins; the losers fail on the unique index after drawing positions.
/// Returns how many lost.
async fn race_on_a_new_stream(store: &PgStore, stream: &str, racers: u64) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(usize::try_from(racers).unwrap()));
    let tasks: Vec<_> = (0..racers)
        .map(|n| {
            let store = store.clone();
            let start = Arc::clone(&start);
            let stream = stream.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                store
                    .append_expecting_new("noter", &stream, NonEmpty::new(noted(100 + n)))
                    .await
            })
        })
        .collect();
    let mut lost = 0;
    for task in tasks {
        match support::bounded("a racer", 30, task).await.unwrap() {
            Ok(_) => {}
            Err(sourcery_core::store::AppendError::Conflict(_)) => lost += 1,
            Err(error) => panic!("a racer failed: {error:?}"),
        }
    }
    assert_eq!(lost, usize::try_from(racers - 1).unwrap(), "one racer wins");
    lost
}

/// Whether the last position drawn in the store's schema belongs to no
/// committed event: a hole at the top of the log.
async fn hole_at_the_top(store: &PgStore) -> bool {
    sqlx::query_scalar(&format!(
        "SELECT s.last_value > coalesce((SELECT max(position) FROM \"{0}\".sourcery_events), 0) \
         FROM \"{0}\".sourcery_positions s",
        store.schema()
    ))
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Issue 21, as reported: 8 optimistic appends race on one stream and the
/// losers leave a hole (or, in the other half, there is none); then a
/// transaction of another schema or of another database takes a
/// transaction id and stays open; then the store takes one more append. A
/// live subscriber and a projection runner reach it while the foreign
/// transaction is still open, and `safe_position()` is the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_transactions_hold_neither_subscribers_nor_runners() {
    for place in Foreign::ALL {
        for with_hole in [false, true] {
            let case = format!("{place:?}, with a hole: {with_hole}");
            let Some(store) = quick_store(12, SubscriptionOptions::default()).await else {
                return;
            };
            let first = append(&store, "first", [1]).await;
            let mut subscription = store.subscribe(vec![EventFilter::for_event(Noted::KIND)], None);
            assert_eq!(next_position("history", &mut subscription).await, first);
            let checkpoints = CheckpointStore::new(&store);
            let running = ProjectionRunner::new(store.clone(), checkpoints)
                .start(Applied::default())
                .unwrap();

            if with_hole {
                // The winner's event may be the last drawn; race again (on
                // another stream) until a loser's position is on top.
                let mut races = 0;
                loop {
                    race_on_a_new_stream(&store, &format!("raced{races}"), 8).await;
                    races += 1;
                    if hole_at_the_top(&store).await {
                        break;
                    }
                    assert!(races < 20, "{case}: no race left a hole on top in {races} tries");
                }
            } else {
                append(&store, "second", [2]).await;
                assert!(!hole_at_the_top(&store).await, "{case}");
            }
            let mut foreign = support::foreign_transaction(place).await;
            let last = append(&store, "last", [3]).await;

            let all = store
                .load_events(&[EventFilter::for_event(Noted::KIND)])
                .await
                .unwrap();
            assert_eq!(
                all.last().map(|event| event.position),
                Some(last),
                "{case}: followers reach the head"
            );
            assert_eq!(store.safe_position().await.unwrap(), Some(last), "{case}");
            assert!(store.frontier_blockers().await.unwrap().is_empty(), "{case}");

            let mut delivered = Vec::new();
            while delivered.last() != Some(&last) {
                delivered.push(next_position(&case, &mut subscription).await);
            }
            let committed: Vec<i64> = all.iter().map(|event| event.position).skip(1).collect();
            assert_eq!(
                delivered, committed,
                "{case}: the subscriber got every event after the first, in order"
            );
            support::bounded("the runner", 30, running.wait_for(last, Duration::from_secs(20)))
                .await
                .unwrap_or_else(|error| panic!("{case}: the runner reaches the head: {error:?}"));
            let projection = running.stop().await.expect("stop");
            assert_eq!(projection.0.len(), all.len(), "{case}");

            sqlx::query("ROLLBACK").execute(&mut foreign).await.unwrap();
        }
    }
}

/// A transaction left open holds the runner at the frontier: its status
/// names the transaction's backend, and clears once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_names_the_transaction_that_stalls_it_in_its_status() {
    let options = SubscriptionOptions::default().warn_on_stall_after(Duration::from_millis(200));
    let Some(store) = quick_store(10, options).await else {
        return;
    };
    let first = append(&store, "first", [1]).await;
    let runner = ProjectionRunner::new(
        store.clone(),
        sourcery_core::checkpoint::inmemory::CheckpointStore::new(),
    )
    .start(Applied::default())
    .unwrap();
    runner
        .wait_for(first, Duration::from_secs(15))
        .await
        .expect("caught up");
    assert_eq!(runner.status().stalled, None);

    let mut a = connect().await;
    let a_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    append_in_open_transaction(&mut a, &store, 2).await;
    let later = append(&store, "b", [3]).await;
    let stall = support::bounded("the stall in the runner's status", 15, async {
        loop {
            if let Some(stall) = runner.status().stalled {
                return stall;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stall.pid, Some(a_pid), "the open transaction's backend is named");
    assert!(runner.status().position < Some(later), "held at the frontier");

    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    runner
        .wait_for(later, Duration::from_secs(15))
        .await
        .expect("moves on");
    support::bounded("the stall cleared", 15, async {
        while runner.status().stalled.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let applied = runner.stop().await.expect("stop");
    assert_eq!(applied.0, vec![1, 3]);
}

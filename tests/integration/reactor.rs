//! Reactors and process managers on the in-memory store: one effect per
//! event however often it is delivered, causation recorded, poison events
//! parked and retried, timers fired once on a test clock, processes
//! decided like aggregates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::checkpoint::inmemory::CheckpointStore as Checkpoints;
use sourcery::reactor::{
    self, Cause, Decision, OnFailure, ProcessManager, ReactorRunner, ReactorStats, ReactorStore as _,
    RunningReactor,
};
use sourcery::runner::RunnerError;
use sourcery::schedule::{ScheduledCommand, TestClock, TimerState};
use sourcery::store::{EventFilter, EventStore, inmemory};
use sourcery::test::ProcessTest;
use sourcery::{Aggregate, Apply, DomainEvent, EventMetadata, Handle, HandleCreate, Repository};

const WAIT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

// ANCHOR: domain
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    sku: String,
    quantity: u32,
}
impl DomainEvent for OrderPlaced {
    const KIND: &'static str = "order.placed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPaid;
impl DomainEvent for OrderPaid {
    const KIND: &'static str = "order.paid";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCancelled {
    reason: String,
}
impl DomainEvent for OrderCancelled {
    const KIND: &'static str = "order.cancelled";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentReminded;
impl DomainEvent for PaymentReminded {
    const KIND: &'static str = "order.reminded";
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum OrderError {
    #[error("the order is closed")]
    Closed,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = OrderError, events(OrderPlaced, OrderPaid, OrderCancelled, PaymentReminded))]
struct Order {
    paid: bool,
    cancelled: bool,
    reminders: u32,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, _: &OrderPlaced) {}
}
impl Apply<OrderPaid> for Order {
    fn apply(&mut self, _: &OrderPaid) {
        self.paid = true;
    }
}
impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, _: &OrderCancelled) {
        self.cancelled = true;
    }
}
impl Apply<PaymentReminded> for Order {
    fn apply(&mut self, _: &PaymentReminded) {
        self.reminders += 1;
    }
}

struct Place {
    sku: &'static str,
    quantity: u32,
}
impl HandleCreate<Place> for Order {
    fn handle_create(command: &Place) -> Result<Vec<OrderEvent>, OrderError> {
        Ok(vec![
            OrderPlaced {
                sku: command.sku.to_owned(),
                quantity: command.quantity,
            }
            .into(),
        ])
    }
}

struct Pay;
impl Handle<Pay> for Order {
    fn handle(&self, _: &Pay) -> Result<Vec<OrderEvent>, OrderError> {
        if self.cancelled {
            return Err(OrderError::Closed);
        }
        Ok(vec![OrderPaid.into()])
    }
}

/// Cancels an unpaid order; a paid one stays (nothing happens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CancelUnpaid {
    reason: String,
}
impl ScheduledCommand for CancelUnpaid {
    const KIND: &'static str = "order.cancel-unpaid";
}
impl Handle<CancelUnpaid> for Order {
    fn handle(&self, command: &CancelUnpaid) -> Result<Vec<OrderEvent>, OrderError> {
        if self.paid || self.cancelled {
            return Ok(vec![]);
        }
        Ok(vec![
            OrderCancelled {
                reason: command.reason.clone(),
            }
            .into(),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remind;
impl ScheduledCommand for Remind {
    const KIND: &'static str = "order.remind";
}
impl Handle<Remind> for Order {
    fn handle(&self, _: &Remind) -> Result<Vec<OrderEvent>, OrderError> {
        Ok(vec![PaymentReminded.into()])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockAdded {
    quantity: u32,
}
impl DomainEvent for StockAdded {
    const KIND: &'static str = "stock.added";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReserved {
    quantity: u32,
}
impl DomainEvent for StockReserved {
    const KIND: &'static str = "stock.reserved";
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum StockError {
    #[error("only {0} left")]
    Short(u32),
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = StockError, events(StockAdded, StockReserved))]
struct Stock {
    available: u32,
    reservations: u32,
}
impl Apply<StockAdded> for Stock {
    fn apply(&mut self, event: &StockAdded) {
        self.available += event.quantity;
    }
}
impl Apply<StockReserved> for Stock {
    fn apply(&mut self, event: &StockReserved) {
        self.available -= event.quantity;
        self.reservations += 1;
    }
}

struct AddStock(u32);
impl HandleCreate<AddStock> for Stock {
    fn handle_create(command: &AddStock) -> Result<Vec<StockEvent>, StockError> {
        Ok(vec![StockAdded { quantity: command.0 }.into()])
    }
}

#[derive(Debug, PartialEq)]
struct Reserve {
    quantity: u32,
}
impl Handle<Reserve> for Stock {
    fn handle(&self, command: &Reserve) -> Result<Vec<StockEvent>, StockError> {
        if command.quantity > self.available {
            return Err(StockError::Short(self.available));
        }
        Ok(vec![
            StockReserved {
                quantity: command.quantity,
            }
            .into(),
        ])
    }
}
// ANCHOR_END: domain

type Store = inmemory::Store<String, EventMetadata>;
type Reactors = reactor::inmemory::ReactorStore<String, u64, EventMetadata>;

fn runner(
    store: &Store,
    checkpoints: &Checkpoints<u64>,
    reactors: &Reactors,
    clock: &TestClock,
) -> ReactorRunner<Store, Checkpoints<u64>, Reactors> {
    ReactorRunner::new(
        Repository::new(store.clone()),
        checkpoints.clone(),
        reactors.clone(),
    )
    .clock(clock.clone())
    .attempts(3)
    .backoff(Duration::from_millis(1), Duration::from_millis(5))
    .timer_poll(Duration::from_millis(20))
}

// ANCHOR: reactor
/// Reserves stock for every order placed.
fn reservations() -> reactor::Reactor<Store> {
    reactor::Reactor::<Store>::new("stock-reservations").on(|placed: &OrderPlaced, _, out| {
        out.execute::<Stock, _>(
            placed.sku.clone(),
            Reserve {
                quantity: placed.quantity,
            },
        );
        Ok::<_, std::convert::Infallible>(())
    })
}
// ANCHOR_END: reactor

async fn place(repository: &Repository<Store>, order: &str, sku: &'static str, quantity: u32) -> u64 {
    repository
        .create::<Order, _>(&order.to_owned(), &Place { sku, quantity }, EventMetadata::new())
        .await
        .expect("placed")
        .last_position
        .expect("one event")
}

async fn pay(repository: &Repository<Store>, order: &str) -> u64 {
    repository
        .execute::<Order, _>(&order.to_owned(), &Pay, EventMetadata::new())
        .await
        .expect("paid")
        .last_position
        .expect("one event")
}

async fn add_stock(repository: &Repository<Store>, sku: &str, quantity: u32) {
    repository
        .create::<Stock, _>(&sku.to_owned(), &AddStock(quantity), EventMetadata::new())
        .await
        .expect("stock added");
}

async fn stock(repository: &Repository<Store>, sku: &str) -> Stock {
    repository
        .load::<Stock>(&sku.to_owned())
        .await
        .expect("stock loads")
}

async fn order(repository: &Repository<Store>, id: &str) -> Order {
    repository
        .load::<Order>(&id.to_owned())
        .await
        .expect("order loads")
}

/// Stops `running` within the wait, and returns its stats.
async fn stop(running: RunningReactor<u64>) -> ReactorStats {
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("the runner stopped cleanly")
}

async fn wait_for(running: &RunningReactor<u64>, position: u64) {
    running
        .wait_for(position, WAIT)
        .await
        .expect("the reactor reached the position");
}

async fn wait_until(running: &RunningReactor<u64>, done: impl Fn(&ReactorStats) -> bool) -> ReactorStats {
    running
        .wait_until(done, WAIT)
        .await
        .expect("the reactor got there")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_again_takes_effect_once() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let (reactors, clock) = (Reactors::new(), TestClock::new());
    add_stock(&repository, "apple", 100).await;
    place(&repository, "o-1", "apple", 2).await;
    place(&repository, "o-2", "apple", 3).await;
    let head = place(&repository, "o-3", "apple", 5).await;

    let running = runner(&store, &Checkpoints::new(), &reactors, &clock)
        .start(reservations())
        .expect("starts");
    wait_for(&running, head).await;
    assert_eq!(running.stats().commands, 3);
    stop(running).await;
    assert_eq!(stock(&repository, "apple").await.available, 90);

    // A fresh checkpoint store: every event is delivered again, as after a
    // crash before any checkpoint was saved.
    let again = runner(&store, &Checkpoints::new(), &reactors, &clock)
        .start(reservations())
        .expect("starts");
    wait_for(&again, head).await;
    assert_eq!(again.stats().reactions, 3, "each event reacted to again");
    stop(again).await;
    let apple = stock(&repository, "apple").await;
    assert_eq!(
        (apple.available, apple.reservations),
        (90, 3),
        "each reservation once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_a_reaction_record_their_cause() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    add_stock(&repository, "pear", 10).await;
    let request = EventMetadata::new().with_actor("ada");
    let placed = repository
        .create::<Order, _>(
            &"o-7".to_owned(),
            &Place {
                sku: "pear",
                quantity: 1,
            },
            request.clone(),
        )
        .await
        .expect("placed");
    let running = runner(&store, &Checkpoints::new(), &Reactors::new(), &TestClock::new())
        .start(reservations())
        .expect("starts");
    wait_for(&running, placed.last_position.expect("written")).await;
    stop(running).await;

    let reserved = store
        .load_events(&[EventFilter::for_event(StockReserved::KIND)])
        .await
        .expect("loads");
    assert_eq!(reserved.len(), 1);
    let metadata = &reserved[0].metadata;
    assert_eq!(metadata.causation_id, Some(*placed.event_ids[0].as_uuid()));
    assert_eq!(metadata.correlation_id, request.correlation_id);
    assert_eq!(metadata.actor.as_deref(), Some("ada"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_later_events_go_on_and_a_retry_after_the_fix_completes_it() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let reactors = Reactors::new();
    add_stock(&repository, "apple", 10).await;
    // No stock "plum": reserving it fails every attempt.
    let poison = place(&repository, "o-1", "plum", 1).await;
    let later = place(&repository, "o-2", "apple", 4).await;

    let running = runner(&store, &Checkpoints::new(), &reactors, &TestClock::new())
        .start(reservations())
        .expect("starts");
    wait_for(&running, later).await;
    let stats = running.stats();
    assert_eq!((stats.parked, stats.reactions), (1, 1), "{stats:?}");
    assert_eq!(
        stock(&repository, "apple").await.available,
        6,
        "the later event was not blocked"
    );

    let letters = reactors.dead_letters("stock-reservations").await.expect("lists");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.event.position, poison);
    assert_eq!(letter.event.kind, OrderPlaced::KIND);
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.error.contains("stock") && letter.error.contains("does not exist"),
        "{}",
        letter.error
    );

    // The fix: the stock exists now. Retry the parked reaction.
    add_stock(&repository, "plum", 5).await;
    assert!(
        reactors
            .request_retry("stock-reservations", poison)
            .await
            .expect("requests")
    );
    wait_until(&running, |stats| stats.retried == 1).await;
    assert!(
        reactors
            .dead_letters("stock-reservations")
            .await
            .expect("lists")
            .is_empty()
    );
    assert_eq!(stock(&repository, "plum").await.available, 4);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_told_to_stop_on_failure_stops_and_delivers_the_event_again() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let checkpoints = Checkpoints::new();
    let reactors = Reactors::new();
    let poison = place(&repository, "o-1", "plum", 1).await;
    let running = runner(&store, &checkpoints, &reactors, &TestClock::new())
        .on_failure(OnFailure::Stop)
        .start(reservations())
        .expect("starts");
    let stopped = running.wait_until(|_| false, WAIT).await;
    assert!(stopped.is_err());
    match running.stop().await {
        Err(RunnerError::Reaction("stock-reservations", error)) => {
            assert!(error.to_string().contains("Reserve"), "{error}");
        }
        other => panic!("expected the reaction's failure, got {other:?}"),
    }
    assert!(
        reactors
            .dead_letters("stock-reservations")
            .await
            .expect("lists")
            .is_empty()
    );

    // Fixed, a new runner reacts to the same event.
    add_stock(&repository, "plum", 3).await;
    let again = runner(&store, &checkpoints, &reactors, &TestClock::new())
        .start(reservations())
        .expect("starts");
    wait_for(&again, poison).await;
    stop(again).await;
    assert_eq!(stock(&repository, "plum").await.available, 2);
}

// ANCHOR: timers
/// Reminds after 13 days and cancels after 14 unless paid.
fn payment_deadlines() -> reactor::Reactor<Store> {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    reactor::Reactor::<Store>::new("payment-deadlines")
        .on(|_: &OrderPlaced, event, out| {
            let order = event.aggregate_id.clone();
            out.schedule_after::<Order, _>(format!("remind/{order}"), 13 * DAY, order.clone(), Remind);
            out.schedule_after::<Order, _>(
                format!("cancel/{order}"),
                14 * DAY,
                order,
                CancelUnpaid {
                    reason: "unpaid after 14 days".into(),
                },
            );
            Ok::<_, std::convert::Infallible>(())
        })
        .on(|_: &OrderPaid, event, out| {
            out.cancel(format!("cancel/{}", event.aggregate_id));
            Ok::<_, std::convert::Infallible>(())
        })
        .schedules::<Order, Remind>()
        .schedules::<Order, CancelUnpaid>()
}
// ANCHOR_END: timers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_once_at_their_time_and_a_cancelled_one_never() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let (checkpoints, reactors, clock) = (Checkpoints::new(), Reactors::new(), TestClock::new());
    place(&repository, "unpaid", "apple", 1).await;
    place(&repository, "paid", "apple", 1).await;
    let paid = pay(&repository, "paid").await;

    let running = runner(&store, &checkpoints, &reactors, &clock)
        .start(payment_deadlines())
        .expect("starts");
    wait_for(&running, paid).await;
    let timers = reactors.timers("payment-deadlines").await.expect("lists");
    let states: Vec<_> = timers
        .iter()
        .map(|timer| (timer.key.as_str(), timer.state))
        .collect();
    assert_eq!(timers.len(), 4, "{states:?}");
    assert!(
        states.contains(&("cancel/paid", TimerState::Cancelled)),
        "{states:?}"
    );

    clock.advance(13 * 24 * HOUR);
    wait_until(&running, |stats| stats.timers_fired == 2).await;
    assert_eq!(order(&repository, "unpaid").await.reminders, 1);
    assert!(!order(&repository, "unpaid").await.cancelled, "not yet");

    clock.advance(24 * HOUR);
    wait_until(&running, |stats| stats.timers_fired == 3).await;
    stop(running).await;
    assert!(order(&repository, "unpaid").await.cancelled);
    assert!(!order(&repository, "paid").await.cancelled);

    // A restart fires nothing again.
    let again = runner(&store, &checkpoints, &reactors, &clock)
        .start(payment_deadlines())
        .expect("starts");
    clock.advance(HOUR);
    let barrier = place(&repository, "later", "apple", 1).await;
    wait_for(&again, barrier).await;
    stop(again).await;
    let unpaid = order(&repository, "unpaid").await;
    assert_eq!((unpaid.reminders, unpaid.cancelled), (1, true));
    let states: Vec<_> = reactors
        .timers("payment-deadlines")
        .await
        .expect("lists")
        .into_iter()
        .filter(|timer| !timer.key.ends_with("/later"))
        .map(|timer| timer.state)
        .collect();
    assert_eq!(
        states.iter().filter(|state| **state == TimerState::Fired).count(),
        3,
        "{states:?}"
    );
}

/// Waits until `a` and `b` together (with `before`, fired by runners
/// gone) recorded `target` firings: the one that fires the last wakes its
/// own wait.
async fn fired_together(a: &RunningReactor<u64>, b: &RunningReactor<u64>, target: u64, before: u64) {
    let reached = |_: &ReactorStats| before + a.stats().timers_fired + b.stats().timers_fired >= target;
    let (on_a, on_b) = (a.wait_until(reached, WAIT), b.wait_until(reached, WAIT));
    match futures::future::select(Box::pin(on_a), Box::pin(on_b)).await {
        futures::future::Either::Left((done, _)) | futures::future::Either::Right((done, _)) => {
            done.expect("the timers fired within the wait");
        }
    }
}

/// Reminds every order an hour after it was placed.
fn hourly_reminders() -> reactor::Reactor<Store> {
    reactor::Reactor::<Store>::new("reminders")
        .on(|_: &OrderPlaced, event, out| {
            let order = event.aggregate_id.clone();
            out.schedule_after::<Order, _>(format!("remind/{order}"), HOUR, order, Remind);
            Ok::<_, std::convert::Infallible>(())
        })
        .schedules::<Order, Remind>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_timers_fire_once_each_across_restarts_and_two_runners() {
    const ORDERS: u64 = 1_000;
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let (checkpoints, reactors, clock) = (Checkpoints::new(), Reactors::new(), TestClock::new());
    let mut head = 0;
    for n in 0..ORDERS {
        head = place(&repository, &format!("o-{n}"), "apple", 1).await;
    }
    let first = runner(&store, &checkpoints, &reactors, &clock)
        .start(hourly_reminders())
        .expect("starts");
    wait_for(&first, head).await;
    stop(first).await;

    // Two runners at once, sharing one store (no lease: each follows the
    // log and fires due timers; the store records each firing once).
    let one = runner(&store, &checkpoints, &reactors, &clock)
        .start(hourly_reminders())
        .expect("starts");
    let two = runner(&store, &Checkpoints::new(), &reactors, &clock)
        .start(hourly_reminders())
        .expect("starts");
    clock.advance(HOUR);
    // Restart one of them midway (whichever fires faster, together they
    // pass 100).
    fired_together(&one, &two, 100, 0).await;
    let fired_before = stop(one).await.timers_fired;
    let three = runner(&store, &checkpoints, &reactors, &clock)
        .start(hourly_reminders())
        .expect("starts");
    // Done when the firings recorded by all three add up.
    fired_together(&two, &three, ORDERS, fired_before).await;
    let fired = fired_before + stop(two).await.timers_fired + stop(three).await.timers_fired;

    assert_eq!(fired, ORDERS, "each timer recorded as fired once");
    let timers = reactors.timers("reminders").await.expect("lists");
    assert!(
        timers.iter().all(|timer| timer.state == TimerState::Fired),
        "every timer fired"
    );
    let reminded = store
        .load_events(&[EventFilter::for_event(PaymentReminded::KIND)])
        .await
        .expect("loads");
    assert_eq!(reminded.len() as u64, ORDERS, "one reminder per order");
    let mut orders: Vec<_> = reminded.iter().map(|event| event.aggregate_id.clone()).collect();
    orders.sort();
    orders.dedup();
    assert_eq!(orders.len() as u64, ORDERS, "no order reminded twice");
}

// ANCHOR: process
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentStarted {
    sku: String,
    quantity: u32,
}
impl DomainEvent for FulfilmentStarted {
    const KIND: &'static str = "fulfilment.started";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentEnded {
    outcome: String,
}
impl DomainEvent for FulfilmentEnded {
    const KIND: &'static str = "fulfilment.ended";
}

/// The state of one order's fulfilment, in its own stream.
#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::convert::Infallible, events(FulfilmentStarted, FulfilmentEnded))]
struct Fulfilment {
    started: Option<FulfilmentStarted>,
    outcome: Option<String>,
}
impl Apply<FulfilmentStarted> for Fulfilment {
    fn apply(&mut self, event: &FulfilmentStarted) {
        self.started = Some(event.clone());
    }
}
impl Apply<FulfilmentEnded> for Fulfilment {
    fn apply(&mut self, event: &FulfilmentEnded) {
        self.outcome = Some(event.outcome.clone());
    }
}

type Step = Decision<Fulfilment, Store>;

/// The process of an event: its order's.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the shape a correlation takes: `None` for events of no process"
)]
fn order_id<E>(_: &E, event: Cause<'_, Store>) -> Option<String> {
    Some(event.aggregate_id.clone())
}

fn fulfilment() -> ProcessManager<Fulfilment, Store> {
    ProcessManager::<Fulfilment, Store>::new("fulfilment")
        .on(
            order_id::<OrderPlaced>,
            |state: &Fulfilment, placed: &OrderPlaced, event, out: &mut Step| {
                if state.started.is_none() {
                    out.record(FulfilmentStarted {
                        sku: placed.sku.clone(),
                        quantity: placed.quantity,
                    });
                    out.execute::<Stock, _>(
                        placed.sku.clone(),
                        Reserve {
                            quantity: placed.quantity,
                        },
                    );
                    out.schedule_after::<Order, _>(
                        format!("payment/{}", event.aggregate_id),
                        Duration::from_secs(30 * 60),
                        event.aggregate_id.clone(),
                        CancelUnpaid {
                            reason: "no payment within 30 minutes".into(),
                        },
                    );
                }
                Ok::<_, std::convert::Infallible>(())
            },
        )
        .on(
            order_id::<OrderPaid>,
            |state: &Fulfilment, _: &OrderPaid, event, out: &mut Step| {
                if state.outcome.is_none() {
                    out.record(FulfilmentEnded {
                        outcome: "paid".into(),
                    });
                    out.cancel(format!("payment/{}", event.aggregate_id));
                }
                Ok::<_, std::convert::Infallible>(())
            },
        )
        .on(
            order_id::<OrderCancelled>,
            |state: &Fulfilment, cancelled: &OrderCancelled, _, out: &mut Step| {
                if state.outcome.is_none() {
                    out.record(FulfilmentEnded {
                        outcome: format!("cancelled: {}", cancelled.reason),
                    });
                }
                Ok::<_, std::convert::Infallible>(())
            },
        )
        .schedules::<Order, CancelUnpaid>()
}
// ANCHOR_END: process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_manager_reserves_waits_for_payment_and_cancels_after_its_timeout() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    let (checkpoints, reactors, clock) = (Checkpoints::new(), Reactors::new(), TestClock::new());
    add_stock(&repository, "apple", 10).await;
    place(&repository, "o-paid", "apple", 2).await;
    place(&repository, "o-late", "apple", 3).await;
    let paid = pay(&repository, "o-paid").await;
    let running = runner(&store, &checkpoints, &reactors, &clock)
        .start(fulfilment())
        .expect("starts");
    wait_for(&running, paid).await;
    assert_eq!(stock(&repository, "apple").await.available, 5);

    clock.advance(HOUR);
    wait_until(&running, |stats| stats.timers_fired == 1).await;
    let cancelled = store
        .load_events(&[EventFilter::for_event(OrderCancelled::KIND)])
        .await
        .expect("loads");
    let head = cancelled.last().expect("the late order was cancelled").position;
    wait_for(&running, head).await;
    stop(running).await;

    let process = |id: &str| {
        let repository = repository.clone();
        let id = id.to_owned();
        async move {
            repository
                .load::<Fulfilment>(&id)
                .await
                .expect("the process loads")
        }
    };
    assert_eq!(process("o-paid").await.outcome.as_deref(), Some("paid"));
    assert_eq!(
        process("o-late").await.outcome.as_deref(),
        Some("cancelled: no payment within 30 minutes")
    );
    assert!(!order(&repository, "o-paid").await.cancelled);

    // Delivered again from the start, the processes decide alike: nothing
    // new is written.
    let before = store.load_events(&[]).await.map(|events| events.len());
    let all = store
        .load_events(&[EventFilter::for_stream("fulfilment", "o-late".to_owned())])
        .await
        .expect("loads")
        .len();
    let again = runner(&store, &Checkpoints::new(), &reactors, &clock)
        .start(fulfilment())
        .expect("starts");
    wait_for(&again, head).await;
    stop(again).await;
    assert_eq!(store.load_events(&[]).await.map(|events| events.len()), before);
    let after = store
        .load_events(&[EventFilter::for_stream("fulfilment", "o-late".to_owned())])
        .await
        .expect("loads")
        .len();
    assert_eq!(after, all);
    assert_eq!(
        stock(&repository, "apple").await.available,
        5,
        "reserved once per order"
    );
}

// ANCHOR: process_test
#[test]
fn a_process_is_tested_like_an_aggregate_given_events_expect_commands_and_timers() {
    let process = fulfilment();
    let now = sourcery::schedule::Clock::now(&TestClock::new());
    let started = FulfilmentStarted {
        sku: "apple".into(),
        quantity: 2,
    };
    let timeout = CancelUnpaid {
        reason: "no payment within 30 minutes".into(),
    };
    let placed = OrderPlaced {
        sku: "apple".into(),
        quantity: 2,
    };
    let due = now + Duration::from_secs(30 * 60);

    // Given a new process, when the order is placed:
    ProcessTest::new(&process)
        .at(now)
        .when("order", "o-1".to_owned(), &placed, 1)
        .then_expect_events(std::slice::from_ref(&started))
        .then_expect_command::<Stock, _>(&"apple".to_owned(), &Reserve { quantity: 2 })
        .then_expect_timer::<Order, _>(&"o-1".to_owned(), &timeout, due);

    // Given it started, when the order is paid: ended, the timeout cancelled.
    ProcessTest::new(&process)
        .given(std::slice::from_ref(&started))
        .when("order", "o-1".to_owned(), &OrderPaid, 2)
        .then_expect_events(&[FulfilmentEnded {
            outcome: "paid".into(),
        }])
        .then_expect_no_commands()
        .then_expect_no_timers()
        .then_expect_cancelled(&["payment/o-1"]);

    // Placed again (a duplicate order event): nothing more happens.
    ProcessTest::new(&process)
        .given(&[started])
        .when("order", "o-1".to_owned(), &placed, 3)
        .then_expect_events::<FulfilmentStarted>(&[])
        .then_expect_no_commands();
}
// ANCHOR_END: process_test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_for_a_while_succeeds_on_a_later_attempt() {
    let store = Store::new();
    let repository = Repository::new(store.clone());
    add_stock(&repository, "apple", 10).await;
    let head = place(&repository, "o-1", "apple", 1).await;
    let failing = Arc::new(AtomicBool::new(true));
    let flaky = {
        let failing = Arc::clone(&failing);
        reactor::Reactor::<Store>::new("flaky").on(move |placed: &OrderPlaced, _, out| {
            if failing.swap(false, Ordering::SeqCst) {
                return Err("the first attempt fails");
            }
            out.execute::<Stock, _>(
                placed.sku.clone(),
                Reserve {
                    quantity: placed.quantity,
                },
            );
            Ok(())
        })
    };
    let running = runner(&store, &Checkpoints::new(), &Reactors::new(), &TestClock::new())
        .start(flaky)
        .expect("starts");
    wait_for(&running, head).await;
    let stats = running.stats();
    stop(running).await;
    assert_eq!((stats.reactions, stats.parked, stats.commands), (1, 0, 1));
    assert_eq!(stock(&repository, "apple").await.available, 9);
}

#[test]
#[should_panic(expected = "expected the command Reserve { quantity: 3 } on stock \"apple\"")]
fn a_process_test_names_the_command_it_missed() {
    let placed = OrderPlaced {
        sku: "apple".into(),
        quantity: 2,
    };
    ProcessTest::new(&fulfilment())
        .when("order", "o-1".to_owned(), &placed, 1)
        .then_expect_command::<Stock, _>(&"apple".to_owned(), &Reserve { quantity: 3 });
}

#[test]
#[should_panic(expected = "it recorded [FulfilmentEnded(FulfilmentEnded { outcome: \"paid\" })]")]
fn a_process_test_shows_what_was_recorded_instead() {
    ProcessTest::new(&fulfilment())
        .when("order", "o-1".to_owned(), &OrderPaid, 1)
        .then_expect_events(&[FulfilmentStarted {
            sku: "apple".into(),
            quantity: 2,
        }]);
}

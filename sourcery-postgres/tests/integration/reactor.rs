//! Reactors run on PostgreSQL by competing servers: a thousand timers fire
//! once each across lease takeovers and a restart, a cancelled one never;
//! an old lease holder paused inside a reaction issues no command after
//! it knows it lost the lease, and its checkpoint save is refused; a
//! poison event is parked, does not block later events, and completes
//! when retried after the fix. Two ignored tests show library bugs (see
//! their docs): a stop waits for every due timer, and retry requests
//! starve while events keep coming.
//!
//! A "server" is a [`Store`] on a pool of its own, over the test's schema,
//! with its own [`CheckpointStore`], [`ReactorStore`] and [`Lease`]. Every
//! runner reads one [`TestClock`]. A takeover is forced by terminating the
//! lease's backend (`pg_terminate_backend` of [`Lease::holder`]); the
//! server releases the advisory lock with the session, and the standby's
//! next try takes it.

use crate::support;

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::checkpoint::{Advance, CheckpointStore as _, Fence};
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::metadata::EventMetadata;
use sourcery_core::reactor::{Reactor, ReactorRunner, ReactorStats, ReactorStore as _, RunningReactor};
use sourcery_core::repository::Repository;
use sourcery_core::runner::{self, RunnerError, WaitError};
use sourcery_core::schedule::{ScheduledCommand, TestClock, TimerState};
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_postgres::{CheckpointStore, Error, Lease, ReactorStore, Store};
use tokio::sync::{oneshot, watch};

type PgStore = Store<String, EventMetadata>;
type Reactors = ReactorStore<String, EventMetadata>;
type Runner = ReactorRunner<PgStore, CheckpointStore, Reactors>;

/// Bounds every wait for a runner.
const WAIT: Duration = Duration::from_secs(20);
/// Bounds every other call, in seconds.
const CALL: u64 = 20;
const HOUR: Duration = Duration::from_secs(3600);
/// The leases' heartbeat and retry interval.
const BEAT: Duration = Duration::from_millis(20);

/// Writes to stderr directly: the harness captures `eprintln!` of passing
/// tests, and the figures are meant to be seen.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The sum of some domain events, with what an aggregate's derive would
/// write (this crate's tests do without the macros).
macro_rules! events {
    ($name:ident { $($variant:ident($event:ty)),+ $(,)? }) => {
        #[derive(Debug, Clone, PartialEq)]
        enum $name {
            $($variant($event)),+
        }

        impl EventPayload for $name {
            fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(event) => event.kind()),+
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$variant(event) => event.schema_version()),+
                }
            }

            fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
                match self {
                    $(Self::$variant(event) => event.encode_with(codec)),+
                }
            }
        }

        impl DecodeEvent for $name {
            fn event_kinds() -> &'static [&'static str] {
                &[$(<$event as DomainEvent>::KIND),+]
            }

            fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
                $(
                    if let Some(event) = <$event as DecodeEvent>::decode_with(codec, event)? {
                        return Ok(Some(Self::$variant(event)));
                    }
                )+
                Ok(None)
            }
        }
    };
}

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
struct OrderConfirmed;
impl DomainEvent for OrderConfirmed {
    const KIND: &'static str = "order.confirmed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentReminded;
impl DomainEvent for PaymentReminded {
    const KIND: &'static str = "order.reminded";
}

events!(OrderEvent {
    Placed(OrderPlaced),
    Paid(OrderPaid),
    Confirmed(OrderConfirmed),
    Reminded(PaymentReminded),
});

/// Counts what happened to it: a command applied twice shows.
#[derive(Debug, Default)]
struct Order {
    paid: bool,
    confirmations: u32,
    reminders: u32,
}

impl Aggregate for Order {
    const KIND: &'static str = "order";
    type Id = String;
    type Event = OrderEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed(_) => {}
            OrderEvent::Paid(_) => self.paid = true,
            OrderEvent::Confirmed(_) => self.confirmations += 1,
            OrderEvent::Reminded(_) => self.reminders += 1,
        }
    }
}

struct Place {
    sku: &'static str,
    quantity: u32,
}
impl HandleCreate<Place> for Order {
    fn handle_create(command: &Place) -> Result<Vec<OrderEvent>, Infallible> {
        Ok(vec![OrderEvent::Placed(OrderPlaced {
            sku: command.sku.to_owned(),
            quantity: command.quantity,
        })])
    }
}

struct Pay;
impl Handle<Pay> for Order {
    fn handle(&self, _: &Pay) -> Result<Vec<OrderEvent>, Infallible> {
        Ok(vec![OrderEvent::Paid(OrderPaid)])
    }
}

/// Confirms the order, every time it is handled (so that only the
/// command's id keeps it to once).
#[derive(Debug)]
struct Confirm {
    gate: Arc<Gate>,
}
impl Handle<Confirm> for Order {
    fn handle(&self, command: &Confirm) -> Result<Vec<OrderEvent>, Infallible> {
        command.gate.pass();
        Ok(vec![OrderEvent::Confirmed(OrderConfirmed)])
    }
}

/// Reminds, every time it is handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remind;
impl ScheduledCommand for Remind {
    const KIND: &'static str = "order.remind";
}
impl Handle<Remind> for Order {
    fn handle(&self, _: &Remind) -> Result<Vec<OrderEvent>, Infallible> {
        Ok(vec![OrderEvent::Reminded(PaymentReminded)])
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

events!(StockEvent {
    Added(StockAdded),
    Reserved(StockReserved),
});

#[derive(Debug, thiserror::Error, PartialEq)]
enum StockError {
    #[error("only {0} left")]
    Short(u32),
}

#[derive(Debug, Default)]
struct Stock {
    available: u32,
    reservations: u32,
}

impl Aggregate for Stock {
    const KIND: &'static str = "stock";
    type Id = String;
    type Event = StockEvent;
    type Error = StockError;

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Added(added) => self.available += added.quantity,
            StockEvent::Reserved(reserved) => {
                self.available -= reserved.quantity;
                self.reservations += 1;
            }
        }
    }
}

struct AddStock(u32);
impl HandleCreate<AddStock> for Stock {
    fn handle_create(command: &AddStock) -> Result<Vec<StockEvent>, StockError> {
        Ok(vec![StockEvent::Added(StockAdded { quantity: command.0 })])
    }
}

/// Reserves, every time it is handled and the stock suffices.
#[derive(Debug)]
struct Reserve {
    quantity: u32,
    gate: Arc<Gate>,
}
impl Handle<Reserve> for Stock {
    fn handle(&self, command: &Reserve) -> Result<Vec<StockEvent>, StockError> {
        command.gate.pass();
        if command.quantity > self.available {
            return Err(StockError::Short(self.available));
        }
        Ok(vec![StockEvent::Reserved(StockReserved {
            quantity: command.quantity,
        })])
    }
}

/// Where a command's handler can be held: counts each time the handler
/// runs and, armed, holds the first one to come (blocking its thread, as
/// a paused process would) after saying so, until the test releases it.
struct Gate {
    passes: AtomicUsize,
    armed: AtomicBool,
    holding: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

/// The test's side of an armed [`Gate`].
struct Held {
    /// Resolves once a handler is held.
    holding: oneshot::Receiver<()>,
    /// Lets it go.
    release: std::sync::mpsc::Sender<()>,
}

impl Gate {
    /// A gate that holds nothing: it only counts.
    fn open() -> Arc<Self> {
        Self::new(false).0
    }

    /// A gate that holds the first handler to come.
    fn armed() -> (Arc<Self>, Held) {
        Self::new(true)
    }

    fn new(armed: bool) -> (Arc<Self>, Held) {
        let (holding_sender, holding) = oneshot::channel();
        let (release, released) = std::sync::mpsc::channel();
        let gate = Arc::new(Self {
            passes: AtomicUsize::new(0),
            armed: AtomicBool::new(armed),
            holding: Mutex::new(Some(holding_sender)),
            release: Mutex::new(released),
        });
        (gate, Held { holding, release })
    }

    fn pass(&self) {
        self.passes.fetch_add(1, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            if let Some(holding) = self.holding.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let _ = holding.send(());
            }
            // The handler's thread blocks; `block_in_place` first hands the
            // worker's queued tasks to another thread, so that only this
            // task waits (blocking a worker outright also holds up the task
            // in its LIFO slot, the test's own queries among them). Bounded:
            // a test that fails before releasing does not hang.
            tokio::task::block_in_place(|| {
                let _ = self
                    .release
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .recv_timeout(WAIT);
            });
        }
    }

    fn passes(&self) -> usize {
        self.passes.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("passes", &self.passes())
            .field("armed", &self.armed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// One application server: a pool of its own over the test's schema.
#[derive(Clone)]
struct Server {
    store: PgStore,
    repository: Repository<PgStore>,
    reactors: Reactors,
    checkpoints: CheckpointStore,
}

impl Server {
    /// A server on a pool of its own over `schema`, its connections
    /// tagged `name`.
    async fn on(schema: &str, name: &str) -> Self {
        let pool = support::pool(6, name).await.expect("DATABASE_URL is set");
        Self::of(PgStore::with_schema(pool, schema).expect("a valid schema"))
    }

    fn of(store: PgStore) -> Self {
        Self {
            repository: Repository::new(store.clone()),
            reactors: ReactorStore::new(&store),
            checkpoints: CheckpointStore::new(&store),
            store,
        }
    }

    fn lease(&self) -> Lease {
        Lease::new(&self.store).retry_interval(BEAT).heartbeat(BEAT)
    }

    fn runner(&self, clock: &TestClock) -> Runner {
        ReactorRunner::new(
            self.repository.clone(),
            self.checkpoints.clone(),
            self.reactors.clone(),
        )
        .clock(clock.clone())
        .attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .timer_poll(Duration::from_millis(20))
    }

    async fn place(&self, order: &str, sku: &'static str, quantity: u32) -> i64 {
        support::bounded(
            "placing an order",
            CALL,
            self.repository.create::<Order, _>(
                &order.to_owned(),
                &Place { sku, quantity },
                EventMetadata::new(),
            ),
        )
        .await
        .expect("placed")
        .last_position
        .expect("one event")
    }

    async fn pay(&self, order: &str) -> i64 {
        support::bounded(
            "paying an order",
            CALL,
            self.repository
                .execute::<Order, _>(&order.to_owned(), &Pay, EventMetadata::new()),
        )
        .await
        .expect("paid")
        .last_position
        .expect("one event")
    }

    async fn add_stock(&self, sku: &str, quantity: u32) -> i64 {
        support::bounded(
            "adding stock",
            CALL,
            self.repository
                .create::<Stock, _>(&sku.to_owned(), &AddStock(quantity), EventMetadata::new()),
        )
        .await
        .expect("stock added")
        .last_position
        .expect("one event")
    }

    async fn stock(&self, sku: &str) -> Stock {
        support::bounded(
            "loading stock",
            CALL,
            self.repository.load::<Stock>(&sku.to_owned()),
        )
        .await
        .expect("stock loads")
    }

    async fn order(&self, id: &str) -> Order {
        support::bounded(
            "loading an order",
            CALL,
            self.repository.load::<Order>(&id.to_owned()),
        )
        .await
        .expect("order loads")
    }

    /// The stored events of `kind`, in order.
    async fn events_of(&self, kind: &str) -> Vec<String> {
        support::bounded(
            "loading events",
            CALL,
            self.store.load_events(&[EventFilter::for_event(kind)]),
        )
        .await
        .expect("events load")
        .into_iter()
        .map(|event| event.aggregate_id)
        .collect()
    }

    /// The saved checkpoint of `name`: its position and fence.
    async fn checkpoint(&self, name: &str) -> (Option<i64>, Option<i64>) {
        let sql = format!(
            "SELECT position, fence FROM \"{}\".sourcery_checkpoints WHERE name = $1",
            self.store.schema()
        );
        support::bounded(
            "reading the checkpoint",
            CALL,
            sqlx::query_as(&sql).bind(name).fetch_optional(self.store.pool()),
        )
        .await
        .expect("the checkpoint reads")
        .unwrap_or((None, None))
    }

    /// The generation of the lease `name`: the last holder's fence.
    async fn lease_generation(&self, name: &str) -> i64 {
        let sql = format!(
            "SELECT generation FROM \"{}\".sourcery_leases WHERE name = $1",
            self.store.schema()
        );
        support::bounded(
            "reading the lease's generation",
            CALL,
            sqlx::query_scalar(&sql).bind(name).fetch_one(self.store.pool()),
        )
        .await
        .expect("the lease has a generation")
    }

    /// Terminates the backend holding the lease `name`; returns its pid.
    async fn kill_lease(&self, name: &str) -> i32 {
        let pid = support::bounded("finding the lease's holder", CALL, self.lease().holder(name))
            .await
            .expect("the holder reads")
            .expect("the lease is held");
        self.kill(pid).await;
        pid
    }

    async fn kill(&self, pid: i32) {
        let killed: bool = support::bounded(
            "terminating a backend",
            CALL,
            sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(self.store.pool()),
        )
        .await
        .expect("pg_terminate_backend answers");
        assert!(killed, "the backend {pid} was terminated");
    }
}

/// Waits until `running` holds its lease.
async fn active(running: &RunningReactor<i64>, what: &str) {
    let mut seen = running.status();
    support::bounded(what, CALL, async {
        loop {
            seen = running.status();
            if seen.active || !seen.running {
                return;
            }
            // The status is a watch: read it again at its next change
            // (bounded by the outer timeout).
            let _ = running.wait_for(i64::MAX, Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(seen.active, "{what}: {seen:?}");
}

/// Waits until `running` stopped by itself.
async fn stopped(running: &RunningReactor<i64>, what: &str) {
    assert_eq!(
        running.wait_for(i64::MAX, WAIT).await,
        Err(WaitError::Stopped),
        "{what}"
    );
}

// ---------------------------------------------------------------------------
// 1. A thousand timers across takeovers and a restart.

const REMINDERS: &str = "reminders";

/// Reminds every order an hour after it was placed, unless it was paid.
fn reminders() -> Reactor<PgStore> {
    Reactor::<PgStore>::new(REMINDERS)
        .on(|_: &OrderPlaced, cause, out| {
            let order = cause.aggregate_id.clone();
            out.schedule_after::<Order, _>(format!("remind/{order}"), HOUR, order, Remind);
            Ok::<_, Infallible>(())
        })
        .on(|_: &OrderPaid, cause, out| {
            out.cancel(format!("remind/{}", cause.aggregate_id));
            Ok::<_, Infallible>(())
        })
        .schedules::<Order, Remind>()
}

/// Whether order `n` is paid (its reminder cancelled): one in ten.
fn paid(n: usize) -> bool {
    n % 10 == 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, step by step, with its checks"
)]
async fn a_thousand_timers_fire_once_each_across_takeovers_and_a_restart_and_a_cancelled_one_never() {
    const ORDERS: usize = 1_000;
    /// How many firings each holder makes at least before its lease dies.
    const MIDWAY: u64 = 150;
    let started = Instant::now();
    let Some(store) = support::store_with::<String, EventMetadata>(6).await else {
        return;
    };
    let one = Server::of(store);
    let two = Server::on(one.store.schema(), "sourcery-postgres-reactor-two").await;
    let clock = TestClock::new();

    // 1,000 orders, one in ten paid later: each schedules a reminder in an
    // hour, each payment cancels its order's.
    let head = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let one = one.clone();
            async move {
                let order = format!("o-{n}");
                let placed = one.place(&order, "apple", 1).await;
                if paid(n) { one.pay(&order).await } else { placed }
            }
        })
        .buffer_unordered(6)
        .fold(0, |head, position| async move { head.max(position) })
        .await;
    let expected = u64::try_from((0..ORDERS).filter(|&n| !paid(n)).count()).expect("small");
    let placed_in = started.elapsed();

    // Server one holds the lease; server two waits.
    let a = one
        .runner(&clock)
        .with_lease(one.lease())
        .start(reminders())
        .expect("A starts");
    active(&a, "A takes the lease").await;
    let b = two
        .runner(&clock)
        .with_lease(two.lease())
        .start(reminders())
        .expect("B starts");
    a.wait_for(head, WAIT).await.expect("A reacts to every order");
    let scheduled_in = started.elapsed();
    let timers = one.reactors.timers(REMINDERS).await.expect("timers list");
    assert_eq!(timers.len(), ORDERS, "a timer per order");
    assert_eq!(
        timers
            .iter()
            .filter(|timer| timer.state == TimerState::Cancelled)
            .count(),
        ORDERS - usize::try_from(expected).expect("small"),
        "the paid orders' reminders are cancelled before they are due"
    );
    assert!(
        !b.status().active && b.status().running,
        "B waits while A holds the lease: {:?}",
        b.status()
    );

    // The hour passes: A fires; midway, its lease's backend dies.
    clock.advance(HOUR);
    a.wait_until(|stats| stats.timers_fired >= MIDWAY, WAIT)
        .await
        .expect("A fires timers");
    assert!(
        !b.status().active && b.stats() == ReactorStats::default(),
        "B did nothing while A held the lease: {:?} {:?}",
        b.status(),
        b.stats()
    );
    let killed = Instant::now();
    let a_pid = one.kill_lease(REMINDERS).await;
    stopped(&a, "A stops once it knows its lease is lost").await;
    let a_fired = a.stats().timers_fired;
    let a_noticed = killed.elapsed();
    match tokio::time::timeout(WAIT, a.stop())
        .await
        .expect("the runner stops within the wait")
    {
        Err(RunnerError::LeaseLost(REMINDERS)) => {}
        other => panic!("A stops with its lease lost, got {other:?}"),
    }
    assert!(a_fired < expected, "A was killed midway: it fired {a_fired}");

    // B takes over. Server one restarts its runner, which waits.
    active(&b, "B takes over").await;
    let b_took_over = killed.elapsed();
    let again = one
        .runner(&clock)
        .with_lease(one.lease())
        .start(reminders())
        .expect("A again starts");
    b.wait_until(|stats| stats.timers_fired >= MIDWAY, WAIT)
        .await
        .expect("B fires timers");
    assert!(
        !again.status().active && again.stats() == ReactorStats::default(),
        "the restarted A did nothing while B held the lease: {:?} {:?}",
        again.status(),
        again.stats()
    );
    let b_pid = two.kill_lease(REMINDERS).await;
    assert_ne!(a_pid, b_pid);
    stopped(&b, "B stops once it knows its lease is lost").await;
    let b_fired = b.stats().timers_fired;
    match tokio::time::timeout(WAIT, b.stop())
        .await
        .expect("the runner stops within the wait")
    {
        Err(RunnerError::LeaseLost(REMINDERS)) => {}
        other => panic!("B stops with its lease lost, got {other:?}"),
    }
    assert!(
        a_fired + b_fired < expected,
        "B was killed midway: A fired {a_fired}, B {b_fired}"
    );

    // The restarted runner takes over and fires the rest.
    active(&again, "the restarted A takes over").await;
    let done = again
        .wait_until(|stats| a_fired + b_fired + stats.timers_fired >= expected, WAIT)
        .await
        .expect("every timer fires");
    let fired_in = started.elapsed();
    assert_eq!(
        support::bounded("next due", CALL, one.reactors.next_due(REMINDERS))
            .await
            .expect("reads"),
        None,
        "no timer is pending"
    );
    let again_fired = tokio::time::timeout(WAIT, again.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("the restarted A stops")
        .timers_fired;
    assert!(again_fired >= done.timers_fired);
    assert_eq!(
        a_fired + b_fired + again_fired,
        expected,
        "each firing is recorded once, by one runner (A {a_fired}, B {b_fired}, A again {again_fired})"
    );

    // In the store: each timer fired once or was cancelled, never both.
    let timers = one.reactors.timers(REMINDERS).await.expect("timers list");
    assert_eq!(timers.len(), ORDERS);
    for n in 0..ORDERS {
        let key = format!("remind/o-{n}");
        let timer = timers
            .iter()
            .find(|timer| timer.key == key)
            .unwrap_or_else(|| panic!("{key} is stored"));
        let expected_state = if paid(n) {
            TimerState::Cancelled
        } else {
            TimerState::Fired
        };
        assert_eq!(
            (timer.state, timer.attempts, timer.last_error.as_deref()),
            (expected_state, 0, None),
            "{key}"
        );
    }
    // In the log: a reminder per unpaid order, none for a paid one.
    let mut reminded = one.events_of(PaymentReminded::KIND).await;
    assert_eq!(
        u64::try_from(reminded.len()).expect("small"),
        expected,
        "one reminder per unpaid order, no more"
    );
    reminded.sort();
    reminded.dedup();
    assert_eq!(
        u64::try_from(reminded.len()).expect("small"),
        expected,
        "no order reminded twice"
    );
    for n in [0, 7, 17, 500, 997, 999] {
        let order = one.order(&format!("o-{n}")).await;
        assert_eq!(
            (order.paid, order.reminders),
            (paid(n), u32::from(!paid(n))),
            "o-{n}"
        );
    }
    // The checkpoint is the last holder's: the third generation.
    let generation = one.lease_generation(REMINDERS).await;
    assert_eq!(generation, 3, "three holders: A, B, A again");
    let (position, fence) = one.checkpoint(REMINDERS).await;
    assert_eq!(fence, Some(generation));
    assert!(position >= Some(head), "{position:?} {head}");

    // Another restart, later still: nothing is due, nothing fires again.
    clock.advance(HOUR);
    let fourth = two
        .runner(&clock)
        .with_lease(two.lease())
        .start(reminders())
        .expect("a fourth runner starts");
    let barrier = two.place("barrier", "apple", 1).await;
    fourth.wait_for(barrier, WAIT).await.expect("it reacts");
    let fourth = tokio::time::timeout(WAIT, fourth.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("it stops");
    assert_eq!(fourth.timers_fired, 0, "{fourth:?}");
    assert_eq!(
        u64::try_from(one.events_of(PaymentReminded::KIND).await.len()).expect("small"),
        expected
    );
    say(&format!(
        "reactor timers on PostgreSQL: {ORDERS} orders placed in {placed_in:.1?}, their timers \
         scheduled by {scheduled_in:.1?}; fired by A {a_fired} (noticed its lease's loss \
         {a_noticed:.0?} after the kill), B {b_fired} (active {b_took_over:.0?} after the kill), \
         A again {again_fired}; all {expected} fired by {fired_in:.1?}; test {:.1?}",
        started.elapsed()
    ));
}

// ---------------------------------------------------------------------------
// 2. Fencing: an old holder held inside a reaction.

const CONFIRMATIONS: &str = "confirmations";

/// Reserves stock for an order, then confirms it: two commands per event,
/// each handler passing its gate.
fn confirmations(reserve: &Arc<Gate>, confirm: &Arc<Gate>) -> Reactor<PgStore> {
    let (reserve, confirm) = (Arc::clone(reserve), Arc::clone(confirm));
    Reactor::<PgStore>::new(CONFIRMATIONS).on(move |placed: &OrderPlaced, cause, out| {
        out.execute::<Stock, _>(
            placed.sku.clone(),
            Reserve {
                quantity: placed.quantity,
                gate: Arc::clone(&reserve),
            },
        );
        out.execute::<Order, _>(
            cause.aggregate_id.clone(),
            Confirm {
                gate: Arc::clone(&confirm),
            },
        );
        Ok::<_, Infallible>(())
    })
}

/// A [`Lease`] that lets the test see when its holder's guard knows the
/// lease is lost: it holds the PostgreSQL guard in a task of its own,
/// which passes the guard's loss on to the runner's guard and to the test
/// (the runner's guard is the runner's, out of the test's reach).
#[derive(Clone)]
struct Watched {
    lease: Lease,
    pid: Arc<watch::Sender<Option<i32>>>,
    lost: Arc<watch::Sender<bool>>,
}

struct WatchedGuard {
    fence: Fence,
    lost: watch::Receiver<bool>,
    /// Dropped with the guard: the task drops the PostgreSQL guard.
    _release: oneshot::Sender<()>,
}

impl Watched {
    fn new(lease: Lease) -> Self {
        Self {
            lease,
            pid: Arc::new(watch::Sender::new(None)),
            lost: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl runner::Lease for Watched {
    type Guard = WatchedGuard;
    type Error = Error;

    async fn acquire<'a>(&'a self, name: &'a str) -> Result<WatchedGuard, Error> {
        let mut guard = runner::Lease::acquire(&self.lease, name).await?;
        self.pid.send_replace(Some(guard.pid()));
        let fence = guard.fence();
        let (lost_sender, lost) = watch::channel(false);
        let (release, mut released) = oneshot::channel::<()>();
        let tell = Arc::clone(&self.lost);
        tokio::spawn(async move {
            tokio::select! {
                () = runner::LeaseGuard::lost(&mut guard) => {
                    lost_sender.send_replace(true);
                    tell.send_replace(true);
                    let _ = (&mut released).await;
                }
                _ = &mut released => {}
            }
            drop(guard);
        });
        Ok(WatchedGuard {
            fence,
            lost,
            _release: release,
        })
    }
}

impl runner::LeaseGuard for WatchedGuard {
    async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.lost.has_changed().is_err()
    }

    fn fence(&self) -> Option<Fence> {
        Some(self.fence)
    }
}

/// What the old holder was held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldIn {
    /// The reaction's first command (reserving): the second is not issued.
    First,
    /// Its last command (confirming): the checkpoint save after it is
    /// refused.
    Last,
}

/// A holds the lease and is held inside a command of its reaction to an
/// order; its lease's backend is killed; B takes over and carries the
/// reaction out; A, released, finishes the command it was in (a replay of
/// B's), and stops.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, step by step, with its checks"
)]
async fn held_holder(held_in: HeldIn) {
    let started = Instant::now();
    let Some(store) = support::store_with::<String, EventMetadata>(6).await else {
        return;
    };
    let one = Server::of(store);
    let two = Server::on(one.store.schema(), "sourcery-postgres-reactor-standby").await;
    let clock = TestClock::new();
    let (held, gate) = Gate::armed();
    let open = Gate::open();
    let (reserve, confirm) = match held_in {
        HeldIn::First => (&held, &open),
        HeldIn::Last => (&open, &held),
    };
    one.add_stock("apple", 10).await;

    let watched = Watched::new(one.lease());
    let a = one
        .runner(&clock)
        .with_lease(watched.clone())
        .checkpoint_every(std::num::NonZeroUsize::MIN)
        .start(confirmations(reserve, confirm))
        .expect("A starts");
    active(&a, "A takes the lease").await;
    let b = two
        .runner(&clock)
        .with_lease(two.lease())
        .checkpoint_every(std::num::NonZeroUsize::MIN)
        .start(confirmations(reserve, confirm))
        .expect("B starts");

    let placed = one.place("o-1", "apple", 2).await;
    support::bounded("A held in its command", CALL, gate.holding)
        .await
        .expect("A's handler is held");
    assert!(
        !b.status().active && b.stats() == ReactorStats::default(),
        "B waits: {:?}",
        b.status()
    );
    let a_pid = (*watched.pid.borrow()).expect("A holds a lease");
    let holder = one.lease().holder(CONFIRMATIONS).await.expect("reads");
    assert_eq!(holder, Some(a_pid), "A's backend holds the lease");
    one.kill(a_pid).await;

    // B takes over and carries the reaction out, A still held.
    b.wait_for(placed, WAIT).await.expect("B reacts to the order");
    let b_stats = b.stats();
    assert!(b.status().active);
    let b_fence = one.lease_generation(CONFIRMATIONS).await;
    let a_fence = b_fence - 1;
    let taken_over = one.checkpoint(CONFIRMATIONS).await;
    assert_eq!(
        taken_over.1,
        Some(b_fence),
        "B claimed the checkpoint with its fence: {taken_over:?}"
    );
    // A's guard knows its lease is lost before A goes on.
    support::bounded(
        "A's guard noticing the loss",
        CALL,
        watched.lost.subscribe().wait_for(|lost| *lost),
    )
    .await
    .expect("the watch stays");
    let confirm_passes = confirm.passes();
    let reserve_passes = reserve.passes();

    gate.release.send(()).expect("A's handler waits");
    stopped(&a, "A stops after its command").await;
    let a_stats = a.stats();
    let a_stopped = tokio::time::timeout(WAIT, a.stop())
        .await
        .expect("the runner stops within the wait");
    match (held_in, &a_stopped) {
        (HeldIn::First, Err(RunnerError::LeaseLost(CONFIRMATIONS))) => {
            assert_eq!(
                confirm.passes(),
                confirm_passes,
                "A issued no command after the one it was held in"
            );
            assert_eq!(a_stats.commands, 1, "{a_stats:?}");
        }
        (HeldIn::Last, Err(RunnerError::Fenced(CONFIRMATIONS, newer))) => {
            assert_eq!(newer.get(), u64::try_from(b_fence).expect("positive"));
            assert_eq!(a_stats.commands, 2, "{a_stats:?}");
            assert_eq!(reserve.passes(), reserve_passes, "A issued nothing more");
        }
        other => panic!("A held in its {held_in:?} command stopped with {other:?}"),
    }
    assert_eq!(a_stats.reactions, u64::from(held_in == HeldIn::Last));

    // Each command took effect once, and the checkpoint is still B's.
    assert_eq!(one.events_of(StockReserved::KIND).await, ["apple"]);
    assert_eq!(one.events_of(OrderConfirmed::KIND).await, ["o-1"]);
    let apple = one.stock("apple").await;
    assert_eq!((apple.available, apple.reservations), (8, 1));
    assert_eq!(one.order("o-1").await.confirmations, 1);
    let after_a = one.checkpoint(CONFIRMATIONS).await;
    assert_eq!(
        after_a.1,
        Some(b_fence),
        "the checkpoint is still B's: {after_a:?}"
    );
    assert!(after_a.0 >= taken_over.0, "{after_a:?} {taken_over:?}");
    // The store refuses A's fence, whatever it would save.
    let refused = one
        .checkpoints
        .advance(
            CONFIRMATIONS,
            placed + 100,
            Some(Fence::new(u64::try_from(a_fence).expect("positive"))),
        )
        .await
        .expect("the checkpoint store answers");
    assert!(matches!(refused, Advance::Fenced(_)), "{refused:?}");

    // B goes on with the next order.
    let next = one.place("o-2", "apple", 1).await;
    b.wait_for(next, WAIT).await.expect("B follows");
    let b_end = tokio::time::timeout(WAIT, b.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("B stops");
    assert_eq!(b_end.reactions, b_stats.reactions + 1);
    assert_eq!(
        one.checkpoint(CONFIRMATIONS).await.1,
        Some(b_fence),
        "B saved its last checkpoint with its fence"
    );
    assert!(one.checkpoint(CONFIRMATIONS).await.0 >= Some(next));
    assert_eq!(one.stock("apple").await.available, 7);
    say(&format!(
        "reactor fencing on PostgreSQL, A held in its {held_in:?} command: A stopped with \
         {a_stopped:?} after {} commands, B ran {} commands; test {:.1?}",
        a_stats.commands,
        b_end.commands,
        started.elapsed()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_holder_held_in_its_first_command_issues_no_other_after_losing_its_lease() {
    held_holder(HeldIn::First).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_holder_held_in_its_last_command_has_its_checkpoint_save_refused() {
    held_holder(HeldIn::Last).await;
}

// ---------------------------------------------------------------------------
// 3. A poison event.

const RESERVATIONS: &str = "stock-reservations";

fn reservations(gate: &Arc<Gate>) -> Reactor<PgStore> {
    let gate = Arc::clone(gate);
    Reactor::<PgStore>::new(RESERVATIONS).on(move |placed: &OrderPlaced, _, out| {
        out.execute::<Stock, _>(
            placed.sku.clone(),
            Reserve {
                quantity: placed.quantity,
                gate: Arc::clone(&gate),
            },
        );
        Ok::<_, Infallible>(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_later_events_go_on_and_a_retry_after_the_fix_completes_it() {
    let started = Instant::now();
    let Some(store) = support::store_with::<String, EventMetadata>(6).await else {
        return;
    };
    let server = Server::of(store);
    let gate = Gate::open();
    server.add_stock("apple", 10).await;
    // No stock "plum": reserving it fails every attempt.
    let poison = server.place("o-1", "plum", 1).await;
    let later = server.place("o-2", "apple", 4).await;

    let running = server
        .runner(&TestClock::new())
        .with_lease(server.lease())
        .start(reservations(&gate))
        .expect("starts");
    running
        .wait_for(later, WAIT)
        .await
        .expect("reaches the later order");
    let stats = running.stats();
    assert_eq!((stats.parked, stats.reactions), (1, 1), "{stats:?}");
    assert_eq!(
        server.stock("apple").await.available,
        6,
        "the later event was not blocked"
    );

    let letters = server.reactors.dead_letters(RESERVATIONS).await.expect("lists");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.event.position, poison);
    assert_eq!(letter.event.kind, OrderPlaced::KIND);
    assert_eq!(letter.event.aggregate_id, "o-1");
    assert_eq!(letter.attempts, 3);
    assert!(!letter.retry_requested);
    assert!(
        letter.error.contains("stock") && letter.error.contains("does not exist"),
        "{}",
        letter.error
    );

    // The runner goes on with events after the poison one.
    let after = server.place("o-3", "apple", 1).await;
    running.wait_for(after, WAIT).await.expect("reaches o-3");
    assert_eq!(server.stock("apple").await.available, 5);

    // The fix: the stock exists now. Retry the parked reaction.
    server.add_stock("plum", 5).await;
    assert!(
        server
            .reactors
            .request_retry(RESERVATIONS, poison)
            .await
            .expect("requests")
    );
    let requested = Instant::now();
    running
        .wait_until(|stats| stats.retried == 1, WAIT)
        .await
        .expect("the retry completes");
    let retried_after = requested.elapsed();
    assert!(
        server
            .reactors
            .dead_letters(RESERVATIONS)
            .await
            .expect("lists")
            .is_empty(),
        "the dead letter is gone"
    );
    let plum = server.stock("plum").await;
    assert_eq!((plum.available, plum.reservations), (4, 1));
    let stats = tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("stops");
    assert_eq!(
        (stats.parked, stats.retried, stats.reactions),
        (1, 1, 2),
        "{stats:?}"
    );
    assert_eq!(
        server.events_of(StockReserved::KIND).await,
        ["apple", "apple", "plum"],
        "each reservation once"
    );
    say(&format!(
        "reactor poison event on PostgreSQL: parked after 3 attempts, retried {retried_after:.0?} \
         after the request; test {:.1?}",
        started.elapsed()
    ));
}

// ---------------------------------------------------------------------------
// 4. A stop and a retry request are not held back by work in progress
// (both failed before `run_due` looked at the stop between timers and the
// runner looked every `timer_poll` whatever the traffic).

/// `stop` with timers due: asked to stop after 20 of 600 due timers
/// fired, the runner stops between two timers instead of firing all 600
/// first, so a stop (and a graceful handover to a standby) does not wait
/// for every due timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_is_honoured_between_due_timers() {
    const ORDERS: u64 = 600;
    let Some(store) = support::store_with::<String, EventMetadata>(6).await else {
        return;
    };
    let one = Server::of(store);
    let clock = TestClock::new();
    let head = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let one = one.clone();
            async move { one.place(&format!("o-{n}"), "apple", 1).await }
        })
        .buffer_unordered(6)
        .fold(0, |head, position| async move { head.max(position) })
        .await;
    let running = one.runner(&clock).start(reminders()).expect("starts");
    running.wait_for(head, WAIT).await.expect("reacts");
    clock.advance(HOUR);
    running
        .wait_until(|stats| stats.timers_fired >= 20, WAIT)
        .await
        .expect("fires");
    let asked = Instant::now();
    let stats = tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("stops");
    say(&format!(
        "a stop asked after 20 firings returned after {:.0?}, {} of {ORDERS} fired",
        asked.elapsed(),
        stats.timers_fired
    ));
    assert!(
        stats.timers_fired < ORDERS,
        "the runner fired every due timer before it stopped: {stats:?}"
    );
}

/// Retry requests under steady traffic: with `timer_poll` at 20 ms and no
/// timer pending, a request is picked up while an event arrives every
/// 300 ms (the runner looks at least every `timer_poll`, before an event
/// too, rather than on a tick that each event restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_request_is_picked_up_within_the_timer_poll_under_steady_traffic() {
    let Some(store) = support::store_with::<String, EventMetadata>(6).await else {
        return;
    };
    let server = Server::of(store);
    let gate = Gate::open();
    server.add_stock("apple", 1000).await;
    let poison = server.place("o-p", "plum", 1).await;
    let running = server
        .runner(&TestClock::new())
        .start(reservations(&gate))
        .expect("starts");
    running.wait_for(poison, WAIT).await.expect("parks");
    server.add_stock("plum", 5).await;
    assert!(
        server
            .reactors
            .request_retry(RESERVATIONS, poison)
            .await
            .expect("requests")
    );
    let requested = Instant::now();
    let traffic = async {
        for n in 0..13 {
            server.place(&format!("o-{n}"), "apple", 1).await;
            // Paces the traffic (an order every 300 ms), not a race.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let retried = running.wait_until(|stats| stats.retried == 1, Duration::from_secs(3));
    let (retried, ()) = tokio::join!(retried, traffic);
    say(&format!(
        "a retry request under steady traffic: {retried:?}, {:.1?} after the request",
        requested.elapsed()
    ));
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops within the wait")
        .expect("stops");
    retried.expect("the retry is picked up while the events keep coming");
}

//! Crash safety of a process manager: a child process runs a
//! [`ReactorRunner`] with the `fulfilment` process manager over 1,000
//! orders and is killed with SIGKILL at a random moment, 50 times, on the
//! same file; then one last child runs it to the end. Every order's process
//! then finished exactly once: one reservation in its SKU's stock stream,
//! one fulfilment on the order, its process stream exactly `started`,
//! `secured`, `completed`, no dead letter, and the stock adds up.
//!
//! Per order the process spans two commands and three events of its own:
//! on `order.placed` it records `started` and reserves the stock (a command
//! on `Stock`); on the `stock.reserved` that command wrote it records
//! `secured` and fulfils the order (a command on `Order`); on
//! `order.fulfilled` it records `completed`. The commands are not
//! idempotent by themselves (reserving twice reserves twice, fulfilling
//! twice writes two events), and a process handler that finds its process
//! in the wrong stage fails (and its reaction would end as a dead letter):
//! a double effect or a lost reaction shows.
//!
//! The parent writes the stock, then a wave of 20 orders before each run
//! of the child, so that the child reacts to new orders and to the
//! reactions to earlier ones (kills fall in all three). The child reports
//! each decision of the process (`step`, before the step's events are
//! appended) and each command its aggregate handles (`reserve`, `fulfil`,
//! after the step's events were appended and before the command's are);
//! the parent kills it a random delay after a random report, so kills fall
//! inside a reaction (between a step's append and its command, inside a
//! command), between a reaction and the checkpoint (checkpoints every 10
//! events) and between reactions. After each kill the parent checks the
//! file: nothing done twice, every event at or below the checkpoint fully
//! reacted to; and counts where the kill fell (`--nocapture` prints it).
//!
//! The child is this test binary again, running `reactor_crash_child` with
//! `SOURCERY_SQLITE_REACTOR_CRASH_CHILD` set.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::reactor::{Cause, Decision, OnFailure, ProcessManager, ReactorRunner, ReactorStore as _};
use sourcery_core::repository::Repository;
use sourcery_core::store::{EventFilter, EventStore as _};
use sourcery_sqlite::Store;

use super::bounded;

/// Holds the file's path in the child.
const CHILD: &str = "SOURCERY_SQLITE_REACTOR_CRASH_CHILD";
/// `kill` (run until killed) or `finish` (run to the end and stop), in the
/// child.
const MODE: &str = "SOURCERY_SQLITE_REACTOR_CRASH_MODE";
const KILLS: u32 = 50;
const ORDERS: u32 = 1_000;
const SKUS: u32 = 10;
/// Each SKU's stock: more than its orders reserve (at most 3 each).
const STOCK: u32 = 1_000;
/// The orders placed before each run of the child.
const WAVE: u32 = ORDERS / KILLS;
/// The kill falls after one of the first this many reports of a run (a
/// run to the end reports about 5 per order, and a few again after each
/// kill: the kills leave work for the last run).
const MAX_REPORTS_BEFORE_KILL: u64 = 180;
/// The latest moment of the kill after the report it follows: a reaction
/// of the (unoptimised) test build takes a few milliseconds here.
const MAX_KILL_DELAY: Duration = Duration::from_millis(3);
/// How long the parent waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// The child gives up after this long (the parent kills it long before).
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// What the child's lines start with (the harness may print the test's
/// name before the first one, on the same line).
const MARK: &str = "reactor-crash:";
/// The process manager's name: its checkpoint and dead letters.
const NAME: &str = "fulfilment";

/// Whether this process reports what its process manager and aggregates
/// do (in the child).
static REPORT: AtomicBool = AtomicBool::new(false);

fn report(line: std::fmt::Arguments<'_>) {
    if REPORT.load(Ordering::Relaxed) {
        // One line, one write: once it returns, the line is in the pipe
        // and survives the kill.
        println!("{MARK}{line}");
    }
}

/// An aggregate's event enum, written out (the derive macros live in the
/// facade crate).
macro_rules! events {
    ($name:ident { $($event:ident),+ $(,)? }) => {
        #[derive(Debug, Clone, PartialEq)]
        enum $name {
            $($event($event)),+
        }

        $(impl From<$event> for $name {
            fn from(event: $event) -> Self {
                Self::$event(event)
            }
        })+

        impl EventPayload for $name {
            fn kind(&self) -> &'static str {
                match self {
                    $(Self::$event(event) => event.kind()),+
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$event(event) => event.schema_version()),+
                }
            }

            fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
                match self {
                    $(Self::$event(event) => event.encode_with(codec)),+
                }
            }
        }

        impl DecodeEvent for $name {
            fn event_kinds() -> &'static [&'static str] {
                &[$($event::KIND),+]
            }

            fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
                $(if let Some(event) = $event::decode_with(codec, event)? {
                    return Ok(Some(Self::$event(event)));
                })+
                Ok(None)
            }
        }
    };
}

// --- Order -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    sku: String,
    quantity: u32,
}
impl DomainEvent for OrderPlaced {
    const KIND: &'static str = "order.placed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderFulfilled;
impl DomainEvent for OrderFulfilled {
    const KIND: &'static str = "order.fulfilled";
}

events!(OrderEvent {
    OrderPlaced,
    OrderFulfilled
});

#[derive(Debug, thiserror::Error)]
#[error("the order was never placed")]
struct NotPlaced;

#[derive(Debug, Default)]
struct Order {
    placed: bool,
}

impl Aggregate for Order {
    const KIND: &'static str = "order";
    type Id = String;
    type Event = OrderEvent;
    type Error = NotPlaced;

    fn apply(&mut self, event: &OrderEvent) {
        if let OrderEvent::OrderPlaced(_) = event {
            self.placed = true;
        }
    }
}

struct Place {
    sku: String,
    quantity: u32,
}
impl HandleCreate<Place> for Order {
    fn handle_create(command: &Place) -> Result<Vec<OrderEvent>, NotPlaced> {
        Ok(vec![
            OrderPlaced {
                sku: command.sku.clone(),
                quantity: command.quantity,
            }
            .into(),
        ])
    }
}

/// Fulfils the order: an event each time it runs, so that running it
/// twice shows.
#[derive(Debug)]
struct Fulfil {
    order: String,
}
impl Handle<Fulfil> for Order {
    fn handle(&self, command: &Fulfil) -> Result<Vec<OrderEvent>, NotPlaced> {
        if !self.placed {
            return Err(NotPlaced);
        }
        report(format_args!("fulfil {}", command.order));
        Ok(vec![OrderFulfilled.into()])
    }
}

// --- Stock -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReceived {
    quantity: u32,
}
impl DomainEvent for StockReceived {
    const KIND: &'static str = "stock.received";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReserved {
    order: String,
    quantity: u32,
}
impl DomainEvent for StockReserved {
    const KIND: &'static str = "stock.reserved";
}

events!(StockEvent {
    StockReceived,
    StockReserved
});

#[derive(Debug, thiserror::Error)]
#[error("only {0} left")]
struct Short(u32);

#[derive(Debug, Default)]
struct Stock {
    received: u32,
    available: u32,
    reserved: u32,
    reservations: u32,
}

impl Aggregate for Stock {
    const KIND: &'static str = "stock";
    type Id = String;
    type Event = StockEvent;
    type Error = Short;

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::StockReceived(received) => {
                self.received += received.quantity;
                self.available += received.quantity;
            }
            StockEvent::StockReserved(reserved) => {
                self.available -= reserved.quantity;
                self.reserved += reserved.quantity;
                self.reservations += 1;
            }
        }
    }
}

struct Receive(u32);
impl HandleCreate<Receive> for Stock {
    fn handle_create(command: &Receive) -> Result<Vec<StockEvent>, Short> {
        Ok(vec![StockReceived { quantity: command.0 }.into()])
    }
}

/// Reserves stock for an order: a reservation each time it runs, so that
/// running it twice shows.
#[derive(Debug)]
struct Reserve {
    order: String,
    quantity: u32,
}
impl Handle<Reserve> for Stock {
    fn handle(&self, command: &Reserve) -> Result<Vec<StockEvent>, Short> {
        if command.quantity > self.available {
            return Err(Short(self.available));
        }
        report(format_args!("reserve {}", command.order));
        Ok(vec![
            StockReserved {
                order: command.order.clone(),
                quantity: command.quantity,
            }
            .into(),
        ])
    }
}

// --- The process: one order's fulfilment --------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentStarted {
    sku: String,
    quantity: u32,
}
impl DomainEvent for FulfilmentStarted {
    const KIND: &'static str = "fulfilment.started";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockSecured;
impl DomainEvent for StockSecured {
    const KIND: &'static str = "fulfilment.secured";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentCompleted;
impl DomainEvent for FulfilmentCompleted {
    const KIND: &'static str = "fulfilment.completed";
}

events!(FulfilmentEvent {
    FulfilmentStarted,
    StockSecured,
    FulfilmentCompleted
});

/// The events of a finished process, in order.
const STEPS: [&str; 3] = [
    FulfilmentStarted::KIND,
    StockSecured::KIND,
    FulfilmentCompleted::KIND,
];

/// How far one order's fulfilment went, in its own stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    New,
    Started,
    Secured,
    Completed,
}

#[derive(Debug, Default)]
struct Fulfilment {
    stage: Stage,
}

impl Aggregate for Fulfilment {
    const KIND: &'static str = "fulfilment";
    type Id = String;
    type Event = FulfilmentEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &FulfilmentEvent) {
        self.stage = match event {
            FulfilmentEvent::FulfilmentStarted(_) => Stage::Started,
            FulfilmentEvent::StockSecured(_) => Stage::Secured,
            FulfilmentEvent::FulfilmentCompleted(_) => Stage::Completed,
        };
    }
}

type TestStore = Store<String, ()>;
type Step = Decision<Fulfilment, TestStore>;

/// The process of an order's own events: the order's id.
#[expect(
    clippy::unnecessary_wraps,
    reason = "a correlation returns `None` for events of no process"
)]
fn this_order<E>(_: &E, event: Cause<'_, TestStore>) -> Option<String> {
    Some(event.aggregate_id.clone())
}

/// The process of a reservation: the order it is for.
#[expect(
    clippy::unnecessary_wraps,
    reason = "a correlation returns `None` for events of no process"
)]
fn reserved_for(reserved: &StockReserved, _: Cause<'_, TestStore>) -> Option<String> {
    Some(reserved.order.clone())
}

/// The process is in `stage`, or the reaction fails: a step decided on
/// another state than the one before it is a library bug.
fn expect_stage(state: &Fulfilment, expected: Stage, order: &str, event: &str) -> Result<(), String> {
    if state.stage == expected {
        Ok(())
    } else {
        Err(format!(
            "{order}: {event} found the process {:?}, not {expected:?}",
            state.stage
        ))
    }
}

/// Every decision records its step unconditionally (a step appended
/// twice would show) after checking the stage it expects.
fn fulfilment() -> ProcessManager<Fulfilment, TestStore> {
    ProcessManager::<Fulfilment, TestStore>::new(NAME)
        .on(
            this_order::<OrderPlaced>,
            |state: &Fulfilment, placed: &OrderPlaced, event, out: &mut Step| {
                let order = event.aggregate_id.clone();
                report(format_args!("step placed {order}"));
                expect_stage(state, Stage::New, &order, OrderPlaced::KIND)?;
                out.record(FulfilmentStarted {
                    sku: placed.sku.clone(),
                    quantity: placed.quantity,
                });
                out.execute::<Stock, _>(
                    placed.sku.clone(),
                    Reserve {
                        order,
                        quantity: placed.quantity,
                    },
                );
                Ok::<_, String>(())
            },
        )
        .on(
            reserved_for,
            |state: &Fulfilment, reserved: &StockReserved, _, out: &mut Step| {
                let order = reserved.order.clone();
                report(format_args!("step reserved {order}"));
                expect_stage(state, Stage::Started, &order, StockReserved::KIND)?;
                out.record(StockSecured);
                out.execute::<Order, _>(order.clone(), Fulfil { order });
                Ok::<_, String>(())
            },
        )
        .on(
            this_order::<OrderFulfilled>,
            |state: &Fulfilment, _: &OrderFulfilled, event, out: &mut Step| {
                let order = &event.aggregate_id;
                report(format_args!("step fulfilled {order}"));
                expect_stage(state, Stage::Secured, order, OrderFulfilled::KIND)?;
                out.record(FulfilmentCompleted);
                Ok::<_, String>(())
            },
        )
}

fn order_id(n: u32) -> String {
    format!("order-{n:04}")
}

fn sku_of(n: u32) -> String {
    format!("sku-{}", n % SKUS)
}

fn quantity_of(n: u32) -> u32 {
    1 + n % 3
}

/// Writes the stock.
async fn receive_stock(store: &TestStore) {
    let repository = Repository::new(store.clone());
    for sku in 0..SKUS {
        bounded(repository.create::<Stock, _>(&sku_of(sku), &Receive(STOCK), ()))
            .await
            .expect("the stock is received");
    }
}

/// Places the orders `orders`.
async fn place(store: &TestStore, orders: std::ops::Range<u32>) {
    let repository = Repository::new(store.clone());
    for n in orders {
        let place = Place {
            sku: sku_of(n),
            quantity: quantity_of(n),
        };
        bounded(repository.create::<Order, _>(&order_id(n), &place, ()))
            .await
            .expect("the order is placed");
    }
}

/// What the log holds of the orders and their processes.
#[derive(Debug, Default)]
struct Log {
    /// Per order: the position of its `order.placed`, its SKU and quantity.
    placed: BTreeMap<String, (i64, String, u32)>,
    /// Per order: the position, SKU and quantity of each reservation.
    reservations: BTreeMap<String, Vec<(i64, String, u32)>>,
    /// Per order: the position of each `order.fulfilled`.
    fulfilled: BTreeMap<String, Vec<i64>>,
    /// Per order: the kinds of its process's events, in order.
    steps: BTreeMap<String, Vec<String>>,
    /// Per SKU: the stock received.
    received: BTreeMap<String, u32>,
}

impl Log {
    async fn load(store: &TestStore) -> Self {
        let kinds = [
            OrderPlaced::KIND,
            OrderFulfilled::KIND,
            StockReceived::KIND,
            StockReserved::KIND,
            FulfilmentStarted::KIND,
            StockSecured::KIND,
            FulfilmentCompleted::KIND,
        ];
        let filters: Vec<_> = kinds.into_iter().map(EventFilter::for_event).collect();
        let mut events = bounded(store.load_events(&filters)).await.expect("the log loads");
        events.sort_by_key(|event| event.position);
        let mut log = Self::default();
        let codec = store.codec();
        for event in &events {
            let id = event.aggregate_id.clone();
            match event.kind.as_str() {
                OrderPlaced::KIND => {
                    let placed: OrderPlaced = event.decode(codec).expect("an order decodes");
                    log.placed
                        .insert(id, (event.position, placed.sku, placed.quantity));
                }
                OrderFulfilled::KIND => log.fulfilled.entry(id).or_default().push(event.position),
                StockReceived::KIND => {
                    let received: StockReceived = event.decode(codec).expect("a receipt decodes");
                    *log.received.entry(id).or_default() += received.quantity;
                }
                StockReserved::KIND => {
                    let reserved: StockReserved = event.decode(codec).expect("a reservation decodes");
                    log.reservations.entry(reserved.order).or_default().push((
                        event.position,
                        id,
                        reserved.quantity,
                    ));
                }
                kind => log.steps.entry(id).or_default().push(kind.to_owned()),
            }
        }
        log
    }

    fn steps_of(&self, order: &str) -> &[String] {
        self.steps.get(order).map_or(&[], Vec::as_slice)
    }

    fn count<T>(map: &BTreeMap<String, Vec<T>>, order: &str) -> usize {
        map.get(order).map_or(0, Vec::len)
    }

    /// Checks what holds at any moment, and returns where the run stands
    /// against `checkpoint`.
    fn check(&self, checkpoint: Option<i64>, context: &str) -> Progress {
        let mut progress = Progress::default();
        let covered = |position: i64| Some(position) <= checkpoint;
        for (order, (position, sku, quantity)) in &self.placed {
            let steps = self.steps_of(order);
            assert!(
                steps.len() <= STEPS.len()
                    && steps.iter().zip(STEPS).all(|(step, expected)| step == expected),
                "{context}: the process of {order} is {steps:?}, not a beginning of {STEPS:?}"
            );
            let reservations = self.reservations.get(order).map_or(&[][..], Vec::as_slice);
            assert!(
                reservations.len() <= 1,
                "{context}: {order} was reserved {} times: {reservations:?}",
                reservations.len()
            );
            if let Some((_, reserved_sku, reserved)) = reservations.first() {
                assert_eq!(
                    (reserved_sku, reserved),
                    (sku, quantity),
                    "{context}: {order}'s reservation is its SKU's, of its quantity"
                );
            }
            let fulfilled = Self::count(&self.fulfilled, order);
            assert!(
                fulfilled <= 1,
                "{context}: {order} was fulfilled {fulfilled} times"
            );
            let (started, secured, completed) = (!steps.is_empty(), steps.len() >= 2, steps.len() >= 3);
            let reserved = !reservations.is_empty();
            let fulfilled = fulfilled == 1;
            // Each effect follows the step that causes it.
            assert!(
                !reserved || started,
                "{context}: {order} was reserved before its process started"
            );
            assert!(
                secured <= reserved,
                "{context}: {order}'s process secured stock never reserved"
            );
            assert!(
                fulfilled <= secured,
                "{context}: {order} was fulfilled before its stock was secured"
            );
            assert!(
                completed <= fulfilled,
                "{context}: {order}'s process completed an unfulfilled order"
            );
            // Reacted to (the step and its command) once the checkpoint
            // passed it; reacted to beyond the checkpoint: delivered again.
            let reactions = [
                (Some(*position), started, reserved),
                (reservations.first().map(|r| r.0), secured, fulfilled),
                (
                    self.fulfilled.get(order).and_then(|f| f.first().copied()),
                    completed,
                    true,
                ),
            ];
            for (cause, step, effect) in reactions {
                let Some(cause) = cause else { continue };
                if covered(cause) {
                    assert!(
                        step && effect,
                        "{context}: the checkpoint {checkpoint:?} passed the event at {cause} of {order}, \
                         whose reaction is not done (process {steps:?}, reserved {reserved}, fulfilled \
                         {fulfilled})"
                    );
                } else if step {
                    progress.reacted_beyond_checkpoint += 1;
                }
            }
            if (started && !reserved) || (secured && !fulfilled) {
                progress.step_without_command += 1;
            }
            if completed {
                progress.completed += 1;
            }
        }
        progress
    }
}

/// Where a run stands after a kill.
#[derive(Debug, Default)]
struct Progress {
    /// Processes whose last step was appended and its command not.
    step_without_command: usize,
    /// Events reacted to (their step appended) beyond the checkpoint: they
    /// are delivered again.
    reacted_beyond_checkpoint: usize,
    /// Processes completed.
    completed: usize,
}

/// Where the kills fell.
#[derive(Debug, Default)]
struct Tally {
    /// Inside a reaction: a step appended, its command not.
    inside_reaction: u32,
    /// After reactions the checkpoint did not cover yet.
    before_checkpoint: u32,
    /// The events those kills left to be delivered again.
    redelivered: usize,
    /// Whose child's last report was of a step being decided (before its
    /// append).
    after_step_report: u32,
    /// Whose child's last report was of a command being handled (before
    /// its append).
    after_command_report: u32,
    /// After the child had reacted to everything.
    idle: u32,
}

/// What the child reported before it was killed.
#[derive(Debug, Default)]
struct Reports {
    running: bool,
    /// Reports of steps and commands.
    reported: u64,
    /// The last of them.
    last: Option<String>,
    /// Whether it reacted to everything.
    caught_up: bool,
    finished: Option<String>,
}

impl Reports {
    /// Takes one line; returns the error the child stopped with, if it
    /// says so.
    fn take(&mut self, line: &str) -> Option<String> {
        let (_, report) = line.split_once(MARK)?;
        match report.split_once(' ').map_or(report, |(word, _)| word) {
            "running" => self.running = true,
            "caught-up" => self.caught_up = true,
            "finished" => self.finished = Some(report.to_owned()),
            "step" | "reserve" | "fulfil" => {
                self.reported += 1;
                self.last = Some(report.to_owned());
            }
            _ => return Some(report.to_owned()),
        }
        None
    }
}

fn spawn(path: &Path, mode: &str) -> (Child, Receiver<String>, std::thread::JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &test_name!(reactor_crash_child),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, path)
        .env(MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let (received, reader) = super::lines_of(child.stdout.take().expect("the child's stdout"));
    (child, received, reader)
}

/// Reads the child's next line into `reports`, failing the test (after
/// killing the child) when none comes in time or the child says it
/// stopped.
fn next_line(child: &mut Child, received: &Receiver<String>, reports: &mut Reports, context: &str) {
    let stopped = match received.recv_timeout(LINE_TIMEOUT) {
        Ok(line) => match reports.take(&line) {
            None => return,
            Some(stopped) => format!("the child says: {stopped}"),
        },
        Err(error) => format!("the child stopped reporting: {error} ({reports:?})"),
    };
    let _ = child.kill();
    let _ = child.wait();
    panic!("{context}: {stopped}");
}

/// Starts the child, waits for its `kill_after`th report (or until it
/// reacted to everything), then for `delay`, kills it with SIGKILL and
/// returns what it reported.
fn run_and_kill(path: &Path, kill_after: u64, delay: Duration, context: &str) -> Reports {
    let (mut child, received, reader) = spawn(path, "kill");
    let mut reports = Reports::default();
    while reports.reported < kill_after && !reports.caught_up {
        next_line(&mut child, &received, &mut reports, context);
    }
    super::spin_for(delay);
    child.kill().expect("SIGKILL reaches the child");
    child.wait().expect("the child is reaped");
    // What the child wrote before the kill is in the pipe.
    let mut after = Reports::default();
    while let Ok(line) = received.recv_timeout(LINE_TIMEOUT) {
        if let Some(stopped) = after.take(&line) {
            panic!("{context}: the child says: {stopped}");
        }
    }
    reader.join().expect("the reader thread ends");
    assert!(reports.running, "{context}: the child said it was running");
    reports.reported += after.reported;
    reports.caught_up |= after.caught_up;
    if after.last.is_some() {
        reports.last = after.last;
    }
    reports
}

/// Runs the child to the end and returns its last line.
fn run_to_end(path: &Path, context: &str) -> String {
    let (mut child, received, reader) = spawn(path, "finish");
    let mut reports = Reports::default();
    while reports.finished.is_none() {
        next_line(&mut child, &received, &mut reports, context);
    }
    let status = child.wait().expect("the child ends");
    reader.join().expect("the reader thread ends");
    assert!(status.success(), "{context}: the child ended with {status}");
    reports.finished.expect("a last line")
}

#[test]
fn a_process_manager_killed_50_times_finishes_every_order_exactly_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reactor-crash.db");
    let mut random = super::Random::from_clock("reactor crash test");
    let seed = random.seed;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store: TestStore = runtime.block_on(async {
        let store = bounded(Store::open(&path)).await.expect("the store opens");
        receive_stock(&store).await;
        store
    });
    let checkpoints = store.checkpoints();
    let mut checkpoint: Option<i64> = None;
    let mut tally = Tally::default();

    for run in 0..KILLS {
        // A wave of orders: the child reacts to them and to the reactions
        // of the waves before.
        runtime.block_on(place(&store, run * WAVE..(run + 1) * WAVE));
        let kill_after = 1 + random.next(MAX_REPORTS_BEFORE_KILL);
        let delay =
            Duration::from_micros(random.next(u64::try_from(MAX_KILL_DELAY.as_micros()).expect("small")));
        let context = format!("run {run} (seed {seed}, kill after report {kill_after}, then {delay:?})");
        let reports = run_and_kill(&path, kill_after, delay, &context);

        let found = runtime
            .block_on(bounded(checkpoints.load(NAME)))
            .expect("the checkpoint reads");
        assert!(
            found >= checkpoint,
            "{context}: the checkpoint went back from {checkpoint:?} to {found:?}"
        );
        checkpoint = found;
        let log = runtime.block_on(Log::load(&store));
        let progress = log.check(checkpoint, &context);
        if reports.caught_up {
            tally.idle += 1;
        } else {
            match reports.last.as_deref().map(|last| last.split(' ').next()) {
                Some(Some("step")) => tally.after_step_report += 1,
                Some(_) => tally.after_command_report += 1,
                None => {}
            }
        }
        if progress.step_without_command > 0 {
            tally.inside_reaction += 1;
        }
        if progress.reacted_beyond_checkpoint > 0 {
            tally.before_checkpoint += 1;
            tally.redelivered += progress.reacted_beyond_checkpoint;
        }
    }

    let context = format!("after the kills (seed {seed})");
    let before_last_run = runtime.block_on(Log::load(&store)).check(checkpoint, &context);
    let last_run = run_to_end(&path, &context);
    let context = format!("after the last run (seed {seed})");
    runtime.block_on(check_finished(&store, &context));
    assert!(
        tally.inside_reaction > 0 && tally.before_checkpoint > 0,
        "seed {seed}: no kill fell inside a reaction or before a checkpoint ({tally:?}): the test tested \
         less than it should"
    );
    eprintln!(
        "reactor crash test (seed {seed}): {KILLS} kills over {ORDERS} orders in {:.1?}; kills \
         inside a reaction (a step appended, its command not): {}, after reactions beyond the checkpoint: {} \
         ({} events delivered again), last report a step's: {}, a command's: {}, \
         after the child caught up: {}; {} of {ORDERS} processes completed before the last run, which {}",
        started.elapsed(),
        tally.inside_reaction,
        tally.before_checkpoint,
        tally.redelivered,
        tally.after_step_report,
        tally.after_command_report,
        tally.idle,
        before_last_run.completed,
        last_run
    );
}

/// Checks that every order's process finished exactly once: its process
/// stream, one reservation, one fulfilment; no dead letter; the stock adds
/// up.
async fn check_finished(store: &TestStore, context: &str) {
    let log = Log::load(store).await;
    let checkpoint = bounded(store.checkpoints().load(NAME))
        .await
        .expect("the checkpoint reads");
    let progress = log.check(checkpoint, context);

    // Every order's process finished, exactly once.
    assert_eq!(log.placed.len(), ORDERS as usize, "{context}: the orders");
    for order in log.placed.keys() {
        assert_eq!(log.steps_of(order), STEPS, "{context}: the process of {order}");
        assert_eq!(
            Log::count(&log.reservations, order),
            1,
            "{context}: {order}'s reservations"
        );
        assert_eq!(
            Log::count(&log.fulfilled, order),
            1,
            "{context}: {order}'s fulfilments"
        );
    }
    assert_eq!(
        progress.completed, ORDERS as usize,
        "{context}: completed processes"
    );
    assert_eq!(
        log.reservations.keys().collect::<Vec<_>>(),
        log.placed.keys().collect::<Vec<_>>(),
        "{context}: reservations are for the orders placed"
    );
    let letters = bounded(store.reactors().dead_letters(NAME))
        .await
        .expect("the dead letters read");
    assert!(letters.is_empty(), "{context}: dead letters: {letters:?}");
    // The stock adds up, loaded as aggregates.
    let repository = Repository::new(store.clone());
    for sku in 0..SKUS {
        let sku = sku_of(sku);
        let ordered: u32 = (0..ORDERS).filter(|&n| sku_of(n) == sku).map(quantity_of).sum();
        let orders = u32::try_from((0..ORDERS).filter(|&n| sku_of(n) == sku).count()).expect("small");
        let stock = bounded(repository.load::<Stock>(&sku))
            .await
            .expect("the stock loads");
        assert_eq!(
            (
                stock.received,
                stock.reserved,
                stock.available,
                stock.reservations
            ),
            (STOCK, ordered, STOCK - ordered, orders),
            "{context}: the stock of {sku} (received, reserved, available, reservations)"
        );
        assert_eq!(
            log.received.get(&sku),
            Some(&STOCK),
            "{context}: {sku} received once"
        );
    }
}

/// The highest position of an event the process manager reacts to.
async fn last_reacted_to(store: &TestStore) -> Option<i64> {
    let filters = [OrderPlaced::KIND, StockReserved::KIND, OrderFulfilled::KIND].map(EventFilter::for_event);
    let events = bounded(store.load_events(&filters)).await.expect("the log loads");
    events.iter().map(|event| event.position).max()
}

/// The child: runs the process manager, reporting as it goes; once it
/// reacted to everything (its own commands' events too), it says so and
/// waits to be killed (`kill`) or stops (`finish`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactor_crash_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let finish = std::env::var(MODE).as_deref() == Ok("finish");
    REPORT.store(true, Ordering::Relaxed);
    let store = bounded(TestStore::open(Path::new(&path)))
        .await
        .expect("the child opens the store");
    let running = ReactorRunner::new(
        Repository::new(store.clone()),
        store.checkpoints(),
        store.reactors(),
    )
    .checkpoint_every(NonZeroUsize::new(10).expect("not zero"))
    .attempts(3)
    .backoff(Duration::from_millis(1), Duration::from_millis(10))
    .on_failure(OnFailure::Park)
    .start(fulfilment())
    .expect("the runner starts");
    println!("{MARK}running");
    let deadline = Instant::now() + CHILD_LIFETIME;
    // The log grows with the reactions' own events: wait until the runner
    // reacted to the last one and none came after it.
    let mut head = None;
    loop {
        let last = last_reacted_to(&store).await;
        if last == head {
            break;
        }
        head = last;
        let Some(position) = last else { break };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(error) = running.wait_for(position, left).await {
            println!("{MARK}stopped {error:?}: {:?}", running.stop().await);
            return;
        }
    }
    println!("{MARK}caught-up");
    if finish {
        let stats = bounded(running.stop()).await.expect("the runner stops cleanly");
        println!(
            "{MARK}finished with {} reactions, {} commands, {} parked",
            stats.reactions, stats.commands, stats.parked
        );
    } else {
        let left = deadline.saturating_duration_since(Instant::now());
        println!("{MARK}gave up {:?}", running.wait_for(i64::MAX, left).await);
    }
}

//! An order's fulfilment as a process manager, on the SQLite store: stock
//! reserved when the order is placed, the order cancelled when no payment
//! came within 30 minutes, a reservation that failed parked as a dead letter
//! and retried once the missing stock exists.
//!
//! Three aggregates (`Order`, `Stock`, `Payment`) know nothing of each
//! other. The process manager `fulfilment` follows their events and keeps
//! the state of each order's fulfilment in an aggregate of its own
//! (`Fulfilment`, one stream per order id). Time is simulated with a
//! `TestClock`, so the 30-minute deadline passes in an instant.
//!
//! Run with `cargo run --example order_fulfilment`.

use std::convert::Infallible;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::reactor::{Cause, Decision, ProcessManager, ReactorRunner, ReactorStore as _};
use sourcery::schedule::{Clock as _, ScheduledCommand, TestClock};
use sourcery::store::{EventFilter, EventStore as _, sqlite};
use sourcery::{Aggregate, Apply, DomainEvent, EventMetadata, Handle, HandleCreate, Repository};

type Store = sqlite::Store<String, EventMetadata>;

const WAIT: Duration = Duration::from_secs(10);
const PAYMENT_DEADLINE: Duration = Duration::from_secs(30 * 60);

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

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("the order was cancelled")]
    Cancelled,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = OrderError, events(OrderPlaced, OrderPaid, OrderCancelled))]
struct Order {
    sku: String,
    quantity: u32,
    paid: bool,
    cancelled: Option<String>,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, event: &OrderPlaced) {
        self.sku.clone_from(&event.sku);
        self.quantity = event.quantity;
    }
}
impl Apply<OrderPaid> for Order {
    fn apply(&mut self, _: &OrderPaid) {
        self.paid = true;
    }
}
impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, event: &OrderCancelled) {
        self.cancelled = Some(event.reason.clone());
    }
}

struct PlaceOrder {
    sku: &'static str,
    quantity: u32,
}
impl HandleCreate<PlaceOrder> for Order {
    fn handle_create(command: &PlaceOrder) -> Result<Vec<OrderEvent>, OrderError> {
        Ok(vec![
            OrderPlaced {
                sku: command.sku.to_owned(),
                quantity: command.quantity,
            }
            .into(),
        ])
    }
}

/// Sent by the process once the payment for the order came in.
#[derive(Debug, PartialEq)]
struct MarkPaid;
impl Handle<MarkPaid> for Order {
    fn handle(&self, _: &MarkPaid) -> Result<Vec<OrderEvent>, OrderError> {
        match (&self.cancelled, self.paid) {
            (Some(_), _) => Err(OrderError::Cancelled),
            (None, true) => Ok(vec![]),
            (None, false) => Ok(vec![OrderPaid.into()]),
        }
    }
}

/// Scheduled for later: cancels the order unless it was paid by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CancelUnpaid {
    reason: String,
}
impl ScheduledCommand for CancelUnpaid {
    const KIND: &'static str = "order.cancel-unpaid";
}
impl Handle<CancelUnpaid> for Order {
    fn handle(&self, command: &CancelUnpaid) -> Result<Vec<OrderEvent>, OrderError> {
        if self.paid || self.cancelled.is_some() {
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
    quantity: u32,
}
impl DomainEvent for StockReserved {
    const KIND: &'static str = "stock.reserved";
}

#[derive(Debug, thiserror::Error)]
enum StockError {
    #[error("only {0} left")]
    Short(u32),
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = StockError, events(StockReceived, StockReserved))]
struct Stock {
    available: u32,
    reserved: u32,
}

impl Apply<StockReceived> for Stock {
    fn apply(&mut self, event: &StockReceived) {
        self.available += event.quantity;
    }
}
impl Apply<StockReserved> for Stock {
    fn apply(&mut self, event: &StockReserved) {
        self.available -= event.quantity;
        self.reserved += event.quantity;
    }
}

struct ReceiveStock(u32);
impl HandleCreate<ReceiveStock> for Stock {
    fn handle_create(command: &ReceiveStock) -> Result<Vec<StockEvent>, StockError> {
        Ok(vec![StockReceived { quantity: command.0 }.into()])
    }
}

#[derive(Debug, PartialEq)]
struct Reserve(u32);
impl Handle<Reserve> for Stock {
    fn handle(&self, command: &Reserve) -> Result<Vec<StockEvent>, StockError> {
        if command.0 > self.available {
            return Err(StockError::Short(self.available));
        }
        Ok(vec![StockReserved { quantity: command.0 }.into()])
    }
}

// --- Payment -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentReceived {
    order: String,
    cents: u64,
}
impl DomainEvent for PaymentReceived {
    const KIND: &'static str = "payment.received";
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Infallible, events(PaymentReceived))]
struct Payment {
    order: String,
    cents: u64,
}

impl Apply<PaymentReceived> for Payment {
    fn apply(&mut self, event: &PaymentReceived) {
        self.order.clone_from(&event.order);
        self.cents = event.cents;
    }
}

struct ReceivePayment {
    order: &'static str,
    cents: u64,
}
impl HandleCreate<ReceivePayment> for Payment {
    fn handle_create(command: &ReceivePayment) -> Result<Vec<PaymentEvent>, Infallible> {
        Ok(vec![
            PaymentReceived {
                order: command.order.to_owned(),
                cents: command.cents,
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
struct PaymentRecorded {
    payment: String,
}
impl DomainEvent for PaymentRecorded {
    const KIND: &'static str = "fulfilment.payment-recorded";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentEnded {
    outcome: String,
}
impl DomainEvent for FulfilmentEnded {
    const KIND: &'static str = "fulfilment.ended";
}

/// Where one order's fulfilment stands, kept in its own stream.
#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Infallible, events(FulfilmentStarted, PaymentRecorded, FulfilmentEnded))]
struct Fulfilment {
    steps: Vec<String>,
    started: bool,
    paid_by: Option<String>,
    outcome: Option<String>,
}

impl Apply<FulfilmentStarted> for Fulfilment {
    fn apply(&mut self, event: &FulfilmentStarted) {
        self.started = true;
        self.steps
            .push(format!("started: reserve {} x {}", event.quantity, event.sku));
    }
}
impl Apply<PaymentRecorded> for Fulfilment {
    fn apply(&mut self, event: &PaymentRecorded) {
        self.paid_by = Some(event.payment.clone());
        self.steps.push(format!("paid by {}", event.payment));
    }
}
impl Apply<FulfilmentEnded> for Fulfilment {
    fn apply(&mut self, event: &FulfilmentEnded) {
        self.outcome = Some(event.outcome.clone());
        self.steps.push(format!("ended: {}", event.outcome));
    }
}

type Step = Decision<Fulfilment, Store>;

/// The process of an order's own events: the order's id.
#[expect(
    clippy::unnecessary_wraps,
    reason = "a correlation returns `None` for events of no process"
)]
fn this_order<E>(_: &E, event: Cause<'_, Store>) -> Option<String> {
    Some(event.aggregate_id.clone())
}

/// The process of a payment: the order it pays.
#[expect(
    clippy::unnecessary_wraps,
    reason = "a correlation returns `None` for events of no process"
)]
fn paid_order(payment: &PaymentReceived, _: Cause<'_, Store>) -> Option<String> {
    Some(payment.order.clone())
}

fn deadline_key(order: &str) -> String {
    format!("payment-deadline/{order}")
}

fn fulfilment() -> ProcessManager<Fulfilment, Store> {
    ProcessManager::<Fulfilment, Store>::new("fulfilment")
        .on(
            this_order::<OrderPlaced>,
            |state: &Fulfilment, placed: &OrderPlaced, event, out: &mut Step| {
                if !state.started {
                    let order = event.aggregate_id.clone();
                    out.record(FulfilmentStarted {
                        sku: placed.sku.clone(),
                        quantity: placed.quantity,
                    });
                    out.execute::<Stock, _>(placed.sku.clone(), Reserve(placed.quantity));
                    out.schedule_after::<Order, _>(
                        deadline_key(&order),
                        PAYMENT_DEADLINE,
                        order,
                        CancelUnpaid {
                            reason: "no payment within 30 minutes".into(),
                        },
                    );
                }
                Ok::<_, Infallible>(())
            },
        )
        .on(
            paid_order,
            |state: &Fulfilment, payment: &PaymentReceived, event, out: &mut Step| {
                if state.paid_by.is_none() && state.outcome.is_none() {
                    out.record(PaymentRecorded {
                        payment: event.aggregate_id.clone(),
                    });
                    out.execute::<Order, _>(payment.order.clone(), MarkPaid);
                    out.cancel(deadline_key(&payment.order));
                }
                Ok::<_, Infallible>(())
            },
        )
        .on(
            this_order::<OrderCancelled>,
            |state: &Fulfilment, cancelled: &OrderCancelled, _, out: &mut Step| {
                if state.outcome.is_none() {
                    out.record(FulfilmentEnded {
                        outcome: format!("cancelled ({})", cancelled.reason),
                    });
                }
                Ok::<_, Infallible>(())
            },
        )
        .on(
            this_order::<OrderPaid>,
            |state: &Fulfilment, _: &OrderPaid, _, out: &mut Step| {
                if state.outcome.is_none() {
                    out.record(FulfilmentEnded {
                        outcome: "paid, ready to ship".into(),
                    });
                }
                Ok::<_, Infallible>(())
            },
        )
        .schedules::<Order, CancelUnpaid>()
}

// --- The run -------------------------------------------------------------

async fn place(
    repository: &Repository<Store>,
    order: &str,
    sku: &'static str,
    quantity: u32,
) -> Result<i64, Box<dyn std::error::Error>> {
    let outcome = repository
        .create::<Order, _>(
            &order.to_owned(),
            &PlaceOrder { sku, quantity },
            EventMetadata::new(),
        )
        .await?;
    println!("  {order}: placed, {quantity} x {sku}");
    Ok(outcome.last_position.unwrap_or_default())
}

async fn pay(
    repository: &Repository<Store>,
    payment: &str,
    order: &'static str,
    cents: u64,
) -> Result<i64, Box<dyn std::error::Error>> {
    let outcome = repository
        .create::<Payment, _>(
            &payment.to_owned(),
            &ReceivePayment { order, cents },
            EventMetadata::new(),
        )
        .await?;
    println!("  {payment}: {cents} cents received for {order}");
    Ok(outcome.last_position.unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.db");
    let store = Store::open(&path).await?;
    let repository = Repository::new(store.clone());
    let reactor_store = store.reactors();
    let clock = TestClock::new();
    println!("store: SQLite file {}", path.display());
    println!(
        "time is simulated: a TestClock, now {}",
        clock.now().format("%Y-%m-%d %H:%M UTC")
    );

    repository
        .create::<Stock, _>(&"apple".to_owned(), &ReceiveStock(10), EventMetadata::new())
        .await?;
    println!("\nstock: 10 x apple (no stock of pear yet)");

    let running = ReactorRunner::new(repository.clone(), store.checkpoints(), reactor_store.clone())
        .clock(clock.clone())
        .attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .timer_poll(Duration::from_millis(20))
        .start(fulfilment())?;

    println!("\n1. three orders, one paid");
    place(&repository, "order-1", "apple", 2).await?;
    place(&repository, "order-2", "apple", 3).await?;
    let pear = place(&repository, "order-3", "pear", 1).await?;
    let head = pay(&repository, "payment-1", "order-1", 1_999).await?;
    running.wait_for(head, WAIT).await?;

    println!(
        "\n2. reserving pear failed on every attempt: {} reaction parked",
        running.stats().parked
    );
    for letter in reactor_store.dead_letters("fulfilment").await? {
        println!(
            "  dead letter: {} of {} (position {}), tried {} times\n    error: {}",
            letter.event.kind,
            letter.event.aggregate_id,
            letter.event.position,
            letter.attempts,
            letter.error
        );
    }

    println!("\n3. pear arrives; the operator retries the dead letter");
    repository
        .create::<Stock, _>(&"pear".to_owned(), &ReceiveStock(5), EventMetadata::new())
        .await?;
    reactor_store.request_retry("fulfilment", pear).await?;
    running.wait_until(|stats| stats.retried == 1, WAIT).await?;
    let pears = repository.load::<Stock>(&"pear".to_owned()).await?;
    println!(
        "  retried: pear reserved {}, {} left; dead letters left: {}",
        pears.reserved,
        pears.available,
        reactor_store.dead_letters("fulfilment").await?.len()
    );
    let head = pay(&repository, "payment-3", "order-3", 499).await?;
    running.wait_for(head, WAIT).await?;

    clock.advance(Duration::from_secs(31 * 60));
    println!(
        "\n4. the clock moves on 31 minutes, to {}: order-2's payment deadline is due",
        clock.now().format("%H:%M")
    );
    running.wait_until(|stats| stats.timers_fired == 1, WAIT).await?;
    for cancelled in store
        .load_events(&[EventFilter::for_event(OrderCancelled::KIND)])
        .await?
    {
        println!("  timer fired: {} cancelled", cancelled.aggregate_id);
    }
    // The process ends on the orders' last events (written by its own
    // commands and by the timer): wait until it has reacted to them.
    let last = store
        .load_events(&[
            EventFilter::for_event(OrderPaid::KIND),
            EventFilter::for_event(OrderCancelled::KIND),
        ])
        .await?
        .iter()
        .map(|event| event.position)
        .max()
        .unwrap_or_default();
    running.wait_for(last, WAIT).await?;

    let stats = running.stop().await?;
    println!(
        "\nstopped: {} reactions, {} commands, {} parked, {} retried, {} timers fired, {} timers failed",
        stats.reactions, stats.commands, stats.parked, stats.retried, stats.timers_fired, stats.timers_failed
    );

    print_final_state(&repository).await
}

/// Each order, its fulfilment's steps, the stock and the payments, loaded
/// from their streams.
async fn print_final_state(repository: &Repository<Store>) -> Result<(), Box<dyn std::error::Error>> {
    println!("\nfinal state, loaded as aggregates:");
    for id in ["order-1", "order-2", "order-3"] {
        let id = id.to_owned();
        let order = repository.load::<Order>(&id).await?;
        let outcome = match (&order.cancelled, order.paid) {
            (Some(reason), _) => format!("cancelled: {reason}"),
            (None, true) => "paid".to_owned(),
            (None, false) => "open".to_owned(),
        };
        println!("  {id}: {} x {}, {outcome}", order.quantity, order.sku);
        let process = repository.load::<Fulfilment>(&id).await?;
        for step in &process.steps {
            println!("    fulfilment: {step}");
        }
    }
    for sku in ["apple", "pear"] {
        let stock = repository.load::<Stock>(&sku.to_owned()).await?;
        println!(
            "  stock {sku}: {} reserved, {} available",
            stock.reserved, stock.available
        );
    }
    for id in ["payment-1", "payment-3"] {
        let payment = repository.load::<Payment>(&id.to_owned()).await?;
        println!("  {id}: {} cents for {}", payment.cents, payment.order);
    }
    Ok(())
}

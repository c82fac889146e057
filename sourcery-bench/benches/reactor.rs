//! Reactions per second of a reactor issuing one command per event, against
//! the same commands executed directly in a loop, in the same process, on
//! SQLite and PostgreSQL.
//!
//! The domain: an order is placed (`OrderPlaced`) and the reactor confirms
//! it (`Confirm` on the same order, which appends `OrderConfirmed`). Each
//! command loads a one-event stream and appends one event, so streams stay
//! short and every command does the same store work.
//!
//! Each round writes, untimed, three sets of ORDERS fresh orders: placed
//! ones for the reactor, and two sets of drafted ones (`OrderDrafted`: the
//! same payload under a kind the reactor does not react to) for the
//! baselines. Then it times, in an order that rotates from round to round:
//!
//! - **reactor**: `ReactorRunner::start` (the reactor resuming after its
//!   checkpoint) to `wait_for` the last placed order's position; the runner
//!   is stopped, untimed, after;
//! - **hand**: a loop of `repository.execute(Confirm)` on the drafted
//!   orders, with the metadata of an event caused by each one;
//! - **hand+id**: the same loop with `execute_with` and the command id and
//!   retry policy the runner gives a reaction's command
//!   (`reaction_command_id`), so the cost of idempotency (the replay probe)
//!   and the cost of the runner are told apart.
//!
//! Ratios are baseline time ÷ reactor time (reactor speed ÷ hand speed), per
//! round, with their median. The runner's spin-up (start until it is active,
//! no events to read) is measured apart and printed.
//!
//! `ROUNDS` (default 9), `ORDERS` (default 500), `SYNC` (`full`, the
//! default, or `normal`: SQLite's synchronous mode), `ONLY` (`sqlite` or
//! `postgres`); `DATABASE_URL` for PostgreSQL (skipped without it; a fresh
//! schema per run).
//!
//! `cargo bench -p sourcery-bench --bench reactor`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery::checkpoint::CheckpointStore;
use sourcery::id::EventId;
use sourcery::reactor::{Reactor, ReactorRunner, ReactorStore, reaction_command_id};
use sourcery::repository::{CommandOptions, RetryPolicy};
use sourcery::store::{postgres, sqlite};
use sourcery::subscription::Subscribe;
use sourcery::{Aggregate, Apply, DomainEvent, EventMetadata, Handle, HandleCreate, Repository};

const REACTOR: &str = "bench-confirmations";
const HAND: &str = "bench-hand";
const WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    sku: String,
    quantity: u32,
}

impl DomainEvent for OrderPlaced {
    const KIND: &'static str = "bench.order.placed";
}

/// The baselines' source event: `OrderPlaced`'s payload under another kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderDrafted {
    sku: String,
    quantity: u32,
}

impl DomainEvent for OrderDrafted {
    const KIND: &'static str = "bench.order.drafted";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderConfirmed {
    quantity: u32,
}

impl DomainEvent for OrderConfirmed {
    const KIND: &'static str = "bench.order.confirmed";
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Infallible, events(OrderPlaced, OrderDrafted, OrderConfirmed))]
struct Order {
    quantity: u32,
    confirmed: bool,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, event: &OrderPlaced) {
        self.quantity = event.quantity;
    }
}

impl Apply<OrderDrafted> for Order {
    fn apply(&mut self, event: &OrderDrafted) {
        self.quantity = event.quantity;
    }
}

impl Apply<OrderConfirmed> for Order {
    fn apply(&mut self, _: &OrderConfirmed) {
        self.confirmed = true;
    }
}

struct Place {
    quantity: u32,
    draft: bool,
}

impl HandleCreate<Place> for Order {
    fn handle_create(command: &Place) -> Result<Vec<OrderEvent>, Infallible> {
        let sku = format!("sku-{:04}", command.quantity);
        Ok(vec![if command.draft {
            OrderDrafted {
                sku,
                quantity: command.quantity,
            }
            .into()
        } else {
            OrderPlaced {
                sku,
                quantity: command.quantity,
            }
            .into()
        }])
    }
}

#[derive(Debug)]
struct Confirm;

impl Handle<Confirm> for Order {
    fn handle(&self, _: &Confirm) -> Result<Vec<OrderEvent>, Infallible> {
        assert!(!self.confirmed, "each order is confirmed once");
        Ok(vec![
            OrderConfirmed {
                quantity: self.quantity,
            }
            .into(),
        ])
    }
}

/// Confirms every order placed: one command per event.
fn confirmations<S>() -> Reactor<S>
where
    S: Subscribe<Id = String, Metadata = EventMetadata>,
{
    Reactor::<S>::new(REACTOR).on(|_: &OrderPlaced, cause, out| {
        out.execute::<Order, _>(cause.aggregate_id.clone(), Confirm);
        Ok::<_, Infallible>(())
    })
}

/// An order written for a round: its id, its event's id and metadata.
struct Written {
    id: String,
    event: EventId,
    metadata: EventMetadata,
}

/// Writes `count` orders `<prefix>-<n>`, placed or drafted; returns them
/// and the last position.
async fn write_orders<S>(
    repository: &Repository<S>,
    prefix: &str,
    count: usize,
    draft: bool,
) -> (Vec<Written>, S::Position)
where
    S: Subscribe<Id = String, Metadata = EventMetadata>,
{
    let mut written = Vec::with_capacity(count);
    let mut last = None;
    for n in 0..count {
        let id = format!("{prefix}-{n:06}");
        let metadata = EventMetadata::new();
        let quantity = u32::try_from(n % 50 + 1).unwrap_or(1);
        let outcome = repository
            .create::<Order, _>(&id, &Place { quantity, draft }, metadata.clone())
            .await
            .expect("an order is written");
        last = outcome.last_position;
        written.push(Written {
            id,
            event: outcome.event_ids[0],
            metadata,
        });
    }
    (written, last.expect("orders were written"))
}

/// Runs `work` in a task of the runtime, as the reactor's runner runs: the
/// baselines then execute on the same worker threads as the reactor.
async fn in_task<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(work).await.expect("the baseline task completes")
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        f64::midpoint(values[middle - 1], values[middle])
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), &v| (low.min(v), high.max(v)))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Reactor,
    Hand,
    HandWithId,
}

/// The order of the sides in round `round`: every permutation in turn.
fn order(round: usize) -> [Side; 3] {
    use Side::{Hand, HandWithId, Reactor};
    const ORDERS: [[Side; 3]; 6] = [
        [Reactor, Hand, HandWithId],
        [Hand, HandWithId, Reactor],
        [HandWithId, Reactor, Hand],
        [Reactor, HandWithId, Hand],
        [Hand, Reactor, HandWithId],
        [HandWithId, Hand, Reactor],
    ];
    ORDERS[round % ORDERS.len()]
}

/// The reactor, the baselines and the spin-up on one store.
#[expect(clippy::too_many_lines, reason = "one benchmark, read top to bottom")]
fn bench<S, K, D>(label: &str, runtime: &tokio::runtime::Runtime, store: &S, checkpoints: &K, reactors: &D)
where
    S: Subscribe<Id = String, Metadata = EventMetadata>,
    K: CheckpointStore<S::Position> + Clone,
    D: ReactorStore<S::Id, S::Position, S::Metadata> + Clone,
{
    let rounds = env_usize("ROUNDS", 9);
    let count = env_usize("ORDERS", 500);
    let repository = Repository::new(store.clone());
    let every = NonZeroUsize::new(env_usize("CHECKPOINT_EVERY", 100)).unwrap_or(NonZeroUsize::MIN);
    let runner = || {
        ReactorRunner::new(
            Repository::new(store.clone()),
            checkpoints.clone(),
            reactors.clone(),
        )
        .checkpoint_every(every)
    };

    // Warm-up, not counted: the reactor's checkpoint exists from here on,
    // every statement is prepared, the pools are open.
    let (warm, warm_last) = runtime.block_on(write_orders(&repository, "warm", 50, false));
    runtime.block_on(async {
        let running = runner().start(confirmations::<S>()).expect("starts");
        running.wait_for(warm_last, WAIT).await.expect("warm-up reacted");
        let stats = running.stop().await.expect("stops");
        assert_eq!(stats.commands, 50);
    });
    drop(warm);
    let (warm_hand, _) = runtime.block_on(write_orders(&repository, "warm-hand", 50, true));
    runtime.block_on(async {
        for order in &warm_hand {
            let metadata = EventMetadata::caused_by(order.event, &order.metadata);
            repository
                .execute::<Order, _>(&order.id, &Confirm, metadata)
                .await
                .expect("confirmed");
        }
    });

    let per_second =
        |time: Duration| f64::from(u32::try_from(count).unwrap_or(u32::MAX)) / time.as_secs_f64();
    let millis = |time: Duration| time.as_secs_f64() * 1e3;
    let (mut reactor_times, mut hand_times, mut id_times, mut spin_ups) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut id_ratios, mut idempotency) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "{label}: {rounds} rounds of {count} orders; ratio = baseline time ÷ reactor time \
         (reactor speed ÷ hand speed)"
    );
    for round in 0..rounds {
        // Spin-up alone: start until active at the checkpoint, nothing to read.
        let spin_up = runtime.block_on(async {
            let head = runner().start(confirmations::<S>()).expect("starts");
            let start = Instant::now();
            let at = loop {
                let status = head.status();
                if status.active {
                    break status.position;
                }
                tokio::task::yield_now().await;
            };
            let spin_up = start.elapsed();
            assert!(at.is_some(), "the reactor resumes after its checkpoint");
            head.stop().await.expect("stops");
            spin_up
        });
        let (placed, last) = runtime.block_on(write_orders(
            &repository,
            &format!("r{round}-react"),
            count,
            false,
        ));
        drop(placed);
        let write =
            |prefix: &str| Arc::new(runtime.block_on(write_orders(&repository, prefix, count, true)).0);
        let (drafted, drafted_id) = (write(&format!("r{round}-hand")), write(&format!("r{round}-id")));
        let mut times = [Duration::ZERO; 3];
        for side in order(round) {
            let elapsed = match side {
                Side::Reactor => runtime.block_on(async {
                    let start = Instant::now();
                    let running = runner().start(confirmations::<S>()).expect("starts");
                    running
                        .wait_for(last, WAIT)
                        .await
                        .expect("the reactor reached the last order");
                    let elapsed = start.elapsed();
                    let stats = running.stop().await.expect("stops");
                    assert_eq!(
                        (stats.reactions, stats.commands, stats.parked),
                        (count as u64, count as u64, 0)
                    );
                    elapsed
                }),
                Side::Hand => {
                    let (repository, orders) = (repository.clone(), Arc::clone(&drafted));
                    runtime.block_on(in_task(async move {
                        let start = Instant::now();
                        for order in orders.iter() {
                            let metadata = EventMetadata::caused_by(order.event, &order.metadata);
                            repository
                                .execute::<Order, _>(&order.id, &Confirm, metadata)
                                .await
                                .expect("confirmed");
                        }
                        start.elapsed()
                    }))
                }
                Side::HandWithId => {
                    let (repository, orders) = (repository.clone(), Arc::clone(&drafted_id));
                    runtime.block_on(in_task(async move {
                        let start = Instant::now();
                        for order in orders.iter() {
                            let metadata = EventMetadata::caused_by(order.event, &order.metadata);
                            let options = CommandOptions::new()
                                .command_id(reaction_command_id(HAND, order.event, 0))
                                .retry(RetryPolicy::none().conflicts(5));
                            let outcome = repository
                                .execute_with::<Order, _>(&order.id, &Confirm, metadata, options)
                                .await
                                .expect("confirmed");
                            assert!(!outcome.replayed);
                        }
                        start.elapsed()
                    }))
                }
            };
            times[side as usize] = elapsed;
        }
        let [reactor, hand, with_id] = times;
        let ratio = hand.as_secs_f64() / reactor.as_secs_f64();
        let id_ratio = with_id.as_secs_f64() / reactor.as_secs_f64();
        println!(
            "{label}: round {round} ({:?} first): reactor {:.1} ms ({:.0}/s), hand {:.1} ms ({:.0}/s), \
             hand+id {:.1} ms ({:.0}/s); ratio {ratio:.3}, vs hand+id {id_ratio:.3}; spin-up {:.2} ms; load {}",
            order(round)[0],
            millis(reactor),
            per_second(reactor),
            millis(hand),
            per_second(hand),
            millis(with_id),
            per_second(with_id),
            millis(spin_up),
            loadavg(),
        );
        reactor_times.push(millis(reactor));
        hand_times.push(millis(hand));
        id_times.push(millis(with_id));
        spin_ups.push(millis(spin_up));
        ratios.push(ratio);
        id_ratios.push(id_ratio);
        idempotency.push(hand.as_secs_f64() / with_id.as_secs_f64());
    }
    let rate = |ms: f64| f64::from(u32::try_from(count).unwrap_or(u32::MAX)) / ms * 1e3;
    let (low, high) = range(&ratios);
    let (id_low, id_high) = range(&id_ratios);
    println!(
        "{label}: MEDIAN reactor {:.1} ms ({:.0} reactions/s), hand {:.1} ms ({:.0}/s), hand+id {:.1} ms ({:.0}/s); \
         spin-up {:.2} ms",
        median(&reactor_times),
        rate(median(&reactor_times)),
        median(&hand_times),
        rate(median(&hand_times)),
        median(&id_times),
        rate(median(&id_times)),
        median(&spin_ups),
    );
    println!(
        "{label}: MEDIAN ratio reactor ÷ hand {:.3} (range {low:.3}–{high:.3}); reactor ÷ hand+id {:.3} \
         (range {id_low:.3}–{id_high:.3}); hand+id ÷ hand {:.3}",
        median(&ratios),
        median(&id_ratios),
        median(&idempotency),
    );
}

fn bench_sqlite(runtime: &tokio::runtime::Runtime) {
    let dir = std::env::temp_dir().join(format!("sourcery-reactor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp directory");
    let synchronous = match std::env::var("SYNC").as_deref() {
        Ok("normal") => sqlite::Synchronous::Normal,
        _ => sqlite::Synchronous::Full,
    };
    let store: sqlite::Store<String, EventMetadata> = runtime
        .block_on(
            sqlite::OpenOptions::new()
                .synchronous(synchronous)
                .open(dir.join("events.db")),
        )
        .expect("the SQLite store opens");
    let (checkpoints, reactors) = (store.checkpoints(), store.reactors());
    bench(
        &format!("sqlite ({synchronous:?})"),
        runtime,
        &store,
        &checkpoints,
        &reactors,
    );
    drop((store, checkpoints, reactors));
    let _ = std::fs::remove_dir_all(dir);
}

fn bench_postgres(runtime: &tokio::runtime::Runtime, url: &str) {
    let schema = format!("sourcery_bench_reactor_{}", std::process::id());
    let pool = runtime
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(url),
        )
        .expect("the database accepts connections");
    let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    runtime
        .block_on(sqlx::query(&drop_schema).execute(&pool))
        .expect("drop");
    let store: postgres::Store<String, EventMetadata> =
        postgres::Store::with_schema(pool.clone(), schema.clone()).expect("a valid schema name");
    runtime.block_on(store.migrate()).expect("migrate");
    let (checkpoints, reactors) = (
        postgres::CheckpointStore::new(&store),
        postgres::ReactorStore::new(&store),
    );
    bench("postgres", runtime, &store, &checkpoints, &reactors);
    drop((store, checkpoints, reactors));
    runtime
        .block_on(sqlx::query(&drop_schema).execute(&pool))
        .expect("drop");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    eprintln!("loadavg at start: {}", loadavg());
    if std::env::var("ONLY").as_deref() != Ok("postgres") {
        bench_sqlite(&runtime);
    }
    if std::env::var("ONLY").as_deref() != Ok("sqlite") {
        match std::env::var("DATABASE_URL") {
            Ok(url) => bench_postgres(&runtime, &url),
            Err(_) => eprintln!("postgres: SKIPPED, DATABASE_URL is not set"),
        }
    }
    eprintln!("loadavg at end: {}", loadavg());
}

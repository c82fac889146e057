//! Transactional projections ([`ReadModel`]) and fencing on PostgreSQL: the
//! read model's rows and its checkpoint commit together, and a runner that
//! lost its lease has its writes refused by the database.

use crate::support;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::runner::read_model::{Delivery, Tables};
use sourcery_core::runner::{ProjectionRunner, ReadModelRunner, RunnerError};
use sourcery_core::store::{EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::{
    ApplySql, ApplySqlBatch, CheckpointStore, Lease, ReadModel, ReadModelError, ReadModelTransaction,
    SqlEvents, SqlProjection, Store,
};
use tokio::sync::watch;

type PgStore = Store<String, ()>;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: i64,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "read-model.noted";
}

/// Appends `Noted { n }` for each `n`, one event per append (so positions
/// follow `n`); returns the last position.
async fn note(store: &PgStore, numbers: std::ops::RangeInclusive<i64>) -> i64 {
    let mut last = 0;
    for n in numbers {
        let event = PersistableEvent {
            id: EventId::new(),
            kind: Noted::KIND.to_owned(),
            schema_version: 1,
            data: serde_json::to_vec(&Noted { n }).unwrap(),
            metadata: (),
        };
        last = support::bounded(
            "append",
            30,
            store.append("noter", &format!("s{}", n % 3), None, NonEmpty::new(event)),
        )
        .await
        .expect("append")
        .last_position;
    }
    last
}

/// A read model of one row per applied event, without a key, so that an
/// event applied twice shows as two rows. It can be told to stop at one
/// `n`, before writing it, until released.
struct Rows {
    table: String,
    runner: &'static str,
    gate: Option<Gate>,
    fail_at: Option<i64>,
}

/// Holds the handler at `n`: says so on `reached`, waits for `release`.
struct Gate {
    n: i64,
    reached: watch::Sender<bool>,
    release: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("refused to apply {0}")]
    Refused(i64),
}

impl SqlProjection for Rows {
    const KIND: &'static str = "rows";
    type Id = String;
    type Metadata = ();
    type Error = RowsError;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Noted>()
    }
}

impl ApplySql<Noted> for Rows {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Noted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), RowsError> {
        if let Some(gate) = self.gate.as_ref().filter(|gate| gate.n == event.n) {
            gate.reached.send_replace(true);
            let mut release = gate.release.clone();
            let _ = release.wait_for(|released| *released).await;
        }
        if self.fail_at == Some(event.n) {
            return Err(RowsError::Refused(event.n));
        }
        sqlx::query(&format!(
            "INSERT INTO {} (n, position, runner) VALUES ($1, $2, $3)",
            self.table
        ))
        .bind(event.n)
        .bind(delivery.position())
        .bind(self.runner)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The read model's table, created in the store's schema.
async fn rows_table(store: &PgStore) -> String {
    let table = format!("\"{}\".rows", store.schema());
    sqlx::query(&format!(
        "CREATE TABLE {table} (n bigint NOT NULL, position bigint NOT NULL, runner text NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    table
}

fn rows(table: &str, runner: &'static str) -> Rows {
    Rows {
        table: table.to_owned(),
        runner,
        gate: None,
        fail_at: None,
    }
}

/// Every `(n, runner)` row, by `n`.
async fn applied(store: &PgStore, table: &str) -> Vec<(i64, String)> {
    sqlx::query_as(&format!("SELECT n, runner FROM {table} ORDER BY n, runner"))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

fn numbers(rows: &[(i64, String)]) -> Vec<i64> {
    rows.iter().map(|(n, _)| *n).collect()
}

async fn kill_lease_holder(store: &PgStore, lease: &Lease, name: &str) {
    let pid = lease.holder(name).await.unwrap().expect("the lease is held");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(killed, "the lease's backend {pid} was terminated");
}

fn quick_lease(store: &PgStore) -> Lease {
    Lease::new(store)
        .retry_interval(Duration::from_millis(50))
        .heartbeat(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_commits_its_rows_with_its_checkpoint_and_resumes_after_it() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&store).await;
    let first_batch = note(&store, 1..=30).await;
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(7).unwrap())
        .start(ReadModel::new(&store, rows(&table, "first")))
        .unwrap();
    runner.wait_for(first_batch, WAIT).await.expect("caught up");
    // Read your writes: once `wait_for` returns, the rows are committed.
    assert_eq!(
        numbers(&applied(&store, &table).await),
        (1..=30).collect::<Vec<_>>()
    );
    runner.stop().await.expect("stop");
    let checkpoints = CheckpointStore::new(&store);
    assert_eq!(checkpoints.load("rows.v1").await.unwrap(), Some(first_batch));

    let missed = note(&store, 31..=40).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, rows(&table, "second")))
        .unwrap();
    runner.wait_for(missed, WAIT).await.expect("catch-up");
    let live = note(&store, 41..=45).await;
    runner.wait_for(live, WAIT).await.expect("live");
    runner.stop().await.expect("stop");
    let all = applied(&store, &table).await;
    assert_eq!(numbers(&all), (1..=45).collect::<Vec<_>>(), "each event once");
    assert!(
        all.iter().all(|(n, runner)| (*n <= 30) == (runner == "first")),
        "the second runner applied exactly what came after the checkpoint: {all:?}"
    );
    assert_eq!(checkpoints.load("rows.v1").await.unwrap(), Some(live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_rolls_its_batch_back_and_names_the_event() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&store).await;
    let before = note(&store, 1..=4).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, rows(&table, "first")))
        .unwrap();
    runner.wait_for(before, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");

    // 5 to 9 come in one page, so in one batch; 7 fails.
    let failing = note(&store, 5..=9).await;
    let mut projection = rows(&table, "second");
    projection.fail_at = Some(7);
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, projection))
        .unwrap();
    let stopped = runner.wait_for(failing, WAIT).await;
    assert!(stopped.is_err(), "the runner stops at the failing event");
    let error = runner.stop().await.expect_err("the handler's error");
    let RunnerError::Projection("rows", source) = &error else {
        panic!("expected a projection error, got {error:?}");
    };
    let Some(ReadModelError::Handler {
        kind,
        aggregate_kind,
        aggregate_id,
        position,
        ..
    }) = source.downcast_ref::<ReadModelError>()
    else {
        panic!("expected a handler error, got {source:?}");
    };
    assert_eq!(
        (kind.as_str(), aggregate_kind.as_str(), aggregate_id.as_str()),
        (Noted::KIND, "noter", "\"s1\"")
    );
    assert_eq!(*position, before + 3, "the position of event 7");
    assert_eq!(
        numbers(&applied(&store, &table).await),
        (1..=4).collect::<Vec<_>>(),
        "nothing of the failed batch was committed"
    );
    assert_eq!(
        CheckpointStore::new(&store).load("rows.v1").await.unwrap(),
        Some(before)
    );

    // Parked, the failing event is skipped, with a record of why.
    let mut projection = rows(&table, "third");
    projection.fail_at = Some(7);
    let read_model = ReadModel::new(&store, projection);
    read_model.park(before + 3, "amount out of range").await.unwrap();
    let runner = ReadModelRunner::new(store.clone()).start(read_model).unwrap();
    runner
        .wait_for(failing, WAIT)
        .await
        .expect("past the parked event");
    runner.stop().await.expect("stop");
    assert_eq!(
        numbers(&applied(&store, &table).await),
        vec![1, 2, 3, 4, 5, 6, 8, 9]
    );
    let parked = ReadModel::new(&store, rows(&table, "reader"))
        .parked()
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].position, parked[0].reason.as_str()),
        (before + 3, "amount out of range")
    );
}

/// The scenario, for a transactional projection: the holder is
/// held inside `apply` at event 6 while its lease connection is killed; the
/// standby takes over and applies 6 to 16; the old holder, released,
/// writes event 6 and tries to commit with its old fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_model_holder_that_lost_its_lease_commits_nothing() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&store).await;
    let lease = quick_lease(&store);
    let before = note(&store, 1..=5).await;

    let (reached, mut reached_seen) = watch::channel(false);
    let (release, released) = watch::channel(false);
    let mut held = rows(&table, "old");
    held.gate = Some(Gate {
        n: 6,
        reached,
        release: released,
    });
    let old = ReadModelRunner::new(store.clone())
        .with_lease(lease.clone())
        .batch_size(NonZeroUsize::MIN)
        .start(ReadModel::new(&store, held))
        .unwrap();
    old.wait_for(before, WAIT)
        .await
        .expect("the old holder is active");
    note(&store, 6..=6).await;
    tokio::time::timeout(WAIT, reached_seen.wait_for(|reached| *reached))
        .await
        .expect("the old holder reaches event 6")
        .unwrap();

    kill_lease_holder(&store, &lease, "rows.v1").await;
    let standby = ReadModelRunner::new(store.clone())
        .with_lease(quick_lease(&store))
        .start(ReadModel::new(&store, rows(&table, "new")))
        .unwrap();
    let last = note(&store, 7..=16).await;
    standby
        .wait_for(last, WAIT)
        .await
        .expect("the standby takes over");

    release.send_replace(true);
    let old = old.stop().await;
    assert!(
        matches!(
            old,
            Err(RunnerError::Fenced("rows", _) | RunnerError::LeaseLost("rows"))
        ),
        "the old holder is refused: {old:?}"
    );
    let all = applied(&store, &table).await;
    assert_eq!(
        numbers(&all),
        (1..=16).collect::<Vec<_>>(),
        "each event once: {all:?}"
    );
    assert!(
        all.iter().all(|(n, runner)| (*n <= 5) == (runner == "old")),
        "the old holder's write of 6 did not land: {all:?}"
    );
    let checkpoints = CheckpointStore::new(&store);
    assert_eq!(
        checkpoints.load("rows.v1").await.unwrap(),
        Some(last),
        "the checkpoint stayed"
    );
    standby.stop().await.expect("stop");
    assert_eq!(checkpoints.load("rows.v1").await.unwrap(), Some(last));
}

/// Where a [`Blocking`] projection blocks: the `n`, who to tell it got
/// there, and what releases it.
type BlockAt = (
    i64,
    Arc<Mutex<Option<mpsc::Sender<()>>>>,
    Arc<Mutex<mpsc::Receiver<()>>>,
);

/// Records what it applies; blocks its worker thread inside `apply` at one
/// `n` until released (a paused holder).
#[derive(Default)]
struct Blocking {
    applied: Vec<i64>,
    block_at: Option<BlockAt>,
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl Projection for Blocking {
    const KIND: &'static str = "blocking";
    type Id = String;
    type Metadata = ();

    fn declare<S: EventStore<Id = String, Metadata = ()>>(
        events: ProjectionEvents<S, Self>,
    ) -> ProjectionEvents<S, Self> {
        events.event::<Noted>()
    }
}

impl ApplyProjection<Noted> for Blocking {
    fn apply_projection(&mut self, _: &String, event: &Noted, (): &()) {
        if let Some((n, reached, release)) = &self.block_at
            && *n == event.n
        {
            if let Some(reached) = reached.lock().unwrap().take() {
                let _ = reached.send(());
            }
            // Blocks this worker thread, as a long synchronous apply would.
            let _ = release.lock().unwrap().recv_timeout(WAIT * 2);
        }
        self.applied.push(event.n);
    }
}

/// The scenario for the runner of a projection held in memory,
/// with an `apply` that blocks its thread: the old holder runs on a runtime
/// of one worker (its own "process", with its own pool), which the blocked
/// `apply` pauses whole. The standby takes over and saves 16; the old
/// holder, released, applies 6 and saves checkpoint 6: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_holder_that_lost_its_lease_cannot_move_the_checkpoint_back() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let checkpoints = CheckpointStore::new(&store);
    let before = note(&store, 1..=5).await;

    let paused = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let old_store: PgStore = Store::with_schema(
        support::pool(4, "sourcery-test-old-holder").await.unwrap(),
        store.schema(),
    )
    .unwrap();
    let old_lease = quick_lease(&old_store);
    let (reached, reached_seen) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let old = {
        let _inside = paused.enter();
        ProjectionRunner::new(old_store.clone(), CheckpointStore::new(&old_store))
            .with_lease(old_lease.clone())
            .checkpoint_every(NonZeroUsize::MIN)
            .start(Blocking {
                applied: Vec::new(),
                block_at: Some((
                    6,
                    Arc::new(Mutex::new(Some(reached))),
                    Arc::new(Mutex::new(released)),
                )),
            })
            .unwrap()
    };
    old.wait_for(before, WAIT)
        .await
        .expect("the old holder is active");
    note(&store, 6..=6).await;
    tokio::task::spawn_blocking(move || reached_seen.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the old holder blocks at event 6");
    assert_eq!(checkpoints.load("blocking").await.unwrap(), Some(before));

    // Looked up through this runtime's pool: the old holder's pool is paused with it.
    kill_lease_holder(&store, &quick_lease(&store), "blocking").await;
    let standby = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .with_lease(quick_lease(&store))
        .checkpoint_every(NonZeroUsize::MIN)
        .start(Blocking::default())
        .unwrap();
    let last = note(&store, 7..=16).await;
    standby
        .wait_for(last, WAIT)
        .await
        .expect("the standby takes over");
    let standby = standby.stop().await.expect("stop");
    assert_eq!(
        standby.applied,
        (6..=16).collect::<Vec<_>>(),
        "the standby resumed after 5"
    );
    assert_eq!(checkpoints.load("blocking").await.unwrap(), Some(last));

    release.send(()).unwrap();
    let old = old.stop().await;
    assert!(
        matches!(old, Err(RunnerError::Fenced("blocking", _))),
        "the old holder's save is refused: {old:?}"
    );
    assert_eq!(
        checkpoints.load("blocking").await.unwrap(),
        Some(last),
        "the checkpoint did not go back"
    );
    paused.shutdown_background();
}

#[derive(Debug, Serialize, Deserialize)]
struct Deposited {
    amount: i64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "read-model.deposited";
}

/// Version 1: `balances (account, balance)`.
struct Balances;

impl SqlProjection for Balances {
    const KIND: &'static str = "balances";
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = sqlx::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Deposited>()
    }

    async fn setup(&self, tx: &mut ReadModelTransaction, tables: &Tables) -> Result<(), sqlx::Error> {
        let table = tables.name("balances");
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (account text PRIMARY KEY, balance bigint NOT NULL)"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl ApplySql<Deposited> for Balances {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), sqlx::Error> {
        let table = delivery.table("balances");
        sqlx::query(&format!(
            "INSERT INTO {table} AS b (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance"
        ))
        .bind(delivery.aggregate_id())
        .bind(event.amount)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Version 2: also counts the deposits, `balances (account, balance, deposits)`.
struct BalancesV2;

impl SqlProjection for BalancesV2 {
    const KIND: &'static str = "balances";
    const VERSION: u32 = 2;
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = sqlx::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Deposited>()
    }

    async fn setup(&self, tx: &mut ReadModelTransaction, tables: &Tables) -> Result<(), sqlx::Error> {
        let table = tables.name("balances");
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} \
             (account text PRIMARY KEY, balance bigint NOT NULL, deposits bigint NOT NULL)"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl ApplySql<Deposited> for BalancesV2 {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), sqlx::Error> {
        let table = delivery.table("balances");
        sqlx::query(&format!(
            "INSERT INTO {table} AS b (account, balance, deposits) VALUES ($1, $2, 1) \
             ON CONFLICT (account) DO UPDATE \
             SET balance = b.balance + EXCLUDED.balance, deposits = b.deposits + 1"
        ))
        .bind(delivery.aggregate_id())
        .bind(event.amount)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Deposits 1 to each of five accounts in turn, `count` times, one commit
/// each.
async fn deposit(store: &PgStore, from: i64, count: i64) -> i64 {
    let mut last = 0;
    for n in from..from + count {
        let event = PersistableEvent {
            id: EventId::new(),
            kind: Deposited::KIND.to_owned(),
            schema_version: 1,
            data: serde_json::to_vec(&Deposited { amount: n }).unwrap(),
            metadata: (),
        };
        last = store
            .append("account", &format!("a{}", n % 5), None, NonEmpty::new(event))
            .await
            .expect("append")
            .last_position;
    }
    last
}

/// `(account, balance, deposits)` as a replay of the log computes them.
async fn replayed_balances(store: &PgStore) -> Vec<(String, i64, i64)> {
    let events = store
        .load_events(&[sourcery_core::store::EventFilter::for_event(Deposited::KIND)])
        .await
        .unwrap();
    let mut balances = std::collections::BTreeMap::<String, (i64, i64)>::new();
    for event in events {
        let deposited: Deposited = serde_json::from_slice(&event.data).unwrap();
        let entry = balances.entry(event.aggregate_id).or_default();
        entry.0 += deposited.amount;
        entry.1 += 1;
    }
    balances
        .into_iter()
        .map(|(account, (balance, deposits))| (account, balance, deposits))
        .collect()
}

/// Version 2 is rebuilt beside version 1 while writers append and readers
/// query the `balances` view; once caught up the view switches in one
/// transaction; nothing is lost or applied twice; version 1 is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_rebuilt_beside_the_live_one_and_switched_to() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let view = format!("\"{}\".balances", store.schema());
    let history = deposit(&store, 1, 200).await;
    let v1 = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Balances))
        .unwrap();
    v1.wait_for(history, WAIT).await.expect("version 1 caught up");
    let live = ReadModel::new(&store, Balances);
    assert_eq!(live.live_version().await.unwrap(), Some(1));

    // Readers query the view all along; writers append all along.
    let (stop_reading, reading) = watch::channel(false);
    let reader = {
        let (pool, view) = (store.pool().clone(), view.clone());
        tokio::spawn(async move {
            let mut columns_seen = Vec::new();
            while !*reading.borrow() {
                // The simple protocol: PostgreSQL refuses to execute a
                // statement prepared before the view's columns changed
                // ("cached plan must not change result type"), which is
                // what the switch to version 2 does.
                let row: sqlx::postgres::PgRow = sqlx::raw_sql(&format!("SELECT * FROM {view} LIMIT 1"))
                    .fetch_one(&pool)
                    .await
                    .expect("the view answers throughout");
                let columns = sqlx::Row::len(&row);
                if columns_seen.last() != Some(&columns) {
                    columns_seen.push(columns);
                }
                tokio::task::yield_now().await;
            }
            columns_seen
        })
    };
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { deposit(&store, 201, 300).await })
    };
    let v2 = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(25).unwrap())
        .start(ReadModel::new(&store, BalancesV2))
        .unwrap();
    let last = writer.await.unwrap();
    v2.wait_for(last, WAIT).await.expect("version 2 caught up");
    v1.wait_for(last, WAIT).await.expect("version 1 kept up");
    stop_reading.send_replace(true);
    let columns_seen = reader.await.unwrap();
    assert_eq!(
        columns_seen,
        vec![2, 3],
        "readers saw version 1, then version 2, never an error"
    );
    assert_eq!(live.live_version().await.unwrap(), Some(2));

    let expected = replayed_balances(&store).await;
    let through_view: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT account, balance, deposits FROM {view} ORDER BY account"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        through_view, expected,
        "version 2 equals a replay: nothing lost, nothing twice"
    );
    let v1_rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT account, balance FROM \"{}\".balances_v1 ORDER BY account",
        store.schema()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected_v1: Vec<(String, i64)> = expected.iter().map(|(a, b, _)| (a.clone(), *b)).collect();
    assert_eq!(v1_rows, expected_v1, "version 1 kept serving, exactly once too");

    v1.stop().await.expect("stop version 1");
    let current = ReadModel::new(&store, BalancesV2);
    assert!(matches!(
        current.drop_version(2).await,
        Err(ReadModelError::Live { version: 2, .. })
    ));
    current.drop_version(1).await.expect("version 1 dropped");
    let left: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("\"{}\".balances_v1", store.schema()))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, None, "the old table is gone");
    let checkpoints = CheckpointStore::new(&store);
    assert_eq!(checkpoints.load("balances.v1").await.unwrap(), None);
    assert_eq!(checkpoints.load("balances.v2").await.unwrap(), Some(last));
    v2.stop().await.expect("stop version 2");
}

/// Writes `Noted` events by runs ([`ApplySqlBatch`]: one `INSERT` per run,
/// each row naming the length of its run) and `Deposited` events one at a
/// time, into one `(n, position, runner)` table. Can refuse the run that
/// holds one `n`.
struct ByRuns {
    table: String,
    fail_at: Option<i64>,
}

impl SqlProjection for ByRuns {
    const KIND: &'static str = "by-runs";
    type Id = String;
    type Metadata = ();
    type Error = RowsError;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.batched::<Noted>().event::<Deposited>()
    }
}

impl ApplySqlBatch<Noted> for ByRuns {
    async fn apply_batch(
        &self,
        tx: &mut ReadModelTransaction,
        events: &[(Noted, Delivery<'_, String, i64, ()>)],
    ) -> Result<(), RowsError> {
        if let Some(n) = self
            .fail_at
            .filter(|n| events.iter().any(|(event, _)| event.n == *n))
        {
            return Err(RowsError::Refused(n));
        }
        let numbers: Vec<i64> = events.iter().map(|(event, _)| event.n).collect();
        let positions: Vec<i64> = events.iter().map(|(_, delivery)| delivery.position()).collect();
        sqlx::query(&format!(
            "INSERT INTO {} (n, position, runner) SELECT n, position, $3 \
             FROM UNNEST($1::bigint[], $2::bigint[]) AS run(n, position)",
            self.table
        ))
        .bind(&numbers)
        .bind(&positions)
        .bind(format!("run of {}", events.len()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl ApplySql<Deposited> for ByRuns {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), RowsError> {
        sqlx::query(&format!(
            "INSERT INTO {} (n, position, runner) VALUES ($1, $2, 'one')",
            self.table
        ))
        .bind(event.amount)
        .bind(delivery.position())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Noted 1 to 3, a deposit of 100, noted 4 to 20: 21 events, one per
/// append; returns the deposit's position and the last one.
async fn runs_log(store: &PgStore) -> (i64, i64) {
    note(store, 1..=3).await;
    let event = PersistableEvent {
        id: EventId::new(),
        kind: Deposited::KIND.to_owned(),
        schema_version: 1,
        data: serde_json::to_vec(&Deposited { amount: 100 }).unwrap(),
        metadata: (),
    };
    let deposit = store
        .append("account", &"a".to_owned(), None, NonEmpty::new(event))
        .await
        .expect("append")
        .last_position;
    (deposit, note(store, 4..=20).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_handler_gets_the_runs_of_its_events_within_each_batch() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&store).await;
    let (deposit, last) = runs_log(&store).await;
    // One page, cut in batches of 7: [1 2 3 100 4 5 6] [7 … 13] [14 … 20].
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(7).unwrap())
        .start(ReadModel::new(
            &store,
            ByRuns {
                table: table.clone(),
                fail_at: None,
            },
        ))
        .unwrap();
    runner.wait_for(last, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(&format!(
        "SELECT n, position, runner FROM {table} ORDER BY position"
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected: Vec<(i64, String)> = [1, 2, 3, 100, 4, 5, 6]
        .into_iter()
        .chain(7..=20)
        .map(|n| {
            let runner = match n {
                100 => "one",
                1..=6 => "run of 3",
                _ => "run of 7",
            };
            (n, runner.to_owned())
        })
        .collect();
    assert_eq!(
        rows.iter()
            .map(|(n, _, runner)| (*n, runner.clone()))
            .collect::<Vec<_>>(),
        expected,
        "each event once, in order, by runs that stop at another handler's event and at the batch's end"
    );
    assert_eq!(
        rows.iter()
            .find(|(n, ..)| *n == 100)
            .map(|(_, position, _)| *position),
        Some(deposit)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batched_handler_rolls_its_batch_back_and_names_the_run() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&store).await;
    let (deposit, last) = runs_log(&store).await;
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(7).unwrap())
        .start(ReadModel::new(
            &store,
            ByRuns {
                table: table.clone(),
                fail_at: Some(9),
            },
        ))
        .unwrap();
    assert!(runner.wait_for(last, WAIT).await.is_err(), "the runner stops");
    let error = runner.stop().await.expect_err("the handler's error");
    let RunnerError::Projection("by-runs", source) = &error else {
        panic!("expected a projection error, got {error:?}");
    };
    let Some(ReadModelError::Batch {
        events, first, last, ..
    }) = source.downcast_ref::<ReadModelError>()
    else {
        panic!("expected a batch error, got {source:?}");
    };
    // The second batch: 7 to 13, after 6 (three past the deposit).
    assert_eq!((*events, *first, *last), (7, deposit + 4, deposit + 10));
    let committed: Vec<i64> = applied(&store, &table).await.iter().map(|(n, _)| *n).collect();
    assert_eq!(committed, vec![1, 2, 3, 4, 5, 6, 100], "the first batch only");
    assert_eq!(
        CheckpointStore::new(&store).load("by-runs.v1").await.unwrap(),
        Some(deposit + 3)
    );
}

/// Built from another store (here another schema, on a pool of its own),
/// the read model and its checkpoint live there, not beside the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_in_another_database_keeps_its_checkpoint_there() {
    let Some(events) = support::store::<String, ()>().await else {
        return;
    };
    let Some(elsewhere) = support::store::<String, ()>().await else {
        return;
    };
    let table = rows_table(&elsewhere).await;
    let last = note(&events, 1..=12).await;
    let runner = ReadModelRunner::new(events.clone())
        .start(ReadModel::new(&elsewhere, rows(&table, "elsewhere")))
        .unwrap();
    runner.wait_for(last, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");
    assert_eq!(
        numbers(&applied(&elsewhere, &table).await),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(
        CheckpointStore::new(&elsewhere).load("rows.v1").await.unwrap(),
        Some(last)
    );
    assert_eq!(CheckpointStore::new(&events).load("rows.v1").await.unwrap(), None);
}

//! Rebuilding a transactional projection ([`ReadModel`]) over a log of
//! 1,000,000 events, against hand-written sqlx doing the same work in the
//! same process, measured in interleaved rounds (a loop of its own, not
//! criterion: each side runs for seconds).
//!
//! The read model is a balance per account: each `account.deposited` event
//! upserts its account's row (`INSERT … ON CONFLICT (account) DO UPDATE`,
//! adding the amount, counting the event, recording its position). The row
//! is keyed by the event's stream, not by its position, because that is
//! what a read model of a log does (a row per entity, updated by each of its
//! events): 99% of the upserts update a row that exists, and the table stays
//! at 10,000 rows, so the rounds measure the write path of each event, not
//! the growth of a 1,000,000-row table.
//!
//! Sides, in one process, on one seeded log (10,000 streams, 100 events
//! each, written round-robin so that consecutive positions belong to
//! distinct streams):
//!
//! - **store**: a [`SqlProjection`] whose handler sends that upsert, one
//!   statement per event (what a user writes), run by
//!   [`ReadModelRunner::new(store).start(ReadModel::new(&store, projection))`](ReadModelRunner)
//!   with the runner's defaults (batches of at most 500 events), timed from
//!   `start` until `wait_for(head)` returns.
//! - **hand, batched** (the baseline): a keyset read of the same rows
//!   (`WHERE event_kind = $1 AND position > $2 ORDER BY position LIMIT 1000`,
//!   the columns the store reads, the same JSON decoded), then per page one
//!   transaction: the page's rows as one `INSERT … SELECT FROM UNNEST(…) ON
//!   CONFLICT … DO UPDATE` and the checkpoint's upsert, as the store does.
//!   The page is first folded by account (an account twice in one page
//!   would make PostgreSQL refuse the statement); with this log no page
//!   holds an account twice, so it sends one row per event.
//! - **hand, row at a time** (a diagnosis, not the target): the same read
//!   and transactions, with the store's statement sent once per event.
//!   Store ÷ this is what the library costs; this ÷ the baseline is what
//!   one round trip per event costs.
//! - **store, batched handler** (what the library offers instead): the
//!   same runner with a handler registered by [`SqlEvents::batched`]
//!   ([`ApplySqlBatch`]), which folds each run of its batch and writes it
//!   with the baseline's statement.
//!
//! Each round runs every side once, in a rotating order, on an emptied
//! table (`TRUNCATE`) from an empty checkpoint; the per-round ratio is the
//! store's rate ÷ the baseline's, and the result is the median of those.
//! After each run the table is checked against the log (rows, events,
//! sum of the amounts).
//!
//! `cargo bench -p sourcery-es-postgres --bench read_model`. `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); `BENCH_EVENTS` the
//! log's length (default 1,000,000); `BENCH_ROUNDS` (default 3);
//! `BENCH_ROW_AT_A_TIME=0` leaves the diagnosis out, `BENCH_BY_RUNS=0` the
//! batched handler; `BENCH_BATCH_SIZE` sets
//! the store runner's batch size (default: the runner's, 500). Runs in a schema of
//! its own, dropped at the end.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::ReadModelRunner;
use sourcery_core::runner::read_model::{Delivery, Tables};
use sourcery_postgres::{
    ApplySql, ApplySqlBatch, ReadModel, ReadModelTransaction, SqlEvents, SqlProjection, Store,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

type PgStore = Store<String, ()>;

/// Streams of the seeded log.
const STREAMS: i64 = 10_000;
/// Rows per keyset page, as the store's follower reads.
const PAGE: i64 = 1_000;

#[derive(Debug, Serialize, Deserialize)]
struct Deposited {
    amount: i64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "account.deposited";
}

/// The columns of a balance row, as both sides create them.
const COLUMNS: &str = "account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL, \
                       last_position bigint NOT NULL";

/// The read model: `balances (account, balance, events, last_position)`.
struct Balances;

impl SqlProjection for Balances {
    const KIND: &'static str = "bench_balances";
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = sqlx::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Deposited>()
    }

    async fn setup(&self, tx: &mut ReadModelTransaction, tables: &Tables) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({COLUMNS})",
            tables.name("balances")
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The upsert of one event into `table`, as a user writes it.
fn upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} AS saved (account, balance, events, last_position) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (account) DO UPDATE SET balance = saved.balance + EXCLUDED.balance, \
         events = saved.events + 1, last_position = EXCLUDED.last_position"
    )
}

/// The same read model, written by runs ([`ApplySqlBatch`]): each run of a
/// batch folded by account, then one `UNNEST` upsert, as the baseline
/// writes a page.
struct BalancesByRuns;

impl SqlProjection for BalancesByRuns {
    const KIND: &'static str = "bench_balances_by_runs";
    const TABLES: &'static [&'static str] = &["balances_by_runs"];
    type Id = String;
    type Metadata = ();
    type Error = sqlx::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.batched::<Deposited>()
    }

    async fn setup(&self, tx: &mut ReadModelTransaction, tables: &Tables) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({COLUMNS})",
            tables.name("balances_by_runs")
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl ApplySqlBatch<Deposited> for BalancesByRuns {
    async fn apply_batch(
        &self,
        tx: &mut ReadModelTransaction,
        events: &[(Deposited, Delivery<'_, String, i64, ()>)],
    ) -> Result<(), sqlx::Error> {
        let mut fold = Fold::default();
        let mut table = "";
        for (event, delivery) in events {
            table = delivery.table("balances_by_runs");
            fold.add(delivery.aggregate_id(), event.amount, delivery.position());
        }
        fold.write(tx, &batched_upsert(table)).await
    }
}

/// Rows of balances folded by account, in the order of first appearance
/// (PostgreSQL refuses an upsert that reaches one row twice).
#[derive(Default)]
struct Fold {
    index: HashMap<String, usize>,
    accounts: Vec<String>,
    balances: Vec<i64>,
    counts: Vec<i64>,
    positions: Vec<i64>,
}

impl Fold {
    fn clear(&mut self) {
        self.index.clear();
        self.accounts.clear();
        self.balances.clear();
        self.counts.clear();
        self.positions.clear();
    }

    fn add(&mut self, account: &str, amount: i64, position: i64) {
        if let Some(&at) = self.index.get(account) {
            self.balances[at] += amount;
            self.counts[at] += 1;
            self.positions[at] = position;
        } else {
            self.index.insert(account.to_owned(), self.accounts.len());
            self.accounts.push(account.to_owned());
            self.balances.push(amount);
            self.counts.push(1);
            self.positions.push(position);
        }
    }

    /// The rows as one statement (`batched_upsert`).
    async fn write(&self, connection: &mut sqlx::PgConnection, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql)
            .bind(&self.accounts)
            .bind(&self.balances)
            .bind(&self.counts)
            .bind(&self.positions)
            .execute(connection)
            .await?;
        Ok(())
    }
}

/// The upsert of folded rows into `table`, the arrays unnested.
fn batched_upsert(table: &str) -> String {
    format!(
        "INSERT INTO {table} AS saved (account, balance, events, last_position) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
         ON CONFLICT (account) DO UPDATE SET balance = saved.balance + EXCLUDED.balance, \
         events = saved.events + EXCLUDED.events, last_position = EXCLUDED.last_position"
    )
}

impl ApplySql<Deposited> for Balances {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&upsert(delivery.table("balances")))
            .bind(delivery.aggregate_id())
            .bind(event.amount)
            .bind(delivery.position())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_BATCH_SIZE`: the store runner's batch size, when not its default.
fn batch_size() -> Option<NonZeroUsize> {
    std::env::var("BENCH_BATCH_SIZE").ok()?.parse().ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |line| line.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// A migrated store in a fresh schema, holding `events` deposits.
async fn seeded_store(events: i64) -> PgStore {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .expect("DATABASE_URL accepts connections");
    let schema = format!("sourcery_bench_read_model_{}", std::process::id());
    execute(&pool, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    let store: PgStore = Store::with_schema(pool, schema).expect("schema");
    store.migrate().await.expect("migrate");
    let seeding = Instant::now();
    // One statement: appending 1,000,000 events through the store, a batch
    // at a time, would take longer than the benchmark.
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".sourcery_events \
         (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata, event_id) \
         SELECT g, 'account', 'a' || ((g - 1) % $3), (g - 1) / $3 + 1, $1, \
                convert_to('{{\"amount\":' || (g % 100 + 1) || '}}', 'UTF8'), 'null'::jsonb, gen_random_uuid() \
         FROM generate_series(1, $2) AS g",
        schema = store.schema()
    ))
    .bind(Deposited::KIND)
    .bind(events)
    .bind(STREAMS)
    .execute(store.pool())
    .await
    .expect("seed");
    sqlx::query(&format!(
        "SELECT setval('\"{}\".sourcery_positions', $1)",
        store.schema()
    ))
    .bind(events)
    .execute(store.pool())
    .await
    .expect("setval");
    execute(
        store.pool(),
        &format!("VACUUM (ANALYZE) \"{}\".sourcery_events", store.schema()),
    )
    .await;
    println!(
        "seeded {events} events in {STREAMS} streams in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    store
}

/// The tables, quoted: the store's version table, the baseline's, the checkpoints.
#[derive(Clone)]
struct Names {
    store: String,
    by_runs: String,
    hand: String,
    checkpoints: String,
}

impl Names {
    fn new(store: &PgStore) -> Self {
        let schema = format!("\"{}\"", store.schema());
        Self {
            store: format!("{schema}.\"balances_v1\""),
            by_runs: format!("{schema}.\"balances_by_runs_v1\""),
            hand: format!("{schema}.balances_by_hand"),
            checkpoints: format!("{schema}.sourcery_checkpoints"),
        }
    }
}

/// One page of the keyset read: position, aggregate kind, aggregate id,
/// event kind, data, metadata, schema version, event id (what the store
/// reads of each event).
type Row = (
    i64,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i32,
    sqlx::types::Uuid,
);

/// How the hand-written sides write a page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// One `INSERT … SELECT FROM UNNEST` per page.
    Batched,
    /// The store's statement, once per event.
    RowAtATime,
}

/// The hand-written rebuild into `table`: keyset pages of 1,000, each
/// written in one transaction with the checkpoint `name`.
async fn by_hand(store: &PgStore, names: &Names, name: &str, write: Write) -> Duration {
    let pool = store.pool();
    let read = format!(
        "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata::text, schema_version, \
                event_id \
         FROM \"{}\".sourcery_events \
         WHERE event_kind = $1 AND position > $2 ORDER BY position LIMIT {PAGE}",
        store.schema()
    );
    let batched = batched_upsert(&names.hand);
    let single = upsert(&names.hand);
    let checkpoint = format!(
        "INSERT INTO {} (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        names.checkpoints
    );
    let started = Instant::now();
    let mut cursor = 0_i64;
    let mut fold = Fold::default();
    loop {
        let page: Vec<Row> = sqlx::query_as(&read)
            .bind(Deposited::KIND)
            .bind(cursor)
            .fetch_all(pool)
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        cursor = last.0;
        let mut tx = pool.begin().await.expect("begin");
        match write {
            Write::Batched => {
                fold.clear();
                for (position, _, account, _, data, ..) in &page {
                    let event: Deposited = serde_json::from_slice(data).expect("decodes");
                    fold.add(account, event.amount, *position);
                }
                fold.write(&mut tx, &batched).await.expect("batched upsert");
            }
            Write::RowAtATime => {
                for (position, _, account, _, data, ..) in &page {
                    let event: Deposited = serde_json::from_slice(data).expect("decodes");
                    sqlx::query(&single)
                        .bind(account)
                        .bind(event.amount)
                        .bind(position)
                        .execute(&mut *tx)
                        .await
                        .expect("upsert");
                }
            }
        }
        sqlx::query(&checkpoint)
            .bind(name)
            .bind(cursor)
            .execute(&mut *tx)
            .await
            .expect("checkpoint");
        tx.commit().await.expect("commit");
    }
    started.elapsed()
}

/// The store's rebuild, from `start` until the read model has committed
/// the head.
async fn by_store<P>(store: &PgStore, head: i64, projection: P) -> Duration
where
    P: SqlProjection<Id = String, Metadata = ()>,
{
    let started = Instant::now();
    let mut runner = ReadModelRunner::new(store.clone());
    if let Some(size) = batch_size() {
        runner = runner.batch_size(size);
    }
    let running = runner.start(ReadModel::new(store, projection)).expect("start");
    running
        .wait_for(head, Duration::from_secs(3_600))
        .await
        .expect("catches up");
    let elapsed = started.elapsed();
    running.stop().await.expect("stop");
    elapsed
}

/// Where a row-at-a-time upsert's time goes, outside the rounds: the
/// server's own cost of the statement (10,000 upserts in one PL/pgSQL loop,
/// no round trip), and one round trip of a trivial statement from sqlx in
/// a transaction (10,000 `SELECT 1`s). Both in µs.
async fn round_trip_costs(store: &PgStore) -> (f64, f64) {
    const COUNT: u32 = 10_000;
    let table = format!("\"{}\".balances_scratch", store.schema());
    execute(store.pool(), &format!("CREATE TABLE {table} ({COLUMNS})")).await;
    let started = Instant::now();
    execute(
        store.pool(),
        &format!(
            "DO $$ BEGIN FOR i IN 1..{COUNT} LOOP \
             INSERT INTO {table} AS saved (account, balance, events, last_position) \
             VALUES ('a' || (i % {STREAMS}), 1, 1, i) \
             ON CONFLICT (account) DO UPDATE SET balance = saved.balance + EXCLUDED.balance, \
             events = saved.events + 1, last_position = EXCLUDED.last_position; \
             END LOOP; END $$"
        ),
    )
    .await;
    let server = started.elapsed().as_secs_f64() * 1e6 / f64::from(COUNT);
    let mut tx = store.pool().begin().await.expect("begin");
    let started = Instant::now();
    for _ in 0..COUNT {
        sqlx::query("SELECT 1").execute(&mut *tx).await.expect("select");
    }
    let trip = started.elapsed().as_secs_f64() * 1e6 / f64::from(COUNT);
    tx.rollback().await.expect("rollback");
    execute(store.pool(), &format!("DROP TABLE {table}")).await;
    (server, trip)
}

/// Rows, events and sum of the amounts in `table`.
async fn totals(pool: &PgPool, table: &str) -> (i64, i64, i64) {
    let (rows, events, balance): (i64, Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT count(*), sum(events)::bigint, sum(balance)::bigint FROM {table}"
    ))
    .fetch_one(pool)
    .await
    .expect("totals");
    (rows, events.unwrap_or(0), balance.unwrap_or(0))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Side {
    Store,
    ByRuns,
    Hand,
    RowAtATime,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Self::Store => "store (row at a time)",
            Self::ByRuns => "store, batched handler",
            Self::Hand => "hand, batched",
            Self::RowAtATime => "hand, row at a time",
        }
    }
}

/// Empties `side`'s table and checkpoint, then times its rebuild.
async fn run(side: Side, store: PgStore, names: Names, head: i64, expected: (i64, i64, i64)) -> Duration {
    let (store, names) = (&store, &names);
    let (table, name) = match side {
        Side::Store => (&names.store, format!("{}.v1", Balances::KIND)),
        Side::ByRuns => (&names.by_runs, format!("{}.v1", BalancesByRuns::KIND)),
        Side::Hand => (&names.hand, "by_hand".to_owned()),
        Side::RowAtATime => (&names.hand, "by_hand_row_at_a_time".to_owned()),
    };
    execute(
        store.pool(),
        &format!(
            "TRUNCATE {table}; DELETE FROM {} WHERE name = '{name}'",
            names.checkpoints
        ),
    )
    .await;
    let time = match side {
        Side::Store => by_store(store, head, Balances).await,
        Side::ByRuns => by_store(store, head, BalancesByRuns).await,
        Side::Hand => by_hand(store, names, &name, Write::Batched).await,
        Side::RowAtATime => by_hand(store, names, &name, Write::RowAtATime).await,
    };
    assert_eq!(
        totals(store.pool(), table).await,
        expected,
        "{side:?} rebuilt the read model (rows, events, sum of amounts)"
    );
    time
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        f64::midpoint(values[middle - 1], values[middle])
    }
}

/// Creates the tables, warms the cache, prints the costs of one statement;
/// returns what every rebuilt table must hold (rows, events, sum of the
/// amounts).
async fn prepare(store: &PgStore, names: &Names) -> (i64, i64, i64) {
    // The tables exist from the start (the projections' `setup` finds
    // theirs), so that each run begins with a `TRUNCATE`.
    for table in [&names.store, &names.by_runs, &names.hand] {
        execute(store.pool(), &format!("CREATE TABLE {table} ({COLUMNS})")).await;
    }
    let expected: (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(DISTINCT aggregate_id), count(*), \
                sum((convert_from(data, 'UTF8')::jsonb ->> 'amount')::bigint)::bigint \
         FROM \"{}\".sourcery_events",
        store.schema()
    ))
    .fetch_one(store.pool())
    .await
    .expect("expected totals");
    // Warm the cache: one keyset read of the whole log.
    let warm = by_hand(store, names, "warm", Write::Batched).await;
    println!(
        "warm-up (hand, batched): {:.2} s; store handler: one upsert statement per event; \
         runner batches of at most {} events, pages of {PAGE}",
        warm.as_secs_f64(),
        batch_size().map_or(500, NonZeroUsize::get)
    );
    let (server, trip) = tokio::spawn({
        let store = store.clone();
        async move { round_trip_costs(&store).await }
    })
    .await
    .expect("the task");
    println!(
        "one upsert executed on the server (PL/pgSQL loop): {server:.1} µs; \
         one round trip of `SELECT 1` from sqlx: {trip:.1} µs"
    );
    expected
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench --no-run` builds it; `cargo test --benches` runs it with
    // `--bench` absent: only measure when asked.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("run with `cargo bench -p sourcery-es-postgres --bench read_model`");
        return;
    }
    let events = i64::try_from(env_u64("BENCH_EVENTS", 1_000_000)).unwrap_or(i64::MAX);
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let mut sides = vec![Side::Store, Side::Hand];
    if env_u64("BENCH_ROW_AT_A_TIME", 1) != 0 {
        sides.push(Side::RowAtATime);
    }
    if env_u64("BENCH_BY_RUNS", 1) != 0 {
        sides.push(Side::ByRuns);
    }
    // What each round compares: numerator's rate ÷ denominator's.
    let comparisons: Vec<(Side, Side)> = [
        (Side::Store, Side::Hand),
        (Side::Store, Side::RowAtATime),
        (Side::RowAtATime, Side::Hand),
        (Side::ByRuns, Side::Hand),
    ]
    .into_iter()
    .filter(|(a, b)| sides.contains(a) && sides.contains(b))
    .collect();
    println!("load average before: {}", load_average());
    let store = seeded_store(events).await;
    let names = Names::new(&store);
    let expected = prepare(&store, &names).await;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = |time: Duration| events as f64 / time.as_secs_f64();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); comparisons.len()];
    let mut rates: HashMap<Side, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        // Rotate the order, so that no side always runs first.
        let mut order = sides.clone();
        order.rotate_left(usize::try_from(round).unwrap_or(0) % sides.len());
        let mut measured = HashMap::new();
        for side in order {
            // On a worker thread, as the runner's task is: the main thread
            // would be woken from one after each round trip.
            let time = tokio::spawn(run(side, store.clone(), names.clone(), events, expected))
                .await
                .expect("the side's task");
            println!(
                "round {}: {:<24} {:>7.2} s  {:>9.0} events/s  (load {})",
                round + 1,
                side.label(),
                time.as_secs_f64(),
                rate(time),
                load_average()
            );
            rates.entry(side).or_default().push(rate(time));
            measured.insert(side, rate(time));
        }
        let listed: Vec<String> = comparisons
            .iter()
            .zip(&mut ratios)
            .map(|((a, b), ratios)| {
                let ratio = measured[a] / measured[b];
                ratios.push(ratio);
                format!("{} ÷ {} = {ratio:.3}", a.label(), b.label())
            })
            .collect();
        println!("round {}: {}", round + 1, listed.join("; "));
    }
    for side in &sides {
        let mut rates = rates.remove(side).unwrap_or_default();
        println!(
            "median rate, {}: {:.0} events/s",
            side.label(),
            median(&mut rates)
        );
    }
    for ((a, b), mut ratios) in comparisons.iter().zip(ratios) {
        let listed: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.3}")).collect();
        println!(
            "{} ÷ {}, per round: {}; median {:.3}",
            a.label(),
            b.label(),
            listed.join(" / "),
            median(&mut ratios)
        );
    }
    println!("load average after: {}", load_average());
    execute(
        store.pool(),
        &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema()),
    )
    .await;
}

//! An aggregate loaded through
//! `Repository::load` from a 10,000-event stream (2 event kinds, interleaved
//! with another stream), against a hand-written SELECT + `serde_json` decode +
//! fold, on SQLite and PostgreSQL, in interleaved blocks.
//!
//! Each round times a block of LOADS repository loads and a block of LOADS
//! hand-written loads back to back (alternating which goes first); the ratio
//! printed is hand time ÷ store time ("store speed ÷ hand speed", as in the
//! project's paired benches), median over the rounds.
//!
//! `ROUNDS` (default 15), `LOADS` (default 5); `DATABASE_URL` for PostgreSQL
//! (skipped without it). It uses only APIs that the commit before whole-
//! stream loads (2dd823a) also has, so the same file measures both sides of
//! that change: ADR 7 gives the figures.
//!
//! `cargo bench -p sourcery-bench --bench repository_load`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery::concurrency::Unchecked;
use sourcery::store::EventStore;
use sourcery::store::{postgres, sqlite};
use sourcery::{Aggregate, Apply, DomainEvent, Repository};
use sqlx::Row;

const LOADED: usize = 10_000;
const BATCH: usize = 10;
const BIG: &str = "big";
const OTHER: &str = "other";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
    memo: String,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "bench.account.deposited";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Withdrawn {
    amount: u64,
    memo: String,
}

impl DomainEvent for Withdrawn {
    const KIND: &'static str = "bench.account.withdrawn";
}

#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(id = String, error = Infallible, events(Deposited, Withdrawn))]
struct Account {
    balance: i64,
    deposits: u64,
    withdrawals: u64,
    digest: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += i64::try_from(event.amount).unwrap_or(0);
        self.deposits += 1;
        self.digest = self.digest.wrapping_mul(1_000_003).wrapping_add(event.amount);
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, event: &Withdrawn) {
        self.balance -= i64::try_from(event.amount).unwrap_or(0);
        self.withdrawals += 1;
        self.digest = self.digest.wrapping_mul(1_000_033).wrapping_add(event.amount);
    }
}

/// Event `n` of a stream: every fifth a withdrawal, ~200 bytes of memo.
fn event(n: usize) -> AccountEvent {
    let amount = u64::try_from(n % 97 + 1).unwrap_or(1);
    let memo = format!("memo-{n:08}-{}", "x".repeat(186));
    if n % 5 == 4 {
        Withdrawn { amount, memo }.into()
    } else {
        Deposited { amount, memo }.into()
    }
}

/// The hand-written fold shared by both baselines.
fn fold(state: &mut Account, kind: &str, data: &[u8]) {
    match kind {
        Deposited::KIND => {
            let event: Deposited = serde_json::from_slice(data).expect("a deposit decodes");
            Apply::<Deposited>::apply(state, &event);
        }
        Withdrawn::KIND => {
            let event: Withdrawn = serde_json::from_slice(data).expect("a withdrawal decodes");
            Apply::<Withdrawn>::apply(state, &event);
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Writes the 10,000-event stream in 10-event transactions, each followed
/// by a 10-event transaction on another stream of the same aggregate kind.
async fn seed<S>(store: &S)
where
    S: EventStore<Id = String, Metadata = ()>,
{
    for chunk in 0..LOADED / BATCH {
        for stream in [BIG, OTHER] {
            let mut tx = store.begin::<Unchecked>(Account::KIND, stream.to_owned(), None);
            for n in chunk * BATCH..(chunk + 1) * BATCH {
                tx.append(event(n), ()).expect("an event encodes");
            }
            tx.commit().await.expect("a seed commit");
        }
    }
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

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `rounds` pairs of blocks of `count` loads each; prints per-load medians
/// (ms) and the ratio hand time ÷ store time.
fn paired(label: &str, rounds: usize, count: usize, mut store: impl FnMut(), mut by_hand: impl FnMut()) {
    let mut block = |store_side: bool| {
        let start = Instant::now();
        for _ in 0..count {
            if store_side { store() } else { by_hand() }
        }
        start.elapsed()
    };
    block(true);
    block(false);
    let per = f64::from(u32::try_from(count).unwrap_or(u32::MAX));
    let millis = |time: Duration| time.as_secs_f64() / per * 1e3;
    let (mut store_times, mut hand_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let store_first = round % 2 == 0;
        let first = block(store_first);
        let second = block(!store_first);
        let (by_store, by_hand) = if store_first {
            (first, second)
        } else {
            (second, first)
        };
        store_times.push(millis(by_store));
        hand_times.push(millis(by_hand));
        ratios.push(by_hand.as_secs_f64() / by_store.as_secs_f64());
    }
    let (low, high) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), &r| (low.min(r), high.max(r)));
    println!(
        "{label}: store {:.3} ms, hand-written {:.3} ms; ratio (store speed ÷ hand speed) median {:.3} \
         (range {low:.3}–{high:.3}), {rounds} rounds of {count}",
        median(&mut store_times),
        median(&mut hand_times),
        median(&mut ratios),
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn bench_sqlite(runtime: &tokio::runtime::Runtime, rounds: usize, loads: usize) {
    let path = std::env::temp_dir().join(format!("sourcery-repo-load-{}.db", std::process::id()));
    let store: sqlite::Store<String, ()> = runtime
        .block_on(
            sqlite::OpenOptions::new()
                .synchronous(sqlite::Synchronous::Normal)
                .open(&path),
        )
        .expect("the SQLite store opens");
    let seeding = Instant::now();
    runtime.block_on(seed(&store));
    eprintln!(
        "sqlite: seeded {} events in {:.1?}",
        2 * LOADED,
        seeding.elapsed()
    );
    let connection = rusqlite::Connection::open(&path).expect("baseline connection");
    let repository = Repository::new(store);
    let id = BIG.to_owned();
    let by_hand = || {
        let mut statement = connection
            .prepare_cached(
                "SELECT position, event_kind, data FROM sourcery_events \
                 WHERE aggregate_kind = ?1 AND aggregate_id = ?2 ORDER BY position",
            )
            .expect("prepare");
        let mut rows = statement.query((Account::KIND, BIG)).expect("query");
        let mut state = Account::default();
        let mut version = 0_i64;
        let mut count = 0;
        while let Some(row) = rows.next().expect("a row") {
            version = row.get(0).expect("position");
            let kind = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).expect("kind");
            let data = row.get_ref(2).and_then(|v| Ok(v.as_blob()?)).expect("data");
            fold(&mut state, kind, data);
            count += 1;
        }
        assert_eq!(count, LOADED);
        assert!(version > 0);
        state
    };
    let stored = runtime
        .block_on(repository.load::<Account>(&id))
        .expect("store load");
    assert_eq!(stored, by_hand());
    assert_eq!(stored.deposits + stored.withdrawals, LOADED as u64);
    paired(
        &format!("sqlite: Repository::load of a {LOADED}-event stream"),
        rounds,
        loads,
        || {
            let state = runtime
                .block_on(repository.load::<Account>(&id))
                .expect("store load");
            assert_eq!(state.deposits + state.withdrawals, LOADED as u64);
        },
        || {
            let state = by_hand();
            assert_eq!(state.deposits + state.withdrawals, LOADED as u64);
        },
    );
    drop(repository);
    drop(connection);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

fn bench_postgres(runtime: &tokio::runtime::Runtime, url: &str, rounds: usize, loads: usize) {
    let schema = format!("sourcery_bench_repo_load_{}", std::process::id());
    let pool = runtime
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(url),
        )
        .expect("the database accepts connections");
    runtime
        .block_on(sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool))
        .expect("drop");
    let store: postgres::Store<String, ()> =
        postgres::Store::with_schema(pool.clone(), schema.clone()).expect("a valid schema name");
    runtime.block_on(store.migrate()).expect("migrate");
    let seeding = Instant::now();
    runtime.block_on(seed(&store));
    runtime
        .block_on(sqlx::query(&format!("VACUUM ANALYZE {schema}.sourcery_events")).execute(&pool))
        .expect("vacuum");
    eprintln!(
        "postgres: seeded {} events in {:.1?}",
        2 * LOADED,
        seeding.elapsed()
    );
    let repository = Repository::new(store);
    let id = BIG.to_owned();
    let select = format!(
        "SELECT position, event_kind, data FROM {schema}.sourcery_events \
         WHERE aggregate_kind = $1 AND aggregate_id = $2 ORDER BY position"
    );
    let by_hand = || {
        runtime.block_on(async {
            let rows = sqlx::query(&select)
                .bind(Account::KIND)
                .bind(BIG)
                .fetch_all(&pool)
                .await
                .expect("baseline select");
            let mut state = Account::default();
            let mut version = 0_i64;
            for row in &rows {
                version = row.get(0);
                let kind: &str = row.get(1);
                let data: &[u8] = row.get(2);
                fold(&mut state, kind, data);
            }
            assert_eq!(rows.len(), LOADED);
            assert!(version > 0);
            state
        })
    };
    let stored = runtime
        .block_on(repository.load::<Account>(&id))
        .expect("store load");
    assert_eq!(stored, by_hand());
    paired(
        &format!("postgres: Repository::load of a {LOADED}-event stream"),
        rounds,
        loads,
        || {
            let state = runtime
                .block_on(repository.load::<Account>(&id))
                .expect("store load");
            assert_eq!(state.deposits + state.withdrawals, LOADED as u64);
        },
        || {
            let state = by_hand();
            assert_eq!(state.deposits + state.withdrawals, LOADED as u64);
        },
    );
    drop(repository);
    runtime
        .block_on(sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool))
        .expect("drop");
}

fn main() {
    let rounds = env_usize("ROUNDS", 15);
    let loads = env_usize("LOADS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    eprintln!("loadavg at start: {}", loadavg());
    if std::env::var("ONLY").as_deref() != Ok("postgres") {
        bench_sqlite(&runtime, rounds, loads);
    }
    if std::env::var("ONLY").as_deref() != Ok("sqlite") {
        match std::env::var("DATABASE_URL") {
            Ok(url) => bench_postgres(&runtime, &url, rounds, loads),
            Err(_) => eprintln!("postgres: SKIPPED, DATABASE_URL is not set"),
        }
    }
    eprintln!("loadavg at end: {}", loadavg());
}

//! Appends of 10-event batches, the store against one hand-written
//! multi-row `INSERT`, measured in interleaved pairs.
//!
//! Each round times a block of store appends and a block of hand-written
//! inserts back to back (alternating which goes first) and takes their
//! ratio; the result is the median over the rounds. On a shared 2-core box
//! the absolute speed drifts by ±20% within a minute, which separate
//! criterion runs of the two sides turn into noise in the ratio; a pair sees
//! the same conditions. `benches/postgres.rs` has the same workloads under
//! criterion.
//!
//! `cargo bench -p sourcery-es-postgres --bench append_paired`; `ROUNDS` sets
//! the number of rounds (default 15); `NO_NOTIFY=1` measures a store that
//! sends no `NOTIFY` after its appends; `SIDE=store` (or `hand`) runs one
//! side only, for a profiler. Needs `DATABASE_URL`; without it,
//! says so and measures nothing. Runs in a schema of its own, dropped at the
//! end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sourcery_core::store::EventStore;
use sourcery_postgres::{Store, SubscriptionOptions};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

mod common;

use common::{BATCH, create_baseline, events, insert_by_hand};

type PgStore = Store<String, serde_json::Value>;

/// The benchmark's schema, one per process: two runs at once (a before and
/// an after binary, say) must not drop each other's tables.
static SCHEMA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("sourcery_bench_paired_{}", std::process::id()));
const WRITERS: usize = 8;
/// Appends per block with one writer, and per writer with eight.
const BLOCK_ONE: usize = 200;
const BLOCK_EIGHT: usize = 100;
/// One writer's state on both sides: its store stream's version and its
/// baseline stream's next sequence number.
#[derive(Default)]
struct Writer {
    version: Option<i64>,
    sequence: i64,
    n: usize,
}

/// `count` store appends by writer `index`: optimistic with one writer (each
/// expects the version the last returned, as a command would), unchecked with
/// eight (distinct streams), as in the criterion benchmark.
async fn store_block(store: &PgStore, stream: &str, optimistic: bool, writer: &mut Writer, count: usize) {
    for _ in 0..count {
        writer.n += BATCH;
        let written = match (optimistic, writer.version) {
            (true, None) => {
                store
                    .append_expecting_new("bench", &stream.to_owned(), events(writer.n, BATCH))
                    .await
            }
            (true, expected) => {
                store
                    .append("bench", &stream.to_owned(), expected, events(writer.n, BATCH))
                    .await
            }
            (false, _) => {
                store
                    .append("bench", &stream.to_owned(), None, events(writer.n, BATCH))
                    .await
            }
        }
        .expect("append");
        writer.version = Some(written.last_position);
    }
}

async fn hand_block(pool: &PgPool, stream: &str, writer: &mut Writer, count: usize) {
    for _ in 0..count {
        writer.n += BATCH;
        insert_by_hand(pool, &SCHEMA, stream, writer.sequence + 1, writer.n).await;
        writer.sequence += i64::try_from(BATCH).expect("small");
    }
}

/// Runs one block on every writer at once; returns the wall time.
async fn block(
    store: &Arc<PgStore>,
    pool: &PgPool,
    writers: &mut [Writer],
    by_store: bool,
    count: usize,
) -> Duration {
    let optimistic = writers.len() == 1;
    let writers_count = writers.len();
    let start = Instant::now();
    let tasks: Vec<_> = writers
        .iter_mut()
        .enumerate()
        .map(|(index, writer)| {
            let store = Arc::clone(store);
            let pool = pool.clone();
            let mut state = std::mem::take(writer);
            let stream = format!("writer-{}-of-{writers_count}", index + 1);
            tokio::spawn(async move {
                if by_store {
                    store_block(&store, &stream, optimistic, &mut state, count).await;
                } else {
                    hand_block(&pool, &stream, &mut state, count).await;
                }
                state
            })
        })
        .collect();
    for (writer, task) in writers.iter_mut().zip(tasks) {
        *writer = task.await.expect("writer");
    }
    start.elapsed()
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

/// Interleaved rounds for `writers` writers; prints the medians.
async fn paired(store: &Arc<PgStore>, pool: &PgPool, writers: usize, rounds: usize) {
    let count = if writers == 1 { BLOCK_ONE } else { BLOCK_EIGHT };
    let mut state: Vec<Writer> = (0..writers).map(|_| Writer::default()).collect();
    // Warm-up: a block each, not counted.
    block(store, pool, &mut state, true, count).await;
    block(store, pool, &mut state, false, count).await;
    if let Ok(side) = std::env::var("SIDE") {
        // One side only, for a profiler or a CPU count: no ratio.
        let start = Instant::now();
        for _ in 0..rounds {
            block(store, pool, &mut state, side == "store", count).await;
        }
        println!(
            "{side} only, {writers} writer(s): {:.1} µs per round of appends",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(u32::try_from(rounds * count).expect("small"))
        );
        return;
    }
    let appends = f64::from(u32::try_from(count).expect("small"));
    let (mut store_times, mut hand_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let store_first = round % 2 == 0;
        let first = block(store, pool, &mut state, store_first, count).await;
        let second = block(store, pool, &mut state, !store_first, count).await;
        let (by_store, by_hand) = if store_first {
            (first, second)
        } else {
            (second, first)
        };
        // Time per round of appends (one append per writer).
        store_times.push(by_store.as_secs_f64() / appends * 1e6);
        hand_times.push(by_hand.as_secs_f64() / appends * 1e6);
        ratios.push(by_hand.as_secs_f64() / by_store.as_secs_f64());
    }
    let (low, high) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), &r| (low.min(r), high.max(r)));
    println!(
        "append 10-event batches, {writers} writer(s), {rounds} rounds of {count} appends per writer: \
         store {:.1} µs, hand-written INSERT {:.1} µs per {} events; \
         ratio (store speed ÷ hand speed) median {:.3} (range {low:.3}–{high:.3})",
        median(&mut store_times),
        median(&mut hand_times),
        BATCH * writers,
        median(&mut ratios),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("PostgreSQL benchmarks SKIPPED: DATABASE_URL is not set");
        return;
    };
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(15);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", *SCHEMA))
            .execute(&pool)
            .await
            .expect("drop");
        let mut store: PgStore = Store::with_schema(pool.clone(), SCHEMA.as_str()).expect("schema");
        if std::env::var_os("NO_NOTIFY").is_some() {
            store =
                store.with_subscription_options(SubscriptionOptions::default().notify_other_processes(false));
        }
        store.migrate().await.expect("migrate");
        create_baseline(&pool, &SCHEMA).await;
        let store = Arc::new(store);
        paired(&store, &pool, 1, rounds).await;
        paired(&store, &pool, WRITERS, rounds).await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", *SCHEMA))
            .execute(&pool)
            .await
            .expect("drop");
    });
}

//! Subscriptions on PostgreSQL, measured with a loop of its own (not
//! criterion: these are rates and latency distributions over seconds).
//!
//! 1. Append throughput of 8 concurrent writers (one event per append)
//!    with and without the `NOTIFY` after appends, alternated in one run.
//! 2. Latency from append to delivery at 1,000 events/s: to a subscriber
//!    of the same store (woken in process) and to one of another store
//!    value (woken by `LISTEN`), p50 and p99.
//! 3. Catch-up of a projection runner over 1,000,000 events against a raw
//!    keyset read of the same rows (pages of 1,000, same columns decoded).
//!
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! `BENCH_SECONDS` scales the timed parts (default 10); `BENCH_EVENTS` the
//! catch-up log (default 1,000,000); `ONLY_LATENCY=1` runs part 2 alone.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::inmemory::CheckpointStore as Checkpoints;
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::runner::ProjectionRunner;
use sourcery_core::store::{EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_core::subscription::Subscribe as _;
use sourcery_postgres::{Store, SubscriptionOptions};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

type PgStore = Store<String, ()>;

#[derive(Debug, Serialize, Deserialize)]
struct Ticked {
    n: u64,
}

impl DomainEvent for Ticked {
    const KIND: &'static str = "bench.ticked";
}

#[derive(Debug, Default)]
struct Count(u64);

impl Projection for Count {
    const KIND: &'static str = "count";
    type Id = String;
    type Metadata = ();
    fn declare<S: EventStore<Id = String, Metadata = ()>>(
        e: ProjectionEvents<S, Self>,
    ) -> ProjectionEvents<S, Self> {
        e.event::<Ticked>()
    }
}

impl ApplyProjection<Ticked> for Count {
    fn apply_projection(&mut self, _: &String, event: &Ticked, (): &()) {
        self.0 = self.0.wrapping_add(event.n.min(1));
    }
}

fn ticked(n: u64) -> NonEmpty<PersistableEvent<()>> {
    NonEmpty::new(PersistableEvent {
        id: EventId::new(),
        kind: Ticked::KIND.to_owned(),
        schema_version: 1,
        data: serde_json::to_vec(&Ticked { n }).unwrap_or_default(),
        metadata: (),
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn pool(connections: u32) -> PgPool {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url)
        .await
        .expect("DATABASE_URL accepts connections")
}

async fn fresh_store(name: &str, options: SubscriptionOptions) -> PgStore {
    let pool = pool(16).await;
    let schema = format!("sourcery_bench_{name}_{}", std::process::id());
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .expect("drop");
    let store = Store::with_schema(pool, schema)
        .expect("schema")
        .with_subscription_options(options);
    store.migrate().await.expect("migrate");
    store
}

async fn drop_store(store: &PgStore) {
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema()))
        .execute(store.pool())
        .await;
}

/// Events per second of 8 writers appending one event per call for `time`.
async fn append_rate(store: &PgStore, time: Duration) -> f64 {
    const WRITERS: u64 = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let id = format!("w{writer}");
                let mut n = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    store.append("bench", &id, None, ticked(n)).await.expect("append");
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for writer in writers {
        total += writer.await.expect("writer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = total as f64 / elapsed;
    rate
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a sorted sample"
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn throughput(seconds: u64) {
    let quiet = fresh_store(
        "quiet",
        SubscriptionOptions::default().notify_other_processes(false),
    )
    .await;
    let notifying = fresh_store("notify", SubscriptionOptions::default()).await;
    // Another store listens on the notifying store's channel, as another
    // process would in production (a store sends no NOTIFY while only its
    // own subscribers listen).
    let listener: PgStore = Store::with_schema(pool(2).await, notifying.schema()).expect("schema");
    let _listening = listener.subscribe(vec![EventFilter::for_event(Ticked::KIND)], None);
    let time = Duration::from_secs(seconds.div_ceil(2).max(1));
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..2 {
        without.push(append_rate(&quiet, time).await);
        with.push(append_rate(&notifying, time).await);
    }
    println!("append throughput, 8 writers, 1 event per append ({time:?} per round, alternated):");
    println!("  without NOTIFY: {:.0} / {:.0} events/s", without[0], without[1]);
    println!(
        "  with NOTIFY (coalesced, 2 ms): {:.0} / {:.0} events/s",
        with[0], with[1]
    );
    let ratio = (with[0] + with[1]) / (without[0] + without[1]);
    println!("  ratio with / without: {ratio:.2}");
    drop_store(&quiet).await;
    drop_store(&notifying).await;
}

async fn latency(seconds: u64) {
    let store = fresh_store("latency", SubscriptionOptions::default()).await;
    let other: PgStore = Store::with_schema(pool(4).await, store.schema()).expect("schema");
    let count = usize::try_from(seconds * 1_000).unwrap_or(usize::MAX);
    let sent: Arc<std::sync::Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let subscriber = |store: PgStore| {
        let mut subscription = store.subscribe(vec![EventFilter::for_event(Ticked::KIND)], None);
        tokio::spawn(async move {
            let mut received = Vec::with_capacity(count);
            while received.len() < count {
                let event = subscription.next().await.expect("goes on").expect("no error");
                received.push((event.position, Instant::now()));
            }
            received
        })
    };
    let here = subscriber(store.clone());
    let elsewhere = subscriber(other.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writers = Vec::new();
    for n in 0..count {
        tick.tick().await;
        let store = store.clone();
        let sent = Arc::clone(&sent);
        // Each append on its own task: a slow one does not hold the rate.
        writers.push(tokio::spawn(async move {
            let before = Instant::now();
            let id = format!("l{}", n % 100);
            let written = store
                .append("bench", &id, None, ticked(u64::try_from(n).unwrap_or(0)))
                .await
                .expect("append");
            sent.lock().expect("lock").push((written.last_position, before));
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let sent: std::collections::HashMap<i64, Instant> = sent.lock().expect("lock").iter().copied().collect();
    for (name, subscriber) in [
        ("same store (in-process wake)", here),
        ("other store (LISTEN/NOTIFY)", elsewhere),
    ] {
        let received = subscriber.await.expect("subscriber");
        let mut latencies: Vec<Duration> = received
            .iter()
            .filter_map(|(position, at)| {
                sent.get(position)
                    .map(|before| at.saturating_duration_since(*before))
            })
            .collect();
        latencies.sort();
        println!(
            "latency append call -> delivery at 1,000 events/s for {seconds} s, {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            percentile(&latencies, 1.0).as_secs_f64() * 1e3,
        );
    }
    drop_store(&store).await;
}

/// A row of the raw keyset read: position, aggregate kind, aggregate id,
/// event kind, data, metadata, schema version, event id.
type RawRow = (
    i64,
    String,
    String,
    String,
    Vec<u8>,
    String,
    i32,
    sqlx::types::Uuid,
);

/// Reads every row of the kind by keyset pages of 1,000, decoding the same
/// columns the store decodes.
async fn raw_keyset(store: &PgStore) -> (u64, Duration) {
    let sql = format!(
        "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata::text, schema_version, \
                event_id \
         FROM \"{}\".sourcery_events \
         WHERE event_kind = $1 AND position > $2 ORDER BY position LIMIT 1000",
        store.schema()
    );
    let started = Instant::now();
    let mut cursor = 0_i64;
    let mut rows = 0_u64;
    let mut count = 0_u64;
    loop {
        let page: Vec<RawRow> = sqlx::query_as(&sql)
            .bind(Ticked::KIND)
            .bind(cursor)
            .fetch_all(store.pool())
            .await
            .expect("raw read");
        let Some(last) = page.last() else { break };
        cursor = last.0;
        for row in &page {
            let event: Ticked = serde_json::from_slice(&row.4).expect("decodes");
            count = count.wrapping_add(event.n.min(1));
        }
        rows += u64::try_from(page.len()).unwrap_or(0);
    }
    std::hint::black_box(count);
    (rows, started.elapsed())
}

async fn runner_catch_up(store: &PgStore, last: i64) -> Duration {
    let started = Instant::now();
    let running = ProjectionRunner::new(store.clone(), Checkpoints::new())
        .start(Count::default())
        .expect("start");
    running
        .wait_for(last, Duration::from_secs(600))
        .await
        .expect("catches up");
    let elapsed = started.elapsed();
    std::hint::black_box(running.stop().await.expect("stop").0);
    elapsed
}

async fn catch_up(events: u64) {
    let store = fresh_store("catchup", SubscriptionOptions::default()).await;
    let seeding = Instant::now();
    let events = i64::try_from(events).unwrap_or(i64::MAX);
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".sourcery_events \
         (position, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata, event_id) \
         SELECT g, 'bench', 'c' || (g % 1000), g / 1000 + 1, $1, convert_to('{{\"n\":' || g || '}}', 'UTF8'), 'null'::jsonb, \
                gen_random_uuid() \
         FROM generate_series(1, $2) AS g",
        schema = store.schema()
    ))
    .bind(Ticked::KIND)
    .bind(events)
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
    sqlx::query(&format!("ANALYZE \"{}\".sourcery_events", store.schema()))
        .execute(store.pool())
        .await
        .expect("analyze");
    println!(
        "catch-up: seeded {events} events in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    // Warm the cache once.
    let _ = raw_keyset(&store).await;
    for round in 1..=2 {
        let (rows, raw) = raw_keyset(&store).await;
        let runner = runner_catch_up(&store, events).await;
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let rate = |time: Duration| rows as f64 / time.as_secs_f64();
        println!(
            "catch-up round {round}: raw keyset {:.0} events/s ({:.2} s), runner {:.0} events/s ({:.2} s), ratio {:.2}",
            rate(raw),
            raw.as_secs_f64(),
            rate(runner),
            runner.as_secs_f64(),
            raw.as_secs_f64() / runner.as_secs_f64()
        );
    }
    drop_store(&store).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench --no-run` builds it; `cargo test --benches` runs it with
    // `--bench` absent: only measure when asked.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("run with `cargo bench -p sourcery-es-postgres --bench subscriptions`");
        return;
    }
    let seconds = env_u64("BENCH_SECONDS", 10);
    if std::env::var_os("ONLY_LATENCY").is_none() {
        throughput(seconds).await;
    }
    latency(seconds).await;
    if std::env::var_os("ONLY_LATENCY").is_none() {
        catch_up(env_u64("BENCH_EVENTS", 1_000_000)).await;
    }
}

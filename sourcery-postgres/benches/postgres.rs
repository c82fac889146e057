//! The PostgreSQL store against hand-written sqlx on the same rows, in the
//! same run: appends of 10-event batches (1 and 8 writers, distinct streams)
//! against one multi-row `INSERT` each; loading a 10,000-event stream and
//! one event kind across 100,000 events against the same `SELECT` by hand.
//!
//! Needs `DATABASE_URL`; without it, says so and measures nothing. Runs in a
//! schema of its own, dropped at the end.

#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_postgres::Store;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio::runtime::Runtime;

mod common;

use common::{BATCH, KINDS, create_baseline, events, insert_by_hand};

type PgStore = Store<String, serde_json::Value>;

const SCHEMA: &str = "sourcery_bench";
const LOAD_SCHEMA: &str = "sourcery_bench_load";
/// The baseline load: the `SELECT` by hand, rows decoded into the same types.
async fn select_by_hand(pool: &PgPool, sql: &str, binds: &[&str]) -> usize {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    let rows = query.fetch_all(pool).await.expect("baseline select");
    let mut decoded = Vec::with_capacity(rows.len());
    for row in &rows {
        let position: i64 = row.get(0);
        let aggregate_kind: String = row.get(1);
        let aggregate_id: String = row.get(2);
        let kind: String = row.get(3);
        let data: Vec<u8> = row.get(4);
        let Json(metadata): Json<serde_json::Value> = row.get(5);
        let schema_version: i32 = row.get(6);
        let schema_version = u32::try_from(schema_version).expect("a schema version");
        let event_id: sqlx::types::Uuid = row.get(7);
        decoded.push((
            position,
            aggregate_kind,
            aggregate_id,
            kind,
            schema_version,
            data,
            metadata,
            event_id,
        ));
    }
    decoded.len()
}

struct Bench {
    runtime: Runtime,
    pool: PgPool,
    store: Arc<PgStore>,
}

fn setup() -> Option<Bench> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("PostgreSQL benchmarks SKIPPED: DATABASE_URL is not set");
        return None;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (pool, store) = runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&url)
            .await
            .expect("connect");
        for schema in [SCHEMA, LOAD_SCHEMA] {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .expect("drop");
        }
        let store: PgStore = Store::with_schema(pool.clone(), SCHEMA).expect("schema");
        store.migrate().await.expect("migrate");
        create_baseline(&pool, SCHEMA).await;
        (pool, Arc::new(store))
    });
    Some(Bench { runtime, pool, store })
}

fn appends(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("append 10-event batches");
    group.throughput(Throughput::Elements(u64::try_from(BATCH).expect("small")));
    let mut n = 0;
    // One writer, optimistic: each append expects the version the last one
    // returned, as a command would.
    let version = Arc::new(std::sync::Mutex::new(None));
    group.bench_function("1 writer: store", |b| {
        b.to_async(&bench.runtime).iter(|| {
            n += BATCH;
            let store = Arc::clone(&bench.store);
            let version = Arc::clone(&version);
            let from = n;
            async move {
                let expected = *version.lock().expect("not poisoned");
                let stream = "writer-1".to_owned();
                let written = match expected {
                    None => {
                        store
                            .append_expecting_new("bench", &stream, events(from, BATCH))
                            .await
                    }
                    Some(_) => {
                        store
                            .append("bench", &stream, expected, events(from, BATCH))
                            .await
                    }
                }
                .expect("append");
                *version.lock().expect("not poisoned") = Some(written.last_position);
            }
        });
    });
    let mut sequence = 1;
    group.bench_function("1 writer: hand-written INSERT", |b| {
        b.to_async(&bench.runtime).iter(|| {
            let pool = bench.pool.clone();
            let at = sequence;
            sequence += i64::try_from(BATCH).expect("small");
            n += BATCH;
            let from = n;
            async move { insert_by_hand(&pool, SCHEMA, "writer-1", at, from).await }
        });
    });
    group.finish();
}

fn appends_8_writers(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("append 10-event batches");
    group.throughput(Throughput::Elements(u64::try_from(BATCH * 8).expect("small")));
    group.bench_function("8 writers: store", |b| {
        b.to_async(&bench.runtime).iter_custom(|iterations| {
            let store = Arc::clone(&bench.store);
            async move {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for writer in 0..8 {
                    let store = Arc::clone(&store);
                    tasks.push(tokio::spawn(async move {
                        let stream = format!("writer-8-{writer}");
                        for i in 0..iterations {
                            let from = usize::try_from(i).expect("small") * BATCH;
                            store
                                .append("bench", &stream, None, events(from, BATCH))
                                .await
                                .expect("append");
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("writer");
                }
                start.elapsed()
            }
        });
    });
    let sequences = Arc::new(std::sync::Mutex::new([1_i64; 8]));
    group.bench_function("8 writers: hand-written INSERT", |b| {
        b.to_async(&bench.runtime).iter_custom(|iterations| {
            let pool = bench.pool.clone();
            let sequences = Arc::clone(&sequences);
            async move {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for writer in 0..8 {
                    let pool = pool.clone();
                    let first = sequences.lock().expect("not poisoned")[writer];
                    tasks.push(tokio::spawn(async move {
                        let stream = format!("writer-8-{writer}");
                        for i in 0..iterations {
                            let offset = i64::try_from(i * 10).expect("small");
                            insert_by_hand(
                                &pool,
                                SCHEMA,
                                &stream,
                                first + offset,
                                usize::try_from(i).expect("small") * BATCH,
                            )
                            .await;
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("writer");
                }
                let mut sequences = sequences.lock().expect("not poisoned");
                for sequence in sequences.iter_mut() {
                    *sequence += i64::try_from(iterations * 10).expect("small");
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

fn loads(c: &mut Criterion, bench: &Bench) {
    // In a schema of their own (the append benchmarks wrote to the other):
    // one stream of 10,000 events, and 100,000 more over 1,000 streams.
    let store: PgStore = bench.runtime.block_on(async {
        let store: PgStore = Store::with_schema(bench.pool.clone(), LOAD_SCHEMA).expect("schema");
        store.migrate().await.expect("migrate");
        store
    });
    bench.runtime.block_on(async {
        for batch in 0..100 {
            store
                .append("bench", &"big".to_owned(), None, events(batch * 100, 100))
                .await
                .expect("seed");
        }
        for batch in 0..1000 {
            store
                .append("bench", &format!("small-{batch}"), None, events(batch * 100, 100))
                .await
                .expect("seed");
        }
        sqlx::query(&format!("ANALYZE {LOAD_SCHEMA}.sourcery_events"))
            .execute(&bench.pool)
            .await
            .expect("analyze");
    });
    let table = format!("{LOAD_SCHEMA}.sourcery_events");
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(10_000));
    let stream_filters: Vec<EventFilter<String, i64>> = KINDS
        .iter()
        .map(|kind| EventFilter::for_aggregate(*kind, "bench", "big".to_owned()))
        .collect();
    group.bench_function("one 10,000-event stream: store", |b| {
        b.to_async(&bench.runtime).iter(|| async {
            let events = store.load_events(&stream_filters).await.expect("load");
            assert_eq!(events.len(), 10_000);
        });
    });
    // What a repository loads: the whole stream, whatever the kinds.
    let whole_stream = [EventFilter::for_stream("bench", "big".to_owned())];
    group.bench_function("one 10,000-event stream: store, whole stream", |b| {
        b.to_async(&bench.runtime).iter(|| async {
            let events = store.load_events(&whole_stream).await.expect("load");
            assert_eq!(events.len(), 10_000);
        });
    });
    let stream_sql = format!(
        "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version, event_id \
         FROM {table} \
         WHERE aggregate_kind = $1 AND aggregate_id = $2 ORDER BY position"
    );
    group.bench_function("one 10,000-event stream: hand-written SELECT", |b| {
        b.to_async(&bench.runtime).iter(|| async {
            let count = select_by_hand(&bench.pool, &stream_sql, &["bench", "big"]).await;
            assert_eq!(count, 10_000);
        });
    });
    // One kind of four: 27,500 of the 110,000 events.
    let kind_count: u64 = 27_500;
    group.throughput(Throughput::Elements(kind_count));
    let kind_filters = [EventFilter::for_event(KINDS[1])];
    group.bench_function("one event kind across 110,000 events: store", |b| {
        b.to_async(&bench.runtime).iter(|| async {
            let events = store.load_events(&kind_filters).await.expect("load");
            assert_eq!(u64::try_from(events.len()).expect("small"), kind_count);
        });
    });
    let kind_sql = format!(
        "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version, event_id \
         FROM {table} \
         WHERE event_kind = $1 ORDER BY position"
    );
    group.bench_function("one event kind across 110,000 events: hand-written SELECT", |b| {
        b.to_async(&bench.runtime).iter(|| async {
            let count = select_by_hand(&bench.pool, &kind_sql, &[KINDS[1]]).await;
            assert_eq!(u64::try_from(count).expect("small"), kind_count);
        });
    });
    group.finish();
}

fn postgres(c: &mut Criterion) {
    let Some(bench) = setup() else {
        return;
    };
    appends(c, &bench);
    appends_8_writers(c, &bench);
    loads(c, &bench);
    bench.runtime.block_on(async {
        for schema in [SCHEMA, LOAD_SCHEMA] {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&bench.pool)
                .await
                .expect("drop");
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = postgres
}
criterion_main!(benches);

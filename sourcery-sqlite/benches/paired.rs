//! The workloads of `benches/store.rs`, store against hand-written rusqlite,
//! measured in interleaved pairs.
//!
//! Each round times a block of store operations and a block of the same
//! operations by hand back to back (alternating which goes first) and takes
//! their ratio; the result is the median over the rounds. `synchronous=FULL`
//! appends wait for an `fsync`, whose time drifts by ±20% within a minute on
//! a shared machine; separate criterion runs of the two sides put that drift
//! into the ratio, a pair sees the same conditions.
//!
//! `cargo bench -p sourcery-es-sqlite --bench paired`; `ROUNDS` sets the number
//! of rounds (default 21).

mod common;

use std::time::{Duration, Instant};

use common::{
    AGGREGATE, BATCH, BenchStore, KINDS, LOADED, STREAMS, baseline_append, baseline_connection,
    baseline_load, batch, fill, name, open, renewed, runtime,
};
use sourcery_core::store::{EventFilter, EventStore, NonEmpty};
use sourcery_sqlite::Synchronous;

/// Appends per block.
const APPENDS: usize = 200;
/// Loads of the 10,000-event stream per block.
const LOADS: usize = 10;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        f64::midpoint(values[middle - 1], values[middle])
    }
}

/// Runs `rounds` pairs of `store` and `by_hand` blocks of `count` operations
/// and prints the medians (times per operation, in µs).
fn paired(label: &str, rounds: usize, count: usize, mut store: impl FnMut(), mut by_hand: impl FnMut()) {
    let mut block = |store_side: bool| {
        let start = Instant::now();
        for _ in 0..count {
            if store_side { store() } else { by_hand() }
        }
        start.elapsed()
    };
    // Warm-up, not counted.
    block(true);
    block(false);
    let per = f64::from(u32::try_from(count).unwrap_or(u32::MAX));
    let micros = |time: Duration| time.as_secs_f64() / per * 1e6;
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
        store_times.push(micros(by_store));
        hand_times.push(micros(by_hand));
        ratios.push(by_hand.as_secs_f64() / by_store.as_secs_f64());
    }
    let (low, high) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), &r| (low.min(r), high.max(r)));
    println!(
        "{label}: store {:.1} µs, hand-written rusqlite {:.1} µs; \
         ratio (store speed ÷ hand speed) median {:.3} (range {low:.3}–{high:.3}), {rounds} rounds of {count}",
        median(&mut store_times),
        median(&mut hand_times),
        median(&mut ratios),
    );
}

/// The load pair at one durability level.
fn loads(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, synchronous: Synchronous, rounds: usize) {
    let level = name(synchronous);
    let path = dir.join(format!("load-{level}.db"));
    let loaded: BenchStore = open(runtime, &path, synchronous);
    fill(runtime, &loaded);
    let reader = baseline_connection(runtime, &path, synchronous);
    let stream = "loaded".to_owned();
    let filters: Vec<EventFilter<String, i64>> = KINDS
        .iter()
        .map(|kind| EventFilter::for_aggregate(*kind, AGGREGATE, stream.clone()))
        .collect();
    paired(
        &format!("load one stream of {LOADED} events, {level}"),
        rounds,
        LOADS,
        || {
            let events = runtime
                .block_on(loaded.load_events(&filters))
                .unwrap_or_else(|error| panic!("store load: {error}"));
            assert_eq!(events.len(), LOADED);
        },
        || assert_eq!(baseline_load(&reader, &stream).len(), LOADED),
    );
}

fn main() {
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(21);
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let events = batch(0);
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let level = name(synchronous);

        let store: BenchStore = open(
            &runtime,
            &dir.path().join(format!("store-{level}.db")),
            synchronous,
        );
        let optimistic: BenchStore = open(&runtime, &dir.path().join(format!("opt-{level}.db")), synchronous);
        let mut connection = baseline_connection(
            &runtime,
            &dir.path().join(format!("hand-{level}.db")),
            synchronous,
        );

        let (mut n, mut m) = (0, 0);
        let mut hand = 0;
        let store_events = events.clone();
        let hand_events = events.clone();
        paired(
            &format!("append 10-event batch, {level}, unchecked"),
            rounds,
            APPENDS,
            || {
                n += 1;
                let Some(batch) = NonEmpty::from_vec(renewed(&store_events)) else {
                    unreachable!("a batch holds {BATCH} events")
                };
                runtime
                    .block_on(store.append(AGGREGATE, &format!("stream-{}", n % STREAMS), None, batch))
                    .unwrap_or_else(|error| panic!("store append: {error}"));
            },
            || {
                hand += 1;
                baseline_append(
                    &mut connection,
                    &format!("stream-{}", hand % STREAMS),
                    &renewed(&hand_events),
                );
            },
        );

        let mut versions: Vec<Option<i64>> = vec![None; STREAMS];
        let store_events = events.clone();
        let hand_events = events.clone();
        paired(
            &format!("append 10-event batch, {level}, optimistic"),
            rounds,
            APPENDS,
            || {
                m += 1;
                let slot = m % STREAMS;
                let stream = format!("stream-{slot}");
                let Some(batch) = NonEmpty::from_vec(renewed(&store_events)) else {
                    unreachable!("a batch holds {BATCH} events")
                };
                let written = runtime.block_on(async {
                    match versions[slot] {
                        Some(version) => optimistic.append(AGGREGATE, &stream, Some(version), batch).await,
                        None => optimistic.append_expecting_new(AGGREGATE, &stream, batch).await,
                    }
                });
                versions[slot] = Some(
                    written
                        .unwrap_or_else(|error| panic!("store append: {error}"))
                        .last_position,
                );
            },
            || {
                hand += 1;
                baseline_append(
                    &mut connection,
                    &format!("stream-{}", hand % STREAMS),
                    &renewed(&hand_events),
                );
            },
        );

        loads(&runtime, dir.path(), synchronous, rounds);
    }
}

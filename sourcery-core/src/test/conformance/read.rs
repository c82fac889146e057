//! `read`, for [`GloballyOrdered`](crate::store::GloballyOrdered) stores:
//! while writers commit, every read of the log is a prefix of what it
//! finally holds, made of whole batches, and a reader that follows
//! positions never skips an event that commits late.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Filter, everything, id};
use crate::store::GloballyOrdered;

/// Writers, batches per writer, events per batch.
const WRITERS: u64 = 4;
const BATCHES: u64 = 25;
const BATCH: u64 = 3;

/// The number of event `i` of batch `batch` of `writer`.
fn number(writer: u64, batch: u64, i: u64) -> u64 {
    writer * 10_000 + batch * 10 + i
}

/// Starts the writers; `done` is set once all have committed.
fn start_writers<S: ConformanceStore>(
    rule: Check,
    store: &Arc<S>,
    done: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let store = Arc::clone(store);
    let done = Arc::clone(done);
    tokio::spawn(async move {
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                let stream = id::<S>(&format!("read-writer-{writer}"));
                for batch in 0..BATCHES {
                    let numbers: Vec<u64> = (0..BATCH).map(|i| number(writer, batch, i)).collect();
                    rule.notes(&*store, ACCOUNT, &stream, &numbers).await;
                }
            }));
        }
        for writer in writers {
            if let Err(error) = writer.await {
                rule.fail("every writer to commit", format_args!("{error}"));
            }
        }
        done.store(true, Ordering::SeqCst);
    })
}

/// Every read of the log during concurrent commits is a prefix of the final
/// log that ends at a batch boundary: no gap, no reordering, no half batch.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn prefixes_only<S: ConformanceStore + GloballyOrdered>(store: S) {
    let rule = Check("read.prefixes_only");
    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));
    let writers = start_writers(rule, &store, &done);
    let mut reads = Vec::new();
    while !done.load(Ordering::SeqCst) && reads.len() < 400 {
        let read = rule.load(&*store, &everything::<S>()).await;
        reads.push(
            read.iter()
                .map(|event| event.position)
                .zip(rule.numbers(&*store, &read))
                .collect::<Vec<_>>(),
        );
        tokio::task::yield_now().await;
    }
    if let Err(error) = rule.bounded("the writers", writers).await {
        rule.fail("the writers to finish", format_args!("{error}"));
    }
    let last = rule.load(&*store, &everything::<S>()).await;
    let last: Vec<_> = last
        .iter()
        .map(|event| event.position)
        .zip(rule.numbers(&*store, &last))
        .collect();
    rule.same(
        "the number of events in the log once the writers are done",
        usize::try_from(WRITERS * BATCHES * BATCH).unwrap_or(usize::MAX),
        last.len(),
    );
    for read in reads {
        rule.ensure(
            last.starts_with(&read),
            "every read during the writes to be a prefix of the final log (positions and events)",
            || {
                let at = read
                    .iter()
                    .zip(&last)
                    .position(|(a, b)| a != b)
                    .unwrap_or(read.len().min(last.len()));
                format!(
                    "a read of {} events that differs at index {at}: {:?} where the log holds {:?}",
                    read.len(),
                    read.get(at),
                    last.get(at)
                )
            },
        );
        if let Some(&(_, n)) = read.last() {
            rule.ensure(
                n % 10 == BATCH - 1,
                "every read during the writes to end with the last event of a batch (batches are atomic)",
                || format!("a read ending with event {} of a batch of {BATCH}", n % 10 + 1),
            );
        }
    }
}

/// A reader that loads `after` the last position it has seen, over and
/// over while writers commit, ends up with every event exactly once.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn following_never_skips<S: ConformanceStore + GloballyOrdered>(store: S) {
    let rule = Check("read.following_never_skips");
    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));
    let writers = start_writers(rule, &store, &done);
    let mut seen: Vec<(S::Position, u64)> = Vec::new();
    let mut polls = 0;
    while !done.load(Ordering::SeqCst) && polls < 2_000 {
        follow(rule, &*store, &mut seen).await;
        polls += 1;
        tokio::task::yield_now().await;
    }
    if let Err(error) = rule.bounded("the writers", writers).await {
        rule.fail("the writers to finish", format_args!("{error}"));
    }
    // Everything has committed: one more read catches up.
    follow(rule, &*store, &mut seen).await;
    let log = rule.load(&*store, &everything::<S>()).await;
    let log: Vec<_> = log
        .iter()
        .map(|event| event.position)
        .zip(rule.numbers(&*store, &log))
        .collect();
    rule.ensure(
        seen == log,
        "a reader following `after` its last seen position to collect the whole log, each event once",
        || {
            let missed = log.iter().filter(|event| !seen.contains(event)).count();
            format!(
                "{} events for a log of {} ({missed} never seen; first missed: {:?})",
                seen.len(),
                log.len(),
                log.iter().find(|event| !seen.contains(event))
            )
        },
    );
}

/// Loads what comes after the last position in `seen` and adds it.
async fn follow<S: ConformanceStore>(rule: Check, store: &S, seen: &mut Vec<(S::Position, u64)>) {
    let filters: Vec<Filter<S>> = match seen.last() {
        Some(&(after, _)) => everything::<S>()
            .into_iter()
            .map(|filter| filter.after(after))
            .collect(),
        None => everything::<S>(),
    };
    let read = rule.load(store, &filters).await;
    seen.extend(
        read.iter()
            .map(|event| event.position)
            .zip(rule.numbers(store, &read)),
    );
}

//! `batch`: a batch is written whole or not at all, contiguous in its
//! stream and in order, and concurrent batches do not interleave.

use std::sync::Arc;

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Opened, id};
use crate::event::DomainEvent as _;
use crate::store::{AppendError, EventFilter};

/// A refused batch leaves none of its events, and the store keeps working.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn whole_or_nothing<S: ConformanceStore>(store: S) {
    let rule = Check("batch.whole_or_nothing");
    let stream = id::<S>("batch-refused");
    let first: Vec<u64> = (1..=20).collect();
    rule.notes(&store, ACCOUNT, &stream, &first).await;
    let refused: Vec<(&str, u64)> = (100..150).map(|n| (Opened::KIND, n)).collect();
    let batch = rule.batch(&store, &refused);
    let outcome = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, batch),
        )
        .await;
    rule.ensure(
        outcome.as_ref().is_err_and(AppendError::is_conflict),
        "a create of a stream with events to conflict",
        || format!("{outcome:?}"),
    );
    let loaded = rule.load(&store, &[EventFilter::for_event(Opened::KIND)]).await;
    rule.same(
        "the events of the refused batch in the log (none)",
        Vec::<u64>::new(),
        rule.numbers(&store, &loaded),
    );
    let later = rule.notes(&store, ACCOUNT, &stream, &[21]).await;
    rule.same(
        "the stream's version after an append that follows the refused batch",
        Some(later),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// A 50-event batch loads whole, in order, with no other event between its
/// events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn contiguous_in_order<S: ConformanceStore>(store: S) {
    let rule = Check("batch.contiguous_in_order");
    let stream = id::<S>("batch-whole");
    rule.notes(&store, ACCOUNT, &id::<S>("batch-before"), &[0]).await;
    let batch: Vec<u64> = (1..=50).collect();
    let last = rule.notes(&store, ACCOUNT, &stream, &batch).await;
    rule.notes(&store, ACCOUNT, &id::<S>("batch-after"), &[51]).await;
    let loaded = rule.load(&store, &super::support::everything::<S>()).await;
    rule.same(
        "the log: the event before, the 50 events of the batch in order, the event after",
        (0..=51).collect::<Vec<_>>(),
        rule.numbers(&store, &loaded),
    );
    rule.same(
        "the position of the batch's last event",
        Some(last),
        loaded.get(50).map(|event| event.position),
    );
}

/// Four writers append 20-event batches to one stream at once: each batch
/// is contiguous in the stream and in order.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn concurrent_batches_do_not_interleave<S: ConformanceStore>(store: S) {
    let rule = Check("batch.concurrent_batches_do_not_interleave");
    let store = Arc::new(store);
    let stream = id::<S>("batch-concurrent");
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let mut writers = Vec::new();
    for writer in 0..4_u64 {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        let start = Arc::clone(&start);
        writers.push(tokio::spawn(async move {
            let numbers: Vec<u64> = (0..20).map(|n| writer * 100 + n).collect();
            start.wait().await;
            rule.notes(&*store, ACCOUNT, &stream, &numbers).await;
        }));
    }
    for writer in writers {
        if let Err(error) = rule.bounded("a writer", writer).await {
            rule.fail("every writer to commit", format_args!("{error}"));
        }
    }
    let loaded = rule
        .load(&*store, &[EventFilter::for_stream(ACCOUNT, stream)])
        .await;
    let numbers = rule.numbers(&*store, &loaded);
    rule.same("the number of events", 80, numbers.len());
    for chunk in numbers.chunks(20) {
        let writer = chunk[0] / 100;
        let whole: Vec<u64> = (0..20).map(|n| writer * 100 + n).collect();
        rule.same(
            "each batch's 20 events together and in order",
            whole.as_slice(),
            chunk,
        );
    }
}

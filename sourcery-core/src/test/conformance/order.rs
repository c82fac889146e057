//! `order`: per stream, events load in append order; across streams, in
//! position order.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, everything, id};
use crate::store::EventFilter;

/// The fixture: interleaved commits to three streams, numbered in commit
/// order 1..=9.
async fn interleaved<S: ConformanceStore>(rule: Check, store: &S) -> (S::Id, S::Id) {
    let a = id::<S>("order-a");
    let b = id::<S>("order-b");
    rule.notes(store, ACCOUNT, &a, &[1, 2]).await;
    rule.notes(store, ACCOUNT, &b, &[3]).await;
    rule.notes(store, ACCOUNT, &a, &[4]).await;
    rule.notes(store, LEDGER, &a, &[5, 6]).await;
    rule.notes(store, ACCOUNT, &b, &[7, 8, 9]).await;
    (a, b)
}

/// Each stream loads in the order its events were appended.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn stream_in_append_order<S: ConformanceStore>(store: S) {
    let rule = Check("order.stream_in_append_order");
    let (a, b) = interleaved(rule, &store).await;
    for (name, stream, expected) in [("order-a", a, vec![1, 2, 4]), ("order-b", b, vec![3, 7, 8, 9])] {
        let loaded = rule
            .load(&store, &[EventFilter::for_stream(ACCOUNT, stream)])
            .await;
        rule.same(
            format_args!("stream {ACCOUNT}/{name} in append order"),
            expected,
            rule.numbers(&store, &loaded),
        );
        rule.ascending::<S>("a stream", &loaded);
    }
}

/// Filters across streams load the log in position order, which is commit
/// order.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn global_in_position_order<S: ConformanceStore>(store: S) {
    let rule = Check("order.global_in_position_order");
    interleaved(rule, &store).await;
    let all = rule.load(&store, &everything::<S>()).await;
    rule.same(
        "the log across streams, in commit order",
        (1..=9).collect::<Vec<_>>(),
        rule.numbers(&store, &all),
    );
    rule.ascending::<S>("the log", &all);
}

/// The same id under another aggregate kind is another stream.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn same_id_other_kind_is_another_stream<S: ConformanceStore>(store: S) {
    let rule = Check("order.same_id_other_kind_is_another_stream");
    let (a, _) = interleaved(rule, &store).await;
    let ledger = rule
        .load(&store, &[EventFilter::for_stream(LEDGER, a.clone())])
        .await;
    rule.same(
        format_args!(
            "stream {LEDGER}/order-a alone (the same id under another aggregate kind is another stream)"
        ),
        vec![5, 6],
        rule.numbers(&store, &ledger),
    );
    for event in &ledger {
        rule.ensure(
            event.aggregate_kind == LEDGER,
            format_args!("every event of the stream to carry aggregate kind {LEDGER:?}"),
            || format!("{:?}", event.aggregate_kind),
        );
    }
}

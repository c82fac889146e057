//! `filter`: each filter shape selects exactly its events; `after(p)` is
//! strictly greater than `p`, also when `p` belongs to another stream; the
//! union of filters holds each event once, in ascending position, each
//! filter's `after` applying to that filter alone.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, Noted, Opened, Stored, id};
use crate::event::DomainEvent as _;
use crate::store::EventFilter;

/// A kind that starts like [`Noted::KIND`], for stores that match kinds by
/// prefix.
const PREFIX: &str = "conformance.note";

/// The fixture, in commit order: `ACCOUNT/filter-a`: Opened 1, Noted 2 (one
/// batch); `ACCOUNT/filter-b`: Opened 3; `ACCOUNT/filter-a`: Noted 4;
/// `LEDGER/filter-a`: Noted 5; `ACCOUNT/filter-b`: a `conformance.note`
/// event 6. Returns both ids and the six events.
async fn fixture<S: ConformanceStore>(rule: Check, store: &S) -> (S::Id, S::Id, Vec<Stored<S>>) {
    let a = id::<S>("filter-a");
    let b = id::<S>("filter-b");
    rule.append(store, ACCOUNT, &a, &[(Opened::KIND, 1), (Noted::KIND, 2)])
        .await;
    rule.append(store, ACCOUNT, &b, &[(Opened::KIND, 3)]).await;
    rule.append(store, ACCOUNT, &a, &[(Noted::KIND, 4)]).await;
    rule.append(store, LEDGER, &a, &[(Noted::KIND, 5)]).await;
    rule.append(store, ACCOUNT, &b, &[(PREFIX, 6)]).await;
    let all = rule
        .load(
            store,
            &[
                EventFilter::for_event(Opened::KIND),
                EventFilter::for_event(Noted::KIND),
                EventFilter::for_event(PREFIX),
            ],
        )
        .await;
    rule.same(
        "the fixture's six events, by kind filters",
        vec![1, 2, 3, 4, 5, 6],
        rule.numbers(store, &all),
    );
    (a, b, all)
}

/// `for_event(k)` selects the events of kind `k` across streams, and no
/// other kind (not one `k` is a prefix of).
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn for_event_selects_its_kind<S: ConformanceStore>(store: S) {
    let rule = Check("filter.for_event_selects_its_kind");
    fixture(rule, &store).await;
    let cases: [(&str, &str, &[u64]); 3] = [
        ("for_event(Opened) selects", Opened::KIND, &[1, 3]),
        ("for_event(Noted) selects", Noted::KIND, &[2, 4, 5]),
        (
            "for_event(\"conformance.note\") selects (not the kinds it is a prefix of)",
            PREFIX,
            &[6],
        ),
    ];
    for (case, kind, expected) in cases {
        rule.selects(&store, case, &[EventFilter::for_event(kind)], expected)
            .await;
    }
}

/// `for_aggregate(k, kind, id)` selects the events of kind `k` in that one
/// stream.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn for_aggregate_selects_its_stream<S: ConformanceStore>(store: S) {
    let rule = Check("filter.for_aggregate_selects_its_stream");
    let (a, b, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_aggregate(Noted, ACCOUNT, filter-a) selects",
        &[EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a)],
        &[2, 4],
    )
    .await;
    rule.selects(
        &store,
        "for_aggregate(Opened, ACCOUNT, filter-b) selects",
        &[EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b)],
        &[3],
    )
    .await;
}

/// `for_aggregate` matches the aggregate kind too: the same id under another
/// aggregate kind is not selected.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn for_aggregate_matches_the_aggregate_kind<S: ConformanceStore>(store: S) {
    let rule = Check("filter.for_aggregate_matches_the_aggregate_kind");
    let (a, _, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_aggregate(Noted, LEDGER, filter-a) selects (not ACCOUNT/filter-a's)",
        &[EventFilter::for_aggregate(Noted::KIND, LEDGER, a.clone())],
        &[5],
    )
    .await;
    rule.selects(
        &store,
        "for_aggregate(Opened, LEDGER, filter-a) selects",
        &[EventFilter::for_aggregate(Opened::KIND, LEDGER, a)],
        &[],
    )
    .await;
}

/// A kind nobody wrote selects nothing, alone or beside other filters.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn unknown_kind_selects_nothing<S: ConformanceStore>(store: S) {
    let rule = Check("filter.unknown_kind_selects_nothing");
    let (a, _, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_event of a kind never written selects",
        &[EventFilter::for_event("conformance.never-written")],
        &[],
    )
    .await;
    rule.selects(
        &store,
        "for_aggregate of a kind never written selects",
        &[EventFilter::for_aggregate(
            "conformance.never-written",
            ACCOUNT,
            a,
        )],
        &[],
    )
    .await;
    rule.selects(
        &store,
        "a kind never written beside for_event(Opened) selects",
        &[
            EventFilter::for_event("conformance.never-written"),
            EventFilter::for_event(Opened::KIND),
        ],
        &[1, 3],
    )
    .await;
}

/// No filters select nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn no_filters_select_nothing<S: ConformanceStore>(store: S) {
    let rule = Check("filter.no_filters_select_nothing");
    fixture(rule, &store).await;
    rule.selects(&store, "an empty filter list selects", &[], &[])
        .await;
}

/// `after(p)` selects positions strictly greater than `p`.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn after_is_strict<S: ConformanceStore>(store: S) {
    let rule = Check("filter.after_is_strict");
    let (a, _, all) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_event(Noted).after(position of event 2) selects (event 2 itself is out)",
        &[EventFilter::for_event(Noted::KIND).after(all[1].position)],
        &[4, 5],
    )
    .await;
    rule.selects(
        &store,
        "for_aggregate(Noted, ACCOUNT, filter-a).after(position of event 2) selects",
        &[EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a).after(all[1].position)],
        &[4],
    )
    .await;
}

/// Nothing comes after the last position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn after_last_is_empty<S: ConformanceStore>(store: S) {
    let rule = Check("filter.after_last_is_empty");
    let (a, _, all) = fixture(rule, &store).await;
    let last = all[5].position;
    rule.selects(
        &store,
        "for_event(conformance.note).after(the last position) selects",
        &[EventFilter::for_event(PREFIX).after(last)],
        &[],
    )
    .await;
    rule.selects(
        &store,
        "for_stream(ACCOUNT, filter-a).after(the last position) selects",
        &[EventFilter::for_stream(ACCOUNT, a).after(last)],
        &[],
    )
    .await;
}

/// `after(p)` with `p` a position of another stream cuts at `p` all the
/// same.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn after_position_of_another_stream<S: ConformanceStore>(store: S) {
    let rule = Check("filter.after_position_of_another_stream");
    let (a, _, all) = fixture(rule, &store).await;
    // Event 3 is filter-b's, between filter-a's events 2 and 4.
    rule.selects(
        &store,
        "for_aggregate(Noted, ACCOUNT, filter-a).after(position of filter-b's event 3) selects",
        &[EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a).after(all[2].position)],
        &[4],
    )
    .await;
}

/// Overlapping filters — a kind, a stream's events of that kind, the same
/// filter twice — select each event once.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn union_each_once<S: ConformanceStore>(store: S) {
    let rule = Check("filter.union_each_once");
    let (a, b, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_event(Noted), for_aggregate(Noted, ACCOUNT, filter-a) and for_aggregate(Opened, ACCOUNT, \
         filter-b) twice select, each once",
        &[
            EventFilter::for_event(Noted::KIND),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a),
            EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b.clone()),
            EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b),
        ],
        &[2, 3, 4, 5],
    )
    .await;
}

/// The union comes in ascending position, not filter by filter.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn union_ascending<S: ConformanceStore>(store: S) {
    let rule = Check("filter.union_ascending");
    let (a, b, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_event(conformance.note), for_aggregate(Opened, ACCOUNT, filter-b), for_aggregate(Noted, \
         ACCOUNT, filter-a) select, in position order",
        &[
            EventFilter::for_event(PREFIX),
            EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a),
        ],
        &[2, 3, 4, 6],
    )
    .await;
}

/// In a union, each filter's `after` applies to that filter alone.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn union_after_per_filter<S: ConformanceStore>(store: S) {
    let rule = Check("filter.union_after_per_filter");
    let (a, _, all) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_event(Opened).after(position of event 1) with for_aggregate(Noted, ACCOUNT, filter-a) select",
        &[
            EventFilter::for_event(Opened::KIND).after(all[0].position),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()),
        ],
        &[2, 3, 4],
    )
    .await;
    rule.selects(
        &store,
        "for_aggregate(Noted, ACCOUNT, filter-a).after(position of event 2) with for_event(Opened) select",
        &[
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a).after(all[1].position),
            EventFilter::for_event(Opened::KIND),
        ],
        &[1, 3, 4],
    )
    .await;
}

//! `stream`: a whole-stream filter (`EventFilter::for_stream`) selects every
//! event of its stream, whatever its kind, and nothing else; `after` and
//! unions work on it as on other filters.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, Noted, Opened, UNLISTED, everything, id, labelled};
use crate::event::DomainEvent as _;
use crate::store::EventFilter;

/// The log, in commit order:
///
/// 1. `ACCOUNT`/`whole-a`: Opened 1, Noted 2, unlisted 3 (one batch);
/// 2. `ACCOUNT`/`whole-b`: Noted 4;
/// 3. `LEDGER`/`whole-a` (the same id under another aggregate kind):
///    Opened 5, unlisted 6;
/// 4. `ACCOUNT`/`whole-a`: unlisted 7, Noted 8.
///
/// Returns the ids of `whole-a` and `whole-b`, and each event's position by
/// number (`positions[n - 1]`).
async fn fixture<S: ConformanceStore>(rule: Check, store: &S) -> (S::Id, S::Id, Vec<S::Position>) {
    let a = id::<S>("whole-a");
    let b = id::<S>("whole-b");
    rule.append(
        store,
        ACCOUNT,
        &a,
        &[(Opened::KIND, 1), (Noted::KIND, 2), (UNLISTED, 3)],
    )
    .await;
    rule.append(store, ACCOUNT, &b, &[(Noted::KIND, 4)]).await;
    rule.append(store, LEDGER, &a, &[(Opened::KIND, 5), (UNLISTED, 6)])
        .await;
    rule.append(store, ACCOUNT, &a, &[(UNLISTED, 7), (Noted::KIND, 8)])
        .await;
    let all = rule.load(store, &everything::<S>()).await;
    rule.same(
        "the eight events of the fixture, by kind filters",
        (1..=8).collect::<Vec<_>>(),
        rule.numbers(store, &all),
    );
    (a, b, all.iter().map(|event| event.position).collect())
}

/// `for_stream` selects every event of its stream whatever its kind — a
/// kind no other filter names included — in append order, at the positions
/// they were written at.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn every_kind<S: ConformanceStore>(store: S) {
    let rule = Check("stream.every_kind");
    let (a, _, positions) = fixture(rule, &store).await;
    let loaded = rule.load(&store, &[EventFilter::for_stream(ACCOUNT, a)]).await;
    rule.same(
        "every event of stream ACCOUNT/whole-a whatever its kind, in append order (kind, number)",
        labelled(&[
            (Opened::KIND, 1),
            (Noted::KIND, 2),
            (UNLISTED, 3),
            (UNLISTED, 7),
            (Noted::KIND, 8),
        ]),
        rule.labels(&store, &loaded),
    );
    rule.same(
        "the positions they were written at",
        vec![
            positions[0],
            positions[1],
            positions[2],
            positions[6],
            positions[7],
        ],
        loaded.iter().map(|event| event.position).collect(),
    );
}

/// `for_stream` selects nothing of other streams: not of another id, nor of
/// the same id under another aggregate kind; a stream without events
/// selects nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn only_its_stream<S: ConformanceStore>(store: S) {
    let rule = Check("stream.only_its_stream");
    let (a, b, _) = fixture(rule, &store).await;
    rule.selects(
        &store,
        "for_stream(LEDGER, whole-a) selects (the same id under another aggregate kind is another stream)",
        &[EventFilter::for_stream(LEDGER, a)],
        &[5, 6],
    )
    .await;
    rule.selects(
        &store,
        "for_stream(ACCOUNT, whole-b) selects",
        &[EventFilter::for_stream(ACCOUNT, b)],
        &[4],
    )
    .await;
    rule.selects(
        &store,
        "for_stream of a stream without events selects",
        &[EventFilter::for_stream(ACCOUNT, id::<S>("whole-missing"))],
        &[],
    )
    .await;
}

/// `for_stream(..).after(p)` selects the stream's events strictly after
/// `p`.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn after<S: ConformanceStore>(store: S) {
    let rule = Check("stream.after");
    let (a, _, positions) = fixture(rule, &store).await;
    let cases: [(&str, usize, &[u64]); 3] = [
        (
            "for_stream(ACCOUNT, whole-a).after(its event 1) selects",
            0,
            &[2, 3, 7, 8],
        ),
        (
            "for_stream(ACCOUNT, whole-a).after(its event 2) selects (event 2 itself is out)",
            1,
            &[3, 7, 8],
        ),
        (
            "for_stream(ACCOUNT, whole-a).after(its last event) selects",
            7,
            &[],
        ),
    ];
    for (case, cut, expected) in cases {
        rule.selects(
            &store,
            case,
            &[EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[cut])],
            expected,
        )
        .await;
    }
}

/// `for_stream(..).after(p)` with `p` a position of another stream cuts at
/// `p`.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn after_position_of_another_stream<S: ConformanceStore>(store: S) {
    let rule = Check("stream.after_position_of_another_stream");
    let (a, _, positions) = fixture(rule, &store).await;
    let cases: [(&str, usize); 2] = [
        ("for_stream(ACCOUNT, whole-a).after(whole-b's event 4) selects", 3),
        (
            "for_stream(ACCOUNT, whole-a).after(event 6, of the same id under another aggregate kind) selects",
            5,
        ),
    ];
    for (case, cut) in cases {
        rule.selects(
            &store,
            case,
            &[EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[cut])],
            &[7, 8],
        )
        .await;
    }
}

/// A union of `for_stream` with kind filters on the same stream and others
/// selects each event once, in ascending position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn union_each_once<S: ConformanceStore>(store: S) {
    let rule = Check("stream.union_each_once");
    let (a, b, _) = fixture(rule, &store).await;
    rule.selects(&store,
        "the stream, a kind filter on it, Opened of LEDGER/whole-a, Noted across streams and the stream again \
         select, each once",
        &[
            EventFilter::for_stream(ACCOUNT, a.clone()),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()),
            EventFilter::for_aggregate(Opened::KIND, LEDGER, a.clone()),
            EventFilter::for_event(Noted::KIND),
            EventFilter::for_stream(ACCOUNT, a.clone()),
        ],
        &[1, 2, 3, 4, 5, 7, 8],
    )
    .await;
    rule.selects(
        &store,
        "two whole streams select",
        &[
            EventFilter::for_stream(LEDGER, a),
            EventFilter::for_stream(ACCOUNT, b),
        ],
        &[4, 5, 6],
    )
    .await;
}

/// In a union with `for_stream`, each filter's `after` applies to that
/// filter alone.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn union_after_per_filter<S: ConformanceStore>(store: S) {
    let rule = Check("stream.union_after_per_filter");
    let (a, b, positions) = fixture(rule, &store).await;
    let cases = [
        (
            "the stream after event 3, Opened of the stream from the start, Noted of the stream after event 7 \
             select",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[2]),
                EventFilter::for_aggregate(Opened::KIND, ACCOUNT, a.clone()),
                EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()).after(positions[6]),
            ],
            vec![1, 7, 8],
        ),
        (
            "the stream after event 2 and the whole stream select",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[1]),
                EventFilter::for_stream(ACCOUNT, a.clone()),
            ],
            vec![1, 2, 3, 7, 8],
        ),
        (
            "LEDGER/whole-a from the start and ACCOUNT/whole-b after event 1 select",
            vec![
                EventFilter::for_stream(LEDGER, a.clone()),
                EventFilter::for_stream(ACCOUNT, b).after(positions[0]),
            ],
            vec![4, 5, 6],
        ),
        (
            "the stream after event 7 and the unlisted kind across streams select",
            vec![
                EventFilter::for_stream(ACCOUNT, a).after(positions[6]),
                EventFilter::for_event(UNLISTED),
            ],
            vec![3, 6, 7, 8],
        ),
    ];
    for (case, filters, expected) in cases {
        rule.selects(&store, case, &filters, &expected).await;
    }
}

//! `version`: a stream's version is the position of its last event (`None`
//! without events), whatever other streams do.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, id};

/// With several streams written in turn, each stream's version is the
/// position of its own last event — not a count of its events, not the log's
/// last position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn is_last_position_of_stream<S: ConformanceStore>(store: S) {
    let rule = Check("version.is_last_position_of_stream");
    let a = id::<S>("version-a");
    let b = id::<S>("version-b");
    let c = id::<S>("version-c");
    // Interleaved so that no stream's event count equals its last position.
    rule.notes(&store, ACCOUNT, &b, &[1, 2]).await;
    rule.notes(&store, ACCOUNT, &a, &[3]).await;
    rule.notes(&store, ACCOUNT, &c, &[4, 5, 6]).await;
    rule.notes(&store, ACCOUNT, &b, &[7]).await;
    rule.notes(&store, ACCOUNT, &a, &[8, 9]).await;
    rule.notes(&store, ACCOUNT, &c, &[10]).await;
    for (name, stream) in [("version-a", &a), ("version-b", &b), ("version-c", &c)] {
        let events = rule
            .load(
                &store,
                &[crate::store::EventFilter::for_stream(ACCOUNT, stream.clone())],
            )
            .await;
        let last = events.last().map(|event| event.position);
        let version = rule.version(&store, ACCOUNT, stream).await;
        rule.same(
            format_args!(
                "the version of stream {ACCOUNT}/{name} to be the position of its last event (a stream's \
                 version is the position of its last event in the log, not a count of the stream's events)"
            ),
            last,
            version,
        );
    }
}

/// A stream without events has no version, also once other streams have
/// events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn none_for_new_stream<S: ConformanceStore>(store: S) {
    let rule = Check("version.none_for_new_stream");
    let fresh = id::<S>("version-fresh");
    rule.same(
        "the version of a stream in an empty store",
        None,
        rule.version(&store, ACCOUNT, &fresh).await,
    );
    rule.notes(&store, ACCOUNT, &id::<S>("version-other"), &[1, 2])
        .await;
    rule.same(
        "the version of a stream without events while another stream has some",
        None,
        rule.version(&store, ACCOUNT, &fresh).await,
    );
}

/// Commits to other streams do not move a stream's version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn other_streams_do_not_move_it<S: ConformanceStore>(store: S) {
    let rule = Check("version.other_streams_do_not_move_it");
    let stream = id::<S>("version-still");
    let last = rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    let later = rule
        .notes(&store, ACCOUNT, &id::<S>("version-busy"), &[3, 4, 5])
        .await;
    rule.ensure(later > last, "a later commit to report a higher position", || {
        format!("{later:?} after {last:?}")
    });
    rule.same(
        "the version of a stream after commits to another stream",
        Some(last),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// The same id under another aggregate kind is another stream, with its own
/// version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn aggregate_kind_separates_streams<S: ConformanceStore>(store: S) {
    let rule = Check("version.aggregate_kind_separates_streams");
    let shared = id::<S>("version-shared");
    let account = rule.notes(&store, ACCOUNT, &shared, &[1, 2]).await;
    rule.same(
        "the version of the same id under another aggregate kind, with no events",
        None,
        rule.version(&store, LEDGER, &shared).await,
    );
    let ledger = rule.notes(&store, LEDGER, &shared, &[3]).await;
    rule.same(
        "the version of the first aggregate kind's stream after a commit to the second",
        Some(account),
        rule.version(&store, ACCOUNT, &shared).await,
    );
    rule.same(
        "the version of the second aggregate kind's stream",
        Some(ledger),
        rule.version(&store, LEDGER, &shared).await,
    );
}

/// The position a commit reports is the stream's new version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn reported_by_the_commit<S: ConformanceStore>(store: S) {
    let rule = Check("version.reported_by_the_commit");
    rule.notes(&store, LEDGER, &id::<S>("version-before"), &[1, 2, 3])
        .await;
    let stream = id::<S>("version-reported");
    for numbers in [&[4_u64, 5][..], &[6], &[7, 8, 9]] {
        let reported = rule.notes(&store, ACCOUNT, &stream, numbers).await;
        rule.same(
            "the stream's version after a commit (the position the commit reported)",
            Some(reported),
            rule.version(&store, ACCOUNT, &stream).await,
        );
    }
}

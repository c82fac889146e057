//! `optimistic`: an append with an expected version commits exactly when
//! the stream is at that version; otherwise it is a conflict that says why
//! and writes nothing. Of racing writers with the same expectation, one
//! wins.

use std::sync::Arc;

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, Noted, id};
use crate::concurrency::ExpectedVersion;
use crate::event::DomainEvent as _;
use crate::store::{AppendError, AppendResult, EventFilter};

/// The outcome of an append expecting `expected`, failing the rule on a
/// store error.
async fn append_at<S: ConformanceStore>(
    rule: Check,
    store: &S,
    aggregate_kind: &str,
    stream: &S::Id,
    expected: Option<S::Position>,
    n: u64,
) -> Result<AppendResult<S::Position>, crate::concurrency::ConcurrencyConflict<S::Position>> {
    let batch = rule.batch(store, &[(Noted::KIND, n)]);
    let appended = rule
        .bounded("append", store.append(aggregate_kind, stream, expected, batch))
        .await;
    match appended {
        Ok(written) => Ok(written),
        Err(AppendError::Conflict(conflict)) => Err(conflict),
        Err(error) => rule.fail("a commit or a conflict", format_args!("a store failure: {error}")),
    }
}

/// Fails unless the append expecting `expected` conflicts, reporting
/// `actual`, and leaves the stream as it was.
async fn refused<S: ConformanceStore>(
    rule: Check,
    store: &S,
    stream: &S::Id,
    expected: S::Position,
    case: &str,
) {
    let before = rule
        .load(store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    let actual = rule.version(store, ACCOUNT, stream).await;
    match append_at(rule, store, ACCOUNT, stream, Some(expected), 99).await {
        Err(conflict) => rule.same(
            format_args!("the conflict of an append expecting {case} (expected, actual)"),
            (ExpectedVersion::Exact(expected), actual),
            (conflict.expected, conflict.actual),
        ),
        Ok(written) => rule.fail(
            format_args!(
                "an append expecting {case} ({expected:?}) to conflict, the stream being at {actual:?}"
            ),
            format_args!("a commit at {:?}", written.last_position),
        ),
    }
    let after = rule
        .load(store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the stream's events after the refused append",
        rule.numbers(store, &before),
        rule.numbers(store, &after),
    );
}

/// An append expecting the stream's current version commits.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn current_version_commits<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.current_version_commits");
    let stream = id::<S>("optimistic-current");
    let mut version = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    rule.notes(&store, LEDGER, &id::<S>("optimistic-elsewhere"), &[2])
        .await;
    for n in 3..6 {
        match append_at(rule, &store, ACCOUNT, &stream, Some(version), n).await {
            Ok(written) => version = written.last_position,
            Err(conflict) => rule.fail(
                "an append expecting the stream's current version to commit",
                format_args!("a conflict: {conflict}"),
            ),
        }
    }
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream)])
        .await;
    rule.same(
        "the stream's events",
        vec![1, 3, 4, 5],
        rule.numbers(&store, &loaded),
    );
}

/// An append expecting an older version of the stream conflicts.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn stale_version_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.stale_version_conflicts");
    let stream = id::<S>("optimistic-stale");
    let stale = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    rule.notes(&store, ACCOUNT, &stream, &[2]).await;
    refused(rule, &store, &stream, stale, "the stream's previous version").await;
}

/// An append expecting a version the stream has not reached (a later
/// position of the log) conflicts.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn ahead_of_stream_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.ahead_of_stream_conflicts");
    let stream = id::<S>("optimistic-behind");
    rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let ahead = rule
        .notes(&store, ACCOUNT, &id::<S>("optimistic-ahead"), &[2, 3])
        .await;
    refused(
        rule,
        &store,
        &stream,
        ahead,
        "a position after the stream's version",
    )
    .await;
}

/// An append expecting the version of another stream — another id, or the
/// same id under another aggregate kind — conflicts.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn version_of_another_stream_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.version_of_another_stream_conflicts");
    let stream = id::<S>("optimistic-mine");
    rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let same_id = rule.notes(&store, LEDGER, &stream, &[2]).await;
    refused(
        rule,
        &store,
        &stream,
        same_id,
        "the version of the same id under another aggregate kind",
    )
    .await;
    let before = rule
        .notes(&store, ACCOUNT, &id::<S>("optimistic-theirs"), &[3])
        .await;
    rule.notes(&store, ACCOUNT, &stream, &[4]).await;
    refused(rule, &store, &stream, before, "the version of another stream").await;
}

/// An append expecting a version on a stream without events conflicts,
/// reporting no actual version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn on_empty_stream_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.on_empty_stream_conflicts");
    let somewhere = rule
        .notes(&store, ACCOUNT, &id::<S>("optimistic-somewhere"), &[1])
        .await;
    refused(
        rule,
        &store,
        &id::<S>("optimistic-empty"),
        somewhere,
        "a version on a stream without events",
    )
    .await;
}

/// A conflict reports the version the append expected and the stream's
/// actual version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn conflict_reports_versions<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.conflict_reports_versions");
    let stream = id::<S>("optimistic-report");
    let first = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let second = rule.notes(&store, ACCOUNT, &stream, &[2, 3]).await;
    match append_at(rule, &store, ACCOUNT, &stream, Some(first), 4).await {
        Err(conflict) => rule.same(
            "the conflict's expected and actual versions",
            (ExpectedVersion::Exact(first), Some(second)),
            (conflict.expected, conflict.actual),
        ),
        Ok(written) => rule.fail(
            "an append at a stale version to conflict",
            format_args!("a commit at {:?}", written.last_position),
        ),
    }
}

/// A refused batch leaves nothing behind, not even its first event.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn conflict_writes_nothing<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.conflict_writes_nothing");
    let stream = id::<S>("optimistic-nothing");
    let stale = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let version = rule.notes(&store, ACCOUNT, &stream, &[2]).await;
    let batch = rule.batch(&store, &[(Noted::KIND, 3), (Noted::KIND, 4), (Noted::KIND, 5)]);
    let refused = rule
        .bounded("append", store.append(ACCOUNT, &stream, Some(stale), batch))
        .await;
    rule.ensure(
        refused.as_ref().is_err_and(AppendError::is_conflict),
        "a batch at a stale version to conflict",
        || format!("{refused:?}"),
    );
    let everything = rule.load(&store, &[EventFilter::for_event(Noted::KIND)]).await;
    rule.same(
        "every event of the log after the refused batch",
        vec![1, 2],
        rule.numbers(&store, &everything),
    );
    rule.same(
        "the stream's version after the refused batch",
        Some(version),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// Races `writers` appends with the same expectation; returns the winners'
/// numbers and the number of conflicts.
async fn race<S: ConformanceStore>(
    rule: Check,
    store: &Arc<S>,
    stream: &S::Id,
    expected: Option<S::Position>,
    writers: u64,
) -> (Vec<u64>, u64) {
    let start = Arc::new(tokio::sync::Barrier::new(
        usize::try_from(writers).unwrap_or(usize::MAX),
    ));
    let mut tasks = Vec::new();
    for writer in 1..=writers {
        let store = Arc::clone(store);
        let start = Arc::clone(&start);
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let batch = rule.batch(
                &*store,
                &[(Noted::KIND, writer * 100), (Noted::KIND, writer * 100 + 1)],
            );
            start.wait().await;
            let outcome = match expected {
                Some(version) => store.append(ACCOUNT, &stream, Some(version), batch).await,
                None => store.append_expecting_new(ACCOUNT, &stream, batch).await,
            };
            (writer, outcome.map(|_| ()).map_err(|error| error.is_conflict()))
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match rule.bounded("a racing writer", task).await {
            Ok((writer, Ok(()))) => winners.push(writer),
            Ok((_, Err(true))) => conflicts += 1,
            Ok((writer, Err(false))) => rule.fail(
                "every racing writer to commit or conflict",
                format_args!("a store failure for writer {writer}"),
            ),
            Err(error) => rule.fail("every racing writer to finish", format_args!("{error}")),
        }
    }
    (winners, conflicts)
}

/// Checks a race's outcome: one winner, every other writer a conflict, and
/// the stream holding `base` then the winner's batch.
async fn one_winner<S: ConformanceStore>(
    rule: Check,
    store: &S,
    stream: &S::Id,
    base: &[u64],
    (winners, conflicts): (Vec<u64>, u64),
    writers: u64,
) {
    rule.same(
        format_args!("the number of winners among {writers} writers racing with one expected version"),
        1,
        winners.len(),
    );
    rule.same("the number of conflicts", writers - 1, conflicts);
    let winner = winners[0];
    let loaded = rule
        .load(store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    let mut expected = base.to_vec();
    expected.extend([winner * 100, winner * 100 + 1]);
    rule.same(
        "the stream after the race (what was there, then the winner's batch)",
        expected,
        rule.numbers(store, &loaded),
    );
}

/// Sixteen writers append at the same version at once: exactly one wins,
/// every other gets a conflict.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn race_one_winner<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.race_one_winner");
    let store = Arc::new(store);
    let stream = id::<S>("optimistic-race");
    let base = rule.notes(&*store, ACCOUNT, &stream, &[1]).await;
    let outcome = race(rule, &store, &stream, Some(base), 16).await;
    one_winner(rule, &*store, &stream, &[1], outcome, 16).await;
}

/// Eight writers create the same stream at once: exactly one wins.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn create_race_one_winner<S: ConformanceStore>(store: S) {
    let rule = Check("optimistic.create_race_one_winner");
    let store = Arc::new(store);
    let stream = id::<S>("optimistic-create-race");
    let outcome = race(rule, &store, &stream, None, 8).await;
    one_winner(rule, &*store, &stream, &[], outcome, 8).await;
}

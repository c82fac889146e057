//! `expected`: the four expected-version modes of a commit. "The stream
//! must exist, at any version" ([`ExpectedVersion::StreamExists`],
//! [`EventStore::append_expecting_existing`](crate::store::EventStore::append_expecting_existing))
//! commits on a stream with events whatever its version and conflicts on
//! one without; a transaction begun with
//! [`begin_expecting`](crate::store::EventStore::begin_expecting) commits
//! exactly when its mode holds.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Noted, id};
use crate::concurrency::ExpectedVersion;
use crate::event::DomainEvent as _;
use crate::store::{AppendError, EventFilter, InvalidBatch, TextField};
use crate::test::conformance::support::Stored;

/// The numbers of the events of one stream.
async fn numbers<S: ConformanceStore>(rule: Check, store: &S, stream: &S::Id) -> Vec<u64> {
    let loaded: Vec<Stored<S>> = rule
        .load(store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.numbers(store, &loaded)
}

/// On a stream with events, an append expecting an existing stream commits
/// whatever the version, and reports the new last position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn stream_exists_appends_at_any_version<S: ConformanceStore>(store: S) {
    let rule = Check("expected.stream_exists_appends_at_any_version");
    let stream = id::<S>("expected-exists");
    rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    rule.notes(&store, ACCOUNT, &stream, &[2]).await;
    let batch = rule.batch(&store, &[(Noted::KIND, 3), (Noted::KIND, 4)]);
    let written = rule
        .ok(
            "append_expecting_existing",
            store.append_expecting_existing(ACCOUNT, &stream, batch),
        )
        .await;
    rule.same("the replayed flag of a fresh write", false, written.replayed);
    rule.same(
        "the stream's version after the append",
        Some(written.last_position),
        rule.version(&store, ACCOUNT, &stream).await,
    );
    rule.same(
        "the stream's events",
        vec![1, 2, 3, 4],
        numbers(rule, &store, &stream).await,
    );
}

/// On a stream with no events, an append expecting an existing stream
/// conflicts (expected [`ExpectedVersion::StreamExists`], actual `None`)
/// and writes nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn stream_exists_on_empty_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("expected.stream_exists_on_empty_conflicts");
    let stream = id::<S>("expected-missing");
    let batch = rule.batch(&store, &[(Noted::KIND, 1)]);
    let outcome = rule
        .bounded(
            "append_expecting_existing",
            store.append_expecting_existing(ACCOUNT, &stream, batch),
        )
        .await;
    match outcome {
        Err(AppendError::Conflict(conflict)) => rule.same(
            "the conflict's expected and actual versions",
            (ExpectedVersion::StreamExists, None),
            (conflict.expected, conflict.actual),
        ),
        Ok(written) => rule.fail(
            "a conflict for an append expecting an existing stream on an empty one",
            format_args!("a commit at {:?}", written.last_position),
        ),
        Err(error) => rule.fail("a conflict", format_args!("{error}")),
    }
    rule.same(
        "the stream's version after the refused append",
        None,
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// A batch no store keeps is refused as invalid by an append expecting an
/// existing stream, even on a stream with no events: the check comes before
/// the version check.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn stream_exists_refuses_invalid_first<S: ConformanceStore>(store: S) {
    let rule = Check("expected.stream_exists_refuses_invalid_first");
    let stream = id::<S>("expected-invalid");
    let batch = rule.batch(&store, &[(Noted::KIND, 1), ("conformance.\0noted", 2)]);
    let outcome = rule
        .bounded(
            "append_expecting_existing",
            store.append_expecting_existing(ACCOUNT, &stream, batch),
        )
        .await;
    match outcome {
        Err(AppendError::Invalid(InvalidBatch::Nul {
            field: TextField::EventKind { index: 1 },
        })) => {}
        Ok(written) => rule.fail(
            "AppendError::Invalid naming the kind of event 1",
            format_args!("a commit at {:?}", written.last_position),
        ),
        Err(error) => rule.fail(
            "AppendError::Invalid naming the kind of event 1",
            format_args!("{error:?}"),
        ),
    }
    rule.same(
        "the stream's version after the refused append",
        None,
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// A transaction begun with `begin_expecting` commits exactly when its mode
/// holds, for each of the four modes, on a new and on an existing stream.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn transaction_modes<S: ConformanceStore>(store: S) {
    let rule = Check("expected.transaction_modes");
    let existing = id::<S>("expected-tx-existing");
    let version = rule.notes(&store, ACCOUNT, &existing, &[1]).await;
    let cases: [(&str, ExpectedVersion<S::Position>, bool, bool); 4] = [
        ("any version", ExpectedVersion::Any, true, true),
        ("a new stream", ExpectedVersion::NoStream, true, false),
        ("an existing stream", ExpectedVersion::StreamExists, false, true),
        (
            "the stream's version",
            ExpectedVersion::Exact(version),
            false,
            true,
        ),
    ];
    let mut n = 10;
    for (index, (case, expected, on_new, on_existing)) in cases.into_iter().enumerate() {
        let fresh = id::<S>(&format!("expected-tx-new-{index}"));
        for (stream, commits) in [(&fresh, on_new), (&existing, on_existing)] {
            n += 1;
            let before = rule.version(&store, ACCOUNT, stream).await;
            // The exact mode expects the version the stream is at (a new
            // stream: a version of another stream, which it is not at).
            let expected = match expected {
                ExpectedVersion::Exact(other) => ExpectedVersion::Exact(before.unwrap_or(other)),
                mode => mode,
            };
            let mut tx = store.begin_expecting(ACCOUNT, stream.clone(), expected);
            if let Err(error) = tx.append(
                Noted {
                    n,
                    text: String::new(),
                },
                <S::Metadata as super::ConformanceMetadata>::sample(n),
            ) {
                rule.fail("a test event to encode", format_args!("{error}"));
            }
            let committed = rule.bounded("commit", tx.commit()).await;
            let expected_version = if commits { "to commit" } else { "to conflict" };
            match (committed, commits) {
                (Ok(Some(_)), true) => {}
                (Err(AppendError::Conflict(conflict)), false) => rule.same(
                    format_args!("the conflict of a transaction expecting {case} (expected, actual)"),
                    (expected, before),
                    (conflict.expected, conflict.actual),
                ),
                (outcome, _) => rule.fail(
                    format_args!(
                        "a transaction expecting {case} on a stream at {before:?} {expected_version}"
                    ),
                    format_args!("{:?}", outcome.map(|written| written.map(|w| w.last_position))),
                ),
            }
            let after = rule.version(&store, ACCOUNT, stream).await;
            rule.ensure(
                (after != before) == commits,
                format_args!(
                    "the stream's version to move exactly when the transaction expecting {case} commits"
                ),
                || format!("{before:?} before, {after:?} after"),
            );
        }
    }
}

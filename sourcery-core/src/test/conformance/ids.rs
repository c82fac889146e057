//! `ids`: every event keeps the id its writer chose; a batch whose ids are
//! all stored in its stream, in its order, is a replay that writes nothing
//! and returns the first outcome, whatever the expected version says; any
//! other reuse of stored ids is refused and writes nothing (invariant 7 of
//! the [contract](crate::store)).

use std::sync::Arc;

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, LEDGER, Noted, Stored, id};
use crate::event::DomainEvent as _;
use crate::id::EventId;
use crate::store::{
    AppendError, AppendOutcome, AppendResult, EventFilter, IdReuse, InvalidBatch, NonEmpty, PersistableEvent,
};

/// A batch of `Noted` events numbered `numbers`, each with a fresh id.
fn noted<S: ConformanceStore>(
    rule: Check,
    store: &S,
    numbers: &[u64],
) -> NonEmpty<PersistableEvent<S::Metadata>> {
    let events: Vec<(&str, u64)> = numbers.iter().map(|&n| (Noted::KIND, n)).collect();
    rule.batch(store, &events)
}

/// The ids of a batch, in order.
fn ids_of<M>(batch: &NonEmpty<PersistableEvent<M>>) -> Vec<EventId> {
    batch.iter().map(|event| event.id).collect()
}

/// What an append came back with, for a failure message.
fn describe<S: ConformanceStore>(outcome: &AppendOutcome<S::Position, S::Error>) -> String {
    match outcome {
        Ok(written) => format!(
            "Ok (last position {:?}, replayed: {})",
            written.last_position, written.replayed
        ),
        Err(AppendError::Conflict(conflict)) => format!("a conflict ({conflict})"),
        Err(AppendError::Invalid(invalid)) => format!("AppendError::Invalid({invalid:?})"),
        Err(AppendError::IdReused(reused)) => format!("AppendError::IdReused({reused:?})"),
        Err(AppendError::Store(error)) => format!("a store failure: {error} ({error:?})"),
    }
}

/// Writes `batch` as a new append (unchecked), failing the rule unless it
/// is written now.
async fn write<S: ConformanceStore>(
    rule: Check,
    store: &S,
    aggregate_kind: &str,
    stream: &S::Id,
    batch: NonEmpty<PersistableEvent<S::Metadata>>,
) -> S::Position {
    let outcome = rule
        .bounded("append", store.append(aggregate_kind, stream, None, batch))
        .await;
    match outcome {
        Ok(written) if !written.replayed => written.last_position,
        other => rule.fail(
            "a batch of fresh ids to be written (replayed: false)",
            describe::<S>(&other),
        ),
    }
}

/// Fails unless `outcome` is a replay ending at `position`.
fn replayed<S: ConformanceStore>(
    rule: Check,
    case: &str,
    position: S::Position,
    outcome: &AppendOutcome<S::Position, S::Error>,
) {
    match outcome {
        Ok(written) if written.replayed && written.last_position == position => {}
        other => rule.fail(
            format_args!(
                "{case}: a replay, Ok with the first append's last position {position:?} and replayed: true"
            ),
            describe::<S>(other),
        ),
    }
}

/// Fails unless `outcome` refuses a reuse of stored ids for `reason`.
fn refused<S: ConformanceStore>(
    rule: Check,
    case: &str,
    reason: IdReuse,
    outcome: &AppendOutcome<S::Position, S::Error>,
) {
    match outcome {
        Err(AppendError::IdReused(reused)) if reused.reason == reason => {}
        other => rule.fail(
            format_args!("{case}: AppendError::IdReused with reason {reason:?}"),
            describe::<S>(other),
        ),
    }
}

/// The numbers of the events of one stream.
async fn stream_numbers<S: ConformanceStore>(
    rule: Check,
    store: &S,
    aggregate_kind: &str,
    stream: &S::Id,
) -> Vec<u64> {
    let loaded = rule
        .load(store, &[EventFilter::for_stream(aggregate_kind, stream.clone())])
        .await;
    rule.numbers(store, &loaded)
}

/// Every id of `events`, in order.
fn loaded_ids<S: ConformanceStore>(events: &[Stored<S>]) -> Vec<EventId> {
    events.iter().map(|event| event.id).collect()
}

/// Events load with the ids they were appended with, whatever the filter.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn round_trip<S: ConformanceStore>(store: S) {
    let rule = Check("ids.round_trip");
    let stream = id::<S>("ids-round-trip");
    let first = noted(rule, &store, &[1, 2, 3]);
    let second = noted(rule, &store, &[4]);
    let mut expected = ids_of(&first);
    expected.extend(ids_of(&second));
    write(rule, &store, ACCOUNT, &stream, first).await;
    write(rule, &store, ACCOUNT, &stream, second).await;
    let whole = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the ids of the stream's events",
        expected.clone(),
        loaded_ids::<S>(&whole),
    );
    let by_kind = rule.load(&store, &[EventFilter::for_event(Noted::KIND)]).await;
    rule.same(
        "the ids of the events of one kind",
        expected,
        loaded_ids::<S>(&by_kind),
    );
}

/// The same batch appended again (same ids, unchecked) is a replay: the
/// first append's last position, `replayed` set, nothing written.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn replay_returns_first_outcome<S: ConformanceStore>(store: S) {
    let rule = Check("ids.replay_returns_first_outcome");
    let stream = id::<S>("ids-replay");
    let batch = noted(rule, &store, &[1, 2]);
    let first = write(rule, &store, ACCOUNT, &stream, batch.clone()).await;
    let again = rule
        .bounded("append", store.append(ACCOUNT, &stream, None, batch))
        .await;
    replayed::<S>(rule, "the same batch appended again", first, &again);
    rule.same(
        "the stream after the replay",
        vec![1, 2],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
    rule.same(
        "the stream's version after the replay",
        Some(first),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// A replay is recognised whatever the expected version says now: the
/// version the first attempt expected (stale since it committed), the
/// stream's current version, or a new stream.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn replay_whatever_expected_version<S: ConformanceStore>(store: S) {
    let rule = Check("ids.replay_whatever_expected_version");
    let stream = id::<S>("ids-replay-expected");
    let base = write(rule, &store, ACCOUNT, &stream, noted(rule, &store, &[1])).await;
    let batch = noted(rule, &store, &[2, 3]);
    let first = rule
        .bounded(
            "append",
            store.append(ACCOUNT, &stream, Some(base), batch.clone()),
        )
        .await;
    let first = match first {
        Ok(written) if !written.replayed => written.last_position,
        other => rule.fail("the first optimistic append to be written", describe::<S>(&other)),
    };
    let later = write(rule, &store, ACCOUNT, &stream, noted(rule, &store, &[4])).await;
    let stale = rule
        .bounded(
            "append",
            store.append(ACCOUNT, &stream, Some(base), batch.clone()),
        )
        .await;
    replayed::<S>(
        rule,
        "a retry expecting the version the first attempt read",
        first,
        &stale,
    );
    let current = rule
        .bounded(
            "append",
            store.append(ACCOUNT, &stream, Some(later), batch.clone()),
        )
        .await;
    replayed::<S>(
        rule,
        "a retry expecting the stream's current version",
        first,
        &current,
    );
    let new = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, batch.clone()),
        )
        .await;
    replayed::<S>(rule, "a retry through append_expecting_new", first, &new);
    let existing = rule
        .bounded(
            "append_expecting_existing",
            store.append_expecting_existing(ACCOUNT, &stream, batch),
        )
        .await;
    replayed::<S>(
        rule,
        "a retry through append_expecting_existing",
        first,
        &existing,
    );
    rule.same(
        "the stream after the retries",
        vec![1, 2, 3, 4],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
}

/// A creation retried (`append_expecting_new` with the same ids) is a replay,
/// not a conflict.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn replay_of_a_creation<S: ConformanceStore>(store: S) {
    let rule = Check("ids.replay_of_a_creation");
    let stream = id::<S>("ids-replay-create");
    let batch = noted(rule, &store, &[1]);
    let first = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, batch.clone()),
        )
        .await;
    let first = match first {
        Ok(written) if !written.replayed => written.last_position,
        other => rule.fail("the creation to be written", describe::<S>(&other)),
    };
    let again = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, batch),
        )
        .await;
    replayed::<S>(rule, "the creation retried", first, &again);
    rule.same(
        "the stream after the retry",
        vec![1],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
}

/// The first write of an id wins: a retry with the same ids but other data
/// is a replay, and the stored events keep the first data.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn first_write_wins<S: ConformanceStore>(store: S) {
    let rule = Check("ids.first_write_wins");
    let stream = id::<S>("ids-first-wins");
    let batch = noted(rule, &store, &[1, 2]);
    let first = write(rule, &store, ACCOUNT, &stream, batch.clone()).await;
    let other: Vec<PersistableEvent<S::Metadata>> = batch
        .iter()
        .zip(noted(rule, &store, &[8, 9]))
        .map(|(original, changed)| changed.with_id(original.id))
        .collect();
    let other = NonEmpty::from_vec(other).unwrap_or_else(|| rule.fail("a batch of two events", "none"));
    let again = rule
        .bounded("append", store.append(ACCOUNT, &stream, None, other))
        .await;
    replayed::<S>(rule, "the same ids with other data", first, &again);
    rule.same(
        "the stream after the retry (the first data)",
        vec![1, 2],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
}

/// A batch reusing some stored ids beside new ones is refused
/// ([`IdReuse::Partial`]) and writes nothing: not the new events either.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn partial_reuse_refused<S: ConformanceStore>(store: S) {
    let rule = Check("ids.partial_reuse_refused");
    let stream = id::<S>("ids-partial");
    let stored = noted(rule, &store, &[1, 2]);
    let version = write(rule, &store, ACCOUNT, &stream, stored.clone()).await;
    let reused = stored.get(1).map(|event| event.id);
    let reused = reused.unwrap_or_else(|| rule.fail("a batch of two events", "fewer"));
    let mixed = noted(rule, &store, &[7, 3]);
    let mut mixed = mixed.into_vec();
    mixed[0].id = reused;
    let mixed = NonEmpty::from_vec(mixed).unwrap_or_else(|| rule.fail("a batch of two events", "none"));
    let unchecked = rule
        .bounded("append", store.append(ACCOUNT, &stream, None, mixed.clone()))
        .await;
    refused::<S>(
        rule,
        "a batch of one stored id and one new",
        IdReuse::Partial,
        &unchecked,
    );
    let checked = rule
        .bounded("append", store.append(ACCOUNT, &stream, Some(version), mixed))
        .await;
    refused::<S>(
        rule,
        "the same batch expecting the stream's current version",
        IdReuse::Partial,
        &checked,
    );
    rule.same(
        "the stream after the refused batches",
        vec![1, 2],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
}

/// The ids of one stream's events appended to another stream are refused
/// ([`IdReuse::OtherStream`]); the other stream stays empty. Streams of
/// another aggregate kind with the same id are other streams.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn other_stream_refused<S: ConformanceStore>(store: S) {
    let rule = Check("ids.other_stream_refused");
    let stream = id::<S>("ids-home");
    let batch = noted(rule, &store, &[1, 2]);
    write(rule, &store, ACCOUNT, &stream, batch.clone()).await;
    let elsewhere = id::<S>("ids-elsewhere");
    let outcome = rule
        .bounded("append", store.append(ACCOUNT, &elsewhere, None, batch.clone()))
        .await;
    refused::<S>(
        rule,
        "a batch stored in another stream",
        IdReuse::OtherStream,
        &outcome,
    );
    let new = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(LEDGER, &stream, batch),
        )
        .await;
    refused::<S>(
        rule,
        "a batch stored in the stream of another aggregate kind with the same id",
        IdReuse::OtherStream,
        &new,
    );
    rule.same(
        "the other stream's version",
        None,
        rule.version(&store, ACCOUNT, &elsewhere).await,
    );
    rule.same(
        "the other kind's stream's version",
        None,
        rule.version(&store, LEDGER, &stream).await,
    );
}

/// Stored ids sent in another order are refused ([`IdReuse::Order`]).
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn other_order_refused<S: ConformanceStore>(store: S) {
    let rule = Check("ids.other_order_refused");
    let stream = id::<S>("ids-order");
    let batch = noted(rule, &store, &[1, 2]);
    write(rule, &store, ACCOUNT, &stream, batch.clone()).await;
    let mut swapped = batch.into_vec();
    swapped.reverse();
    let swapped = NonEmpty::from_vec(swapped).unwrap_or_else(|| rule.fail("a batch of two events", "none"));
    let outcome = rule
        .bounded("append", store.append(ACCOUNT, &stream, None, swapped))
        .await;
    refused::<S>(rule, "the stored ids in reverse order", IdReuse::Order, &outcome);
    rule.same(
        "the stream after the refused batch",
        vec![1, 2],
        stream_numbers(rule, &store, ACCOUNT, &stream).await,
    );
}

/// A batch holding one id twice is refused as invalid
/// ([`InvalidBatch::DuplicateId`]) before anything is written.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn duplicate_in_batch_refused<S: ConformanceStore>(store: S) {
    let rule = Check("ids.duplicate_in_batch_refused");
    let stream = id::<S>("ids-duplicate");
    let mut events = noted(rule, &store, &[1, 2, 3]).into_vec();
    events[2].id = events[0].id;
    let events = NonEmpty::from_vec(events).unwrap_or_else(|| rule.fail("a batch of three events", "none"));
    let outcome = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, events),
        )
        .await;
    match &outcome {
        Err(AppendError::Invalid(InvalidBatch::DuplicateId { first: 0, second: 2 })) => {}
        other => rule.fail(
            "AppendError::Invalid(InvalidBatch::DuplicateId { first: 0, second: 2 })",
            describe::<S>(other),
        ),
    }
    rule.same(
        "the stream's version after the refused batch",
        None,
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// Eight writers append the same batch (the same ids) at once, expecting
/// the same version: the batch is written once, and every writer is told
/// its last position; exactly one of them wrote it.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn race_writes_once<S: ConformanceStore>(store: S) {
    let rule = Check("ids.race_writes_once");
    let store = Arc::new(store);
    let stream = id::<S>("ids-race");
    let base = write(rule, &*store, ACCOUNT, &stream, noted(rule, &*store, &[1])).await;
    let batch = noted(rule, &*store, &[2, 3]);
    let writers = 8;
    let start = Arc::new(tokio::sync::Barrier::new(writers));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (store, start, stream, batch) = (
            Arc::clone(&store),
            Arc::clone(&start),
            stream.clone(),
            batch.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            // Half expect the version they read, half append unchecked.
            let expected = (writer % 2 == 0).then_some(base);
            store.append(ACCOUNT, &stream, expected, batch).await
        }));
    }
    let mut outcomes: Vec<AppendResult<S::Position>> = Vec::new();
    for task in tasks {
        match rule.bounded("a racing writer", task).await {
            Ok(Ok(written)) => outcomes.push(written),
            Ok(Err(error)) => rule.fail(
                "every writer of the same ids to be told the batch's outcome",
                describe::<S>(&Err(error)),
            ),
            Err(error) => rule.fail("every racing writer to finish", format_args!("{error}")),
        }
    }
    let positions: Vec<S::Position> = outcomes.iter().map(|written| written.last_position).collect();
    rule.ensure(
        positions.windows(2).all(|pair| pair[0] == pair[1]),
        "one last position for every writer",
        || format!("{positions:?}"),
    );
    rule.same(
        "the writers told they wrote the batch (replayed: false)",
        1,
        outcomes.iter().filter(|written| !written.replayed).count(),
    );
    rule.same(
        "the stream after the race",
        vec![1, 2, 3],
        stream_numbers(rule, &*store, ACCOUNT, &stream).await,
    );
}

/// `event_positions` finds the position of each id stored in the stream,
/// and nothing for unknown ids or ids of another stream.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn event_positions_found<S: ConformanceStore>(store: S) {
    let rule = Check("ids.event_positions_found");
    let stream = id::<S>("ids-positions");
    let first = noted(rule, &store, &[1, 2]);
    let home = ids_of(&first);
    write(rule, &store, ACCOUNT, &stream, first).await;
    let other = noted(rule, &store, &[3]);
    let elsewhere = ids_of(&other);
    write(rule, &store, ACCOUNT, &id::<S>("ids-positions-other"), other).await;
    write(rule, &store, ACCOUNT, &stream, noted(rule, &store, &[4])).await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    let positions: Vec<S::Position> = loaded.iter().map(|event| event.position).collect();
    let unknown = EventId::new();
    let asked = [home[1], unknown, elsewhere[0], home[0]];
    let found = rule
        .ok("event_positions", store.event_positions(ACCOUNT, &stream, &asked))
        .await;
    rule.same(
        "the positions of (the second event, an unknown id, an id of another stream, the first event)",
        vec![Some(positions[1]), None, None, Some(positions[0])],
        found,
    );
    let none = rule
        .ok("event_positions", store.event_positions(LEDGER, &stream, &home))
        .await;
    rule.same(
        "the positions of the ids in the stream of another aggregate kind",
        vec![None, None],
        none,
    );
}

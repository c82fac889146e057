//! Conformance rules for texts no store keeps: the character NUL (U+0000)
//! in an aggregate kind, an aggregate id, an event kind or metadata
//! (invariant 6 of the [store contract](crate::store)).
//!
//! Every store refuses a batch holding one before writing anything, with
//! [`AppendError::Invalid`] naming the field, whichever way the batch comes
//! in (`append` with or without an expected version, `append_expecting_new`,
//! a transaction's `commit`); reads that name such a text find nothing and
//! do not fail; and texts that only look like NUL (a backslash followed by
//! `0` or `u0000`) are ordinary text, stored exactly.
//!
//! Each rule's failure reads `conformance rule text.<rule>: expected ...,
//! got ...`.

use super::ConformanceMetadata;
use super::support::{Check, id};
use crate::concurrency::Unchecked;
use crate::store::{
    AppendError, AppendOutcome, EventFilter, EventStore, InvalidBatch, NonEmpty, PersistableEvent, TextField,
};

/// The aggregate kind of the rules' valid streams.
const STREAM_KIND: &str = "conformance-text";
/// The kind of the event every rule writes first, to a valid stream.
const SENTINEL: &str = "conformance.text.sentinel";
/// The kind of the valid event beside the invalid one in a refused batch.
const BESIDE: &str = "conformance.text.beside";

/// An event of `kind` whose data tells it apart by `n`.
fn event<M>(kind: &str, n: u64, metadata: M) -> PersistableEvent<M> {
    PersistableEvent::new(kind, format!("{{\"n\":{n}}}").into_bytes(), metadata)
}

fn batch<M>(rule: Check, events: Vec<PersistableEvent<M>>) -> NonEmpty<PersistableEvent<M>> {
    match NonEmpty::from_vec(events) {
        Some(events) => events,
        None => rule.fail("a test batch with events", "an empty one"),
    }
}

/// What an append came back with, for a failure message.
fn describe<S: EventStore>(outcome: &AppendOutcome<S::Position, S::Error>) -> String {
    match outcome {
        Ok(written) => format!("the batch written (last position {:?})", written.last_position),
        Err(AppendError::Invalid(invalid)) => format!("AppendError::Invalid({invalid:?})"),
        Err(AppendError::Conflict(conflict)) => format!("a conflict ({conflict})"),
        Err(AppendError::IdReused(reused)) => format!("AppendError::IdReused({reused:?})"),
        Err(AppendError::Store(error)) => format!("a store failure: {error} ({error:?})"),
    }
}

/// Writes the sentinel event to the valid stream `(STREAM_KIND, stream)`
/// and returns its position.
async fn write_sentinel<S>(rule: Check, store: &S, stream: &S::Id) -> S::Position
where
    S: EventStore,
    S::Metadata: ConformanceMetadata,
{
    let events = batch(rule, vec![event(SENTINEL, 0, S::Metadata::sample(0))]);
    let outcome = rule
        .bounded("append", store.append(STREAM_KIND, stream, None, events))
        .await;
    match outcome {
        Ok(written) => written.last_position,
        Err(_) => rule.fail(
            "a valid event to be written to a valid stream",
            describe::<S>(&outcome),
        ),
    }
}

/// The batch every way it can come in must be refused as
/// [`InvalidBatch::Nul`] naming `field`: `append` without and with an
/// expected version (`existing`, a position in the log: for another stream a
/// conflict, for the sentinel's own stream a success, were it not refused),
/// `append_expecting_new`, and an unchecked transaction's `commit`.
async fn expect_refused<S, F>(
    rule: Check,
    store: &S,
    kind: &str,
    stream: &S::Id,
    existing: S::Position,
    field: TextField,
    make: F,
) where
    S: EventStore,
    F: Fn() -> Vec<PersistableEvent<S::Metadata>>,
{
    let expected = InvalidBatch::Nul { field };
    let wanted =
        format!("AppendError::Invalid({expected:?}) (nothing written, whatever the stream's version)");
    let check = |way: &str, outcome: &AppendOutcome<S::Position, S::Error>| {
        if outcome.as_ref().err().and_then(AppendError::as_invalid) != Some(&expected) {
            rule.fail(format!("{way}: {wanted}"), describe::<S>(outcome));
        }
    };
    check(
        "append without an expected version",
        &rule
            .bounded("append", store.append(kind, stream, None, batch(rule, make())))
            .await,
    );
    check(
        "append with an expected version",
        &rule
            .bounded(
                "append",
                store.append(kind, stream, Some(existing), batch(rule, make())),
            )
            .await,
    );
    check(
        "append_expecting_new",
        &rule
            .bounded(
                "append_expecting_new",
                store.append_expecting_new(kind, stream, batch(rule, make())),
            )
            .await,
    );
    let mut transaction = store.begin::<Unchecked>(kind, stream.clone(), None);
    for event in make() {
        transaction.append_persistable(event);
    }
    let committed = rule.bounded("commit", transaction.commit()).await;
    if committed.as_ref().err().and_then(AppendError::as_invalid) != Some(&expected) {
        let got = match &committed {
            Ok(None) => "nothing written, reported as an empty transaction".to_owned(),
            Ok(Some(written)) => format!("the batch written (last position {:?})", written.last_position),
            Err(error) => format!("{error:?}"),
        };
        rule.fail(format!("Transaction::commit: {wanted}"), got);
    }
}

/// After the refusals the log holds exactly the sentinel: no event of the
/// kinds the refused batches used (or of their names cut at the NUL), the
/// sentinel's stream still at its version, and `streams` (the refused
/// streams and their names cut at the NUL) without events.
async fn expect_only_sentinel<S>(
    rule: Check,
    store: &S,
    sentinel_stream: &S::Id,
    sentinel: S::Position,
    kinds: &[&str],
    streams: &[(&str, S::Id)],
) where
    S: EventStore,
    S::Id: PartialEq,
{
    let mut filters = vec![EventFilter::for_event(SENTINEL), EventFilter::for_event(BESIDE)];
    filters.extend(kinds.iter().map(|&kind| EventFilter::for_event(kind)));
    let log: Vec<(String, String, S::Position)> = rule
        .load(store, &filters)
        .await
        .into_iter()
        .map(|event| (event.aggregate_kind, event.kind, event.position))
        .collect();
    let expected = vec![(STREAM_KIND.to_owned(), SENTINEL.to_owned(), sentinel)];
    if log != expected {
        rule.fail(format!(
                "the log to hold only the sentinel {expected:?} after the refused batches (of kinds {filters:?})"
            ),
            format!("{log:?}"),
        );
    }
    let at = rule.version(store, STREAM_KIND, sentinel_stream).await;
    if at != Some(sentinel) {
        rule.fail(
            format!("the sentinel's stream still at version {sentinel:?}"),
            format!("{at:?}"),
        );
    }
    for (kind, stream) in streams {
        let at = rule.version(store, kind, stream).await;
        let events = rule
            .load(store, &[EventFilter::for_stream(*kind, stream.clone())])
            .await;
        if at.is_some() || !events.is_empty() {
            rule.fail(
                format!("no event in stream {kind:?}/{stream:?} after the refused batches"),
                format!("version {at:?} and {} events", events.len()),
            );
        }
    }
}

/// `stream_version` of each of `streams` is `None`.
async fn expect_no_version<S: EventStore>(rule: Check, store: &S, streams: &[(&str, S::Id)]) {
    for (aggregate_kind, aggregate_id) in streams {
        let at = rule.version(store, aggregate_kind, aggregate_id).await;
        if at.is_some() {
            rule.fail(
                format!("stream_version of {aggregate_kind:?}/{aggregate_id:?} to be None"),
                format!("{at:?}"),
            );
        }
    }
}

/// A batch to a stream whose aggregate kind holds NUL is refused naming the
/// aggregate kind, and nothing is written.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_in_aggregate_kind_refused<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_in_aggregate_kind_refused");
    let sentinel_stream = id::<S>("text-kind-sentinel");
    let sentinel = write_sentinel(RULE, &store, &sentinel_stream).await;
    let stream = id::<S>("text-kind");
    let nul_kind = "conformance-text\0kind";
    expect_refused(
        RULE,
        &store,
        nul_kind,
        &stream,
        sentinel,
        TextField::AggregateKind,
        || vec![event(BESIDE, 1, S::Metadata::sample(1))],
    )
    .await;
    expect_only_sentinel(
        RULE,
        &store,
        &sentinel_stream,
        sentinel,
        &[],
        &[
            (nul_kind, stream.clone()),
            (STREAM_KIND, stream.clone()),
            ("conformance-textkind", stream),
        ],
    )
    .await;
}

/// A batch to a stream whose aggregate id holds NUL is refused naming the
/// aggregate id, and nothing is written (not to the stream named by the id
/// cut at the NUL either).
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_in_aggregate_id_refused<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_in_aggregate_id_refused");
    let sentinel_stream = id::<S>("text-id-sentinel");
    let sentinel = write_sentinel(RULE, &store, &sentinel_stream).await;
    for text in ["a\0b", "\0", "text-id\0"] {
        let stream = id::<S>(text);
        expect_refused(
            RULE,
            &store,
            STREAM_KIND,
            &stream,
            sentinel,
            TextField::AggregateId,
            || vec![event(BESIDE, 1, S::Metadata::sample(1))],
        )
        .await;
    }
    expect_only_sentinel(
        RULE,
        &store,
        &sentinel_stream,
        sentinel,
        &[],
        &[
            (STREAM_KIND, id::<S>("a\0b")),
            (STREAM_KIND, id::<S>("a")),
            (STREAM_KIND, id::<S>("ab")),
            (STREAM_KIND, id::<S>("")),
            (STREAM_KIND, id::<S>("text-id")),
        ],
    )
    .await;
}

/// A batch holding an event whose kind holds NUL (the second of two) is
/// refused naming that event's kind and index, and nothing of the batch is
/// written, the valid first event included, even to a stream where the
/// batch would otherwise commit.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_in_event_kind_refused<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_in_event_kind_refused");
    let sentinel_stream = id::<S>("text-event-kind");
    let sentinel = write_sentinel(RULE, &store, &sentinel_stream).await;
    let nul_kind = "conformance.text\0nul";
    expect_refused(
        RULE,
        &store,
        STREAM_KIND,
        &sentinel_stream,
        sentinel,
        TextField::EventKind { index: 1 },
        || {
            vec![
                event(BESIDE, 1, S::Metadata::sample(1)),
                event(nul_kind, 2, S::Metadata::sample(2)),
            ]
        },
    )
    .await;
    expect_only_sentinel(
        RULE,
        &store,
        &sentinel_stream,
        sentinel,
        &[nul_kind, "conformance.text", "conformance.textnul"],
        &[],
    )
    .await;
}

/// A batch holding an event whose metadata holds NUL (the second of two,
/// as [`ConformanceMetadata::with_text`] makes it) is refused naming that
/// event's metadata and index, and nothing of the batch is written. Does
/// not apply to metadata types that hold no text (`with_text` gives
/// `None`), and says so on stderr.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_in_metadata_refused<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_in_metadata_refused");
    let texts = ["\0", "actor\0", "a\\\0"];
    let Some(holding) = texts
        .iter()
        .map(|text| S::Metadata::with_text(text))
        .collect::<Option<Vec<_>>>()
    else {
        eprintln!(
            "conformance rule {}: not applicable, {} holds no text",
            RULE.0,
            std::any::type_name::<S::Metadata>()
        );
        return;
    };
    let sentinel_stream = id::<S>("text-metadata");
    let sentinel = write_sentinel(RULE, &store, &sentinel_stream).await;
    for metadata in holding {
        expect_refused(
            RULE,
            &store,
            STREAM_KIND,
            &sentinel_stream,
            sentinel,
            TextField::Metadata { index: 1 },
            || {
                vec![
                    event(BESIDE, 1, S::Metadata::sample(1)),
                    event(BESIDE, 2, metadata.clone()),
                ]
            },
        )
        .await;
    }
    expect_only_sentinel(RULE, &store, &sentinel_stream, sentinel, &[], &[]).await;
}

/// Reads that name a text holding NUL find nothing and do not fail:
/// `stream_version` of a stream whose kind or id holds NUL is `None`, and
/// `load_events` with such filters (every shape, with and without `after`)
/// returns nothing, even when the text cut at the NUL names events that
/// exist; beside valid filters, those still return their events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_lookups_find_nothing<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_lookups_find_nothing");
    let kind = "conformance.text.found";
    let stream = id::<S>("text-lookup");
    let events = batch(
        RULE,
        vec![
            event(kind, 1, S::Metadata::sample(1)),
            event(kind, 2, S::Metadata::sample(2)),
        ],
    );
    let outcome = RULE
        .bounded("append", store.append(STREAM_KIND, &stream, None, events))
        .await;
    let Ok(written) = outcome else {
        RULE.fail("two valid events to be written", describe::<S>(&outcome));
    };
    let positions: Vec<S::Position> = RULE
        .load(&store, &[EventFilter::for_stream(STREAM_KIND, stream.clone())])
        .await
        .iter()
        .map(|event| event.position)
        .collect();
    if positions.len() != 2 || positions.last() != Some(&written.last_position) {
        RULE.fail(
            format!(
                "the stream to load its two events, the last at {:?}",
                written.last_position
            ),
            format!("positions {positions:?}"),
        );
    }
    let first = positions[0];

    let nul_kind_stream = "conformance-text\0";
    let nul_id = id::<S>("text-lookup\0");
    expect_no_version(
        RULE,
        &store,
        &[
            (STREAM_KIND, nul_id.clone()),
            (nul_kind_stream, stream.clone()),
            (nul_kind_stream, nul_id.clone()),
        ],
    )
    .await;

    let nul_event_kind = "conformance.text.found\0";
    let lookups: Vec<EventFilter<S::Id, S::Position>> = vec![
        EventFilter::for_event(nul_event_kind),
        EventFilter::for_event(nul_event_kind).after(first),
        EventFilter::for_stream(STREAM_KIND, nul_id.clone()),
        EventFilter::for_stream(STREAM_KIND, nul_id.clone()).after(first),
        EventFilter::for_stream(nul_kind_stream, stream.clone()),
        EventFilter::for_aggregate(kind, STREAM_KIND, nul_id.clone()),
        EventFilter::for_aggregate(kind, nul_kind_stream, stream.clone()),
        EventFilter::for_aggregate(nul_event_kind, STREAM_KIND, stream.clone()),
        EventFilter::for_aggregate(nul_event_kind, STREAM_KIND, stream.clone()).after(first),
    ];
    for filter in &lookups {
        let found = RULE.load(&store, std::slice::from_ref(filter)).await;
        if !found.is_empty() {
            RULE.fail(
                format!("load_events of {filter:?} to find nothing"),
                format!(
                    "{} events at {:?}",
                    found.len(),
                    found.iter().map(|e| e.position).collect::<Vec<_>>()
                ),
            );
        }
    }
    let found = RULE.load(&store, &lookups).await;
    if !found.is_empty() {
        RULE.fail(
            "load_events of all the NUL filters at once to find nothing",
            format!("{} events", found.len()),
        );
    }

    // Beside valid filters, the NUL ones are no reason to fail or to drop
    // what the valid ones select.
    let mut mixed = lookups.clone();
    mixed.push(EventFilter::for_aggregate(kind, STREAM_KIND, stream.clone()).after(first));
    mixed.push(EventFilter::for_event(kind));
    let found: Vec<S::Position> = RULE
        .load(&store, &mixed)
        .await
        .iter()
        .map(|event| event.position)
        .collect();
    if found != positions {
        RULE.fail(
            format!("NUL filters beside valid ones to leave the valid ones' events, {positions:?}"),
            format!("{found:?}"),
        );
    }
}

/// Texts that only look like NUL are ordinary text, stored exactly: a
/// backslash followed by `0` or `u0000` (what JSON writes for NUL, escaped
/// once more), and U+0001, in the aggregate kind, the aggregate id, the event
/// kind and the metadata (where `with_text` gives one). A store that refuses
/// them, or reads them back changed, looks for NUL in the wrong place.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn nul_lookalikes_round_trip<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    const RULE: Check = Check("text.nul_lookalikes_round_trip");
    let lookalikes = [r"\u0000", r"\0", r"\\u0000", "\u{1}", r"a\u0000b\0"];
    for (n, text) in (1_u64..).zip(lookalikes) {
        let aggregate_kind = format!("conformance-text-{text}");
        let stream = id::<S>(&format!("lookalike-{text}"));
        let event_kind = format!("conformance.text.{text}");
        let metadata = S::Metadata::with_text(text).unwrap_or_else(|| S::Metadata::sample(n));
        let events = batch(RULE, vec![event(&event_kind, n, metadata.clone())]);
        let outcome = RULE
            .bounded(
                "append_expecting_new",
                store.append_expecting_new(&aggregate_kind, &stream, events),
            )
            .await;
        let Ok(written) = outcome else {
            RULE.fail(
                format!("a batch with the text {text:?} (no NUL) in every field to be written"),
                describe::<S>(&outcome),
            );
        };
        let at = RULE.version(&store, &aggregate_kind, &stream).await;
        if at != Some(written.last_position) {
            RULE.fail(
                format!(
                    "stream {aggregate_kind:?}/{stream:?} at version {:?}",
                    written.last_position
                ),
                format!("{at:?}"),
            );
        }
        let loaded = RULE
            .load(
                &store,
                &[EventFilter::for_aggregate(
                    event_kind.as_str(),
                    aggregate_kind.as_str(),
                    stream.clone(),
                )],
            )
            .await;
        let expected = format!(
            "one event {{ aggregate kind {aggregate_kind:?}, id {stream:?}, kind {event_kind:?}, metadata {metadata:?} }}"
        );
        match loaded.as_slice() {
            [event]
                if event.aggregate_kind == aggregate_kind
                    && event.aggregate_id == stream
                    && event.kind == event_kind
                    && event.metadata == metadata
                    && event.position == written.last_position => {}
            _ => RULE.fail(
                &expected,
                format!(
                    "{:?}",
                    loaded
                        .iter()
                        .map(|event| (
                            &event.aggregate_kind,
                            &event.aggregate_id,
                            &event.kind,
                            &event.metadata
                        ))
                        .collect::<Vec<_>>()
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each rule fails a store that breaks it, with its label.

    use std::convert::Infallible;

    use super::*;
    use crate::codec::JsonCodec;
    use crate::store::{AppendResult, StoredEvent, inmemory};

    type Inner = inmemory::Store<String, serde_json::Value>;

    /// What a wrong store does with NUL.
    #[derive(Debug, Clone, Copy)]
    enum Defect {
        /// Writes texts with the NUL taken out instead of refusing them.
        Strips,
        /// Refuses, but as an error of its own that names no field: writes
        /// nothing, reports a conflict.
        Untyped,
        /// Reads texts as C strings: cut at the first NUL.
        Truncates,
        /// Refuses any metadata whose JSON holds the characters `\u0000`,
        /// even when they are an escaped backslash and text.
        Naive,
    }

    #[derive(Debug, Clone)]
    struct Wrong(Inner, Defect);

    fn strip(text: &str) -> String {
        text.replace('\0', "")
    }

    fn cut(text: &str) -> String {
        text.split('\0').next().unwrap_or_default().to_owned()
    }

    fn strip_json(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(strip(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(strip_json).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (strip(&key), strip_json(value)))
                    .collect(),
            ),
            other => other,
        }
    }

    impl Wrong {
        fn filter(&self, filter: &EventFilter<String, u64>) -> EventFilter<String, u64> {
            let fix = |text: &str| match self.1 {
                Defect::Truncates => cut(text),
                _ => text.to_owned(),
            };
            let rebuilt = match (filter.event_kind(), filter.aggregate()) {
                (Some(kind), None) => EventFilter::for_event(fix(kind)),
                (Some(kind), Some((aggregate_kind, id))) => {
                    EventFilter::for_aggregate(fix(kind), fix(aggregate_kind), fix(id))
                }
                (None, Some((aggregate_kind, id))) => EventFilter::for_stream(fix(aggregate_kind), fix(id)),
                (None, None) => filter.clone(),
            };
            match filter.after_position() {
                Some(after) => rebuilt.after(after),
                None => rebuilt,
            }
        }

        async fn write(
            &self,
            kind: &str,
            id: &str,
            expecting_new: bool,
            events: NonEmpty<PersistableEvent<serde_json::Value>>,
        ) -> AppendOutcome<u64, Infallible> {
            let holds_nul = kind.contains('\0')
                || id.contains('\0')
                || events
                    .iter()
                    .any(|event| event.kind.contains('\0') || event.metadata.to_string().contains(r"\u0000"));
            match self.1 {
                Defect::Untyped | Defect::Naive if holds_nul => {
                    return Err(AppendError::Conflict(
                        crate::concurrency::ConcurrencyConflict::new(None, None),
                    ));
                }
                _ => {}
            }
            let stripped = events
                .into_vec()
                .into_iter()
                .map(|event| PersistableEvent {
                    kind: strip(&event.kind),
                    metadata: strip_json(event.metadata),
                    ..event
                })
                .collect();
            let Some(events) = NonEmpty::from_vec(stripped) else {
                unreachable!("stripping keeps every event");
            };
            let (kind, id) = (strip(kind), strip(id));
            // Ignores expected versions, so the refusal is all a rule sees.
            if expecting_new {
                self.0.append_expecting_new(&kind, &id, events).await
            } else {
                self.0.append(&kind, &id, None, events).await
            }
        }
    }

    impl EventStore for Wrong {
        type Id = String;
        type Position = u64;
        type Error = Infallible;
        type Codec = JsonCodec;
        type Metadata = serde_json::Value;

        fn codec(&self) -> &JsonCodec {
            self.0.codec()
        }

        async fn stream_version<'a>(
            &'a self,
            kind: &'a str,
            id: &'a String,
        ) -> Result<Option<u64>, Infallible> {
            match self.1 {
                Defect::Truncates => self.0.stream_version(&cut(kind), &cut(id)).await,
                _ => self.0.stream_version(kind, id).await,
            }
        }

        async fn append<'a>(
            &'a self,
            kind: &'a str,
            id: &'a String,
            _expected: Option<u64>,
            events: NonEmpty<PersistableEvent<serde_json::Value>>,
        ) -> AppendOutcome<u64, Infallible> {
            self.write(kind, id, false, events).await
        }

        async fn append_expecting_new<'a>(
            &'a self,
            kind: &'a str,
            id: &'a String,
            events: NonEmpty<PersistableEvent<serde_json::Value>>,
        ) -> AppendOutcome<u64, Infallible> {
            self.write(kind, id, true, events).await
        }

        async fn load_events<'a>(
            &'a self,
            filters: &'a [EventFilter<String, u64>],
        ) -> Result<Vec<StoredEvent<String, u64, serde_json::Value>>, Infallible> {
            let filters: Vec<_> = filters.iter().map(|filter| self.filter(filter)).collect();
            self.0.load_events(&filters).await
        }
    }

    fn wrong(defect: Defect) -> Wrong {
        Wrong(Inner::new(), defect)
    }

    #[tokio::test]
    async fn every_rule_passes_on_the_in_memory_store() {
        nul_in_aggregate_kind_refused(Inner::new()).await;
        nul_in_aggregate_id_refused(Inner::new()).await;
        nul_in_event_kind_refused(Inner::new()).await;
        nul_in_metadata_refused(Inner::new()).await;
        nul_lookups_find_nothing(Inner::new()).await;
        nul_lookalikes_round_trip(Inner::new()).await;
        // `()` holds no text: the metadata rule does not apply.
        nul_in_metadata_refused(inmemory::Store::<String, ()>::new()).await;
        nul_lookalikes_round_trip(inmemory::Store::<String, String>::new()).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_in_aggregate_kind_refused: expected append without an expected version: AppendError::Invalid(Nul { field: AggregateKind })"
    )]
    async fn a_store_that_strips_nul_from_aggregate_kinds_fails() {
        nul_in_aggregate_kind_refused(wrong(Defect::Strips)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_in_aggregate_id_refused: expected append without an expected version: AppendError::Invalid(Nul { field: AggregateId })"
    )]
    async fn a_store_that_strips_nul_from_ids_fails() {
        nul_in_aggregate_id_refused(wrong(Defect::Strips)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_in_event_kind_refused: expected append without an expected version: AppendError::Invalid(Nul { field: EventKind { index: 1 } })"
    )]
    async fn a_store_that_strips_nul_from_event_kinds_fails() {
        nul_in_event_kind_refused(wrong(Defect::Strips)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_in_metadata_refused: expected append without an expected version: AppendError::Invalid(Nul { field: Metadata { index: 1 } })"
    )]
    async fn a_store_that_strips_nul_from_metadata_fails() {
        nul_in_metadata_refused(wrong(Defect::Strips)).await;
    }

    #[tokio::test]
    #[should_panic(expected = "got a conflict")]
    async fn a_store_that_refuses_nul_without_naming_the_field_fails() {
        nul_in_event_kind_refused(wrong(Defect::Untyped)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_lookups_find_nothing: expected stream_version of \"conformance-text\"/\"text-lookup\\0\" to be None, got Some(2)"
    )]
    async fn a_store_that_reads_names_as_c_strings_fails() {
        nul_lookups_find_nothing(wrong(Defect::Truncates)).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "conformance rule text.nul_lookalikes_round_trip: expected a batch with the text \"\\\\u0000\""
    )]
    async fn a_store_that_looks_for_the_escape_naively_fails() {
        nul_lookalikes_round_trip(wrong(Defect::Naive)).await;
    }

    #[test]
    fn a_written_result_reads_as_written() {
        let written: AppendOutcome<u64, Infallible> = Ok(AppendResult::new(3));
        assert_eq!(describe::<Inner>(&written), "the batch written (last position 3)");
    }
}

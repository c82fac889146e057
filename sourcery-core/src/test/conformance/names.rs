//! `names`: aggregate kinds, ids and event kinds are data, stored and found
//! exactly — quotes, SQL and `LIKE` metacharacters, unicode, the empty
//! string, spaces and case, long names, names whose concatenations collide.

use super::support::{Check, id};
use super::{ConformanceMetadata, ConformanceStore};
use crate::store::{EventFilter, NonEmpty, PersistableEvent};

/// Writes one event to each stream (aggregate kind, id, event kind), then
/// checks that each is found exactly: by its stream, its kind in the
/// stream, its kind across streams, and the stream's version.
async fn stored_exactly<S: ConformanceStore>(rule: Check, store: &S, streams: &[(&str, &str, &str)]) {
    for (n, &(aggregate_kind, aggregate_id, kind)) in (1..).zip(streams) {
        let event = PersistableEvent::new(kind, aggregate_id.as_bytes().to_vec(), S::Metadata::sample(n));
        rule.ok(
            "append",
            store.append(aggregate_kind, &id::<S>(aggregate_id), None, NonEmpty::new(event)),
        )
        .await;
    }
    for &(aggregate_kind, aggregate_id, kind) in streams {
        let stream_id = id::<S>(aggregate_id);
        let by_stream = rule
            .load(
                store,
                &[EventFilter::for_stream(aggregate_kind, stream_id.clone())],
            )
            .await;
        let found: Vec<(&str, String, &str)> = by_stream
            .iter()
            .map(|event| {
                (
                    event.aggregate_kind.as_str(),
                    format!("{:?}", event.aggregate_id),
                    event.kind.as_str(),
                )
            })
            .collect();
        rule.same(
            format_args!("the one event of stream {aggregate_kind:?}/{aggregate_id:?}, exactly (aggregate kind, id, kind)"),
            vec![(aggregate_kind, format!("{stream_id:?}"), kind)],
            found,
        );
        rule.same(
            format_args!("the data of the event of stream {aggregate_kind:?}/{aggregate_id:?}"),
            Some(aggregate_id.as_bytes()),
            by_stream.first().map(|event| event.data.as_slice()),
        );
        let by_kind_in_stream = rule
            .load(
                store,
                &[EventFilter::for_aggregate(
                    kind,
                    aggregate_kind,
                    stream_id.clone(),
                )],
            )
            .await;
        rule.same(
            format_args!(
                "the number of events for_aggregate({kind:?}, {aggregate_kind:?}, {aggregate_id:?}) selects"
            ),
            1,
            by_kind_in_stream.len(),
        );
        let by_kind = rule.load(store, &[EventFilter::for_event(kind)]).await;
        let expected = streams.iter().filter(|(_, _, other)| *other == kind).count();
        rule.same(
            format_args!("the number of events for_event({kind:?}) selects"),
            expected,
            by_kind.len(),
        );
        rule.same(
            format_args!("the version of stream {aggregate_kind:?}/{aggregate_id:?}"),
            by_stream.first().map(|event| event.position),
            rule.version(store, aggregate_kind, &stream_id).await,
        );
    }
}

/// Quotes, backslashes and SQL are data.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn quotes_and_sql<S: ConformanceStore>(store: S) {
    let rule = Check("names.quotes_and_sql");
    stored_exactly(
        rule,
        &store,
        &[
            ("it's", "it's", "it's"),
            ("\"quoted\"", "\"quoted\"", "\"quoted\""),
            (
                "a;DROP TABLE events;--",
                "x' OR '1'='1",
                "k'); DELETE FROM events; --",
            ),
            ("back\\slash", "back\\slash", "back\\\\slash"),
            ("names", "$1", "?"),
        ],
    )
    .await;
}

/// `%` and `_` match only themselves: `100%` does not find `1000`,
/// `under_score` does not find `underXscore`.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn like_wildcards<S: ConformanceStore>(store: S) {
    let rule = Check("names.like_wildcards");
    stored_exactly(
        rule,
        &store,
        &[
            ("names", "100%", "100%"),
            ("names", "1000", "1000"),
            ("names", "under_score", "under_score"),
            ("names", "underXscore", "underXscore"),
            ("names", "%", "%"),
            ("names", "_", "_"),
        ],
    )
    .await;
}

/// Unicode beyond ASCII and the basic plane is stored exactly, and two names
/// that differ only there are two names.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn unicode<S: ConformanceStore>(store: S) {
    let rule = Check("names.unicode");
    stored_exactly(
        rule,
        &store,
        &[
            ("клиент", "клиент-🦀", "событие.🦀"),
            ("клиент", "клиент-🐙", "событие.🐙"),
            ("naïve", "e\u{301}", "é"),
        ],
    )
    .await;
}

/// The empty string is a name like any other: it matches only itself.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn empty_string<S: ConformanceStore>(store: S) {
    let rule = Check("names.empty_string");
    stored_exactly(
        rule,
        &store,
        &[
            ("", "", ""),
            ("names", "", "names.empty"),
            ("", "x", "names.x"),
            ("names", "y", "names.y"),
        ],
    )
    .await;
}

/// Spaces and case are part of a name: `" a "`, `"a"` and `"A"` are three
/// streams.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn whitespace_and_case<S: ConformanceStore>(store: S) {
    let rule = Check("names.whitespace_and_case");
    stored_exactly(
        rule,
        &store,
        &[
            ("names", " a ", "names.spaced"),
            ("names", "a", "names.plain"),
            ("names", "A", "names.upper"),
            ("Names", "a", "Names.Plain"),
            ("names", "a\t", "names.tab"),
        ],
    )
    .await;
}

/// Streams whose aggregate kind and id concatenate to the same text are
/// different streams.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn concatenation_collisions<S: ConformanceStore>(store: S) {
    let rule = Check("names.concatenation_collisions");
    stored_exactly(
        rule,
        &store,
        &[
            ("ab", "c", "names.ab-c"),
            ("a", "bc", "names.a-bc"),
            ("a/b", "c", "names.slash-1"),
            ("a", "b/c", "names.slash-2"),
            ("a:b", "c", "names.colon-1"),
            ("a", "b:c", "names.colon-2"),
        ],
    )
    .await;
}

/// Names of a thousand characters are stored whole: two that differ only in
/// the last character are two names.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn long_names<S: ConformanceStore>(store: S) {
    let rule = Check("names.long_names");
    let long = "ñ".repeat(999);
    let first = format!("{long}1");
    let second = format!("{long}2");
    stored_exactly(
        rule,
        &store,
        &[(&first, &first, &first), (&second, &second, &second)],
    )
    .await;
}

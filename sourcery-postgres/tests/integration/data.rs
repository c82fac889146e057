//! Ids, kinds and metadata are data: any id type with `Display` + `FromStr`,
//! any serde metadata, awkward text; NUL characters, which `text` and `jsonb`
//! cannot hold, are refused before the server sees them, naming the field;
//! data that does not decode is a typed error naming where it sits; loads
//! agree with the in-memory store on any set of filters.

use crate::support;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sourcery_core::store::{
    AppendError, EventFilter, EventId, EventStore, InvalidBatch, NonEmpty, PersistableEvent, TextField,
    inmemory,
};
use sourcery_postgres::{Error, Store};

fn one<M>(kind: &str, data: &[u8], metadata: M) -> NonEmpty<PersistableEvent<M>> {
    NonEmpty::new(PersistableEvent {
        id: EventId::new(),
        kind: kind.to_owned(),
        schema_version: 1,
        data: data.to_vec(),
        metadata,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccountNumber(u32);

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACC-{:06}", self.0)
    }
}

impl FromStr for AccountNumber {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.strip_prefix("ACC-")
            .and_then(|digits| digits.parse().ok())
            .map(Self)
            .ok_or_else(|| format!("{text:?} is not an account number"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Audit {
    actor: String,
    reason: Option<String>,
}

#[tokio::test]
async fn uuid_and_newtype_ids_and_struct_metadata_round_trip() {
    let Some(store) = support::store::<uuid::Uuid, Audit>().await else {
        return;
    };
    let id = uuid::Uuid::now_v7();
    let audit = Audit {
        actor: "ünïcode \"quoted\" 🦀".into(),
        reason: None,
    };
    store
        .append_expecting_new("account", &id, one("opened", b"{}", audit.clone()))
        .await
        .unwrap();
    let events = store
        .load_events(&[EventFilter::for_aggregate("opened", "account", id)])
        .await
        .unwrap();
    assert_eq!(events[0].aggregate_id, id);
    assert_eq!(events[0].metadata, audit);

    let numbers: Store<AccountNumber, Audit> =
        Store::with_schema(store.pool().clone(), store.schema()).unwrap();
    let number = AccountNumber(42);
    numbers
        .append_expecting_new("ledger", &number, one("opened", b"", audit.clone()))
        .await
        .unwrap();
    let error = numbers
        .load_events(&[EventFilter::for_event("opened").after(0)])
        .await
        .unwrap_err();
    // The uuid event's id is not an account number: a typed error naming it.
    match error {
        Error::AggregateId {
            aggregate_kind,
            position,
            source,
        } => {
            assert_eq!(aggregate_kind, "account");
            assert_eq!(position, 1);
            assert_eq!(source.text, id.to_string());
        }
        other => panic!("expected an id error, got {other:?}"),
    }
    let mine = numbers
        .load_events(&[EventFilter::for_aggregate("opened", "ledger", number.clone())])
        .await
        .unwrap();
    assert_eq!(mine[0].aggregate_id, number);
}

#[tokio::test]
async fn metadata_that_does_not_decode_or_encode_is_a_typed_error() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    store
        .append(
            "account",
            &"it's;--".to_owned(),
            None,
            one("opened", b"x", serde_json::json!([1, 2])),
        )
        .await
        .unwrap();
    let audits: Store<String, Audit> = Store::with_schema(store.pool().clone(), store.schema()).unwrap();
    let error = audits
        .load_events(&[EventFilter::for_event("opened")])
        .await
        .unwrap_err();
    match &error {
        Error::Metadata {
            aggregate_kind,
            aggregate_id,
            position,
            ..
        } => {
            assert_eq!(
                (aggregate_kind.as_str(), aggregate_id.as_str(), *position),
                ("account", "it's;--", 1)
            );
        }
        other => panic!("expected a metadata error, got {other:?}"),
    }
    assert!(std::error::Error::source(&error).is_some());

    // JSON maps need string keys: this metadata cannot be written.
    let odd: Store<String, BTreeMap<(u8, u8), u8>> =
        Store::with_schema(store.pool().clone(), store.schema()).unwrap();
    let refused = odd
        .append(
            "account",
            &"x".to_owned(),
            None,
            one("opened", b"", BTreeMap::from([((1, 2), 3)])),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            AppendError::Store(Error::EncodeMetadata { index: 0, .. })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_negative_after_is_a_typed_error() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let error = store
        .load_events(&[EventFilter::for_event("x").after(-1)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAfter { position: -1 }));
}

#[tokio::test]
async fn awkward_ids_and_kinds_are_stored_and_found_exactly() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let names = [
        "",
        "'",
        "''; DROP TABLE sourcery_events; --",
        "$1",
        "%_\\",
        "E'\\x00'",
        "\u{1F980}\u{200D}\u{1F525}",
        "\t\n\r",
        "\u{7f}\u{80}\u{FFFF}",
        "{\"a\":1}",
        "ARRAY['x']",
    ];
    for name in names {
        let bytes: Vec<u8> = name.bytes().rev().chain([0, 255, 0]).collect();
        store
            .append_expecting_new(
                name,
                &name.to_owned(),
                one(name, &bytes, serde_json::json!({ "name": name })),
            )
            .await
            .unwrap_or_else(|error| panic!("{name:?}: {error}"));
    }
    for name in names {
        let events = store
            .load_events(&[EventFilter::for_aggregate(name, name, name.to_owned())])
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{name:?}");
        let bytes: Vec<u8> = name.bytes().rev().chain([0, 255, 0]).collect();
        assert_eq!(events[0].data, bytes);
        assert_eq!(events[0].metadata["name"], name);
        let by_kind = store.load_events(&[EventFilter::for_event(name)]).await.unwrap();
        assert_eq!(by_kind.len(), 1, "{name:?}");
    }
}

/// A NUL character in the aggregate kind, the id, an event kind or the
/// metadata (in a string or a key) is refused before the statement is sent,
/// with the typed error of every store naming the field, where the server
/// used to fail the statement ("the database failed"); in a batch of either
/// statement shape (`VALUES` up to 16 events, arrays above). Reads naming
/// NUL find nothing and do not fail.
#[tokio::test]
async fn nul_in_a_name_or_metadata_is_refused_naming_the_field() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let valid = || PersistableEvent::new("opened", b"\0".to_vec(), serde_json::json!({ "ok": true }));
    let written = store
        .append_expecting_new("account", &"a".to_owned(), NonEmpty::new(valid()))
        .await
        .expect("a valid event (NUL bytes in its data) is written");
    for size in [2_usize, 20] {
        let batch = |kind: &str, metadata: serde_json::Value| {
            let mut events: Vec<_> = (1..size).map(|_| valid()).collect();
            events.push(PersistableEvent::new(kind, b"{}".to_vec(), metadata));
            NonEmpty::from_vec(events).expect("events")
        };
        let last = size - 1;
        let ok = serde_json::json!({ "ok": true });
        let cases = [
            (
                "account\0",
                "a",
                batch("opened", ok.clone()),
                TextField::AggregateKind,
            ),
            (
                "account",
                "a\0b",
                batch("opened", ok.clone()),
                TextField::AggregateId,
            ),
            (
                "account",
                "a",
                batch("op\0ened", ok.clone()),
                TextField::EventKind { index: last },
            ),
            (
                "account",
                "a",
                batch("opened", serde_json::json!({ "actor": "a\0" })),
                TextField::Metadata { index: last },
            ),
            (
                "account",
                "a",
                batch("opened", serde_json::json!({ "a\0": 1 })),
                TextField::Metadata { index: last },
            ),
        ];
        for (kind, id, events, field) in cases {
            let refused = store
                .append(kind, &id.to_owned(), Some(written.last_position), events)
                .await
                .expect_err("a batch holding NUL is refused");
            assert!(
                matches!(refused, AppendError::Invalid(InvalidBatch::Nul { field: f }) if f == field),
                "{size} events, {kind:?}/{id:?}: {refused:?}"
            );
            let message = refused.to_string();
            assert!(
                message.starts_with(&field.to_string()),
                "the message names the field: {message}"
            );
            assert!(
                refused.as_store().is_none() && !message.contains("the database failed"),
                "not a failure of the database: {refused:?}"
            );
        }
    }
    for (kind, id) in [("account", "a\0b"), ("account\0", "a"), ("account", "a\0")] {
        let version = store
            .stream_version(kind, &id.to_owned())
            .await
            .unwrap_or_else(|error| panic!("stream_version of {kind:?}/{id:?} must not fail: {error:?}"));
        assert_eq!(version, None, "{kind:?}/{id:?}");
    }
    let nul_filters = [
        EventFilter::for_stream("account", "a\0b".to_owned()),
        EventFilter::for_stream("account\0", "a".to_owned()).after(0),
        EventFilter::for_event("op\0ened"),
        EventFilter::for_aggregate("opened", "account", "a\0".to_owned()),
    ];
    let found = store
        .load_events(&nul_filters)
        .await
        .expect("loads naming NUL do not fail");
    assert!(found.is_empty(), "they find nothing: {found:?}");
    let mut mixed = nul_filters.to_vec();
    mixed.push(EventFilter::for_event("opened"));
    let all = store
        .load_events(&mixed)
        .await
        .expect("a load naming NUL beside a valid filter");
    assert_eq!(all.len(), 1, "the log holds the one valid event: {all:?}");
    assert_eq!(all[0].position, written.last_position);
    assert_eq!(all[0].data, b"\0", "NUL bytes in event data are kept");
}

/// A backslash followed by `0` or `u0000` is text, which `text` and `jsonb`
/// keep: only the character itself is refused.
#[tokio::test]
async fn texts_that_only_look_like_nul_are_stored_exactly() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let lookalike = serde_json::json!({ r"\u0000": r"\u0000", "b": r"\\u0000" });
    store
        .append(
            r"account\0",
            &r"a\u0000".to_owned(),
            None,
            one(r"opened\0", b"{}", lookalike.clone()),
        )
        .await
        .expect("texts that only look like NUL are written");
    let events = store
        .load_events(&[EventFilter::for_stream(r"account\0", r"a\u0000".to_owned())])
        .await
        .expect("the stream loads");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, r"opened\0");
    assert_eq!(events[0].metadata, lookalike);
}

/// Random sets of filters (merged kinds, several kinds per stream, whole
/// streams, `after` on some, duplicates, covered stream filters) load
/// exactly what the in-memory store loads for the same log.
#[tokio::test]
async fn loads_agree_with_the_in_memory_store_on_random_filters() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let model = inmemory::Store::<String, ()>::new();
    let kinds = ["a", "b", "c", "d"];
    let streams = ["s1", "s2", "s3"];
    let mut state: u64 = 0x0DDB_1A5E_5BAD_5EED;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % u64::try_from(bound).unwrap()).unwrap()
    };
    for n in 0..120 {
        let stream = streams[next(streams.len())].to_owned();
        let size = 1 + next(3);
        let events: Vec<PersistableEvent<()>> = (0..size)
            .map(|part| PersistableEvent {
                id: EventId::new(),
                kind: kinds[next(kinds.len())].to_owned(),
                schema_version: 1,
                data: format!("{n}.{part}").into_bytes(),
                metadata: (),
            })
            .collect();
        let ours = store
            .append("agg", &stream, None, NonEmpty::from_vec(events.clone()).unwrap())
            .await
            .unwrap();
        let theirs = model
            .append("agg", &stream, None, NonEmpty::from_vec(events).unwrap())
            .await
            .unwrap();
        assert_eq!(u64::try_from(ours.last_position).unwrap(), theirs.last_position);
    }
    for round in 0..300 {
        let count = 1 + next(5);
        let mut filters: Vec<EventFilter<String, i64>> = Vec::new();
        for _ in 0..count {
            let kind = kinds[next(kinds.len())];
            let stream = streams[next(streams.len())].to_owned();
            let mut filter = match next(3) {
                0 => EventFilter::for_event(kind),
                1 => EventFilter::for_aggregate(kind, "agg", stream),
                _ => EventFilter::for_stream("agg", stream),
            };
            if next(3) == 0 {
                filter = filter.after(i64::try_from(next(250)).unwrap());
            }
            filters.push(filter);
        }
        let model_filters: Vec<EventFilter<String, u64>> = filters
            .iter()
            .map(|filter| {
                let mut converted = match (filter.aggregate(), filter.event_kind()) {
                    (None, Some(event_kind)) => EventFilter::for_event(event_kind),
                    (Some((kind, id)), Some(event_kind)) => {
                        EventFilter::for_aggregate(event_kind, kind, id.clone())
                    }
                    (Some((kind, id)), None) => EventFilter::for_stream(kind, id.clone()),
                    (None, None) => unreachable!("a filter without a stream has a kind"),
                };
                if let Some(after) = filter.after_position() {
                    converted = converted.after(u64::try_from(after).unwrap());
                }
                converted
            })
            .collect();
        let ours: Vec<(i64, Vec<u8>)> = store
            .load_events(&filters)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.position, e.data))
            .collect();
        let theirs: Vec<(i64, Vec<u8>)> = model
            .load_events(&model_filters)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (i64::try_from(e.position).unwrap(), e.data))
            .collect();
        assert_eq!(ours, theirs, "round {round}: filters {filters:?}");
    }
}

/// Small batches go through the `VALUES` statement, larger ones through the
/// arrays one (the switch is at 16 events): each size writes every event
/// once, in order, at contiguous positions ending at the one returned, with
/// its kind, schema version, data and metadata intact; a stale version is
/// refused either way.
#[tokio::test]
async fn batches_on_both_sides_of_the_values_limit_round_trip() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    for size in [1_usize, 2, 15, 16, 17, 40] {
        let stream = format!("batch-of-{size}");
        let events: Vec<PersistableEvent<serde_json::Value>> = (0..size)
            .map(|n| PersistableEvent {
                id: EventId::new(),
                kind: format!("kind-{}", n % 3),
                schema_version: u32::try_from(n % 4).unwrap() * 1000 + 1,
                data: vec![u8::try_from(n).unwrap(), 0xff, 0, b'\''],
                metadata: serde_json::json!({ "n": n, "text": "é; '--", "nested": [null, { "size": size }] }),
            })
            .collect();
        let written = store
            .append_expecting_new("batch", &stream, NonEmpty::from_vec(events.clone()).unwrap())
            .await
            .unwrap();
        let filters: Vec<EventFilter<String, i64>> = (0..3)
            .map(|kind| EventFilter::for_aggregate(format!("kind-{kind}"), "batch", stream.clone()))
            .collect();
        let stored = store.load_events(&filters).await.unwrap();
        assert_eq!(stored.len(), size, "batch of {size}");
        let first = written.last_position - i64::try_from(size).unwrap() + 1;
        for (index, (event, original)) in stored.iter().zip(&events).enumerate() {
            assert_eq!(
                event.position,
                first + i64::try_from(index).unwrap(),
                "batch of {size}"
            );
            assert_eq!(event.kind, original.kind);
            assert_eq!(
                event.schema_version, original.schema_version,
                "batch of {size}: the schema version of event {index}"
            );
            assert_eq!(event.data, original.data);
            assert_eq!(event.metadata, original.metadata);
            assert_eq!(event.id, original.id, "batch of {size}: the id of event {index}");
        }
        // The same batch again (its ids) is a replay, whatever the version.
        let replayed = store
            .append(
                "batch",
                &stream,
                Some(written.last_position - 1),
                NonEmpty::from_vec(events.clone()).unwrap(),
            )
            .await
            .unwrap();
        assert!(replayed.replayed, "batch of {size}: {replayed:?}");
        assert_eq!(replayed.last_position, written.last_position, "batch of {size}");
        let fresh: Vec<PersistableEvent<serde_json::Value>> = events
            .into_iter()
            .map(|event| event.with_id(EventId::new()))
            .collect();
        let stale = store
            .append(
                "batch",
                &stream,
                Some(written.last_position - 1),
                NonEmpty::from_vec(fresh).unwrap(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&stale, AppendError::Conflict(conflict) if conflict.actual == Some(written.last_position)),
            "batch of {size}: {stale:?}"
        );
    }
}

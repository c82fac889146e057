//! What the SQLite store keeps beyond the conformance suite's checks: ids
//! and kinds SQLite could mangle (case, long text), ids of other types kept
//! as text, NUL characters refused as every store refuses them (SQLite could
//! keep them, PostgreSQL cannot), and stored values that no longer decode,
//! which fail with errors naming the stream and position.

use std::fmt;
use std::str::FromStr;

use sourcery_core::store::{
    AppendError, EventFilter, EventStore, InvalidBatch, NonEmpty, PersistableEvent, TextField,
};
use sourcery_sqlite::{Error, Store};

fn event<M>(kind: &str, data: &[u8], metadata: M) -> NonEmpty<PersistableEvent<M>> {
    NonEmpty::new(PersistableEvent::new(kind, data.to_vec(), metadata))
}

#[tokio::test]
async fn case_and_long_names_are_kept_exactly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::<String, String>::open(dir.path().join("names.db"))
        .await
        .expect("the store opens");
    let long = "é".repeat(50_000);
    let names = [
        r"a\0b",
        "a",
        "A",
        r"a\u0000",
        "ß",
        "SS",
        long.as_str(),
        "\u{1F980}\u{200D}",
    ];
    for name in names {
        store
            .append_expecting_new(
                name,
                &name.to_owned(),
                event(name, name.as_bytes(), name.to_owned()),
            )
            .await
            .unwrap_or_else(|error| panic!("appending to {name:?}: {error}"));
    }
    for name in names {
        let events = store
            .load_events(&[EventFilter::for_aggregate(name, name, name.to_owned())])
            .await
            .expect("the stream loads");
        assert_eq!(events.len(), 1, "stream {name:?} holds its one event");
        assert_eq!(events[0].aggregate_kind, name);
        assert_eq!(events[0].aggregate_id, name);
        assert_eq!(events[0].kind, name);
        assert_eq!(events[0].data, name.as_bytes());
        assert_eq!(events[0].metadata, name);
        let by_kind = store
            .load_events(&[EventFilter::for_event(name)])
            .await
            .expect("the kind loads");
        assert_eq!(by_kind.len(), 1, "kind {name:?} matches itself only");
    }
}

/// A NUL character in the aggregate kind, the id, an event kind or the
/// metadata is refused before anything reaches the file, with the typed
/// error of every store naming the field (SQLite itself would keep it, as it
/// did before); reads naming NUL find nothing and do not fail.
#[tokio::test]
async fn nul_in_a_name_or_metadata_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::<String, String>::open(dir.path().join("nul.db"))
        .await
        .expect("the store opens");
    store
        .append_expecting_new(
            "account",
            &"a".to_owned(),
            event("opened", b"\0", "ok".to_owned()),
        )
        .await
        .expect("a valid event (NUL bytes in its data) is written");
    let cases = [
        ("account\0", "a\0b", "opened", "ok", TextField::AggregateKind),
        ("account", "a\0b", "opened", "ok", TextField::AggregateId),
        (
            "account",
            "a",
            "op\0ened",
            "ok",
            TextField::EventKind { index: 1 },
        ),
        ("account", "a", "opened", "o\0k", TextField::Metadata { index: 1 }),
    ];
    for (kind, id, event_kind, metadata, field) in cases {
        let events = vec![
            PersistableEvent::new("opened", b"{}".to_vec(), "ok".to_owned()),
            PersistableEvent::new(event_kind, b"{}".to_vec(), metadata.to_owned()),
        ];
        let events = NonEmpty::from_vec(events).expect("two events");
        let refused = store
            .append(kind, &id.to_owned(), None, events)
            .await
            .expect_err("a batch holding NUL is refused");
        assert!(
            matches!(refused, AppendError::Invalid(InvalidBatch::Nul { field: f }) if f == field),
            "{kind:?}/{id:?}: {refused:?}"
        );
        // "the kind of event 1 of the batch holds a NUL character ..."
        let message = refused.to_string();
        assert!(message.starts_with(&field.to_string()), "{message}");
        assert!(refused.as_store().is_none(), "not SQLite failing: {refused:?}");
    }
    for (kind, id, version) in [
        ("account", "a", Some(1)),
        ("account", "a\0b", None),
        ("account\0", "a", None),
    ] {
        let found = store.stream_version(kind, &id.to_owned()).await.expect("reads");
        assert_eq!(
            found, version,
            "{kind:?}/{id:?}: nothing of the refused batches was written"
        );
    }
    let found = store
        .load_events(&[
            EventFilter::for_stream("account", "a\0b".to_owned()),
            EventFilter::for_stream("account\0", "a".to_owned()),
            EventFilter::for_event("op\0ened"),
            EventFilter::for_aggregate("opened", "account", "a\0".to_owned()),
        ])
        .await
        .expect("loads naming NUL do not fail");
    assert!(found.is_empty(), "they find nothing: {found:?}");
    let all = store
        .load_events(&[EventFilter::for_event("opened")])
        .await
        .expect("the log loads");
    assert_eq!(all.len(), 1, "the log holds the one valid event: {all:?}");
    assert_eq!(all[0].data, b"\0", "NUL bytes in event data are kept");
}

/// An id newtype with its own text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OrderId(u32);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order-{}", self.0)
    }
}

impl FromStr for OrderId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim_start_matches("order-").parse().map(OrderId)
    }
}

#[tokio::test]
async fn ids_of_other_types_are_kept_as_text() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("ids.db");
    let orders = Store::<OrderId, ()>::open(&path).await.expect("the store opens");
    orders
        .append("order", &OrderId(7), None, event("order.placed", b"{}", ()))
        .await
        .expect("the append");
    let events = orders
        .load_events(&[EventFilter::for_aggregate("order.placed", "order", OrderId(7))])
        .await
        .expect("the stream loads");
    assert_eq!(events[0].aggregate_id, OrderId(7));

    let numbers = Store::<i64, ()>::open(&path).await.expect("the store opens");
    numbers
        .append("counter", &-42, None, event("counter.moved", b"{}", ()))
        .await
        .expect("the append");
    let as_text = Store::<String, ()>::open(&path).await.expect("the store opens");
    let stored: Vec<String> = as_text
        .load_events(&[
            EventFilter::for_event("order.placed"),
            EventFilter::for_event("counter.moved"),
        ])
        .await
        .expect("the log loads")
        .into_iter()
        .map(|event| event.aggregate_id)
        .collect();
    assert_eq!(stored, ["order-7", "-42"], "ids are stored as their text");
}

#[tokio::test]
async fn an_id_that_does_not_parse_names_the_stream_and_position() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bad-id.db");
    let text = Store::<String, ()>::open(&path).await.expect("the store opens");
    let written = text
        .append(
            "counter",
            &"not a number".to_owned(),
            None,
            event("counter.moved", b"{}", ()),
        )
        .await
        .expect("the append");

    let numbers = Store::<i64, ()>::open(&path).await.expect("the store opens");
    let error = numbers
        .load_events(&[EventFilter::for_event("counter.moved")])
        .await
        .expect_err("the id does not parse");
    match &error {
        Error::DecodeAggregateId {
            event_kind,
            aggregate_kind,
            position,
            source,
        } => {
            assert_eq!(event_kind, "counter.moved");
            assert_eq!(aggregate_kind, "counter");
            assert_eq!(*position, written.last_position);
            assert_eq!(source.text, "not a number");
        }
        other => panic!("expected DecodeAggregateId, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("`counter`") && message.contains(&written.last_position.to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn metadata_that_does_not_decode_names_the_stream_and_position() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bad-metadata.db");
    let json = Store::<String, serde_json::Value>::open(&path)
        .await
        .expect("the store opens");
    let written = json
        .append(
            "account",
            &"ACC-1".to_owned(),
            None,
            event("account.opened", b"{}", serde_json::json!({ "actor": "ana" })),
        )
        .await
        .expect("the append");

    let typed = Store::<String, u32>::open(&path).await.expect("the store opens");
    let error = typed
        .load_events(&[EventFilter::for_event("account.opened")])
        .await
        .expect_err("the metadata does not decode");
    match &error {
        Error::DecodeMetadata {
            event_kind,
            aggregate_kind,
            aggregate_id,
            position,
            ..
        } => {
            assert_eq!(event_kind, "account.opened");
            assert_eq!(aggregate_kind, "account");
            assert_eq!(aggregate_id, "ACC-1");
            assert_eq!(*position, written.last_position);
        }
        other => panic!("expected DecodeMetadata, got {other:?}"),
    }
    assert!(
        std::error::Error::source(&error).is_some(),
        "serde's error is the source"
    );
}

/// Metadata that cannot be encoded as JSON (a map with non-string keys).
#[tokio::test]
async fn metadata_that_does_not_encode_writes_nothing() {
    use std::collections::BTreeMap;

    let store = Store::<String, BTreeMap<(u8, u8), u8>>::open_in_memory()
        .await
        .expect("the store opens");
    let metadata = BTreeMap::from([((1, 2), 3)]);
    let outcome = store
        .append(
            "account",
            &"ACC-1".to_owned(),
            None,
            event("account.opened", b"{}", metadata),
        )
        .await;
    assert!(
        matches!(outcome, Err(AppendError::Store(Error::EncodeMetadata { ref event_kind, .. })) if event_kind == "account.opened"),
        "got {outcome:?}"
    );
    assert_eq!(
        store
            .stream_version("account", &"ACC-1".to_owned())
            .await
            .expect("the version reads"),
        None
    );
}

/// Schema versions are kept exactly up to `u32::MAX`; 0 is not a version
/// and writes nothing of its batch.
#[tokio::test]
async fn schema_versions_round_trip_and_0_writes_nothing() {
    let store = Store::<String, ()>::open_in_memory()
        .await
        .expect("the store opens");
    let id = "ACC-1".to_owned();
    let versions = [1, 2, u32::MAX];
    let batch: Vec<PersistableEvent<()>> = versions
        .iter()
        .map(|&version| {
            PersistableEvent::new("account.noted", b"{}".to_vec(), ()).with_schema_version(version)
        })
        .collect();
    store
        .append(
            "account",
            &id,
            None,
            NonEmpty::from_vec(batch).expect("three events"),
        )
        .await
        .expect("the append");
    let events = store
        .load_events(&[EventFilter::for_stream("account", id.clone())])
        .await
        .expect("the events load");
    let loaded: Vec<u32> = events.iter().map(|event| event.schema_version).collect();
    assert_eq!(loaded, versions, "schema versions round-trip exactly");

    let zero = vec![
        PersistableEvent::new("account.noted", b"{}".to_vec(), ()),
        PersistableEvent::new("account.noted", b"{}".to_vec(), ()).with_schema_version(0),
    ];
    let outcome = store
        .append(
            "account",
            &id,
            None,
            NonEmpty::from_vec(zero).expect("two events"),
        )
        .await;
    assert!(
        matches!(
            outcome,
            Err(AppendError::Invalid(InvalidBatch::SchemaVersionZero { index: 1 }))
        ),
        "got {outcome:?}"
    );
    assert_eq!(
        store
            .stream_version("account", &id)
            .await
            .expect("the version reads"),
        events.last().map(|event| event.position),
        "nothing of the refused batch was written"
    );
}

/// Loads the stream of one `account.opened` event after `sql` changed its
/// row past the columns' checks: the load's error and the event's position.
async fn load_after_tampering(sql: &str) -> (Error, i64) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tampered.db");
    let store = Store::<String, ()>::open(&path).await.expect("the store opens");
    let written = store
        .append(
            "account",
            &"ACC-1".to_owned(),
            None,
            event("account.opened", b"{}", ()),
        )
        .await
        .expect("the append");
    {
        let connection = rusqlite::Connection::open(&path).expect("the database opens");
        connection
            .execute_batch(&format!("PRAGMA ignore_check_constraints = ON; {sql}"))
            .expect("the row is changed by hand");
    }
    let error = store
        .load_events(&[EventFilter::for_stream("account", "ACC-1".to_owned())])
        .await
        .expect_err("the tampered column does not convert");
    (error, written.last_position)
}

/// A stored schema version that is not a `u32` (written past the column's
/// check) fails the load with the stream and position.
#[tokio::test]
async fn a_stored_schema_version_that_is_not_a_version_names_the_stream_and_position() {
    let (error, written) = load_after_tampering("UPDATE sourcery_events SET schema_version = -1;").await;
    match &error {
        Error::DecodeSchemaVersion {
            event_kind,
            aggregate_kind,
            aggregate_id,
            position,
            found,
            ..
        } => {
            assert_eq!(event_kind, "account.opened");
            assert_eq!(aggregate_kind, "account");
            assert_eq!(aggregate_id, "ACC-1");
            assert_eq!(*position, written);
            assert_eq!(*found, -1);
        }
        other => panic!("expected DecodeSchemaVersion, got {other:?}"),
    }
}

/// A stored event id that is not 16 bytes (written past the column's
/// check) fails the load with the stream and position.
#[tokio::test]
async fn a_stored_event_id_that_is_not_16_bytes_names_the_stream_and_position() {
    let (error, written) = load_after_tampering("UPDATE sourcery_events SET event_id = x'0102';").await;
    match &error {
        Error::DecodeEventId {
            event_kind,
            aggregate_kind,
            aggregate_id,
            position,
            length,
        } => {
            assert_eq!(event_kind, "account.opened");
            assert_eq!(aggregate_kind, "account");
            assert_eq!(aggregate_id, "ACC-1");
            assert_eq!(*position, written);
            assert_eq!(*length, 2);
        }
        other => panic!("expected DecodeEventId, got {other:?}"),
    }
}

/// A long load reaches the caller in several parts (the reader thread sends
/// its rows a few hundred kilobytes at a time): every event arrives once, in
/// order, and a value that fails to decode in a later part still fails the
/// load with its position.
#[tokio::test]
async fn a_load_read_in_several_parts_arrives_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("long.db");
    let store = Store::<String, serde_json::Value>::open(&path)
        .await
        .expect("the store opens");
    let data = vec![b'x'; 1_000];
    let mut written = Vec::new();
    for n in 0..1_500_u32 {
        for stream in ["long", "other"] {
            let result = store
                .append(
                    "account",
                    &stream.to_owned(),
                    None,
                    event("account.noted", &data, serde_json::json!(n)),
                )
                .await
                .expect("the append");
            if stream == "long" {
                written.push(result.last_position);
            }
        }
    }
    let filter = [EventFilter::for_aggregate(
        "account.noted",
        "account",
        "long".to_owned(),
    )];
    let events = store.load_events(&filter).await.expect("the stream loads");
    let positions: Vec<i64> = events.iter().map(|event| event.position).collect();
    assert_eq!(positions, written, "every event once, in order");
    for (n, event) in (0_u32..).zip(&events) {
        assert_eq!(event.metadata, serde_json::json!(n));
        assert_eq!(event.data, data);
        assert_eq!(event.aggregate_id, "long");
    }

    // The last event's metadata no longer decodes as `u32`.
    let last = store
        .append(
            "account",
            &"long".to_owned(),
            None,
            event("account.noted", &data, serde_json::json!("not a number")),
        )
        .await
        .expect("the append");
    let typed = Store::<String, u32>::open(&path).await.expect("the store opens");
    match typed.load_events(&filter).await {
        Err(Error::DecodeMetadata { position, .. }) => assert_eq!(position, last.last_position),
        other => panic!("expected DecodeMetadata, got {other:?}"),
    }
}

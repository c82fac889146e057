//! The store beyond the conformance suite: what reopening keeps, files
//! written before the store kept event ids, metadata of another type, and
//! batches it refuses.

use serde::Deserialize;
use serde_json::{Value, json};
use sourcery::event::DecodeFailure;
use sourcery::store::{
    AppendError, EventFilter, EventId, EventStore, IdReuse, InvalidBatch, NonEmpty, PersistableEvent,
};
use sourcery_example_jsonl::{Error, Store};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

#[tokio::test]
async fn reopening_reads_back_every_field() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let store = Store::open(&path).await?;
    let mut batch = NonEmpty::new(PersistableEvent::new(
        "k.one",
        b"\0\x01\xfe\xff".to_vec(),
        json!({ "a": [1, "é"] }),
    ));
    batch.push(PersistableEvent::new("k.two", Vec::new(), json!(null)).with_schema_version(3));
    store
        .append_expecting_new("kind \"quoted\"", &"id\nwith a newline".to_owned(), batch)
        .await?;
    store
        .append(
            "other",
            &String::new(),
            None,
            NonEmpty::new(PersistableEvent::new("", b"x".to_vec(), json!("m"))),
        )
        .await?;
    let filters = [
        EventFilter::for_stream("kind \"quoted\"", "id\nwith a newline".to_owned()),
        EventFilter::for_event(""),
    ];
    let before = store.load_events(&filters).await?;
    assert_eq!(before.len(), 3);
    drop(store);

    let store = Store::<Value>::open(&path).await?;
    assert_eq!(store.load_events(&filters).await?, before);
    assert_eq!(
        store
            .stream_version("kind \"quoted\"", &"id\nwith a newline".to_owned())
            .await?,
        Some(2)
    );
    assert_eq!(store.stream_version("other", &String::new()).await?, Some(3));
    assert!(
        store.load_events(&[]).await?.is_empty(),
        "no filters select nothing"
    );
    Ok(())
}

/// Two lines as the store wrote them before it kept event ids: no `id`.
const WITHOUT_IDS: &str = concat!(
    r#"{"position":1,"aggregate_kind":"account","aggregate_id":"ACC-1","events":["#,
    r#"{"kind":"account.opened","schema_version":1,"data":"7b7d","metadata":null}]}"#,
    "\n",
    r#"{"position":2,"aggregate_kind":"account","aggregate_id":"ACC-1","events":["#,
    r#"{"kind":"account.noted","schema_version":1,"data":"7b7d","metadata":null}]}"#,
    "\n",
);

#[tokio::test]
async fn a_file_written_before_ids_reads_with_ids_from_positions() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    std::fs::write(&path, WITHOUT_IDS)?;
    let id = "ACC-1".to_owned();
    let legacy: Vec<EventId> = [
        "6a736f6e-6c2d-8000-8000-000000000001",
        "6a736f6e-6c2d-8000-8000-000000000002",
    ]
    .iter()
    .map(|text| text.parse())
    .collect::<Result<_, _>>()?;

    let store = Store::<Value>::open(&path).await?;
    let stream = [EventFilter::for_stream("account", id.clone())];
    let ids: Vec<EventId> = store
        .load_events(&stream)
        .await?
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(ids, legacy, "ids derived from the positions");
    assert_eq!(
        store.event_positions("account", &id, &legacy).await?,
        [Some(1), Some(2)]
    );

    // New batches carry their own ids beside the old lines; the derived
    // ids are taken like any other.
    let new = PersistableEvent::new("account.noted", b"{}".to_vec(), json!(null));
    let new_id = new.id;
    store.append("account", &id, Some(2), NonEmpty::new(new)).await?;
    let taken = PersistableEvent::new("account.noted", Vec::new(), json!(null)).with_id(legacy[0]);
    let elsewhere = store
        .append("account", &"ACC-2".to_owned(), None, NonEmpty::new(taken))
        .await;
    assert!(
        matches!(&elsewhere, Err(AppendError::IdReused(reused)) if reused.reason == IdReuse::OtherStream),
        "got {elsewhere:?}"
    );
    drop(store);

    let store = Store::<Value>::open(&path).await?;
    let ids: Vec<EventId> = store
        .load_events(&stream)
        .await?
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(ids, [legacy[0], legacy[1], new_id], "the same ids at every open");
    Ok(())
}

/// Metadata of the shape a file written with `Store<Value>` may not have.
#[derive(Debug, Deserialize, serde::Serialize)]
struct Audit {
    actor: String,
}

#[tokio::test]
async fn metadata_of_another_shape_is_a_decode_error_naming_the_event() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let store = Store::open(&path).await?;
    let id = "ACC-1".to_owned();
    store
        .append(
            "account",
            &id,
            None,
            NonEmpty::new(PersistableEvent::new(
                "account.opened",
                b"{}".to_vec(),
                json!({ "actor": "ada" }),
            )),
        )
        .await?;
    store
        .append(
            "account",
            &id,
            None,
            NonEmpty::new(PersistableEvent::new(
                "account.closed",
                b"{}".to_vec(),
                json!({ "who": 7 }),
            )),
        )
        .await?;
    drop(store);

    let store = Store::<Audit>::open(&path).await?;
    let filters = [EventFilter::for_stream("account", id.clone())];
    let error = store
        .load_events(&filters)
        .await
        .err()
        .ok_or("the load succeeded")?;
    assert!(matches!(error, Error::Decode(_)), "got {error:?}");
    let decode =
        Store::<Audit>::into_decode_error(error).map_err(|error| format!("not a decode error: {error}"))?;
    assert_eq!(decode.event_kind, "account.closed");
    assert_eq!(
        (decode.aggregate_kind.as_str(), decode.aggregate_id.as_str()),
        ("account", "ACC-1")
    );
    assert_eq!(decode.position, 2);
    assert!(matches!(decode.reason, DecodeFailure::Metadata(_)));

    // The event before it decodes; a store failure stays a store failure.
    let first = store
        .load_events(&[EventFilter::for_event("account.opened")])
        .await?;
    assert_eq!(first[0].metadata.actor, "ada");
    let broken = Error::Broken { path: path.clone() };
    assert!(Store::<Audit>::into_decode_error(broken).is_err());
    Ok(())
}

#[tokio::test]
async fn a_refused_batch_writes_nothing() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let store = Store::open(&path).await?;
    let id = "a".to_owned();
    store
        .append(
            "test",
            &id,
            None,
            NonEmpty::new(PersistableEvent::new("test.noted", b"1".to_vec(), json!(1))),
        )
        .await?;
    let length = std::fs::metadata(&path)?.len();

    let mut batch = NonEmpty::new(PersistableEvent::new("test.noted", b"2".to_vec(), json!(2)));
    batch.push(PersistableEvent::new("test.noted", b"3".to_vec(), json!(3)).with_schema_version(0));
    let refused = store.append("test", &id, None, batch).await;
    assert!(
        matches!(
            refused,
            Err(AppendError::Invalid(InvalidBatch::SchemaVersionZero { index: 1 }))
        ),
        "got {refused:?}"
    );
    assert_eq!(
        std::fs::metadata(&path)?.len(),
        length,
        "nothing reached the file"
    );
    assert_eq!(
        store
            .load_events(&[EventFilter::for_stream("test", id.clone())])
            .await?
            .len(),
        1
    );
    assert_eq!(store.stream_version("test", &id).await?, Some(1));
    Ok(())
}

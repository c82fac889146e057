//! Event ids in the SQLite store, beyond the conformance suite's rules: the
//! two ways the store finds a replay (a version conflict, a violation of the
//! unique index on ids) each recognise one, after the file is opened again
//! too; reused ids are refused whichever way they are found; a unique index
//! the application added is not mistaken for a reused id; batches and id
//! lists longer than one lookup statement; ids on every read path.

use sourcery_core::concurrency::ExpectedVersion;
use sourcery_core::store::{
    AppendError, AppendOutcome, EventFilter, EventId, EventStore, IdReuse, InvalidBatch, NonEmpty,
    PersistableEvent, TextField,
};
use sourcery_core::subscription::Subscribe;
use sourcery_sqlite::{Error, Store};

type TestStore = Store<String, serde_json::Value>;

fn batch(ids: &[EventId]) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            PersistableEvent::new(
                "account.noted",
                format!("{{\"n\":{index}}}").into_bytes(),
                serde_json::json!({ "n": index }),
            )
            .with_id(*id)
        })
        .collect();
    NonEmpty::from_vec(events).expect("at least one id")
}

fn fresh(count: usize) -> Vec<EventId> {
    (0..count).map(|_| EventId::new()).collect()
}

async fn open(path: &std::path::Path) -> TestStore {
    Store::open(path).await.expect("the store opens")
}

/// Every event of the store, as (position, id, stream).
async fn log(store: &TestStore) -> Vec<(i64, EventId, String)> {
    store
        .load_events(&[EventFilter::for_event("account.noted")])
        .await
        .expect("the log loads")
        .into_iter()
        .map(|event| (event.position, event.id, event.aggregate_id))
        .collect()
}

/// The ways to append the same batch again.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `append(None)`: no version check, so the inserts run and violate the
    /// index.
    Unchecked,
    /// `append(Some(v))` with the version the first attempt expected: the
    /// stream moved (by the first attempt), a conflict, then the lookup.
    Exact,
    /// `append_expecting_new`: the stream has events now, a conflict.
    New,
    /// `append_expecting_existing`: the stream exists, the inserts run.
    Existing,
}

async fn append(
    store: &TestStore,
    mode: Mode,
    stream: &str,
    expected: Option<i64>,
    ids: &[EventId],
) -> AppendOutcome<i64, Error> {
    let stream = stream.to_owned();
    match mode {
        Mode::Unchecked => store.append("account", &stream, None, batch(ids)).await,
        Mode::Exact => store.append("account", &stream, expected, batch(ids)).await,
        Mode::New => store.append_expecting_new("account", &stream, batch(ids)).await,
        Mode::Existing => {
            store
                .append_expecting_existing("account", &stream, batch(ids))
                .await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_stored_batch_is_a_replay_whichever_way_it_is_found() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("replays.db");
    let store = open(&path).await;
    for mode in [Mode::Unchecked, Mode::Exact, Mode::New, Mode::Existing] {
        let stream = format!("{mode:?}");
        // `Existing` needs a stream with events; the others start it.
        let before = match mode {
            Mode::Existing => Some(
                append(&store, Mode::Unchecked, &stream, None, &fresh(1))
                    .await
                    .expect("the stream starts")
                    .last_position,
            ),
            _ => None,
        };
        let ids = fresh(3);
        let first = append(&store, mode, &stream, before, &ids)
            .await
            .expect("the first attempt");
        assert!(!first.replayed, "{mode:?}: the first attempt writes");
        let written = log(&store).await;

        let retry = append(&store, mode, &stream, before, &ids)
            .await
            .unwrap_or_else(|error| panic!("{mode:?}: the retry is a replay, got {error:?}"));
        assert!(retry.replayed, "{mode:?}: the retry writes nothing");
        assert_eq!(retry.last_position, first.last_position, "{mode:?}");
        assert_eq!(log(&store).await, written, "{mode:?}: nothing was written");

        // After the stream moved on, and from another store on the file.
        append(&store, Mode::Unchecked, &stream, None, &fresh(2))
            .await
            .expect("the stream moves on");
        let other = open(&path).await;
        let later = append(&other, mode, &stream, before, &ids)
            .await
            .unwrap_or_else(|error| panic!("{mode:?}: a later retry is a replay, got {error:?}"));
        assert!(later.replayed);
        assert_eq!(later.last_position, first.last_position, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_ids_are_refused_whichever_way_they_are_found_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(&dir.path().join("reused.db")).await;
    let stored = fresh(3);
    let version = store
        .append("account", &"a".to_owned(), None, batch(&stored))
        .await
        .expect("the first batch")
        .last_position;
    let written = log(&store).await;
    let new = EventId::new();
    let cases: [(&str, Vec<EventId>, IdReuse, usize); 4] = [
        ("a", vec![stored[0], new], IdReuse::Partial, 0),
        ("a", vec![new, stored[1]], IdReuse::Partial, 1),
        ("a", vec![stored[1], stored[0]], IdReuse::Order, 1),
        ("b", stored.clone(), IdReuse::OtherStream, 0),
    ];
    for (stream, ids, reason, index) in cases {
        // Unchecked, and with the stream's own version, the inserts run
        // into the index; with a stale version or a new stream expected,
        // the conflict comes first.
        let stream_version = (stream == "a").then_some(version);
        for (label, expected) in [
            ("unchecked", ExpectedVersion::Any),
            ("current version", ExpectedVersion::from(stream_version)),
            ("stale version", ExpectedVersion::Exact(version - 1)),
            ("new stream", ExpectedVersion::NoStream),
            ("existing stream", ExpectedVersion::StreamExists),
        ] {
            let stream = stream.to_owned();
            let events = batch(&ids);
            let outcome = match expected {
                ExpectedVersion::Any => store.append("account", &stream, None, events).await,
                ExpectedVersion::Exact(version) => {
                    store.append("account", &stream, Some(version), events).await
                }
                ExpectedVersion::NoStream => store.append_expecting_new("account", &stream, events).await,
                ExpectedVersion::StreamExists => {
                    store.append_expecting_existing("account", &stream, events).await
                }
            };
            match outcome {
                Err(AppendError::IdReused(refused)) => {
                    assert_eq!(refused.reason, reason, "{ids:?} {label}");
                    assert_eq!(refused.index, index, "{ids:?} {label}");
                    assert_eq!(refused.event_id, ids[index], "{ids:?} {label}");
                }
                other => panic!("{ids:?} to {stream} ({label}): expected IdReused, got {other:?}"),
            }
            assert_eq!(log(&store).await, written, "{label}: nothing was written");
        }
    }
}

/// A unique violation proves an id reused only if the ids say so: the
/// violation of an index the application made is the store failing, and
/// nothing is written.
#[tokio::test]
async fn a_unique_index_of_the_application_is_not_taken_for_a_reused_id() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("app-index.db");
    let store = open(&path).await;
    store
        .append("account", &"a".to_owned(), None, batch(&fresh(1)))
        .await
        .expect("the first batch");
    rusqlite::Connection::open(&path)
        .expect("the database opens")
        .execute_batch("CREATE UNIQUE INDEX app_unique_data ON sourcery_events (data)")
        .expect("the application's index");
    let written = log(&store).await;
    // The same data (`{"n":0}`) under a new id.
    let outcome = store
        .append("account", &"a".to_owned(), None, batch(&fresh(1)))
        .await;
    match &outcome {
        Err(AppendError::Store(Error::Database(cause))) => {
            assert_eq!(cause.extended_code(), Some(2067), "SQLITE_CONSTRAINT_UNIQUE");
        }
        other => panic!("expected the store's failure, got {other:?}"),
    }
    assert_eq!(log(&store).await, written);
}

#[tokio::test]
async fn an_append_to_an_existing_stream_checks_the_batch_first() {
    let store = TestStore::open_in_memory().await.expect("the store opens");
    let empty = "empty".to_owned();
    match store
        .append_expecting_existing("account", &empty, batch(&fresh(2)))
        .await
    {
        Err(AppendError::Conflict(conflict)) => {
            assert_eq!(conflict.expected, ExpectedVersion::StreamExists);
            assert_eq!(conflict.actual, None);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // What no store keeps is refused before the stream is looked at, even
    // in the parts the core's default cannot check (the id's text, the
    // metadata).
    let nul = "a\0b".to_owned();
    assert!(
        matches!(
            store
                .append_expecting_existing("account", &nul, batch(&fresh(1)))
                .await,
            Err(AppendError::Invalid(InvalidBatch::Nul {
                field: TextField::AggregateId
            }))
        ),
        "a NUL in the aggregate id is refused, not a conflict"
    );
    let nul_metadata = NonEmpty::new(PersistableEvent::new(
        "account.noted",
        Vec::new(),
        serde_json::json!({ "note": "a\u{0}b" }),
    ));
    assert!(
        matches!(
            store
                .append_expecting_existing("account", &empty, nul_metadata)
                .await,
            Err(AppendError::Invalid(InvalidBatch::Nul { .. }))
        ),
        "a NUL in the metadata is refused, not a conflict"
    );
    let id = EventId::new();
    assert!(matches!(
        store
            .append_expecting_existing("account", &empty, batch(&[id, id]))
            .await,
        Err(AppendError::Invalid(InvalidBatch::DuplicateId {
            first: 0,
            second: 1
        }))
    ));
    assert_eq!(log(&store).await, []);
}

/// Batches and id lists longer than one lookup statement (4,096 ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_batches_replay_and_their_positions_read() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(&dir.path().join("long.db")).await;
    let stream = "long".to_owned();
    let ids = fresh(5_000);
    let first = store
        .append("account", &stream, None, batch(&ids))
        .await
        .expect("the long batch");
    for expected in [None, Some(first.last_position - 1)] {
        let retry = store
            .append("account", &stream, expected, batch(&ids))
            .await
            .expect("a replay");
        assert!(retry.replayed);
        assert_eq!(retry.last_position, first.last_position);
    }
    let mut asked = ids.clone();
    asked.push(EventId::new());
    let positions = store
        .event_positions("account", &stream, &asked)
        .await
        .expect("the positions read");
    let expected: Vec<Option<i64>> = (first.last_position - 4_999..=first.last_position)
        .map(Some)
        .chain([None])
        .collect();
    assert_eq!(positions, expected);
}

#[tokio::test]
async fn event_positions_are_those_of_the_stream() {
    let store = TestStore::open_in_memory().await.expect("the store opens");
    let (a, b) = ("a".to_owned(), "b".to_owned());
    let in_a = fresh(2);
    let in_b = fresh(1);
    let written_a = store
        .append("account", &a, None, batch(&in_a))
        .await
        .expect("a batch");
    store
        .append("account", &b, None, batch(&in_b))
        .await
        .expect("a batch");
    let missing = EventId::new();
    let positions = store
        .event_positions("account", &a, &[in_a[1], in_b[0], missing, in_a[0], in_a[1]])
        .await
        .expect("the positions read");
    let last = written_a.last_position;
    assert_eq!(positions, [Some(last), None, None, Some(last - 1), Some(last)]);
    assert_eq!(
        store.event_positions("account", &a, &[]).await.expect("no ids"),
        []
    );
    assert_eq!(
        store
            .event_positions("account", &"a\0".to_owned(), &in_a)
            .await
            .expect("a NUL finds nothing"),
        [None, None]
    );
}

#[tokio::test]
async fn ids_come_back_from_every_read() {
    let store = TestStore::open_in_memory().await.expect("the store opens");
    let ids = fresh(4);
    store
        .append("account", &"a".to_owned(), None, batch(&ids[..2]))
        .await
        .expect("a batch");
    store
        .append("account", &"b".to_owned(), None, batch(&ids[2..]))
        .await
        .expect("a batch");
    let ids_of = |events: Vec<sourcery_core::store::StoredEvent<String, i64, serde_json::Value>>| {
        events.into_iter().map(|event| event.id).collect::<Vec<_>>()
    };
    let stream = store
        .load_events(&[EventFilter::for_stream("account", "a".to_owned())])
        .await
        .expect("a stream loads");
    assert_eq!(ids_of(stream), ids[..2]);
    let kind = store
        .load_events(&[EventFilter::for_event("account.noted").after(1)])
        .await
        .expect("a kind loads");
    assert_eq!(ids_of(kind), ids[1..]);
    let page = store
        .load_page(&[EventFilter::for_event("account.noted")], 3)
        .await
        .expect("a page loads");
    assert_eq!(ids_of(page), ids[..3]);
}

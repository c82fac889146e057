//! The conformance suite for [`EventStore`] implementations.
//!
//! It checks the invariants of the [store contract](crate::store) against a
//! fresh store per check: round trips of bytes, kinds, ids and metadata;
//! per-stream and global order; every filter shape and their union;
//! whole-stream filters (every kind, `after`, unions with other filters);
//! schema versions; `stream_version`; optimistic and unchecked commits;
//! atomic batches;
//! dropped transactions; awkward ids and kinds; a 1 MiB payload; and a race
//! of 16 optimistic writers.
//!
//! # Running it against your store
//!
//! Enable the `test-util` feature in your dev-dependencies and hand
//! [`run`] a function that makes an empty store (a fresh schema, database or
//! file per call, so checks cannot see each other's events):
//!
//! ```
//! use sourcery_core::store::inmemory;
//! use sourcery_core::test::conformance;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! // In your crate: `#[tokio::test(flavor = "multi_thread")] async fn conformance() { ... }`
//! conformance::run(|| async { inmemory::Store::<String, serde_json::Value>::new() }).await;
//! # });
//! ```
//!
//! The store's `Id` must be buildable from a `String` (tests use ids such as
//! `""`, `"it's"` and `"клиент-🦀"`) and its metadata must implement
//! [`ConformanceMetadata`] (done for `serde_json::Value`, `String` and `()`).
//! A failed check panics with the check's name and what it saw, like any
//! failed assertion. Each check is also public, to run on its own.

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod subscriptions;
pub mod text;
pub use subscriptions::{
    catch_up_then_live, concurrent_writers_and_subscribers, filter_after_is_kept,
    progress_past_filtered_events, resume_after_position, run_subscriptions,
};

use crate::concurrency::{Optimistic, Unchecked};
use crate::event::DomainEvent;
use crate::store::{AppendError, EventFilter, EventStore, NonEmpty, PersistableEvent, StoredEvent};

/// Metadata the suite can make and compare.
pub trait ConformanceMetadata: Clone + PartialEq + Debug + Send + Sync + 'static {
    /// A value that differs for different `n` where the type allows it.
    fn sample(n: u64) -> Self;

    /// A value holding `text` where a store keeps it as text (a JSON string
    /// or key), for the [`text`] rules; `None`, the default, when the type
    /// holds no text (those rules then do not apply).
    #[must_use]
    fn with_text(text: &str) -> Option<Self> {
        let _ = text;
        None
    }
}

impl ConformanceMetadata for serde_json::Value {
    fn sample(n: u64) -> Self {
        serde_json::json!({ "n": n, "actor": "tëst \"user\"", "tags": ["a", n.to_string()] })
    }

    fn with_text(text: &str) -> Option<Self> {
        let mut keyed = serde_json::Map::new();
        keyed.insert(text.to_owned(), serde_json::Value::Bool(true));
        Some(serde_json::json!({ "note": text, "keyed": keyed }))
    }
}

impl ConformanceMetadata for String {
    fn sample(n: u64) -> Self {
        format!("metadata-{n}-ü")
    }

    fn with_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl ConformanceMetadata for () {
    fn sample(_: u64) -> Self {}
}

/// How long any single store call may take before the suite calls it hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs every check, each against a fresh store from `make_store`.
///
/// Needs a Tokio runtime with timers; the race check spawns tasks, so a
/// multi-threaded runtime exercises real parallelism.
///
/// # Panics
///
/// When a check fails, with the check's name and what it saw.
pub async fn run<S, F, Fut>(mut make_store: F)
where
    S: EventStore + 'static,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    round_trip(make_store().await).await;
    stream_version(make_store().await).await;
    ordering(make_store().await).await;
    filters(make_store().await).await;
    filter_union(make_store().await).await;
    whole_stream(make_store().await).await;
    whole_stream_after(make_store().await).await;
    whole_stream_union(make_store().await).await;
    schema_versions(make_store().await).await;
    optimistic_commits(make_store().await).await;
    unchecked_commits(make_store().await).await;
    raw_appends(make_store().await).await;
    dropped_transaction(make_store().await).await;
    atomic_batches(make_store().await).await;
    awkward_names(make_store().await).await;
    large_payload(make_store().await).await;
    optimistic_race(make_store().await, 16).await;
    text::nul_in_aggregate_kind_refused(make_store().await).await;
    text::nul_in_aggregate_id_refused(make_store().await).await;
    text::nul_in_event_kind_refused(make_store().await).await;
    text::nul_in_metadata_refused(make_store().await).await;
    text::nul_lookups_find_nothing(make_store().await).await;
    text::nul_lookalikes_round_trip(make_store().await).await;
}

/// The test events: one kind per struct, with a payload that tells them apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened {
    n: u64,
}

impl DomainEvent for Opened {
    const KIND: &'static str = "conformance.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    n: u64,
    text: String,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "conformance.noted";
}

const ACCOUNT: &str = "conformance-account";
const LEDGER: &str = "conformance-ledger";

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(value) => value,
        Err(elapsed) => panic!("conformance: {what} did not finish within {CALL_TIMEOUT:?} ({elapsed})"),
    }
}

fn id<S: EventStore>(text: &str) -> S::Id
where
    S::Id: From<String>,
{
    S::Id::from(text.to_owned())
}

fn raw<M>(kind: &str, data: &[u8], metadata: M) -> PersistableEvent<M> {
    PersistableEvent {
        kind: kind.to_owned(),
        schema_version: 1,
        data: data.to_vec(),
        metadata,
    }
}

async fn load<S: EventStore>(
    store: &S,
    filters: &[EventFilter<S::Id, S::Position>],
) -> Vec<StoredEvent<S::Id, S::Position, S::Metadata>> {
    match bounded("load_events", store.load_events(filters)).await {
        Ok(events) => events,
        Err(error) => panic!("conformance: load_events failed: {error}"),
    }
}

async fn version<S: EventStore>(store: &S, kind: &str, aggregate_id: &S::Id) -> Option<S::Position> {
    match bounded("stream_version", store.stream_version(kind, aggregate_id)).await {
        Ok(version) => version,
        Err(error) => panic!("conformance: stream_version failed: {error}"),
    }
}

/// The filters that load a whole test stream (both event kinds).
fn stream_filters<S: EventStore>(kind: &str, aggregate_id: &S::Id) -> Vec<EventFilter<S::Id, S::Position>> {
    vec![
        EventFilter::for_aggregate(Opened::KIND, kind, aggregate_id.clone()),
        EventFilter::for_aggregate(Noted::KIND, kind, aggregate_id.clone()),
    ]
}

fn all_filters<S: EventStore>() -> Vec<EventFilter<S::Id, S::Position>> {
    vec![
        EventFilter::for_event(Opened::KIND),
        EventFilter::for_event(Noted::KIND),
    ]
}

/// Commits `events` (numbers of `Noted` events) to a stream, unchecked, and
/// returns the last position.
async fn commit_unchecked<S: EventStore>(
    store: &S,
    kind: &str,
    aggregate_id: &S::Id,
    numbers: &[u64],
) -> S::Position
where
    S::Metadata: ConformanceMetadata,
{
    let mut tx = store.begin::<Unchecked>(kind, aggregate_id.clone(), None);
    for &n in numbers {
        let appended = tx.append(
            Noted {
                n,
                text: format!("note {n}"),
            },
            S::Metadata::sample(n),
        );
        assert!(appended.is_ok(), "conformance: encoding a test event failed");
    }
    match bounded("commit", tx.commit()).await {
        Ok(Some(result)) => result.last_position,
        Ok(None) => panic!(
            "conformance: a commit of {} events reported nothing written",
            numbers.len()
        ),
        Err(error) => panic!("conformance: an unchecked commit failed: {error}"),
    }
}

fn numbers<S: EventStore>(events: &[StoredEvent<S::Id, S::Position, S::Metadata>], store: &S) -> Vec<u64> {
    let decoded = |event: &StoredEvent<S::Id, S::Position, S::Metadata>| {
        let n = match event.kind.as_str() {
            Opened::KIND => event.decode::<Opened>(store.codec()).map(|e| e.n),
            _ => event.decode::<Noted>(store.codec()).map(|e| e.n),
        };
        match n {
            Ok(n) => n,
            Err(error) => panic!("conformance: a stored test event did not decode: {error}"),
        }
    };
    events.iter().map(decoded).collect()
}

fn assert_ascending<S: EventStore>(what: &str, events: &[StoredEvent<S::Id, S::Position, S::Metadata>]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "conformance ({what}): positions must strictly ascend, found {:?} then {:?}",
            pair[0].position,
            pair[1].position
        );
    }
}

/// Appended events load back with the same kind, stream, bytes and metadata,
/// and the commit reports the last position.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn round_trip<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("round-trip-1");
    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), None);
    assert!(tx.append(Opened { n: 1 }, S::Metadata::sample(1)).is_ok());
    assert!(
        tx.append(
            Noted {
                n: 2,
                text: "deux".into()
            },
            S::Metadata::sample(2)
        )
        .is_ok()
    );
    assert!(tx.append(Opened { n: 3 }, S::Metadata::sample(3)).is_ok());
    let written = match bounded("commit", tx.commit()).await {
        Ok(Some(written)) => written,
        other => panic!("conformance (round_trip): commit of a new stream failed: {other:?}"),
    };

    let events = load(&store, &stream_filters::<S>(ACCOUNT, &aggregate_id)).await;
    assert_eq!(
        events.len(),
        3,
        "conformance (round_trip): expected the 3 appended events"
    );
    assert_ascending::<S>("round_trip", &events);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [Opened::KIND, Noted::KIND, Opened::KIND],
        "conformance (round_trip): kinds"
    );
    for (event, n) in events.iter().zip(1..) {
        assert_eq!(
            event.aggregate_kind, ACCOUNT,
            "conformance (round_trip): aggregate kind"
        );
        assert_eq!(
            event.aggregate_id, aggregate_id,
            "conformance (round_trip): aggregate id"
        );
        assert_eq!(
            event.metadata,
            S::Metadata::sample(n),
            "conformance (round_trip): metadata of event {n}"
        );
    }
    assert_eq!(
        numbers(&events, &store),
        [1, 2, 3],
        "conformance (round_trip): payloads"
    );
    let expected_bytes = crate::codec::Codec::encode(
        store.codec(),
        &Noted {
            n: 2,
            text: "deux".into(),
        },
    )
    .ok();
    assert_eq!(
        Some(&events[1].data),
        expected_bytes.as_ref(),
        "conformance (round_trip): stored bytes"
    );
    assert_eq!(
        events[2].position, written.last_position,
        "conformance (round_trip): the commit reports the last event's position"
    );
}

/// `stream_version` is `None` for a stream without events and the last
/// position once events are committed; other streams do not move it.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn stream_version<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let first = id::<S>("version-1");
    let second = id::<S>("version-2");
    assert_eq!(
        version(&store, ACCOUNT, &first).await,
        None,
        "conformance (stream_version): new stream"
    );
    let last = commit_unchecked(&store, ACCOUNT, &first, &[1, 2]).await;
    assert_eq!(
        version(&store, ACCOUNT, &first).await,
        Some(last),
        "conformance (stream_version): after a commit"
    );
    let other = commit_unchecked(&store, ACCOUNT, &second, &[3]).await;
    assert!(
        other > last,
        "conformance (stream_version): a later commit has a higher position"
    );
    assert_eq!(
        version(&store, ACCOUNT, &first).await,
        Some(last),
        "conformance (stream_version): another stream's commit does not move this one"
    );
    assert_eq!(
        version(&store, LEDGER, &first).await,
        None,
        "conformance (stream_version): the same id under another aggregate kind is another stream"
    );
}

/// Per stream, events load in append order; globally, in position order,
/// across interleaved commits to several streams.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn ordering<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let a = id::<S>("order-a");
    let b = id::<S>("order-b");
    commit_unchecked(&store, ACCOUNT, &a, &[1, 2]).await;
    commit_unchecked(&store, ACCOUNT, &b, &[3]).await;
    commit_unchecked(&store, ACCOUNT, &a, &[4]).await;
    commit_unchecked(&store, LEDGER, &a, &[5, 6]).await;
    commit_unchecked(&store, ACCOUNT, &b, &[7, 8, 9]).await;

    let all = load(&store, &all_filters::<S>()).await;
    assert_ascending::<S>("ordering", &all);
    assert_eq!(
        numbers(&all, &store),
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        "conformance (ordering): the global log is in commit order"
    );
    let stream_a = load(&store, &stream_filters::<S>(ACCOUNT, &a)).await;
    assert_eq!(
        numbers(&stream_a, &store),
        [1, 2, 4],
        "conformance (ordering): stream a"
    );
    let stream_b = load(&store, &stream_filters::<S>(ACCOUNT, &b)).await;
    assert_eq!(
        numbers(&stream_b, &store),
        [3, 7, 8, 9],
        "conformance (ordering): stream b"
    );
    let ledger_a = load(&store, &stream_filters::<S>(LEDGER, &a)).await;
    assert_eq!(
        numbers(&ledger_a, &store),
        [5, 6],
        "conformance (ordering): same id, other kind"
    );
}

/// Each filter shape selects exactly its events; `after` is strictly
/// greater; no filters select nothing.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn filters<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let (a, b, all) = filter_fixture(&store).await;

    let by_kind = load(&store, &[EventFilter::for_event(Opened::KIND)]).await;
    assert_eq!(
        numbers(&by_kind, &store),
        [1, 3],
        "conformance (filters): for_event"
    );

    let one_stream = load(
        &store,
        &[EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone())],
    )
    .await;
    assert_eq!(
        numbers(&one_stream, &store),
        [2, 4],
        "conformance (filters): for_aggregate"
    );

    let other_kind = load(
        &store,
        &[EventFilter::for_aggregate(Noted::KIND, LEDGER, a.clone())],
    )
    .await;
    assert!(
        other_kind.is_empty(),
        "conformance (filters): for_aggregate matches the aggregate kind too"
    );

    let unknown = load(&store, &[EventFilter::for_event("conformance.never-written")]).await;
    assert!(
        unknown.is_empty(),
        "conformance (filters): an unknown kind selects nothing"
    );

    let none = load(&store, &[]).await;
    assert!(
        none.is_empty(),
        "conformance (filters): no filters select nothing"
    );

    let cut = all[1].position;
    let after = load(&store, &[EventFilter::for_event(Noted::KIND).after(cut)]).await;
    assert_eq!(
        numbers(&after, &store),
        [4],
        "conformance (filters): after(p) is strictly greater than p (p = position of event 2)"
    );
    let after_last = load(
        &store,
        &[EventFilter::for_event(Noted::KIND).after(all[3].position)],
    )
    .await;
    assert!(
        after_last.is_empty(),
        "conformance (filters): nothing after the last position"
    );
    let after_in_stream = load(
        &store,
        &[EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b.clone()).after(all[0].position)],
    )
    .await;
    assert_eq!(
        numbers(&after_in_stream, &store),
        [3],
        "conformance (filters): for_aggregate with after"
    );
}

/// The union of overlapping filters holds each event once, in position
/// order, and each filter's `after` applies to that filter alone.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn filter_union<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let (a, b, all) = filter_fixture(&store).await;
    // Overlapping filters: every Noted event, Noted of stream a (a subset),
    // Opened of stream b, and the same filter twice.
    let union = load(
        &store,
        &[
            EventFilter::for_event(Noted::KIND),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()),
            EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b.clone()),
            EventFilter::for_aggregate(Opened::KIND, ACCOUNT, b.clone()),
        ],
    )
    .await;
    assert_ascending::<S>("filters: union", &union);
    assert_eq!(
        numbers(&union, &store),
        [2, 3, 4],
        "conformance (filters): the union holds each event once, in position order"
    );
    let mixed_after = load(
        &store,
        &[
            EventFilter::for_event(Opened::KIND).after(all[0].position),
            EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()),
        ],
    )
    .await;
    assert_eq!(
        numbers(&mixed_after, &store),
        [2, 3, 4],
        "conformance (filters): `after` applies to its own filter only"
    );
}

/// Stream a: Opened 1, Noted 2 (one batch), then Noted 4; stream b: Opened 3.
/// Returns both ids and all four events.
async fn filter_fixture<S>(store: &S) -> (S::Id, S::Id, Vec<StoredEvent<S::Id, S::Position, S::Metadata>>)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let a = id::<S>("filter-a");
    let b = id::<S>("filter-b");
    let mut tx = store.begin::<Unchecked>(ACCOUNT, a.clone(), None);
    assert!(tx.append(Opened { n: 1 }, S::Metadata::sample(1)).is_ok());
    assert!(
        tx.append(
            Noted {
                n: 2,
                text: String::new()
            },
            S::Metadata::sample(2)
        )
        .is_ok()
    );
    assert!(bounded("commit", tx.commit()).await.is_ok());
    let mut tx = store.begin::<Unchecked>(ACCOUNT, b.clone(), None);
    assert!(tx.append(Opened { n: 3 }, S::Metadata::sample(3)).is_ok());
    assert!(bounded("commit", tx.commit()).await.is_ok());
    commit_unchecked(store, ACCOUNT, &a, &[4]).await;

    let all = load(store, &all_filters::<S>()).await;
    assert_eq!(
        numbers(&all, store),
        [1, 2, 3, 4],
        "conformance (filters): the fixture's events"
    );
    (a, b, all)
}

/// A kind that only a whole-stream filter finds in the whole-stream rules:
/// no `for_event` or `for_aggregate` filter of theirs names it.
const UNLISTED: &str = "conformance.unlisted";

/// A test event of `kind` numbered `n` (an `Opened` payload for
/// [`Opened::KIND`], a `Noted` one for any other kind), encoded with the
/// store's codec, at `schema_version`.
fn numbered<S: EventStore>(
    store: &S,
    kind: &str,
    n: u64,
    schema_version: u32,
) -> PersistableEvent<S::Metadata>
where
    S::Metadata: ConformanceMetadata,
{
    let codec = store.codec();
    let data = if kind == Opened::KIND {
        crate::codec::Codec::encode(codec, &Opened { n })
    } else {
        crate::codec::Codec::encode(
            codec,
            &Noted {
                n,
                text: format!("{kind} {n}"),
            },
        )
    };
    match data {
        Ok(data) => {
            PersistableEvent::new(kind, data, S::Metadata::sample(n)).with_schema_version(schema_version)
        }
        Err(error) => panic!("conformance: encoding a test event failed: {error}"),
    }
}

/// Appends `events` (kind, number) to a stream as one unchecked batch, at
/// schema version 1.
async fn append_numbered<S: EventStore>(store: &S, kind: &str, aggregate_id: &S::Id, events: &[(&str, u64)])
where
    S::Metadata: ConformanceMetadata,
{
    let batch: Vec<PersistableEvent<S::Metadata>> = events
        .iter()
        .map(|&(event_kind, n)| numbered(store, event_kind, n, 1))
        .collect();
    let Some(batch) = NonEmpty::from_vec(batch) else {
        panic!("conformance: a test batch must not be empty");
    };
    if let Err(error) = bounded("append", store.append(kind, aggregate_id, None, batch)).await {
        panic!(
            "conformance: an unchecked append of {} events failed: {error}",
            events.len()
        );
    }
}

/// Each event's kind and number, in the order loaded.
fn labels<S: EventStore>(
    events: &[StoredEvent<S::Id, S::Position, S::Metadata>],
    store: &S,
) -> Vec<(String, u64)> {
    let codec = store.codec();
    events
        .iter()
        .map(|event| {
            let n = if event.kind == Opened::KIND {
                crate::codec::Codec::decode::<Opened>(codec, &event.data).map(|e| e.n)
            } else {
                crate::codec::Codec::decode::<Noted>(codec, &event.data).map(|e| e.n)
            };
            match n {
                Ok(n) => (event.kind.clone(), n),
                Err(error) => panic!(
                    "conformance: the stored data of a test event of kind {:?} did not decode: {error}",
                    event.kind
                ),
            }
        })
        .collect()
}

fn labelled(events: &[(&str, u64)]) -> Vec<(String, u64)> {
    events.iter().map(|&(kind, n)| (kind.to_owned(), n)).collect()
}

/// A case of a rule: what it checks, the filters, what they must load.
type Case<'a, S, Expected> = (
    &'a str,
    Vec<EventFilter<<S as EventStore>::Id, <S as EventStore>::Position>>,
    &'a [Expected],
);

/// A case of [`whole_stream_after`]: what it checks, `p`, the events
/// after it.
type AfterCase<'a, S> = (&'a str, <S as EventStore>::Position, &'a [(&'a str, u64)]);

/// The whole-stream rules' log, in commit order:
///
/// 1. `ACCOUNT`/`whole-a`: Opened 1, Noted 2, unlisted 3 (one batch);
/// 2. `ACCOUNT`/`whole-b`: Noted 4;
/// 3. `LEDGER`/`whole-a` (the same id under another aggregate kind):
///    Opened 5, unlisted 6;
/// 4. `ACCOUNT`/`whole-a`: unlisted 7, Noted 8.
///
/// Returns the ids of `whole-a` and `whole-b`, and the position of each
/// event by number (`positions[n - 1]`).
async fn whole_stream_fixture<S>(store: &S) -> (S::Id, S::Id, Vec<S::Position>)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let a = id::<S>("whole-a");
    let b = id::<S>("whole-b");
    append_numbered(
        store,
        ACCOUNT,
        &a,
        &[(Opened::KIND, 1), (Noted::KIND, 2), (UNLISTED, 3)],
    )
    .await;
    append_numbered(store, ACCOUNT, &b, &[(Noted::KIND, 4)]).await;
    append_numbered(store, LEDGER, &a, &[(Opened::KIND, 5), (UNLISTED, 6)]).await;
    append_numbered(store, ACCOUNT, &a, &[(UNLISTED, 7), (Noted::KIND, 8)]).await;
    let all = load(
        store,
        &[
            EventFilter::for_event(Opened::KIND),
            EventFilter::for_event(Noted::KIND),
            EventFilter::for_event(UNLISTED),
        ],
    )
    .await;
    let numbers: Vec<u64> = labels(&all, store).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        numbers,
        (1..=8).collect::<Vec<_>>(),
        "conformance (whole-stream fixture): for_event filters on the three kinds must load the 8 events \
         appended, in commit order"
    );
    let positions = all.iter().map(|event| event.position).collect();
    (a, b, positions)
}

/// `for_stream` returns every event of its stream whatever its kind (a kind
/// no other filter names included), in append order, and nothing of other
/// streams: not of another id, nor of another aggregate kind with the same
/// id.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn whole_stream<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let (a, b, positions) = whole_stream_fixture(&store).await;

    let stream = load(&store, &[EventFilter::for_stream(ACCOUNT, a.clone())]).await;
    assert_ascending::<S>("whole_stream", &stream);
    let expected = labelled(&[
        (Opened::KIND, 1),
        (Noted::KIND, 2),
        (UNLISTED, 3),
        (UNLISTED, 7),
        (Noted::KIND, 8),
    ]);
    let got = labels(&stream, &store);
    assert!(
        got == expected,
        "conformance (whole_stream): for_stream must return every event of the stream whatever its kind, in \
         append order, and nothing of other streams: expected {expected:?}, got {got:?}"
    );
    for event in &stream {
        assert!(
            event.aggregate_kind == ACCOUNT && event.aggregate_id == a,
            "conformance (whole_stream): for_stream({ACCOUNT:?}, {a:?}) returned an event of stream {:?}/{:?}",
            event.aggregate_kind,
            event.aggregate_id
        );
    }
    let loaded: Vec<S::Position> = stream.iter().map(|event| event.position).collect();
    let written = vec![
        positions[0],
        positions[1],
        positions[2],
        positions[6],
        positions[7],
    ];
    assert!(
        loaded == written,
        "conformance (whole_stream): for_stream must return the events at the positions they were written at: \
         expected {written:?}, got {loaded:?}"
    );

    let same_id = load(&store, &[EventFilter::for_stream(LEDGER, a.clone())]).await;
    let expected = labelled(&[(Opened::KIND, 5), (UNLISTED, 6)]);
    let got = labels(&same_id, &store);
    assert!(
        got == expected,
        "conformance (whole_stream): the same id under another aggregate kind is another stream: \
         for_stream({LEDGER:?}, ..) expected {expected:?}, got {got:?}"
    );

    let other = load(&store, &[EventFilter::for_stream(ACCOUNT, b)]).await;
    let expected = labelled(&[(Noted::KIND, 4)]);
    let got = labels(&other, &store);
    assert!(
        got == expected,
        "conformance (whole_stream): for_stream of another id must return that stream only: expected \
         {expected:?}, got {got:?}"
    );

    let missing = load(
        &store,
        &[EventFilter::for_stream(ACCOUNT, id::<S>("whole-missing"))],
    )
    .await;
    assert!(
        missing.is_empty(),
        "conformance (whole_stream): for_stream of a stream without events must return nothing, got {:?}",
        labels(&missing, &store)
    );
}

/// `for_stream(..).after(p)` returns only the stream's events strictly
/// after `p`, whether `p` is one of the stream's positions or another
/// stream's.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn whole_stream_after<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let (a, _, positions) = whole_stream_fixture(&store).await;
    let cases: [AfterCase<'_, S>; 5] = [
        (
            "p = the first event of the stream",
            positions[0],
            &[(Noted::KIND, 2), (UNLISTED, 3), (UNLISTED, 7), (Noted::KIND, 8)],
        ),
        (
            "p = the stream's event 2 (strictly after: event 2 itself is out)",
            positions[1],
            &[(UNLISTED, 3), (UNLISTED, 7), (Noted::KIND, 8)],
        ),
        (
            "p = another stream's event 4, between the stream's events 3 and 7",
            positions[3],
            &[(UNLISTED, 7), (Noted::KIND, 8)],
        ),
        (
            "p = event 6 of the same id under another aggregate kind",
            positions[5],
            &[(UNLISTED, 7), (Noted::KIND, 8)],
        ),
        ("p = the stream's last event", positions[7], &[]),
    ];
    for (case, after, expected) in cases {
        let tail = load(
            &store,
            &[EventFilter::for_stream(ACCOUNT, a.clone()).after(after)],
        )
        .await;
        assert_ascending::<S>("whole_stream_after", &tail);
        let expected = labelled(expected);
        let got = labels(&tail, &store);
        assert!(
            got == expected,
            "conformance (whole_stream_after): for_stream(..).after(p) must return only the stream's events \
             strictly after p ({case}, p = {after:?}): expected {expected:?}, got {got:?}"
        );
    }
}

/// A union of `for_stream` filters with filters on event kinds, in the same
/// stream and others, holds each event once, in ascending position, and
/// each filter's `after` applies to that filter alone.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn whole_stream_union<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let (a, b, positions) = whole_stream_fixture(&store).await;
    let cases: [Case<'_, S, u64>; 5] = [
        (
            "the stream, a kind filter on it, a kind filter on the same id under another aggregate kind, a \
             kind across streams, the stream again",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()),
                EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()),
                EventFilter::for_aggregate(Opened::KIND, LEDGER, a.clone()),
                EventFilter::for_event(Noted::KIND),
                EventFilter::for_stream(ACCOUNT, a.clone()),
            ],
            &[1, 2, 3, 4, 5, 7, 8],
        ),
        (
            "the stream after event 3, Opened of the stream from the start, Noted of the stream after event 7",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[2]),
                EventFilter::for_aggregate(Opened::KIND, ACCOUNT, a.clone()),
                EventFilter::for_aggregate(Noted::KIND, ACCOUNT, a.clone()).after(positions[6]),
            ],
            &[1, 7, 8],
        ),
        (
            "the stream after event 2 and the whole stream",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[1]),
                EventFilter::for_stream(ACCOUNT, a.clone()),
            ],
            &[1, 2, 3, 7, 8],
        ),
        (
            "two whole streams, one after a position",
            vec![
                EventFilter::for_stream(LEDGER, a.clone()),
                EventFilter::for_stream(ACCOUNT, b.clone()).after(positions[0]),
            ],
            &[4, 5, 6],
        ),
        (
            "the stream after event 7 and the unlisted kind across streams",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()).after(positions[6]),
                EventFilter::for_event(UNLISTED),
            ],
            &[3, 6, 7, 8],
        ),
    ];
    for (case, filters, expected) in cases {
        let union = load(&store, &filters).await;
        assert_ascending::<S>("whole_stream_union", &union);
        let got: Vec<u64> = labels(&union, &store).into_iter().map(|(_, n)| n).collect();
        assert!(
            got == expected,
            "conformance (whole_stream_union): the union of for_stream with other filters must hold each \
             event once, in ascending position ({case}): expected events {expected:?}, got {got:?}"
        );
    }
}

/// Events written in one batch with schema versions 1, 2 and 7 load back
/// with the same versions through `for_stream`, `for_aggregate` and
/// `for_event`.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn schema_versions<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("schema-versions");
    let batch = vec![
        numbered(&store, Opened::KIND, 1, 1),
        numbered(&store, Noted::KIND, 2, 2),
        numbered(&store, Opened::KIND, 3, 7),
    ];
    let Some(batch) = NonEmpty::from_vec(batch) else {
        panic!("conformance (schema_versions): the test batch is not empty");
    };
    let appended = bounded(
        "append_expecting_new",
        store.append_expecting_new(ACCOUNT, &aggregate_id, batch),
    )
    .await;
    if let Err(error) = appended {
        panic!(
            "conformance (schema_versions): appending events at schema versions 1, 2 and 7 failed: {error}"
        );
    }
    // Another stream at other versions, so that a store returning one
    // stream's versions for another shows.
    let other = id::<S>("schema-versions-other");
    let other_batch = NonEmpty::new(numbered(&store, Opened::KIND, 4, 3));
    if let Err(error) = bounded("append", store.append(ACCOUNT, &other, None, other_batch)).await {
        panic!("conformance (schema_versions): appending an event at schema version 3 failed: {error}");
    }

    let cases: [Case<'_, S, (u64, u32)>; 4] = [
        (
            "for_stream",
            vec![EventFilter::for_stream(ACCOUNT, aggregate_id.clone())],
            &[(1, 1), (2, 2), (3, 7)],
        ),
        (
            "for_aggregate of each kind",
            vec![
                EventFilter::for_aggregate(Opened::KIND, ACCOUNT, aggregate_id.clone()),
                EventFilter::for_aggregate(Noted::KIND, ACCOUNT, aggregate_id.clone()),
            ],
            &[(1, 1), (2, 2), (3, 7)],
        ),
        (
            "for_aggregate of Opened",
            vec![EventFilter::for_aggregate(
                Opened::KIND,
                ACCOUNT,
                aggregate_id.clone(),
            )],
            &[(1, 1), (3, 7)],
        ),
        (
            "for_event of both kinds",
            vec![
                EventFilter::for_event(Opened::KIND),
                EventFilter::for_event(Noted::KIND),
            ],
            &[(1, 1), (2, 2), (3, 7), (4, 3)],
        ),
    ];
    for (case, filters, expected) in cases {
        let events = load(&store, &filters).await;
        let got: Vec<(u64, u32)> = labels(&events, &store)
            .into_iter()
            .zip(&events)
            .map(|((_, n), event)| (n, event.schema_version))
            .collect();
        assert!(
            got == expected,
            "conformance (schema_versions): each event must load with the schema version it was written at \
             ({case}; pairs of event number and schema version): expected {expected:?}, got {got:?}"
        );
    }
}

/// An optimistic commit succeeds exactly when the stream is at the expected
/// version (no version: a new stream); a refused commit reports expected and
/// actual versions and writes nothing.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn optimistic_commits<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("optimistic");
    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), None);
    assert!(tx.append(Opened { n: 1 }, S::Metadata::sample(1)).is_ok());
    let first = match bounded("commit", tx.commit()).await {
        Ok(Some(written)) => written.last_position,
        other => panic!("conformance (optimistic_commits): creating a new stream failed: {other:?}"),
    };

    // Expecting a new stream on an existing one.
    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), None);
    assert!(tx.append(Opened { n: 2 }, S::Metadata::sample(2)).is_ok());
    match bounded("commit", tx.commit()).await {
        Err(AppendError::Conflict(conflict)) => {
            assert_eq!(
                conflict.expected, None,
                "conformance (optimistic_commits): expected version of a create"
            );
            assert_eq!(
                conflict.actual,
                Some(first),
                "conformance (optimistic_commits): actual version"
            );
        }
        other => panic!(
            "conformance (optimistic_commits): creating an existing stream must conflict, got {other:?}"
        ),
    }

    // The right version.
    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), Some(first));
    assert!(
        tx.append(
            Noted {
                n: 3,
                text: "three".into()
            },
            S::Metadata::sample(3)
        )
        .is_ok()
    );
    let second = match bounded("commit", tx.commit()).await {
        Ok(Some(written)) => written.last_position,
        other => {
            panic!("conformance (optimistic_commits): a commit at the current version failed: {other:?}")
        }
    };

    // A stale version.
    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), Some(first));
    assert!(tx.append(Opened { n: 4 }, S::Metadata::sample(4)).is_ok());
    match bounded("commit", tx.commit()).await {
        Err(AppendError::Conflict(conflict)) => {
            assert_eq!(
                conflict.expected,
                Some(first),
                "conformance (optimistic_commits): expected version"
            );
            assert_eq!(
                conflict.actual,
                Some(second),
                "conformance (optimistic_commits): actual version"
            );
        }
        other => panic!("conformance (optimistic_commits): a stale version must conflict, got {other:?}"),
    }

    // A version on a stream that does not exist.
    let missing = id::<S>("optimistic-missing");
    let mut tx = store.begin::<Optimistic>(ACCOUNT, missing.clone(), Some(first));
    assert!(tx.append(Opened { n: 5 }, S::Metadata::sample(5)).is_ok());
    match bounded("commit", tx.commit()).await {
        Err(AppendError::Conflict(conflict)) => {
            assert_eq!(
                conflict.actual, None,
                "conformance (optimistic_commits): actual version of a missing stream"
            );
        }
        other => panic!(
            "conformance (optimistic_commits): a version on a missing stream must conflict, got {other:?}"
        ),
    }

    let events = load(&store, &stream_filters::<S>(ACCOUNT, &aggregate_id)).await;
    assert_eq!(
        numbers(&events, &store),
        [1, 3],
        "conformance (optimistic_commits): refused commits wrote nothing"
    );
    assert!(
        load(&store, &stream_filters::<S>(ACCOUNT, &missing))
            .await
            .is_empty(),
        "conformance (optimistic_commits): refused commits wrote nothing"
    );
    assert_eq!(version(&store, ACCOUNT, &aggregate_id).await, Some(second));
}

/// An unchecked commit appends whatever the stream holds, and ignores a
/// stale expected version.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn unchecked_commits<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("unchecked");
    let first = commit_unchecked(&store, ACCOUNT, &aggregate_id, &[1]).await;
    commit_unchecked(&store, ACCOUNT, &aggregate_id, &[2]).await;
    let mut tx = store.begin::<Unchecked>(ACCOUNT, aggregate_id.clone(), Some(first));
    assert!(
        tx.append(
            Noted {
                n: 3,
                text: String::new()
            },
            S::Metadata::sample(3)
        )
        .is_ok()
    );
    let last = match bounded("commit", tx.commit()).await {
        Ok(Some(written)) => written.last_position,
        other => panic!(
            "conformance (unchecked_commits): an unchecked commit with a stale version failed: {other:?}"
        ),
    };
    let events = load(&store, &stream_filters::<S>(ACCOUNT, &aggregate_id)).await;
    assert_eq!(
        numbers(&events, &store),
        [1, 2, 3],
        "conformance (unchecked_commits)"
    );
    assert_eq!(version(&store, ACCOUNT, &aggregate_id).await, Some(last));

    // An empty transaction writes nothing and says so.
    let tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), None);
    match bounded("commit", tx.commit()).await {
        Ok(None) => {}
        other => panic!("conformance (unchecked_commits): an empty commit must write nothing, got {other:?}"),
    }
    assert_eq!(version(&store, ACCOUNT, &aggregate_id).await, Some(last));
}

/// The store's own methods, called directly: `append` with and without a
/// version, `append_expecting_new`; raw bytes (not valid UTF-8, with NULs)
/// round-trip exactly.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn raw_appends<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("raw");
    let bytes: Vec<u8> = (0..=255).collect();
    let created = bounded(
        "append_expecting_new",
        store.append_expecting_new(
            LEDGER,
            &aggregate_id,
            NonEmpty::new(raw("raw.bytes", &bytes, S::Metadata::sample(7))),
        ),
    )
    .await;
    let Ok(created) = created else {
        panic!("conformance (raw_appends): append_expecting_new on a new stream failed: {created:?}");
    };
    let again = bounded(
        "append_expecting_new",
        store.append_expecting_new(
            LEDGER,
            &aggregate_id,
            NonEmpty::new(raw("raw.bytes", b"", S::Metadata::sample(8))),
        ),
    )
    .await;
    assert!(
        again.as_ref().is_err_and(AppendError::is_conflict),
        "conformance (raw_appends): append_expecting_new on an existing stream must conflict, got {again:?}"
    );
    let stale = bounded(
        "append",
        store.append(
            LEDGER,
            &aggregate_id,
            Some(created.last_position),
            NonEmpty::new(raw("raw.bytes", b"\0", S::Metadata::sample(9))),
        ),
    )
    .await;
    let Ok(second) = stale else {
        panic!("conformance (raw_appends): append at the current version failed: {stale:?}");
    };
    let stale = bounded(
        "append",
        store.append(
            LEDGER,
            &aggregate_id,
            Some(created.last_position),
            NonEmpty::new(raw("raw.bytes", b"x", S::Metadata::sample(10))),
        ),
    )
    .await;
    match stale {
        Err(AppendError::Conflict(conflict)) => {
            assert_eq!(conflict.expected, Some(created.last_position));
            assert_eq!(conflict.actual, Some(second.last_position));
        }
        other => panic!("conformance (raw_appends): append at a stale version must conflict, got {other:?}"),
    }
    let unchecked = bounded(
        "append",
        store.append(
            LEDGER,
            &aggregate_id,
            None,
            NonEmpty::new(raw("raw.bytes", b"", S::Metadata::sample(11))),
        ),
    )
    .await;
    assert!(
        unchecked.is_ok(),
        "conformance (raw_appends): append without a version failed: {unchecked:?}"
    );

    let events = load(
        &store,
        &[EventFilter::for_aggregate(
            "raw.bytes",
            LEDGER,
            aggregate_id.clone(),
        )],
    )
    .await;
    let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_slice()).collect();
    assert_eq!(
        data,
        [bytes.as_slice(), b"\0", b""],
        "conformance (raw_appends): bytes round-trip exactly, empty data included"
    );
    let metadata: Vec<S::Metadata> = events.iter().map(|e| e.metadata.clone()).collect();
    assert_eq!(
        metadata,
        [
            S::Metadata::sample(7),
            S::Metadata::sample(9),
            S::Metadata::sample(11)
        ]
    );
}

/// A transaction dropped before its commit writes nothing.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn dropped_transaction<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("dropped");
    {
        let mut tx = store.begin::<Unchecked>(ACCOUNT, aggregate_id.clone(), None);
        assert!(tx.append(Opened { n: 1 }, S::Metadata::sample(1)).is_ok());
        assert_eq!(tx.len(), 1);
    }
    assert_eq!(
        version(&store, ACCOUNT, &aggregate_id).await,
        None,
        "conformance (dropped_transaction)"
    );
    assert!(
        load(&store, &all_filters::<S>()).await.is_empty(),
        "conformance (dropped_transaction)"
    );
}

/// A batch is written whole: all its events, contiguous in the stream, in
/// order; a refused batch leaves no event behind.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn atomic_batches<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("atomic");
    let batch: Vec<u64> = (1..=50).collect();
    let last = commit_unchecked(&store, ACCOUNT, &aggregate_id, &batch).await;

    let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id.clone(), None);
    for n in 100..150 {
        assert!(tx.append(Opened { n }, S::Metadata::sample(n)).is_ok());
    }
    let refused = bounded("commit", tx.commit()).await;
    assert!(
        refused.as_ref().is_err_and(AppendError::is_conflict),
        "conformance (atomic_batches): a create on an existing stream must conflict, got {refused:?}"
    );

    let events = load(&store, &stream_filters::<S>(ACCOUNT, &aggregate_id)).await;
    assert_eq!(
        numbers(&events, &store),
        batch,
        "conformance (atomic_batches): the whole batch, in order, nothing of the refused one"
    );
    assert_eq!(events.last().map(|e| e.position), Some(last));
}

/// Ids and kinds are data: quotes, SQL metacharacters, LIKE wildcards,
/// unicode and the empty string are stored and found exactly.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn awkward_names<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let names = [
        "",
        "it's",
        "\"quoted\"",
        "a;DROP TABLE events;--",
        "100%",
        "under_score",
        "back\\slash",
        "клиент-🦀",
        " spaced ",
    ];
    for (n, name) in (1..).zip(names) {
        let aggregate_id = id::<S>(name);
        let bytes = name.as_bytes();
        let appended = bounded(
            "append",
            store.append_expecting_new(
                name,
                &aggregate_id,
                NonEmpty::new(raw(name, bytes, S::Metadata::sample(n))),
            ),
        )
        .await;
        assert!(
            appended.is_ok(),
            "conformance (awkward_names): appending to {name:?} failed: {appended:?}"
        );
    }
    // "100%" must not match "100" or "1000"; "under_score" must not match "underXscore".
    let decoy = id::<S>("underXscore");
    let decoy_write = bounded(
        "append",
        store.append(
            "underXscore",
            &decoy,
            None,
            NonEmpty::new(raw("underXscore", b"decoy", S::Metadata::sample(0))),
        ),
    )
    .await;
    assert!(decoy_write.is_ok());

    for (n, name) in (1..).zip(names) {
        let aggregate_id = id::<S>(name);
        let by_stream = load(
            &store,
            &[EventFilter::for_aggregate(name, name, aggregate_id.clone())],
        )
        .await;
        assert_eq!(
            by_stream.len(),
            1,
            "conformance (awkward_names): stream {name:?} must hold its one event"
        );
        let event = &by_stream[0];
        assert_eq!(event.kind, name);
        assert_eq!(event.aggregate_kind, name);
        assert_eq!(event.aggregate_id, aggregate_id);
        assert_eq!(event.data, name.as_bytes());
        assert_eq!(event.metadata, S::Metadata::sample(n));
        let by_kind = load(&store, &[EventFilter::for_event(name)]).await;
        assert_eq!(
            by_kind.len(),
            1,
            "conformance (awkward_names): kind {name:?} must match exactly one event"
        );
        assert_eq!(version(&store, name, &aggregate_id).await, Some(event.position));
    }
}

/// A 1 MiB payload round-trips byte for byte.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn large_payload<S>(store: S)
where
    S: EventStore,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let aggregate_id = id::<S>("large");
    // Deterministic, incompressible-looking bytes.
    let mut state: u32 = 0x9E37_79B9;
    let bytes: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    let appended = bounded(
        "append",
        store.append_expecting_new(
            LEDGER,
            &aggregate_id,
            NonEmpty::new(raw("large.blob", &bytes, S::Metadata::sample(1))),
        ),
    )
    .await;
    assert!(
        appended.is_ok(),
        "conformance (large_payload): appending 1 MiB failed: {appended:?}"
    );
    let events = load(
        &store,
        &[EventFilter::for_aggregate("large.blob", LEDGER, aggregate_id)],
    )
    .await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0].data == bytes,
        "conformance (large_payload): the 1 MiB payload came back changed"
    );
}

/// `writers` tasks read the same version and commit at once: exactly one
/// wins, every other gets a conflict, and the stream holds the first batch
/// and the winner's, nothing else.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn optimistic_race<S>(store: S, writers: u64)
where
    S: EventStore + 'static,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let store = Arc::new(store);
    let aggregate_id = id::<S>("race");
    let base = commit_unchecked(&*store, ACCOUNT, &aggregate_id, &[0]).await;
    let start = Arc::new(tokio::sync::Barrier::new(
        usize::try_from(writers).unwrap_or(usize::MAX),
    ));
    let mut tasks = Vec::new();
    for writer in 1..=writers {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        let aggregate_id = aggregate_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin::<Optimistic>(ACCOUNT, aggregate_id, Some(base));
            for part in 0..3 {
                let n = writer * 100 + part;
                assert!(
                    tx.append(
                        Noted {
                            n,
                            text: format!("writer {writer}")
                        },
                        S::Metadata::sample(n)
                    )
                    .is_ok()
                );
            }
            start.wait().await;
            (
                writer,
                tx.commit().await.map(|written| written.map(|w| w.last_position)),
            )
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (writer, outcome) = match bounded("a racing commit", task).await {
            Ok(result) => result,
            Err(error) => panic!("conformance (optimistic_race): a writer task failed: {error}"),
        };
        match outcome {
            Ok(Some(last)) => winners.push((writer, last)),
            Err(AppendError::Conflict(conflict)) => {
                assert_eq!(conflict.expected, Some(base));
                conflicts += 1;
            }
            other => panic!("conformance (optimistic_race): writer {writer} got {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "conformance (optimistic_race): exactly one writer must win, winners: {winners:?}"
    );
    assert_eq!(
        conflicts,
        writers - 1,
        "conformance (optimistic_race): every other writer must conflict"
    );
    let (winner, last) = winners[0];
    let events = load(&*store, &stream_filters::<S>(ACCOUNT, &aggregate_id)).await;
    let expected: Vec<u64> = [0]
        .into_iter()
        .chain((0..3).map(|part| winner * 100 + part))
        .collect();
    assert_eq!(
        numbers(&events, &*store),
        expected,
        "conformance (optimistic_race): the base event and the winner's batch, nothing else"
    );
    assert_eq!(version(&*store, ACCOUNT, &aggregate_id).await, Some(last));
    let distinct: HashSet<String> = events.iter().map(|e| format!("{:?}", e.position)).collect();
    assert_eq!(
        distinct.len(),
        events.len(),
        "conformance (optimistic_race): positions are unique"
    );
}

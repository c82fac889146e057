//! Idempotent commands: a command id applies once, however often and from
//! however many tasks it is sent; store errors are retried with the same
//! event ids; the version a command requires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::codec::Codec;
use sourcery_core::concurrency::ExpectedVersion;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::id::CommandId;
use sourcery_core::repository::{CommandError, CommandOptions, Repository, RetryPolicy};
use sourcery_core::store::{
    AppendOutcome, EventFilter, EventId, EventStore, IdReuse, NonEmpty, PersistableEvent, StoredEvent,
    inmemory,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;

impl DomainEvent for Opened {
    const KIND: &'static str = "counter.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    n: u64,
}

impl DomainEvent for Added {
    const KIND: &'static str = "counter.added";
}

#[derive(Debug, Clone, PartialEq)]
enum CounterEvent {
    Opened(Opened),
    Added(Added),
}

impl EventPayload for CounterEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened(event) => event.kind(),
            Self::Added(event) => event.kind(),
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        match self {
            Self::Opened(event) => event.encode_with(codec),
            Self::Added(event) => event.encode_with(codec),
        }
    }
}

impl DecodeEvent for CounterEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Opened::KIND, Added::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if let Some(opened) = Opened::decode_with(codec, event)? {
            return Ok(Some(Self::Opened(opened)));
        }
        Ok(Added::decode_with(codec, event)?.map(Self::Added))
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("the counter would pass its limit of {LIMIT}")]
struct Full;

const LIMIT: u64 = 10;

#[derive(Debug, Default)]
struct Counter {
    total: u64,
    additions: u32,
}

impl Aggregate for Counter {
    const KIND: &'static str = "counter";
    type Id = String;
    type Event = CounterEvent;
    type Error = Full;

    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Added(added) = event {
            self.total += added.n;
            self.additions += 1;
        }
    }
}

struct Open;
/// Adds `n`, refused when the total would pass the limit; `Twice` adds it in
/// two events.
struct Add(u64);
struct Twice(u64);

impl HandleCreate<Open> for Counter {
    fn handle_create(_: &Open) -> Result<Vec<CounterEvent>, Full> {
        Ok(vec![CounterEvent::Opened(Opened)])
    }
}

impl Handle<Add> for Counter {
    fn handle(&self, add: &Add) -> Result<Vec<CounterEvent>, Full> {
        if self.total + add.0 > LIMIT {
            return Err(Full);
        }
        Ok(vec![CounterEvent::Added(Added { n: add.0 })])
    }
}

impl Handle<Twice> for Counter {
    fn handle(&self, add: &Twice) -> Result<Vec<CounterEvent>, Full> {
        Ok(vec![
            CounterEvent::Added(Added { n: add.0 }),
            CounterEvent::Added(Added { n: add.0 }),
        ])
    }
}

type Store = inmemory::Store<String, ()>;

async fn opened(store: Store) -> (Repository<Store>, String) {
    let repository = Repository::new(store);
    let id = "c-1".to_owned();
    repository
        .create::<Counter, _>(&id, &Open, ())
        .await
        .expect("the counter opens");
    (repository, id)
}

fn keyed(key: &str) -> CommandOptions<u64> {
    CommandOptions::new().command_id(CommandId::from_key(key))
}

#[tokio::test]
async fn a_command_id_applies_once_and_a_second_run_is_a_replay_of_the_first() {
    let (repository, id) = opened(Store::new()).await;
    let first = repository
        .execute_with::<Counter, _>(&id, &Twice(2), (), keyed("twice-1"))
        .await
        .expect("the first run");
    assert!(!first.replayed);
    assert_eq!(first.events, 2);
    let command = CommandId::from_key("twice-1");
    assert_eq!(first.event_ids, vec![command.event_id(0), command.event_id(1)]);
    let again = repository
        .execute_with::<Counter, _>(&id, &Twice(2), (), keyed("twice-1"))
        .await
        .expect("the second run");
    assert!(again.replayed, "{again:?}");
    assert_eq!(
        (again.last_position, again.events, &again.event_ids),
        (first.last_position, 2, &first.event_ids)
    );
    let counter = repository.load::<Counter>(&id).await.expect("load");
    assert_eq!((counter.total, counter.additions), (4, 2));
    assert_eq!(
        repository.store().len(),
        3,
        "the creation and one run's two events"
    );
}

#[tokio::test]
async fn a_replay_returns_the_first_outcome_even_where_deciding_again_would_refuse() {
    let (repository, id) = opened(Store::new()).await;
    let first = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), keyed("add-7"))
        .await
        .expect("7 fits under the limit");
    // Deciding again would refuse (7 + 7 > 10): the replay never decides.
    let again = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), keyed("add-7"))
        .await
        .expect("the retry is told the first outcome, not a rejection");
    assert!(again.replayed);
    assert_eq!(again.last_position, first.last_position);
    let refused = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), keyed("add-7-again"))
        .await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(Full))),
        "a new command id decides afresh: {refused:?}"
    );
}

#[tokio::test]
async fn a_command_id_assumed_new_still_applies_once_and_is_found_after_a_refusal() {
    let (repository, id) = opened(Store::new()).await;
    let assumed = |key: &str| keyed(key).assume_new();
    let first = repository
        .execute_with::<Counter, _>(&id, &Twice(1), (), assumed("twice"))
        .await
        .expect("the first run");
    assert!(!first.replayed && first.attempts == 1, "{first:?}");
    // Decided again alike: the store recognises the ids.
    let again = repository
        .execute_with::<Counter, _>(&id, &Twice(1), (), assumed("twice"))
        .await
        .expect("the second run");
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.last_position, first.last_position);
    // Decided again, refused (7 + 7 > 10): looked for after the refusal.
    let seven = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), assumed("add-7"))
        .await
        .expect("7 fits");
    let refused_then_found = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), assumed("add-7"))
        .await
        .expect("the rejection leads to the first run's outcome");
    assert!(
        refused_then_found.replayed && refused_then_found.attempts == 2,
        "{refused_then_found:?}"
    );
    assert_eq!(refused_then_found.last_position, seven.last_position);
    // A new command id that is refused stays refused.
    let refused = repository
        .execute_with::<Counter, _>(&id, &Add(7), (), assumed("add-7-again"))
        .await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(Full))),
        "{refused:?}"
    );
    let counter = repository.load::<Counter>(&id).await.expect("load");
    assert_eq!((counter.total, counter.additions), (9, 3));
    // A creation assumed new, run again: found after `AlreadyExists`.
    let fresh = "c-2".to_owned();
    let created = repository
        .create_with::<Counter, _>(&fresh, &Open, (), assumed("open-c-2"))
        .await
        .expect("create");
    let recreated = repository
        .create_with::<Counter, _>(&fresh, &Open, (), assumed("open-c-2"))
        .await
        .expect("found");
    assert!(recreated.replayed);
    assert_eq!(recreated.last_position, created.last_position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_runs_of_one_command_id_apply_once_and_agree_on_the_outcome() {
    let (repository, id) = opened(Store::new()).await;
    let repository = Arc::new(repository);
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut runs = Vec::new();
    for _ in 0..16 {
        let (repository, start, id) = (Arc::clone(&repository), Arc::clone(&start), id.clone());
        runs.push(tokio::spawn(async move {
            start.wait().await;
            repository
                .execute_with::<Counter, _>(&id, &Twice(1), (), keyed("concurrent"))
                .await
        }));
    }
    let mut outcomes = Vec::new();
    for run in runs {
        let outcome = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("each run finishes within 10 s")
            .expect("the task does not panic")
            .expect("every run is told the command's outcome");
        outcomes.push(outcome);
    }
    let first = outcomes[0].last_position;
    assert!(
        outcomes.iter().all(|outcome| outcome.last_position == first),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|outcome| !outcome.replayed).count(),
        1,
        "{outcomes:?}"
    );
    let counter = repository.load::<Counter>(&id).await.expect("load");
    assert_eq!(counter.additions, 2, "one run's two events");
}

#[tokio::test]
async fn a_creation_with_a_command_id_replays_instead_of_already_exists() {
    let repository = Repository::new(Store::new());
    let id = "c-9".to_owned();
    let first = repository
        .create_with::<Counter, _>(&id, &Open, (), keyed("open-c-9"))
        .await
        .expect("create");
    let again = repository
        .create_with::<Counter, _>(&id, &Open, (), keyed("open-c-9"))
        .await
        .expect("the creation retried is its first outcome");
    assert!(again.replayed);
    assert_eq!(again.last_position, first.last_position);
    let other = repository
        .create_with::<Counter, _>(&id, &Open, (), keyed("open-c-9-other"))
        .await;
    assert!(
        matches!(other, Err(CommandError::AlreadyExists { .. })),
        "another command id meets an existing counter: {other:?}"
    );
}

#[tokio::test]
async fn a_command_id_sent_to_another_aggregate_is_refused_as_reused() {
    let (repository, id) = opened(Store::new()).await;
    let other = "c-2".to_owned();
    repository
        .create::<Counter, _>(&other, &Open, ())
        .await
        .expect("create");
    repository
        .execute_with::<Counter, _>(&id, &Add(1), (), keyed("add-1"))
        .await
        .expect("the first");
    let reused = repository
        .execute_with::<Counter, _>(&other, &Add(1), (), keyed("add-1"))
        .await;
    match reused {
        Err(CommandError::IdReused(reused)) => assert_eq!(reused.reason, IdReuse::OtherStream),
        other => panic!("expected CommandError::IdReused, got {other:?}"),
    }
    assert_eq!(repository.load::<Counter>(&other).await.expect("load").total, 0);
}

#[tokio::test]
async fn the_version_a_command_requires() {
    let (repository, id) = opened(Store::new()).await;
    let read = repository
        .load_versioned::<Counter>(&id)
        .await
        .expect("load")
        .version
        .expect("a version");
    repository
        .execute::<Counter, _>(&id, &Add(1), ())
        .await
        .expect("add");
    let stale = repository
        .execute_with::<Counter, _>(
            &id,
            &Add(1),
            (),
            CommandOptions::new().expected(ExpectedVersion::Exact(read)),
        )
        .await;
    match stale {
        Err(CommandError::Conflict(conflict)) => {
            assert_eq!(conflict.expected, ExpectedVersion::Exact(read));
        }
        other => panic!("a command requiring a version the counter left conflicts: {other:?}"),
    }
    let current = repository
        .load_versioned::<Counter>(&id)
        .await
        .expect("load")
        .version;
    let at_current = CommandOptions::new().expected(ExpectedVersion::Exact(current.expect("a version")));
    repository
        .execute_with::<Counter, _>(&id, &Add(1), (), at_current)
        .await
        .expect("the current version commits");
    let new = repository
        .execute_with::<Counter, _>(
            &id,
            &Add(1),
            (),
            CommandOptions::new().expected(ExpectedVersion::NoStream),
        )
        .await;
    assert!(new.as_ref().is_err_and(CommandError::is_conflict), "{new:?}");
    repository
        .execute_with::<Counter, _>(
            &id,
            &Add(1),
            (),
            CommandOptions::new().expected(ExpectedVersion::StreamExists),
        )
        .await
        .expect("any version of an existing counter commits");
    assert_eq!(repository.load::<Counter>(&id).await.expect("load").total, 3);
}

/// A store failure, as a flaky connection gives.
#[derive(Debug, thiserror::Error)]
#[error("connection lost (injected)")]
struct Lost;

/// The in-memory store with injected failures of appends: each of the
/// first `failures` appends fails with [`Lost`], after writing the batch
/// when `lands` (an acknowledgement lost) or before (a request lost).
#[derive(Debug, Clone)]
struct Flaky {
    inner: Store,
    failures: Arc<AtomicU32>,
    lands: bool,
}

impl Flaky {
    fn new(failures: u32, lands: bool) -> Self {
        Self {
            inner: Store::new(),
            failures: Arc::new(AtomicU32::new(failures)),
            lands,
        }
    }

    /// Whether this append is to fail (and counts it).
    fn fails(&self) -> bool {
        self.failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok()
    }

    async fn wrap(
        &self,
        outcome: impl Future<Output = AppendOutcome<u64, std::convert::Infallible>>,
    ) -> AppendOutcome<u64, Lost> {
        let fails = self.fails();
        if fails && !self.lands {
            return Err(sourcery_core::store::AppendError::Store(Lost));
        }
        let outcome = outcome.await.map_err(|error| match error {
            sourcery_core::store::AppendError::Conflict(conflict) => {
                sourcery_core::store::AppendError::Conflict(conflict)
            }
            sourcery_core::store::AppendError::Invalid(invalid) => {
                sourcery_core::store::AppendError::Invalid(invalid)
            }
            sourcery_core::store::AppendError::IdReused(reused) => {
                sourcery_core::store::AppendError::IdReused(reused)
            }
            other => panic!("the in-memory store does not fail: {other:?}"),
        });
        if fails {
            return Err(sourcery_core::store::AppendError::Store(Lost));
        }
        outcome
    }
}

impl EventStore for Flaky {
    type Id = String;
    type Position = u64;
    type Error = Lost;
    type Codec = sourcery_core::codec::JsonCodec;
    type Metadata = ();

    fn codec(&self) -> &Self::Codec {
        self.inner.codec()
    }

    async fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
    ) -> Result<Option<u64>, Lost> {
        Ok(self
            .inner
            .stream_version(aggregate_kind, aggregate_id)
            .await
            .unwrap_or_else(|never| match never {}))
    }

    async fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        expected_version: Option<u64>,
        events: NonEmpty<PersistableEvent<()>>,
    ) -> AppendOutcome<u64, Lost> {
        self.wrap(
            self.inner
                .append(aggregate_kind, aggregate_id, expected_version, events),
        )
        .await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        events: NonEmpty<PersistableEvent<()>>,
    ) -> AppendOutcome<u64, Lost> {
        self.wrap(
            self.inner
                .append_expecting_new(aggregate_kind, aggregate_id, events),
        )
        .await
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<String, u64>],
    ) -> Result<Vec<StoredEvent<String, u64, ()>>, Lost> {
        Ok(self
            .inner
            .load_events(filters)
            .await
            .unwrap_or_else(|never| match never {}))
    }
}

async fn flaky_counter(failures: u32, lands: bool) -> (Repository<Flaky>, String) {
    let store = Flaky::new(0, lands);
    let repository = Repository::new(store.clone());
    let id = "c-1".to_owned();
    repository
        .create::<Counter, _>(&id, &Open, ())
        .await
        .expect("create");
    store.failures.store(failures, Ordering::SeqCst);
    (repository, id)
}

fn retried() -> RetryPolicy {
    RetryPolicy::new()
        .store_errors(3)
        .backoff(Duration::ZERO, Duration::ZERO)
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_and_found_written() {
    let (repository, id) = flaky_counter(1, true).await;
    let outcome = repository
        .execute_with::<Counter, _>(&id, &Add(3), (), keyed("lost-ack").retry(retried()))
        .await
        .expect("the retry finds the command written");
    assert_eq!((outcome.attempts, outcome.replayed), (2, true), "{outcome:?}");
    let counter = repository.load::<Counter>(&id).await.expect("load");
    assert_eq!((counter.total, counter.additions), (3, 1), "applied once");
}

#[tokio::test]
async fn a_lost_request_is_retried_and_written_once() {
    let (repository, id) = flaky_counter(2, false).await;
    let outcome = repository
        .execute_with::<Counter, _>(&id, &Add(3), (), keyed("lost-request").retry(retried()))
        .await
        .expect("the third attempt writes");
    assert_eq!((outcome.attempts, outcome.replayed), (3, false), "{outcome:?}");
    assert_eq!(repository.load::<Counter>(&id).await.expect("load").additions, 1);
}

#[tokio::test]
async fn execute_with_retry_picks_a_command_id_so_its_own_retries_never_duplicate() {
    let (repository, id) = flaky_counter(2, true).await;
    let outcome = repository
        .execute_with_retry::<Counter, _>(&id, &Add(2), (), 0)
        .await
        .expect("retried after the lost acknowledgements");
    assert!(outcome.replayed && outcome.attempts == 2, "{outcome:?}");
    assert_eq!(repository.load::<Counter>(&id).await.expect("load").additions, 1);
}

#[tokio::test]
async fn store_errors_are_returned_once_the_retries_are_spent_and_not_retried_by_default() {
    let (repository, id) = flaky_counter(5, false).await;
    let spent = repository
        .execute_with::<Counter, _>(&id, &Add(1), (), keyed("spent").retry(retried()))
        .await;
    assert!(matches!(spent, Err(CommandError::Store(Lost))), "{spent:?}");
    let (repository, id) = flaky_counter(1, false).await;
    let once = repository.execute::<Counter, _>(&id, &Add(1), ()).await;
    assert!(
        matches!(once, Err(CommandError::Store(Lost))),
        "execute does not retry: {once:?}"
    );
    assert_eq!(repository.load::<Counter>(&id).await.expect("load").additions, 0);
}

#[tokio::test]
async fn plain_appends_get_fresh_ids_and_a_retried_transaction_replays() {
    let store = Store::new();
    let mut tx = store.begin::<sourcery_core::concurrency::Optimistic>("counter", "c-5".to_owned(), None);
    tx.append(Opened, ()).expect("encode");
    let ids: Vec<EventId> = tx.event_ids();
    let first = tx.commit().await.expect("commit").expect("written");
    let mut retry = store.begin::<sourcery_core::concurrency::Optimistic>("counter", "c-5".to_owned(), None);
    retry.append_with_id(ids[0], Opened, ()).expect("encode");
    let again = retry
        .commit()
        .await
        .expect("a replay, not a conflict")
        .expect("written");
    assert!(again.replayed && again.last_position == first.last_position);
    let loaded = store
        .load_events(&[EventFilter::for_stream("counter", "c-5".to_owned())])
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(loaded.iter().map(|event| event.id).collect::<Vec<_>>(), ids);
}

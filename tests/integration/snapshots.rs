//! Snapshots through the repository: loads replay only the tail; a snapshot
//! of another schema version is ignored and replaced; a corrupt snapshot or
//! a failing snapshot store falls back to replay and never fails a command;
//! unchecked writers racing on one stream leave snapshots that equal a full
//! replay; projections resume from snapshots taken at the store's frontier.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::repository::{CommandOutcome, Repository as RepositoryOf};
use sourcery::snapshot::{
    self, SaveOutcome, Snapshot, SnapshotFrontier, SnapshotKey, SnapshotPolicy, SnapshotProblem,
    SnapshotStore,
};
use sourcery::store::{
    AppendOutcome, EventFilter, EventStore, GloballyOrdered, JsonCodec, NonEmpty, PersistableEvent,
    StoredEvent, inmemory,
};
use sourcery::{
    Aggregate, Apply, ApplyProjection, DomainEvent, Handle, HandleCreate, Projection, Repository,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened {
    owner: String,
}

impl DomainEvent for Opened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "account.deposited";
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(id = String, error = Never, events(Opened, Deposited))]
struct Account {
    owner: String,
    balance: u64,
    /// Every amount in order: a missed, repeated or reordered event shows.
    history: Vec<u64>,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
        self.history.push(event.amount);
    }
}

struct Open;
struct Deposit(u64);

impl HandleCreate<Open> for Account {
    fn handle_create(_: &Open) -> Result<Vec<AccountEvent>, Never> {
        Ok(vec![Opened { owner: "Ada".into() }.into()])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, Never> {
        Ok(vec![Deposited { amount: command.0 }.into()])
    }
}

// ANCHOR: hand_written
/// The same stream read by a newer build whose state changed shape: it
/// bumped `SNAPSHOT_VERSION`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct AccountV2 {
    balance: u64,
    deposits: u64,
}

impl Aggregate for AccountV2 {
    const KIND: &'static str = Account::KIND;
    const SNAPSHOT_VERSION: u32 = 2;
    type Id = String;
    type Event = AccountEvent;
    type Error = Never;

    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited(deposit) = event {
            self.balance += deposit.amount;
            self.deposits += 1;
        }
    }
}
// ANCHOR_END: hand_written

impl Handle<Deposit> for AccountV2 {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, Never> {
        Ok(vec![Deposited { amount: command.0 }.into()])
    }
}

/// An event store that counts the events its loads return and can report a
/// snapshot frontier below the newest event (as PostgreSQL does while a
/// transaction is in flight).
#[derive(Debug, Clone, Default)]
struct Counting {
    inner: inmemory::Store<String, ()>,
    loaded: Arc<AtomicUsize>,
    frontier: Arc<Mutex<Option<u64>>>,
}

impl Counting {
    fn take_loaded(&self) -> usize {
        self.loaded.swap(0, Ordering::SeqCst)
    }

    fn set_frontier(&self, frontier: Option<u64>) {
        *self.frontier.lock().unwrap_or_else(PoisonError::into_inner) = frontier;
    }
}

impl EventStore for Counting {
    type Id = String;
    type Position = u64;
    type Error = std::convert::Infallible;
    type Codec = JsonCodec;
    type Metadata = ();

    fn codec(&self) -> &JsonCodec {
        self.inner.codec()
    }

    async fn stream_version<'a>(&'a self, kind: &'a str, id: &'a String) -> Result<Option<u64>, Self::Error> {
        self.inner.stream_version(kind, id).await
    }

    async fn append<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        expected: Option<u64>,
        events: NonEmpty<PersistableEvent<()>>,
    ) -> AppendOutcome<u64, Self::Error> {
        self.inner.append(kind, id, expected, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        events: NonEmpty<PersistableEvent<()>>,
    ) -> AppendOutcome<u64, Self::Error> {
        self.inner.append_expecting_new(kind, id, events).await
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<String, u64>],
    ) -> Result<Vec<StoredEvent<String, u64, ()>>, Self::Error> {
        let events = self.inner.load_events(filters).await?;
        // Let other tasks run between a load and what follows it, so racing
        // writers interleave as they would on a real database.
        tokio::task::yield_now().await;
        self.loaded.fetch_add(events.len(), Ordering::SeqCst);
        Ok(events)
    }
}

impl GloballyOrdered for Counting {}

impl SnapshotFrontier for Counting {
    async fn snapshot_frontier(&self) -> Result<Option<u64>, Self::Error> {
        Ok(*self.frontier.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn every(n: u64) -> SnapshotPolicy {
    SnapshotPolicy::EveryNEvents(NonZeroU64::new(n).expect("positive"))
}

fn id(text: &str) -> String {
    text.to_owned()
}

async fn deposit_many<R>(repository: &R, id: &str, amounts: std::ops::Range<u64>)
where
    R: Deposits,
{
    for amount in amounts {
        let outcome = repository.deposit(id, amount).await;
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    }
}

/// `execute(Deposit)` on repositories of any snapshot setting.
trait Deposits {
    async fn deposit(&self, id: &str, amount: u64) -> CommandOutcome<u64>;
}

impl<S, C, Snap> Deposits for RepositoryOf<S, C, Snap>
where
    S: EventStore<Id = String, Position = u64, Metadata = ()>,
    C: sourcery::concurrency::ConcurrencyStrategy,
    Snap: snapshot::AggregateSnapshots<Account, u64>,
{
    async fn deposit(&self, id: &str, amount: u64) -> CommandOutcome<u64> {
        self.execute::<Account, _>(&id.to_owned(), &Deposit(amount), ())
            .await
            .expect("deposit")
    }
}

#[tokio::test]
async fn a_load_starts_from_the_snapshot_and_replays_only_the_tail() {
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(every(10));
    let plain = Repository::new(events.clone());
    let repository = Repository::new(events.clone()).with_snapshots(snapshots.clone());
    let acc = id("ACC-1");

    repository
        .create::<Account, _>(&acc, &Open, ())
        .await
        .expect("create");
    deposit_many(&repository, &acc, 1..26).await;
    // 26 events: snapshots after the 10th and the 20th.
    let key = SnapshotKey::for_aggregate::<Account>(&acc).expect("key");
    let kept = snapshots.load(&key).await.expect("load").expect("a snapshot");
    assert_eq!((kept.position, kept.schema_version), (20, 1));

    events.take_loaded();
    let loaded = repository.load_versioned::<Account>(&acc).await.expect("load");
    assert_eq!(
        events.take_loaded(),
        6,
        "only the events after the snapshot are read"
    );
    assert_eq!(
        (loaded.snapshot_position, loaded.replayed, loaded.version),
        (Some(20), 6, Some(26))
    );

    let full = plain.load_versioned::<Account>(&acc).await.expect("full replay");
    assert_eq!(events.take_loaded(), 26);
    assert_eq!((full.snapshot_position, full.replayed), (None, 26));
    assert_eq!(loaded.state, full.state);
    assert_eq!(loaded.state.history, (1..26).collect::<Vec<_>>());

    // A command on a snapshotted aggregate reads only the tail too.
    repository
        .execute::<Account, _>(&acc, &Deposit(100), ())
        .await
        .expect("deposit");
    assert_eq!(events.take_loaded(), 6);
    assert_eq!(
        repository.load::<Account>(&acc).await.expect("load").balance,
        325 + 100
    );
}

#[tokio::test]
async fn a_snapshot_of_another_schema_version_is_ignored_then_replaced() {
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(SnapshotPolicy::Always);
    let repository = Repository::new(events.clone()).with_snapshots(snapshots.clone());
    let acc = id("ACC-V");
    repository
        .create::<Account, _>(&acc, &Open, ())
        .await
        .expect("create");
    deposit_many(&repository, &acc, 1..10).await;
    let key = SnapshotKey::for_aggregate::<Account>(&acc).expect("key");
    assert_eq!(
        snapshots
            .load(&key)
            .await
            .expect("load")
            .map(|s| s.schema_version),
        Some(1)
    );

    // The new build ignores the version-1 snapshot: a full replay, no warning.
    events.take_loaded();
    let v2 = repository
        .load_versioned::<AccountV2>(&acc)
        .await
        .expect("load v2");
    assert_eq!(events.take_loaded(), 10);
    assert_eq!((v2.snapshot_position, v2.replayed), (None, 10));
    assert!(v2.warnings.is_empty());
    assert_eq!(
        v2.state,
        AccountV2 {
            balance: 45,
            deposits: 9
        }
    );

    // Its next command replaces the snapshot with a version-2 one.
    let outcome = repository
        .execute::<AccountV2, _>(&acc, &Deposit(5), ())
        .await
        .expect("deposit");
    assert!(outcome.warnings.is_empty());
    let kept = snapshots.load(&key).await.expect("load").expect("a snapshot");
    assert_eq!((kept.position, kept.schema_version), (11, 2));
    let v2 = repository
        .load_versioned::<AccountV2>(&acc)
        .await
        .expect("load v2");
    assert_eq!((v2.snapshot_position, v2.replayed), (Some(11), 0));
    assert_eq!(
        v2.state,
        AccountV2 {
            balance: 50,
            deposits: 10
        }
    );

    // And the old build, still running somewhere, ignores that one.
    let v1 = repository.load_versioned::<Account>(&acc).await.expect("load v1");
    assert_eq!(
        (v1.snapshot_position, v1.replayed, v1.state.balance),
        (None, 11, 50)
    );
}

#[tokio::test]
async fn a_corrupt_snapshot_falls_back_to_replay_with_a_warning() {
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(SnapshotPolicy::Always);
    let plain = Repository::new(events.clone());
    let repository = Repository::new(events.clone()).with_snapshots(snapshots.clone());
    let acc = id("ACC-C");
    plain.create::<Account, _>(&acc, &Open, ()).await.expect("create");
    deposit_many(&plain, &acc, 1..6).await;
    let key = SnapshotKey::for_aggregate::<Account>(&acc).expect("key");
    let garbage = Snapshot {
        position: 6,
        schema_version: Account::SNAPSHOT_VERSION,
        data: b"{\"owner\": 42".to_vec(),
    };
    assert_eq!(snapshots.save(&key, garbage).await, Ok(SaveOutcome::Saved));

    let loaded = repository.load_versioned::<Account>(&acc).await.expect("load");
    assert_eq!((loaded.snapshot_position, loaded.replayed), (None, 6));
    assert_eq!(
        loaded.state,
        plain.load::<Account>(&acc).await.expect("full replay")
    );
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].problem, SnapshotProblem::Decode);
    assert!(
        loaded.warnings[0]
            .to_string()
            .contains("aggregate account \"ACC-C\"")
    );

    // The command succeeds, reports the ignored snapshot, and replaces it.
    let outcome = repository
        .execute::<Account, _>(&acc, &Deposit(10), ())
        .await
        .expect("deposit");
    assert_eq!(outcome.last_position, Some(7));
    assert_eq!(outcome.warnings.len(), 1);
    assert_eq!(outcome.warnings[0].problem, SnapshotProblem::Decode);
    let loaded = repository.load_versioned::<Account>(&acc).await.expect("load");
    assert_eq!(
        (loaded.snapshot_position, loaded.replayed, loaded.state.balance),
        (Some(7), 0, 25)
    );
    assert!(loaded.warnings.is_empty());
}

/// A snapshot store that is down.
#[derive(Debug, Clone, Default)]
struct Down {
    calls: Arc<AtomicU64>,
}

impl SnapshotStore<u64> for Down {
    type Error = std::io::Error;

    fn policy(&self) -> SnapshotPolicy {
        SnapshotPolicy::Always
    }

    async fn load<'a>(&'a self, _: &'a SnapshotKey) -> Result<Option<Snapshot<u64>>, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "snapshot database down",
        ))
    }

    async fn save<'a>(&'a self, _: &'a SnapshotKey, _: Snapshot<u64>) -> Result<SaveOutcome, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "snapshot database down",
        ))
    }
}

#[tokio::test]
async fn a_failing_snapshot_store_never_fails_a_command() {
    let events = inmemory::Store::<String, ()>::new();
    let down = Down::default();
    let repository = Repository::new(events.clone()).with_snapshots(down.clone());
    let acc = id("ACC-D");

    let created = repository
        .create::<Account, _>(&acc, &Open, ())
        .await
        .expect("create succeeds");
    let problems: Vec<_> = created.warnings.iter().map(|w| w.problem).collect();
    assert_eq!(problems, [SnapshotProblem::Save]);

    for amount in 1..=3 {
        let outcome = repository
            .execute::<Account, _>(&acc, &Deposit(amount), ())
            .await
            .expect("the command succeeds");
        let problems: Vec<_> = outcome.warnings.iter().map(|w| w.problem).collect();
        assert_eq!(problems, [SnapshotProblem::Load, SnapshotProblem::Save]);
        assert!(outcome.warnings[1].reason.contains("snapshot database down"));
    }
    let unchecked = repository.clone().without_concurrency_checking();
    let outcome = unchecked
        .execute::<Account, _>(&acc, &Deposit(4), ())
        .await
        .expect("unchecked");
    assert_eq!(outcome.warnings.len(), 2);
    assert_eq!(
        down.calls.load(Ordering::SeqCst),
        9,
        "1 save on create, a load and a save per command"
    );

    let loaded = repository
        .load_versioned::<Account>(&acc)
        .await
        .expect("load falls back to replay");
    assert_eq!(
        (loaded.state.balance, loaded.replayed, loaded.version),
        (10, 5, Some(5))
    );
    assert_eq!(loaded.warnings[0].problem, SnapshotProblem::Load);
    let plain = Repository::new(events);
    assert_eq!(plain.load::<Account>(&acc).await.expect("load"), loaded.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchecked_writers_racing_on_one_stream_leave_snapshots_equal_to_a_full_replay() {
    const TASKS: u64 = 8;
    const DEPOSITS: u64 = 50;
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(SnapshotPolicy::Always);
    let repository = Repository::new(events.clone())
        .without_concurrency_checking()
        .with_snapshots(snapshots.clone());
    let acc = id("ACC-RACE");
    repository
        .create::<Account, _>(&acc, &Open, ())
        .await
        .expect("create");

    let barrier = Arc::new(tokio::sync::Barrier::new(usize::try_from(TASKS).expect("small")));
    let writers: Vec<_> = (0..TASKS)
        .map(|task| {
            let repository = repository.clone();
            let barrier = Arc::clone(&barrier);
            let acc = acc.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                for n in 0..DEPOSITS {
                    let outcome = repository
                        .execute::<Account, _>(&acc, &Deposit(task * 1_000 + n), ())
                        .await
                        .expect("an unchecked deposit");
                    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("writers finish")
            .expect("no writer panicked");
    }

    let full = Repository::new(events)
        .load_versioned::<Account>(&acc)
        .await
        .expect("full replay");
    let resumed = repository
        .load_versioned::<Account>(&acc)
        .await
        .expect("snapshot + tail");
    assert_eq!(
        full.state.history.len(),
        usize::try_from(TASKS * DEPOSITS).expect("small")
    );
    assert_eq!(resumed.version, full.version);
    assert!(resumed.snapshot_position.is_some());
    assert_eq!(
        resumed.state, full.state,
        "the snapshot missed or reordered a concurrent writer's event"
    );
    // Every snapshot taken along the way was right when taken: replaying
    // from the one kept now gives the same state as above, and the final
    // snapshot sits at the stream's end (the last writer re-read up to it).
    assert_eq!(resumed.snapshot_position, full.version);
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Projection)]
#[projection(metadata = (), events(Opened, Deposited))]
struct Totals {
    accounts: u64,
    deposited: u64,
    amounts: Vec<u64>,
}

impl ApplyProjection<Opened> for Totals {
    fn apply_projection(&mut self, _: &String, _: &Opened, &(): &()) {
        self.accounts += 1;
    }
}

impl ApplyProjection<Deposited> for Totals {
    fn apply_projection(&mut self, _: &String, event: &Deposited, &(): &()) {
        self.deposited += event.amount;
        self.amounts.push(event.amount);
    }
}

#[tokio::test]
async fn a_projection_resumes_from_its_snapshot() {
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(every(5));
    let plain = Repository::new(events.clone());
    let repository = Repository::new(events.clone()).with_snapshots(snapshots.clone());
    for name in ["ACC-P1", "ACC-P2"] {
        plain
            .create::<Account, _>(&id(name), &Open, ())
            .await
            .expect("create");
        deposit_many(&plain, &id(name), 1..5).await;
    }
    // 10 events; the first load replays them all and snapshots at 10.
    events.take_loaded();
    let first = repository
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!(
        (first.snapshot_position, first.replayed, first.position),
        (None, 10, Some(10))
    );
    assert_eq!(events.take_loaded(), 10);

    deposit_many(&plain, &id("ACC-P1"), 100..103).await;
    events.take_loaded();
    let second = repository
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!(
        (second.snapshot_position, second.replayed, second.position),
        (Some(10), 3, Some(13))
    );
    assert_eq!(events.take_loaded(), 3);
    let full: Totals = plain.load_projection().await.expect("full");
    assert_eq!(second.projection, full);
    assert!(second.warnings.is_empty());

    // Another selection of events, or another snapshot version, does not
    // resume from that snapshot.
    let deposits_only = repository
        .projection::<Totals>()
        .event::<Deposited>()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!(
        (deposits_only.snapshot_position, deposits_only.replayed),
        (None, 11)
    );
    assert_eq!(deposits_only.projection.accounts, 0);
    let bumped = repository
        .projection::<Totals>()
        .with_declared()
        .snapshot_version(2)
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!((bumped.snapshot_position, bumped.replayed), (None, 13));
    assert_eq!(bumped.projection, full);
}

#[tokio::test]
async fn a_projection_snapshot_is_taken_at_the_frontier_not_past_it() {
    let events = Counting::default();
    let snapshots = snapshot::inmemory::Store::new(SnapshotPolicy::Always);
    let plain = Repository::new(events.clone());
    let repository = Repository::new(events.clone()).with_snapshots(snapshots.clone());
    plain
        .create::<Account, _>(&id("ACC-F"), &Open, ())
        .await
        .expect("create");
    deposit_many(&plain, &id("ACC-F"), 1..10).await;

    // The store says events up to 6 are final (7 could still be joined by a
    // lower position in flight): the load is complete, the snapshot stops at 6.
    events.set_frontier(Some(6));
    let loaded = repository
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!((loaded.position, loaded.replayed), (Some(10), 10));
    assert_eq!(loaded.projection.deposited, 45);
    let key = SnapshotKey::for_projection_events(
        Totals::KIND,
        &[
            EventFilter::<String, u64>::for_event(Opened::KIND),
            EventFilter::for_event(Deposited::KIND),
        ],
    )
    .expect("key");
    assert_eq!(
        snapshots.load(&key).await.expect("load").map(|s| s.position),
        Some(6)
    );

    // A frontier below the snapshot takes no new snapshot.
    events.set_frontier(Some(3));
    let again = repository
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!((again.snapshot_position, again.replayed), (Some(6), 4));
    assert_eq!(
        snapshots.load(&key).await.expect("load").map(|s| s.position),
        Some(6)
    );

    events.set_frontier(None);
    let resumed = repository
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!((resumed.snapshot_position, resumed.replayed), (Some(6), 4));
    assert_eq!(
        resumed.projection,
        plain.load_projection::<Totals>().await.expect("full")
    );
    assert_eq!(
        snapshots.load(&key).await.expect("load").map(|s| s.position),
        Some(10)
    );
}

#[tokio::test]
async fn repositories_without_snapshots_load_projections_in_full() {
    let events = inmemory::Store::<String, ()>::new();
    let plain = Repository::new(events);
    plain
        .create::<Account, _>(&id("ACC-N"), &Open, ())
        .await
        .expect("create");
    let loaded = plain
        .projection::<Totals>()
        .with_declared()
        .load_from_snapshot()
        .await
        .expect("load");
    assert_eq!(
        (
            loaded.snapshot_position,
            loaded.replayed,
            loaded.projection.accounts
        ),
        (None, 1, 1)
    );
}

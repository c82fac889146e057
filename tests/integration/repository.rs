//! Repository behaviour: loading, commands, creation races, conflicts and
//! the retry helper, errors kept apart, metadata per event.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::concurrency::{ConcurrencyConflict, ExpectedVersion};
use sourcery::metadata::EventMetadata;
use sourcery::repository::{CommandError, LoadError};
use sourcery::store::{
    AppendOutcome, EventFilter, EventStore, InvalidBatch, JsonCodec, NonEmpty, PersistableEvent, StoredEvent,
    TextField, inmemory,
};
use sourcery::test::RepositoryTestExt;
use sourcery::{Aggregate, Apply, DomainEvent, Handle, HandleCreate, Repository};

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
enum AccountError {
    #[error("amounts must be positive")]
    ZeroAmount,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = AccountError, events(Opened, Deposited))]
struct Account {
    owner: String,
    balance: u64,
    deposits: usize,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
        self.deposits += 1;
    }
}

struct Open(&'static str);
struct Deposit(u64);
/// Deposits the amount split in two events.
struct DepositTwice(u64);
/// Changes nothing.
struct Noop;

impl HandleCreate<Open> for Account {
    fn handle_create(command: &Open) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![
            Opened {
                owner: command.0.into(),
            }
            .into(),
        ])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, AccountError> {
        if command.0 == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(vec![Deposited { amount: command.0 }.into()])
    }
}

impl Handle<DepositTwice> for Account {
    fn handle(&self, command: &DepositTwice) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![
            Deposited { amount: command.0 }.into(),
            Deposited { amount: command.0 }.into(),
        ])
    }
}

impl Handle<Noop> for Account {
    fn handle(&self, _: &Noop) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(Vec::new())
    }
}

type Store = inmemory::Store<String, EventMetadata>;

fn id(text: &str) -> String {
    text.to_owned()
}

async fn all_events(store: &Store) -> Vec<StoredEvent<String, u64, EventMetadata>> {
    let filters = [
        EventFilter::for_event(Opened::KIND),
        EventFilter::for_event(Deposited::KIND),
    ];
    store.load_events(&filters).await.unwrap_or_default()
}

#[tokio::test]
async fn create_load_and_execute() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-1");
    let created = repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await;
    assert_eq!(created.map(|o| (o.events, o.attempts)).ok(), Some((1, 1)));
    let outcome = repository
        .execute::<Account, _>(&acc, &Deposit(40), EventMetadata::new())
        .await
        .expect("deposit");
    assert_eq!(outcome.events, 1);
    assert_eq!(outcome.last_position, Some(2));

    let account = repository.load::<Account>(&acc).await.expect("load");
    assert_eq!((account.owner.as_str(), account.balance), ("Ada", 40));
    let loaded = repository.load_versioned::<Account>(&acc).await.expect("load");
    assert_eq!(loaded.version, Some(2));
}

#[tokio::test]
async fn missing_aggregates_are_not_found_and_existing_ones_cannot_be_created_again() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-404");
    let missing = repository
        .execute::<Account, _>(&acc, &Deposit(1), EventMetadata::new())
        .await;
    match missing {
        Err(CommandError::NotFound {
            aggregate_kind,
            aggregate_id,
        }) => {
            assert_eq!(aggregate_kind, "account");
            assert_eq!(aggregate_id, "ACC-404");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        repository.load::<Account>(&acc).await,
        Err(LoadError::NotFound { .. })
    ));

    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    let again = repository
        .create::<Account, _>(&acc, &Open("Eve"), EventMetadata::new())
        .await;
    let error = again.expect_err("a second creation must fail");
    assert!(matches!(error, CommandError::AlreadyExists { .. }), "{error:?}");
    assert_eq!(error.to_string(), "account \"ACC-404\" already exists");
    assert_eq!(repository.load::<Account>(&acc).await.expect("load").owner, "Ada");
    assert_eq!(repository.store().len(), 1);
}

#[tokio::test]
async fn rejected_commands_and_empty_decisions_write_nothing() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-2");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");

    let rejected = repository
        .execute::<Account, _>(&acc, &Deposit(0), EventMetadata::new())
        .await;
    let error = rejected.expect_err("zero deposits are rejected");
    assert_eq!(error.as_rejection(), Some(&AccountError::ZeroAmount));
    assert_eq!(error.to_string(), "amounts must be positive");
    assert!(!error.is_conflict());

    let noop = repository
        .execute::<Account, _>(&acc, &Noop, EventMetadata::new())
        .await
        .expect("noop");
    assert_eq!((noop.events, noop.last_position), (0, None));
    assert_eq!(repository.store().len(), 1, "only the creation event is stored");
}

#[tokio::test]
async fn each_event_of_a_batch_gets_its_own_id_and_shares_the_correlation() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-3");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    let request = EventMetadata::new().with_actor("teller");
    repository
        .execute::<Account, _>(&acc, &DepositTwice(5), request.clone())
        .await
        .expect("deposit");
    let events = all_events(repository.store()).await;
    let deposits: Vec<&EventMetadata> = events[1..].iter().map(|e| &e.metadata).collect();
    assert_eq!(deposits.len(), 2);
    assert_eq!(
        *deposits[0], request,
        "the batch's events share the command's metadata"
    );
    assert_ne!(events[1].id, events[2].id, "each event has its own id");
    assert!(
        deposits
            .iter()
            .all(|m| m.correlation_id == request.correlation_id)
    );
    assert!(deposits.iter().all(|m| m.actor.as_deref() == Some("teller")));
}

#[tokio::test]
async fn a_nul_character_in_an_id_or_metadata_is_a_typed_refusal_naming_the_field() {
    let repository = Repository::new(Store::new());
    let nul_id = id("ACC\0-1");
    let refused = repository
        .create::<Account, _>(&nul_id, &Open("Ada"), EventMetadata::new())
        .await
        .expect_err("no store keeps NUL in an aggregate id");
    assert!(
        matches!(
            refused,
            CommandError::Invalid(InvalidBatch::Nul {
                field: TextField::AggregateId
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "the aggregate id holds a NUL character (U+0000), which no event store keeps"
    );
    assert!(!refused.is_conflict());

    let acc = id("ACC-NUL");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    // The second event's metadata is `next_in_batch` of the first: both
    // carry the actor, and the first is the one named.
    let refused = repository
        .execute_with_retry::<Account, _>(
            &acc,
            &DepositTwice(5),
            EventMetadata::new().with_actor("a\0da"),
            3,
        )
        .await
        .expect_err("no store keeps NUL in metadata");
    assert!(
        matches!(
            refused,
            CommandError::Invalid(InvalidBatch::Nul {
                field: TextField::Metadata { index: 0 }
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        all_events(repository.store()).await.len(),
        1,
        "only the creation is stored"
    );

    // Event data is bytes, not text: NUL in a payload is stored.
    let owner = id("ACC-NUL-OWNER");
    repository
        .create::<Account, _>(&owner, &Open("A\0da"), EventMetadata::new())
        .await
        .expect("NUL in event data is kept");
    let loaded = repository
        .load::<Account>(&owner)
        .await
        .expect("the account loads");
    assert_eq!(loaded.owner, "A\0da");
}

#[tokio::test]
async fn a_concurrent_writer_makes_an_optimistic_command_conflict_and_an_unchecked_one_append() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-4");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");

    let result = repository
        .execute_with_concurrent_event::<Account, _, _>(
            &acc,
            &Deposit(10),
            EventMetadata::new(),
            Deposited { amount: 1 },
        )
        .await;
    match result {
        Err(CommandError::Conflict(ConcurrencyConflict { expected, actual })) => {
            assert_eq!((expected, actual), (ExpectedVersion::Exact(1), Some(2)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let account = repository.load::<Account>(&acc).await.expect("load");
    assert_eq!(account.balance, 1, "only the concurrent writer's event is stored");

    let unchecked = repository.clone().without_concurrency_checking();
    unchecked
        .execute_with_concurrent_event::<Account, _, _>(
            &acc,
            &Deposit(10),
            EventMetadata::new(),
            Deposited { amount: 2 },
        )
        .await
        .expect("an unchecked command appends after the concurrent event");
    assert_eq!(repository.load::<Account>(&acc).await.expect("load").balance, 13);
}

/// An in-memory store that lets another writer sneak in an event before the
/// next `conflicts` version-checked appends, and counts loads.
#[derive(Debug, Clone)]
struct Contended {
    inner: Store,
    conflicts: Arc<AtomicUsize>,
    loads: Arc<AtomicUsize>,
}

impl EventStore for Contended {
    type Id = String;
    type Position = u64;
    type Error = std::convert::Infallible;
    type Codec = JsonCodec;
    type Metadata = EventMetadata;

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
        events: NonEmpty<PersistableEvent<EventMetadata>>,
    ) -> AppendOutcome<u64, Self::Error> {
        let interfere = expected.is_some()
            && self
                .conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if interfere {
            let data = serde_json::to_vec(&Deposited { amount: 1 }).unwrap_or_default();
            let sneaky = PersistableEvent::new(Deposited::KIND, data, EventMetadata::new());
            let written = self.inner.append(kind, id, None, NonEmpty::new(sneaky)).await;
            assert!(written.is_ok());
        }
        self.inner.append(kind, id, expected, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        events: NonEmpty<PersistableEvent<EventMetadata>>,
    ) -> AppendOutcome<u64, Self::Error> {
        self.inner.append_expecting_new(kind, id, events).await
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<String, u64>],
    ) -> Result<Vec<StoredEvent<String, u64, EventMetadata>>, Self::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_events(filters).await
    }
}

fn contended(conflicts: usize) -> Contended {
    Contended {
        inner: Store::new(),
        conflicts: Arc::new(AtomicUsize::new(conflicts)),
        loads: Arc::new(AtomicUsize::new(0)),
    }
}

#[tokio::test]
async fn the_retry_helper_reloads_and_reports_its_attempts() {
    let store = contended(2);
    let repository = Repository::new(store.clone());
    let acc = id("ACC-5");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");

    let outcome = repository
        .execute_with_retry::<Account, _>(&acc, &Deposit(10), EventMetadata::new(), 3)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(outcome.attempts, 3);
    assert_eq!(store.loads.load(Ordering::SeqCst), 3, "one load per attempt");
    let account = repository.load::<Account>(&acc).await.expect("load");
    assert_eq!(
        (account.balance, account.deposits),
        (12, 3),
        "two sneaked deposits and ours, once"
    );
}

#[tokio::test]
async fn the_retry_helper_gives_up_after_max_retries_plus_one_attempts() {
    let store = contended(5);
    let repository = Repository::new(store.clone());
    let acc = id("ACC-6");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    let result = repository
        .execute_with_retry::<Account, _>(&acc, &Deposit(10), EventMetadata::new(), 1)
        .await;
    assert!(
        result.as_ref().is_err_and(CommandError::is_conflict),
        "{result:?}"
    );
    assert_eq!(store.loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_retry_helper_returns_other_errors_at_once() {
    let store = contended(5);
    let repository = Repository::new(store.clone());
    let acc = id("ACC-7");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    let result = repository
        .execute_with_retry::<Account, _>(&acc, &Deposit(0), EventMetadata::new(), 5)
        .await;
    assert!(matches!(
        result,
        Err(CommandError::Rejected(AccountError::ZeroAmount))
    ));
    assert_eq!(store.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_racing_creations_exactly_one_wins() {
    let repository = Arc::new(Repository::new(Store::new()));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for n in 0..16 {
        let repository = Arc::clone(&repository);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let owner: &'static str = if n == 0 { "first" } else { "other" };
            repository
                .create::<Account, _>(&id("ACC-RACE"), &Open(owner), EventMetadata::new())
                .await
        }));
    }
    let mut won = 0;
    let mut already = 0;
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a creation hung")
            .expect("a creation task panicked");
        match result {
            Ok(_) => won += 1,
            Err(CommandError::AlreadyExists { .. }) => already += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((won, already), (1, 15));
    assert_eq!(repository.store().len(), 1);
}

#[tokio::test]
async fn an_event_that_no_longer_decodes_is_a_typed_error_naming_it() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-8");
    repository
        .create::<Account, _>(&acc, &Open("Ada"), EventMetadata::new())
        .await
        .expect("create");
    let broken = PersistableEvent::new(
        Deposited::KIND,
        br#"{"amount":"a lot"}"#.to_vec(),
        EventMetadata::new(),
    );
    let written = repository
        .store()
        .append("account", &acc, None, NonEmpty::new(broken))
        .await;
    assert!(written.is_ok());

    let error = repository
        .load::<Account>(&acc)
        .await
        .expect_err("the payload does not decode");
    let LoadError::Decode(decode) = &error else {
        panic!("expected a decode error, got {error:?}")
    };
    assert_eq!(decode.event_kind, "account.deposited");
    assert_eq!(decode.aggregate_kind, "account");
    assert_eq!(decode.aggregate_id, "ACC-8");
    assert_eq!(decode.position, 2);
    assert_eq!(
        error.to_string(),
        "cannot decode stored event `account.deposited` of stream `account` \"ACC-8\" at position 2"
    );
    let reason = error.source().expect("the reason is the source");
    assert_eq!(reason.to_string(), "the payload does not decode");
    assert!(reason.source().is_some(), "and the codec's error below it");

    let command = repository
        .execute::<Account, _>(&acc, &Deposit(1), EventMetadata::new())
        .await;
    assert!(matches!(command, Err(CommandError::Decode(_))), "{command:?}");
}

#[tokio::test]
async fn seeding_history_appends_without_a_version_check() {
    let repository = Repository::new(Store::new());
    let acc = id("ACC-9");
    let seeded = repository
        .seed::<Account, _>(
            &acc,
            &[Deposited { amount: 3 }, Deposited { amount: 4 }],
            EventMetadata::new(),
        )
        .await
        .expect("seed");
    assert_eq!(seeded.last_position, Some(2));
    assert_eq!(repository.load::<Account>(&acc).await.expect("load").balance, 7);
}

//! Schema evolution on every store (in memory, SQLite, PostgreSQL): events
//! written by an older release — under a kind since renamed, in an older
//! shape, of a kind since retired — load right or fail loudly, never give
//! wrong state with `Ok`.
//!
//! The older release is played by `Release1` types writing through the
//! store; today's code by the `Account` aggregate and its events (an
//! alias, three schema versions, a retired kind). Aggregates that lack the
//! alias or the retirement show the typed error a user gets when they
//! forget it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::checkpoint::inmemory::CheckpointStore as Checkpoints;
use sourcery::concurrency::Unchecked;
use sourcery::event::{DecodeFailure, UpcastError, UpcastStep};
use sourcery::projection::ProjectionEvents;
use sourcery::repository::{CommandError, LoadError};
use sourcery::runner::ProjectionRunner;
use sourcery::store::{EventFilter, EventStore, GloballyOrdered, PersistableEvent, inmemory};
use sourcery::subscription::Subscribe;
use sourcery::test::schema::EventSamples;
use sourcery::{Aggregate, Apply, ApplyProjection, DomainEvent, Handle, Projection, Repository};

const WAIT: Duration = Duration::from_secs(10);

/// What release 1 wrote.
mod release1 {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(kind = "account.opened")]
    pub(crate) struct Opened {
        pub(crate) owner: String,
    }

    /// Whole euros, under the kind later renamed.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(kind = "account.deposited")]
    pub(crate) struct Deposited {
        pub(crate) amount: u64,
    }

    /// A kind later retired.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(kind = "account.audited")]
    pub(crate) struct Audited {
        pub(crate) by: String,
    }
}

/// Today's deposit: renamed, in cents (v2), with a currency (v3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.funds-deposited", aliases("account.deposited"))]
#[event(version = 3, upcast = deposit_steps)]
struct FundsDeposited {
    cents: u64,
    currency: String,
}

fn deposit_steps(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
    let from = step.from_version();
    let value = step.json_mut()?;
    match from {
        1 => {
            let euros = value["amount"]
                .as_u64()
                .ok_or_else(|| UpcastError::invalid("`amount` is not a number"))?;
            *value = serde_json::json!({ "cents": euros * 100 });
        }
        2 => {
            let fields = value
                .as_object_mut()
                .ok_or_else(|| UpcastError::invalid("a v2 deposit is a JSON object"))?;
            fields.insert("currency".to_owned(), serde_json::json!("EUR"));
        }
        from => return Err(UpcastError::Missing { from }),
    }
    Ok(())
}

/// The same renamed event, with the alias forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.funds-deposited", version = 3, upcast = deposit_steps)]
struct FundsDepositedWithoutAlias {
    cents: u64,
    currency: String,
}

#[derive(Debug, thiserror::Error)]
#[error("a deposit must be positive")]
struct ZeroDeposit;

/// Today's aggregate.
#[derive(Debug, Default, Aggregate)]
#[aggregate(kind = "account", id = String, error = ZeroDeposit)]
#[aggregate(events(release1::Opened, FundsDeposited), retired("account.audited"))]
struct Account {
    cents: u64,
}

impl Apply<release1::Opened> for Account {
    fn apply(&mut self, _: &release1::Opened) {}
}
impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.cents += event.cents;
    }
}

struct Deposit {
    cents: u64,
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, ZeroDeposit> {
        if command.cents == 0 {
            return Err(ZeroDeposit);
        }
        Ok(vec![
            FundsDeposited {
                cents: command.cents,
                currency: "EUR".into(),
            }
            .into(),
        ])
    }
}

/// Forgot the alias.
#[derive(Debug, Default, Aggregate)]
#[aggregate(kind = "account", id = String, error = ZeroDeposit)]
#[aggregate(
    events(release1::Opened, FundsDepositedWithoutAlias),
    retired("account.audited")
)]
struct AccountWithoutAlias {
    cents: u64,
}

impl Apply<release1::Opened> for AccountWithoutAlias {
    fn apply(&mut self, _: &release1::Opened) {}
}
impl Apply<FundsDepositedWithoutAlias> for AccountWithoutAlias {
    fn apply(&mut self, event: &FundsDepositedWithoutAlias) {
        self.cents += event.cents;
    }
}
impl Handle<Deposit> for AccountWithoutAlias {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountWithoutAliasEvent>, ZeroDeposit> {
        Ok(vec![
            FundsDepositedWithoutAlias {
                cents: command.cents,
                currency: "EUR".into(),
            }
            .into(),
        ])
    }
}

/// Forgot to retire the audit kind.
#[derive(Debug, Default, Aggregate)]
#[aggregate(kind = "account", id = String, error = ZeroDeposit)]
#[aggregate(events(release1::Opened, FundsDeposited))]
struct AccountWithoutRetirement {
    cents: u64,
}

impl Apply<release1::Opened> for AccountWithoutRetirement {
    fn apply(&mut self, _: &release1::Opened) {}
}
impl Apply<FundsDeposited> for AccountWithoutRetirement {
    fn apply(&mut self, event: &FundsDeposited) {
        self.cents += event.cents;
    }
}

/// Total deposits across accounts, from every deposit whatever its kind.
#[derive(Debug, Default, Projection)]
#[projection(events(FundsDeposited))]
struct Deposits {
    cents: u64,
    applied: usize,
}

impl ApplyProjection<FundsDeposited> for Deposits {
    fn apply_projection(&mut self, _: &String, event: &FundsDeposited, (): &()) {
        self.cents += event.cents;
        self.applied += 1;
    }
}

/// The store shapes the scenarios need.
trait TestStore: EventStore<Id = String, Metadata = ()> + Subscribe + GloballyOrdered + Clone + 'static {}
impl<S> TestStore for S where
    S: EventStore<Id = String, Metadata = ()> + Subscribe + GloballyOrdered + Clone + 'static
{
}

/// Appends `events` to account `id` as release 1 did.
async fn write<S: TestStore>(store: &S, id: &str, events: Vec<PersistableEvent<()>>) -> S::Position {
    let mut tx = store.begin::<Unchecked>("account", id.to_owned(), None);
    for event in events {
        tx.append_persistable(event);
    }
    tx.commit()
        .await
        .expect("release 1 commits")
        .expect("events were buffered")
        .last_position
}

fn json(kind: &str, version: u32, payload: &serde_json::Value) -> PersistableEvent<()> {
    PersistableEvent::new(kind, serde_json::to_vec(payload).expect("JSON"), ()).with_schema_version(version)
}

fn opened() -> PersistableEvent<()> {
    json("account.opened", 1, &serde_json::json!({ "owner": "Ada" }))
}

fn deposited_v1(euros: u64) -> PersistableEvent<()> {
    json("account.deposited", 1, &serde_json::json!({ "amount": euros }))
}

/// An unknown kind is a typed error on load, execute and retry; nothing is
/// written; create sees the stream; with the alias the stream loads and
/// takes commands.
async fn renamed_kind<S: TestStore>(store: S) {
    let repository = Repository::new(store.clone());
    let id = "renamed".to_owned();
    let version = write(&store, &id, vec![opened(), deposited_v1(76)]).await;

    let error = repository
        .load::<AccountWithoutAlias>(&id)
        .await
        .expect_err("an unknown kind must not load");
    let LoadError::Decode(decode) = &error else {
        panic!("expected LoadError::Decode, got {error:?}");
    };
    assert_eq!(decode.event_kind, "account.deposited");
    assert_eq!(decode.aggregate_kind, "account");
    assert_eq!(decode.position, version, "the error names the position, typed");
    assert_eq!(decode.aggregate_id, id, "the error names the aggregate id, typed");
    let DecodeFailure::UnknownKind { expected } = &decode.reason else {
        panic!("expected UnknownKind, got {:?}", decode.reason);
    };
    assert!(expected.contains(&"account.funds-deposited"), "{expected:?}");

    let error = repository
        .execute::<AccountWithoutAlias, _>(&id, &Deposit { cents: 1 }, ())
        .await
        .expect_err("a command on an undecodable stream must fail");
    assert!(matches!(error, CommandError::Decode(_)), "{error:?}");
    let error = repository
        .execute_with_retry::<AccountWithoutAlias, _>(&id, &Deposit { cents: 1 }, (), 5)
        .await
        .expect_err("retrying does not help and does not loop");
    assert!(matches!(error, CommandError::Decode(_)), "{error:?}");
    assert_eq!(
        store.stream_version("account", &id).await.expect("version"),
        Some(version),
        "nothing was written"
    );

    // With the alias: the old deposit is upcast v1 → v3, the version is real.
    let loaded = repository.load_versioned::<Account>(&id).await.expect("loads");
    assert_eq!(loaded.state.cents, 7600);
    assert_eq!(loaded.version, Some(version));
    let outcome = repository
        .execute::<Account, _>(&id, &Deposit { cents: 24 }, ())
        .await
        .expect("takes commands");
    let written = outcome.last_position.expect("one event");
    assert_eq!(repository.load::<Account>(&id).await.expect("loads").cents, 7624);
    let stream = store
        .load_events(&[EventFilter::for_stream("account", id.clone())])
        .await
        .expect("stream");
    let last = stream.last().expect("events");
    assert_eq!(last.position, written);
    assert_eq!(
        (last.kind.as_str(), last.schema_version),
        ("account.funds-deposited", 3),
        "new events are written under the current kind and version"
    );

    // A stream holding only an unknown kind: load says why, create sees it.
    let only = "only-unknown".to_owned();
    write(&store, &only, vec![deposited_v1(1)]).await;
    let error = repository
        .load::<AccountWithoutAlias>(&only)
        .await
        .expect_err("not NotFound: the stream has an event");
    assert!(matches!(error, LoadError::Decode(_)), "{error:?}");
    let error = repository
        .create::<Account, _>(&only, &Open, ())
        .await
        .expect_err("the stream exists, whatever its kinds");
    assert!(
        matches!(error, CommandError::AlreadyExists { ref aggregate_id, .. } if *aggregate_id == only),
        "{error:?}"
    );
    assert_eq!(
        store
            .load_events(&[EventFilter::for_stream("account", only.clone())])
            .await
            .expect("stream")
            .len(),
        1,
        "the refused create wrote nothing"
    );
}

/// A retired kind is skipped on load and counts for the version; without
/// the retirement it is an error.
async fn retired_kind<S: TestStore>(store: S) {
    let repository = Repository::new(store.clone());
    let id = "retired".to_owned();
    let audited = json("account.audited", 1, &serde_json::json!({ "by": "ops" }));
    let version = write(&store, &id, vec![opened(), deposited_v1(2), audited]).await;

    let error = repository
        .load::<AccountWithoutRetirement>(&id)
        .await
        .expect_err("an unretired unknown kind must not load");
    assert!(
        matches!(&error, LoadError::Decode(decode) if decode.event_kind == "account.audited"),
        "{error:?}"
    );
    let loaded = repository.load_versioned::<Account>(&id).await.expect("loads");
    assert_eq!((loaded.state.cents, loaded.version), (200, Some(version)));
    repository
        .execute::<Account, _>(&id, &Deposit { cents: 1 }, ())
        .await
        .expect("the version is the stream's real one: no conflict");
}

/// v1, v2 and v3 payloads of one event in one stream load together.
async fn mixed_versions<S: TestStore>(store: S) {
    let repository = Repository::new(store.clone());
    let id = "mixed".to_owned();
    let v2 = json("account.funds-deposited", 2, &serde_json::json!({ "cents": 30 }));
    let v3 = json(
        "account.funds-deposited",
        3,
        &serde_json::json!({ "cents": 4, "currency": "EUR" }),
    );
    write(&store, &id, vec![opened(), deposited_v1(5), v2, v3]).await;
    let account = repository.load::<Account>(&id).await.expect("loads");
    assert_eq!(account.cents, 534);

    // A version newer than the code's is an error, not a guess.
    write(
        &store,
        &id,
        vec![json("account.funds-deposited", 4, &serde_json::json!({}))],
    )
    .await;
    let error = repository
        .load::<Account>(&id)
        .await
        .expect_err("v4 is from the future");
    assert!(
        matches!(
            &error,
            LoadError::Decode(decode) if matches!(
                decode.reason,
                DecodeFailure::UnsupportedVersion { stored: 4, current: 3 }
            )
        ),
        "{error:?}"
    );
}

/// Projections, subscriptions and a restarted runner see renamed kinds.
async fn renamed_kind_in_projections<S: TestStore>(store: S) {
    let repository = Repository::new(store.clone());
    write(&store, "p1", vec![opened(), deposited_v1(1)]).await;
    repository
        .create::<Account, _>(&"p2".to_owned(), &Open, ())
        .await
        .expect("create");
    repository
        .execute::<Account, _>(&"p2".to_owned(), &Deposit { cents: 10 }, ())
        .await
        .expect("deposit");

    let loaded: Deposits = repository.load_projection().await.expect("projection");
    assert_eq!((loaded.cents, loaded.applied), (110, 2));

    // A subscription with the projection's filters delivers both kinds.
    let filters = ProjectionEvents::<S, Deposits>::declared().filters();
    let mut subscription = store.subscribe(filters, None);
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let next = tokio::time::timeout(WAIT, futures_next(&mut subscription))
            .await
            .expect("the subscription delivers in time")
            .expect("the subscription goes on")
            .expect("the store reads");
        kinds.push(next.kind);
    }
    assert_eq!(kinds, ["account.deposited", "account.funds-deposited"]);

    let checkpoints = Checkpoints::new();
    let runner = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Deposits::default())
        .expect("start");
    let head = store.head_position().await.expect("head").expect("events");
    runner.wait_for(head, WAIT).await.expect("caught up");
    assert_eq!(runner.stop().await.expect("stop").cents, 110);

    // Release 1, still running somewhere, writes the old kind; the runner
    // restarts from its checkpoint and applies it.
    let latest = write(&store, "p1", vec![deposited_v1(3)]).await;
    let runner = ProjectionRunner::new(store.clone(), checkpoints)
        .start(Deposits::default())
        .expect("restart");
    runner.wait_for(latest, WAIT).await.expect("caught up");
    let after = runner.stop().await.expect("stop");
    assert_eq!(
        (after.cents, after.applied),
        (300, 1),
        "only the event after the checkpoint"
    );
}

struct Open;

impl sourcery::HandleCreate<Open> for Account {
    fn handle_create(_: &Open) -> Result<Vec<AccountEvent>, ZeroDeposit> {
        Ok(vec![
            release1::Opened {
                owner: "Grace".into(),
            }
            .into(),
        ])
    }
}

async fn futures_next<St: futures::Stream + Unpin>(stream: &mut St) -> Option<St::Item> {
    futures::StreamExt::next(stream).await
}

async fn every_scenario<S: TestStore>(store: impl Fn() -> S) {
    renamed_kind(store()).await;
    retired_kind(store()).await;
    mixed_versions(store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    every_scenario(inmemory::Store::<String, ()>::new).await;
    renamed_kind_in_projections(inmemory::Store::<String, ()>::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for scenario in 0..4 {
        let path = dir.path().join(format!("events-{scenario}.db"));
        let store = sourcery::store::sqlite::Store::<String, ()>::open(&path)
            .await
            .expect("open");
        match scenario {
            0 => renamed_kind(store).await,
            1 => retired_kind(store).await,
            2 => mixed_versions(store).await,
            _ => renamed_kind_in_projections(store).await,
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "DATABASE_URL is not set, and CI is: the PostgreSQL tests must run in CI"
        );
        eprintln!("PostgreSQL schema-evolution tests SKIPPED: DATABASE_URL is not set");
        return;
    };
    // One pool for every scenario's store, taken from a store so that the
    // facade's tests need no sqlx of their own.
    let pool = sourcery::store::postgres::Store::<String, ()>::connect(&url)
        .await
        .expect("connect")
        .pool()
        .clone();
    for scenario in 0..4 {
        // Named like the store crate's test schemas: its sweep drops them
        // an hour later, as it drops theirs.
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let schema = format!(
            "sourcery_t{seconds}_{}_e{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = sourcery::store::postgres::Store::<String, ()>::with_schema(pool.clone(), &schema)
            .expect("a valid schema name");
        store.migrate().await.expect("migrate");
        match scenario {
            0 => renamed_kind(store).await,
            1 => retired_kind(store).await,
            2 => mixed_versions(store).await,
            _ => renamed_kind_in_projections(store).await,
        }
    }
}

// ANCHOR: golden_samples
/// Our own events' golden samples (tests/event-samples): CI fails when a
/// change to them stops reading what was recorded.
#[test]
fn golden_samples_of_these_events() {
    EventSamples::new("tests/event-samples")
        .aggregate::<Account>()
        .event(release1::Opened { owner: "Ada".into() })
        .event(release1::Deposited { amount: 1 })
        .event(FundsDeposited {
            cents: 100,
            currency: "EUR".into(),
        })
        .event(release1::Audited { by: "ops".into() })
        .assert();
}
// ANCHOR_END: golden_samples

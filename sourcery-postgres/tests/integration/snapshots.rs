//! The PostgreSQL snapshot store: the snapshot store conformance checks; the
//! law replay = snapshot + tail over random histories (property test) on
//! the PostgreSQL event and snapshot stores; repositories load the snapshot
//! and only the tail; projection snapshots are never taken past an append in
//! flight (the safe frontier).

use crate::support;

use std::convert::Infallible;
use std::num::NonZeroU64;
use std::sync::LazyLock;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::repository::Repository;
use sourcery_core::snapshot::{
    self, SaveOutcome, Snapshot, SnapshotFrontier, SnapshotKey, SnapshotPolicy, SnapshotProblem,
    SnapshotStore as _, conformance,
};
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_postgres::{Error, SnapshotStore, Store};
use sqlx::{Connection, PgConnection};

type PgStore = Store<String, serde_json::Value>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_saves_keep_the_highest_position() {
    let Some(store) = support::store_with::<String, serde_json::Value>(16).await else {
        return;
    };
    let snapshots = store.snapshots(SnapshotPolicy::Always);
    let key = SnapshotKey::aggregate("race", "\"r\"");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (1..=16_i64)
        .map(|position| {
            let snapshots = snapshots.clone();
            let key = key.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut outcomes = Vec::new();
                for round in 0..10 {
                    let snapshot = Snapshot {
                        position: position * 100 + round,
                        schema_version: 1,
                        data: position.to_string().into_bytes(),
                    };
                    outcomes.push(snapshots.save(&key, snapshot).await.expect("save"));
                }
                outcomes
            })
        })
        .collect();
    let mut saved = 0;
    for task in tasks {
        let outcomes = support::bounded("racing saves", 60, task)
            .await
            .expect("no panic");
        saved += outcomes.iter().filter(|o| **o == SaveOutcome::Saved).count();
    }
    assert!(saved >= 10, "the winner's 10 saves all land; saw {saved}");
    let kept = snapshots.load(&key).await.expect("load").expect("a snapshot");
    assert_eq!((kept.position, kept.data), (1609, b"16".to_vec()));
}

#[tokio::test]
async fn schemas_keep_their_own_snapshots_and_a_missing_table_is_reported() {
    let (Some(a), Some(b)) = (
        support::store::<String, serde_json::Value>().await,
        support::store::<String, serde_json::Value>().await,
    ) else {
        return;
    };
    let key = SnapshotKey::projection("p");
    let at = |position| Snapshot {
        position,
        schema_version: 1,
        data: vec![1],
    };
    let in_a = a.snapshots(SnapshotPolicy::Never);
    assert_eq!(in_a.save(&key, at(5)).await.expect("save"), SaveOutcome::Saved);
    let in_b =
        SnapshotStore::with_schema(b.pool().clone(), b.schema(), SnapshotPolicy::Never).expect("valid");
    assert_eq!(in_b.load(&key).await.expect("load"), None);
    assert_eq!(in_b.save(&key, at(3)).await.expect("save"), SaveOutcome::Saved);
    assert_eq!(in_a.load(&key).await.expect("load").map(|s| s.position), Some(5));
    // The same table through another policy.
    let every_2 = in_a.with_policy(every(2));
    assert_eq!(snapshot::SnapshotStore::<i64>::policy(&every_2), every(2));
    assert_eq!(
        every_2.load(&key).await.expect("load").map(|s| s.position),
        Some(5)
    );

    let unmigrated = SnapshotStore::with_schema(
        a.pool().clone(),
        support::fresh_schema_name(),
        SnapshotPolicy::Never,
    )
    .expect("valid");
    assert!(matches!(
        unmigrated.load(&key).await,
        Err(Error::NotMigrated { .. })
    ));
    assert_eq!(unmigrated.migrate().await.expect("migrate").last(), Some(&11));
    assert_eq!(unmigrated.load(&key).await.expect("load"), None);
    assert!(matches!(
        SnapshotStore::with_schema(a.pool().clone(), "no-dashes", SnapshotPolicy::Never),
        Err(Error::InvalidSchemaName { .. })
    ));
}

// ---- The law, over random histories.

/// One runtime and one schema for every case: the pool's connections live on
/// the runtime, and each case writes a fresh aggregate.
static LAW: LazyLock<(tokio::runtime::Runtime, Option<(PgStore, SnapshotStore)>)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let stores = runtime.block_on(async {
        let store: PgStore = support::store_with(4).await?;
        let snapshots = store.snapshots(SnapshotPolicy::Never);
        Some((store, snapshots))
    });
    (runtime, stores)
});

fn step() -> impl Strategy<Value = conformance::Step> {
    (any::<u32>(), 0_u8..4, any::<bool>(), any::<bool>()).prop_map(|(amount, events, snapshot, unchecked)| {
        conformance::Step {
            amount,
            events,
            snapshot,
            unchecked,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn replay_equals_snapshot_plus_tail(steps in proptest::collection::vec(step(), 0..24)) {
        let (runtime, stores) = &*LAW;
        let Some((events, snapshots)) = stores else {
            return Ok(());
        };
        let result = runtime.block_on(conformance::replay_equals_snapshot_plus_tail(
            events,
            snapshots,
            &steps,
            serde_json::json!({ "case": steps.len() }),
        ));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

// ---- An aggregate and a projection, written by hand (this crate does not
// depend on the derive macros).

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

#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened(Opened),
    Deposited(Deposited),
}

impl EventPayload for AccountEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened(event) => event.kind(),
            Self::Deposited(event) => event.kind(),
        }
    }
    fn schema_version(&self) -> u32 {
        match self {
            Self::Opened(event) => event.schema_version(),
            Self::Deposited(event) => event.schema_version(),
        }
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        match self {
            Self::Opened(event) => event.encode_with(codec),
            Self::Deposited(event) => event.encode_with(codec),
        }
    }
}

impl DecodeEvent for AccountEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Opened::KIND, Deposited::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if let Some(event) = Opened::decode_with(codec, event)? {
            return Ok(Some(Self::Opened(event)));
        }
        Ok(Deposited::decode_with(codec, event)?.map(Self::Deposited))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: u64,
    /// Every amount in order: a missed, repeated or reordered event shows.
    history: Vec<u64>,
}

impl Aggregate for Account {
    const KIND: &'static str = "account";
    type Id = String;
    type Event = AccountEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(opened) => self.owner.clone_from(&opened.owner),
            AccountEvent::Deposited(deposit) => {
                self.balance += deposit.amount;
                self.history.push(deposit.amount);
            }
        }
    }
}

struct Open;
struct Deposit(u64);

impl HandleCreate<Open> for Account {
    fn handle_create(_: &Open) -> Result<Vec<AccountEvent>, Infallible> {
        Ok(vec![AccountEvent::Opened(Opened { owner: "Ada".into() })])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, Infallible> {
        Ok(vec![AccountEvent::Deposited(Deposited { amount: command.0 })])
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Totals {
    accounts: u64,
    /// Every deposit in order, with its account.
    deposits: Vec<(String, u64)>,
}

impl Projection for Totals {
    const KIND: &'static str = "totals";
    type Id = String;
    type Metadata = serde_json::Value;

    fn declare<S>(events: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self>
    where
        S: EventStore<Id = String, Metadata = serde_json::Value>,
    {
        events.event::<Opened>().event::<Deposited>()
    }
}

impl ApplyProjection<Opened> for Totals {
    fn apply_projection(&mut self, _: &String, _: &Opened, _: &serde_json::Value) {
        self.accounts += 1;
    }
}

impl ApplyProjection<Deposited> for Totals {
    fn apply_projection(&mut self, id: &String, event: &Deposited, _: &serde_json::Value) {
        self.deposits.push((id.clone(), event.amount));
    }
}

fn every(n: u64) -> SnapshotPolicy {
    SnapshotPolicy::EveryNEvents(NonZeroU64::new(n).expect("n > 0"))
}

fn meta() -> serde_json::Value {
    serde_json::json!({ "test": "snapshots" })
}

// ---- Repositories.

#[tokio::test]
async fn a_repository_loads_the_snapshot_and_only_the_tail() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    let repository = Repository::new(store.clone()).with_snapshots(store.snapshots(every(10)));
    let plain = Repository::new(store.clone());
    let id = "ACC-1".to_owned();
    repository
        .create::<Account, _>(&id, &Open, meta())
        .await
        .expect("create");
    let mut positions = vec![];
    for amount in 1..=24 {
        let outcome = repository
            .execute::<Account, _>(&id, &Deposit(amount), meta())
            .await
            .expect("deposit");
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        positions.extend(outcome.last_position);
    }
    // 25 events: snapshots were taken at the 10th and the 20th.
    let loaded = repository.load_versioned::<Account>(&id).await.expect("load");
    let full = plain.load_versioned::<Account>(&id).await.expect("full replay");
    assert_eq!(loaded.snapshot_position, Some(positions[18]));
    assert_eq!(loaded.replayed, 5);
    assert_eq!((loaded.state.clone(), loaded.version), (full.state, full.version));
    assert_eq!(full.replayed, 25);
    assert_eq!(loaded.state.history, (1..=24).collect::<Vec<_>>());
    assert!(loaded.warnings.is_empty());

    let table = format!("\"{}\".sourcery_snapshots", store.schema());
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT subject, kind, id, position, schema_version FROM {table}"
    ))
    .fetch_all(store.pool())
    .await
    .expect("select");
    assert_eq!(
        rows,
        [(
            "aggregate".to_owned(),
            "account".to_owned(),
            "\"ACC-1\"".to_owned(),
            positions[18],
            1
        )]
    );

    // A corrupt row is a warning and a full replay, never a wrong state; the
    // next snapshot replaces it.
    sqlx::query(&format!("UPDATE {table} SET data = '\\x00'"))
        .execute(store.pool())
        .await
        .expect("corrupt");
    let corrupt = repository.load_versioned::<Account>(&id).await.expect("load");
    assert_eq!((corrupt.snapshot_position, corrupt.replayed), (None, 25));
    assert_eq!(corrupt.state, loaded.state);
    assert_eq!(
        corrupt.warnings.iter().map(|w| w.problem).collect::<Vec<_>>(),
        [SnapshotProblem::Decode]
    );
}

// ---- Projections and the safe frontier.

async fn connect() -> PgConnection {
    let url = support::database_url().expect("DATABASE_URL is set");
    PgConnection::connect(&url).await.expect("connect")
}

/// Opens a transaction on `connection` and appends one deposit to `stream`
/// in it, without committing (as a writer mid-commit). Returns the position
/// it drew.
async fn deposit_in_open_transaction(
    connection: &mut PgConnection,
    store: &PgStore,
    stream: &str,
    amount: u64,
) -> i64 {
    sqlx::query("BEGIN")
        .execute(&mut *connection)
        .await
        .expect("begin");
    let data = store.codec().encode(&Deposited { amount }).expect("encode");
    let written: i64 = sqlx::query_scalar(store.append_statement())
        .bind("account")
        .bind(stream)
        .bind("any")
        .bind(None::<i64>)
        .bind(vec![Deposited::KIND])
        .bind(vec![data])
        .bind(vec!["{}"])
        .bind(vec![1_i32])
        .bind(vec![uuid::Uuid::now_v7()])
        .fetch_one(&mut *connection)
        .await
        .expect("an append in an open transaction");
    written
}

fn totals_key(filters: &[EventFilter<String, i64>]) -> SnapshotKey {
    SnapshotKey::for_projection_events(Totals::KIND, filters).expect("key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::too_many_lines, reason = "one scenario, told step by step")]
async fn a_projection_snapshot_is_never_taken_past_an_append_in_flight() {
    let Some(store) = support::store::<String, serde_json::Value>().await else {
        return;
    };
    assert_eq!(store.snapshot_frontier().await.expect("frontier"), Some(0));
    let snapshots = store.snapshots(SnapshotPolicy::Always);
    let plain = Repository::new(store.clone());
    let repository = Repository::new(store.clone()).with_snapshots(snapshots.clone());
    let (a, b) = ("ACC-A".to_owned(), "ACC-B".to_owned());
    for id in [&a, &b] {
        plain
            .create::<Account, _>(id, &Open, meta())
            .await
            .expect("create");
        // Each aggregate gets a snapshot here.
        repository
            .execute::<Account, _>(id, &Deposit(1), meta())
            .await
            .expect("deposit");
    }
    let settled = store.safe_position().await.expect("frontier").expect("4 events");
    assert_eq!(store.snapshot_frontier().await.expect("frontier"), Some(settled));

    // A draws a lower position and stays open; B commits a higher one.
    let mut writer_a = connect().await;
    let a_position = support::bounded(
        "A's append",
        30,
        deposit_in_open_transaction(&mut writer_a, &store, &a, 1_000),
    )
    .await;
    let b_position = plain
        .execute::<Account, _>(&b, &Deposit(2_000), meta())
        .await
        .expect("B's deposit")
        .last_position
        .expect("one event");
    assert!(settled < a_position && a_position < b_position);
    assert_eq!(store.snapshot_frontier().await.expect("frontier"), Some(settled));
    // A snapshotted aggregate still reads its own writes: the tail after its
    // snapshot is one stream, not cut at the frontier.
    let b_loaded = repository.load_versioned::<Account>(&b).await.expect("load");
    assert_eq!(
        (b_loaded.snapshot_position, b_loaded.replayed, b_loaded.version),
        (Some(settled), 1, Some(b_position))
    );
    assert_eq!(b_loaded.state.history, [1, 2_000]);

    // Two selections: every deposit (a follower's load, cut at the frontier)
    // and the two streams by id (a plain stream read, which sees B at once).
    let by_kind = || repository.projection::<Totals>().with_declared();
    let by_stream = || {
        repository
            .projection::<Totals>()
            .event_for::<Account, Opened>(&a)
            .event_for::<Account, Deposited>(&a)
            .event_for::<Account, Opened>(&b)
            .event_for::<Account, Deposited>(&b)
    };
    let kind_filters = [
        EventFilter::for_event(Opened::KIND),
        EventFilter::for_event(Deposited::KIND),
    ];
    let stream_filters: Vec<EventFilter<String, i64>> = [&a, &b]
        .into_iter()
        .flat_map(|id| {
            [Opened::KIND, Deposited::KIND]
                .map(|kind| EventFilter::for_aggregate(kind, Account::KIND, id.clone()))
        })
        .collect();

    let during = by_kind().load_from_snapshot().await.expect("load");
    assert_eq!(
        during.position,
        Some(settled),
        "the follower's load stops below A"
    );
    assert!(during.warnings.is_empty(), "{:?}", during.warnings);
    let during_streams = by_stream().load_from_snapshot().await.expect("load");
    assert_eq!(
        during_streams.position,
        Some(b_position),
        "a stream read sees B, committed"
    );
    assert!(during_streams.projection.deposits.contains(&(b.clone(), 2_000)));
    for filters in [&kind_filters[..], &stream_filters[..]] {
        let kept = snapshots
            .load(&totals_key(filters))
            .await
            .expect("load")
            .expect("a snapshot");
        assert!(
            kept.position < a_position,
            "a snapshot at {} passed A's position {a_position} while A was in flight",
            kept.position
        );
        assert_eq!(kept.position, settled);
    }

    support::bounded("A's commit", 30, sqlx::query("COMMIT").execute(&mut writer_a))
        .await
        .expect("commit");

    // Resuming from the snapshots sees A's event: the same state as a full
    // replay, and new snapshots at the end.
    let full: Totals = plain.load_projection().await.expect("full");
    assert_eq!(full.deposits.len(), 4);
    assert!(full.deposits.contains(&(a.clone(), 1_000)));
    for (loaded, filters) in [
        (
            by_kind().load_from_snapshot().await.expect("load"),
            &kind_filters[..],
        ),
        (
            by_stream().load_from_snapshot().await.expect("load"),
            &stream_filters[..],
        ),
    ] {
        assert_eq!(loaded.snapshot_position, Some(settled));
        assert_eq!(loaded.replayed, 2, "A's and B's deposits");
        assert_eq!(loaded.position, Some(b_position));
        // In position order: A's deposit before B's, as in a full replay.
        assert_eq!(loaded.projection, full);
        let kept = snapshots
            .load(&totals_key(filters))
            .await
            .expect("load")
            .expect("a snapshot");
        assert_eq!(kept.position, b_position);
    }
    let resumed = by_kind().load_from_snapshot().await.expect("load");
    assert_eq!(
        (resumed.snapshot_position, resumed.replayed),
        (Some(b_position), 0)
    );
    assert_eq!(resumed.projection, full);
}

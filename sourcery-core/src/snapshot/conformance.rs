//! Checks for [`SnapshotStore`] implementations (feature `test-util`): ours
//! and yours.
//!
//! - [`run`]: the store's own rules (newest wins, older or equal positions
//!   declined, keys kept apart, bytes and schema versions round-trip), each
//!   against a fresh store.
//! - [`replay_equals_snapshot_plus_tail`]: the law snapshots live by, over
//!   an event store and a snapshot store together: for any history and any
//!   points where snapshots were taken, loading from the latest snapshot
//!   plus the events after it gives exactly the state and version of a full
//!   replay. Feed it random histories from a property test:
//!
//! ```
//! use sourcery_core::snapshot::{conformance, inmemory, SnapshotPolicy};
//! use sourcery_core::store::inmemory as events;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! conformance::run(|| async { inmemory::Store::<u64>::new(SnapshotPolicy::Never) }).await;
//!
//! let steps = [
//!     conformance::Step { amount: 3, events: 2, snapshot: true, unchecked: false },
//!     conformance::Step { amount: 5, events: 1, snapshot: false, unchecked: true },
//!     conformance::Step { amount: 7, events: 3, snapshot: true, unchecked: true },
//!     conformance::Step { amount: 1, events: 1, snapshot: false, unchecked: false },
//! ];
//! conformance::replay_equals_snapshot_plus_tail(
//!     &events::Store::<String, ()>::new(),
//!     &inmemory::Store::new(SnapshotPolicy::Never),
//!     &steps,
//!     (),
//! )
//! .await
//! .unwrap();
//! # });
//! ```
//!
//! A failed check of [`run`] panics with what it saw, like any assertion.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::{SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore};
use crate::aggregate::{Aggregate, Handle, HandleCreate};
use crate::codec::Codec;
use crate::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use crate::metadata::Metadata;
use crate::repository::Repository;
use crate::store::EventStore;

/// Runs every check of the snapshot store's own rules, each against a fresh
/// store from `make_store`.
///
/// # Panics
///
/// When a check fails, naming it and what it saw.
pub async fn run<T, Pos, F, Fut>(mut make_store: F)
where
    T: SnapshotStore<Pos>,
    Pos: From<u8> + Copy + Ord + Debug + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    keeps_the_newest(&make_store().await).await;
    keys_stay_apart(&make_store().await).await;
    round_trips(&make_store().await).await;
}

fn snapshot<Pos>(position: Pos, schema_version: u32, data: &[u8]) -> Snapshot<Pos> {
    Snapshot {
        position,
        schema_version,
        data: data.to_vec(),
    }
}

/// `save` keeps the newest snapshot per key: an older or equal position is
/// declined and changes nothing; a later one replaces it, whatever the
/// schema versions.
///
/// # Panics
///
/// When the store does otherwise.
pub async fn keeps_the_newest<T, Pos>(store: &T)
where
    T: SnapshotStore<Pos>,
    Pos: From<u8> + Copy + Ord + Debug + Send + 'static,
{
    let key = SnapshotKey::aggregate("conformance.newest", "\"a\"");
    assert_eq!(
        load(store, &key).await,
        None,
        "keeps_the_newest: an unknown key loads nothing"
    );
    let save = |position: u8, version, data: &'static [u8]| {
        let key = &key;
        async move {
            store
                .save(key, snapshot(Pos::from(position), version, data))
                .await
                .unwrap_or_else(|error| panic!("keeps_the_newest: save failed: {error}"))
        }
    };
    assert_eq!(
        save(5, 1, b"five").await,
        SaveOutcome::Saved,
        "keeps_the_newest: first save"
    );
    assert_eq!(
        save(3, 1, b"three").await,
        SaveOutcome::Declined,
        "keeps_the_newest: older position"
    );
    assert_eq!(
        save(5, 2, b"five again").await,
        SaveOutcome::Declined,
        "keeps_the_newest: equal position"
    );
    assert_eq!(
        load(store, &key).await,
        Some(snapshot(Pos::from(5), 1, b"five")),
        "keeps_the_newest: a declined save changed the snapshot"
    );
    assert_eq!(
        save(6, 2, b"six").await,
        SaveOutcome::Saved,
        "keeps_the_newest: later position"
    );
    assert_eq!(
        save(4, 3, b"four").await,
        SaveOutcome::Declined,
        "keeps_the_newest: older after newer"
    );
    assert_eq!(
        load(store, &key).await,
        Some(snapshot(Pos::from(6), 2, b"six")),
        "keeps_the_newest: the later snapshot replaces the older"
    );
}

/// Keys that differ in subject, kind or id text never see each other's
/// snapshots: `"1"` (a `String` id) and `1` (an integer), `()`, a `Uuid`,
/// the empty string, a projection of the same kind, awkward text.
///
/// # Panics
///
/// When one key sees another's snapshot.
pub async fn keys_stay_apart<T, Pos>(store: &T)
where
    T: SnapshotStore<Pos>,
    Pos: From<u8> + Copy + Ord + Debug + Send + 'static,
{
    let id = |text: Result<String, super::SnapshotKeyError>| {
        text.unwrap_or_else(|error| panic!("keys_stay_apart: id text: {error}"))
    };
    let kind = "conformance.keys";
    let keys = [
        SnapshotKey::aggregate(kind, id(SnapshotKey::id_text("1"))),
        SnapshotKey::aggregate(kind, id(SnapshotKey::id_text(&1_i64))),
        SnapshotKey::aggregate(kind, id(SnapshotKey::id_text(&()))),
        SnapshotKey::aggregate(kind, id(SnapshotKey::id_text(&uuid::Uuid::nil()))),
        SnapshotKey::aggregate(kind, id(SnapshotKey::id_text(""))),
        SnapshotKey::aggregate(kind, ""),
        SnapshotKey::projection(kind),
        SnapshotKey::projection_instance(kind, "1"),
        SnapshotKey::aggregate("conformance.keys.other", id(SnapshotKey::id_text("1"))),
        SnapshotKey::aggregate("it's \"quoted\" ü 🦀", id(SnapshotKey::id_text("клиент-🦀"))),
    ];
    for (n, key) in keys.iter().enumerate() {
        let n = u8::try_from(n).unwrap_or(u8::MAX);
        let outcome = store
            .save(key, snapshot(Pos::from(10 + n), u32::from(n), &[n]))
            .await
            .unwrap_or_else(|error| panic!("keys_stay_apart: save failed: {error}"));
        assert_eq!(
            outcome,
            SaveOutcome::Saved,
            "keys_stay_apart: {key} saw another key's snapshot"
        );
    }
    for (n, key) in keys.iter().enumerate() {
        let n = u8::try_from(n).unwrap_or(u8::MAX);
        assert_eq!(
            load(store, key).await,
            Some(snapshot(Pos::from(10 + n), u32::from(n), &[n])),
            "keys_stay_apart: {key}"
        );
    }
}

/// Bytes (empty, all byte values, 1 MiB) and schema versions (0,
/// `u32::MAX`) come back as saved.
///
/// # Panics
///
/// When they do not.
pub async fn round_trips<T, Pos>(store: &T)
where
    T: SnapshotStore<Pos>,
    Pos: From<u8> + Copy + Ord + Debug + Send + 'static,
{
    let all_bytes: Vec<u8> = (0..=u8::MAX).collect();
    let large: Vec<u8> = (0..1_048_576_u32)
        .map(|n| u8::try_from(n % 251).unwrap_or(0))
        .collect();
    let cases = [(0, Vec::new()), (u32::MAX, all_bytes), (7, large)];
    for (n, (version, data)) in cases.into_iter().enumerate() {
        let key = SnapshotKey::projection_instance("conformance.round_trip", n.to_string());
        let saved = snapshot(Pos::from(1), version, &data);
        store
            .save(&key, saved.clone())
            .await
            .unwrap_or_else(|error| panic!("round_trips: save failed: {error}"));
        let loaded = load(store, &key).await;
        assert!(
            loaded.as_ref() == Some(&saved),
            "round_trips: case {n} (version {version}, {} bytes) came back different",
            data.len()
        );
    }
}

async fn load<T, Pos>(store: &T, key: &SnapshotKey) -> Option<Snapshot<Pos>>
where
    T: SnapshotStore<Pos>,
{
    store
        .load(key)
        .await
        .unwrap_or_else(|error| panic!("load of {key} failed: {error}"))
}

/// One command of a history for [`replay_equals_snapshot_plus_tail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// What each event of the command counts.
    pub amount: u32,
    /// How many events the command produces (0: nothing is written).
    pub events: u8,
    /// Whether the command runs through a repository that snapshots after
    /// it (policy `Always`); otherwise through one without snapshots.
    pub snapshot: bool,
    /// Whether the repository commits without version checks.
    pub unchecked: bool,
}

/// Runs `steps` as commands on a fresh aggregate in `events`, taking
/// snapshots into `snapshots` after the steps that ask for one; after every
/// step, checks that loading from the latest snapshot and the events after
/// it gives the state and version of a full replay, and replays only the
/// events after that snapshot.
///
/// The snapshot store's own policy is not used (the steps decide); a fresh
/// aggregate id per call keeps runs apart, so one store can serve many.
///
/// # Errors
///
/// What differed, at which step.
pub async fn replay_equals_snapshot_plus_tail<S, T>(
    events: &S,
    snapshots: &T,
    steps: &[Step],
    metadata: S::Metadata,
) -> Result<(), String>
where
    S: EventStore<Id = String> + Clone,
    S::Metadata: Metadata,
    T: SnapshotStore<S::Position>,
{
    let id = format!("tally-{}", uuid::Uuid::now_v7());
    let plain = Repository::new(events.clone());
    let plain_unchecked = Repository::new(events.clone()).without_concurrency_checking();
    let snapshotting = Repository::new(events.clone()).with_snapshots(AlwaysSnapshot(snapshots));
    let snapshotting_unchecked = Repository::new(events.clone())
        .without_concurrency_checking()
        .with_snapshots(AlwaysSnapshot(snapshots));
    plain
        .create::<Tally, _>(&id, &Open, metadata.clone())
        .await
        .map_err(|error| format!("creating the aggregate: {error}"))?;
    let mut expected_snapshot = None;
    let mut tail = 1_usize;
    for (n, step) in steps.iter().enumerate() {
        let command = Count {
            amount: step.amount,
            events: step.events,
        };
        let outcome = match (step.snapshot, step.unchecked) {
            (true, false) => {
                snapshotting
                    .execute::<Tally, _>(&id, &command, metadata.clone())
                    .await
            }
            (true, true) => {
                snapshotting_unchecked
                    .execute::<Tally, _>(&id, &command, metadata.clone())
                    .await
            }
            (false, false) => plain.execute::<Tally, _>(&id, &command, metadata.clone()).await,
            (false, true) => {
                plain_unchecked
                    .execute::<Tally, _>(&id, &command, metadata.clone())
                    .await
            }
        }
        .map_err(|error| format!("step {n} {step:?}: {error}"))?;
        if !outcome.warnings.is_empty() {
            return Err(format!(
                "step {n} {step:?}: snapshot warnings {:?}",
                outcome.warnings
            ));
        }
        match outcome.last_position {
            Some(position) if step.snapshot => {
                expected_snapshot = Some(position);
                tail = 0;
            }
            _ => tail += usize::from(step.events),
        }

        let full = plain
            .load_versioned::<Tally>(&id)
            .await
            .map_err(|error| format!("step {n}: full replay: {error}"))?;
        let resumed = snapshotting
            .load_versioned::<Tally>(&id)
            .await
            .map_err(|error| format!("step {n}: load from snapshot: {error}"))?;
        if resumed.state != full.state || resumed.version != full.version {
            return Err(format!(
                "step {n} {step:?}: snapshot + tail gave {:?} at {:?}, a full replay {:?} at {:?}",
                resumed.state, resumed.version, full.state, full.version
            ));
        }
        if resumed.snapshot_position != expected_snapshot || resumed.replayed != tail {
            return Err(format!(
                "step {n} {step:?}: loaded from the snapshot at {:?} replaying {} events; expected the snapshot at {expected_snapshot:?} and {tail} events",
                resumed.snapshot_position, resumed.replayed
            ));
        }
        if !resumed.warnings.is_empty() {
            return Err(format!("step {n}: load warnings {:?}", resumed.warnings));
        }
    }
    Ok(())
}

/// A snapshot store seen with policy `Always`.
struct AlwaysSnapshot<'a, T>(&'a T);

impl<T: SnapshotStore<Pos>, Pos: Send + 'static> SnapshotStore<Pos> for AlwaysSnapshot<'_, T> {
    type Error = T::Error;

    fn policy(&self) -> SnapshotPolicy {
        SnapshotPolicy::Always
    }

    fn load<'a>(
        &'a self,
        key: &'a SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot<Pos>>, T::Error>> + Send + 'a {
        self.0.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a SnapshotKey,
        snapshot: Snapshot<Pos>,
    ) -> impl Future<Output = Result<SaveOutcome, T::Error>> + Send + 'a {
        self.0.save(key, snapshot)
    }
}

// ---- The aggregate of the law: its state depends on every event and on
// their order, so a missed, repeated or reordered event shows.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;

impl DomainEvent for Opened {
    const KIND: &'static str = "conformance.tally.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counted {
    amount: u32,
}

impl DomainEvent for Counted {
    const KIND: &'static str = "conformance.tally.counted";
}

#[derive(Debug, Clone, PartialEq)]
enum TallyEvent {
    Opened(Opened),
    Counted(Counted),
}

impl EventPayload for TallyEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened(event) => event.kind(),
            Self::Counted(event) => event.kind(),
        }
    }
    fn schema_version(&self) -> u32 {
        match self {
            Self::Opened(event) => event.schema_version(),
            Self::Counted(event) => event.schema_version(),
        }
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        match self {
            Self::Opened(event) => event.encode_with(codec),
            Self::Counted(event) => event.encode_with(codec),
        }
    }
}

impl DecodeEvent for TallyEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Opened::KIND, Counted::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if let Some(event) = Opened::decode_with(codec, event)? {
            return Ok(Some(Self::Opened(event)));
        }
        Ok(Counted::decode_with(codec, event)?.map(Self::Counted))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    opened: bool,
    events: u64,
    total: u64,
    /// An order-sensitive digest of every amount.
    digest: u64,
}

impl Aggregate for Tally {
    const KIND: &'static str = "conformance.tally";
    type Id = String;
    type Event = TallyEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &TallyEvent) {
        self.events += 1;
        match event {
            TallyEvent::Opened(_) => self.opened = true,
            TallyEvent::Counted(counted) => {
                self.total = self.total.wrapping_add(u64::from(counted.amount));
                self.digest = self
                    .digest
                    .wrapping_mul(1_000_003)
                    .wrapping_add(u64::from(counted.amount) ^ self.events);
            }
        }
    }
}

struct Open;

struct Count {
    amount: u32,
    events: u8,
}

impl HandleCreate<Open> for Tally {
    fn handle_create(_: &Open) -> Result<Vec<TallyEvent>, Infallible> {
        Ok(vec![TallyEvent::Opened(Opened)])
    }
}

impl Handle<Count> for Tally {
    fn handle(&self, command: &Count) -> Result<Vec<TallyEvent>, Infallible> {
        Ok((0..command.events)
            .map(|n| {
                TallyEvent::Counted(Counted {
                    amount: command.amount.wrapping_add(u32::from(n)),
                })
            })
            .collect())
    }
}

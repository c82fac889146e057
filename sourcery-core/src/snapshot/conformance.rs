//! The law snapshots live by (feature `test-util`). The snapshot store's own
//! rules (newest wins, older or equal positions declined, keys kept apart,
//! bytes and schema versions round-trip) are part of the conformance suite:
//! declare `snapshots` in [`suite!`](crate::test::conformance::suite), or
//! call [`Suite::snapshots`](crate::test::conformance::Suite::snapshots).
//!
//! [`replay_equals_snapshot_plus_tail`] checks, over an event store and a
//! snapshot store together, that for any history and any points where
//! snapshots were taken, loading from the latest snapshot plus the events
//! after it gives exactly the state and version of a full replay. Feed it
//! random histories from a property test:
//!
//! ```
//! use sourcery_core::snapshot::{conformance, inmemory, SnapshotPolicy};
//! use sourcery_core::store::inmemory as events;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
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

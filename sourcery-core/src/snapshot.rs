//! Snapshots: an aggregate's or a projection's state saved at a position, so
//! that loading it replays only the events after that position.
//!
//! A [`SnapshotStore`] keeps, per [`SnapshotKey`], the newest [`Snapshot`]:
//! the position of the last event folded into it, the schema version of the
//! state's shape and the state encoded by the event store's codec. Its
//! [`SnapshotPolicy`] says when a new one is worth taking. The repository
//! uses it through [`Repository::with_snapshots`](crate::repository::Repository::with_snapshots):
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
//! # use sourcery_core::event::{DecodeEvent, DecodeFailure, RawEvent, DomainEvent, EventPayload};
//! # use sourcery_core::codec::Codec;
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # struct Added { n: u64 }
//! # impl DomainEvent for Added { const KIND: &'static str = "counter.added"; }
//! # #[derive(Debug, Clone, PartialEq)]
//! # struct CounterEvent(Added);
//! # impl EventPayload for CounterEvent {
//! #     fn kind(&self) -> &'static str { self.0.kind() }
//! #     fn schema_version(&self) -> u32 { self.0.schema_version() }
//! #     fn encode_with<C: Codec>(&self, c: &C) -> Result<Vec<u8>, C::Error> { self.0.encode_with(c) }
//! # }
//! # impl DecodeEvent for CounterEvent {
//! #     fn event_kinds() -> &'static [&'static str] { &[Added::KIND] }
//! #     fn decode_with<C: Codec>(c: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
//! #         Ok(Added::decode_with(c, event)?.map(CounterEvent))
//! #     }
//! # }
//! # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
//! # struct Add(u64);
//! # impl HandleCreate<Add> for Counter {
//! #     fn handle_create(add: &Add) -> Result<Vec<CounterEvent>, Never> { Ok(vec![CounterEvent(Added { n: add.0 })]) }
//! # }
//! # impl Handle<Add> for Counter {
//! #     fn handle(&self, add: &Add) -> Result<Vec<CounterEvent>, Never> { Ok(vec![CounterEvent(Added { n: add.0 })]) }
//! # }
//! // Snapshotted aggregates are serde types.
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//! # impl Aggregate for Counter {
//! #     const KIND: &'static str = "counter";
//! #     type Id = String; type Event = CounterEvent; type Error = Never;
//! #     fn apply(&mut self, e: &CounterEvent) { self.total += e.0.n }
//! # }
//!
//! use std::num::NonZeroU64;
//! use sourcery_core::repository::Repository;
//! use sourcery_core::snapshot::{self, SnapshotPolicy};
//! use sourcery_core::store::inmemory;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let every_ten = SnapshotPolicy::EveryNEvents(NonZeroU64::new(10).unwrap());
//! let repository = Repository::new(inmemory::Store::<String, ()>::new())
//!     .with_snapshots(snapshot::inmemory::Store::new(every_ten));
//! let id = "c-1".to_string();
//! repository.create::<Counter, _>(&id, &Add(1), ()).await?;
//! for _ in 0..11 {
//!     repository.execute::<Counter, _>(&id, &Add(1), ()).await?;
//! }
//! // A snapshot was taken at the 10th event; loading replays the 2 after it.
//! let loaded = repository.load_versioned::<Counter>(&id).await?;
//! assert_eq!(loaded.state.total, 12);
//! assert_eq!(loaded.snapshot_position, Some(10));
//! assert_eq!(loaded.replayed, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Rules the repository keeps
//!
//! - **Snapshots never make state wrong.** A snapshot whose
//!   [`schema_version`](Snapshot::schema_version) is not the aggregate's
//!   [`SNAPSHOT_VERSION`](crate::aggregate::Aggregate::SNAPSHOT_VERSION) is
//!   ignored (full replay; the next snapshot taken replaces it). A snapshot
//!   that does not decode, or a snapshot store that fails, also falls back to
//!   a full replay, with a `tracing` warning and a [`SnapshotWarning`].
//! - **A snapshot failure never fails a command.** Snapshots are offered
//!   after the commit; a failure there is logged and reported in
//!   [`CommandOutcome::warnings`](crate::repository::CommandOutcome::warnings),
//!   so a caller never retries a command that already took effect.
//! - **Unchecked commits re-read before snapshotting.** After an optimistic
//!   commit the stream holds exactly the loaded events and the new ones, so
//!   the repository applies the new events to the loaded state. After an
//!   unchecked commit another writer may have appended in between; the
//!   repository then reads the stream's events after the version it loaded
//!   (its own events and anyone else's, in stream order) and folds those into
//!   the loaded state before taking the snapshot at the last position read.
//!   Re-reading keeps snapshots for unchecked repositories (single-writer
//!   streams are the usual reason to go unchecked, and they are long) at the
//!   cost of one tail read when a snapshot is due.
//!
//! # Keys
//!
//! A [`SnapshotKey`] is `(subject, kind, id text)`: the subject keeps
//! aggregates and projections apart, the kind is the aggregate's or
//! projection's `KIND`, and the id text is the aggregate id's JSON encoding
//! (through serde), which never confuses `"1"` (a `String`) with `1` (an
//! integer) or `null` (`()`). Snapshotted aggregates therefore need
//! `Id: Serialize` whose encoding is deterministic (not a `HashMap`).
//!
//! # For store authors
//!
//! A SQL snapshot store keeps one row per key,
//! `(subject text, kind text, id text) primary key → (position, schema_version, data bytes)`,
//! and implements [`SnapshotStore`] with an upsert that only replaces a row
//! whose position is lower (`... ON CONFLICT (subject, kind, id) DO UPDATE
//! ... WHERE snapshots.position < excluded.position`). The [`conformance`]
//! checks (feature `test-util`) hold it to the rules above.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt::{self, Debug};
use std::future::Future;
use std::num::NonZeroU64;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::store::{EventFilter, GloballyOrdered};

#[cfg(feature = "test-util")]
pub mod conformance;
pub mod inmemory;

/// A state saved at a position: what a [`SnapshotStore`] keeps per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<Pos> {
    /// The position of the last event folded into the state.
    pub position: Pos,
    /// The version of the state's shape
    /// ([`Aggregate::SNAPSHOT_VERSION`] for aggregates); a snapshot of
    /// another version is ignored.
    pub schema_version: u32,
    /// The state, encoded by the event store's codec.
    pub data: Vec<u8>,
}

/// What a snapshot is of: an aggregate or a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SnapshotSubject {
    /// One aggregate instance.
    Aggregate,
    /// A projection (with one selection of events).
    Projection,
}

impl SnapshotSubject {
    /// The subject as stored: `"aggregate"` or `"projection"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aggregate => "aggregate",
            Self::Projection => "projection",
        }
    }
}

impl fmt::Display for SnapshotSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a snapshot is kept: subject, kind and id text.
///
/// ```
/// use sourcery_core::snapshot::{SnapshotKey, SnapshotSubject};
///
/// let by_string = SnapshotKey::aggregate("account", SnapshotKey::id_text(&"1".to_string()).unwrap());
/// let by_number = SnapshotKey::aggregate("account", SnapshotKey::id_text(&1_u64).unwrap());
/// assert_eq!(by_string.id(), "\"1\"");
/// assert_eq!(by_number.id(), "1");
/// assert_ne!(by_string, by_number);
/// assert_eq!(SnapshotKey::aggregate("account", SnapshotKey::id_text(&()).unwrap()).id(), "null");
///
/// let totals = SnapshotKey::projection("account");
/// assert_eq!(totals.subject(), SnapshotSubject::Projection);
/// assert_ne!(totals, SnapshotKey::aggregate("account", ""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotKey {
    subject: SnapshotSubject,
    kind: String,
    id: String,
}

impl SnapshotKey {
    /// The key of aggregate `kind` with `id_text` (see
    /// [`id_text`](Self::id_text) and [`for_aggregate`](Self::for_aggregate)).
    pub fn aggregate(kind: impl Into<String>, id_text: impl Into<String>) -> Self {
        Self {
            subject: SnapshotSubject::Aggregate,
            kind: kind.into(),
            id: id_text.into(),
        }
    }

    /// The key of aggregate `A` with `id`: `A::KIND` and the id's JSON
    /// encoding.
    ///
    /// # Errors
    ///
    /// A [`SnapshotKeyError`] when the id does not serialise.
    pub fn for_aggregate<A>(id: &A::Id) -> Result<Self, SnapshotKeyError>
    where
        A: Aggregate,
        A::Id: Serialize,
    {
        Ok(Self::aggregate(A::KIND, Self::id_text(id)?))
    }

    /// The key of the projection `kind` (with an empty id).
    pub fn projection(kind: impl Into<String>) -> Self {
        Self::projection_instance(kind, "")
    }

    /// The key of one instance of the projection `kind`, e.g. one selection
    /// of events ([`for_projection_events`](Self::for_projection_events)).
    pub fn projection_instance(kind: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            subject: SnapshotSubject::Projection,
            kind: kind.into(),
            id: instance.into(),
        }
    }

    /// The key of projection `kind` folded from the events `filters`
    /// select: the instance is a fingerprint (128-bit FNV-1a, in hex) of the
    /// filters' event kinds and streams, ignoring order, duplicates and
    /// `after` positions. Another selection of events gets another key, so a
    /// projection that starts consuming a new event kind never resumes from a
    /// snapshot that lacks that kind's history.
    ///
    /// # Errors
    ///
    /// A [`SnapshotKeyError`] when an aggregate id in a filter does not
    /// serialise.
    pub fn for_projection_events<Id: Serialize, Pos>(
        kind: impl Into<String>,
        filters: &[EventFilter<Id, Pos>],
    ) -> Result<Self, SnapshotKeyError> {
        let mut parts = filters
            .iter()
            .map(|filter| serde_json::to_string(&(filter.event_kind(), filter.aggregate())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SnapshotKeyError)?;
        parts.sort();
        parts.dedup();
        let fingerprint = fnv1a_128(parts.join("\n").as_bytes());
        Ok(Self::projection_instance(kind, format!("{fingerprint:032x}")))
    }

    /// The text an aggregate id is keyed by: its JSON encoding.
    ///
    /// # Errors
    ///
    /// A [`SnapshotKeyError`] when the id does not serialise.
    pub fn id_text<Id: Serialize + ?Sized>(id: &Id) -> Result<String, SnapshotKeyError> {
        serde_json::to_string(id).map_err(SnapshotKeyError)
    }

    /// Aggregate or projection.
    #[must_use]
    pub fn subject(&self) -> SnapshotSubject {
        self.subject
    }

    /// The aggregate's or projection's kind.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The id text (JSON of the aggregate id; the instance for projections).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.subject, self.kind, self.id)
    }
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u128::from(*byte)).wrapping_mul(PRIME)
    })
}

/// An aggregate id (or a projection's filter) could not be turned into a
/// [`SnapshotKey`].
#[derive(Debug, thiserror::Error)]
#[error("the id does not serialise into a snapshot key")]
pub struct SnapshotKeyError(#[source] serde_json::Error);

/// When a snapshot is worth taking.
///
/// | policy | 0 events since | 1 | N − 1 | N | more |
/// |---|---|---|---|---|---|
/// | `Always` | no | yes | yes | yes | yes |
/// | `EveryNEvents(N)` | no | if N = 1 | no | yes | yes |
/// | `Never` | no | no | no | no | no |
///
/// "Events since" counts the events after the last snapshot (or since the
/// start, when there is none or it was ignored) up to the new one. `Never`
/// still loads existing snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotPolicy {
    /// After every write.
    Always,
    /// Once at least this many events were applied since the last snapshot.
    EveryNEvents(NonZeroU64),
    /// Never take one (existing snapshots are still loaded).
    Never,
}

impl SnapshotPolicy {
    /// Whether a snapshot is due after `events_since_last_snapshot` events.
    /// Nothing is due when no event happened.
    ///
    /// ```
    /// use std::num::NonZeroU64;
    /// use sourcery_core::snapshot::SnapshotPolicy;
    ///
    /// let every_3 = SnapshotPolicy::EveryNEvents(NonZeroU64::new(3).unwrap());
    /// assert!(!every_3.accepts(2));
    /// assert!(every_3.accepts(3));
    /// assert!(SnapshotPolicy::Always.accepts(1));
    /// assert!(!SnapshotPolicy::Always.accepts(0));
    /// assert!(!SnapshotPolicy::Never.accepts(1_000));
    /// ```
    #[must_use]
    pub fn accepts(self, events_since_last_snapshot: u64) -> bool {
        match self {
            _ if events_since_last_snapshot == 0 => false,
            Self::Always => true,
            Self::EveryNEvents(n) => events_since_last_snapshot >= n.get(),
            Self::Never => false,
        }
    }
}

/// What [`SnapshotStore::save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The snapshot is now the key's newest.
    Saved,
    /// The store holds a snapshot at the same or a later position; nothing
    /// changed.
    Declined,
}

/// What [`SnapshotStore::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    /// The policy did not want a snapshot; nothing was encoded.
    NotDue,
    /// A snapshot was taken and saved.
    Saved,
    /// A snapshot was taken, but the store already held one at the same or a
    /// later position.
    Declined,
}

/// Why [`SnapshotStore::offer`] took no snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError<StoreError, CreateError> {
    /// Creating the snapshot (encoding the state) failed.
    #[error("the snapshot could not be created")]
    Create(#[source] CreateError),
    /// The snapshot store failed.
    #[error("the snapshot store failed")]
    Store(#[source] StoreError),
}

// ANCHOR: snapshot_store_trait
/// Keeps the newest [`Snapshot`] per [`SnapshotKey`], for an event store
/// whose positions are `Pos`.
///
/// Implementations keep one snapshot per key: [`save`](Self::save) replaces
/// it only with a snapshot at a strictly later position, whatever the
/// schema versions (so a racing writer with an older state never wins).
/// Async methods return `impl Future<..> + Send`; implementations may write
/// `async fn`.
pub trait SnapshotStore<Pos>: Send + Sync {
    /// What goes wrong in the snapshot store.
    type Error: StdError + Send + Sync + 'static;

    /// When snapshots are worth taking.
    fn policy(&self) -> SnapshotPolicy;

    /// The newest snapshot under `key`, if any.
    fn load<'a>(
        &'a self,
        key: &'a SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot<Pos>>, Self::Error>> + Send + 'a;

    /// Keeps `snapshot` under `key` unless the store holds one at the same
    /// or a later position ([`SaveOutcome::Declined`]).
    fn save<'a>(
        &'a self,
        key: &'a SnapshotKey,
        snapshot: Snapshot<Pos>,
    ) -> impl Future<Output = Result<SaveOutcome, Self::Error>> + Send + 'a;

    /// Takes a snapshot with `create` and saves it, only if the policy
    /// accepts `events_since_last_snapshot`; otherwise `create` is not
    /// called (nothing is serialised).
    fn offer<'a, E, F>(
        &'a self,
        key: &'a SnapshotKey,
        events_since_last_snapshot: u64,
        create: F,
    ) -> impl Future<Output = Result<OfferOutcome, OfferError<Self::Error, E>>> + Send + 'a
    where
        F: FnOnce() -> Result<Snapshot<Pos>, E> + Send + 'a,
        E: Send + 'a,
        Pos: Send + 'a,
    {
        let due = self.policy().accepts(events_since_last_snapshot);
        async move {
            if !due {
                return Ok(OfferOutcome::NotDue);
            }
            let snapshot = create().map_err(OfferError::Create)?;
            match self.save(key, snapshot).await.map_err(OfferError::Store)? {
                SaveOutcome::Saved => Ok(OfferOutcome::Saved),
                SaveOutcome::Declined => Ok(OfferOutcome::Declined),
            }
        }
    }
}
// ANCHOR_END: snapshot_store_trait

/// The snapshot store of repositories without snapshots: policy
/// [`Never`](SnapshotPolicy::Never), loads nothing, declines every save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSnapshots;

impl<Pos: Send + 'static> SnapshotStore<Pos> for NoSnapshots {
    type Error = Infallible;

    fn policy(&self) -> SnapshotPolicy {
        SnapshotPolicy::Never
    }

    fn load<'a>(
        &'a self,
        _: &'a SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot<Pos>>, Infallible>> + Send + 'a {
        std::future::ready(Ok(None))
    }

    fn save<'a>(
        &'a self,
        _: &'a SnapshotKey,
        _: Snapshot<Pos>,
    ) -> impl Future<Output = Result<SaveOutcome, Infallible>> + Send + 'a {
        std::future::ready(Ok(SaveOutcome::Declined))
    }
}

/// A snapshot store in use by a repository
/// ([`Repository::with_snapshots`](crate::repository::Repository::with_snapshots)
/// wraps it). It is a [`SnapshotStore`] itself, delegating to `T`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshotting<T>(T);

impl<T> Snapshotting<T> {
    /// Wraps `store`.
    pub fn new(store: T) -> Self {
        Self(store)
    }

    /// The snapshot store.
    pub fn store(&self) -> &T {
        &self.0
    }

    /// The snapshot store, giving up the wrapper.
    pub fn into_store(self) -> T {
        self.0
    }
}

impl<Pos: Send + 'static, T: SnapshotStore<Pos>> SnapshotStore<Pos> for Snapshotting<T> {
    type Error = T::Error;

    fn policy(&self) -> SnapshotPolicy {
        self.0.policy()
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

/// A snapshot went wrong; the state stayed right (a full replay, or no new
/// snapshot). Logged through `tracing` at `warn` and reported in
/// [`CommandOutcome::warnings`](crate::repository::CommandOutcome::warnings)
/// and [`Loaded::warnings`](crate::repository::Loaded::warnings).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot of {target}: {problem}: {reason}")]
#[non_exhaustive]
pub struct SnapshotWarning {
    /// What the snapshot is of: its key, or the aggregate kind and id when
    /// no key could be made.
    pub target: String,
    /// What went wrong.
    pub problem: SnapshotProblem,
    /// The underlying error, with its sources.
    pub reason: String,
}

impl SnapshotWarning {
    /// A warning about `target`, logged at once.
    pub(crate) fn logged(target: impl fmt::Display, problem: SnapshotProblem, error: &dyn StdError) -> Self {
        let mut reason = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        let warning = Self {
            target: target.to_string(),
            problem,
            reason,
        };
        tracing::warn!(target: "sourcery::snapshot", %warning, "snapshot skipped; the state is replayed or left unsnapshotted");
        warning
    }
}

/// What went wrong with a snapshot (see [`SnapshotWarning`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotProblem {
    /// The id did not serialise into a key: no snapshot is used or taken.
    Key,
    /// The snapshot store failed on load: full replay.
    Load,
    /// The stored snapshot did not decode: full replay.
    Decode,
    /// The state did not encode: no snapshot taken.
    Encode,
    /// The snapshot store failed on save: no snapshot taken.
    Save,
    /// Re-reading the stream after an unchecked commit failed: no snapshot
    /// taken.
    Refresh,
    /// The event store could not tell its snapshot frontier: no projection
    /// snapshot taken.
    Frontier,
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Key => "the key could not be made",
            Self::Load => "the snapshot store failed to load, replayed every event",
            Self::Decode => "the snapshot does not decode, replayed every event",
            Self::Encode => "the state does not encode, no snapshot taken",
            Self::Save => "the snapshot store failed to save, no snapshot taken",
            Self::Refresh => "the stream could not be re-read after an unchecked commit, no snapshot taken",
            Self::Frontier => "the event store's snapshot frontier is unknown, no snapshot taken",
        })
    }
}

/// Where loading an aggregate starts: a snapshot's state and position, or
/// the default state.
#[derive(Debug)]
#[non_exhaustive]
pub struct Restored<A, Pos> {
    /// The snapshot's state, or `A::default()`.
    pub state: A,
    /// The snapshot's position; `None` when replaying from the start.
    pub position: Option<Pos>,
    /// Why a snapshot was not used, if one went wrong.
    pub warnings: Vec<SnapshotWarning>,
}

impl<A: Default, Pos> Restored<A, Pos> {
    fn from_start(warnings: Vec<SnapshotWarning>) -> Self {
        Self {
            state: A::default(),
            position: None,
            warnings,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoSnapshots {}
    impl<T> Sealed for super::Snapshotting<T> {}
}

/// How a repository's snapshot setting serves aggregate `A`: implemented by
/// [`NoSnapshots`] for every aggregate, and by [`Snapshotting<T>`] for
/// aggregates that are `Serialize + DeserializeOwned` with `Id: Serialize`.
/// Sealed: it is the bound on the repository's methods, not an extension
/// point (implement [`SnapshotStore`] instead).
#[diagnostic::on_unimplemented(
    message = "`{A}` cannot be snapshotted by `{Self}`",
    note = "a repository with snapshots needs the aggregate to be `Serialize + DeserializeOwned` and its `Id` to be `Serialize`"
)]
pub trait AggregateSnapshots<A: Aggregate, Pos>: sealed::Sealed + Send + Sync {
    /// Whether a snapshot is due after `events_since_last_snapshot` events.
    fn is_due(&self, events_since_last_snapshot: u64) -> bool;

    /// The state to replay the tail onto: the snapshot of `id` when there is
    /// a compatible, decodable one, else the default state.
    fn restore<'a, C: Codec>(
        &'a self,
        id: &'a A::Id,
        codec: &'a C,
    ) -> impl Future<Output = Restored<A, Pos>> + Send + 'a;

    /// Offers `state` at `position` as the snapshot of `id`; a warning when
    /// it went wrong.
    fn offer_state<'a, C: Codec>(
        &'a self,
        id: &'a A::Id,
        codec: &'a C,
        state: &'a A,
        position: Pos,
        events_since_last_snapshot: u64,
    ) -> impl Future<Output = Option<SnapshotWarning>> + Send + 'a;
}

impl<A: Aggregate, Pos: Send + 'static> AggregateSnapshots<A, Pos> for NoSnapshots {
    fn is_due(&self, _: u64) -> bool {
        false
    }

    fn restore<'a, C: Codec>(
        &'a self,
        _: &'a A::Id,
        _: &'a C,
    ) -> impl Future<Output = Restored<A, Pos>> + Send + 'a {
        std::future::ready(Restored::from_start(Vec::new()))
    }

    fn offer_state<'a, C: Codec>(
        &'a self,
        _: &'a A::Id,
        _: &'a C,
        _: &'a A,
        _: Pos,
        _: u64,
    ) -> impl Future<Output = Option<SnapshotWarning>> + Send + 'a {
        std::future::ready(None)
    }
}

impl<A, Pos, T> AggregateSnapshots<A, Pos> for Snapshotting<T>
where
    A: Aggregate + Serialize + DeserializeOwned,
    A::Id: Serialize,
    Pos: Debug + Send + Sync + 'static,
    T: SnapshotStore<Pos>,
{
    fn is_due(&self, events_since_last_snapshot: u64) -> bool {
        self.0.policy().accepts(events_since_last_snapshot)
    }

    #[expect(
        clippy::manual_async_fn,
        reason = "an explicit `+ Send` keeps callers' futures `Send` without leaking this future's type (an `async fn` here trips rustc's higher-ranked `Send` check in spawned tasks)"
    )]
    fn restore<'a, C: Codec>(
        &'a self,
        id: &'a A::Id,
        codec: &'a C,
    ) -> impl Future<Output = Restored<A, Pos>> + Send + 'a {
        async move {
            let key = match SnapshotKey::for_aggregate::<A>(id) {
                Ok(key) => key,
                Err(error) => {
                    let target = format!("aggregate {} {id:?}", A::KIND);
                    return Restored::from_start(vec![SnapshotWarning::logged(
                        target,
                        SnapshotProblem::Key,
                        &error,
                    )]);
                }
            };
            let snapshot = match self.0.load(&key).await {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) => return Restored::from_start(Vec::new()),
                Err(error) => {
                    let warning = SnapshotWarning::logged(&key, SnapshotProblem::Load, &error);
                    return Restored::from_start(vec![warning]);
                }
            };
            if snapshot.schema_version != A::SNAPSHOT_VERSION {
                tracing::debug!(
                    target: "sourcery::snapshot",
                    %key,
                    found = snapshot.schema_version,
                    expected = A::SNAPSHOT_VERSION,
                    "ignoring a snapshot of another schema version; replaying every event"
                );
                return Restored::from_start(Vec::new());
            }
            match codec.decode::<A>(&snapshot.data) {
                Ok(state) => Restored {
                    state,
                    position: Some(snapshot.position),
                    warnings: Vec::new(),
                },
                Err(error) => {
                    let warning = SnapshotWarning::logged(&key, SnapshotProblem::Decode, &error);
                    Restored::from_start(vec![warning])
                }
            }
        }
    }

    #[expect(clippy::manual_async_fn, reason = "as `restore`")]
    fn offer_state<'a, C: Codec>(
        &'a self,
        id: &'a A::Id,
        codec: &'a C,
        state: &'a A,
        position: Pos,
        events_since_last_snapshot: u64,
    ) -> impl Future<Output = Option<SnapshotWarning>> + Send + 'a {
        async move {
            let key = match SnapshotKey::for_aggregate::<A>(id) {
                Ok(key) => key,
                Err(error) => {
                    let target = format!("aggregate {} {id:?}", A::KIND);
                    return Some(SnapshotWarning::logged(target, SnapshotProblem::Key, &error));
                }
            };
            let create = || {
                codec.encode(state).map(|data| Snapshot {
                    position,
                    schema_version: A::SNAPSHOT_VERSION,
                    data,
                })
            };
            match self.0.offer(&key, events_since_last_snapshot, create).await {
                Ok(_) => None,
                Err(OfferError::Create(error)) => {
                    Some(SnapshotWarning::logged(&key, SnapshotProblem::Encode, &error))
                }
                Err(OfferError::Store(error)) => {
                    Some(SnapshotWarning::logged(&key, SnapshotProblem::Save, &error))
                }
            }
        }
    }
}

/// Where a projection snapshot may be taken: the event store's hook for
/// stores whose positions become visible out of order.
///
/// Resuming a projection "after position `p`" is only right if no event at
/// or below `p` can still appear. Stores that make every position visible
/// in order (the in-memory and SQLite stores: one writer at a time) keep the
/// default: a snapshot at the last event applied. A store where a
/// transaction can still commit an event below a visible one (PostgreSQL,
/// whose sequence values are taken before commit) returns its *safe
/// frontier*: a position at or below which every event that will ever exist
/// is already visible. The repository asks before loading and snapshots
/// only at the last event at or below it.
pub trait SnapshotFrontier: GloballyOrdered {
    /// The safe frontier; `None` (the default) when every event a load
    /// returns is final.
    fn snapshot_frontier(
        &self,
    ) -> impl Future<Output = Result<Option<Self::Position>, Self::Error>> + Send + '_ {
        std::future::ready(Ok(None))
    }
}

impl<Id, M> SnapshotFrontier for crate::store::inmemory::Store<Id, M>
where
    Id: Clone + Eq + std::hash::Hash + Debug + std::fmt::Display + Send + Sync + 'static,
    M: Clone + serde::Serialize + Send + Sync + 'static,
{
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(n: u64) -> SnapshotPolicy {
        SnapshotPolicy::EveryNEvents(NonZeroU64::new(n).unwrap())
    }

    #[test]
    fn policy_truth_table() {
        let cases: &[(SnapshotPolicy, [bool; 6])] = &[
            // events since:   0      1      2      3      4      100
            (SnapshotPolicy::Always, [false, true, true, true, true, true]),
            (every(1), [false, true, true, true, true, true]),
            (every(3), [false, false, false, true, true, true]),
            (every(100), [false, false, false, false, false, true]),
            (SnapshotPolicy::Never, [false, false, false, false, false, false]),
        ];
        for (policy, expected) in cases {
            for (since, want) in [0, 1, 2, 3, 4, 100].into_iter().zip(expected) {
                assert_eq!(policy.accepts(since), *want, "{policy:?} after {since} events");
            }
        }
        assert!(!every(1).accepts(0));
        assert!(every(u64::MAX).accepts(u64::MAX));
        assert!(!every(u64::MAX).accepts(u64::MAX - 1));
    }

    #[derive(Serialize)]
    struct AccountId(u64);

    #[test]
    fn aggregate_keys_separate_id_types() {
        let text = |id: &dyn erased::Id| SnapshotKey::aggregate("k", id.text());
        let keys = [
            text(&"1".to_string()),
            text(&1_u64),
            text(&-1_i64),
            text(&()),
            text(&"null".to_string()),
            text(&uuid::Uuid::nil()),
            text(&String::new()),
            SnapshotKey::projection("k"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[0].id(), "\"1\"");
        assert_eq!(keys[1].id(), "1");
        assert_eq!(keys[3].id(), "null");
        assert_eq!(keys[4].id(), "\"null\"");
        assert_eq!(keys[6].id(), "\"\"");
        // A newtype is keyed like what it wraps (serde's newtype rule), so it
        // keeps the same key when an id is wrapped later.
        assert_eq!(SnapshotKey::id_text(&AccountId(7)).unwrap(), "7");
    }

    #[test]
    fn aggregate_and_projection_keys_differ_with_the_same_kind_and_id() {
        let aggregate = SnapshotKey::aggregate("totals", "");
        let projection = SnapshotKey::projection("totals");
        assert_eq!(
            (aggregate.kind(), aggregate.id()),
            (projection.kind(), projection.id())
        );
        assert_ne!(aggregate, projection);
        assert_eq!(aggregate.subject().as_str(), "aggregate");
        assert_eq!(projection.subject().as_str(), "projection");
        assert_eq!(projection.to_string(), "projection totals ");
    }

    #[test]
    fn projection_keys_follow_the_selection_not_its_order() {
        let a = EventFilter::<String, u64>::for_event("a");
        let b = EventFilter::<String, u64>::for_aggregate("b", "order", "O-1".into());
        let c = EventFilter::<String, u64>::for_aggregate("b", "order", "O-2".into());
        let key =
            |filters: &[EventFilter<String, u64>]| SnapshotKey::for_projection_events("p", filters).unwrap();
        assert_eq!(
            key(&[a.clone(), b.clone()]),
            key(&[b.clone(), a.clone(), a.clone().after(3)])
        );
        assert_ne!(key(&[a.clone(), b.clone()]), key(&[a.clone(), c]));
        assert_ne!(key(std::slice::from_ref(&a)), key(&[a.clone(), b]));
        assert_eq!(key(&[a]).id().len(), 32);
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    mod erased {
        pub(super) trait Id {
            fn text(&self) -> String;
        }
        impl<T: serde::Serialize> Id for T {
            fn text(&self) -> String {
                super::SnapshotKey::id_text(self).unwrap()
            }
        }
    }

    #[tokio::test]
    async fn no_snapshots_loads_nothing_and_keeps_nothing() {
        let key = SnapshotKey::projection("p");
        let store = NoSnapshots;
        assert_eq!(SnapshotStore::<u64>::policy(&store), SnapshotPolicy::Never);
        let snapshot = Snapshot {
            position: 1_u64,
            schema_version: 1,
            data: vec![1],
        };
        assert_eq!(store.save(&key, snapshot).await, Ok(SaveOutcome::Declined));
        assert_eq!(SnapshotStore::<u64>::load(&store, &key).await, Ok(None));
    }
}

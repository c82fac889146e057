//! The repository: load aggregates, execute commands, load projections.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use sourcery_core::aggregate::{Aggregate, Apply, Handle, HandleCreate};
//! # use sourcery_core::event::{DecodeEvent, DecodeFailure, RawEvent, DomainEvent, EventPayload};
//! # use sourcery_core::codec::Codec;
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # struct Opened;
//! # impl DomainEvent for Opened { const KIND: &'static str = "counter.opened"; }
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # struct Added { n: u64 }
//! # impl DomainEvent for Added { const KIND: &'static str = "counter.added"; }
//! # #[derive(Debug, Clone, PartialEq)]
//! # enum CounterEvent { Opened(Opened), Added(Added) }
//! # impl EventPayload for CounterEvent {
//! #     fn kind(&self) -> &'static str { match self { Self::Opened(e) => e.kind(), Self::Added(e) => e.kind() } }
//! #     fn schema_version(&self) -> u32 { match self { Self::Opened(e) => e.schema_version(), Self::Added(e) => e.schema_version() } }
//! #     fn encode_with<C: Codec>(&self, c: &C) -> Result<Vec<u8>, C::Error> { match self { Self::Opened(e) => e.encode_with(c), Self::Added(e) => e.encode_with(c) } }
//! # }
//! # impl DecodeEvent for CounterEvent {
//! #     fn event_kinds() -> &'static [&'static str] { &[Opened::KIND, Added::KIND] }
//! #     fn decode_with<C: Codec>(c: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
//! #         if let Some(e) = Opened::decode_with(c, event)? { return Ok(Some(Self::Opened(e))); }
//! #         Ok(Added::decode_with(c, event)?.map(Self::Added))
//! #     }
//! # }
//! # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
//! #[derive(Debug, Default)]
//! struct Counter { total: u64 }
//! # impl Aggregate for Counter {
//! #     const KIND: &'static str = "counter";
//! #     type Id = String; type Event = CounterEvent; type Error = Never;
//! #     fn apply(&mut self, e: &CounterEvent) { if let CounterEvent::Added(a) = e { self.total += a.n } }
//! # }
//! struct Open;
//! struct Add(u64);
//! impl HandleCreate<Open> for Counter {
//!     fn handle_create(_: &Open) -> Result<Vec<CounterEvent>, Never> { Ok(vec![CounterEvent::Opened(Opened)]) }
//! }
//! impl Handle<Add> for Counter {
//!     fn handle(&self, add: &Add) -> Result<Vec<CounterEvent>, Never> { Ok(vec![CounterEvent::Added(Added { n: add.0 })]) }
//! }
//!
//! use sourcery_core::repository::Repository;
//! use sourcery_core::store::inmemory;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let repository = Repository::new(inmemory::Store::<String, ()>::new());
//! let id = "c-1".to_string();
//! repository.create::<Counter, _>(&id, &Open, ()).await?;
//! repository.execute::<Counter, _>(&id, &Add(2), ()).await?;
//! let outcome = repository.execute_with_retry::<Counter, _>(&id, &Add(3), (), 3).await?;
//! assert_eq!(outcome.attempts, 1);
//! assert_eq!(repository.load::<Counter>(&id).await?.total, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt::{self, Debug};
use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{Aggregate, Handle, HandleCreate};
use crate::codec::Codec;
use crate::concurrency::{ConcurrencyConflict, ConcurrencyStrategy, ExpectedVersion, Optimistic, Unchecked};
use crate::event::{DecodeError, DecodeEvent, EncodeError};
use crate::id::{CommandId, EventId};
use crate::metadata::Metadata;
use crate::projection::{Projection, ProjectionEvents, ProjectionFor};
use crate::snapshot::{
    AggregateSnapshots, NoSnapshots, Snapshot, SnapshotFrontier, SnapshotKey, SnapshotProblem, SnapshotStore,
    SnapshotWarning, Snapshotting,
};
use crate::store::{AppendError, EventFilter, EventStore, IdReused, InvalidBatch, StoredEvent, Transaction};

pub use command::{CommandOptions, RetryPolicy};

mod command;

/// Loads aggregates, executes commands and loads projections over one store.
///
/// Concurrency is chosen here: optimistic by default (a command whose
/// aggregate changed since it was loaded fails with a conflict; see
/// [`execute_with_retry`](Self::execute_with_retry)), unchecked on request
/// ([`without_concurrency_checking`](Self::without_concurrency_checking)).
/// Creating an aggregate always requires an empty stream.
///
/// Snapshots are chosen here too: none by default ([`NoSnapshots`]), or a
/// [`SnapshotStore`] with [`with_snapshots`](Self::with_snapshots). With
/// one, loads start from the aggregate's latest compatible snapshot and
/// replay only the events after it, and commands offer a snapshot of the
/// new state after their commit; see [`snapshot`](crate::snapshot) for the
/// rules that keep snapshotted state exactly the replayed state.
pub struct Repository<S, C = Optimistic, Snap = NoSnapshots> {
    store: S,
    snapshots: Snap,
    strategy: PhantomData<C>,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutcome<Pos> {
    /// The position of the last event written; `None` when the command
    /// produced no events (and nothing was written).
    pub last_position: Option<Pos>,
    /// How many events were written.
    pub events: usize,
    /// The ids of the events written, in order (derived from the command
    /// id when it had one).
    pub event_ids: Vec<EventId>,
    /// Whether the command had run before under the same command id: its
    /// events were stored already and nothing was written now. The outcome
    /// is then the first run's (its last position and its events).
    pub replayed: bool,
    /// How many attempts it took (1 unless conflicts or store errors were
    /// retried).
    pub attempts: u32,
    /// Snapshot problems met on the way (a snapshot ignored on load, or not
    /// saved after the commit). They never fail the command: its events are
    /// committed. Empty without snapshots.
    pub warnings: Vec<SnapshotWarning>,
}

/// Why an aggregate or projection could not be loaded.
///
/// `Id` and `Pos` are the store's id and position types: the error carries
/// the aggregate id and the event's position as typed values. Spell it
/// [`LoadErrorFor<S>`] for store `S`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError<StoreError, Id: Debug, Pos: Debug> {
    /// The aggregate's stream has no events.
    #[error("{aggregate_kind} {aggregate_id:?} does not exist")]
    NotFound {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id.
        aggregate_id: Id,
    },
    /// A stored event does not decode (an unknown kind, a payload or
    /// metadata of another shape, a failed upcast).
    #[error(transparent)]
    Decode(#[from] DecodeError<Id, Pos>),
    /// The store failed.
    #[error("the event store failed")]
    Store(#[source] StoreError),
}

/// The [`LoadError`] of store `S`.
pub type LoadErrorFor<S> =
    LoadError<<S as EventStore>::Error, <S as EventStore>::Id, <S as EventStore>::Position>;

/// Why a command did not take effect. Nothing was written in any case.
///
/// Match on it to decide: [`Rejected`](Self::Rejected) goes back to the
/// user, [`Conflict`](Self::Conflict) is worth a retry,
/// [`NotFound`](Self::NotFound) / [`AlreadyExists`](Self::AlreadyExists) /
/// [`Invalid`](Self::Invalid) are the caller's mistake,
/// [`Decode`](Self::Decode), [`Encode`](Self::Encode) and
/// [`Store`](Self::Store) call for an operator.
///
/// `Pos` and `Id` are the store's position and id types. Spell it
/// [`CommandErrorFor<A, S>`] for aggregate `A` on store `S`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<AggregateError, StoreError, Pos: Debug, Id: Debug> {
    /// The aggregate rejected the command (its message is this error's).
    #[error(transparent)]
    Rejected(AggregateError),
    /// The aggregate changed between the load and the commit.
    #[error(transparent)]
    Conflict(ConcurrencyConflict<Pos>),
    /// The command needs an existing aggregate and the stream is empty.
    #[error("{aggregate_kind} {aggregate_id:?} does not exist")]
    NotFound {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id.
        aggregate_id: Id,
    },
    /// A creation command met a stream that already has events.
    #[error("{aggregate_kind} {aggregate_id:?} already exists")]
    AlreadyExists {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id.
        aggregate_id: Id,
    },
    /// A stored event of the aggregate does not decode.
    #[error(transparent)]
    Decode(DecodeError<Id, Pos>),
    /// An event the aggregate produced could not be encoded.
    #[error(transparent)]
    Encode(EncodeError),
    /// The events the command produced hold something no store keeps (a
    /// NUL character in the aggregate id's text, an event kind or the
    /// metadata, or schema version 0); the store refused them, naming the
    /// field. A retry cannot help.
    #[error(transparent)]
    Invalid(InvalidBatch),
    /// The command id is not this command's: some ids derived from it are
    /// stored already, in another stream or for other events (see
    /// [`AppendError::IdReused`]). A retry cannot help.
    #[error(transparent)]
    IdReused(IdReused),
    /// The store failed. With a command id, retrying is safe (and
    /// [`execute_with_retry`](Repository::execute_with_retry) does): if the
    /// failed attempt did commit, the retry finds its events and returns
    /// its outcome.
    #[error("the event store failed")]
    Store(#[source] StoreError),
}

impl<AggregateError, StoreError, Pos: Debug, Id: Debug> CommandError<AggregateError, StoreError, Pos, Id> {
    /// Whether the command was refused by the aggregate or the store's
    /// rules (rejected, a conflict, not found, already exists, ids reused),
    /// as opposed to a failure.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Rejected(_)
                | Self::Conflict(_)
                | Self::NotFound { .. }
                | Self::AlreadyExists { .. }
                | Self::IdReused(_)
        )
    }

    /// Whether this is a concurrency conflict (reload and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }

    /// The aggregate's rejection, if that is what this is.
    pub fn as_rejection(&self) -> Option<&AggregateError> {
        match self {
            Self::Rejected(error) => Some(error),
            _ => None,
        }
    }
}

impl<AggregateError, StoreError, Pos: Debug, Id: Debug> From<LoadError<StoreError, Id, Pos>>
    for CommandError<AggregateError, StoreError, Pos, Id>
{
    fn from(error: LoadError<StoreError, Id, Pos>) -> Self {
        match error {
            LoadError::NotFound {
                aggregate_kind,
                aggregate_id,
            } => Self::NotFound {
                aggregate_kind,
                aggregate_id,
            },
            LoadError::Decode(error) => Self::Decode(error),
            LoadError::Store(error) => Self::Store(error),
        }
    }
}

/// The [`CommandError`] of aggregate `A` on store `S`.
pub type CommandErrorFor<A, S> = CommandError<
    <A as Aggregate>::Error,
    <S as EventStore>::Error,
    <S as EventStore>::Position,
    <S as EventStore>::Id,
>;

/// The outcome of a command of aggregate `A` on store `S`.
pub type CommandResult<A, S> = Result<CommandOutcome<<S as EventStore>::Position>, CommandErrorFor<A, S>>;

/// An aggregate's state and the version it was read at.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded<A, Pos> {
    /// The state, folded from every event of the stream (from a snapshot
    /// and the events after it, with snapshots).
    pub state: A,
    /// The position of the stream's last event; `None` for an empty stream.
    pub version: Option<Pos>,
    /// The position of the snapshot the load started from; `None` when it
    /// replayed the stream from its first event.
    pub snapshot_position: Option<Pos>,
    /// How many events were applied (after the snapshot, if any).
    pub replayed: usize,
    /// Why a snapshot was not used, when one went wrong (the state is then
    /// a full replay).
    pub warnings: Vec<SnapshotWarning>,
}

impl<S: EventStore> Repository<S> {
    /// A repository over `store`, with optimistic concurrency and no
    /// snapshots.
    pub fn new(store: S) -> Self {
        Self {
            store,
            snapshots: NoSnapshots,
            strategy: PhantomData,
        }
    }
}

impl<S: EventStore, C: ConcurrencyStrategy, Snap> Repository<S, C, Snap> {
    /// The same repository, committing without version checks (last writer
    /// appends; creations still require an empty stream).
    #[must_use]
    pub fn without_concurrency_checking(self) -> Repository<S, Unchecked, Snap> {
        Repository {
            store: self.store,
            snapshots: self.snapshots,
            strategy: PhantomData,
        }
    }

    /// The same repository, with optimistic concurrency.
    #[must_use]
    pub fn with_optimistic_concurrency(self) -> Repository<S, Optimistic, Snap> {
        Repository {
            store: self.store,
            snapshots: self.snapshots,
            strategy: PhantomData,
        }
    }

    /// The same repository, loading aggregates from snapshots in
    /// `snapshots` and offering it new ones after commits, per its
    /// [policy](crate::snapshot::SnapshotPolicy).
    ///
    /// Aggregates loaded or changed through it must be
    /// `Serialize + DeserializeOwned` with `Id: Serialize`; their state is
    /// encoded with the event store's codec and tagged with
    /// [`Aggregate::SNAPSHOT_VERSION`].
    #[must_use]
    pub fn with_snapshots<T>(self, snapshots: T) -> Repository<S, C, Snapshotting<T>>
    where
        T: SnapshotStore<S::Position>,
    {
        Repository {
            store: self.store,
            snapshots: Snapshotting::new(snapshots),
            strategy: PhantomData,
        }
    }

    /// The same repository without snapshots.
    #[must_use]
    pub fn without_snapshots(self) -> Repository<S, C> {
        Repository {
            store: self.store,
            snapshots: NoSnapshots,
            strategy: PhantomData,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, giving up the repository.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The snapshot setting: [`NoSnapshots`], or the [`Snapshotting`]
    /// wrapper around the snapshot store.
    pub fn snapshots(&self) -> &Snap {
        &self.snapshots
    }

    /// Loads aggregate `A` with `id`: every event of its stream, applied in
    /// order (with snapshots: the latest snapshot and the events after it).
    ///
    /// # Errors
    ///
    /// [`LoadError::NotFound`] when the stream is empty,
    /// [`LoadError::Decode`] naming the event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load<A>(&self, id: &A::Id) -> Result<A, LoadErrorFor<S>>
    where
        A: Aggregate<Id = S::Id>,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let loaded = self.load_versioned::<A>(id).await?;
        if loaded.version.is_none() {
            return Err(not_found::<A, S>(id));
        }
        Ok(loaded.state)
    }

    /// Loads aggregate `A` with `id` and the version it was read at; an
    /// empty stream gives the default state and no version.
    ///
    /// With snapshots it starts from the latest snapshot whose schema
    /// version is [`A::SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) and
    /// replays the events after its position. A snapshot that does not
    /// decode, or a snapshot store that fails, gives a full replay and a
    /// warning in [`Loaded::warnings`] (never an error).
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming the event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load_versioned<A>(&self, id: &A::Id) -> Result<Loaded<A, S::Position>, LoadErrorFor<S>>
    where
        A: Aggregate<Id = S::Id>,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let restored = self.snapshots.restore(id, self.store.codec()).await;
        let snapshot_position = restored.position;
        let mut state = restored.state;
        let mut version = snapshot_position;
        let events = self
            .store
            .load_events(&[stream_filter::<A, S>(id, snapshot_position)])
            .await
            .map_err(load_failed::<S>)?;
        for event in &events {
            apply_stored(&mut state, event, self.store.codec())?;
            version = Some(event.position);
        }
        Ok(Loaded {
            state,
            version,
            snapshot_position,
            replayed: events.len(),
            warnings: restored.warnings,
        })
    }

    /// Executes `command` on the existing aggregate `A` with `id`: load,
    /// decide, append with `metadata`, commit. A command that produces no
    /// events writes nothing. Each event gets a fresh id; for a command that
    /// must apply once however often it is sent, give it a command id with
    /// [`execute_with`](Self::execute_with).
    ///
    /// With snapshots, a snapshot of the new state is offered after the
    /// commit when the policy finds one due. After an optimistic commit that
    /// state is the loaded state with the new events applied; after an
    /// unchecked one the stream's events after the loaded version are read
    /// again (another writer may have appended in between) and applied
    /// instead. A snapshot failure then is a warning in
    /// [`CommandOutcome::warnings`], never an error: the events are
    /// committed.
    ///
    /// # Errors
    ///
    /// [`CommandError::NotFound`] when the aggregate does not exist,
    /// [`CommandError::Rejected`] when it rejects the command,
    /// [`CommandError::Conflict`] (optimistic repositories) when it changed
    /// meanwhile, [`CommandError::Invalid`] when the store refuses the
    /// events (a NUL character in a text, naming the field), and the load
    /// and store failures.
    pub async fn execute<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        self.execute_once::<A, Cmd>(id, command, metadata, Idempotency::NONE, None)
            .await
    }

    /// [`execute`](Self::execute) with [`CommandOptions`]: a command id, the
    /// version the commit requires, retries.
    ///
    /// With a command id, the command is idempotent. The ids of its events
    /// are derived from the command id, and before deciding anything the
    /// repository looks for them in the aggregate's stream: found, the
    /// command ran before (an earlier attempt whose acknowledgement was
    /// lost, another process, a redelivered message), and the outcome is
    /// that first run's, with [`CommandOutcome::replayed`] set and nothing
    /// written. Two processes running the same command id at once write it
    /// once: the loser's commit finds the winner's events (a replay, or a
    /// conflict after which the repository looks again) and both are told
    /// the same outcome.
    ///
    /// Retries follow the options' [`RetryPolicy`]: after a conflict the
    /// command is loaded and decided again at once; after a store error
    /// (whose outcome may be unknown) it is sent again with the same ids
    /// after a jittered backoff, under the caller's command id or, when the
    /// caller set none, one the repository picks for these attempts.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute); [`CommandError::IdReused`] when ids
    /// derived from the command id are stored for other events or in
    /// another stream (a command id used for two commands); a conflict or a
    /// store error only once the retries allowed are spent.
    pub async fn execute_with<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
        options: CommandOptions<S::Position>,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let expected = options.expected_version().copied();
        retrying::<A, S, _, _>(&options, |idempotency| {
            self.execute_once::<A, Cmd>(id, command, metadata.clone(), idempotency, expected)
        })
        .await
    }

    /// One attempt of a command on an existing aggregate.
    async fn execute_once<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
        idempotency: Idempotency,
        expected: Option<ExpectedVersion<S::Position>>,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let (command_id, probe) = (idempotency.command_id, idempotency.probe());
        if let Some(replay) = self.replay_of::<A>(id, probe).await? {
            return Ok(replay);
        }
        let loaded = self.load_versioned::<A>(id).await?;
        let Some(version) = loaded.version else {
            return Err(not_found::<A, S>(id).into());
        };
        let required = match expected {
            None if C::CHECKS_VERSION => ExpectedVersion::Exact(version),
            None | Some(ExpectedVersion::Any | ExpectedVersion::StreamExists) => {
                ExpectedVersion::StreamExists
            }
            Some(expected) if expected.allows(Some(version)) => expected,
            Some(expected) => {
                return Err(CommandError::Conflict(ConcurrencyConflict::new(
                    expected,
                    Some(version),
                )));
            }
        };
        let exact = matches!(required, ExpectedVersion::Exact(_));
        let Loaded {
            mut state,
            replayed,
            mut warnings,
            ..
        } = loaded;
        let events = state.handle(command).map_err(CommandError::Rejected)?;
        let since = count(replayed).saturating_add(count(events.len()));
        let due = !events.is_empty() && self.snapshots.is_due(since);
        if due && exact {
            // The commit succeeds only if the stream is still at `version`,
            // so the new state is exactly the loaded one plus these events.
            for event in &events {
                state.apply(event);
            }
        }
        let tx = self
            .store
            .begin::<C>(A::KIND, id.clone(), Some(version))
            .expecting(required);
        let mut outcome = match commit::<A, S, C>(tx, events, metadata, command_id).await {
            Err(error) => return self.replay_after::<A>(id, probe, error).await,
            Ok(outcome) => outcome,
        };
        if let (true, Some(last_position), false) = (due, outcome.last_position, outcome.replayed) {
            let warning = if exact {
                self.snapshots
                    .offer_state(id, self.store.codec(), &state, last_position, since)
                    .await
            } else {
                self.snapshot_after_unchecked(id, state, version, replayed).await
            };
            warnings.extend(warning);
        }
        outcome.warnings = warnings;
        Ok(outcome)
    }

    /// The outcome of the earlier run of the command `command_id` on the
    /// stream of `A` with `id`, if it committed.
    async fn replay_of<A>(
        &self,
        id: &A::Id,
        command_id: Option<CommandId>,
    ) -> Result<Option<CommandOutcome<S::Position>>, CommandErrorFor<A, S>>
    where
        A: Aggregate<Id = S::Id>,
    {
        let Some(command_id) = command_id else {
            return Ok(None);
        };
        let found = command::find_replay(&self.store, A::KIND, id, command_id)
            .await
            .map_err(CommandError::Store)?;
        Ok(found.map(|replay| CommandOutcome {
            last_position: Some(replay.last_position),
            events: replay.events,
            event_ids: replay.event_ids,
            replayed: true,
            attempts: 1,
            warnings: Vec::new(),
        }))
    }

    /// After a refused commit of the command `command_id`: when the refusal
    /// is a conflict or an id reuse, another run of the same command may
    /// have committed first; its outcome then, the refusal otherwise.
    async fn replay_after<A>(
        &self,
        id: &A::Id,
        command_id: Option<CommandId>,
        error: CommandErrorFor<A, S>,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id>,
    {
        let raced = matches!(
            error,
            CommandError::Conflict(_) | CommandError::IdReused(_) | CommandError::AlreadyExists { .. }
        );
        if command_id.is_some()
            && raced
            && let Some(replay) = self.replay_of::<A>(id, command_id).await?
        {
            return Ok(replay);
        }
        Err(error)
    }

    /// After an unchecked commit: reads the stream after `version` (this
    /// command's events and any concurrent writer's), folds them into
    /// `state` (the state at `version`) and offers the result at the last
    /// position read.
    async fn snapshot_after_unchecked<A>(
        &self,
        id: &A::Id,
        mut state: A,
        version: S::Position,
        replayed: usize,
    ) -> Option<SnapshotWarning>
    where
        A: Aggregate<Id = S::Id>,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let refresh_failed = |error: &dyn std::error::Error| {
            let target = format!("aggregate {} {id:?}", A::KIND);
            Some(SnapshotWarning::logged(target, SnapshotProblem::Refresh, error))
        };
        let tail = match self
            .store
            .load_events(&[stream_filter::<A, S>(id, Some(version))])
            .await
        {
            Ok(tail) => tail,
            Err(error) => return refresh_failed(&error),
        };
        let mut last = None;
        for event in &tail {
            if let Err(error) = apply_stored(&mut state, event, self.store.codec()) {
                return refresh_failed(&error);
            }
            last = Some(event.position);
        }
        let last = last?;
        let since = count(replayed).saturating_add(count(tail.len()));
        self.snapshots
            .offer_state(id, self.store.codec(), &state, last, since)
            .await
    }

    /// [`execute`](Self::execute), reloading and running the command again
    /// after a conflict, for at most `max_retries + 1` attempts, and sending
    /// it again after a store error (a lost connection, whose commit may or
    /// may not have landed) up to [`RetryPolicy::new`]'s bound, under a
    /// command id the repository picks for these attempts, so a commit that
    /// did land is found, not repeated. The outcome says how many attempts
    /// it took. Other errors return at once. For a command id of the
    /// caller's, or another backoff, use [`execute_with`](Self::execute_with).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute); a conflict only once every attempt
    /// conflicted, a store error once the store retries are spent.
    pub async fn execute_with_retry<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
        max_retries: u32,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let options = CommandOptions::new().retry(RetryPolicy::new().conflicts(max_retries));
        self.execute_with::<A, Cmd>(id, command, metadata, options).await
    }

    /// Creates aggregate `A` with `id` from a creation `command`. The events
    /// are written only if the stream is still empty, whatever the
    /// repository's concurrency strategy: of two racing creations one wins.
    ///
    /// # Errors
    ///
    /// [`CommandError::AlreadyExists`] when the stream has events (found on
    /// load or at commit), [`CommandError::Rejected`] when the aggregate
    /// rejects the command, [`CommandError::Invalid`] when the store refuses
    /// the events (a NUL character in the id or another text, naming the
    /// field), and store failures.
    ///
    /// With snapshots, the new aggregate's state is offered as a snapshot
    /// when the policy finds one due (the stream holds exactly these
    /// events).
    pub async fn create<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + HandleCreate<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        self.create_once::<A, Cmd>(id, command, metadata, Idempotency::NONE, None)
            .await
    }

    /// [`create`](Self::create) with [`CommandOptions`]. With a command id,
    /// a creation that ran before returns its first outcome (with
    /// [`CommandOutcome::replayed`] set) instead of
    /// [`AlreadyExists`](CommandError::AlreadyExists), so a creation
    /// retried after a lost acknowledgement succeeds; store errors are
    /// retried as by [`execute_with`](Self::execute_with). A creation always
    /// requires a new stream: an expected version other than
    /// [`NoStream`](ExpectedVersion::NoStream) or
    /// [`Any`](ExpectedVersion::Any) is a conflict.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and [`CommandError::IdReused`] as for
    /// [`execute_with`](Self::execute_with).
    pub async fn create_with<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
        options: CommandOptions<S::Position>,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + HandleCreate<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let expected = options.expected_version().copied();
        retrying::<A, S, _, _>(&options, |idempotency| {
            self.create_once::<A, Cmd>(id, command, metadata.clone(), idempotency, expected)
        })
        .await
    }

    /// One attempt of a creation.
    async fn create_once<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
        idempotency: Idempotency,
        expected: Option<ExpectedVersion<S::Position>>,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + HandleCreate<Cmd>,
        S::Metadata: Metadata,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        let (command_id, probe) = (idempotency.command_id, idempotency.probe());
        if let Some(replay) = self.replay_of::<A>(id, probe).await? {
            return Ok(replay);
        }
        let exists = self
            .store
            .stream_version(A::KIND, id)
            .await
            .map_err(CommandError::Store)?;
        if let Some(expected) =
            expected.filter(|expected| !matches!(expected, ExpectedVersion::NoStream | ExpectedVersion::Any))
        {
            return Err(CommandError::Conflict(ConcurrencyConflict::new(expected, exists)));
        }
        if exists.is_some() {
            return Err(already_exists::<A, S>(id));
        }
        let events = A::handle_create(command).map_err(CommandError::Rejected)?;
        let since = count(events.len());
        let state = (!events.is_empty() && self.snapshots.is_due(since)).then(|| {
            let mut state = A::default();
            for event in &events {
                state.apply(event);
            }
            state
        });
        let tx = self.store.begin::<Optimistic>(A::KIND, id.clone(), None);
        let mut outcome = match commit::<A, S, Optimistic>(tx, events, metadata, command_id).await {
            Err(CommandError::Conflict(_)) => {
                return self
                    .replay_after::<A>(id, probe, already_exists::<A, S>(id))
                    .await;
            }
            Err(error) => return self.replay_after::<A>(id, probe, error).await,
            Ok(outcome) => outcome,
        };
        if let (Some(state), Some(last_position), false) = (state, outcome.last_position, outcome.replayed) {
            let warning = self
                .snapshots
                .offer_state(id, self.store.codec(), &state, last_position, since)
                .await;
            outcome.warnings.extend(warning);
        }
        Ok(outcome)
    }

    /// Loads projection `P` from the events it declares
    /// ([`Projection::declare`], or `#[projection(events(..))]`).
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming an event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load_projection<P>(&self) -> Result<P, LoadErrorFor<S>>
    where
        P: ProjectionFor<S>,
        S::Id: PartialEq,
    {
        self.projection::<P>().with_declared().load().await
    }

    /// A builder to choose the events of projection `P` at load time.
    pub fn projection<P>(&self) -> ProjectionLoader<'_, S, P, Snap>
    where
        P: ProjectionFor<S>,
    {
        ProjectionLoader {
            store: &self.store,
            events: ProjectionEvents::new(),
            snapshots: &self.snapshots,
            snapshot_version: 1,
        }
    }
}

impl<S: EventStore, C: ConcurrencyStrategy, T> Repository<S, C, Snapshotting<T>> {
    /// The snapshot store.
    pub fn snapshot_store(&self) -> &T {
        self.snapshots.store()
    }
}

/// The filter that selects the whole stream of `A` with `id` (every kind:
/// an event the aggregate does not know must be seen, not skipped), after
/// `position` when given.
fn stream_filter<A, S>(id: &A::Id, after: Option<S::Position>) -> EventFilter<S::Id, S::Position>
where
    A: Aggregate<Id = S::Id>,
    S: EventStore,
{
    let filter = EventFilter::for_stream(A::KIND, id.clone());
    match after {
        Some(position) => filter.after(position),
        None => filter,
    }
}

/// Folds one event of `A`'s stream into `state`: decoded (upcast, aliases
/// resolved) and applied, or skipped when its kind is one `A` retired.
/// Returns whether it was applied.
///
/// # Errors
///
/// A [`DecodeError`] naming the event when its kind is neither one `A`
/// knows nor one it retired, or it does not decode.
pub(crate) fn apply_stored<A, Id, Pos, M>(
    state: &mut A,
    event: &StoredEvent<Id, Pos, M>,
    codec: &impl Codec,
) -> Result<bool, DecodeError<Id, Pos>>
where
    A: Aggregate,
    Id: Debug + Clone,
    Pos: Debug + Copy,
{
    if A::RETIRED_KINDS.contains(&event.kind.as_str()) {
        return Ok(false);
    }
    let decoded: A::Event = event.decode(codec)?;
    state.apply(&decoded);
    Ok(true)
}

/// An event count for a snapshot policy.
fn count(events: usize) -> u64 {
    u64::try_from(events).unwrap_or(u64::MAX)
}

pub(crate) async fn commit<A, S, C>(
    mut tx: Transaction<'_, S, C>,
    events: Vec<A::Event>,
    metadata: S::Metadata,
    command_id: Option<CommandId>,
) -> CommandResult<A, S>
where
    A: Aggregate<Id = S::Id>,
    S: EventStore,
    S::Metadata: Metadata,
    C: ConcurrencyStrategy,
{
    let count = events.len();
    let mut next = Some(metadata);
    for (index, event) in (0_u32..).zip(events) {
        let Some(current) = next.take() else { break };
        next = Some(current.next_in_batch());
        let event_id = command_id.map_or_else(EventId::new, |command| command.event_id(index));
        tx.append_with_id(event_id, event, current)
            .map_err(CommandError::Encode)?;
    }
    let event_ids = tx.event_ids();
    let written = tx.commit().await.map_err(|error| match error {
        AppendError::Conflict(conflict) => CommandError::Conflict(conflict),
        AppendError::Invalid(invalid) => CommandError::Invalid(invalid),
        AppendError::IdReused(reused) => CommandError::IdReused(reused),
        AppendError::Store(error) => CommandError::Store(error),
    })?;
    Ok(CommandOutcome {
        last_position: written.map(|written| written.last_position),
        events: count,
        event_ids,
        replayed: written.is_some_and(|written| written.replayed),
        attempts: 1,
        warnings: Vec::new(),
    })
}

/// The command id of one command's attempts, and whether it may have run
/// before (so the repository looks for its events before deciding).
#[derive(Debug, Clone, Copy)]
struct Idempotency {
    command_id: Option<CommandId>,
    may_have_run: bool,
}

impl Idempotency {
    /// No command id: every event gets a fresh id.
    const NONE: Self = Self {
        command_id: None,
        may_have_run: false,
    };

    /// The caller's command id, which may have run before; or, when store
    /// errors are to be retried, one picked for these attempts, which has
    /// not run until an attempt fails with an unknown outcome.
    fn of<Pos>(options: &CommandOptions<Pos>) -> Self {
        match options.id() {
            Some(command_id) => Self {
                command_id: Some(command_id),
                may_have_run: !options.assumes_new(),
            },
            None if options.retry_policy().store_error_retries() > 0 => Self {
                command_id: Some(CommandId::new()),
                may_have_run: false,
            },
            None => Self::NONE,
        }
    }

    /// The command id to look for, if it may have run.
    fn probe(self) -> Option<CommandId> {
        self.command_id.filter(|_| self.may_have_run)
    }
}

/// Runs `attempt` until it succeeds or fails for good under the options'
/// retry policy, under their command id (or one picked for these attempts):
/// conflicts retried at once, store errors after a backoff.
async fn retrying<A, S, F, Fut>(options: &CommandOptions<S::Position>, mut attempt: F) -> CommandResult<A, S>
where
    A: Aggregate<Id = S::Id>,
    S: EventStore,
    F: FnMut(Idempotency) -> Fut,
    Fut: Future<Output = CommandResult<A, S>>,
{
    let policy = options.retry_policy();
    let mut idempotency = Idempotency::of(options);
    // The caller's command id, assumed new: looked for after a refusal.
    let assumed_new = options.id().is_some() && options.assumes_new();
    let (mut attempts, mut conflicts, mut failures) = (1_u32, 0_u32, 0_u32);
    loop {
        match attempt(idempotency).await {
            Ok(mut outcome) => {
                outcome.attempts = attempts;
                return Ok(outcome);
            }
            Err(error) if error.is_conflict() && conflicts < policy.conflict_retries() => conflicts += 1,
            Err(CommandError::Store(error)) if failures < policy.store_error_retries() => {
                failures += 1;
                // The failed attempt may have committed: look for it from now on.
                idempotency.may_have_run = true;
                tracing::warn!(
                    aggregate = A::KIND,
                    retry = failures,
                    error = &error as &dyn std::error::Error,
                    "the store failed during a command; sending it again with the same event ids"
                );
                tokio::time::sleep(policy.backoff_before(failures)).await;
            }
            Err(error) if assumed_new && !idempotency.may_have_run && error.is_refusal() => {
                // A command id assumed new, refused: it may have run before.
                // Look for its events, then decide again.
                idempotency.may_have_run = true;
            }
            Err(error) => return Err(error),
        }
        attempts += 1;
    }
}

/// A failed load: a stored event that does not decode, or the store.
fn load_failed<S: EventStore>(error: S::Error) -> LoadErrorFor<S> {
    match S::into_decode_error(error) {
        Ok(decode) => LoadError::Decode(decode),
        Err(error) => LoadError::Store(error),
    }
}

fn not_found<A: Aggregate<Id = S::Id>, S: EventStore>(id: &A::Id) -> LoadErrorFor<S> {
    LoadError::NotFound {
        aggregate_kind: A::KIND,
        aggregate_id: id.clone(),
    }
}

fn already_exists<A: Aggregate<Id = S::Id>, S: EventStore>(id: &A::Id) -> CommandErrorFor<A, S> {
    CommandError::AlreadyExists {
        aggregate_kind: A::KIND,
        aggregate_id: id.clone(),
    }
}

/// Loads a projection from the events chosen with the builder methods.
///
/// [`load_from_snapshot`](Self::load_from_snapshot) resumes from the
/// repository's snapshot store.
pub struct ProjectionLoader<'r, S: EventStore, P, Snap = NoSnapshots> {
    store: &'r S,
    events: ProjectionEvents<S, P>,
    snapshots: &'r Snap,
    snapshot_version: u32,
}

/// A projection loaded by [`ProjectionLoader::load_from_snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedProjection<P, Pos> {
    /// The projection, up to date with every selected event loaded.
    pub projection: P,
    /// The position of the last event applied (the snapshot's, when no
    /// event followed it); `None` when there was nothing.
    pub position: Option<Pos>,
    /// The position of the snapshot the load started from, if any.
    pub snapshot_position: Option<Pos>,
    /// How many events were applied after the snapshot.
    pub replayed: usize,
    /// Snapshot problems met on the way (the projection is right anyway).
    pub warnings: Vec<SnapshotWarning>,
}

impl<S, P, Snap> ProjectionLoader<'_, S, P, Snap>
where
    S: EventStore,
    P: Projection<Id = S::Id, Metadata = S::Metadata>,
{
    /// Adds the events `P` declares.
    #[must_use]
    pub fn with_declared(mut self) -> Self {
        self.events = P::declare(self.events);
        self
    }

    /// Adds every event of kind `E`, from any stream.
    #[must_use]
    pub fn event<E>(self) -> Self
    where
        E: crate::event::DomainEvent,
        P: crate::projection::ApplyProjection<E>,
    {
        self.map(ProjectionEvents::event::<E>)
    }

    /// Adds every event `T` decodes (a domain event or an aggregate's event
    /// enum), from any stream.
    #[must_use]
    pub fn events<T>(self) -> Self
    where
        T: DecodeEvent,
        P: crate::projection::ApplyProjection<T>,
    {
        self.map(ProjectionEvents::events::<T>)
    }

    /// Adds the events of kind `E` in the stream of aggregate `A` with `id`.
    #[must_use]
    pub fn event_for<A, E>(self, id: &S::Id) -> Self
    where
        A: Aggregate,
        E: crate::event::DomainEvent,
        P: crate::projection::ApplyProjection<E>,
    {
        self.map(|events| events.event_for::<A, E>(id))
    }

    /// Adds every event of aggregate `A`'s stream with `id`.
    #[must_use]
    pub fn events_for<A>(self, id: &S::Id) -> Self
    where
        A: Aggregate,
        P: crate::projection::ApplyProjection<A::Event>,
    {
        self.map(|events| events.events_for::<A>(id))
    }

    fn map(mut self, f: impl FnOnce(ProjectionEvents<S, P>) -> ProjectionEvents<S, P>) -> Self {
        self.events = f(self.events);
        self
    }

    /// The version of `P`'s shape in its snapshots (1 unless set): bump it
    /// when the projection's fields change, and
    /// [`load_from_snapshot`](Self::load_from_snapshot) ignores the
    /// snapshots of other versions.
    #[must_use]
    pub fn snapshot_version(mut self, version: u32) -> Self {
        self.snapshot_version = version;
        self
    }

    /// Loads the chosen events and folds them, in position order, into a
    /// default projection.
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming an event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load(self) -> Result<P, LoadErrorFor<S>>
    where
        S::Id: PartialEq,
    {
        self.load_with_position().await.map(|(projection, _)| projection)
    }

    /// Like [`load`](Self::load), also returning the position of the last
    /// event applied (to follow the log from there).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn load_with_position(self) -> Result<(P, Option<S::Position>), LoadErrorFor<S>>
    where
        S::Id: PartialEq,
    {
        let mut projection = P::default();
        if self.events.is_empty() {
            return Ok((projection, None));
        }
        let stored: Vec<StoredEvent<S::Id, S::Position, S::Metadata>> = self
            .store
            .load_events(&self.events.filters())
            .await
            .map_err(load_failed::<S>)?;
        let mut last = None;
        for event in &stored {
            self.events.apply(&mut projection, event, self.store.codec())?;
            last = Some(event.position);
        }
        Ok((projection, last))
    }

    /// Like [`load_with_position`](Self::load_with_position), resuming from
    /// the latest snapshot of this selection of events, and saving a new one
    /// when the repository's snapshot policy finds one due.
    ///
    /// The snapshot key is [`SnapshotKey::for_projection_events`]: `P::KIND`
    /// and a fingerprint of the selected events, so another selection never
    /// resumes from this one's snapshot. Snapshots whose schema version is
    /// not [`snapshot_version`](Self::snapshot_version) are ignored. A new
    /// snapshot is taken at the last event at or below the store's
    /// [snapshot frontier](SnapshotFrontier) (asked before loading): on
    /// stores where a lower position can still commit after a higher one
    /// became visible (PostgreSQL), resuming after a later position could
    /// skip that event. Without snapshots ([`NoSnapshots`]) this is a full
    /// load.
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming an event that does not decode,
    /// [`LoadError::Store`] when the event store fails. Snapshot problems
    /// are [`LoadedProjection::warnings`], not errors.
    pub async fn load_from_snapshot(self) -> Result<LoadedProjection<P, S::Position>, LoadErrorFor<S>>
    where
        S: SnapshotFrontier,
        S::Id: PartialEq + Serialize,
        P: Serialize + DeserializeOwned,
        Snap: SnapshotStore<S::Position>,
    {
        let mut loaded = LoadedProjection {
            projection: P::default(),
            position: None,
            snapshot_position: None,
            replayed: 0,
            warnings: Vec::new(),
        };
        if self.events.is_empty() {
            return Ok(loaded);
        }
        let codec = self.store.codec();
        let target = || format!("projection {}", P::KIND);
        let key = match SnapshotKey::for_projection_events(P::KIND, &self.events.filters()) {
            Ok(key) => Some(key),
            Err(error) => {
                let warning = SnapshotWarning::logged(target(), SnapshotProblem::Key, &error);
                loaded.warnings.push(warning);
                None
            }
        };
        // Where a new snapshot may be taken: asked before loading, so every
        // event at or below it is in the load.
        let mut frontier = None;
        if key.is_some() && self.snapshots.policy() != crate::snapshot::SnapshotPolicy::Never {
            match self.store.snapshot_frontier().await {
                Ok(position) => frontier = Some(position),
                Err(error) => {
                    let warning = SnapshotWarning::logged(target(), SnapshotProblem::Frontier, &error);
                    loaded.warnings.push(warning);
                }
            }
        }
        if let Some(key) = &key {
            let (projection, position, warnings) =
                restore_projection::<P, _, _>(self.snapshots, key, codec, self.snapshot_version).await;
            loaded.projection = projection;
            loaded.snapshot_position = position;
            loaded.warnings.extend(warnings);
        }
        let filters = match loaded.snapshot_position {
            Some(position) => self.events.filters_after(position),
            None => self.events.filters(),
        };
        let stored: Vec<StoredEvent<S::Id, S::Position, S::Metadata>> =
            self.store.load_events(&filters).await.map_err(load_failed::<S>)?;
        // The events a new snapshot may cover: those at or below the frontier.
        let covered = match frontier {
            Some(Some(limit)) => stored.partition_point(|event| event.position <= limit),
            Some(None) => stored.len(),
            None => 0,
        };
        let due = self.snapshots.policy().accepts(count(covered));
        let mut snapshot = None;
        for (index, event) in stored.iter().enumerate() {
            self.events.apply(&mut loaded.projection, event, codec)?;
            if due && index + 1 == covered {
                match codec.encode(&loaded.projection) {
                    Ok(data) => {
                        snapshot = Some(Snapshot {
                            position: event.position,
                            schema_version: self.snapshot_version,
                            data,
                        });
                    }
                    Err(error) => {
                        let warning = SnapshotWarning::logged(target(), SnapshotProblem::Encode, &error);
                        loaded.warnings.push(warning);
                    }
                }
            }
        }
        loaded.replayed = stored.len();
        loaded.position = stored
            .last()
            .map(|event| event.position)
            .or(loaded.snapshot_position);
        if let (Some(key), Some(snapshot)) = (key, snapshot)
            && let Err(error) = self.snapshots.save(&key, snapshot).await
        {
            let warning = SnapshotWarning::logged(&key, SnapshotProblem::Save, &error);
            loaded.warnings.push(warning);
        }
        Ok(loaded)
    }
}

/// The projection's snapshot under `key` when it is of `version` and
/// decodes; else the default projection (with a warning when something
/// failed).
async fn restore_projection<P, Pos, Snap>(
    snapshots: &Snap,
    key: &SnapshotKey,
    codec: &impl Codec,
    version: u32,
) -> (P, Option<Pos>, Option<SnapshotWarning>)
where
    P: Default + DeserializeOwned,
    Snap: SnapshotStore<Pos>,
{
    let snapshot = match snapshots.load(key).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return (P::default(), None, None),
        Err(error) => {
            let warning = SnapshotWarning::logged(key, SnapshotProblem::Load, &error);
            return (P::default(), None, Some(warning));
        }
    };
    if snapshot.schema_version != version {
        tracing::debug!(
            target: "sourcery::snapshot",
            %key,
            found = snapshot.schema_version,
            expected = version,
            "ignoring a projection snapshot of another schema version; replaying every event"
        );
        return (P::default(), None, None);
    }
    match codec.decode::<P>(&snapshot.data) {
        Ok(projection) => (projection, Some(snapshot.position), None),
        Err(error) => {
            let warning = SnapshotWarning::logged(key, SnapshotProblem::Decode, &error);
            (P::default(), None, Some(warning))
        }
    }
}

impl<S: Clone, C, Snap: Clone> Clone for Repository<S, C, Snap> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            strategy: PhantomData,
        }
    }
}

impl<S: Debug, C: ConcurrencyStrategy, Snap: Debug> Debug for Repository<S, C, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("store", &self.store)
            .field("checks_versions", &C::CHECKS_VERSION)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}

impl<S: EventStore, P, Snap> Debug for ProjectionLoader<'_, S, P, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionLoader")
            .field("events", &self.events)
            .field("snapshot_version", &self.snapshot_version)
            .finish_non_exhaustive()
    }
}

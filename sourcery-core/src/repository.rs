//! The repository: load aggregates, execute commands, load projections.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # use sourcery_core::aggregate::{Aggregate, Apply, Handle, HandleCreate};
//! # use sourcery_core::event::{DecodeEvent, DomainEvent, EventPayload};
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
//! #     fn encode_with<C: Codec>(&self, c: &C) -> Result<Vec<u8>, C::Error> { match self { Self::Opened(e) => e.encode_with(c), Self::Added(e) => e.encode_with(c) } }
//! # }
//! # impl DecodeEvent for CounterEvent {
//! #     fn event_kinds() -> &'static [&'static str] { &[Opened::KIND, Added::KIND] }
//! #     fn decode_with<C: Codec>(c: &C, kind: &str, data: &[u8]) -> Result<Option<Self>, C::Error> {
//! #         if let Some(e) = Opened::decode_with(c, kind, data)? { return Ok(Some(Self::Opened(e))); }
//! #         Ok(Added::decode_with(c, kind, data)?.map(Self::Added))
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
use std::marker::PhantomData;

use crate::aggregate::{Aggregate, Handle, HandleCreate};
use crate::concurrency::{ConcurrencyConflict, ConcurrencyStrategy, Optimistic, Unchecked};
use crate::event::{DecodeError, DecodeEvent, EncodeError};
use crate::metadata::Metadata;
use crate::projection::{Projection, ProjectionEvents};
use crate::store::{AppendError, EventFilter, EventStore, StoredEvent, Transaction};

/// Loads aggregates, executes commands and loads projections over one store.
///
/// Concurrency is chosen here: optimistic by default (a command whose
/// aggregate changed since it was loaded fails with a conflict; see
/// [`execute_with_retry`](Self::execute_with_retry)), unchecked on request
/// ([`without_concurrency_checking`](Self::without_concurrency_checking)).
/// Creating an aggregate always requires an empty stream.
pub struct Repository<S, C = Optimistic> {
    store: S,
    strategy: PhantomData<C>,
}

/// What a successful command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutcome<Pos> {
    /// The position of the last event written; `None` when the command
    /// produced no events (and nothing was written).
    pub last_position: Option<Pos>,
    /// How many events were written.
    pub events: usize,
    /// How many attempts it took (1 unless conflicts were retried).
    pub attempts: u32,
}

/// Why an aggregate or projection could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError<StoreError> {
    /// The aggregate's stream has no events.
    #[error("{aggregate_kind} {aggregate_id} does not exist")]
    NotFound {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id, as its `Debug` rendering.
        aggregate_id: String,
    },
    /// A stored event does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The store failed.
    #[error("the event store failed")]
    Store(#[source] StoreError),
}

/// Why a command did not take effect. Nothing was written in any case.
///
/// Match on it to decide: [`Rejected`](Self::Rejected) goes back to the
/// user, [`Conflict`](Self::Conflict) is worth a retry,
/// [`NotFound`](Self::NotFound) / [`AlreadyExists`](Self::AlreadyExists) are
/// the caller's mistake, [`Decode`](Self::Decode), [`Encode`](Self::Encode)
/// and [`Store`](Self::Store) call for an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<AggregateError, StoreError, Pos: Debug> {
    /// The aggregate rejected the command (its message is this error's).
    #[error(transparent)]
    Rejected(AggregateError),
    /// The aggregate changed between the load and the commit.
    #[error(transparent)]
    Conflict(ConcurrencyConflict<Pos>),
    /// The command needs an existing aggregate and the stream is empty.
    #[error("{aggregate_kind} {aggregate_id} does not exist")]
    NotFound {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id, as its `Debug` rendering.
        aggregate_id: String,
    },
    /// A creation command met a stream that already has events.
    #[error("{aggregate_kind} {aggregate_id} already exists")]
    AlreadyExists {
        /// The aggregate kind.
        aggregate_kind: &'static str,
        /// The aggregate id, as its `Debug` rendering.
        aggregate_id: String,
    },
    /// A stored event of the aggregate does not decode.
    #[error(transparent)]
    Decode(DecodeError),
    /// An event the aggregate produced could not be encoded.
    #[error(transparent)]
    Encode(EncodeError),
    /// The store failed.
    #[error("the event store failed")]
    Store(#[source] StoreError),
}

impl<AggregateError, StoreError, Pos: Debug> CommandError<AggregateError, StoreError, Pos> {
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

impl<AggregateError, StoreError, Pos: Debug> From<LoadError<StoreError>>
    for CommandError<AggregateError, StoreError, Pos>
{
    fn from(error: LoadError<StoreError>) -> Self {
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
pub type CommandErrorFor<A, S> =
    CommandError<<A as Aggregate>::Error, <S as EventStore>::Error, <S as EventStore>::Position>;

/// The outcome of a command of aggregate `A` on store `S`.
pub type CommandResult<A, S> = Result<CommandOutcome<<S as EventStore>::Position>, CommandErrorFor<A, S>>;

/// An aggregate's state and the version it was read at.
#[derive(Debug, Clone)]
pub struct Loaded<A, Pos> {
    /// The state, folded from every event of the stream.
    pub state: A,
    /// The position of the stream's last event; `None` for an empty stream.
    pub version: Option<Pos>,
}

impl<S: EventStore> Repository<S> {
    /// A repository over `store`, with optimistic concurrency.
    pub fn new(store: S) -> Self {
        Self {
            store,
            strategy: PhantomData,
        }
    }
}

impl<S: EventStore, C: ConcurrencyStrategy> Repository<S, C> {
    /// The same repository, committing without version checks (last writer
    /// appends; creations still require an empty stream).
    #[must_use]
    pub fn without_concurrency_checking(self) -> Repository<S, Unchecked> {
        Repository {
            store: self.store,
            strategy: PhantomData,
        }
    }

    /// The same repository, with optimistic concurrency.
    #[must_use]
    pub fn with_optimistic_concurrency(self) -> Repository<S, Optimistic> {
        Repository {
            store: self.store,
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

    /// Loads aggregate `A` with `id`: every event of its stream, applied in
    /// order.
    ///
    /// # Errors
    ///
    /// [`LoadError::NotFound`] when the stream is empty,
    /// [`LoadError::Decode`] naming the event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load<A>(&self, id: &A::Id) -> Result<A, LoadError<S::Error>>
    where
        A: Aggregate<Id = S::Id>,
    {
        let loaded = self.load_versioned::<A>(id).await?;
        if loaded.version.is_none() {
            return Err(not_found::<A, S::Error>(id));
        }
        Ok(loaded.state)
    }

    /// Loads aggregate `A` with `id` and the version it was read at; an
    /// empty stream gives the default state and no version.
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming the event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load_versioned<A>(&self, id: &A::Id) -> Result<Loaded<A, S::Position>, LoadError<S::Error>>
    where
        A: Aggregate<Id = S::Id>,
    {
        let filters: Vec<EventFilter<S::Id, S::Position>> = A::Event::event_kinds()
            .iter()
            .map(|kind| EventFilter::for_aggregate(*kind, A::KIND, id.clone()))
            .collect();
        let events = self.store.load_events(&filters).await.map_err(LoadError::Store)?;
        let mut state = A::default();
        let mut version = None;
        for event in &events {
            let decoded: A::Event = event.decode(self.store.codec())?;
            state.apply(&decoded);
            version = Some(event.position);
        }
        Ok(Loaded { state, version })
    }

    /// Executes `command` on the existing aggregate `A` with `id`: load,
    /// decide, append with `metadata`, commit. A command that produces no
    /// events writes nothing.
    ///
    /// # Errors
    ///
    /// [`CommandError::NotFound`] when the aggregate does not exist,
    /// [`CommandError::Rejected`] when it rejects the command,
    /// [`CommandError::Conflict`] (optimistic repositories) when it changed
    /// meanwhile, and the load and store failures.
    pub async fn execute<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<Cmd>,
        S::Metadata: Metadata,
    {
        let loaded = self.load_versioned::<A>(id).await?;
        let Some(version) = loaded.version else {
            return Err(not_found::<A, S::Error>(id).into());
        };
        let events = loaded.state.handle(command).map_err(CommandError::Rejected)?;
        let tx = self.store.begin::<C>(A::KIND, id.clone(), Some(version));
        commit::<A, S, C>(tx, events, metadata).await
    }

    /// [`execute`](Self::execute), reloading and running the command again
    /// after a conflict, for at most `max_retries + 1` attempts. The outcome
    /// says how many it took. Other errors return at once.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute); a conflict only once every attempt
    /// conflicted.
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
    {
        let mut attempts = 1;
        loop {
            match self.execute::<A, Cmd>(id, command, metadata.clone()).await {
                Ok(mut outcome) => {
                    outcome.attempts = attempts;
                    return Ok(outcome);
                }
                Err(error) if error.is_conflict() && attempts <= max_retries => attempts += 1,
                Err(error) => return Err(error),
            }
        }
    }

    /// Creates aggregate `A` with `id` from a creation `command`. The events
    /// are written only if the stream is still empty, whatever the
    /// repository's concurrency strategy: of two racing creations one wins.
    ///
    /// # Errors
    ///
    /// [`CommandError::AlreadyExists`] when the stream has events (found on
    /// load or at commit), [`CommandError::Rejected`] when the aggregate
    /// rejects the command, and store failures.
    pub async fn create<A, Cmd>(
        &self,
        id: &A::Id,
        command: &Cmd,
        metadata: S::Metadata,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + HandleCreate<Cmd>,
        S::Metadata: Metadata,
    {
        let exists = self
            .store
            .stream_version(A::KIND, id)
            .await
            .map_err(CommandError::Store)?;
        if exists.is_some() {
            return Err(already_exists::<A, S>(id));
        }
        let events = A::handle_create(command).map_err(CommandError::Rejected)?;
        let tx = self.store.begin::<Optimistic>(A::KIND, id.clone(), None);
        match commit::<A, S, Optimistic>(tx, events, metadata).await {
            Err(CommandError::Conflict(_)) => Err(already_exists::<A, S>(id)),
            other => other,
        }
    }

    /// Loads projection `P` from the events it declares
    /// ([`Projection::declare`], or `#[projection(events(..))]`).
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming an event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load_projection<P>(&self) -> Result<P, LoadError<S::Error>>
    where
        P: Projection<Id = S::Id, Metadata = S::Metadata>,
        S::Id: PartialEq,
    {
        self.projection::<P>().with_declared().load().await
    }

    /// A builder to choose the events of projection `P` at load time.
    pub fn projection<P>(&self) -> ProjectionLoader<'_, S, P>
    where
        P: Projection<Id = S::Id, Metadata = S::Metadata>,
    {
        ProjectionLoader {
            store: &self.store,
            events: ProjectionEvents::new(),
        }
    }
}

pub(crate) async fn commit<A, S, C>(
    mut tx: Transaction<'_, S, C>,
    events: Vec<A::Event>,
    metadata: S::Metadata,
) -> CommandResult<A, S>
where
    A: Aggregate<Id = S::Id>,
    S: EventStore,
    S::Metadata: Metadata,
    C: ConcurrencyStrategy,
{
    let count = events.len();
    let mut next = Some(metadata);
    for event in events {
        let Some(current) = next.take() else { break };
        next = Some(current.next_in_batch());
        tx.append(event, current).map_err(CommandError::Encode)?;
    }
    let written = tx.commit().await.map_err(|error| match error {
        AppendError::Conflict(conflict) => CommandError::Conflict(conflict),
        AppendError::Store(error) => CommandError::Store(error),
    })?;
    Ok(CommandOutcome {
        last_position: written.map(|written| written.last_position),
        events: count,
        attempts: 1,
    })
}

fn not_found<A: Aggregate, StoreError>(id: &A::Id) -> LoadError<StoreError> {
    LoadError::NotFound {
        aggregate_kind: A::KIND,
        aggregate_id: format!("{id:?}"),
    }
}

fn already_exists<A: Aggregate, S: EventStore>(id: &A::Id) -> CommandErrorFor<A, S> {
    CommandError::AlreadyExists {
        aggregate_kind: A::KIND,
        aggregate_id: format!("{id:?}"),
    }
}

/// Loads a projection from the events chosen with the builder methods.
pub struct ProjectionLoader<'r, S: EventStore, P> {
    store: &'r S,
    events: ProjectionEvents<S, P>,
}

impl<S, P> ProjectionLoader<'_, S, P>
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

    /// Loads the chosen events and folds them, in position order, into a
    /// default projection.
    ///
    /// # Errors
    ///
    /// [`LoadError::Decode`] naming an event that does not decode,
    /// [`LoadError::Store`] when the store fails.
    pub async fn load(self) -> Result<P, LoadError<S::Error>>
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
    pub async fn load_with_position(self) -> Result<(P, Option<S::Position>), LoadError<S::Error>>
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
            .map_err(LoadError::Store)?;
        let mut last = None;
        for event in &stored {
            self.events.apply(&mut projection, event, self.store.codec())?;
            last = Some(event.position);
        }
        Ok((projection, last))
    }
}

impl<S: Clone, C> Clone for Repository<S, C> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            strategy: PhantomData,
        }
    }
}

impl<S: Debug, C: ConcurrencyStrategy> Debug for Repository<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("store", &self.store)
            .field("checks_versions", &C::CHECKS_VERSION)
            .finish()
    }
}

impl<S: EventStore, P> Debug for ProjectionLoader<'_, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionLoader")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

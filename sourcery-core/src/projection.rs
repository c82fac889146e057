//! Projections: read models built from events, possibly across aggregates.
//!
//! A projection is a `Default` struct with one [`ApplyProjection`] impl per
//! event (or event enum) it consumes. It declares which events it needs
//! (`#[derive(Projection)]` with `#[projection(events(..))]`, or
//! [`Projection::declare`] by hand), or the caller picks them at load time
//! with [`ProjectionEvents`]' builder methods. Events reach it once each, in
//! position order.
//!
//! ```
//! use std::collections::HashMap;
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
//! use sourcery_core::store::EventStore;
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//! impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
//!
//! /// Total deposits per account.
//! #[derive(Debug, Default)]
//! struct Totals { per_account: HashMap<String, u64> }
//!
//! // What `#[derive(Projection)]` writes for `#[projection(events(Deposited))]`:
//! impl Projection for Totals {
//!     const KIND: &'static str = "totals";
//!     type Id = String;
//!     type Metadata = ();
//!
//!     fn declare<S>(events: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self>
//!     where
//!         S: EventStore<Id = String, Metadata = ()>,
//!     {
//!         events.events::<Deposited>()
//!     }
//! }
//!
//! // What you write:
//! impl ApplyProjection<Deposited> for Totals {
//!     fn apply_projection(&mut self, id: &String, event: &Deposited, _: &()) {
//!         *self.per_account.entry(id.clone()).or_default() += event.amount;
//!     }
//! }
//! ```

use std::fmt::{self, Debug};

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, DecodeEvent, DomainEvent};
use crate::store::{EventFilter, EventStore, StoredEvent};

/// A read model folded from events.
///
/// Derive it: `#[derive(Projection)]`, optionally with
/// `#[projection(id = T, metadata = M, kind = "..", events(A, B, ..))]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection",
    note = "derive it: `#[derive(Projection)]`, optionally with `#[projection(events(..))]`"
)]
pub trait Projection: Default + Send + 'static {
    /// A stable name for the projection (checkpoints and snapshots are kept
    /// under it).
    const KIND: &'static str;

    /// The aggregate id type of the streams it reads.
    type Id: Clone + Debug + Send + Sync + 'static;

    /// The metadata type of the store it reads.
    type Metadata: Send + Sync + 'static;

    /// The events the projection consumes when loaded without a builder.
    /// The default declares none.
    #[must_use]
    fn declare<S>(events: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self>
    where
        S: EventStore<Id = Self::Id, Metadata = Self::Metadata>,
    {
        events
    }
}

/// A projection of the events of store `S`: its `Id` and `Metadata` are the
/// store's. Implemented for every such projection; the runner and the
/// repository ask for it, so that a projection whose types differ from the
/// store's is an error that names the fix.
#[diagnostic::on_unimplemented(
    message = "the projection `{Self}` cannot read the events of the store `{S}`",
    note = "a projection's `Id` and `Metadata` must be the store's: set them with `#[projection(id = .., metadata = ..)]`, or the `Id` and `Metadata` types of its `impl Projection`"
)]
pub trait ProjectionFor<S: EventStore>: Projection<Id = S::Id, Metadata = S::Metadata> {}

#[diagnostic::do_not_recommend]
impl<S: EventStore, P> ProjectionFor<S> for P where P: Projection<Id = S::Id, Metadata = S::Metadata> {}

/// How a projection changes when event `E` (a domain event or an
/// aggregate's event enum) happened in the stream of `aggregate_id`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply `{E}`",
    note = "implement `ApplyProjection<{E}> for {Self}`: every event the projection consumes needs one"
)]
pub trait ApplyProjection<E>: Projection {
    /// Folds `event` into the read model.
    fn apply_projection(&mut self, aggregate_id: &Self::Id, event: &E, metadata: &Self::Metadata);
}

type Handler<S, P> = fn(
    &mut P,
    &StoredEvent<<S as EventStore>::Id, <S as EventStore>::Position, <S as EventStore>::Metadata>,
    &<S as EventStore>::Codec,
) -> Result<(), DecodeError<<S as EventStore>::Id, <S as EventStore>::Position>>;

/// The events a projection consumes: filters, each with the handler that
/// decodes and applies what it selects.
///
/// Built by [`Projection::declare`] or by the repository's projection
/// builder.
pub struct ProjectionEvents<S: EventStore, P> {
    entries: Vec<Entry<S, P>>,
}

type Entry<S, P> = (
    EventFilter<<S as EventStore>::Id, <S as EventStore>::Position>,
    Handler<S, P>,
);

impl<S, P> ProjectionEvents<S, P>
where
    S: EventStore,
    P: ProjectionFor<S>,
{
    /// No events yet.
    #[must_use]
    pub fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// The events the projection declares ([`Projection::declare`]).
    #[must_use]
    pub fn declared() -> Self {
        P::declare(Self::new())
    }

    /// Every event of kind `E`, from any stream.
    #[must_use]
    pub fn event<E>(self) -> Self
    where
        E: DomainEvent,
        P: ApplyProjection<E>,
    {
        self.events::<E>()
    }

    /// Every event `T` decodes (a domain event, or all events of an
    /// aggregate's event enum), from any stream.
    #[must_use]
    pub fn events<T>(mut self) -> Self
    where
        T: DecodeEvent,
        P: ApplyProjection<T>,
    {
        for kind in T::decoded_kinds() {
            self.entries
                .push((EventFilter::for_event(kind), apply::<S, P, T>));
        }
        self
    }

    /// The events of kind `E` in the stream of aggregate `A` with `id`.
    #[must_use]
    pub fn event_for<A, E>(mut self, id: &S::Id) -> Self
    where
        A: Aggregate,
        E: DomainEvent,
        P: ApplyProjection<E>,
    {
        for kind in E::decoded_kinds() {
            self.entries.push((
                EventFilter::for_aggregate(kind, A::KIND, id.clone()),
                apply::<S, P, E>,
            ));
        }
        self
    }

    /// All events of aggregate `A`'s stream with `id`, as `A`'s event enum:
    /// the whole stream, so an event of a kind `A` does not know is an
    /// error, not a skip; kinds `A` retired
    /// ([`Aggregate::RETIRED_KINDS`]) are skipped.
    #[must_use]
    pub fn events_for<A>(mut self, id: &S::Id) -> Self
    where
        A: Aggregate,
        P: ApplyProjection<A::Event>,
    {
        self.entries.push((
            EventFilter::for_stream(A::KIND, id.clone()),
            apply_stream::<S, P, A>,
        ));
        self
    }

    /// The filters that select the events, to hand to
    /// [`EventStore::load_events`].
    #[must_use]
    pub fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        self.entries.iter().map(|(filter, _)| filter.clone()).collect()
    }

    /// The same filters restricted to events after `position`.
    #[must_use]
    pub fn filters_after(&self, position: S::Position) -> Vec<EventFilter<S::Id, S::Position>> {
        self.entries
            .iter()
            .map(|(filter, _)| filter.clone().after(position))
            .collect()
    }

    /// Whether no event is selected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one stored event to `projection` with the handler of the
    /// first filter that selects it. Returns whether one did; events no
    /// filter selects are skipped.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the event when it does not decode.
    pub fn apply(
        &self,
        projection: &mut P,
        event: &StoredEvent<S::Id, S::Position, S::Metadata>,
        codec: &S::Codec,
    ) -> Result<bool, DecodeError<S::Id, S::Position>>
    where
        S::Id: PartialEq,
    {
        let handler = self.entries.iter().find(|(filter, _)| {
            filter.matches(
                &event.aggregate_kind,
                &event.aggregate_id,
                &event.kind,
                &event.position,
            )
        });
        match handler {
            Some((_, handler)) => handler(projection, event, codec).map(|()| true),
            None => Ok(false),
        }
    }
}

fn apply<S, P, T>(
    projection: &mut P,
    event: &StoredEvent<S::Id, S::Position, S::Metadata>,
    codec: &S::Codec,
) -> Result<(), DecodeError<S::Id, S::Position>>
where
    S: EventStore,
    P: ApplyProjection<T> + Projection<Id = S::Id, Metadata = S::Metadata>,
    T: DecodeEvent,
{
    let decoded: T = event.decode(codec)?;
    projection.apply_projection(&event.aggregate_id, &decoded, &event.metadata);
    Ok(())
}

fn apply_stream<S, P, A>(
    projection: &mut P,
    event: &StoredEvent<S::Id, S::Position, S::Metadata>,
    codec: &S::Codec,
) -> Result<(), DecodeError<S::Id, S::Position>>
where
    S: EventStore,
    P: ApplyProjection<A::Event> + Projection<Id = S::Id, Metadata = S::Metadata>,
    A: Aggregate,
{
    if A::RETIRED_KINDS.contains(&event.kind.as_str()) {
        return Ok(());
    }
    apply::<S, P, A::Event>(projection, event, codec)
}

impl<S, P> Default for ProjectionEvents<S, P>
where
    S: EventStore,
    P: ProjectionFor<S>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S: EventStore, P> Clone for ProjectionEvents<S, P> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<S: EventStore, P> Debug for ProjectionEvents<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(filter, _)| filter))
            .finish()
    }
}

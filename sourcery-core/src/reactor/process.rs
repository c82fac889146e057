//! Process managers: reactors with event-sourced state of their own.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BoxError, Cause, Envelope, Fire, ReactError, Reacting, Reactions, Scheduled, sealed};
use crate::aggregate::{Aggregate, Handle};
use crate::concurrency::Optimistic;
use crate::event::DecodeEvent;
use crate::id::CommandId;
use crate::metadata::CausedBy;
use crate::repository::{Repository, apply_stored, commit};
use crate::runner::read_model::Routes;
use crate::schedule::ScheduledCommand;
use crate::snapshot::{AggregateSnapshots, NoSnapshots};
use crate::store::{EventFilter, EventStore};

/// What a process manager decided on one event: events of its own to
/// record, and reactions (it dereferences to [`Reactions`]: `execute`,
/// `schedule`, `cancel`, ...).
pub struct Decision<P: Aggregate, S: EventStore, Snap = NoSnapshots> {
    events: Vec<P::Event>,
    reactions: Reactions<S, Snap>,
}

impl<P: Aggregate, S: EventStore, Snap> Decision<P, S, Snap> {
    /// Nothing decided yet, at `now`.
    #[must_use]
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            events: Vec::new(),
            reactions: Reactions::new(now),
        }
    }

    /// Records `event` in the process's own stream.
    pub fn record(&mut self, event: impl Into<P::Event>) -> &mut Self {
        self.events.push(event.into());
        self
    }

    /// The events to record, in order.
    #[must_use]
    pub fn events(&self) -> &[P::Event] {
        &self.events
    }

    /// The reactions decided.
    #[must_use]
    pub fn reactions(&self) -> &Reactions<S, Snap> {
        &self.reactions
    }

    /// The events to record and the reactions.
    #[must_use]
    pub fn into_parts(self) -> (Vec<P::Event>, Reactions<S, Snap>) {
        (self.events, self.reactions)
    }
}

impl<P: Aggregate, S: EventStore, Snap> Deref for Decision<P, S, Snap> {
    type Target = Reactions<S, Snap>;

    fn deref(&self) -> &Reactions<S, Snap> {
        &self.reactions
    }
}

impl<P: Aggregate, S: EventStore, Snap> DerefMut for Decision<P, S, Snap> {
    fn deref_mut(&mut self) -> &mut Reactions<S, Snap> {
        &mut self.reactions
    }
}

impl<P: Aggregate, S: EventStore, Snap> fmt::Debug for Decision<P, S, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("events", &self.events)
            .field("reactions", &self.reactions)
            .finish()
    }
}

/// An event routed to one process: its correlation id, and the decision
/// to make on the process's state.
type Routed<P, S, Snap> = (
    <P as Aggregate>::Id,
    Box<dyn FnOnce(&P, &mut Decision<P, S, Snap>) -> Result<(), ReactError> + Send>,
);

/// Decodes an event and routes it to its process.
type Route<P, S, Snap> = dyn Fn(&Envelope<S>, &<S as EventStore>::Codec) -> Result<Option<Routed<P, S, Snap>>, ReactError>
    + Send
    + Sync;

/// The events a process manager reacts to, each with its route.
type Steps<P, S, Snap> = Routes<<S as EventStore>::Id, <S as EventStore>::Position, Arc<Route<P, S, Snap>>>;

/// A decision on one process: its id, its state then, the decision.
pub type Decided<P, S, Snap = NoSnapshots> = Option<(<P as Aggregate>::Id, P, Decision<P, S, Snap>)>;

/// A reactor whose state is itself event-sourced: aggregate `P`, one
/// stream per process, keyed by a correlation id picked from each event
/// (an order's id, say). A process that spans several aggregates thus
/// survives restarts, and is loaded, inspected and tested like any
/// aggregate.
///
/// On each event it reacts to, the runner loads the process's stream,
/// asks the handler for a [`Decision`] on its state — events to record in
/// its stream, commands to run, timers — appends the events (with ids
/// derived from the cause, so appending them again writes nothing), then
/// carries out the reactions as a [`Reactor`](super::Reactor)'s.
///
/// Delivered again (after a crash), an event whose decision recorded
/// events is decided again from the state *before* them, so it yields the
/// same reactions. A decision that records nothing is decided from the
/// state the process has then: record what the process does (an event
/// per step) so that its redeliveries decide alike.
pub struct ProcessManager<P: Aggregate, S: EventStore, Snap = NoSnapshots> {
    name: &'static str,
    routes: Steps<P, S, Snap>,
    scheduled: Scheduled<S, Snap>,
}

impl<P, S, Snap> ProcessManager<P, S, Snap>
where
    P: Aggregate<Id = S::Id>,
    S: EventStore,
    S::Id: PartialEq,
    Snap: 'static,
{
    /// A process manager named `name` (its checkpoint, lease, timers and
    /// dead letters are kept under it; its streams are `P::KIND`'s).
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            routes: Routes::new(),
            scheduled: Scheduled::new(),
        }
    }

    /// The process manager's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reacts to every event `E` decodes: `correlate` picks the process it
    /// belongs to (`None`: none, the event is ignored), `decide` decides on
    /// that process's state.
    #[must_use]
    pub fn on<E, C, F, Err>(mut self, correlate: C, decide: F) -> Self
    where
        E: DecodeEvent + Send + 'static,
        C: Fn(&E, Cause<'_, S>) -> Option<P::Id> + Send + Sync + 'static,
        F: Fn(&P, &E, Cause<'_, S>, &mut Decision<P, S, Snap>) -> Result<(), Err> + Send + Sync + 'static,
        Err: Into<BoxError>,
        S::Metadata: Clone,
    {
        let decide = Arc::new(decide);
        let route: Arc<Route<P, S, Snap>> = Arc::new(move |event, codec| {
            let decoded: E = event
                .decode(codec)
                .map_err(|error| ReactError::Decode(Box::new(error)))?;
            let Some(id) = correlate(&decoded, Cause::new(event)) else {
                return Ok(None);
            };
            let decide = Arc::clone(&decide);
            let cause = event.clone();
            Ok(Some((
                id,
                Box::new(move |state: &P, out: &mut Decision<P, S, Snap>| {
                    decide(state, &decoded, Cause::new(&cause), out)
                        .map_err(|error| ReactError::Handler(error.into()))
                })
                    as Box<dyn FnOnce(&P, &mut Decision<P, S, Snap>) -> Result<(), ReactError> + Send>,
            )))
        });
        for kind in E::decoded_kinds() {
            self.routes.push(EventFilter::for_event(kind), Arc::clone(&route));
        }
        self
    }

    /// Declares that the process manager schedules command `C` on
    /// aggregate `A` (its own `P` included), so that its runner can fire
    /// stored timers of it.
    #[must_use]
    pub fn schedules<A, C>(mut self) -> Self
    where
        S::Id: Serialize + DeserializeOwned,
        S::Metadata: CausedBy + Serialize + DeserializeOwned,
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: ScheduledCommand,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        self.scheduled.declare::<A, C>();
        self
    }

    /// The filters of the events it reacts to.
    #[must_use]
    pub fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        self.routes.filters()
    }

    /// Decides on `event` for the process in `state` at `now`, without
    /// carrying anything out: the correlation id of the process and the
    /// decision, or `None` when the event belongs to no process. What the
    /// runner does after loading the process, and what tests check.
    ///
    /// # Errors
    ///
    /// As [`Reactor::react`](super::Reactor::react).
    pub fn decide(
        &self,
        event: &Envelope<S>,
        codec: &S::Codec,
        state: impl FnOnce(&P::Id) -> P,
        now: DateTime<Utc>,
    ) -> Result<Decided<P, S, Snap>, ReactError>
    where
        S::Metadata: CausedBy,
    {
        let Some((id, decide)) = self.route(event, codec)? else {
            return Ok(None);
        };
        let state = state(&id);
        let mut decision = Decision::new(now);
        decide(&state, &mut decision)?;
        self.scheduled.encode(&mut decision.reactions, event)?;
        Ok(Some((id, state, decision)))
    }

    fn route(&self, event: &Envelope<S>, codec: &S::Codec) -> Result<Option<Routed<P, S, Snap>>, ReactError> {
        match self.routes.route(event) {
            Some(route) => route(event, codec),
            None => Ok(None),
        }
    }

    /// Loads the process `id`, decides on `event` and records the
    /// decision's events; returns the reactions.
    async fn step(
        &self,
        repository: &Repository<S, Optimistic, Snap>,
        event: &Envelope<S>,
        now: DateTime<Utc>,
    ) -> Result<Reactions<S, Snap>, BoxError>
    where
        S::Metadata: CausedBy,
    {
        let store = repository.store();
        let codec = store.codec();
        let Some((id, decide)) = self.route(event, codec)? else {
            return Ok(Reactions::new(now));
        };
        // The events this step records have ids derived from the cause:
        // found in the stream, the step ran before, and is decided again
        // from the state before them.
        let step = CommandId::from_key(format!("{}/{}/process", self.name, event.id));
        let first = step.event_id(0);
        let stored = store
            .load_events(&[EventFilter::for_stream(P::KIND, id.clone())])
            .await?;
        let mut state = P::default();
        let mut version = None;
        let mut ran = false;
        for stored in &stored {
            if stored.id == first {
                ran = true;
                break;
            }
            apply_stored(&mut state, stored, codec)?;
            version = Some(stored.position);
        }
        let mut decision = Decision::new(now);
        decide(&state, &mut decision)?;
        self.scheduled.encode(&mut decision.reactions, event)?;
        let (events, reactions) = decision.into_parts();
        if !ran && !events.is_empty() {
            let metadata = S::Metadata::caused_by(event.id, &event.metadata);
            let tx = store.begin::<Optimistic>(P::KIND, id, version);
            commit::<P, S, Optimistic>(tx, events, metadata, Some(step)).await?;
        }
        Ok(reactions)
    }
}

impl<P: Aggregate, S: EventStore, Snap> fmt::Debug for ProcessManager<P, S, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessManager")
            .field("name", &self.name)
            .field("process", &P::KIND)
            .field("events", &self.routes)
            .finish_non_exhaustive()
    }
}

impl<P: Aggregate, S: EventStore, Snap> sealed::Sealed for ProcessManager<P, S, Snap> {}

impl<P, S, Snap> Reacting<S, Snap> for ProcessManager<P, S, Snap>
where
    P: Aggregate<Id = S::Id>,
    S: EventStore + 'static,
    S::Id: PartialEq,
    S::Metadata: CausedBy,
    Snap: Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        ProcessManager::filters(self)
    }

    fn prepare<'a>(
        &'a self,
        repository: &'a Repository<S, Optimistic, Snap>,
        event: &'a Envelope<S>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Reactions<S, Snap>, BoxError>> {
        Box::pin(self.step(repository, event, now))
    }

    fn fire(&self, name: &str) -> Option<Fire<S, Snap>> {
        self.scheduled.fire(name)
    }
}

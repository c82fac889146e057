//! Reactions to events: commands on other aggregates, now or later.
//!
//! An order placed reserves stock; a payment failed cancels the order; an
//! invoice unpaid after 14 days sends a reminder. A [`Reactor`] declares
//! the events it reacts to and, for each, decides which commands to run
//! ([`Reactions::execute`], [`Reactions::create`]), which to schedule for
//! later ([`Reactions::schedule`]) and which scheduled ones to cancel
//! ([`Reactions::cancel`]). Deciding is plain code with no I/O, so it can
//! be tested without a store ([`Reactor::react`]). A [`ProcessManager`]
//! does the same with state of its own, event-sourced in its own stream.
//!
//! A [`ReactorRunner`] runs a reactor: it follows the log from the
//! reactor's checkpoint (the checkpointed, leased, fenced runner core of
//! [`runner`](crate::runner)), carries out each event's reactions through
//! the [`Repository`], fires the reactor's timers when they are due, and
//! parks what keeps failing.
//!
//! # Exactly one effect per event
//!
//! Delivery is at least once (an event after the last saved checkpoint is
//! delivered again after a crash), and every effect is idempotent, so each
//! reaction takes effect once:
//!
//! - the `n`th command of the reaction to event `e` runs under the command
//!   id `<reactor>/<e's id>/<n>`, so the events it produces have ids derived
//!   from it (see [`CommandOptions::command_id`]): run again, it finds them
//!   and writes nothing (and were it to target another stream the second
//!   time, the store refuses the reused ids);
//! - the `n`th timer of the reaction gets an id derived the same way, and a
//!   timer whose id is stored is not stored again, even after it fired or
//!   was cancelled;
//! - a cancellation cancels only the timers scheduled by reactions to
//!   earlier events, so delivering an event again never cancels a timer
//!   that a later event scheduled;
//! - a timer's command runs under a command id derived from the timer's id,
//!   so a timer fired twice applies its command once.
//!
//! The events a reaction's commands produce get the cause's metadata
//! through [`CausedBy`] (for [`EventMetadata`](crate::metadata::EventMetadata):
//! the same correlation id and actor, causation set to the cause's id).
//!
//! # Failures
//!
//! A reaction that fails (a command rejected, a store error, an event that
//! does not decode) is tried again with a jittered exponential backoff, up
//! to [`ReactorRunner::attempts`]; then it is parked as a [`DeadLetter`]
//! with the event, the error and the attempts, and the reactor moves on to
//! the next event ([`OnFailure::Park`], the default) — or the runner stops
//! ([`OnFailure::Stop`]). Operators list dead letters with
//! [`ReactorStore::dead_letters`], ask for a retry with
//! [`ReactorStore::request_retry`] (the reactor's active runner tries it
//! within its `timer_poll`, 1 s by default, and removes the letter when it
//! succeeds) or discard them.
//!
//! # Speed
//!
//! A reactor issuing one command per event (each loading a one-event
//! stream and appending one event) against the same commands run in a loop
//! of `Repository::execute`, 500 events per round, 9 rounds, the order of
//! the sides rotated (`cargo bench -p sourcery-bench --bench reactor`; 2
//! vCPUs, load average 1.8–2.1), median of the per-round ratios:
//!
//! | store | reactor | loop of `execute` | ratio (range) |
//! |---|---|---|---|
//! | SQLite (`synchronous = FULL`) | 1,662 reactions/s | 1,850 commands/s | **0.953** (0.775–0.991) |
//! | PostgreSQL | 1,429 reactions/s | 1,470 commands/s | **0.946** (0.788–1.259) |
//!
//! The reaction's commands run under command ids with
//! [`CommandOptions::assume_new`]: decided and committed at once, looked
//! for only after a refusal. With a lookup before every command (plain
//! `execute_with` and a command id) the same loop runs at 0.72× (SQLite) and
//! 0.83× (PostgreSQL) the plain loop's speed; before `assume_new` the reactor
//! ran at 0.68× and 0.71×. Starting a runner takes 0.1 to 7 ms.
//!
//! The guide's chapter "Reactors and process managers" and the example
//! `order_fulfilment` show a whole flow.

use std::any::Any;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, Handle, HandleCreate};
use crate::concurrency::Optimistic;
use crate::event::DecodeEvent;
use crate::id::{CommandId, EventId};
use crate::metadata::CausedBy;
use crate::repository::{CommandOptions, CommandOutcome, Repository};
use crate::runner::read_model::Routes;
use crate::schedule::{NewTimer, ScheduledCommand, TimerId};
use crate::snapshot::{AggregateSnapshots, NoSnapshots};
use crate::store::{EventFilter, EventStore, StoredEvent};

pub mod inmemory;
mod process;
mod runner;
mod store;

pub use process::{Decided, Decision, ProcessManager};
pub use runner::{OnFailure, ReactorRunner, ReactorStats, RunningReactor};
pub use store::{DeadLetter, ReactorStore};

/// A stored event of store `S`, as reactions see it.
pub type Envelope<S> =
    StoredEvent<<S as EventStore>::Id, <S as EventStore>::Position, <S as EventStore>::Metadata>;

/// The event a reaction reacts to: its envelope as stored (id, stream,
/// position, metadata), read through `Deref`.
pub struct Cause<'a, S: EventStore> {
    event: &'a Envelope<S>,
}

impl<'a, S: EventStore> Cause<'a, S> {
    /// The cause of a reaction to `event`.
    #[must_use]
    pub fn new(event: &'a Envelope<S>) -> Self {
        Self { event }
    }

    /// The stored event.
    #[must_use]
    pub fn event(&self) -> &'a Envelope<S> {
        self.event
    }
}

impl<S: EventStore> Clone for Cause<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: EventStore> Copy for Cause<'_, S> {}

impl<S: EventStore> std::ops::Deref for Cause<'_, S> {
    type Target = Envelope<S>;

    fn deref(&self) -> &Envelope<S> {
        self.event
    }
}

impl<S: EventStore> fmt::Debug for Cause<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cause")
            .field("id", &self.event.id)
            .field("kind", &self.event.kind)
            .field("aggregate_kind", &self.event.aggregate_kind)
            .field("aggregate_id", &self.event.aggregate_id)
            .field("position", &self.event.position)
            .finish_non_exhaustive()
    }
}

/// A boxed error, as reactions report them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a reaction could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactError {
    /// The event does not decode into the type its handler takes: a
    /// [`DecodeError`](crate::event::DecodeError) (downcast the source).
    #[error("the event does not decode")]
    Decode(#[source] BoxError),
    /// The handler failed.
    #[error("the reaction failed")]
    Handler(#[source] BoxError),
    /// A command was scheduled that the reactor does not declare with
    /// [`Reactor::schedules`] (or [`ProcessManager::schedules`]): its
    /// timer could not be fired.
    #[error("the command `{0}` is scheduled but not declared with `schedules`")]
    Undeclared(String),
    /// A scheduled command (its target id, itself or its metadata) did not
    /// encode as JSON.
    #[error("the scheduled command `{command}` does not encode")]
    Encode {
        /// The command's stored name.
        command: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// Runs one command of a reaction on the repository.
type Run<S, Snap> =
    for<'a> fn(
        &'a Repository<S, Optimistic, Snap>,
        &'a <S as EventStore>::Id,
        &'a (dyn Any + Send + Sync),
        <S as EventStore>::Metadata,
        CommandOptions<<S as EventStore>::Position>,
    ) -> BoxFuture<'a, Result<CommandOutcome<<S as EventStore>::Position>, BoxError>>;

/// Fires a stored timer's command (its payload) on the repository.
type Fire<S, Snap> =
    for<'a> fn(
        &'a Repository<S, Optimistic, Snap>,
        &'a [u8],
        CommandOptions<<S as EventStore>::Position>,
    ) -> BoxFuture<'a, Result<CommandOutcome<<S as EventStore>::Position>, BoxError>>;

/// Decides one event's reactions.
type Decide<S, Snap> = dyn Fn(&Envelope<S>, &<S as EventStore>::Codec, &mut Reactions<S, Snap>) -> Result<(), ReactError>
    + Send
    + Sync;

/// The events a reactor reacts to, each with its decision.
type Decisions<S, Snap> = Routes<<S as EventStore>::Id, <S as EventStore>::Position, Arc<Decide<S, Snap>>>;

/// A command a reaction decided to run.
pub struct PlannedCommand<S: EventStore, Snap = NoSnapshots> {
    aggregate_kind: &'static str,
    target: S::Id,
    command: Box<dyn Any + Send + Sync>,
    command_type: &'static str,
    debug: fn(&(dyn Any + Send + Sync), &mut fmt::Formatter<'_>) -> fmt::Result,
    creates: bool,
    run: Run<S, Snap>,
}

impl<S: EventStore, Snap> PlannedCommand<S, Snap> {
    /// The kind of the aggregate it targets.
    #[must_use]
    pub fn aggregate_kind(&self) -> &'static str {
        self.aggregate_kind
    }

    /// The id of the aggregate it targets.
    #[must_use]
    pub fn target(&self) -> &S::Id {
        &self.target
    }

    /// The command, if it is a `C`.
    #[must_use]
    pub fn command<C: 'static>(&self) -> Option<&C> {
        self.command.downcast_ref()
    }

    /// Whether it creates its aggregate ([`Reactions::create`]).
    #[must_use]
    pub fn creates(&self) -> bool {
        self.creates
    }

    /// Whether it is `command` on aggregate `A` with `id`.
    #[must_use]
    pub fn is<A: Aggregate, C: PartialEq + 'static>(&self, id: &S::Id, command: &C) -> bool
    where
        S::Id: PartialEq,
    {
        self.aggregate_kind == A::KIND && &self.target == id && self.command::<C>() == Some(command)
    }

    /// Runs it on `repository` under `options` with `metadata`.
    pub(crate) fn run<'a>(
        &'a self,
        repository: &'a Repository<S, Optimistic, Snap>,
        metadata: S::Metadata,
        options: CommandOptions<S::Position>,
    ) -> BoxFuture<'a, Result<CommandOutcome<S::Position>, BoxError>> {
        (self.run)(repository, &self.target, &*self.command, metadata, options)
    }
}

/// Writes the command held by a [`PlannedCommand`].
struct ShowCommand<'a>(
    &'a (dyn Any + Send + Sync),
    fn(&(dyn Any + Send + Sync), &mut fmt::Formatter<'_>) -> fmt::Result,
);

impl fmt::Debug for ShowCommand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.1)(self.0, f)
    }
}

impl<S: EventStore, Snap> fmt::Debug for PlannedCommand<S, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedCommand")
            .field("aggregate_kind", &self.aggregate_kind)
            .field("target", &self.target)
            .field("command_type", &self.command_type)
            .field("command", &ShowCommand(&*self.command, self.debug))
            .field("creates", &self.creates)
            .finish_non_exhaustive()
    }
}

/// A command a reaction scheduled for later.
pub struct PlannedTimer<S: EventStore> {
    key: String,
    due: DateTime<Utc>,
    command: String,
    aggregate_kind: &'static str,
    target: S::Id,
    value: Box<dyn Any + Send + Sync>,
    /// The target, command and metadata encoded for the store (filled when
    /// the reactor has decided: [`Scheduled::encode`]).
    payload: Vec<u8>,
}

impl<S: EventStore> PlannedTimer<S> {
    /// The key that cancels it.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// When it is due.
    #[must_use]
    pub fn due(&self) -> DateTime<Utc> {
        self.due
    }

    /// Its command's stored name, `"<aggregate kind>/<command kind>"`.
    #[must_use]
    pub fn command_name(&self) -> &str {
        &self.command
    }

    /// The kind of the aggregate its command targets.
    #[must_use]
    pub fn aggregate_kind(&self) -> &'static str {
        self.aggregate_kind
    }

    /// The id of the aggregate its command targets.
    #[must_use]
    pub fn target(&self) -> &S::Id {
        &self.target
    }

    /// The command, if it is a `C`.
    #[must_use]
    pub fn command<C: 'static>(&self) -> Option<&C> {
        self.value.downcast_ref()
    }

    /// Whether it is `command` on aggregate `A` with `id`, due at `due`.
    #[must_use]
    pub fn is<A: Aggregate, C: PartialEq + 'static>(
        &self,
        id: &S::Id,
        command: &C,
        due: DateTime<Utc>,
    ) -> bool
    where
        S::Id: PartialEq,
    {
        self.aggregate_kind == A::KIND
            && &self.target == id
            && self.command::<C>() == Some(command)
            && self.due == due
    }
}

impl<S: EventStore> fmt::Debug for PlannedTimer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedTimer")
            .field("key", &self.key)
            .field("due", &self.due)
            .field("command", &self.command)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What a reaction decided: commands to run now, commands to schedule,
/// scheduled commands to cancel. Built by the handlers of a [`Reactor`] or
/// a [`ProcessManager`]; carried out by the [`ReactorRunner`].
pub struct Reactions<S: EventStore, Snap = NoSnapshots> {
    now: DateTime<Utc>,
    commands: Vec<PlannedCommand<S, Snap>>,
    timers: Vec<PlannedTimer<S>>,
    cancelled: Vec<String>,
}

impl<S: EventStore, Snap> Reactions<S, Snap> {
    /// No reactions yet, deciding at `now`.
    #[must_use]
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            commands: Vec::new(),
            timers: Vec::new(),
            cancelled: Vec::new(),
        }
    }

    /// The time of the decision, from the runner's clock: schedule relative
    /// to it.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Runs `command` on the existing aggregate `A` with `id`.
    pub fn execute<A, C>(&mut self, id: S::Id, command: C) -> &mut Self
    where
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: fmt::Debug + Send + Sync + 'static,
        S::Metadata: CausedBy,
        Snap: AggregateSnapshots<A, S::Position> + 'static,
    {
        self.plan::<A, C>(id, command, false, run_execute::<S, Snap, A, C>)
    }

    /// Creates aggregate `A` with `id` from `command`. Run again (a
    /// redelivered event) it finds the aggregate it created and succeeds.
    pub fn create<A, C>(&mut self, id: S::Id, command: C) -> &mut Self
    where
        A: Aggregate<Id = S::Id> + HandleCreate<C>,
        C: fmt::Debug + Send + Sync + 'static,
        S::Metadata: CausedBy,
        Snap: AggregateSnapshots<A, S::Position> + 'static,
    {
        self.plan::<A, C>(id, command, true, run_create::<S, Snap, A, C>)
    }

    fn plan<A, C>(&mut self, id: S::Id, command: C, creates: bool, run: Run<S, Snap>) -> &mut Self
    where
        A: Aggregate,
        C: fmt::Debug + Send + Sync + 'static,
    {
        self.commands.push(PlannedCommand {
            aggregate_kind: A::KIND,
            target: id,
            command: Box::new(command),
            command_type: std::any::type_name::<C>(),
            debug: debug_as::<C>,
            creates,
            run,
        });
        self
    }

    /// Schedules `command` on aggregate `A` with `id` for `due`, under
    /// `key` (which [`cancel`](Self::cancel) takes). The reactor must
    /// declare the command ([`Reactor::schedules`]), so that a runner
    /// started after a restart can fire it. The events it produces get the
    /// metadata of an event caused by the event reacted to.
    pub fn schedule<A, C>(
        &mut self,
        key: impl Into<String>,
        due: DateTime<Utc>,
        id: S::Id,
        command: C,
    ) -> &mut Self
    where
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: ScheduledCommand,
        S::Id: Serialize,
    {
        let name = scheduled_name::<A, C>();
        self.timers.push(PlannedTimer {
            key: key.into(),
            due,
            command: name,
            aggregate_kind: A::KIND,
            payload: Vec::new(),
            target: id,
            value: Box::new(command),
        });
        self
    }

    /// [`schedule`](Self::schedule) for `delay` after [`now`](Self::now).
    pub fn schedule_after<A, C>(
        &mut self,
        key: impl Into<String>,
        delay: Duration,
        id: S::Id,
        command: C,
    ) -> &mut Self
    where
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: ScheduledCommand,
        S::Id: Serialize,
    {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let due = self
            .now
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.schedule::<A, C>(key, due, id, command)
    }

    /// Cancels the pending timers of this reactor with `key` that reactions
    /// to earlier events scheduled.
    pub fn cancel(&mut self, key: impl Into<String>) -> &mut Self {
        self.cancelled.push(key.into());
        self
    }

    /// The commands to run, in order.
    #[must_use]
    pub fn commands(&self) -> &[PlannedCommand<S, Snap>] {
        &self.commands
    }

    /// The commands to schedule, in order.
    #[must_use]
    pub fn timers(&self) -> &[PlannedTimer<S>] {
        &self.timers
    }

    /// The keys of the timers to cancel, in order.
    #[must_use]
    pub fn cancelled(&self) -> &[String] {
        &self.cancelled
    }

    /// Whether nothing was decided.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.timers.is_empty() && self.cancelled.is_empty()
    }
}

impl<S: EventStore, Snap> fmt::Debug for Reactions<S, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactions")
            .field("now", &self.now)
            .field("commands", &self.commands)
            .field("timers", &self.timers)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

fn debug_as<C: fmt::Debug + 'static>(
    value: &(dyn Any + Send + Sync),
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match value.downcast_ref::<C>() {
        Some(command) => command.fmt(f),
        None => f.write_str("?"),
    }
}

/// The stored name of command `C` on aggregate `A`.
fn scheduled_name<A: Aggregate, C: ScheduledCommand>() -> String {
    format!("{}/{}", A::KIND, C::KIND)
}

/// The command held by a [`PlannedCommand`], as a `C`.
fn planned<C: 'static>(command: &(dyn Any + Send + Sync)) -> Result<&C, BoxError> {
    command
        .downcast_ref::<C>()
        .ok_or_else(|| BoxError::from("a planned command of another type"))
}

fn run_execute<'a, S, Snap, A, C>(
    repository: &'a Repository<S, Optimistic, Snap>,
    id: &'a S::Id,
    command: &'a (dyn Any + Send + Sync),
    metadata: S::Metadata,
    options: CommandOptions<S::Position>,
) -> BoxFuture<'a, Result<CommandOutcome<S::Position>, BoxError>>
where
    S: EventStore,
    A: Aggregate<Id = S::Id> + Handle<C>,
    C: Send + Sync + 'static,
    S::Metadata: CausedBy,
    Snap: AggregateSnapshots<A, S::Position>,
{
    Box::pin(async move {
        let command = planned::<C>(command)?;
        Ok(repository
            .execute_with::<A, C>(id, command, metadata, options)
            .await?)
    })
}

fn run_create<'a, S, Snap, A, C>(
    repository: &'a Repository<S, Optimistic, Snap>,
    id: &'a S::Id,
    command: &'a (dyn Any + Send + Sync),
    metadata: S::Metadata,
    options: CommandOptions<S::Position>,
) -> BoxFuture<'a, Result<CommandOutcome<S::Position>, BoxError>>
where
    S: EventStore,
    A: Aggregate<Id = S::Id> + HandleCreate<C>,
    C: Send + Sync + 'static,
    S::Metadata: CausedBy,
    Snap: AggregateSnapshots<A, S::Position>,
{
    Box::pin(async move {
        let command = planned::<C>(command)?;
        Ok(repository
            .create_with::<A, C>(id, command, metadata, options)
            .await?)
    })
}

/// A scheduled command as stored.
#[derive(Serialize)]
struct PayloadOut<'a, Id, C, M> {
    target: &'a Id,
    command: &'a C,
    metadata: &'a M,
}

/// A scheduled command as read back.
#[derive(Deserialize)]
struct PayloadIn<Id, C, M> {
    target: Id,
    command: C,
    metadata: M,
}

fn fire<'a, S, Snap, A, C>(
    repository: &'a Repository<S, Optimistic, Snap>,
    payload: &'a [u8],
    options: CommandOptions<S::Position>,
) -> BoxFuture<'a, Result<CommandOutcome<S::Position>, BoxError>>
where
    S: EventStore,
    S::Id: DeserializeOwned,
    S::Metadata: CausedBy + DeserializeOwned,
    A: Aggregate<Id = S::Id> + Handle<C>,
    C: ScheduledCommand,
    Snap: AggregateSnapshots<A, S::Position>,
{
    Box::pin(async move {
        let stored: PayloadIn<S::Id, C, S::Metadata> = serde_json::from_slice(payload)?;
        let outcome = repository
            .execute_with::<A, C>(&stored.target, &stored.command, stored.metadata, options)
            .await?;
        Ok(outcome)
    })
}

/// Encodes what a timer needs to fire: target, command, metadata.
fn encode_timer<S, C>(
    target: &S::Id,
    command: &C,
    metadata: &S::Metadata,
) -> Result<Vec<u8>, serde_json::Error>
where
    S: EventStore,
    S::Id: Serialize,
    S::Metadata: Serialize,
    C: Serialize,
{
    serde_json::to_vec(&PayloadOut {
        target,
        command,
        metadata,
    })
}

/// Encodes planned timers of type `C` (registered per scheduled command).
type Encode<S> = fn(
    &(dyn Any + Send + Sync),
    &<S as EventStore>::Id,
    &<S as EventStore>::Metadata,
) -> Option<Result<Vec<u8>, serde_json::Error>>;

fn encode_as<S, C>(
    value: &(dyn Any + Send + Sync),
    target: &S::Id,
    metadata: &S::Metadata,
) -> Option<Result<Vec<u8>, serde_json::Error>>
where
    S: EventStore,
    S::Id: Serialize,
    S::Metadata: Serialize,
    C: ScheduledCommand,
{
    value
        .downcast_ref::<C>()
        .map(|command| encode_timer::<S, C>(target, command, metadata))
}

/// What a reactor knows of the commands it schedules: how to encode them
/// when scheduled and how to fire them when due.
pub(crate) struct Scheduled<S: EventStore, Snap> {
    commands: HashMap<String, (Encode<S>, Fire<S, Snap>)>,
}

impl<S: EventStore, Snap> Scheduled<S, Snap> {
    fn new() -> Self {
        Self {
            commands: HashMap::new(),
        }
    }

    fn declare<A, C>(&mut self)
    where
        S::Id: Serialize + DeserializeOwned,
        S::Metadata: CausedBy + Serialize + DeserializeOwned,
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: ScheduledCommand,
        Snap: AggregateSnapshots<A, S::Position>,
    {
        self.commands.insert(
            scheduled_name::<A, C>(),
            (encode_as::<S, C>, fire::<S, Snap, A, C>),
        );
    }

    /// Encodes the timers of `reactions` for the reaction to `cause`:
    /// their payloads, with the metadata of an event caused by it.
    pub(crate) fn encode(
        &self,
        reactions: &mut Reactions<S, Snap>,
        cause: &Envelope<S>,
    ) -> Result<(), ReactError>
    where
        S::Metadata: CausedBy,
    {
        let metadata = S::Metadata::caused_by(cause.id, &cause.metadata);
        for timer in &mut reactions.timers {
            let Some((encode, _)) = self.commands.get(&timer.command) else {
                return Err(ReactError::Undeclared(timer.command.clone()));
            };
            match encode(&*timer.value, &timer.target, &metadata) {
                Some(Ok(payload)) => timer.payload = payload,
                Some(Err(source)) => {
                    return Err(ReactError::Encode {
                        command: timer.command.clone(),
                        source,
                    });
                }
                None => return Err(ReactError::Undeclared(timer.command.clone())),
            }
        }
        Ok(())
    }

    /// How to fire the stored command `name`.
    pub(crate) fn fire(&self, name: &str) -> Option<Fire<S, Snap>> {
        self.commands.get(name).map(|(_, fire)| *fire)
    }
}

/// The command id of the `index`th command of `reactor`'s reaction to
/// the event `cause`.
#[must_use]
pub fn reaction_command_id(reactor: &str, cause: EventId, index: u32) -> CommandId {
    CommandId::from_key(format!("{reactor}/{cause}/{index}"))
}

/// The id of the `index`th timer of `reactor`'s reaction to the event
/// `cause`.
#[must_use]
pub fn reaction_timer_id(reactor: &str, cause: EventId, index: u32) -> TimerId {
    TimerId::from_uuid(*CommandId::from_key(format!("{reactor}/{cause}/timer/{index}")).as_uuid())
}

/// The timers of `reactions` to store, for `reactor`'s reaction to `cause`
/// (after [`Scheduled::encode`]).
pub(crate) fn new_timers<S: EventStore, Snap>(
    reactor: &str,
    reactions: &Reactions<S, Snap>,
    cause: &Envelope<S>,
) -> Vec<NewTimer<S::Position>> {
    (0_u32..)
        .zip(&reactions.timers)
        .map(|(index, timer)| NewTimer {
            id: reaction_timer_id(reactor, cause.id, index),
            reactor: reactor.to_owned(),
            key: timer.key.clone(),
            due: timer.due,
            command: timer.command.clone(),
            payload: timer.payload.clone(),
            cause: cause.position,
        })
        .collect()
}

/// Reacts to events with commands on aggregates: the events it declares
/// with [`on`](Self::on), the commands it schedules with
/// [`schedules`](Self::schedules). Run it with a [`ReactorRunner`].
///
/// `S` is the store the reactor runs on; `Snap` the snapshots of the
/// repository its commands run through (none by default).
pub struct Reactor<S: EventStore, Snap = NoSnapshots> {
    name: &'static str,
    routes: Decisions<S, Snap>,
    scheduled: Scheduled<S, Snap>,
}

impl<S: EventStore, Snap: 'static> Reactor<S, Snap>
where
    S::Id: PartialEq,
{
    /// A reactor named `name`: its checkpoint and lease are kept under the
    /// name (keep it apart from projections' kinds), and its commands' ids
    /// derive from it. Changing it makes the reactor start from the
    /// beginning of the log.
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            routes: Routes::new(),
            scheduled: Scheduled::new(),
        }
    }

    /// The reactor's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reacts to every event `E` decodes (a domain event, or all events of
    /// an aggregate's event enum), from any stream, with `handler`: given
    /// the decoded event and its envelope, it adds its reactions to `out`.
    #[must_use]
    pub fn on<E, F, Err>(mut self, handler: F) -> Self
    where
        E: DecodeEvent + 'static,
        F: Fn(&E, Cause<'_, S>, &mut Reactions<S, Snap>) -> Result<(), Err> + Send + Sync + 'static,
        Err: Into<BoxError>,
    {
        let decide: Arc<Decide<S, Snap>> = Arc::new(move |event, codec, out| {
            let decoded: E = event
                .decode(codec)
                .map_err(|error| ReactError::Decode(Box::new(error)))?;
            handler(&decoded, Cause::new(event), out).map_err(|error| ReactError::Handler(error.into()))
        });
        for kind in E::decoded_kinds() {
            self.routes
                .push(EventFilter::for_event(kind), Arc::clone(&decide));
        }
        self
    }

    /// Declares that the reactor schedules command `C` on aggregate `A`,
    /// so that its runner can fire stored timers of it (after a restart
    /// too).
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

    /// The filters of the events the reactor reacts to.
    #[must_use]
    pub fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        self.routes.filters()
    }

    /// Decides the reactions to `event` at `now`, without carrying them
    /// out: what the runner does first with each event, and what tests
    /// check. An event the reactor does not react to has no reactions.
    ///
    /// # Errors
    ///
    /// [`ReactError::Decode`] when the event does not decode,
    /// [`ReactError::Handler`] when the handler fails,
    /// [`ReactError::Undeclared`] / [`ReactError::Encode`] for a scheduled
    /// command that is not declared or does not encode.
    pub fn react(
        &self,
        event: &Envelope<S>,
        codec: &S::Codec,
        now: DateTime<Utc>,
    ) -> Result<Reactions<S, Snap>, ReactError>
    where
        S::Metadata: CausedBy,
    {
        let mut reactions = Reactions::new(now);
        if let Some(decide) = self.routes.route(event) {
            decide(event, codec, &mut reactions)?;
        }
        self.scheduled.encode(&mut reactions, event)?;
        Ok(reactions)
    }
}

impl<S: EventStore, Snap> fmt::Debug for Reactor<S, Snap> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("name", &self.name)
            .field("events", &self.routes)
            .field("scheduled", &self.scheduled.commands.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What the [`ReactorRunner`] runs: a [`Reactor`] or a [`ProcessManager`].
/// Sealed: build one of those.
pub trait Reacting<S: EventStore, Snap>: sealed::Sealed + Send + Sync + 'static {
    /// The name its checkpoint, lease, timers and dead letters are kept
    /// under.
    fn name(&self) -> &'static str;

    /// The events it reacts to.
    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>>;

    /// Everything the event causes before its commands and timers are
    /// carried out (a process manager: its state loaded, its own events
    /// appended), and those reactions.
    #[doc(hidden)]
    fn prepare<'a>(
        &'a self,
        repository: &'a Repository<S, Optimistic, Snap>,
        event: &'a Envelope<S>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Reactions<S, Snap>, BoxError>>;

    /// How to fire the stored command `name`.
    #[doc(hidden)]
    fn fire(&self, name: &str) -> Option<Fire<S, Snap>>;
}

pub(crate) mod sealed {
    /// Only the library's reactors run.
    pub trait Sealed {}
}

impl<S: EventStore, Snap> sealed::Sealed for Reactor<S, Snap> {}

impl<S, Snap> Reacting<S, Snap> for Reactor<S, Snap>
where
    S: EventStore + 'static,
    S::Id: PartialEq,
    S::Metadata: CausedBy,
    Snap: Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        Reactor::filters(self)
    }

    fn prepare<'a>(
        &'a self,
        repository: &'a Repository<S, Optimistic, Snap>,
        event: &'a Envelope<S>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Reactions<S, Snap>, BoxError>> {
        let decided = self
            .react(event, repository.store().codec(), now)
            .map_err(BoxError::from);
        Box::pin(std::future::ready(decided))
    }

    fn fire(&self, name: &str) -> Option<Fire<S, Snap>> {
        self.scheduled.fire(name)
    }
}

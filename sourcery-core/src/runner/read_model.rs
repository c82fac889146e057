//! Keeping a read model in a database current, exactly once: the
//! [`ReadModelRunner`].
//!
//! A transactional projection writes its read model with plain SQL in the
//! transaction that also advances its checkpoint. The store crates provide
//! them (`sourcery_postgres::ReadModel`, `sourcery_sqlite::ReadModel`), as
//! an [`ApplyInTransaction`]; this runner follows the log, cuts it into
//! batches and hands each batch to one transaction. A crash at any point
//! leaves read model and checkpoint consistent: the transaction committed
//! both, or neither, and the next run resumes after the checkpoint. Every
//! event's effect is applied exactly once.
//!
//! With a [`Lease`], the transaction advances the checkpoint
//! with the holder's [`Fence`]: a runner that lost its lease without
//! knowing has its transaction refused by the database
//! ([`Advance::Fenced`]), its writes rolled back with it.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::time::Duration;

use futures::future::{self, BoxFuture, Either};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    Lease, LeaseGuard, NoLease, Pace, RunnerError, RunnerStatus, WaitError, report_stop, stopped,
    wait_for_status,
};
use crate::checkpoint::{Advance, Claim, Fence};
use crate::id::EventId;
use crate::store::{EventFilter, StoredEvent};
use crate::subscription::{Follower, Progress, Subscribe};

/// The events of store `S` as a read model's batch.
pub type Batch<S> = Vec<
    StoredEvent<
        <S as crate::store::EventStore>::Id,
        <S as crate::store::EventStore>::Position,
        <S as crate::store::EventStore>::Metadata,
    >,
>;

/// What stopped a read model's batch, for a database whose errors are `E`;
/// nothing of the batch was committed. The store crates name it
/// `ReadModelError` with their own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError<E: StdError + 'static, Pos: fmt::Display + fmt::Debug = i64> {
    /// The database failed (or its tables are missing: not migrated).
    #[error(transparent)]
    Database(#[from] E),
    /// A consumed event does not decode: a
    /// [`DecodeError`](crate::event::DecodeError) naming it (downcast the
    /// source to read it).
    #[error(transparent)]
    Decode(Box<dyn StdError + Send + Sync>),
    /// The projection's `setup` failed.
    #[error("the setup of version {version} of the projection `{projection}` failed")]
    Setup {
        /// The projection.
        projection: &'static str,
        /// The version being set up.
        version: u32,
        /// What `setup` returned.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// `drop_version` was asked to drop the live version.
    #[error(
        "version {version} of the projection `{projection}` is live: switch to another before dropping it"
    )]
    Live {
        /// The projection.
        projection: &'static str,
        /// The live version.
        version: u32,
    },
    /// The projection's handler of runs of events (PostgreSQL's
    /// `ApplySqlBatch`) failed on a run.
    #[error(
        "the projection `{projection}` failed on a run of {events} events at positions {first} to {last}"
    )]
    Batch {
        /// The projection.
        projection: &'static str,
        /// How many events the run held.
        events: usize,
        /// The position of its first event.
        first: Pos,
        /// The position of its last event.
        last: Pos,
        /// What the handler returned.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The projection's handler failed on an event.
    #[error(
        "the projection `{projection}` failed on the {kind:?} event at position {position} of stream {aggregate_kind:?}/{aggregate_id}"
    )]
    Handler {
        /// The projection.
        projection: &'static str,
        /// The event's kind.
        kind: String,
        /// Its stream's aggregate kind.
        aggregate_kind: String,
        /// Its stream's aggregate id, as `Debug` prints it.
        aggregate_id: String,
        /// Its position.
        position: Pos,
        /// What the handler returned.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl<E: StdError + 'static, Pos: fmt::Display + fmt::Debug + Copy> ReadModelError<E, Pos> {
    /// The failure of `projection`'s handler on `event`.
    pub fn handler<Id: fmt::Debug, M>(
        projection: &'static str,
        event: &StoredEvent<Id, Pos, M>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Handler {
            projection,
            kind: event.kind.clone(),
            aggregate_kind: event.aggregate_kind.clone(),
            aggregate_id: format!("{:?}", event.aggregate_id),
            position: event.position,
            source: Box::new(source),
        }
    }
}

/// The events a read model consumes, each filter with the handler of what
/// it selects (`H`: a store crate's handler type). The store crates' event
/// builders (`SqlEvents`) fill it.
pub struct Routes<Id, Pos, H> {
    entries: Vec<(EventFilter<Id, Pos>, H)>,
}

impl<Id, Pos, H> Routes<Id, Pos, H> {
    /// No events yet.
    #[must_use]
    pub fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Routes the events `filter` selects to `handler`.
    pub fn push(&mut self, filter: EventFilter<Id, Pos>, handler: H) {
        self.entries.push((filter, handler));
    }

    /// The handler of the first filter that selects `event`.
    pub fn route<M>(&self, event: &StoredEvent<Id, Pos, M>) -> Option<&H>
    where
        Id: PartialEq,
        Pos: PartialOrd,
    {
        self.entries
            .iter()
            .find(|(filter, _)| {
                filter.matches(
                    &event.aggregate_kind,
                    &event.aggregate_id,
                    &event.kind,
                    &event.position,
                )
            })
            .map(|(_, handler)| handler)
    }

    /// The filters, to follow the log with.
    #[must_use]
    pub fn filters(&self) -> Vec<EventFilter<Id, Pos>>
    where
        Id: Clone,
        Pos: Clone,
    {
        self.entries.iter().map(|(filter, _)| filter.clone()).collect()
    }
}

impl<Id, Pos, H> Default for Routes<Id, Pos, H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Id: fmt::Debug, Pos: fmt::Debug, H> fmt::Debug for Routes<Id, Pos, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(filter, _)| filter))
            .finish()
    }
}

/// The checkpoint and lease name of `version` of the read model `kind`:
/// `<kind>.v<version>`.
#[must_use]
pub fn version_name(kind: &str, version: u32) -> String {
    format!("{kind}.v{version}")
}

/// `name` quoted as an SQL identifier (in double quotes, which it doubles).
#[must_use]
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of one version of a read model: each table the projection
/// declares, by its name, with the name of that version's table, quoted
/// for SQL. Readers query the declared name (a view of the live version's
/// table); handlers write the version's table.
///
/// ```
/// use sourcery_core::runner::read_model::Tables;
///
/// let tables = Tables::new([("balances", "\"balances_v2\"".to_owned())]);
/// assert_eq!(tables.name("balances"), "\"balances_v2\"");
/// assert_eq!(tables.name("audit"), "audit", "an undeclared table is written as named");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    entries: Vec<(&'static str, String)>,
}

impl Tables {
    /// Tables from `(declared name, version's quoted name)` pairs.
    pub fn new(entries: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        Self {
            entries: entries.into_iter().collect(),
        }
    }

    /// The version's table for the declared `table`, if declared.
    #[must_use]
    pub fn get(&self, table: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(declared, _)| *declared == table)
            .map(|(_, name)| name.as_str())
    }

    /// The version's table for `table` when declared, `table` itself
    /// otherwise (a table the projection does not version).
    #[must_use]
    pub fn name<'a>(&'a self, table: &'a str) -> &'a str {
        self.get(table).unwrap_or(table)
    }

    /// Each declared table with its version's name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries
            .iter()
            .map(|(declared, name)| (*declared, name.as_str()))
    }

    /// The tables of `version` for the `declared` ones: `<table>_v<version>`,
    /// quoted, and put into SQL by `qualify` (which may add a schema).
    pub fn versioned(declared: &[&'static str], version: u32, qualify: impl Fn(String) -> String) -> Self {
        Self::new(
            declared
                .iter()
                .map(|table| (*table, qualify(quote_identifier(&format!("{table}_v{version}"))))),
        )
    }
}

/// An event a read model's version skips, with the reason it was parked
/// (the store crates' `ReadModel::park`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parked<Pos> {
    /// The event's position.
    pub position: Pos,
    /// Why it is skipped, as the operator who parked it said.
    pub reason: String,
}

impl<Pos> Parked<Pos> {
    /// The event at `position`, parked for `reason`.
    #[must_use]
    pub fn new(position: Pos, reason: impl Into<String>) -> Self {
        Self {
            position,
            reason: reason.into(),
        }
    }
}

/// An event as a read model's handler receives it, beside its decoded
/// value: where it is stored and its envelope.
#[derive(Debug)]
pub struct Delivery<'a, Id, Pos, M> {
    event: &'a StoredEvent<Id, Pos, M>,
    tables: &'a Tables,
    replay: bool,
}

impl<Id, Pos, M> Clone for Delivery<'_, Id, Pos, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Id, Pos, M> Copy for Delivery<'_, Id, Pos, M> {}

impl<'a, Id, Pos: Copy, M> Delivery<'a, Id, Pos, M> {
    /// The delivery of `event` to a read model whose tables are `tables`
    /// (for the store crates' read models); `replay` says whether it is
    /// history replayed into a version being built.
    #[must_use]
    pub fn new(event: &'a StoredEvent<Id, Pos, M>, tables: &'a Tables, replay: bool) -> Self {
        Self {
            event,
            tables,
            replay,
        }
    }

    /// Whether the event is history replayed into this version of the
    /// read model rather than delivered live: it was in the log (at or
    /// below its head) when the version first started. Skip side effects
    /// (emails, calls to other services) for replays: they happened when
    /// the event was live, or long ago. A restart is not a replay: events
    /// written while the runner was down are live when it catches up.
    #[must_use]
    pub fn is_replay(&self) -> bool {
        self.replay
    }

    /// The name to write table `table` of the read model under, ready for
    /// SQL (quoted): the table of the version being built for a table the
    /// projection declares, `table` as given otherwise. See [`Tables`].
    #[must_use]
    pub fn table(&self, table: &'a str) -> &'a str {
        self.tables.name(table)
    }

    /// The read model's tables.
    #[must_use]
    pub fn tables(&self) -> &'a Tables {
        self.tables
    }

    /// The event's id.
    #[must_use]
    pub fn id(&self) -> EventId {
        self.event.id
    }

    /// Its position in the log.
    #[must_use]
    pub fn position(&self) -> Pos {
        self.event.position
    }

    /// Its kind, as stored.
    #[must_use]
    pub fn kind(&self) -> &'a str {
        &self.event.kind
    }

    /// The aggregate kind of its stream.
    #[must_use]
    pub fn aggregate_kind(&self) -> &'a str {
        &self.event.aggregate_kind
    }

    /// The aggregate id of its stream.
    #[must_use]
    pub fn aggregate_id(&self) -> &'a Id {
        &self.event.aggregate_id
    }

    /// Its metadata.
    #[must_use]
    pub fn metadata(&self) -> &'a M {
        &self.event.metadata
    }

    /// The whole stored event (its bytes included).
    #[must_use]
    pub fn stored(&self) -> &'a StoredEvent<Id, Pos, M> {
        self.event
    }
}

/// A read model that applies batches of the events of store `S` in
/// transactions of its database, each of which also advances its
/// checkpoint. Implemented by the store crates' read models; the
/// [`ReadModelRunner`] drives it.
pub trait ApplyInTransaction<S: Subscribe>: Send + Sync + 'static {
    /// What goes wrong: the database, an event that does not decode, the
    /// projection's handler (naming the event).
    type Error: StdError + Send + Sync + 'static;

    /// The projection's kind, naming it in errors.
    fn kind(&self) -> &'static str;

    /// The name its checkpoint and lease are kept under (its kind and
    /// version, for example).
    fn name(&self) -> &str;

    /// The events the read model consumes.
    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>>;

    /// Reads the checkpoint, claiming it for `fence` first when given
    /// (see [`CheckpointStore::claim`](crate::checkpoint::CheckpointStore::claim)).
    /// `head` is the log's head now: the first claim of a version records
    /// it, and the events up to it are replays
    /// ([`Delivery::is_replay`]).
    fn claim(
        &self,
        fence: Option<Fence>,
        head: Option<S::Position>,
    ) -> impl Future<Output = Result<Claim<S::Position>, Self::Error>> + Send + '_;

    /// In one transaction: applies `events` (in order; possibly none, all
    /// after `from`) and advances the checkpoint from `from` to `through`
    /// (at or above the last event's position) with `fence`
    /// ([`CheckpointStore::advance`](crate::checkpoint::CheckpointStore::advance)).
    /// Commits only when the advance is [`Advance::Saved`]; a refusal
    /// rolls the writes back and is returned. The advance is also refused
    /// ([`Advance::Behind`]) when the saved checkpoint is no longer `from`:
    /// another runner committed in the meantime, so the batch would apply
    /// its events a second time.
    fn apply(
        &self,
        events: Batch<S>,
        from: Option<S::Position>,
        through: S::Position,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<Advance<S::Position>, Self::Error>> + Send + '_;

    /// Called each time the runner has committed everything up to the
    /// log's `head`: where a versioned read model switches its readers to
    /// the version just caught up. Does nothing by default.
    fn caught_up(&self, head: S::Position) -> impl Future<Output = Result<(), Self::Error>> + Send + '_ {
        let _ = head;
        future::ready(Ok(()))
    }
}

/// Starts [`RunningReadModel`]s over one store.
#[derive(Debug, Clone)]
pub struct ReadModelRunner<S, L = NoLease> {
    store: S,
    lease: L,
    batch_size: NonZeroUsize,
    linger: Duration,
    idle_checkpoint: Duration,
    behind_after: Duration,
}

impl<S: Subscribe> ReadModelRunner<S> {
    /// A runner following `store`, with batches of at most 500 events,
    /// committed as soon as no more events are waiting.
    pub fn new(store: S) -> Self {
        Self {
            store,
            lease: NoLease,
            batch_size: NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN),
            linger: Duration::ZERO,
            idle_checkpoint: Duration::from_secs(1),
            behind_after: Duration::from_secs(10),
        }
    }
}

impl<S: Subscribe, L: Lease> ReadModelRunner<S, L> {
    /// Runs only while holding `lease` for the projection; its transactions
    /// advance the checkpoint with the lease's fence.
    #[must_use]
    pub fn with_lease<L2: Lease>(self, lease: L2) -> ReadModelRunner<S, L2> {
        ReadModelRunner {
            store: self.store,
            lease,
            batch_size: self.batch_size,
            linger: self.linger,
            idle_checkpoint: self.idle_checkpoint,
            behind_after: self.behind_after,
        }
    }

    /// At most this many events per transaction (default 500).
    #[must_use]
    pub fn batch_size(mut self, events: NonZeroUsize) -> Self {
        self.batch_size = events;
        self
    }

    /// How long a batch may wait for more events after its first one
    /// before it commits (default zero: commit as soon as the events read
    /// so far are applied). A longer linger makes fewer, larger
    /// transactions under a trickle of events, at the cost of latency.
    #[must_use]
    pub fn batch_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How often, at most, the checkpoint is advanced past events the read
    /// model does not consume (default every second), so that a restart
    /// does not rescan them.
    #[must_use]
    pub fn idle_checkpoint(mut self, interval: Duration) -> Self {
        self.idle_checkpoint = interval;
        self
    }

    /// After how long without catching up with the log the runner reports
    /// that it fell behind ([`RunnerStatus::behind`], and a `tracing`
    /// warning); default 10 s.
    #[must_use]
    pub fn behind_after(mut self, threshold: Duration) -> Self {
        self.behind_after = threshold;
        self
    }

    /// Starts keeping `read_model` current: once it holds the lease, it
    /// resumes after the read model's checkpoint.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoEvents`] when the read model consumes no events.
    /// Later failures stop the runner and come back from
    /// [`RunningReadModel::stop`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the runner is a Tokio task).
    pub fn start<T: ApplyInTransaction<S>>(
        self,
        read_model: T,
    ) -> Result<RunningReadModel<S::Position>, RunnerError>
    where
        S::Id: PartialEq,
    {
        // Alone, a read model gets the batches whole: nothing is copied.
        self.start_members(ReadModels::new().with(read_model), None)
    }

    /// Keeps every read model of `read_models` current from one scan of
    /// the log: for rebuilding several at once, or running several
    /// against one reading of the store. Each keeps its own checkpoint,
    /// lease (all are held while the runner runs, taken in name order) and
    /// transactions: a batch is applied to each read model in a
    /// transaction of its own, and each resumes after its own checkpoint,
    /// so one ahead of the others is not applied twice.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoEvents`] when the group is empty or one of its read
    /// models consumes no events.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the runner is a Tokio task).
    pub fn start_all(self, read_models: ReadModels<S>) -> Result<RunningReadModel<S::Position>, RunnerError>
    where
        S::Id: PartialEq,
        S::Metadata: Clone,
    {
        self.start_members(read_models, Some(Clone::clone))
    }

    /// Starts the task; `copy` copies an event for one member of a group of
    /// several (each gets the events it consumes).
    fn start_members(
        self,
        read_models: ReadModels<S>,
        copy: Option<CopyEvent<S>>,
    ) -> Result<RunningReadModel<S::Position>, RunnerError>
    where
        S::Id: PartialEq,
    {
        let mut members = Vec::with_capacity(read_models.members.len());
        for model in read_models.members {
            let filters = model.filters();
            if filters.is_empty() {
                return Err(RunnerError::NoEvents(model.kind()));
            }
            members.push(Member {
                model,
                filters,
                fence: None,
                saved: None,
            });
        }
        let Some(first) = members.first() else {
            return Err(RunnerError::NoEvents("an empty group of read models"));
        };
        let name = first.model.kind();
        let filters = members
            .iter()
            .flat_map(|member| member.filters.iter().cloned())
            .collect();
        let (status, watch_status) = watch::channel(RunnerStatus::starting());
        let (stop, stop_requested) = watch::channel(false);
        let task = Task {
            store: self.store,
            members,
            copy,
            filters,
            status,
            batch: Vec::new(),
            batch_started: Instant::now(),
            batch_size: self.batch_size.get(),
            linger: self.linger,
            idle_checkpoint: self.idle_checkpoint,
            behind_after: self.behind_after,
            last_save: Instant::now(),
            pace: Pace::new(self.behind_after),
        };
        let handle = tokio::spawn(task.run(self.lease, stop_requested));
        Ok(RunningReadModel {
            name,
            status: watch_status,
            stop,
            task: handle,
        })
    }
}

/// Read models to run from one scan of the log
/// ([`ReadModelRunner::start_all`]).
pub struct ReadModels<S: Subscribe> {
    members: Vec<Box<dyn DynReadModel<S>>>,
}

impl<S: Subscribe> ReadModels<S> {
    /// No read models yet.
    #[must_use]
    pub fn new() -> Self {
        Self { members: Vec::new() }
    }

    /// Adds `read_model` to the group.
    #[must_use]
    pub fn with<T: ApplyInTransaction<S>>(mut self, read_model: T) -> Self {
        self.members.push(Box::new(read_model));
        self
    }
}

impl<S: Subscribe> Default for ReadModels<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Subscribe> fmt::Debug for ReadModels<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|member| member.name()))
            .finish()
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Copies an event of store `S`.
type CopyEvent<S> = fn(
    &StoredEvent<
        <S as crate::store::EventStore>::Id,
        <S as crate::store::EventStore>::Position,
        <S as crate::store::EventStore>::Metadata,
    >,
) -> StoredEvent<
    <S as crate::store::EventStore>::Id,
    <S as crate::store::EventStore>::Position,
    <S as crate::store::EventStore>::Metadata,
>;

/// [`ApplyInTransaction`] with boxed futures, so read models of different
/// types can run in one group.
trait DynReadModel<S: Subscribe>: Send + Sync {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &str;
    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>>;
    fn claim(
        &self,
        fence: Option<Fence>,
        head: Option<S::Position>,
    ) -> BoxFuture<'_, Result<Claim<S::Position>, BoxError>>;
    fn apply(
        &self,
        events: Batch<S>,
        from: Option<S::Position>,
        through: S::Position,
        fence: Option<Fence>,
    ) -> BoxFuture<'_, Result<Advance<S::Position>, BoxError>>;
    fn caught_up(&self, head: S::Position) -> BoxFuture<'_, Result<(), BoxError>>;
}

impl<S: Subscribe, T: ApplyInTransaction<S>> DynReadModel<S> for T {
    fn kind(&self) -> &'static str {
        ApplyInTransaction::kind(self)
    }

    fn name(&self) -> &str {
        ApplyInTransaction::name(self)
    }

    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        ApplyInTransaction::filters(self)
    }

    fn claim(
        &self,
        fence: Option<Fence>,
        head: Option<S::Position>,
    ) -> BoxFuture<'_, Result<Claim<S::Position>, BoxError>> {
        Box::pin(async move { ApplyInTransaction::claim(self, fence, head).await.map_err(boxed) })
    }

    fn apply(
        &self,
        events: Batch<S>,
        from: Option<S::Position>,
        through: S::Position,
        fence: Option<Fence>,
    ) -> BoxFuture<'_, Result<Advance<S::Position>, BoxError>> {
        Box::pin(async move {
            ApplyInTransaction::apply(self, events, from, through, fence)
                .await
                .map_err(boxed)
        })
    }

    fn caught_up(&self, head: S::Position) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { ApplyInTransaction::caught_up(self, head).await.map_err(boxed) })
    }
}

fn boxed(error: impl StdError + Send + Sync + 'static) -> BoxError {
    Box::new(error)
}

/// A read model kept current in the background: query it in its database;
/// wait for a position with [`wait_for`](Self::wait_for). Dropping it stops
/// the runner too.
#[derive(Debug)]
pub struct RunningReadModel<Pos> {
    name: &'static str,
    status: watch::Receiver<RunnerStatus<Pos>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunnerError>>,
}

impl<Pos: Copy + Ord + Send + Sync + 'static> RunningReadModel<Pos> {
    /// Where the runner is: `position` is the last position whose effects
    /// have committed.
    #[must_use]
    pub fn status(&self) -> RunnerStatus<Pos> {
        *self.status.borrow()
    }

    /// Waits until the effects of every consumed event up to `position`
    /// have committed (read your writes).
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] after `timeout`, [`WaitError::Stopped`] when
    /// the runner stopped first.
    pub async fn wait_for(&self, position: Pos, timeout: Duration) -> Result<(), WaitError> {
        wait_for_status(&self.status, position, timeout).await
    }

    /// Stops the runner (after committing the batch in hand).
    ///
    /// # Errors
    ///
    /// The error that stopped the runner earlier, if one did.
    pub async fn stop(self) -> Result<(), RunnerError> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(Err(RunnerError::Panicked(self.name)))
    }
}

/// The background task of a read-model runner.
struct Task<S: Subscribe> {
    store: S,
    members: Vec<Member<S>>,
    /// Copies an event for one member of several (`None`: one member).
    copy: Option<CopyEvent<S>>,
    /// Every member's filters.
    filters: Vec<EventFilter<S::Id, S::Position>>,
    status: watch::Sender<RunnerStatus<S::Position>>,
    /// Events read and not yet applied.
    batch: Batch<S>,
    /// When the first event of the batch in hand came.
    batch_started: Instant,
    batch_size: usize,
    linger: Duration,
    idle_checkpoint: Duration,
    behind_after: Duration,
    last_save: Instant,
    pace: Pace,
}

/// One read model of a runner.
struct Member<S: Subscribe> {
    model: Box<dyn DynReadModel<S>>,
    filters: Vec<EventFilter<S::Id, S::Position>>,
    /// The fence of its lease, once held.
    fence: Option<Fence>,
    /// Its checkpoint as last committed.
    saved: Option<S::Position>,
}

impl<S: Subscribe> Member<S>
where
    S::Id: PartialEq,
{
    /// Whether the member consumes `event` and has not applied it yet.
    fn wants(&self, event: &StoredEvent<S::Id, S::Position, S::Metadata>) -> bool {
        Some(event.position) > self.saved
            && self.filters.iter().any(|filter| {
                filter.matches(
                    &event.aggregate_kind,
                    &event.aggregate_id,
                    &event.kind,
                    &event.position,
                )
            })
    }
}

/// What ended a wait of the runner's loop.
enum Woken<P> {
    Stop,
    Lost,
    Linger,
    /// Nothing came for a while.
    Tick,
    Progress(P),
}

impl<S: Subscribe> Task<S>
where
    S::Id: PartialEq,
{
    async fn run<L: Lease>(mut self, lease: L, mut stop: watch::Receiver<bool>) -> Result<(), RunnerError> {
        let outcome = self.hold_and_follow(&lease, &mut stop).await;
        if let Err(error) = &outcome {
            report_stop(self.kind(), error);
        }
        self.status.send_modify(|status| {
            status.running = false;
            status.active = false;
        });
        outcome
    }

    /// The kind naming the runner: its first read model's.
    fn kind(&self) -> &'static str {
        self.members
            .first()
            .map_or("read model", |member| member.model.kind())
    }

    /// Takes every member's lease, in name order (so two groups sharing
    /// read models cannot each wait for the other's); `None` when a stop
    /// came first.
    async fn acquire_all<L: Lease>(
        &mut self,
        lease: &L,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Vec<L::Guard>>, RunnerError> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.sort_by(|a, b| self.members[*a].model.name().cmp(self.members[*b].model.name()));
        let mut guards: Vec<Option<L::Guard>> = (0..self.members.len()).map(|_| None).collect();
        for index in order {
            let member = &self.members[index];
            let acquired = {
                let stopped = Box::pin(stopped(stop));
                let acquire = Box::pin(lease.acquire(member.model.name()));
                match future::select(stopped, acquire).await {
                    Either::Left(((), _)) => return Ok(None),
                    Either::Right((acquired, _)) => acquired,
                }
            };
            let guard = acquired.map_err(|error| RunnerError::Lease(member.model.kind(), Box::new(error)))?;
            guards[index] = Some(guard);
        }
        Ok(Some(guards.into_iter().flatten().collect()))
    }

    async fn hold_and_follow<L: Lease>(
        &mut self,
        lease: &L,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let Some(mut guards) = self.acquire_all(lease, stop).await? else {
            return Ok(());
        };
        let head = self
            .store
            .head_position()
            .await
            .map_err(|error| RunnerError::Store(Box::new(error)))?;
        let fences: Vec<Option<Fence>> = guards.iter().map(LeaseGuard::fence).collect();
        for (member, fence) in self.members.iter_mut().zip(fences) {
            member.fence = fence;
            member.saved = match member.model.claim(member.fence, head).await {
                Ok(Claim::Claimed(checkpoint)) => checkpoint,
                Ok(Claim::Fenced(newer)) => return Err(RunnerError::Fenced(member.model.kind(), newer)),
                Err(error) => return Err(RunnerError::Checkpoint(error)),
            };
        }
        // The least advanced member sets where the scan starts.
        let checkpoint = self.members.iter().map(|member| member.saved).min().flatten();
        self.pace = Pace::new(self.behind_after);
        self.status.send_modify(|status| {
            status.position = checkpoint;
            status.started_from = checkpoint;
            status.active = true;
        });
        let name = self.kind();
        let mut follower = Follower::new(self.store.clone(), self.filters.clone(), checkpoint);
        loop {
            let woken = self.wait(&mut follower, stop, &mut guards).await;
            let lost = guards.iter().any(LeaseGuard::is_lost);
            match woken {
                Woken::Stop => {
                    if !lost {
                        self.flush(follower.position(), lost).await?;
                    }
                    return Ok(());
                }
                Woken::Lost => return Err(RunnerError::LeaseLost(name)),
                Woken::Linger => self.flush(follower.position(), lost).await?,
                Woken::Tick => self.pace.signal(name, &self.store, &self.status, false),
                Woken::Progress(None) => return Ok(()),
                Woken::Progress(Some(Err(error))) => {
                    return Err(match S::into_decode_error(error) {
                        Ok(decode) => RunnerError::Decode(Box::new(decode)),
                        Err(error) => RunnerError::Store(Box::new(error)),
                    });
                }
                Woken::Progress(Some(Ok(Progress::Event(event)))) => {
                    if self.batch.is_empty() {
                        self.batch_started = Instant::now();
                    }
                    self.batch.push(event);
                    while self.batch.len() < self.batch_size {
                        match follower.next_buffered() {
                            Some(event) => self.batch.push(event),
                            None => break,
                        }
                    }
                    // Commit once the batch is full, or once nothing more is
                    // waiting and the batch is not to linger.
                    if self.batch.len() >= self.batch_size
                        || (self.linger.is_zero() && !follower.has_buffered())
                    {
                        self.flush(follower.position(), lost).await?;
                    }
                }
                Woken::Progress(Some(Ok(Progress::CaughtUp(head)))) => {
                    let lingering = !self.batch.is_empty() && self.batch_started.elapsed() < self.linger;
                    if lingering {
                        // The linger's end commits the batch, through the head.
                        continue;
                    }
                    if !self.batch.is_empty() || self.last_save.elapsed() >= self.idle_checkpoint {
                        self.flush(Some(head), lost).await?;
                    }
                    self.pace.signal(name, &self.store, &self.status, true);
                    let active_for = self.pace.since.elapsed();
                    self.status.send_modify(|status| {
                        // With no batch in hand, every consumed event up to
                        // the head has committed.
                        status.position = status.position.max(Some(head));
                        status.head = status.head.max(Some(head));
                        status.caught_up = true;
                        status.active_for = active_for;
                    });
                    for member in &self.members {
                        member
                            .model
                            .caught_up(head)
                            .await
                            .map_err(|error| RunnerError::Projection(member.model.kind(), error))?;
                    }
                }
            }
        }
    }

    /// Waits for the next thing to do: a stop, a lease lost, the end of a
    /// lingering batch, a tick, or the follower's next report.
    async fn wait<G: LeaseGuard>(
        &self,
        follower: &mut Follower<S>,
        stop: &mut watch::Receiver<bool>,
        guards: &mut [G],
    ) -> Woken<Option<Result<Progress<S::Id, S::Position, S::Metadata>, S::Error>>> {
        let linger = if self.batch.is_empty() {
            Either::Left(future::pending::<()>())
        } else {
            Either::Right(tokio::time::sleep_until(self.batch_started + self.linger))
        };
        let losing = future::select_all(guards.iter_mut().map(|guard| Box::pin(guard.lost())));
        let (stopping, lingering) = (pin!(stopped(stop)), pin!(linger));
        let tick = pin!(tokio::time::sleep(Pace::HEAD_EVERY));
        let interrupted = pin!(future::select(
            future::select(future::select(stopping, losing), lingering),
            tick
        ));
        // Cancel-safe: `Follower::next` loses nothing when dropped.
        match future::select(interrupted, pin!(follower.next())).await {
            Either::Left((Either::Left((Either::Left((Either::Left(_), _)), _)), _)) => Woken::Stop,
            Either::Left((Either::Left((Either::Left((Either::Right(_), _)), _)), _)) => Woken::Lost,
            Either::Left((Either::Left((Either::Right(_), _)), _)) => Woken::Linger,
            Either::Left((Either::Right(_), _)) => Woken::Tick,
            Either::Right((progress, _)) => Woken::Progress(progress),
        }
    }

    /// Applies the batch in hand and advances the checkpoints to `through`
    /// (the follower's position): one transaction per read model, each
    /// with the events it consumes and has not applied yet. `lost` is
    /// whether a lease is known to be lost: then nothing is tried.
    async fn flush(&mut self, through: Option<S::Position>, lost: bool) -> Result<(), RunnerError> {
        let name = self.kind();
        let newest = self.batch.last().map(|event| event.position);
        let Some(through) = through.max(newest) else {
            return Ok(());
        };
        if self.batch.is_empty() && self.members.iter().all(|member| member.saved >= Some(through)) {
            return Ok(());
        }
        if lost {
            return Err(RunnerError::LeaseLost(name));
        }
        let mut events = std::mem::take(&mut self.batch);
        let count = events.len() as u64;
        let copy = self.copy.filter(|_| self.members.len() > 1);
        for member in &mut self.members {
            if member.saved >= Some(through) {
                // Ahead of the scan (a group rebuilding a newer member).
                continue;
            }
            let mine = match copy {
                Some(copy) => events
                    .iter()
                    .filter(|event| member.wants(event))
                    .map(copy)
                    .collect(),
                // Alone: the follower selected exactly this member's events.
                None => std::mem::take(&mut events),
            };
            let kind = member.model.kind();
            match member
                .model
                .apply(mine, member.saved, through, member.fence)
                .await
            {
                Ok(Advance::Saved) => member.saved = Some(through),
                Ok(Advance::Fenced(newer)) => return Err(RunnerError::Fenced(kind, newer)),
                Ok(Advance::Behind(_)) => return Err(RunnerError::CheckpointAhead(kind)),
                Err(error) => return Err(RunnerError::Projection(kind, error)),
            }
        }
        self.last_save = Instant::now();
        let active_for = self.pace.since.elapsed();
        self.status.send_modify(|status| {
            status.position = status.position.max(Some(through));
            status.applied += count;
            status.active_for = active_for;
        });
        self.pace.look_at_head(name, &self.store, &self.status).await
    }
}

//! Keeping a projection current: the [`ProjectionRunner`].
//!
//! A runner follows the events a projection declares, applies them as they
//! commit, and saves its position in a [`CheckpointStore`] so that a
//! restart resumes where it stopped. Delivery is at least once: what was
//! applied after the last saved checkpoint is applied again after a crash
//! (see [`checkpoint`](crate::checkpoint) on idempotent apply). For read
//! models in the store's database, [`ReadModelRunner`] is exactly once: it
//! applies and checkpoints each batch in one transaction.
//!
//! Several application servers can start a runner for the same projection:
//! with a [`Lease`] (the PostgreSQL store provides one) only the holder
//! applies events, the others wait, and one of them takes over when the
//! holder's lease is lost.
//!
//! A holder that lost its lease without knowing it yet (its process
//! paused, its thread blocked in `apply`) cannot move the checkpoint: the
//! runner claims the checkpoint with its lease's [`Fence`] and advances it
//! with that fence, so the checkpoint store refuses the old holder's saves
//! ([`RunnerError::Fenced`]) and a checkpoint never moves backwards (see
//! [fencing](crate::checkpoint#fencing)). The runner also checks
//! [`LeaseGuard::is_lost`] before each event, so it stops applying as soon
//! as it can tell.
//!
//! ```
//! # use std::time::Duration;
//! # use serde::{Deserialize, Serialize};
//! # use sourcery_core::concurrency::Unchecked;
//! # use sourcery_core::event::DomainEvent;
//! # use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
//! # use sourcery_core::store::{EventStore, inmemory};
//! # #[derive(Debug, Serialize, Deserialize)]
//! # struct Sold { amount: u64 }
//! # impl DomainEvent for Sold { const KIND: &'static str = "shop.sold"; }
//! #[derive(Debug, Default)]
//! struct Revenue { total: u64 }
//! # impl Projection for Revenue {
//! #     const KIND: &'static str = "revenue";
//! #     type Id = String;
//! #     type Metadata = ();
//! #     fn declare<S: EventStore<Id = String, Metadata = ()>>(e: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self> { e.event::<Sold>() }
//! # }
//! # impl ApplyProjection<Sold> for Revenue {
//! #     fn apply_projection(&mut self, _: &String, e: &Sold, _: &()) { self.total += e.amount; }
//! # }
//! use sourcery_core::checkpoint;
//! use sourcery_core::runner::ProjectionRunner;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let store = inmemory::Store::<String, ()>::new();
//! let checkpoints = checkpoint::inmemory::CheckpointStore::new();
//! let revenue = ProjectionRunner::new(store.clone(), checkpoints.clone())
//!     .start(Revenue::default())?;
//!
//! let mut tx = store.begin::<Unchecked>("shop", "s1".to_string(), None);
//! tx.append(Sold { amount: 30 }, ())?;
//! let written = tx.commit().await?.expect("one event");
//!
//! // Read your write: wait until the projection has applied it.
//! revenue.wait_for(written.last_position, Duration::from_secs(5)).await?;
//! assert_eq!(revenue.read(|r| r.total), 30);
//! let revenue = revenue.stop().await?;
//! assert_eq!(revenue.total, 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::{Advance, CheckpointStore, Claim, Fence};
use crate::projection::{Projection, ProjectionEvents, ProjectionFor};
use crate::store::StoredEvent;
use crate::subscription::{Follower, Progress, Stall, Subscribe};

pub mod read_model;

pub use read_model::{ApplyInTransaction, ReadModelRunner, RunningReadModel};

/// Starts [`RunningProjection`]s over one store and one checkpoint store.
#[derive(Debug, Clone)]
pub struct ProjectionRunner<S, K, L = NoLease> {
    store: S,
    checkpoints: K,
    lease: L,
    checkpointing: Checkpointing,
}

/// How often a runner saves its checkpoint, and when it is behind.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointing {
    pub(crate) every_events: NonZeroUsize,
    pub(crate) every_interval: Duration,
    pub(crate) behind_after: Duration,
}

impl Checkpointing {
    /// Every 100 events or every second; behind after 10 s.
    pub(crate) fn new() -> Self {
        Self {
            every_events: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
            every_interval: Duration::from_secs(1),
            behind_after: Duration::from_secs(10),
        }
    }
}

/// Makes sure only one runner per projection applies events, across
/// processes.
pub trait Lease: Send + Sync + 'static {
    /// Held while the lease is; dropping it releases the lease.
    type Guard: LeaseGuard;
    /// What goes wrong while acquiring.
    type Error: StdError + Send + Sync + 'static;

    /// Waits until this process holds the lease `name`.
    fn acquire<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Future<Output = Result<Self::Guard, Self::Error>> + Send + 'a;
}

/// A held [`Lease`].
pub trait LeaseGuard: Send + 'static {
    /// Resolves when the lease is lost (for example, its database
    /// connection died): another runner may take over from then on.
    ///
    /// The runner calls it afresh between events and drops the future when
    /// an event comes first, so it must be cancel-safe (watch a channel, do
    /// not consume a message).
    fn lost(&mut self) -> impl Future<Output = ()> + Send + '_;

    /// Whether the lease is known to be lost, now: checked before each
    /// event, so it must not wait.
    fn is_lost(&self) -> bool;

    /// This holder's fencing token: higher than every earlier holder's of
    /// the same lease name, so that checkpoint stores can refuse an old
    /// holder's writes. `None` for no coordination ([`NoLease`]): then
    /// checkpoints are only kept from moving backwards.
    fn fence(&self) -> Option<Fence>;
}

/// No coordination between processes: for a single application server.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLease;

impl Lease for NoLease {
    type Guard = NoLease;
    type Error = std::convert::Infallible;

    async fn acquire<'a>(&'a self, _: &'a str) -> Result<NoLease, Self::Error> {
        Ok(NoLease)
    }
}

impl LeaseGuard for NoLease {
    async fn lost(&mut self) {
        future::pending::<()>().await;
    }

    fn is_lost(&self) -> bool {
        false
    }

    fn fence(&self) -> Option<Fence> {
        None
    }
}

/// Why a runner stopped, or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The event store failed.
    #[error("the event store failed")]
    Store(#[source] Box<dyn StdError + Send + Sync>),
    /// The checkpoint store failed.
    #[error("the checkpoint store failed")]
    Checkpoint(#[source] Box<dyn StdError + Send + Sync>),
    /// An event the projection consumes does not decode: a
    /// [`DecodeError`](crate::event::DecodeError) of the store's id and position types (downcast the
    /// source to read them).
    #[error(transparent)]
    Decode(Box<dyn StdError + Send + Sync>),
    /// The projection consumes no events: there is nothing to run.
    #[error("the projection `{0}` declares no events")]
    NoEvents(&'static str),
    /// The lease could not be acquired.
    #[error("the lease for `{0}` could not be acquired")]
    Lease(&'static str, #[source] Box<dyn StdError + Send + Sync>),
    /// The lease was lost while running: another runner may have taken
    /// over. Start again to wait for the lease.
    #[error("the lease for `{0}` was lost")]
    LeaseLost(&'static str),
    /// The checkpoint store refused this runner's claim or save: a newer
    /// holder of the lease (with the fence given) runs the projection.
    /// Nothing was written.
    #[error("the checkpoint of `{0}` is held by a newer runner ({1})")]
    Fenced(&'static str, Fence),
    /// The checkpoint store refused to move the checkpoint backwards: it is
    /// ahead of this runner, so another runner applies the projection too
    /// (give both a [`Lease`]). Nothing was written.
    #[error("the saved checkpoint of `{0}` is ahead of this runner: another runner applies it")]
    CheckpointAhead(&'static str),
    /// The runner's task panicked (in the projection's apply).
    #[error("the runner of `{0}` panicked")]
    Panicked(&'static str),
    /// A read model's transaction failed: its database, an event that
    /// does not decode, or its handler (the source names the event).
    /// Nothing of the batch was committed.
    #[error("the read model `{0}` failed to apply a batch")]
    Projection(&'static str, #[source] Box<dyn StdError + Send + Sync>),
    /// A reactor's reaction failed every attempt and the runner was told to
    /// stop ([`OnFailure::Stop`](crate::reactor::OnFailure::Stop)), or its
    /// reactor store failed. The event is delivered again on restart.
    #[error("the reactor `{0}` failed")]
    Reaction(&'static str, #[source] Box<dyn StdError + Send + Sync>),
}

/// Why [`RunningProjection::wait_for`] returned without the position.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The position was not reached in time.
    #[error("the projection did not reach the position within {0:?}")]
    Timeout(Duration),
    /// The runner stopped (or failed) before reaching it.
    #[error("the projection runner stopped before reaching the position")]
    Stopped,
}

/// Where a runner is, and how fast it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent signals, read one by one"
)]
pub struct RunnerStatus<Pos> {
    /// Every consumed event at or below this position has been applied
    /// (for a read model: committed).
    pub position: Option<Pos>,
    /// Whether the runner had read the whole log at its last report (no lag
    /// then); `false` while catching up.
    pub caught_up: bool,
    /// Whether the runner holds its lease and applies events (a standby
    /// runner waits for the lease with `active: false`).
    pub active: bool,
    /// Whether the runner is still running.
    pub running: bool,
    /// The head of the log at the runner's last look (at each catch-up,
    /// and about once a second while behind).
    pub head: Option<Pos>,
    /// Where the runner started applying, when it got its lease (its
    /// checkpoint then).
    pub started_from: Option<Pos>,
    /// Events applied since it got its lease.
    pub applied: u64,
    /// How long it has been active.
    pub active_for: Duration,
    /// Whether it fell behind: active, and not caught up with the log for
    /// longer than its `behind_after` threshold (default 10 s).
    pub behind: bool,
    /// What holds the log's head back, when the store can tell (a
    /// transaction left open on PostgreSQL): the runner cannot advance
    /// past it until it ends.
    pub stalled: Option<Stall>,
}

impl<Pos> RunnerStatus<Pos> {
    pub(crate) fn starting() -> Self {
        Self {
            position: None,
            caught_up: false,
            active: false,
            running: true,
            head: None,
            started_from: None,
            applied: 0,
            active_for: Duration::ZERO,
            behind: false,
            stalled: None,
        }
    }

    /// Events applied per second since the runner got its lease.
    #[must_use]
    pub fn events_per_second(&self) -> f64 {
        per_second(self.applied, self.active_for)
    }
}

impl RunnerStatus<i64> {
    /// How many positions of the log are left to read before the head (an
    /// upper bound on the events left: not every position holds an event
    /// the runner consumes).
    #[must_use]
    pub fn positions_behind(&self) -> Option<u64> {
        let head = self.head?;
        let position = self.position.unwrap_or(0);
        u64::try_from(head.saturating_sub(position)).ok()
    }

    /// The time left to reach the head at the pace of the positions read
    /// since the runner started; `None` before it has moved.
    #[must_use]
    pub fn estimated_time_left(&self) -> Option<Duration> {
        let behind = self.positions_behind()?;
        let moved = u64::try_from(self.position?.saturating_sub(self.started_from.unwrap_or(0))).ok()?;
        let pace = per_second(moved, self.active_for);
        #[expect(clippy::cast_precision_loss, reason = "an estimate")]
        let seconds = behind as f64 / pace;
        (pace > 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds))
    }
}

/// `count` per second over `elapsed`.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let count = count as f64;
        count / seconds
    } else {
        0.0
    }
}

impl<S, K> ProjectionRunner<S, K>
where
    S: Subscribe,
    K: CheckpointStore<S::Position>,
{
    /// A runner over `store`, saving checkpoints in `checkpoints` (every 100
    /// events or every second by default, and when it stops).
    pub fn new(store: S, checkpoints: K) -> Self {
        Self {
            store,
            checkpoints,
            lease: NoLease,
            checkpointing: Checkpointing::new(),
        }
    }
}

impl<S, K, L> ProjectionRunner<S, K, L>
where
    S: Subscribe,
    K: CheckpointStore<S::Position>,
    L: Lease,
{
    /// Runs only while holding `lease` for the projection: a runner started
    /// without it waits (its status says `active: false`) and applies
    /// nothing until it gets the lease.
    #[must_use]
    pub fn with_lease<L2: Lease>(self, lease: L2) -> ProjectionRunner<S, K, L2> {
        ProjectionRunner {
            store: self.store,
            checkpoints: self.checkpoints,
            lease,
            checkpointing: self.checkpointing,
        }
    }

    /// Saves the checkpoint after this many applied events at most.
    #[must_use]
    pub fn checkpoint_every(mut self, events: NonZeroUsize) -> Self {
        self.checkpointing.every_events = events;
        self
    }

    /// Saves the checkpoint at least this often while events arrive.
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpointing.every_interval = interval;
        self
    }

    /// After how long without catching up with the log the runner reports
    /// that it fell behind ([`RunnerStatus::behind`], and a `tracing`
    /// warning); default 10 s.
    #[must_use]
    pub fn behind_after(mut self, threshold: Duration) -> Self {
        self.checkpointing.behind_after = threshold;
        self
    }

    /// Starts keeping `projection` current with the events it declares:
    /// once it holds the lease, it resumes after the projection's checkpoint.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoEvents`] when the projection declares none. Later
    /// failures (reading the checkpoint, the store) stop the runner and come
    /// back from [`RunningProjection::stop`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the runner is a Tokio task).
    pub fn start<P>(self, projection: P) -> Result<RunningProjection<S::Position, P>, RunnerError>
    where
        P: ProjectionFor<S> + Sync,
        S::Id: PartialEq,
    {
        self.start_with(projection, ProjectionEvents::declared())
    }

    /// Starts keeping `projection` current with the events in `events`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with<P>(
        self,
        projection: P,
        events: ProjectionEvents<S, P>,
    ) -> Result<RunningProjection<S::Position, P>, RunnerError>
    where
        P: ProjectionFor<S> + Sync,
        S::Id: PartialEq,
    {
        if events.is_empty() {
            return Err(RunnerError::NoEvents(P::KIND));
        }
        let state = Arc::new(RwLock::new(projection));
        let (status, watch_status) = watch::channel(RunnerStatus::starting());
        let (stop, stop_requested) = watch::channel(false);
        let consumer = ProjectionConsumer {
            events,
            state: Arc::clone(&state),
        };
        let task = Task::new(
            self.store,
            self.checkpoints,
            consumer,
            status,
            &self.checkpointing,
        );
        let handle = tokio::spawn(task.run(self.lease, stop_requested));
        Ok(RunningProjection {
            state,
            status: watch_status,
            stop,
            task: handle,
        })
    }
}

/// A projection kept current in the background. Read it with
/// [`read`](Self::read); stop it with [`stop`](Self::stop). Dropping it
/// stops the background task too (which still saves its checkpoint).
pub struct RunningProjection<Pos, P> {
    state: Arc<RwLock<P>>,
    status: watch::Receiver<RunnerStatus<Pos>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunnerError>>,
}

impl<Pos: Copy + Ord + Send + Sync + 'static, P: Projection> RunningProjection<Pos, P> {
    /// Reads the projection's current state.
    pub fn read<R>(&self, read: impl FnOnce(&P) -> R) -> R {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        read(&state)
    }

    /// Where the runner is.
    #[must_use]
    pub fn status(&self) -> RunnerStatus<Pos> {
        *self.status.borrow()
    }

    /// Waits until the runner has processed the log up to `position` (for
    /// example the `last_position` of a command), whether or not the event
    /// there is one the projection consumes.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] after `timeout`, [`WaitError::Stopped`] when
    /// the runner stopped first.
    pub async fn wait_for(&self, position: Pos, timeout: Duration) -> Result<(), WaitError> {
        wait_for_status(&self.status, position, timeout).await
    }

    /// Stops the runner, saves its checkpoint and hands back the projection.
    ///
    /// # Errors
    ///
    /// The error that stopped the runner earlier, if one did, or a failure
    /// to save the final checkpoint.
    pub async fn stop(self) -> Result<P, RunnerError> {
        let _ = self.stop.send(true);
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(_) => Err(RunnerError::Panicked(P::KIND)),
        };
        outcome?;
        match Arc::try_unwrap(self.state) {
            Ok(state) => Ok(state.into_inner().unwrap_or_else(PoisonError::into_inner)),
            Err(_) => Err(RunnerError::Panicked(P::KIND)),
        }
    }
}

impl<Pos: fmt::Debug, P> fmt::Debug for RunningProjection<Pos, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningProjection")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// What a checkpointed, leased runner feeds events to: a projection in
/// memory, a reactor. The runner's loop ([`Task`]) is written once; each
/// consumer says what it wants and what it does with an event.
pub(crate) trait Consumer<S: Subscribe>: Send + 'static {
    /// The name its lease and checkpoint are kept under.
    fn name(&self) -> &'static str;

    /// The events it consumes.
    fn filters(&self) -> Vec<crate::store::EventFilter<S::Id, S::Position>>;

    /// Called once the lease is held, before the first event, with the
    /// holder's fence.
    fn activated(&mut self, fence: Option<Fence>) -> impl Future<Output = Result<(), RunnerError>> + Send {
        let _ = fence;
        future::ready(Ok(()))
    }

    /// Consumes one event. `Ok(false)`: interrupted by a stop before it was
    /// done (the event is not counted; a restart delivers it again).
    fn consume<G: LeaseGuard>(
        &mut self,
        store: &S,
        event: StoredEvent<S::Id, S::Position, S::Metadata>,
        guard: &mut G,
    ) -> impl Future<Output = Result<bool, RunnerError>> + Send;

    /// Whether the consumer has work of its own due now (checked before
    /// each event, so that a long catch-up does not hold it back).
    fn is_due(&self) -> bool {
        false
    }

    /// Resolves when the consumer has work of its own (a timer due);
    /// pending by default. Must be cancel-safe.
    fn due(&mut self) -> impl Future<Output = ()> + Send + '_ {
        future::pending()
    }

    /// Does the work [`due`](Self::due) announced, and whatever is due at a
    /// tick of the runner.
    fn run_due<G: LeaseGuard>(
        &mut self,
        guard: &mut G,
    ) -> impl Future<Output = Result<(), RunnerError>> + Send {
        let _ = guard;
        future::ready(Ok(()))
    }
}

/// An in-memory projection as a [`Consumer`].
struct ProjectionConsumer<S: Subscribe, P> {
    events: ProjectionEvents<S, P>,
    state: Arc<RwLock<P>>,
}

impl<S, P> Consumer<S> for ProjectionConsumer<S, P>
where
    S: Subscribe,
    S::Id: PartialEq,
    P: Projection<Id = S::Id, Metadata = S::Metadata> + Sync,
{
    fn name(&self) -> &'static str {
        P::KIND
    }

    fn filters(&self) -> Vec<crate::store::EventFilter<S::Id, S::Position>> {
        self.events.filters()
    }

    async fn consume<G: LeaseGuard>(
        &mut self,
        store: &S,
        event: StoredEvent<S::Id, S::Position, S::Metadata>,
        _: &mut G,
    ) -> Result<bool, RunnerError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        self.events
            .apply(&mut state, &event, store.codec())
            .map_err(|error| RunnerError::Decode(Box::new(error)))?;
        Ok(true)
    }
}

/// The background task of a runner: holds the lease, follows the log,
/// feeds the consumer and saves the checkpoint.
pub(crate) struct Task<S: Subscribe, K, C> {
    pub(crate) store: S,
    pub(crate) checkpoints: K,
    pub(crate) consumer: C,
    pub(crate) status: watch::Sender<RunnerStatus<S::Position>>,
    pub(crate) saved: Option<S::Position>,
    /// The fence of the lease held, once held.
    pub(crate) fence: Option<Fence>,
    pub(crate) unsaved: usize,
    pub(crate) pace: Pace,
    pub(crate) last_save: Instant,
    pub(crate) every_events: usize,
    pub(crate) every_interval: Duration,
    pub(crate) behind_after: Duration,
}

/// What ended a wait of the runner's loop.
enum Woken<P> {
    Stop,
    Lost,
    /// The consumer has work of its own.
    Due,
    /// Nothing came for a while.
    Tick,
    Progress(P),
}

impl<S, K, C> Task<S, K, C>
where
    S: Subscribe,
    S::Id: PartialEq,
    K: CheckpointStore<S::Position>,
    C: Consumer<S>,
{
    /// A task for `consumer`, configured as `config` says.
    pub(crate) fn new(
        store: S,
        checkpoints: K,
        consumer: C,
        status: watch::Sender<RunnerStatus<S::Position>>,
        config: &Checkpointing,
    ) -> Self {
        Self {
            store,
            checkpoints,
            consumer,
            status,
            saved: None,
            fence: None,
            unsaved: 0,
            last_save: Instant::now(),
            pace: Pace::new(config.behind_after),
            every_events: config.every_events.get(),
            every_interval: config.every_interval,
            behind_after: config.behind_after,
        }
    }

    pub(crate) async fn run<L: Lease>(
        mut self,
        lease: L,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let name = self.consumer.name();
        let outcome = self.hold_and_follow(&lease, &mut stop).await;
        if let Err(error) = &outcome {
            report_stop(name, error);
        }
        // After losing the lease another runner may be ahead already: saving
        // now could move its checkpoint back.
        let holds_lease = self.status.borrow().active
            && !matches!(
                outcome,
                Err(RunnerError::LeaseLost(_) | RunnerError::Fenced(..) | RunnerError::CheckpointAhead(_))
            );
        let saved = if holds_lease { self.save().await } else { Ok(()) };
        self.status.send_modify(|status| {
            status.running = false;
            status.active = false;
        });
        outcome.and(saved)
    }

    /// Waits for the lease, then follows the log until stopped, failed or
    /// the lease is lost.
    async fn hold_and_follow<L: Lease>(
        &mut self,
        lease: &L,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let name = self.consumer.name();
        let acquired = {
            let stopped = Box::pin(stopped(stop));
            let acquire = Box::pin(lease.acquire(name));
            match future::select(stopped, acquire).await {
                Either::Left(((), _)) => return Ok(()),
                Either::Right((acquired, _)) => acquired,
            }
        };
        let mut guard = acquired.map_err(|error| RunnerError::Lease(name, Box::new(error)))?;
        let checkpoint = self.claim(&mut guard).await?;
        self.saved = checkpoint;
        self.pace = Pace::new(self.behind_after);
        self.consumer.activated(self.fence).await?;
        self.status.send_modify(|status| {
            status.position = checkpoint;
            status.started_from = checkpoint;
            status.active = true;
        });
        let mut follower = Follower::new(self.store.clone(), self.consumer.filters(), checkpoint);
        loop {
            let stopping = *stop.borrow() || stop.has_changed().is_err();
            let woken = if follower.has_buffered() && !stopping {
                // Read already: no wait, nothing to race against (the lease
                // is checked before the event is consumed).
                Woken::Progress(follower.next().await)
            } else {
                self.wait(&mut follower, stop, &mut guard).await
            };
            let next = match woken {
                Woken::Stop => return Ok(()),
                Woken::Lost => return Err(RunnerError::LeaseLost(name)),
                Woken::Due => {
                    if guard.is_lost() {
                        return Err(RunnerError::LeaseLost(name));
                    }
                    self.consumer.run_due(&mut guard).await?;
                    continue;
                }
                Woken::Tick => {
                    // Nothing came for a while: the signals still move (a
                    // stall, falling behind), and the consumer's own work.
                    self.pace.signal(name, &self.store, &self.status, false);
                    if guard.is_lost() {
                        return Err(RunnerError::LeaseLost(name));
                    }
                    self.consumer.run_due(&mut guard).await?;
                    continue;
                }
                Woken::Progress(next) => next,
            };
            match next {
                None => return Ok(()),
                Some(Err(error)) => {
                    return Err(match S::into_decode_error(error) {
                        Ok(decode) => RunnerError::Decode(Box::new(decode)),
                        Err(error) => RunnerError::Store(Box::new(error)),
                    });
                }
                Some(Ok(Progress::Event(event))) => {
                    if guard.is_lost() {
                        return Err(RunnerError::LeaseLost(name));
                    }
                    if self.consumer.is_due() {
                        self.consumer.run_due(&mut guard).await?;
                    }
                    let position = event.position;
                    if !self.consumer.consume(&self.store, event, &mut guard).await? {
                        return Ok(());
                    }
                    self.unsaved += 1;
                    let active_for = self.pace.since.elapsed();
                    self.status.send_modify(|status| {
                        status.position = Some(position);
                        status.applied += 1;
                        status.active_for = active_for;
                    });
                    self.pace.look_at_head(name, &self.store, &self.status).await?;
                    if self.unsaved >= self.every_events {
                        self.save().await?;
                    }
                }
                Some(Ok(Progress::CaughtUp(head))) => {
                    self.pace.signal(name, &self.store, &self.status, true);
                    let active_for = self.pace.since.elapsed();
                    self.status.send_modify(|status| {
                        status.position = status.position.max(Some(head));
                        status.head = status.head.max(Some(head));
                        status.caught_up = true;
                        status.active_for = active_for;
                    });
                    if self.last_save.elapsed() >= self.every_interval || self.unsaved >= self.every_events {
                        self.save().await?;
                    }
                }
            }
        }
    }

    /// Reads the checkpoint once the lease is held (a previous holder may
    /// have moved it), claiming it with the lease's fence: that fences the
    /// previous holder off.
    async fn claim<G: LeaseGuard>(&mut self, guard: &mut G) -> Result<Option<S::Position>, RunnerError> {
        let name = self.consumer.name();
        self.fence = guard.fence();
        match self.fence {
            Some(fence) => match self.checkpoints.claim(name, fence).await {
                Ok(Claim::Claimed(checkpoint)) => Ok(checkpoint),
                Ok(Claim::Fenced(newer)) => Err(RunnerError::Fenced(name, newer)),
                Err(error) => Err(RunnerError::Checkpoint(Box::new(error))),
            },
            None => self
                .checkpoints
                .load(name)
                .await
                .map_err(|error| RunnerError::Checkpoint(Box::new(error))),
        }
    }

    /// Waits for the next thing to do: a stop, the lease lost, the
    /// consumer's own work, a tick, or the follower's next report.
    async fn wait<G: LeaseGuard>(
        &mut self,
        follower: &mut Follower<S>,
        stop: &mut watch::Receiver<bool>,
        guard: &mut G,
    ) -> Woken<Option<Result<Progress<S::Id, S::Position, S::Metadata>, S::Error>>> {
        let (stopping, losing) = (pin!(stopped(stop)), pin!(guard.lost()));
        let interrupted = pin!(future::select(stopping, losing));
        let tick = pin!(tokio::time::sleep(Pace::HEAD_EVERY));
        let due = pin!(self.consumer.due());
        // Cancel-safe: `Follower::next` loses nothing when dropped.
        let progress = pin!(follower.next());
        match future::select(future::select(interrupted, future::select(due, tick)), progress).await {
            Either::Left((Either::Left((Either::Left(_), _)), _)) => Woken::Stop,
            Either::Left((Either::Left((Either::Right(_), _)), _)) => Woken::Lost,
            Either::Left((Either::Right((Either::Left(_), _)), _)) => Woken::Due,
            Either::Left((Either::Right((Either::Right(_), _)), _)) => Woken::Tick,
            Either::Right((progress, _)) => Woken::Progress(progress),
        }
    }

    async fn save(&mut self) -> Result<(), RunnerError> {
        let name = self.consumer.name();
        let position = self.status.borrow().position;
        if let Some(position) = position
            && self.saved != Some(position)
        {
            let advanced = self
                .checkpoints
                .advance(name, position, self.fence)
                .await
                .map_err(|error| RunnerError::Checkpoint(Box::new(error)))?;
            match advanced {
                Advance::Saved => {}
                Advance::Fenced(newer) => return Err(RunnerError::Fenced(name, newer)),
                Advance::Behind(_) => return Err(RunnerError::CheckpointAhead(name)),
            }
            self.saved = Some(position);
        }
        self.unsaved = 0;
        self.last_save = Instant::now();
        Ok(())
    }
}

/// When a runner became active, when it last read the log's head, and
/// when it was last caught up.
pub(crate) struct Pace {
    since: Instant,
    head_read: Instant,
    caught_up_at: Instant,
    behind_after: Duration,
    /// Whether nothing came since the runner last caught up.
    idle: bool,
}

impl Pace {
    /// How often a runner that is behind reads the head, for its status.
    const HEAD_EVERY: Duration = Duration::from_secs(1);

    fn new(behind_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            since: now,
            head_read: now,
            caught_up_at: now,
            behind_after,
            idle: false,
        }
    }

    /// Updates the signals of `status` after a step of the runner of
    /// `projection` (`caught_up`: the step reached the head), and logs
    /// their changes.
    fn signal<S: Subscribe>(
        &mut self,
        projection: &str,
        store: &S,
        status: &watch::Sender<RunnerStatus<S::Position>>,
        caught_up: bool,
    ) {
        if caught_up {
            self.caught_up_at = Instant::now();
            self.idle = true;
        }
        // Idle at the head is not behind: only a runner with events to read
        // can be.
        let behind = !caught_up && !self.idle && self.caught_up_at.elapsed() >= self.behind_after;
        let stalled = store.stall();
        let active_for = self.since.elapsed();
        let before = *status.borrow();
        status.send_modify(|status| {
            status.behind = behind;
            status.stalled = stalled;
            status.active_for = active_for;
        });
        if caught_up && (before.behind || !before.caught_up) {
            tracing::info!(projection, position = ?before.position, "sourcery: the runner caught up with the log");
        }
        if behind && !before.behind {
            tracing::warn!(
                projection,
                position = ?before.position,
                head = ?before.head,
                behind_for = ?self.caught_up_at.elapsed(),
                "sourcery: the runner fell behind the log"
            );
        }
        if let Some(stall) = stalled
            && before.stalled.is_none()
        {
            tracing::warn!(
                projection,
                pid = ?stall.pid,
                running_for = ?stall.running_for,
                "sourcery: the runner is stalled: a transaction holds the log's head back"
            );
        }
    }

    /// Reads the head into `status` when the last read is a while ago,
    /// and updates the runner's signals then.
    async fn look_at_head<S: Subscribe>(
        &mut self,
        projection: &str,
        store: &S,
        status: &watch::Sender<RunnerStatus<S::Position>>,
    ) -> Result<(), RunnerError> {
        self.idle = false;
        if self.head_read.elapsed() < Self::HEAD_EVERY {
            return Ok(());
        }
        self.signal(projection, store, status, false);
        self.head_read = Instant::now();
        let head = store
            .head_position()
            .await
            .map_err(|error| RunnerError::Store(Box::new(error)))?;
        status.send_modify(|status| status.head = status.head.max(head));
        Ok(())
    }
}

/// Logs why the runner of `projection` stopped, with the chain of causes
/// (the event that failed, when one did).
fn report_stop(projection: &str, error: &RunnerError) {
    let mut causes = error.to_string();
    let mut source = StdError::source(error);
    while let Some(cause) = source {
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(projection, error = %causes, "sourcery: the runner stopped");
}

/// Waits until `status` reports `position`, the runner stopped, or
/// `timeout` passed.
pub(crate) async fn wait_for_status<Pos: Copy + Ord>(
    status: &watch::Receiver<RunnerStatus<Pos>>,
    position: Pos,
    timeout: Duration,
) -> Result<(), WaitError> {
    let mut status = status.clone();
    let reached = status.wait_for(|status| status.position >= Some(position) || !status.running);
    match tokio::time::timeout(timeout, reached).await {
        Err(_) => Err(WaitError::Timeout(timeout)),
        Ok(Ok(status)) if status.position >= Some(position) => Ok(()),
        Ok(_) => Err(WaitError::Stopped),
    }
}

/// Resolves once a stop is requested (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // `wait_for` returns an error when the sender (the handle) is dropped:
    // that is a stop too.
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::{Pace, RunnerStatus};
    use crate::store::inmemory;

    #[test]
    fn a_runner_with_events_to_read_past_its_threshold_is_behind_and_an_idle_one_is_not() {
        let store = inmemory::Store::<String, ()>::new();
        let (status, watch_status) = watch::channel(RunnerStatus::<u64>::starting());
        let mut pace = Pace::new(Duration::ZERO);

        // Reading events, not caught up since it started: behind.
        pace.idle = false;
        pace.signal("p", &store, &status, false);
        assert!(watch_status.borrow().behind);
        // It catches up: no longer behind.
        pace.signal("p", &store, &status, true);
        assert!(!watch_status.borrow().behind);
        // Nothing came since: idle at the head, not behind.
        pace.signal("p", &store, &status, false);
        assert!(!watch_status.borrow().behind);
        assert_eq!(
            watch_status.borrow().stalled,
            None,
            "the in-memory store never stalls"
        );

        // With a threshold not reached yet, reading is not behind.
        let mut patient = Pace::new(Duration::from_secs(3600));
        patient.idle = false;
        patient.signal("p", &store, &status, false);
        assert!(!watch_status.borrow().behind);
    }
}

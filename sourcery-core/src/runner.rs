//! Keeping a projection current: the [`ProjectionRunner`].
//!
//! A runner follows the events a projection declares, applies them as they
//! commit, and saves its position in a [`CheckpointStore`] so that a
//! restart resumes where it stopped. Delivery is at least once: what was
//! applied after the last saved checkpoint is applied again after a crash
//! (see [`checkpoint`](crate::checkpoint) on idempotent apply).
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
//!     .start(Revenue::default())
//!     .await?;
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
use std::num::NonZeroUsize;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::CheckpointStore;
use crate::event::DecodeError;
use crate::projection::{Projection, ProjectionEvents};
use crate::subscription::{Follower, Progress, Subscribe};

/// Starts [`RunningProjection`]s over one store and one checkpoint store.
#[derive(Debug, Clone)]
pub struct ProjectionRunner<S, K> {
    store: S,
    checkpoints: K,
    every_events: NonZeroUsize,
    every_interval: Duration,
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
    /// An event the projection consumes does not decode.
    #[error(transparent)]
    Decode(DecodeError),
    /// The projection consumes no events: there is nothing to run.
    #[error("the projection `{0}` declares no events")]
    NoEvents(&'static str),
    /// The runner's task panicked (in the projection's apply).
    #[error("the runner of `{0}` panicked")]
    Panicked(&'static str),
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

/// Where a runner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerStatus<Pos> {
    /// Every consumed event at or below this position has been applied.
    pub position: Option<Pos>,
    /// Whether the runner had read the whole log at its last report (no lag
    /// then); `false` while catching up.
    pub caught_up: bool,
    /// Whether the runner is still running.
    pub running: bool,
}

impl<S, K> ProjectionRunner<S, K>
where
    S: Subscribe,
    K: CheckpointStore<S::Position> + Clone,
{
    /// A runner over `store`, saving checkpoints in `checkpoints` (every 100
    /// events or every second by default, and when it stops).
    pub fn new(store: S, checkpoints: K) -> Self {
        Self {
            store,
            checkpoints,
            every_events: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
            every_interval: Duration::from_secs(1),
        }
    }

    /// Saves the checkpoint after this many applied events at most.
    #[must_use]
    pub fn checkpoint_every(mut self, events: NonZeroUsize) -> Self {
        self.every_events = events;
        self
    }

    /// Saves the checkpoint at least this often while events arrive.
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.every_interval = interval;
        self
    }

    /// Starts keeping `projection` current with the events it declares,
    /// resuming after its checkpoint.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoEvents`] when the projection declares none,
    /// [`RunnerError::Checkpoint`] when the checkpoint cannot be read.
    pub async fn start<P>(self, projection: P) -> Result<RunningProjection<S::Position, P>, RunnerError>
    where
        P: Projection<Id = S::Id, Metadata = S::Metadata> + Sync,
        S::Id: PartialEq,
    {
        self.start_with(projection, ProjectionEvents::declared()).await
    }

    /// Starts keeping `projection` current with the events in `events`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with<P>(
        self,
        projection: P,
        events: ProjectionEvents<S, P>,
    ) -> Result<RunningProjection<S::Position, P>, RunnerError>
    where
        P: Projection<Id = S::Id, Metadata = S::Metadata> + Sync,
        S::Id: PartialEq,
    {
        if events.is_empty() {
            return Err(RunnerError::NoEvents(P::KIND));
        }
        let checkpoint = self
            .checkpoints
            .load(P::KIND)
            .await
            .map_err(|error| RunnerError::Checkpoint(Box::new(error)))?;
        let state = Arc::new(RwLock::new(projection));
        let (status, watch_status) = watch::channel(RunnerStatus {
            position: checkpoint,
            caught_up: false,
            running: true,
        });
        let (stop, stop_requested) = watch::channel(false);
        let task = Task {
            follower: Follower::new(self.store.clone(), events.filters(), checkpoint),
            store: self.store,
            checkpoints: self.checkpoints,
            events,
            state: Arc::clone(&state),
            status,
            saved: checkpoint,
            unsaved: 0,
            last_save: Instant::now(),
            every_events: self.every_events.get(),
            every_interval: self.every_interval,
        };
        let handle = tokio::spawn(task.run(stop_requested));
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
        let mut status = self.status.clone();
        let reached = status.wait_for(|status| status.position >= Some(position) || !status.running);
        match tokio::time::timeout(timeout, reached).await {
            Err(_) => Err(WaitError::Timeout(timeout)),
            Ok(Ok(status)) if status.position >= Some(position) => Ok(()),
            Ok(_) => Err(WaitError::Stopped),
        }
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

/// The background task of a runner.
struct Task<S: Subscribe, K, P> {
    follower: Follower<S>,
    store: S,
    checkpoints: K,
    events: ProjectionEvents<S, P>,
    state: Arc<RwLock<P>>,
    status: watch::Sender<RunnerStatus<S::Position>>,
    saved: Option<S::Position>,
    unsaved: usize,
    last_save: Instant,
    every_events: usize,
    every_interval: Duration,
}

impl<S, K, P> Task<S, K, P>
where
    S: Subscribe,
    S::Id: PartialEq,
    K: CheckpointStore<S::Position>,
    P: Projection<Id = S::Id, Metadata = S::Metadata> + Sync,
{
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), RunnerError> {
        let outcome = self.follow(&mut stop).await;
        let saved = self.save().await;
        self.status.send_modify(|status| status.running = false);
        outcome.and(saved)
    }

    async fn follow(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), RunnerError> {
        loop {
            if *stop.borrow_and_update() {
                return Ok(());
            }
            let next = {
                let stopped = Box::pin(stop.changed());
                let progress = Box::pin(self.follower.next());
                match future::select(stopped, progress).await {
                    Either::Left(_) => return Ok(()),
                    Either::Right((progress, _)) => progress,
                }
            };
            match next {
                None => return Ok(()),
                Some(Err(error)) => return Err(RunnerError::Store(Box::new(error))),
                Some(Ok(Progress::Event(event))) => {
                    {
                        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                        self.events
                            .apply(&mut state, &event, self.store.codec())
                            .map_err(RunnerError::Decode)?;
                    }
                    self.unsaved += 1;
                    self.status
                        .send_modify(|status| status.position = Some(event.position));
                    if self.unsaved >= self.every_events {
                        self.save().await?;
                    }
                }
                Some(Ok(Progress::CaughtUp(head))) => {
                    self.status.send_modify(|status| {
                        status.position = status.position.max(Some(head));
                        status.caught_up = true;
                    });
                    if self.last_save.elapsed() >= self.every_interval || self.unsaved >= self.every_events {
                        self.save().await?;
                    }
                }
            }
        }
    }

    async fn save(&mut self) -> Result<(), RunnerError> {
        let position = self.status.borrow().position;
        if let Some(position) = position
            && self.saved != Some(position)
        {
            self.checkpoints
                .save(P::KIND, position)
                .await
                .map_err(|error| RunnerError::Checkpoint(Box::new(error)))?;
            self.saved = Some(position);
        }
        self.unsaved = 0;
        self.last_save = Instant::now();
        Ok(())
    }
}

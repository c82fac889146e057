//! Running a reactor: the [`ReactorRunner`].

use std::error::Error as StdError;
use std::fmt;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::{self, Either};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{BoxError, DeadLetter, Envelope, Reacting, ReactorStore, new_timers, reaction_command_id};
use crate::checkpoint::CheckpointStore;
use crate::concurrency::{ConcurrencyStrategy, Optimistic};
use crate::metadata::CausedBy;
use crate::repository::{CommandOptions, Repository, RetryPolicy};
use crate::runner::{
    Checkpointing, Consumer, Lease, LeaseGuard, NoLease, RunnerError, RunnerStatus, Task, WaitError,
};
use crate::schedule::{Clock, SystemClock, Timer, TimerOutcome};
use crate::snapshot::NoSnapshots;
use crate::store::{EventFilter, EventStore, StoredEvent};
use crate::subscription::Subscribe;

/// What a runner does with a reaction that failed as many times as it
/// tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Park it as a [`DeadLetter`] and go on with the next event.
    #[default]
    Park,
    /// Stop the runner ([`RunnerError::Reaction`]); the event is delivered
    /// again when it starts.
    Stop,
}

/// What a reactor's runner did since it started (counts of this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReactorStats {
    /// Events whose reactions were carried out (parked ones not counted).
    pub reactions: u64,
    /// Commands run (replays of commands that had run included).
    pub commands: u64,
    /// Reactions parked as dead letters.
    pub parked: u64,
    /// Dead letters retried with success (and removed).
    pub retried: u64,
    /// Timers whose command ran.
    pub timers_fired: u64,
    /// Timers that failed for the last time.
    pub timers_failed: u64,
}

/// Runs [`Reactor`](super::Reactor)s and [`ProcessManager`](super::ProcessManager)s
/// over one repository, one checkpoint store and one [`ReactorStore`].
///
/// ```
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::checkpoint;
/// use sourcery_core::concurrency::Unchecked;
/// use sourcery_core::event::DomainEvent;
/// use sourcery_core::reactor::{self, OnFailure, Reactor, ReactorRunner};
/// use sourcery_core::repository::Repository;
/// use sourcery_core::schedule::TestClock;
/// use sourcery_core::store::{EventStore, inmemory};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Pinged;
/// impl DomainEvent for Pinged { const KIND: &'static str = "ping"; }
///
/// type Store = inmemory::Store<String, ()>;
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let store = Store::new();
/// let running = ReactorRunner::new(
///     Repository::new(store.clone()),
///     checkpoint::inmemory::CheckpointStore::new(),
///     reactor::inmemory::ReactorStore::new(),
/// )
/// .clock(TestClock::new())
/// .attempts(3)
/// .backoff(Duration::from_millis(1), Duration::from_millis(10))
/// .on_failure(OnFailure::Park)
/// .start(Reactor::<Store>::new("pongs").on(|_: &Pinged, cause, _| {
///     println!("pinged at {}", cause.position);
///     Ok::<_, std::convert::Infallible>(())
/// }))?;
///
/// let mut tx = store.begin::<Unchecked>("pinger", "p".to_string(), None);
/// tx.append(Pinged, ())?;
/// let written = tx.commit().await?.expect("one event");
/// running.wait_for(written.last_position, Duration::from_secs(5)).await?;
/// assert_eq!(running.stop().await?.reactions, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ReactorRunner<S: EventStore, K, D, Snap = NoSnapshots, L = NoLease> {
    repository: Repository<S, Optimistic, Snap>,
    checkpoints: K,
    reactor_store: D,
    lease: L,
    clock: Arc<dyn Clock>,
    checkpointing: Checkpointing,
    attempts: u32,
    backoff: RetryPolicy,
    on_failure: OnFailure,
    timer_poll: Duration,
}

impl<S, K, D, Snap> ReactorRunner<S, K, D, Snap>
where
    S: Subscribe,
    K: CheckpointStore<S::Position>,
    D: ReactorStore<S::Id, S::Position, S::Metadata>,
{
    /// A runner whose reactions run commands through `repository` (with
    /// optimistic concurrency, whatever its strategy, retrying conflicts),
    /// saving checkpoints in `checkpoints` (every 100 events or every
    /// second) and timers and dead letters in `reactor_store`.
    ///
    /// By default: the system clock, 5 attempts per reaction with a backoff
    /// from 100 ms to 10 s between them, failures parked, timers looked for
    /// at least every second.
    pub fn new<C: ConcurrencyStrategy>(
        repository: Repository<S, C, Snap>,
        checkpoints: K,
        reactor_store: D,
    ) -> Self {
        Self {
            repository: repository.with_optimistic_concurrency(),
            checkpoints,
            reactor_store,
            lease: NoLease,
            clock: Arc::new(SystemClock),
            checkpointing: Checkpointing::new(),
            attempts: 5,
            backoff: RetryPolicy::new().backoff(Duration::from_millis(100), Duration::from_secs(10)),
            on_failure: OnFailure::Park,
            timer_poll: Duration::from_secs(1),
        }
    }
}

impl<S, K, D, Snap, L> ReactorRunner<S, K, D, Snap, L>
where
    S: Subscribe,
    K: CheckpointStore<S::Position>,
    D: ReactorStore<S::Id, S::Position, S::Metadata>,
    L: Lease,
{
    /// Runs only while holding `lease` for the reactor: one runner per
    /// reactor is active across processes, the others wait. A holder that
    /// lost its lease stops before its next command, its checkpoint saves
    /// are refused by the fence, and whatever it still runs is a replay of
    /// the same command ids.
    #[must_use]
    pub fn with_lease<L2: Lease>(self, lease: L2) -> ReactorRunner<S, K, D, Snap, L2> {
        ReactorRunner {
            repository: self.repository,
            checkpoints: self.checkpoints,
            reactor_store: self.reactor_store,
            lease,
            clock: self.clock,
            checkpointing: self.checkpointing,
            attempts: self.attempts,
            backoff: self.backoff,
            on_failure: self.on_failure,
            timer_poll: self.timer_poll,
        }
    }

    /// Reads the time from `clock` (a [`TestClock`](crate::schedule::TestClock)
    /// in tests).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many times a reaction (or a timer's command) is tried before it
    /// is parked (at least once).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The backoff between attempts: before attempt `n + 1` a random
    /// duration between zero and `min(max, initial × 2^(n-1))`.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = self.backoff.backoff(initial, max);
        self
    }

    /// What to do with a reaction that failed every attempt.
    #[must_use]
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// How often the runner looks for due timers and retry requests at
    /// least (default 1 s): a timer fires at most about this late.
    #[must_use]
    pub fn timer_poll(mut self, interval: Duration) -> Self {
        self.timer_poll = interval;
        self
    }

    /// Saves the checkpoint after this many events at most.
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

    /// After how long without catching up the runner reports that it fell
    /// behind (default 10 s).
    #[must_use]
    pub fn behind_after(mut self, threshold: Duration) -> Self {
        self.checkpointing.behind_after = threshold;
        self
    }

    /// Starts running `reactor`: once it holds the lease, it resumes after
    /// the reactor's checkpoint and fires its due timers.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NoEvents`] when it reacts to no event. Later
    /// failures stop the runner and come back from
    /// [`RunningReactor::stop`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the runner is a Tokio task).
    pub fn start<R>(self, reactor: R) -> Result<RunningReactor<S::Position>, RunnerError>
    where
        R: Reacting<S, Snap>,
        S::Id: PartialEq,
        S::Metadata: CausedBy,
        Snap: Send + Sync + 'static,
    {
        let name = reactor.name();
        let filters = reactor.filters();
        if filters.is_empty() {
            return Err(RunnerError::NoEvents(name));
        }
        let (report, reported) = watch::channel(RunnerStatus::starting());
        let (tally, tallied) = watch::channel(ReactorStats::default());
        let (stop, stop_requested) = watch::channel(false);
        let store = self.repository_store();
        let consumer = Reactions {
            jumps: self.clock.jumps(),
            reactor,
            filters,
            repository: self.repository,
            reactor_store: self.reactor_store,
            clock: self.clock,
            stats: tally,
            attempts: self.attempts,
            backoff: self.backoff,
            on_failure: self.on_failure,
            timer_poll: self.timer_poll,
            stop: stop_requested.clone(),
            next_due: None,
            looked: Instant::now(),
        };
        let task = Task::new(store, self.checkpoints, consumer, report, &self.checkpointing);
        let handle = tokio::spawn(task.run(self.lease, stop_requested));
        Ok(RunningReactor {
            name,
            status: reported,
            stats: tallied,
            stop,
            task: handle,
        })
    }
}

impl<S: Subscribe, K, D, Snap, L> ReactorRunner<S, K, D, Snap, L> {
    fn repository_store(&self) -> S {
        self.repository.store().clone()
    }
}

impl<S: EventStore, K: fmt::Debug, D: fmt::Debug, Snap, L: fmt::Debug> fmt::Debug
    for ReactorRunner<S, K, D, Snap, L>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactorRunner")
            .field("checkpoints", &self.checkpoints)
            .field("reactor_store", &self.reactor_store)
            .field("lease", &self.lease)
            .field("clock", &self.clock)
            .field("attempts", &self.attempts)
            .field("on_failure", &self.on_failure)
            .field("timer_poll", &self.timer_poll)
            .finish_non_exhaustive()
    }
}

/// A reactor running in the background. Dropping it stops the runner.
pub struct RunningReactor<Pos> {
    name: &'static str,
    status: watch::Receiver<RunnerStatus<Pos>>,
    stats: watch::Receiver<ReactorStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunnerError>>,
}

impl<Pos: Copy + Ord + Send + Sync + 'static> RunningReactor<Pos> {
    /// Where the runner is in the log.
    #[must_use]
    pub fn status(&self) -> RunnerStatus<Pos> {
        *self.status.borrow()
    }

    /// What it did so far.
    #[must_use]
    pub fn stats(&self) -> ReactorStats {
        *self.stats.borrow()
    }

    /// Waits until every event up to `position` has been reacted to (its
    /// reactions carried out or parked).
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] after `timeout`, [`WaitError::Stopped`] when
    /// the runner stopped first.
    pub async fn wait_for(&self, position: Pos, timeout: Duration) -> Result<(), WaitError> {
        crate::runner::wait_for_status(&self.status, position, timeout).await
    }

    /// Waits until `done` holds for the runner's [`ReactorStats`] (for
    /// example, a timer fired), and returns them. `done` is called each
    /// time they change, with no lock held: it may read other runners'
    /// stats too.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] after `timeout`, [`WaitError::Stopped`] when
    /// the runner stopped first.
    pub async fn wait_until(
        &self,
        done: impl Fn(&ReactorStats) -> bool,
        timeout: Duration,
    ) -> Result<ReactorStats, WaitError> {
        let mut counts = self.stats.clone();
        let mut runner = self.status.clone();
        let reached = async {
            loop {
                // Copied out first: `done` may read this or another
                // runner's stats, and holding the channel's lock while a
                // writer waits would deadlock that read.
                let stats = *counts.borrow_and_update();
                if done(&stats) {
                    return Ok(stats);
                }
                let running = runner.borrow_and_update().running;
                if !running {
                    return Err(WaitError::Stopped);
                }
                let closed = {
                    let (counted, moved) = (pin!(counts.changed()), pin!(runner.changed()));
                    match future::select(counted, moved).await {
                        Either::Left((changed, _)) | Either::Right((changed, _)) => changed.is_err(),
                    }
                };
                let stats = *counts.borrow();
                if closed && !done(&stats) {
                    return Err(WaitError::Stopped);
                }
            }
        };
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(Err(WaitError::Timeout(timeout)))
    }

    /// Stops the runner, saves its checkpoint and returns what it did.
    ///
    /// # Errors
    ///
    /// The error that stopped the runner earlier, if one did, or a failure
    /// to save the final checkpoint.
    pub async fn stop(self) -> Result<ReactorStats, RunnerError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(outcome) => outcome.map(|()| *self.stats.borrow()),
            Err(_) => Err(RunnerError::Panicked(self.name)),
        }
    }
}

impl<Pos: fmt::Debug> fmt::Debug for RunningReactor<Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningReactor")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .field("stats", &*self.stats.borrow())
            .finish_non_exhaustive()
    }
}

/// Why one attempt of a reaction did not complete.
enum Failed {
    /// The lease is known to be lost: stop, another runner takes over.
    Lost,
    /// The reaction failed; it may be tried again.
    Reaction(BoxError),
}

/// A command of a reaction failed.
#[derive(Debug, thiserror::Error)]
#[error("the command {command} on {aggregate_kind} {target} failed")]
struct CommandFailed {
    command: &'static str,
    aggregate_kind: &'static str,
    target: String,
    #[source]
    source: BoxError,
}

/// The reactor's store failed.
#[derive(Debug, thiserror::Error)]
#[error("the reactor store failed")]
struct StoreFailed(#[source] BoxError);

impl StoreFailed {
    fn boxed(error: impl StdError + Send + Sync + 'static) -> BoxError {
        Box::new(Self(Box::new(error)))
    }
}

/// `error` and its causes, `error: cause: cause`.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How many times a reaction's command is retried after a conflict (it
/// reloads its aggregate and decides again each time).
const CONFLICT_RETRIES: u32 = 5;

/// How many due timers are read at once.
const DUE_PAGE: usize = 100;

/// A reactor as the runner core's [`Consumer`].
struct Reactions<S: EventStore, D, Snap, R> {
    reactor: R,
    filters: Vec<EventFilter<S::Id, S::Position>>,
    repository: Repository<S, Optimistic, Snap>,
    reactor_store: D,
    clock: Arc<dyn Clock>,
    jumps: Option<watch::Receiver<DateTime<Utc>>>,
    stats: watch::Sender<ReactorStats>,
    attempts: u32,
    backoff: RetryPolicy,
    on_failure: OnFailure,
    timer_poll: Duration,
    stop: watch::Receiver<bool>,
    /// When the earliest pending timer is due, as last read.
    next_due: Option<DateTime<Utc>>,
    /// When it last looked for due timers and retry requests.
    looked: Instant,
}

impl<S, D, Snap, R> Reactions<S, D, Snap, R>
where
    S: Subscribe,
    S::Metadata: CausedBy,
    D: ReactorStore<S::Id, S::Position, S::Metadata>,
    Snap: Send + Sync + 'static,
    R: Reacting<S, Snap>,
{
    fn name(&self) -> &'static str {
        self.reactor.name()
    }

    /// One attempt at everything `event` causes.
    async fn react_once<G: LeaseGuard>(&mut self, event: &Envelope<S>, guard: &mut G) -> Result<(), Failed> {
        let name = self.name();
        let reactions = self
            .reactor
            .prepare(&self.repository, event, self.clock.now())
            .await
            .map_err(Failed::Reaction)?;
        if guard.is_lost() {
            return Err(Failed::Lost);
        }
        for key in reactions.cancelled() {
            self.reactor_store
                .cancel(name, key, event.position)
                .await
                .map_err(|error| Failed::Reaction(StoreFailed::boxed(error)))?;
        }
        let timers = new_timers(name, &reactions, event);
        if let Some(earliest) = timers.iter().map(|timer| timer.due).min() {
            self.reactor_store
                .schedule(timers)
                .await
                .map_err(|error| Failed::Reaction(StoreFailed::boxed(error)))?;
            self.next_due = Some(self.next_due.map_or(earliest, |due| due.min(earliest)));
        }
        let metadata = S::Metadata::caused_by(event.id, &event.metadata);
        for (index, command) in (0_u32..).zip(reactions.commands()) {
            if guard.is_lost() {
                return Err(Failed::Lost);
            }
            let options = CommandOptions::new()
                .command_id(reaction_command_id(name, event.id, index))
                .retry(RetryPolicy::none().conflicts(CONFLICT_RETRIES))
                .assume_new();
            command
                .run(&self.repository, metadata.clone(), options)
                .await
                .map_err(|source| {
                    Failed::Reaction(Box::new(CommandFailed {
                        command: command.command_type,
                        aggregate_kind: command.aggregate_kind,
                        target: format!("{:?}", command.target),
                        source,
                    }))
                })?;
            self.stats.send_modify(|stats| stats.commands += 1);
        }
        Ok(())
    }

    /// Whether a stop was asked for (or the handle dropped).
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Sleeps `delay` unless a stop comes first; returns whether it slept.
    async fn pause(&mut self, delay: Duration) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        let stopped = pin!(self.stop.wait_for(|stop| *stop));
        matches!(
            future::select(stopped, pin!(tokio::time::sleep(delay))).await,
            Either::Right(_)
        )
    }

    /// Parks `event`'s reaction after `attempts` with `error`.
    async fn park(&self, event: Envelope<S>, error: &BoxError, attempts: u32) -> Result<(), RunnerError>
    where
        S::Id: Clone,
    {
        let name = self.name();
        tracing::error!(
            reactor = name,
            position = ?event.position,
            kind = %event.kind,
            attempts,
            error = %chain(&**error),
            "sourcery: a reaction failed every attempt; parked as a dead letter"
        );
        let letter = DeadLetter::new(name, event, chain(&**error), attempts, self.clock.now());
        self.reactor_store
            .park(letter)
            .await
            .map_err(|error| RunnerError::Reaction(name, StoreFailed::boxed(error)))?;
        self.stats.send_modify(|stats| stats.parked += 1);
        Ok(())
    }

    /// Fires one due timer.
    async fn fire(&mut self, timer: Timer<S::Position>) -> Result<(), RunnerError> {
        let name = self.name();
        let fired = match self.reactor.fire(&timer.command) {
            Some(fire) => {
                let options = CommandOptions::new()
                    .command_id(timer.id.command_id())
                    .retry(RetryPolicy::none().conflicts(CONFLICT_RETRIES))
                    .assume_new();
                fire(&self.repository, &timer.payload, options).await.map(|_| ())
            }
            None => Err(BoxError::from(super::ReactError::Undeclared(
                timer.command.clone(),
            ))),
        };
        let outcome = match fired {
            Ok(()) => TimerOutcome::Fired,
            Err(error) => {
                let attempts = timer.attempts.saturating_add(1);
                let error = chain(&*error);
                if attempts >= self.attempts {
                    tracing::error!(reactor = name, timer = %timer.id, command = %timer.command, attempts, %error, "sourcery: a timer's command failed every attempt");
                    TimerOutcome::Failed { error }
                } else {
                    let delay = chrono::Duration::from_std(self.backoff.backoff_before(attempts))
                        .unwrap_or(chrono::Duration::MAX);
                    let due = self
                        .clock
                        .now()
                        .checked_add_signed(delay)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    tracing::warn!(reactor = name, timer = %timer.id, command = %timer.command, attempts, %error, "sourcery: a timer's command failed; trying again later");
                    TimerOutcome::Retry { due, error }
                }
            }
        };
        let last = matches!(outcome, TimerOutcome::Failed { .. });
        let fired = matches!(outcome, TimerOutcome::Fired);
        let recorded = self
            .reactor_store
            .finish(timer.id, outcome)
            .await
            .map_err(|error| RunnerError::Reaction(name, StoreFailed::boxed(error)))?;
        if recorded {
            self.stats.send_modify(|stats| {
                if fired {
                    stats.timers_fired += 1;
                }
                if last {
                    stats.timers_failed += 1;
                }
            });
        }
        Ok(())
    }
}

impl<S, D, Snap, R> Consumer<S> for Reactions<S, D, Snap, R>
where
    S: Subscribe,
    S::Id: PartialEq,
    S::Metadata: CausedBy,
    D: ReactorStore<S::Id, S::Position, S::Metadata>,
    Snap: Send + Sync + 'static,
    R: Reacting<S, Snap>,
{
    fn name(&self) -> &'static str {
        self.reactor.name()
    }

    fn filters(&self) -> Vec<EventFilter<S::Id, S::Position>> {
        self.filters.clone()
    }

    async fn activated(&mut self, _: Option<crate::checkpoint::Fence>) -> Result<(), RunnerError> {
        let name = self.name();
        self.next_due = self
            .reactor_store
            .next_due(name)
            .await
            .map_err(|error| RunnerError::Reaction(name, StoreFailed::boxed(error)))?;
        Ok(())
    }

    async fn consume<G: LeaseGuard>(
        &mut self,
        _: &S,
        event: StoredEvent<S::Id, S::Position, S::Metadata>,
        guard: &mut G,
    ) -> Result<bool, RunnerError> {
        let name = self.name();
        let mut failures = 0_u32;
        loop {
            match self.react_once(&event, guard).await {
                Ok(()) => {
                    self.stats.send_modify(|stats| stats.reactions += 1);
                    return Ok(true);
                }
                Err(Failed::Lost) => return Err(RunnerError::LeaseLost(name)),
                Err(Failed::Reaction(error)) => {
                    failures += 1;
                    if failures >= self.attempts {
                        return match self.on_failure {
                            OnFailure::Park => {
                                self.park(event, &error, failures).await?;
                                Ok(true)
                            }
                            OnFailure::Stop => Err(RunnerError::Reaction(name, error)),
                        };
                    }
                    tracing::warn!(
                        reactor = name,
                        position = ?event.position,
                        attempt = failures,
                        error = %chain(&*error),
                        "sourcery: a reaction failed; trying again"
                    );
                    if !self.pause(self.backoff.backoff_before(failures)).await {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn is_due(&self) -> bool {
        self.next_due.is_some_and(|due| due <= self.clock.now()) || self.looked.elapsed() >= self.timer_poll
    }

    async fn due(&mut self) {
        // The next look: when the earliest timer is due, and at least every
        // `timer_poll` (retry requests, timers scheduled elsewhere).
        let poll = self.timer_poll.saturating_sub(self.looked.elapsed());
        let wait = match self.next_due {
            None => poll,
            Some(due) => (due - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
        };
        let sleep = tokio::time::sleep(wait);
        match &mut self.jumps {
            Some(jumps) => {
                let jumped = pin!(jumps.changed());
                let _ = future::select(pin!(sleep), jumped).await;
            }
            None => sleep.await,
        }
    }

    async fn run_due<G: LeaseGuard>(&mut self, guard: &mut G) -> Result<(), RunnerError> {
        let name = self.name();
        let failed = |error: D::Error| RunnerError::Reaction(name, StoreFailed::boxed(error));
        self.looked = Instant::now();
        loop {
            let due = self
                .reactor_store
                .due(name, self.clock.now(), DUE_PAGE)
                .await
                .map_err(failed)?;
            let full = due.len() >= DUE_PAGE;
            for timer in due {
                if guard.is_lost() {
                    return Err(RunnerError::LeaseLost(name));
                }
                if self.stopping() {
                    return Ok(());
                }
                self.fire(timer).await?;
            }
            if !full {
                break;
            }
        }
        let letters = self.reactor_store.retry_requests(name).await.map_err(failed)?;
        for letter in letters {
            if self.stopping() {
                return Ok(());
            }
            match self.react_once(&letter.event, guard).await {
                Ok(()) => {
                    self.reactor_store
                        .discard(name, letter.event.position)
                        .await
                        .map_err(failed)?;
                    tracing::info!(reactor = name, position = ?letter.event.position, "sourcery: a parked reaction was retried and completed");
                    self.stats.send_modify(|stats| stats.retried += 1);
                }
                Err(Failed::Lost) => return Err(RunnerError::LeaseLost(name)),
                Err(Failed::Reaction(error)) => {
                    let attempts = letter.attempts.saturating_add(1);
                    self.park(letter.event, &error, attempts).await?;
                }
            }
        }
        self.next_due = self.reactor_store.next_due(name).await.map_err(failed)?;
        Ok(())
    }
}

//! `runner`: the projection runner over the store applies each event once,
//! in order, resumes exactly after its checkpoint, lets a reader wait for a
//! position its projection skips, and stops without writing once a newer
//! lease holder claimed its checkpoint.

use std::convert::Infallible;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Noted, Opened, call_timeout, id};
use crate::checkpoint::inmemory::CheckpointStore;
use crate::checkpoint::{CheckpointStore as _, Claim, Fence};
use crate::event::DomainEvent as _;
use crate::projection::{ApplyProjection, Projection, ProjectionEvents};
use crate::runner::{Lease, LeaseGuard, ProjectionRunner, RunnerError, RunningProjection, WaitError};
use crate::store::EventStore;
use crate::subscription::Subscribe;

/// Records the number of every test event it applies, in order.
struct Tally<Id, M> {
    applied: Vec<u64>,
    types: PhantomData<fn() -> (Id, M)>,
}

impl<Id, M> Default for Tally<Id, M> {
    fn default() -> Self {
        Self {
            applied: Vec::new(),
            types: PhantomData,
        }
    }
}

impl<Id, M> Projection for Tally<Id, M>
where
    Id: Clone + Debug + Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    const KIND: &'static str = "conformance.tally";
    type Id = Id;
    type Metadata = M;

    fn declare<S>(events: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self>
    where
        S: EventStore<Id = Self::Id, Metadata = Self::Metadata>,
    {
        events.event::<Opened>().event::<Noted>()
    }
}

impl<Id, M> ApplyProjection<Opened> for Tally<Id, M>
where
    Id: Clone + Debug + Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    fn apply_projection(&mut self, _: &Id, event: &Opened, _: &M) {
        self.applied.push(event.n);
    }
}

impl<Id, M> ApplyProjection<Noted> for Tally<Id, M>
where
    Id: Clone + Debug + Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    fn apply_projection(&mut self, _: &Id, event: &Noted, _: &M) {
        self.applied.push(event.n);
    }
}

type Running<S> =
    RunningProjection<<S as EventStore>::Position, Tally<<S as EventStore>::Id, <S as EventStore>::Metadata>>;

/// The events a [`Tally`] over `S` consumes.
type Declared<S> = ProjectionEvents<S, Tally<<S as EventStore>::Id, <S as EventStore>::Metadata>>;

fn start<S: ConformanceStore + Subscribe>(
    rule: Check,
    store: &S,
    checkpoints: &CheckpointStore<S::Position>,
    events: Option<Declared<S>>,
) -> Running<S> {
    let runner = ProjectionRunner::new(store.clone(), checkpoints.clone());
    let started = match events {
        Some(events) => runner.start_with(Tally::default(), events),
        None => runner.start(Tally::default()),
    };
    match started {
        Ok(running) => running,
        Err(error) => rule.fail("the projection runner to start", format_args!("{error}")),
    }
}

async fn wait_for<S: ConformanceStore>(rule: Check, running: &Running<S>, position: S::Position, what: &str) {
    if let Err(error) = running.wait_for(position, call_timeout()).await {
        rule.fail(
            format_args!("the runner to reach {position:?} ({what})"),
            format_args!("{error} (status {:?})", running.status()),
        );
    }
}

async fn stop<S: ConformanceStore>(rule: Check, running: Running<S>) -> Vec<u64> {
    match rule.bounded("the runner to stop", running.stop()).await {
        Ok(tally) => tally.applied,
        Err(error) => rule.fail("the runner to stop cleanly", format_args!("{error}")),
    }
}

/// A runner applies the history and then live events, each once, in the
/// log's order.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn applies_each_event_once_in_order<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("runner.applies_each_event_once_in_order");
    rule.append(
        &store,
        ACCOUNT,
        &id::<S>("runner-a"),
        &[(Opened::KIND, 1), (Noted::KIND, 2)],
    )
    .await;
    rule.notes(&store, ACCOUNT, &id::<S>("runner-b"), &[3]).await;
    let checkpoints = CheckpointStore::new();
    let running = start(rule, &store, &checkpoints, None);
    rule.notes(&store, ACCOUNT, &id::<S>("runner-a"), &[4, 5]).await;
    let last = rule.notes(&store, ACCOUNT, &id::<S>("runner-b"), &[6]).await;
    wait_for::<S>(rule, &running, last, "the last event committed").await;
    rule.same(
        "the events the projection applied, in order",
        vec![1, 2, 3, 4, 5, 6],
        stop::<S>(rule, running).await,
    );
}

/// A runner started over a saved checkpoint applies exactly the events
/// after it: none before, none twice, none skipped.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn resumes_after_checkpoint<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("runner.resumes_after_checkpoint");
    let stream = id::<S>("runner-resume");
    rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    let saved = rule.notes(&store, ACCOUNT, &id::<S>("runner-other"), &[3]).await;
    rule.notes(&store, ACCOUNT, &stream, &[4]).await;
    let last = rule.notes(&store, ACCOUNT, &stream, &[5, 6]).await;
    let checkpoints = CheckpointStore::new();
    rule.ok(
        "saving a checkpoint",
        checkpoints.save(<Tally<S::Id, S::Metadata> as Projection>::KIND, saved),
    )
    .await;
    let running = start(rule, &store, &checkpoints, None);
    wait_for::<S>(rule, &running, last, "the last event").await;
    rule.same(
        "the events a runner resuming after event 3's checkpoint applied",
        vec![4, 5, 6],
        stop::<S>(rule, running).await,
    );
}

/// `wait_for` a position the projection does not consume resolves once the
/// runner has read past it.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn wait_for_filtered_position<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("runner.wait_for_filtered_position");
    let checkpoints = CheckpointStore::new();
    let opened_only = ProjectionEvents::new().event::<Opened>();
    let running = start(rule, &store, &checkpoints, Some(opened_only));
    rule.append(&store, ACCOUNT, &id::<S>("runner-wait"), &[(Opened::KIND, 1)])
        .await;
    let skipped = rule
        .notes(&store, ACCOUNT, &id::<S>("runner-wait"), &[2, 3])
        .await;
    let limit = call_timeout().min(Duration::from_secs(30));
    if let Err(error) = running.wait_for(skipped, limit).await {
        rule.fail(
            format_args!("wait_for({skipped:?}), a position of an event the projection skips, to resolve"),
            format_args!("{error} (status {:?})", running.status()),
        );
    }
    rule.same(
        "the events a projection of Opened only applied",
        vec![1],
        stop::<S>(rule, running).await,
    );
}

/// A lease that is always free and never lost, whose holders all get one
/// fence: a runner holding it stands for a lease holder that has not
/// noticed a newer holder yet.
#[derive(Debug, Clone, Copy)]
struct Unaware(Fence);

impl Lease for Unaware {
    type Guard = Self;
    type Error = Infallible;

    async fn acquire<'a>(&'a self, _: &'a str) -> Result<Self, Infallible> {
        Ok(*self)
    }
}

impl LeaseGuard for Unaware {
    async fn lost(&mut self) {
        std::future::pending::<()>().await;
    }

    fn is_lost(&self) -> bool {
        false
    }

    fn fence(&self) -> Option<Fence> {
        Some(self.0)
    }
}

/// A runner whose checkpoint a newer lease holder claimed (with a higher
/// fence) while it ran stops with [`RunnerError::Fenced`] at its next save
/// and leaves the checkpoint as the claim found it.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn fenced_off_writes_nothing<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("runner.fenced_off_writes_nothing");
    let kind = <Tally<S::Id, S::Metadata> as Projection>::KIND;
    let stream = id::<S>("runner-fenced");
    let first = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let checkpoints = CheckpointStore::new();
    let started = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .with_lease(Unaware(Fence::new(1)))
        .checkpoint_every(NonZeroUsize::MIN)
        .start(Tally::default());
    let running = match started {
        Ok(running) => running,
        Err(error) => rule.fail("the projection runner to start", format_args!("{error}")),
    };
    wait_for::<S>(rule, &running, first, "the first event").await;
    rule.same(
        "the events the runner applied before a newer holder claimed its checkpoint",
        vec![1],
        running.read(|tally| tally.applied.clone()),
    );
    let claimed = rule
        .ok(
            "claiming the runner's checkpoint with a higher fence",
            checkpoints.claim(kind, Fence::new(2)),
        )
        .await;
    let Claim::Claimed(at_claim) = claimed else {
        rule.fail(
            "the claim with fence 2 of a checkpoint the runner advances with fence 1 to succeed",
            format_args!("{claimed:?}"),
        )
    };
    let second = rule.notes(&store, ACCOUNT, &stream, &[2]).await;
    // The runner applies event 2 (it does not know it lost its lease) and
    // is refused when it saves, or it was refused saving event 1 already.
    match running.wait_for(second, call_timeout()).await {
        Ok(()) | Err(WaitError::Stopped) => {}
        Err(error) => rule.fail(
            format_args!("the runner to reach {second:?} or stop"),
            format_args!("{error} (status {:?})", running.status()),
        ),
    }
    let stopped = rule.bounded("the runner to stop", running.stop()).await;
    match stopped {
        Err(RunnerError::Fenced(_, fence)) if fence == Fence::new(2) => {}
        Err(error) => rule.fail(
            "the runner fenced off to stop with RunnerError::Fenced (fence 2)",
            format_args!("the error: {error}"),
        ),
        Ok(tally) => rule.fail(
            "the runner fenced off to stop with RunnerError::Fenced (fence 2)",
            format_args!("a clean stop, having applied {:?}", tally.applied),
        ),
    }
    let saved = rule.ok("loading a checkpoint", checkpoints.load(kind)).await;
    rule.same(
        "the checkpoint after the fenced-off runner stopped (as the claim found it)",
        at_claim,
        saved,
    );
}

//! The projection runner on PostgreSQL: checkpoints, resuming from them,
//! and one active runner per projection with [`Lease`].

use crate::support;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::runner::{ProjectionRunner, RunnerError, WaitError};
use sourcery_core::store::{EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::{CheckpointStore, Lease, Store};

type PgStore = Store<String, ()>;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: u64,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "runner.noted";
}

/// Which runner applied which event, shared by the runners of a test.
type Log = Arc<Mutex<Vec<(char, u64)>>>;

/// Records every `n` it applies, in its own list and in a shared log.
#[derive(Debug, Default)]
struct Tally {
    applied: Vec<u64>,
    tag: char,
    log: Option<Log>,
}

impl Tally {
    fn logged(tag: char, log: &Log) -> Self {
        Self {
            applied: Vec::new(),
            tag,
            log: Some(Arc::clone(log)),
        }
    }
}

impl Projection for Tally {
    const KIND: &'static str = "tally";
    type Id = String;
    type Metadata = ();

    fn declare<S: EventStore<Id = String, Metadata = ()>>(
        events: ProjectionEvents<S, Self>,
    ) -> ProjectionEvents<S, Self> {
        events.event::<Noted>()
    }
}

impl ApplyProjection<Noted> for Tally {
    fn apply_projection(&mut self, _: &String, event: &Noted, (): &()) {
        self.applied.push(event.n);
        if let Some(log) = &self.log {
            log.lock().unwrap().push((self.tag, event.n));
        }
    }
}

/// Appends `Noted { n }` for each `n` in one batch; returns the last position.
async fn note(store: &PgStore, numbers: std::ops::RangeInclusive<u64>) -> i64 {
    let events = numbers
        .map(|n| PersistableEvent {
            id: EventId::new(),
            kind: Noted::KIND.to_owned(),
            schema_version: 1,
            data: serde_json::to_vec(&Noted { n }).unwrap(),
            metadata: (),
        })
        .collect();
    support::bounded(
        "append",
        30,
        store.append(
            "noter",
            &"s".to_owned(),
            None,
            NonEmpty::from_vec(events).unwrap(),
        ),
    )
    .await
    .expect("append")
    .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_round_trip() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let checkpoints = CheckpointStore::new(&store);
    assert_eq!(checkpoints.load("a").await.unwrap(), None);
    checkpoints.save("a", 5).await.unwrap();
    checkpoints.save("b", 7).await.unwrap();
    assert_eq!(checkpoints.load("a").await.unwrap(), Some(5));
    checkpoints.save("a", 3).await.unwrap();
    assert_eq!(checkpoints.load("a").await.unwrap(), Some(3), "a save replaces");
    assert_eq!(checkpoints.load("b").await.unwrap(), Some(7));
    assert!(checkpoints.reset("a").await.unwrap());
    assert!(!checkpoints.reset("a").await.unwrap());
    assert_eq!(checkpoints.load("a").await.unwrap(), None);

    // Another store on the same schema sees them; another schema does not.
    let same: PgStore = Store::with_schema(store.pool().clone(), store.schema()).unwrap();
    assert_eq!(CheckpointStore::new(&same).load("b").await.unwrap(), Some(7));
    let other = support::store::<String, ()>().await.unwrap();
    assert_eq!(CheckpointStore::new(&other).load("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_resumes_from_its_checkpoint_then_follows_live() {
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let checkpoints = CheckpointStore::new(&store);
    let first_batch = note(&store, 1..=20).await;
    let first = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Tally::default())
        .unwrap();
    first.wait_for(first_batch, WAIT).await.expect("caught up");
    let first = first.stop().await.expect("stop");
    assert_eq!(first.applied, (1..=20).collect::<Vec<_>>());
    assert_eq!(checkpoints.load("tally").await.unwrap(), Some(first_batch));

    // Written while no runner runs: caught up from the checkpoint.
    let missed = note(&store, 21..=30).await;
    let second = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Tally::default())
        .unwrap();
    second.wait_for(missed, WAIT).await.expect("catch-up");
    // Then live.
    let live = note(&store, 31..=35).await;
    second.wait_for(live, WAIT).await.expect("live");
    let second = second.stop().await.expect("stop");
    assert_eq!(
        second.applied,
        (21..=35).collect::<Vec<_>>(),
        "exactly what came after the checkpoint, once, in order"
    );
    assert_eq!(checkpoints.load("tally").await.unwrap(), Some(live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_lease_one_runner_is_active_and_a_standby_takes_over_when_its_connection_is_killed() {
    const EVERY: usize = 10;
    let Some(store) = support::store::<String, ()>().await else {
        return;
    };
    let checkpoints = CheckpointStore::new(&store);
    let lease = Lease::new(&store)
        .retry_interval(Duration::from_millis(50))
        .heartbeat(Duration::from_millis(100));
    let log = Log::default();
    let runner = || {
        ProjectionRunner::new(store.clone(), checkpoints.clone())
            .with_lease(lease.clone())
            .checkpoint_every(NonZeroUsize::new(EVERY).unwrap())
    };

    let history = note(&store, 1..=50).await;
    let a = runner().start(Tally::logged('A', &log)).unwrap();
    a.wait_for(history, WAIT).await.expect("A is active");
    let b = runner().start(Tally::logged('B', &log)).unwrap();
    let more = note(&store, 51..=60).await;
    a.wait_for(more, WAIT).await.expect("A follows");
    assert!(a.status().active);
    assert!(!b.status().active && b.status().running, "B waits for the lease");
    assert_eq!(b.read(|tally| tally.applied.len()), 0, "B applies nothing");

    // Kill the connection holding A's lease.
    let pid = lease.holder("tally").await.unwrap().expect("the lease is held");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(killed);
    let killed_at = Instant::now();
    assert_eq!(a.wait_for(i64::MAX, WAIT).await, Err(WaitError::Stopped));
    let a_noticed = killed_at.elapsed();
    let a = a.stop().await;
    assert!(matches!(a, Err(RunnerError::LeaseLost("tally"))), "{a:?}");

    let after = note(&store, 61..=70).await;
    b.wait_for(after, WAIT).await.expect("B takes over");
    let took_over = killed_at.elapsed();
    assert!(b.status().active);
    assert_ne!(lease.holder("tally").await.unwrap(), Some(pid));
    let b = b.stop().await.expect("stop");
    eprintln!(
        "A noticed the loss after {a_noticed:?}; B applied the next event {took_over:?} after the kill"
    );
    assert!(took_over < Duration::from_secs(5), "takeover took {took_over:?}");

    let log = log.lock().unwrap().clone();
    let by = |tag| {
        log.iter()
            .filter(|(t, _)| *t == tag)
            .map(|&(_, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by('A'),
        (1..=60).collect::<Vec<_>>(),
        "A applied each event once, in order"
    );
    let b_applied = by('B');
    assert_eq!(b.applied, b_applied);
    // B resumed after A's last saved checkpoint: contiguous to 70, and the
    // events applied by both are within one checkpoint interval.
    let first = *b_applied.first().expect("B applied something");
    assert_eq!(b_applied, (first..=70).collect::<Vec<_>>());
    let twice = b_applied.iter().filter(|&&n| n <= 60).count();
    assert!(
        twice <= EVERY,
        "{twice} events applied twice, more than one checkpoint interval"
    );
    assert_eq!(checkpoints.load("tally").await.unwrap(), Some(after));
}

//! The projection runner: catch-up then live, read-your-writes, resuming
//! from a checkpoint, and failures.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::checkpoint::{CheckpointStore, Claim, Fence, inmemory::CheckpointStore as Checkpoints};
use sourcery::concurrency::Unchecked;
use sourcery::event::DecodeError;
use sourcery::runner::{ProjectionRunner, RunnerError, WaitError};
use sourcery::store::{EventStore, NonEmpty, PersistableEvent, inmemory};
use sourcery::{ApplyProjection, DomainEvent, Projection};

const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sold {
    amount: u64,
}

impl DomainEvent for Sold {
    const KIND: &'static str = "shop.sold";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Restocked;

impl DomainEvent for Restocked {
    const KIND: &'static str = "shop.restocked";
}

// ANCHOR: projection
#[derive(Debug, Default, Projection)]
#[projection(events(Sold))]
struct Revenue {
    total: u64,
    applied: usize,
}

impl ApplyProjection<Sold> for Revenue {
    fn apply_projection(&mut self, _: &String, event: &Sold, (): &()) {
        self.total += event.amount;
        self.applied += 1;
    }
}
// ANCHOR_END: projection

#[derive(Debug, Default, Projection)]
struct NothingDeclared;

type Store = inmemory::Store<String, ()>;

async fn sell(store: &Store, amount: u64) -> u64 {
    let mut tx = store.begin::<Unchecked>("shop", "s1".to_string(), None);
    tx.append(Sold { amount }, ()).expect("encode");
    tx.commit()
        .await
        .expect("commit")
        .expect("one event")
        .last_position
}

async fn restock(store: &Store) -> u64 {
    let mut tx = store.begin::<Unchecked>("shop", "s1".to_string(), None);
    tx.append(Restocked, ()).expect("encode");
    tx.commit()
        .await
        .expect("commit")
        .expect("one event")
        .last_position
}

// ANCHOR: catch_up
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_and_reads_its_writes() {
    let store = Store::new();
    let checkpoints = Checkpoints::new();
    sell(&store, 10).await;
    sell(&store, 20).await;
    let runner = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Revenue::default())
        .expect("start");
    let live = sell(&store, 5).await;
    runner
        .wait_for(live, WAIT)
        .await
        .expect("the live event is applied");
    assert_eq!(runner.read(|r| r.total), 35);
    let status = runner.status();
    assert!(status.running);
    assert_eq!(status.position, Some(live));

    // A position the projection filters out is reached all the same.
    let skipped = restock(&store).await;
    runner
        .wait_for(skipped, WAIT)
        .await
        .expect("a filtered-out position is reached");

    let revenue = runner.stop().await.expect("stop");
    assert_eq!((revenue.total, revenue.applied), (35, 3));
    assert_eq!(checkpoints.load("revenue").await.ok().flatten(), Some(skipped));
}
// ANCHOR_END: catch_up

// ANCHOR: restart
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_checkpoint() {
    let store = Store::new();
    let checkpoints = Checkpoints::new();
    let first = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Revenue::default())
        .expect("start");
    let last = sell(&store, 1).await;
    sell(&store, 2).await;
    let last = sell(&store, 3).await.max(last);
    first.wait_for(last, WAIT).await.expect("caught up");
    let before = first.stop().await.expect("stop");
    assert_eq!(before.applied, 3);

    sell(&store, 100).await;
    let latest = sell(&store, 200).await;
    // The new runner starts from a fresh (here: empty) read model and the
    // saved checkpoint: it applies exactly the two events after it.
    let second = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .start(Revenue::default())
        .expect("restart");
    second.wait_for(latest, WAIT).await.expect("caught up");
    let after = second.stop().await.expect("stop");
    assert_eq!((after.applied, after.total), (2, 300));
}
// ANCHOR_END: restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_decode_stops_the_runner_with_an_error_naming_it() {
    let store = Store::new();
    let broken = PersistableEvent::new(Sold::KIND, b"{\"amount\":-1}".to_vec(), ());
    let written = store
        .append("shop", &"s9".to_string(), None, NonEmpty::new(broken))
        .await
        .expect("append");
    let runner = ProjectionRunner::new(store.clone(), Checkpoints::new())
        .start(Revenue::default())
        .expect("start");
    assert_eq!(
        runner.wait_for(written.last_position, WAIT).await,
        Err(WaitError::Stopped)
    );
    assert!(!runner.status().running);
    match runner.stop().await {
        Err(RunnerError::Decode(error)) => {
            let error = error
                .downcast_ref::<DecodeError<String, u64>>()
                .expect("a DecodeError of the store's id and position types");
            assert_eq!(error.event_kind, "shop.sold");
            assert_eq!(error.position, 1);
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn waiting_is_bounded_and_nothing_to_run_is_an_error() {
    let store = Store::new();
    let runner = ProjectionRunner::new(store.clone(), Checkpoints::new())
        .start(Revenue::default())
        .expect("start");
    let never = runner.wait_for(1_000, Duration::from_millis(20)).await;
    assert_eq!(never, Err(WaitError::Timeout(Duration::from_millis(20))));
    runner.stop().await.expect("stop");

    let nothing = ProjectionRunner::new(store, Checkpoints::new()).start(NothingDeclared);
    assert!(
        matches!(nothing, Err(RunnerError::NoEvents("nothing-declared"))),
        "{nothing:?}"
    );
}

// ANCHOR: lease_impl
/// A lease shared in process: one holder at a time, each with a fence one
/// above the previous holder's; the test can make the holder lose it, as a
/// dead database connection would.
#[derive(Debug, Clone, Default)]
struct TestLease {
    mutex: std::sync::Arc<tokio::sync::Mutex<()>>,
    revoke: std::sync::Arc<tokio::sync::Notify>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

struct TestGuard {
    _held: tokio::sync::OwnedMutexGuard<()>,
    revoke: std::sync::Arc<tokio::sync::Notify>,
    revoked: bool,
    fence: Fence,
}

impl sourcery::runner::Lease for TestLease {
    type Guard = TestGuard;
    type Error = std::convert::Infallible;

    async fn acquire<'a>(&'a self, _: &'a str) -> Result<TestGuard, Self::Error> {
        let held = std::sync::Arc::clone(&self.mutex).lock_owned().await;
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Ok(TestGuard {
            _held: held,
            revoke: std::sync::Arc::clone(&self.revoke),
            revoked: false,
            fence: Fence::new(generation),
        })
    }
}

impl sourcery::runner::LeaseGuard for TestGuard {
    async fn lost(&mut self) {
        self.revoke.notified().await;
        self.revoked = true;
    }

    fn is_lost(&self) -> bool {
        self.revoked
    }

    fn fence(&self) -> Option<Fence> {
        Some(self.fence)
    }
}
// ANCHOR_END: lease_impl

// ANCHOR: lease
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_lease_one_runner_applies_and_a_standby_takes_over_when_it_is_lost() {
    let store = Store::new();
    let checkpoints = Checkpoints::new();
    let lease = TestLease::default();
    let first_sale = sell(&store, 1).await;
    let active = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .with_lease(lease.clone())
        .start(Revenue::default())
        .expect("start");
    active
        .wait_for(first_sale, WAIT)
        .await
        .expect("the first runner is active");
    let standby = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .with_lease(lease.clone())
        .start(Revenue::default())
        .expect("start");
    let second_sale = sell(&store, 2).await;
    active
        .wait_for(second_sale, WAIT)
        .await
        .expect("the active runner follows");
    assert!(!standby.status().active, "the standby waits for the lease");
    assert_eq!(standby.read(|r| r.applied), 0, "and applies nothing");

    // `notify_one` keeps a permit if the runner is between two waits.
    lease.revoke.notify_one();
    assert_eq!(active.wait_for(u64::MAX, WAIT).await, Err(WaitError::Stopped));
    let lost = active.stop().await;
    assert!(matches!(lost, Err(RunnerError::LeaseLost("revenue"))), "{lost:?}");
    let third_sale = sell(&store, 3).await;
    standby
        .wait_for(third_sale, WAIT)
        .await
        .expect("the standby takes over");
    let status = standby.status();
    assert!(status.active && status.running);
    let taken_over = standby.stop().await.expect("stop");
    // It resumed from the first runner's last checkpoint: at least the third
    // sale, at most all three (at-least-once).
    assert!((1..=3).contains(&taken_over.applied), "{taken_over:?}");
    assert_eq!(checkpoints.load("revenue").await.ok().flatten(), Some(third_sale));
}
// ANCHOR_END: lease

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_checkpoint_a_newer_holder_claimed_stops_fenced_before_applying() {
    let store = Store::new();
    let checkpoints = Checkpoints::new();
    let sale = sell(&store, 1).await;
    // A newer holder claimed the checkpoint: its fence is above the first
    // one this lease hands out.
    let claimed = checkpoints.claim("revenue", Fence::new(10)).await;
    assert_eq!(claimed, Ok(Claim::Claimed(None)));
    let runner = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .with_lease(TestLease::default())
        .start(Revenue::default())
        .expect("start");
    assert_eq!(runner.wait_for(sale, WAIT).await, Err(WaitError::Stopped));
    let fenced = runner.stop().await;
    assert!(
        matches!(fenced, Err(RunnerError::Fenced("revenue", fence)) if fence == Fence::new(10)),
        "{fenced:?}"
    );
    assert_eq!(checkpoints.load("revenue").await.ok().flatten(), None);
}

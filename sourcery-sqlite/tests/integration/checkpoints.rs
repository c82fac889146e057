//! Checkpoints in the SQLite file, and the projection runner resuming from
//! them: catch up, follow live, restart (a new store on the same file), and
//! resume after exactly what was processed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::CheckpointStore as _;
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::runner::ProjectionRunner;
use sourcery_core::store::EventStore;
use sourcery_sqlite::Store;

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sold {
    n: u32,
}

impl DomainEvent for Sold {
    const KIND: &'static str = "shop.sold";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted;

impl DomainEvent for Noted {
    const KIND: &'static str = "shop.noted";
}

/// Records every sale it applied, in order: a missed, repeated or reordered
/// event shows.
#[derive(Debug, Default)]
struct Sales {
    applied: Vec<u32>,
}

impl Projection for Sales {
    const KIND: &'static str = "sales";
    type Id = String;
    type Metadata = ();

    fn declare<S>(events: ProjectionEvents<S, Self>) -> ProjectionEvents<S, Self>
    where
        S: EventStore<Id = String, Metadata = ()>,
    {
        events.event::<Sold>()
    }
}

impl ApplyProjection<Sold> for Sales {
    fn apply_projection(&mut self, _: &String, event: &Sold, (): &()) {
        self.applied.push(event.n);
    }
}

async fn sell(store: &Store<String, ()>, n: u32) -> i64 {
    let mut tx = store.begin::<Unchecked>("shop", format!("shop-{}", n % 3), None);
    tx.append(Sold { n }, ()).expect("the event encodes");
    tx.commit()
        .await
        .expect("the commit succeeds")
        .expect("one event was written")
        .last_position
}

async fn note(store: &Store<String, ()>) -> i64 {
    let mut tx = store.begin::<Unchecked>("shop", "shop-0".to_owned(), None);
    tx.append(Noted, ()).expect("the event encodes");
    tx.commit()
        .await
        .expect("the commit succeeds")
        .expect("one event was written")
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_kept_per_name_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("checkpoints.db");
    let store: Store<String, ()> = Store::open(&path).await.expect("the store opens");
    let checkpoints = store.checkpoints();
    assert_eq!(checkpoints.load("a").await.expect("loads"), None);
    checkpoints.save("a", 3).await.expect("saves");
    checkpoints.save("b", 9).await.expect("saves");
    checkpoints.save("a", 5).await.expect("saves");
    assert_eq!(checkpoints.load("a").await.expect("loads"), Some(5));
    assert_eq!(checkpoints.load("b").await.expect("loads"), Some(9));
    drop((store, checkpoints));

    let store: Store<String, ()> = Store::open(&path).await.expect("the store reopens");
    let checkpoints = store.checkpoints();
    assert_eq!(checkpoints.load("a").await.expect("loads"), Some(5));
    assert_eq!(checkpoints.load("b").await.expect("loads"), Some(9));
    assert_eq!(checkpoints.load("c").await.expect("loads"), None);
    assert!(format!("{checkpoints:?}").contains("checkpoints.db"));

    let memory: Store<String, ()> = Store::open_in_memory().await.expect("the store opens");
    memory.checkpoints().save("a", 1).await.expect("saves");
    assert_eq!(memory.checkpoints().load("a").await.expect("loads"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_catches_up_follows_live_and_resumes_after_its_checkpoint() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("runner.db");

    // First run: history, then live events.
    let store: Store<String, ()> = Store::open(&path).await.expect("the store opens");
    for n in 1..=3 {
        sell(&store, n).await;
    }
    let running = ProjectionRunner::new(store.clone(), store.checkpoints())
        .start(Sales::default())
        .expect("the runner starts");
    sell(&store, 4).await;
    let last = note(&store).await;
    // A position the projection filters out is still reached.
    running.wait_for(last, WAIT).await.expect("the runner catches up");
    let sales = tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops in time")
        .expect("the runner stops cleanly");
    assert_eq!(sales.applied, [1, 2, 3, 4]);
    let saved = store
        .checkpoints()
        .load(Sales::KIND)
        .await
        .expect("the checkpoint loads")
        .expect("the runner saved a checkpoint when it stopped");
    assert_eq!(saved, last, "the checkpoint is where the runner had read to");
    drop(store);

    // While nothing runs, more sales.
    let store: Store<String, ()> = Store::open(&path).await.expect("the store reopens");
    sell(&store, 5).await;
    let sixth = sell(&store, 6).await;

    // Restart: the runner resumes after the checkpoint, with a fresh
    // projection, so it applies exactly the events after it.
    let running = ProjectionRunner::new(store.clone(), store.checkpoints())
        .start(Sales::default())
        .expect("the runner starts again");
    running
        .wait_for(sixth, WAIT)
        .await
        .expect("the runner catches up");
    assert_eq!(running.read(|sales| sales.applied.clone()), [5, 6]);
    let seventh = sell(&store, 7).await;
    running
        .wait_for(seventh, WAIT)
        .await
        .expect("the runner follows live");
    assert_eq!(running.read(|sales| sales.applied.clone()), [5, 6, 7]);
    assert_eq!(running.status().position, Some(seventh));
    let sales = tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the runner stops in time")
        .expect("the runner stops cleanly");
    assert_eq!(sales.applied, [5, 6, 7]);
    assert_eq!(
        store
            .checkpoints()
            .load(Sales::KIND)
            .await
            .expect("the checkpoint loads"),
        Some(seventh)
    );
}

//! The read-model runner over the in-memory store, with a read model that
//! records its transactions: how it cuts the log into batches.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sourcery_core::checkpoint::{Advance, Claim, Fence};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::ReadModelRunner;
use sourcery_core::runner::read_model::{ApplyInTransaction, Batch};
use sourcery_core::store::{EventFilter, EventStore, inmemory};

type Store = inmemory::Store<String, ()>;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Noted;

impl DomainEvent for Noted {
    const KIND: &'static str = "read-models.noted";
}

/// Commits every batch into a list of batches (the positions of each).
#[derive(Clone, Default)]
struct Recorded {
    transactions: Arc<Mutex<Vec<Vec<u64>>>>,
    checkpoint: Arc<Mutex<Option<u64>>>,
}

impl Recorded {
    fn transactions(&self) -> Vec<Vec<u64>> {
        self.transactions.lock().unwrap().clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl ApplyInTransaction<Store> for Recorded {
    type Error = Never;

    fn kind(&self) -> &'static str {
        "recorded"
    }

    fn name(&self) -> &'static str {
        "recorded.v1"
    }

    fn filters(&self) -> Vec<EventFilter<String, u64>> {
        vec![EventFilter::for_event(Noted::KIND)]
    }

    async fn claim(&self, _: Option<Fence>, _: Option<u64>) -> Result<Claim<u64>, Never> {
        Ok(Claim::Claimed(*self.checkpoint.lock().unwrap()))
    }

    async fn apply(
        &self,
        events: Batch<Store>,
        from: Option<u64>,
        through: u64,
        _: Option<Fence>,
    ) -> Result<Advance<u64>, Never> {
        let mut checkpoint = self.checkpoint.lock().unwrap();
        if *checkpoint != from {
            return Ok(Advance::Behind(checkpoint.unwrap_or(0)));
        }
        if !events.is_empty() {
            let positions = events.iter().map(|event| event.position).collect();
            self.transactions.lock().unwrap().push(positions);
        }
        *checkpoint = Some(through);
        Ok(Advance::Saved)
    }
}

async fn note(store: &Store) -> u64 {
    let mut tx = store.begin::<Unchecked>("noter", "s".to_owned(), None);
    tx.append(Noted, ()).unwrap();
    tx.commit().await.unwrap().expect("one event").last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_holds_at_most_batch_size_events() {
    let store = Store::new();
    let mut last = 0;
    for _ in 0..10 {
        last = note(&store).await;
    }
    let read_model = Recorded::default();
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(4).unwrap())
        .start(read_model.clone())
        .unwrap();
    runner.wait_for(last, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");
    let sizes: Vec<usize> = read_model.transactions().iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        vec![4, 4, 2],
        "ten events read in one page, committed four at a time"
    );
    let all: Vec<u64> = read_model.transactions().concat();
    assert_eq!(all, (1..=10).collect::<Vec<_>>(), "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_batch_gathers_events_committed_one_by_one() {
    let store = Store::new();
    let read_model = Recorded::default();
    // A linger far longer than the appends below take: they land in the
    // batch their first event opened.
    let runner = ReadModelRunner::new(store.clone())
        .batch_linger(Duration::from_secs(2))
        .start(read_model.clone())
        .unwrap();
    // The runner is running and waits for events once it has this one.
    let first = note(&store).await;
    runner.wait_for(first, WAIT).await.expect("the first batch");
    let mut last = 0;
    for _ in 0..5 {
        last = note(&store).await;
    }
    runner
        .wait_for(last, WAIT)
        .await
        .expect("committed once the linger ends");
    runner.stop().await.expect("stop");
    assert_eq!(
        read_model.transactions(),
        vec![vec![1], vec![2, 3, 4, 5, 6]],
        "the five commits in one transaction"
    );

    // Without a linger, events committed one by one while the runner
    // waits are committed as they come.
    let store = Store::new();
    let read_model = Recorded::default();
    let runner = ReadModelRunner::new(store.clone())
        .start(read_model.clone())
        .unwrap();
    for _ in 0..3 {
        let position = note(&store).await;
        runner.wait_for(position, WAIT).await.expect("committed");
    }
    runner.stop().await.expect("stop");
    assert_eq!(read_model.transactions(), vec![vec![1], vec![2], vec![3]]);
}

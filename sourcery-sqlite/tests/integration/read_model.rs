//! Transactional projections ([`ReadModel`]) on SQLite: the read model's
//! rows and its checkpoint commit in one write transaction, in the events'
//! file or in another one; a batch refused by a newer fence commits
//! nothing.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::{Advance, CheckpointStore as _, Claim, Fence};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::read_model::{ApplyInTransaction as _, Delivery};
use sourcery_core::runner::{ReadModelRunner, RunnerError};
use sourcery_core::store::EventStore;
use sourcery_sqlite::{ApplySql, ReadModel, ReadModelError, SqlEvents, SqlProjection, Store};

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: i64,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "read-model.noted";
}

/// One row per applied event, without a key: an event applied twice shows
/// as two rows.
struct Rows {
    fail_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("refused to apply {0}")]
    Refused(i64),
}

impl SqlProjection for Rows {
    const KIND: &'static str = "rows";
    type Id = String;
    type Metadata = ();
    type Error = RowsError;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Noted>()
    }
}

impl ApplySql<Noted> for Rows {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &Noted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), RowsError> {
        if self.fail_at == Some(event.n) {
            return Err(RowsError::Refused(event.n));
        }
        tx.prepare_cached("INSERT INTO rows (n, position) VALUES (?1, ?2)")?
            .execute((event.n, delivery.position()))?;
        Ok(())
    }
}

/// Opens the store at `path` and makes sure the read model's table is there.
async fn open(path: &Path) -> Store<String, ()> {
    let store = Store::open(path).await.expect("the store opens");
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS rows (n INTEGER NOT NULL, position INTEGER NOT NULL)")
        .unwrap();
    store
}

/// Appends `Noted { n }` for each `n`, one commit each; returns the last
/// position.
async fn note(store: &Store<String, ()>, numbers: std::ops::RangeInclusive<i64>) -> i64 {
    let mut last = 0;
    for n in numbers {
        let mut tx = store.begin::<Unchecked>("noter", format!("s{}", n % 3), None);
        tx.append(Noted { n }, ()).unwrap();
        last = tx.commit().await.unwrap().expect("one event").last_position;
    }
    last
}

fn applied(path: &Path) -> Vec<i64> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT n FROM rows ORDER BY n").unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_commits_its_rows_with_its_checkpoint_and_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let first = note(&store, 1..=30).await;
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(7).unwrap())
        .start(ReadModel::new(&store, Rows { fail_at: None }))
        .unwrap();
    runner.wait_for(first, WAIT).await.expect("caught up");
    assert_eq!(
        applied(&path),
        (1..=30).collect::<Vec<_>>(),
        "committed once waited for"
    );
    runner.stop().await.expect("stop");
    drop(store);

    // Another process, later: a new store on the same file.
    let store = open(&path).await;
    let missed = note(&store, 31..=40).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Rows { fail_at: None }))
        .unwrap();
    runner.wait_for(missed, WAIT).await.expect("catch-up");
    let live = note(&store, 41..=45).await;
    runner.wait_for(live, WAIT).await.expect("live");
    runner.stop().await.expect("stop");
    assert_eq!(applied(&path), (1..=45).collect::<Vec<_>>(), "each event once");
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), Some(live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_model_in_another_file_keeps_its_checkpoint_there() {
    let dir = tempfile::tempdir().unwrap();
    let events = open(&dir.path().join("events.sqlite")).await;
    let read_path = dir.path().join("read.sqlite");
    let read = open(&read_path).await;
    let last = note(&events, 1..=12).await;
    let runner = ReadModelRunner::new(events.clone())
        .start(ReadModel::new(&read, Rows { fail_at: None }))
        .unwrap();
    runner.wait_for(last, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");
    assert_eq!(applied(&read_path), (1..=12).collect::<Vec<_>>());
    assert_eq!(read.checkpoints().load("rows.v1").await.unwrap(), Some(last));
    assert_eq!(events.checkpoints().load("rows.v1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_rolls_its_batch_back_and_names_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let before = note(&store, 1..=4).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Rows { fail_at: None }))
        .unwrap();
    runner.wait_for(before, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");

    // 5 to 9 are read in one page, so applied in one batch; 7 fails.
    let failing = note(&store, 5..=9).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Rows { fail_at: Some(7) }))
        .unwrap();
    assert!(runner.wait_for(failing, WAIT).await.is_err(), "the runner stops");
    let error = runner.stop().await.expect_err("the handler's error");
    let RunnerError::Projection("rows", source) = &error else {
        panic!("expected a projection error, got {error:?}");
    };
    let Some(ReadModelError::Handler { kind, position, .. }) = source.downcast_ref::<ReadModelError>() else {
        panic!("expected a handler error, got {source:?}");
    };
    assert_eq!((kind.as_str(), *position), (Noted::KIND, before + 3));
    assert_eq!(
        applied(&path),
        (1..=4).collect::<Vec<_>>(),
        "nothing of the batch"
    );
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), Some(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_an_old_fence_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let last = note(&store, 1..=3).await;
    let events = store
        .load_events(&[sourcery_core::store::EventFilter::for_event(Noted::KIND)])
        .await
        .unwrap();
    let read_model = ReadModel::new(&store, Rows { fail_at: None });
    let (old, new) = (Fence::new(1), Fence::new(2));
    assert_eq!(read_model.claim(Some(old)).await.unwrap(), Claim::Claimed(None));
    // A newer holder claims the checkpoint.
    assert_eq!(
        store.checkpoints().claim("rows.v1", new).await.unwrap(),
        Claim::Claimed(None)
    );
    let refused = read_model.apply(events.clone(), last, Some(old)).await.unwrap();
    assert_eq!(refused, Advance::Fenced(new));
    assert!(
        applied(&path).is_empty(),
        "the old holder's rows were rolled back"
    );
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), None);

    assert_eq!(
        read_model.apply(events, last, Some(new)).await.unwrap(),
        Advance::Saved
    );
    assert_eq!(applied(&path), vec![1, 2, 3]);
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), Some(last));
}

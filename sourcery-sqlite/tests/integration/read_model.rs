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
use sourcery_core::runner::read_model::{ApplyInTransaction as _, Delivery, Tables};
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

    // Retried as it is, it fails again; parked, it is skipped, with a record.
    let read_model = ReadModel::new(&store, Rows { fail_at: Some(7) });
    read_model.park(before + 3, "amount out of range").await.unwrap();
    let runner = ReadModelRunner::new(store.clone()).start(read_model).unwrap();
    runner
        .wait_for(failing, WAIT)
        .await
        .expect("past the parked event");
    runner.stop().await.expect("stop");
    assert_eq!(
        applied(&path),
        vec![1, 2, 3, 4, 5, 6, 8, 9],
        "all but the parked event"
    );
    let read_model = ReadModel::new(&store, Rows { fail_at: None });
    let parked = read_model.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].position, parked[0].reason.as_str()),
        (before + 3, "amount out of range")
    );
    assert!(read_model.unpark(before + 3).await.unwrap());
    assert!(read_model.parked().await.unwrap().is_empty());
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
    assert_eq!(
        read_model.claim(Some(old), Some(last)).await.unwrap(),
        Claim::Claimed(None)
    );
    // A newer holder claims the checkpoint.
    assert_eq!(
        store.checkpoints().claim("rows.v1", new).await.unwrap(),
        Claim::Claimed(None)
    );
    let refused = read_model
        .apply(events.clone(), None, last, Some(old))
        .await
        .unwrap();
    assert_eq!(refused, Advance::Fenced(new));
    assert!(
        applied(&path).is_empty(),
        "the old holder's rows were rolled back"
    );
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), None);

    assert_eq!(
        read_model.apply(events, None, last, Some(new)).await.unwrap(),
        Advance::Saved
    );
    assert_eq!(applied(&path), vec![1, 2, 3]);
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), Some(last));
}

#[derive(Debug, Serialize, Deserialize)]
struct Deposited {
    amount: i64,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "read-model.deposited";
}

/// Version 1: `balances (account, balance)`.
struct Balances;

impl SqlProjection for Balances {
    const KIND: &'static str = "balances";
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Deposited>()
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, tables: &Tables) -> rusqlite::Result<()> {
        let table = tables.name("balances");
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (account TEXT PRIMARY KEY, balance INTEGER NOT NULL)"
        ))
    }
}

impl ApplySql<Deposited> for Balances {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> rusqlite::Result<()> {
        let table = delivery.table("balances");
        tx.prepare_cached(&format!(
            "INSERT INTO {table} (account, balance) VALUES (?1, ?2) \
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance"
        ))?
        .execute((delivery.aggregate_id(), event.amount))?;
        Ok(())
    }
}

/// Version 2: also counts the deposits.
struct BalancesV2;

impl SqlProjection for BalancesV2 {
    const KIND: &'static str = "balances";
    const VERSION: u32 = 2;
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Deposited>()
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, tables: &Tables) -> rusqlite::Result<()> {
        let table = tables.name("balances");
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} \
             (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, deposits INTEGER NOT NULL)"
        ))
    }
}

impl ApplySql<Deposited> for BalancesV2 {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &Deposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> rusqlite::Result<()> {
        let table = delivery.table("balances");
        tx.prepare_cached(&format!(
            "INSERT INTO {table} (account, balance, deposits) VALUES (?1, ?2, 1) \
             ON CONFLICT (account) DO UPDATE \
             SET balance = balance + excluded.balance, deposits = deposits + 1"
        ))?
        .execute((delivery.aggregate_id(), event.amount))?;
        Ok(())
    }
}

async fn deposit(store: &Store<String, ()>, from: i64, count: i64) -> i64 {
    let mut last = 0;
    for n in from..from + count {
        let mut tx = store.begin::<Unchecked>("account", format!("a{}", n % 5), None);
        tx.append(Deposited { amount: n }, ()).unwrap();
        last = tx.commit().await.unwrap().expect("one event").last_position;
    }
    last
}

/// `(account, balance, deposits)` as a replay of the log computes them.
async fn replayed_balances(store: &Store<String, ()>) -> Vec<(String, i64, i64)> {
    let events = store
        .load_events(&[sourcery_core::store::EventFilter::for_event(Deposited::KIND)])
        .await
        .unwrap();
    let mut balances = std::collections::BTreeMap::<String, (i64, i64)>::new();
    for event in events {
        let deposited: Deposited = serde_json::from_slice(&event.data).unwrap();
        let entry = balances.entry(event.aggregate_id).or_default();
        entry.0 += deposited.amount;
        entry.1 += 1;
    }
    balances.into_iter().map(|(a, (b, d))| (a, b, d)).collect()
}

/// Version 2 is rebuilt beside version 1 while writers append and readers
/// query the `balances` view; once caught up the view switches in one
/// transaction; nothing is lost or applied twice; version 1 is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_rebuilt_beside_the_live_one_and_switched_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let history = deposit(&store, 1, 200).await;
    let v1 = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Balances))
        .unwrap();
    v1.wait_for(history, WAIT).await.expect("version 1 caught up");
    let live = ReadModel::new(&store, Balances);
    assert_eq!(live.live_version().await.unwrap(), Some(1));

    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (path, reading) = (path.clone(), std::sync::Arc::clone(&reading));
        std::thread::spawn(move || {
            let connection = rusqlite::Connection::open(path).unwrap();
            connection.busy_timeout(WAIT).unwrap();
            let mut columns_seen = Vec::new();
            while reading.load(std::sync::atomic::Ordering::Acquire) {
                // Stepped, so that it reads the schema as of now.
                let mut statement = connection
                    .prepare("SELECT * FROM balances LIMIT 1")
                    .expect("the view answers");
                let mut rows = statement.query([]).expect("the view answers throughout");
                let columns = rows
                    .next()
                    .expect("a row")
                    .map_or(0, |row| row.as_ref().column_count());
                if columns_seen.last() != Some(&columns) {
                    columns_seen.push(columns);
                }
            }
            columns_seen
        })
    };
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { deposit(&store, 201, 300).await })
    };
    let v2 = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(25).unwrap())
        .start(ReadModel::new(&store, BalancesV2))
        .unwrap();
    let last = writer.await.unwrap();
    v2.wait_for(last, WAIT).await.expect("version 2 caught up");
    v1.wait_for(last, WAIT).await.expect("version 1 kept up");
    reading.store(false, std::sync::atomic::Ordering::Release);
    let columns_seen = reader.join().unwrap();
    assert_eq!(
        columns_seen,
        vec![2, 3],
        "readers saw version 1, then version 2, never an error"
    );
    assert_eq!(live.live_version().await.unwrap(), Some(2));

    let expected = replayed_balances(&store).await;
    let read = |sql: &str| -> Vec<(String, i64, i64)> {
        let connection = rusqlite::Connection::open(&path).unwrap();
        let mut statement = connection.prepare(sql).unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        read("SELECT account, balance, deposits FROM balances ORDER BY account"),
        expected,
        "version 2 equals a replay: nothing lost, nothing twice"
    );
    let expected_v1: Vec<(String, i64, i64)> = expected.iter().map(|(a, b, _)| (a.clone(), *b, 0)).collect();
    assert_eq!(
        read("SELECT account, balance, 0 FROM balances_v1 ORDER BY account"),
        expected_v1,
        "version 1 kept serving, exactly once too"
    );

    v1.stop().await.expect("stop version 1");
    let current = ReadModel::new(&store, BalancesV2);
    assert!(matches!(
        current.drop_version(2).await,
        Err(ReadModelError::Live { version: 2, .. })
    ));
    current.drop_version(1).await.expect("version 1 dropped");
    let left: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'balances_v1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the old table is gone");
    assert_eq!(store.checkpoints().load("balances.v1").await.unwrap(), None);
    assert_eq!(store.checkpoints().load("balances.v2").await.unwrap(), Some(last));
    v2.stop().await.expect("stop version 2");
}

/// Records, per event, whether it came as a replay.
struct Replays;

impl SqlProjection for Replays {
    const KIND: &'static str = "replays";
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Noted>()
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, _: &Tables) -> rusqlite::Result<()> {
        tx.execute_batch("CREATE TABLE IF NOT EXISTS replays (n INTEGER NOT NULL, replay INTEGER NOT NULL)")
    }
}

impl ApplySql<Noted> for Replays {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &Noted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT INTO replays (n, replay) VALUES (?1, ?2)")?
            .execute((event.n, delivery.is_replay()))?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_at_the_first_start_is_a_replay_and_later_events_are_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let history = note(&store, 1..=5).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Replays))
        .unwrap();
    // Once the runner has applied the history, it has started: what comes
    // next is live.
    runner.wait_for(history, WAIT).await.expect("history");
    let live = note(&store, 6..=8).await;
    runner.wait_for(live, WAIT).await.expect("live");
    runner.stop().await.expect("stop");
    // Written while the runner is down: live, not history, when it resumes.
    let missed = note(&store, 9..=10).await;
    let runner = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Replays))
        .unwrap();
    runner.wait_for(missed, WAIT).await.expect("caught up");
    runner.stop().await.expect("stop");
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mut statement = connection
        .prepare("SELECT n, replay FROM replays ORDER BY n")
        .unwrap();
    let seen: Vec<(i64, bool)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(i64, bool)> = (1..=10).map(|n| (n, n <= 5)).collect();
    assert_eq!(
        seen, expected,
        "the first five were history when the version started"
    );
}

/// Two runners without a lease read the same checkpoint and apply the same
/// batch: the second one's advance finds the checkpoint moved and rolls its
/// rows back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_a_stale_checkpoint_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let last = note(&store, 1..=3).await;
    let events = store
        .load_events(&[sourcery_core::store::EventFilter::for_event(Noted::KIND)])
        .await
        .unwrap();
    let first = ReadModel::new(&store, Rows { fail_at: None });
    let second = ReadModel::new(&store, Rows { fail_at: None });
    assert_eq!(first.claim(None, Some(last)).await.unwrap(), Claim::Claimed(None));
    assert_eq!(
        second.claim(None, Some(last)).await.unwrap(),
        Claim::Claimed(None)
    );
    assert_eq!(
        first.apply(events.clone(), None, last, None).await.unwrap(),
        Advance::Saved
    );
    assert_eq!(
        second.apply(events, None, last, None).await.unwrap(),
        Advance::Behind(last),
        "the checkpoint moved since the second read it"
    );
    assert_eq!(applied(&path), vec![1, 2, 3], "each event once");
}

/// Two read models from one scan: one ahead (it ran alone before), one new;
/// each applies every event once, from its own checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_run_together_from_one_scan_each_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite");
    let store = open(&path).await;
    let early = note(&store, 1..=5).await;
    let alone = ReadModelRunner::new(store.clone())
        .start(ReadModel::new(&store, Rows { fail_at: None }))
        .unwrap();
    alone.wait_for(early, WAIT).await.expect("alone");
    alone.stop().await.expect("stop");

    let last = note(&store, 6..=10).await;
    let together = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(3).unwrap())
        .start_all(
            sourcery_core::runner::read_model::ReadModels::new()
                .with(ReadModel::new(&store, Rows { fail_at: None }))
                .with(ReadModel::new(&store, Replays)),
        )
        .unwrap();
    together.wait_for(last, WAIT).await.expect("together");
    assert_eq!(
        together.status().started_from,
        None,
        "the scan started at the least advanced member's checkpoint"
    );
    together.stop().await.expect("stop");
    assert_eq!(
        applied(&path),
        (1..=10).collect::<Vec<_>>(),
        "the one ahead applied 6 to 10 once"
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let replayed: Vec<i64> = connection
        .prepare("SELECT n FROM replays ORDER BY n")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        replayed,
        (1..=10).collect::<Vec<_>>(),
        "the new one applied everything once"
    );
    assert_eq!(store.checkpoints().load("rows.v1").await.unwrap(), Some(last));
    assert_eq!(store.checkpoints().load("replays.v1").await.unwrap(), Some(last));
}

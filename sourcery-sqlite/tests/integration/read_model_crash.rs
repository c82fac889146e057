//! Crash safety of a transactional projection ([`ReadModel`]): a child
//! process runs a [`ReadModelRunner`] over a log that keeps growing and is
//! killed with SIGKILL at a random moment while it applies, 50 times, on
//! the same file. After each kill the read model equals a replay of the
//! log up to its checkpoint, row for row: every event at or below the
//! checkpoint applied once, none above it. At the end the read model is
//! run to the head in this process and equals a replay of the whole log.
//!
//! The read model would show a double apply or a lost event twice over: a
//! table of one row per applied event, without a key (an event applied
//! twice is two rows), and one upserted row per stream with the count and
//! the sum of its events.
//!
//! Before each run the parent appends a backlog; the child appends more
//! while its runner applies. The runner's batches are of 1 to 50 events.
//! The child reports each batch it begins (`begun`), each event its handler
//! wrote (`applied`) and each batch committed (`committed`): the parent
//! kills it a random delay after one of its first writes (a delay of up to
//! one and a half times the batches' mean duration), so kills fall inside a
//! batch's open transaction, around its commit, between batches and in the
//! next batch before it writes. The test prints where they fell
//! (`--nocapture`).
//!
//! The child is this test binary again, running `read_model_crash_child`
//! with `SOURCERY_SQLITE_READ_MODEL_CRASH_CHILD` set.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::{Advance, Claim, Fence};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::read_model::{ApplyInTransaction, Batch, Delivery};
use sourcery_core::runner::{ReadModelRunner, WaitError};
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_sqlite::{ApplySql, ReadModel, SqlEvents, SqlProjection, Store};

use super::{CALL_TIMEOUT, bounded};

/// Holds the file's path in the child.
const CHILD: &str = "SOURCERY_SQLITE_READ_MODEL_CRASH_CHILD";
/// `<run> <batch size> <events to append> <first n>`, in the child.
const SPEC: &str = "SOURCERY_SQLITE_READ_MODEL_CRASH_SPEC";
const KILLS: u32 = 50;
/// The largest batch the runner is given.
const MAX_BATCH: u64 = 50;
/// The largest backlog the parent appends before a run.
const MAX_BACKLOG: u64 = 80;
/// The most events a child appends while it applies.
const MAX_CHILD_APPENDS: u64 = 30;
/// The kill falls after one of the first this many writes of a run.
const MAX_WRITES_BEFORE_KILL: u64 = 120;
/// Events spread over this many streams (so the upserts meet).
const STREAMS: u64 = 5;
/// One event in this many is of a kind the read model does not consume.
const SKIPPED_EVERY: u64 = 6;
/// The mean batch duration assumed before one is measured.
const FIRST_BATCH_GUESS: Duration = Duration::from_millis(3);
/// How long the parent waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// The child gives up after this long (the parent kills it long before).
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// What the child's lines start with (the harness may print the test's
/// name before the first one, on the same line).
const MARK: &str = "read-model-crash:";

/// An event the read model counts.
#[derive(Debug, Serialize, Deserialize)]
struct Counted {
    n: i64,
}

impl DomainEvent for Counted {
    const KIND: &'static str = "read-model-crash.counted";
}

/// An event the read model does not consume: its checkpoint passes over it.
#[derive(Debug, Serialize, Deserialize)]
struct Skipped {
    n: i64,
}

impl DomainEvent for Skipped {
    const KIND: &'static str = "read-model-crash.skipped";
}

type TestStore = Store<String, ()>;

/// `applied (position, stream, n, run)`: a row per applied event, no key;
/// `totals (stream primary key, count, sum)`: upserted per event.
struct Tallies {
    /// Which run applied a row (for a failure's message; not compared).
    run: i64,
    /// Whether to report each write on standard output (in the child).
    report: bool,
}

impl SqlProjection for Tallies {
    const KIND: &'static str = "read-model-crash";
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Counted>()
    }
}

impl ApplySql<Counted> for Tallies {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &Counted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), rusqlite::Error> {
        tx.prepare_cached("INSERT INTO applied (position, stream, n, run) VALUES (?1, ?2, ?3, ?4)")?
            .execute((delivery.position(), delivery.aggregate_id(), event.n, self.run))?;
        tx.prepare_cached(
            "INSERT INTO totals (stream, count, sum) VALUES (?1, 1, ?2) \
             ON CONFLICT (stream) DO UPDATE SET count = count + 1, sum = sum + excluded.sum",
        )?
        .execute((delivery.aggregate_id(), event.n))?;
        if self.report {
            // Written (one line, one write) once the transaction holds it.
            println!("{MARK}applied {}", delivery.position());
        }
        Ok(())
    }
}

/// The read model, reporting each batch it begins and each it commits.
struct Reported<T>(T);

impl<T: ApplyInTransaction<TestStore>> ApplyInTransaction<TestStore> for Reported<T> {
    type Error = T::Error;

    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn name(&self) -> &str {
        self.0.name()
    }

    fn filters(&self) -> Vec<EventFilter<String, i64>> {
        self.0.filters()
    }

    async fn claim(&self, fence: Option<Fence>, head: Option<i64>) -> Result<Claim<i64>, T::Error> {
        self.0.claim(fence, head).await
    }

    async fn apply(
        &self,
        events: Batch<TestStore>,
        from: Option<i64>,
        through: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, T::Error> {
        println!("{MARK}begun {} {through}", events.len());
        let advanced = self.0.apply(events, from, through, fence).await?;
        if advanced == Advance::Saved {
            println!("{MARK}committed {through}");
        }
        Ok(advanced)
    }
}

/// A row of `applied`, as compared: `(position, stream, n)`.
type Row = (i64, String, i64);
/// A row of `totals`: `(stream, count, sum)`.
type Total = (String, i64, i64);

/// An event of the log: its position, stream, and `n` if it is counted.
#[derive(Debug)]
struct Logged {
    position: i64,
    stream: String,
    counted: Option<i64>,
}

/// What a replay of `log` up to `through` writes.
fn replay(log: &[Logged], through: Option<i64>) -> (Vec<Row>, Vec<Total>) {
    let mut rows = Vec::new();
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for event in log.iter().filter(|event| Some(event.position) <= through) {
        if let Some(n) = event.counted {
            rows.push((event.position, event.stream.clone(), n));
            let total = totals.entry(event.stream.clone()).or_default();
            total.0 += 1;
            total.1 += n;
        }
    }
    rows.sort();
    let totals = totals
        .into_iter()
        .map(|(stream, (count, sum))| (stream, count, sum))
        .collect();
    (rows, totals)
}

/// The read model and its checkpoint, read in one snapshot.
struct ReadModelState {
    checkpoint: Option<i64>,
    rows: Vec<Row>,
    totals: Vec<Total>,
}

fn read_state(path: &Path) -> ReadModelState {
    let mut connection = rusqlite::Connection::open(path).expect("the file opens");
    let tx = connection.transaction().expect("a read transaction");
    let checkpoint: Option<i64> = tx
        .query_row(
            "SELECT position FROM sourcery_checkpoints WHERE name = ?1",
            [format!("{}.v1", Tallies::KIND)],
            |row| row.get(0),
        )
        .optional()
        .expect("the checkpoint reads")
        .flatten();
    let rows = tx
        .prepare("SELECT position, stream, n FROM applied ORDER BY position, stream, n")
        .expect("the rows' query")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("the rows read")
        .collect::<Result<Vec<Row>, _>>()
        .expect("the rows read");
    let totals = tx
        .prepare("SELECT stream, count, sum FROM totals ORDER BY stream")
        .expect("the totals' query")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("the totals read")
        .collect::<Result<Vec<Total>, _>>()
        .expect("the totals read");
    ReadModelState {
        checkpoint,
        rows,
        totals,
    }
}

/// Checks the read model against a replay of `log` up to its checkpoint,
/// and returns the checkpoint.
fn check(path: &Path, log: &[Logged], context: &str) -> Option<i64> {
    let state = read_state(path);
    let head = log.last().map(|event| event.position);
    assert!(
        state.checkpoint <= head,
        "{context}: the checkpoint {:?} is beyond the head {head:?}",
        state.checkpoint
    );
    let beyond: Vec<&Row> = state
        .rows
        .iter()
        .filter(|row| Some(row.0) > state.checkpoint)
        .collect();
    assert!(
        beyond.is_empty(),
        "{context}: rows beyond the checkpoint {:?} were committed: {beyond:?}",
        state.checkpoint
    );
    let (rows, totals) = replay(log, state.checkpoint);
    if state.rows != rows {
        let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
        for row in &state.rows {
            *seen.entry(row.0).or_default() += 1;
        }
        let twice: Vec<i64> = seen
            .iter()
            .filter(|&(_, &count)| count > 1)
            .map(|(&position, _)| position)
            .collect();
        let missing: Vec<i64> = rows
            .iter()
            .map(|row| row.0)
            .filter(|position| !seen.contains_key(position))
            .collect();
        let first = state
            .rows
            .iter()
            .zip(&rows)
            .position(|(actual, expected)| actual != expected)
            .unwrap_or_else(|| state.rows.len().min(rows.len()));
        panic!(
            "{context}: the read model ({} rows) is not a replay of the log up to the checkpoint {:?} \
             ({} rows); applied more than once: {twice:?}; missing: {missing:?}; first difference at \
             row {first}: {:?} where the replay has {:?}",
            state.rows.len(),
            state.checkpoint,
            rows.len(),
            state.rows.get(first),
            rows.get(first)
        );
    }
    assert_eq!(
        state.totals, totals,
        "{context}: the totals are those of a replay up to the checkpoint {:?}",
        state.checkpoint
    );
    state.checkpoint
}

/// Opens the store at `path` and creates the read model's tables.
async fn open(path: &Path) -> TestStore {
    let store = bounded(Store::open(path)).await.expect("the store opens");
    rusqlite::Connection::open(path)
        .expect("the file opens")
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS applied (position INTEGER NOT NULL, stream TEXT NOT NULL, \
                 n INTEGER NOT NULL, run INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY, count INTEGER NOT NULL, \
                 sum INTEGER NOT NULL);",
        )
        .expect("the read model's tables");
    store
}

/// Appends `count` events from `first_n` on, in commits of up to three
/// events on one stream; one in [`SKIPPED_EVERY`] is not counted.
async fn append(store: &TestStore, first_n: u64, count: u64) {
    let mut n = first_n;
    let end = first_n + count;
    while n < end {
        let stream = format!("s{}", n % STREAMS);
        let mut tx = store.begin::<Unchecked>("tally", stream, None);
        for _ in 0..(1 + n % 3).min(end - n) {
            let value = i64::try_from(n).expect("small");
            if n % SKIPPED_EVERY == SKIPPED_EVERY - 1 {
                tx.append(Skipped { n: value }, ()).expect("the event encodes");
            } else {
                tx.append(Counted { n: value }, ()).expect("the event encodes");
            }
            n += 1;
        }
        bounded(tx.commit()).await.expect("the append");
    }
}

async fn load_log(store: &TestStore) -> Vec<Logged> {
    let events = bounded(store.load_events(&[
        EventFilter::for_event(Counted::KIND),
        EventFilter::for_event(Skipped::KIND),
    ]))
    .await
    .expect("the log loads");
    let mut log: Vec<Logged> = events
        .iter()
        .map(|event| Logged {
            position: event.position,
            stream: event.aggregate_id.clone(),
            counted: (event.kind == Counted::KIND).then(|| {
                event
                    .decode::<Counted>(store.codec())
                    .expect("a counted event decodes")
                    .n
            }),
        })
        .collect();
    log.sort_by_key(|event| event.position);
    log
}

/// Where the kills fell.
#[derive(Debug, Default)]
struct Tally {
    /// Inside a batch's transaction, after its handler wrote: rolled back.
    in_transaction: u32,
    /// The events written by those rolled-back transactions.
    rolled_back_writes: usize,
    /// In a batch, before its first write: nothing of it committed.
    before_writes: u32,
    /// After a batch committed, before it was reported.
    committed_unreported: u32,
    /// Between batches.
    between_batches: u32,
}

/// The mean time from a batch's `begun` to its `committed`, as seen by the
/// parent.
#[derive(Debug, Default)]
struct Durations {
    total: Duration,
    batches: u32,
}

impl Durations {
    fn mean(&self) -> Duration {
        if self.batches == 0 {
            FIRST_BATCH_GUESS
        } else {
            self.total / self.batches
        }
    }
}

/// What the child reported before it was killed.
#[derive(Debug, Default)]
struct Reports {
    /// The events the handler wrote.
    writes: u64,
    /// The batch begun and not reported committed: its events, its
    /// `through`, how many of its events the handler wrote, and when the
    /// parent read its `begun`.
    open: Option<(usize, i64, usize, Instant)>,
    /// The last `through` reported committed.
    committed: Option<i64>,
    running: bool,
}

impl Reports {
    /// Takes one line; returns the error the child stopped with, if it says
    /// so.
    fn take(&mut self, line: &str, durations: &mut Durations) -> Option<String> {
        let (_, report) = line.split_once(MARK)?;
        let mut words = report.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("running"), None, None) => self.running = true,
            (Some("begun"), Some(events), Some(through)) => {
                self.open = Some((
                    events.parse().expect("a count"),
                    through.parse().expect("a position"),
                    0,
                    Instant::now(),
                ));
            }
            (Some("applied"), Some(_), None) => {
                self.writes += 1;
                if let Some(open) = &mut self.open {
                    open.2 += 1;
                }
            }
            (Some("committed"), Some(through), None) => {
                self.committed = Some(through.parse().expect("a position"));
                if let Some((_, _, _, begun)) = self.open.take() {
                    durations.total += begun.elapsed();
                    durations.batches += 1;
                }
            }
            _ => return Some(report.to_owned()),
        }
        None
    }
}

impl Tally {
    /// Counts where the kill fell, given the checkpoint found after it.
    fn count(&mut self, reports: &Reports, found: Option<i64>) {
        match reports.open {
            None => self.between_batches += 1,
            Some((_, through, _, _)) if Some(through) <= found => self.committed_unreported += 1,
            Some((_, _, 0, _)) => self.before_writes += 1,
            Some((_, _, written, _)) => {
                self.in_transaction += 1;
                self.rolled_back_writes += written;
            }
        }
    }
}

/// Starts the child on `path` with `spec`, waits for its `kill_after`th
/// write, then for `delay_per_mille` thousandths of the mean batch, kills it
/// with SIGKILL and returns what it reported.
fn run_and_kill(
    path: &Path,
    spec: &str,
    kill_after: u64,
    delay_per_mille: u64,
    durations: &mut Durations,
    context: &str,
) -> Reports {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &test_name!(read_model_crash_child),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, path)
        .env(SPEC, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let (received, reader) = super::lines_of(child.stdout.take().expect("the child's stdout"));
    let mut reports = Reports::default();
    while reports.writes < kill_after {
        let line = match received.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{context}: the child stopped reporting: {error} ({reports:?})");
            }
        };
        if let Some(stopped) = reports.take(&line, durations) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{context}: the child says: {stopped}");
        }
    }
    // Not waiting for anything to happen: this picks the moment of the
    // kill, after the write just reported. The assertions hold wherever it
    // falls.
    let delay = durations.mean() * u32::try_from(delay_per_mille).expect("small") / 1000;
    super::spin_for(delay);
    child.kill().expect("SIGKILL reaches the child");
    child.wait().expect("the child is reaped");
    // What the child wrote before the kill is in the pipe.
    while let Ok(line) = received.recv_timeout(LINE_TIMEOUT) {
        if let Some(stopped) = reports.take(&line, durations) {
            panic!("{context}: the child says: {stopped}");
        }
    }
    reader.join().expect("the reader thread ends");
    assert!(reports.running, "{context}: the child said it was running");
    reports
}

/// Runs the read model in this process until it has passed `head`, and
/// stops it.
async fn run_to_head(store: &TestStore, head: i64) {
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(100).expect("not zero"))
        .start(ReadModel::new(
            store,
            Tallies {
                run: i64::from(KILLS),
                report: false,
            },
        ))
        .expect("the runner starts");
    runner
        .wait_for(head, CALL_TIMEOUT)
        .await
        .expect("the read model reaches the head");
    bounded(runner.stop()).await.expect("the runner stops cleanly");
}

#[test]
fn a_killed_read_model_runner_leaves_a_replay_of_the_log_up_to_its_checkpoint() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("read-model-crash.db");
    let mut random = super::Random::from_clock("read-model crash test");
    let seed = random.seed;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = runtime.block_on(open(&path));
    let mut next_n: u64 = 0;
    let mut checkpoint: Option<i64> = None;
    let mut tally = Tally::default();
    let mut durations = Durations::default();

    for run in 0..KILLS {
        // Two events at least: one of them is counted.
        let backlog = 2 + random.next(MAX_BACKLOG - 1);
        runtime.block_on(append(&store, next_n, backlog));
        next_n += backlog;
        let log = runtime.block_on(load_log(&store));
        let waiting = log
            .iter()
            .filter(|event| event.counted.is_some() && Some(event.position) > checkpoint)
            .count();
        let batch = 1 + random.next(MAX_BATCH);
        // The child writes at least the events waiting (unless it is
        // killed); after the first three quarters of them, more are left.
        let waiting = u64::try_from(waiting).expect("small");
        let kill_after = 1 + random.next((waiting * 3 / 4).clamp(1, MAX_WRITES_BEFORE_KILL));
        let delay_per_mille = random.next(1500);
        let appends = random.next(MAX_CHILD_APPENDS + 1);
        let child_n = 1_000_000 * (u64::from(run) + 1);
        let spec = format!("{run} {batch} {appends} {child_n}");
        let context = format!("run {run} (seed {seed}, batch size {batch}, kill after write {kill_after})");

        let reports = run_and_kill(
            &path,
            &spec,
            kill_after,
            delay_per_mille,
            &mut durations,
            &context,
        );

        let log = runtime.block_on(load_log(&store));
        let found = check(&path, &log, &context);
        assert!(
            found >= checkpoint,
            "{context}: the checkpoint went back from {checkpoint:?} to {found:?}"
        );
        assert!(
            reports.committed <= found,
            "{context}: the child reported a commit through {:?}, the checkpoint is {found:?}",
            reports.committed
        );
        tally.count(&reports, found);
        checkpoint = found;
    }

    // The read model run to the head here equals a replay of the whole log.
    let log = runtime.block_on(load_log(&store));
    let head = log.last().map(|event| event.position).expect("a log");
    let last_counted = log
        .iter()
        .rev()
        .find(|event| event.counted.is_some())
        .map(|event| event.position);
    runtime.block_on(run_to_head(&store, head));
    let context = format!("after the kills (seed {seed})");
    let found = check(&path, &log, &context);
    assert!(
        found >= last_counted,
        "{context}: the checkpoint {found:?} covers the last counted event at {last_counted:?}"
    );
    assert!(
        tally.in_transaction > 0,
        "seed {seed}: no kill fell inside an open transaction after it wrote ({tally:?}): the test \
         tested less than it should"
    );
    let (rows, _) = replay(&log, Some(head));
    eprintln!(
        "read-model crash test (seed {seed}): {KILLS} kills over {} events ({} counted) in {:.1?}; kills \
         inside an open transaction after it wrote: {} ({} writes rolled back), in a batch before its first \
         write: {}, after a commit before its report: {}, between batches: {}; mean batch {:.1?}",
        log.len(),
        rows.len(),
        started.elapsed(),
        tally.in_transaction,
        tally.rolled_back_writes,
        tally.before_writes,
        tally.committed_unreported,
        tally.between_batches,
        durations.mean()
    );
}

/// The child: runs the read model with the spec's batch size and appends
/// the spec's events meanwhile, reporting as it goes, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_crash_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let spec = std::env::var(SPEC).expect("the child's spec");
    let [run, batch, appends, first_n] = spec
        .split(' ')
        .map(|word| word.parse::<u64>().expect("a number"))
        .collect::<Vec<_>>()[..]
    else {
        panic!("{SPEC}={spec} is not `run batch appends first_n`");
    };
    let store = open(Path::new(&path)).await;
    let read_model = Reported(ReadModel::new(
        &store,
        Tallies {
            run: i64::try_from(run).expect("small"),
            report: true,
        },
    ));
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(usize::try_from(batch).expect("small")).expect("not zero"))
        .start(read_model)
        .expect("the runner starts");
    println!("{MARK}running");
    // The log grows while the runner applies.
    append(&store, first_n, appends).await;
    match runner.wait_for(i64::MAX, CHILD_LIFETIME).await {
        Err(WaitError::Stopped) => println!("{MARK}stopped {:?}", runner.stop().await),
        other => println!("{MARK}gave up {other:?}"),
    }
}

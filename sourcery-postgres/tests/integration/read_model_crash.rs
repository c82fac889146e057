//! Crash safety of a transactional projection ([`ReadModel`]): a child
//! process runs a [`ReadModelRunner`] over a log that keeps growing and is
//! killed with SIGKILL at a random moment while it applies, 50 times, on
//! one schema. After each kill (once the server has ended the child's
//! sessions, rolling back the transaction it had open) the read model
//! equals a replay of the log up to its checkpoint, row for row: every
//! event at or below the checkpoint applied once, none above it. At the end
//! the read model is run to the head in this process and equals a replay
//! of the whole log.
//!
//! The read model would show a double apply or a lost event twice over: a
//! table of one row per applied event, without a key (an event applied
//! twice is two rows), and one upserted row per stream with the count and
//! the sum of its events.
//!
//! Before each run the parent appends a backlog; the child appends more
//! while its runner applies. The runner's batches are of 1 to 50 events,
//! and in one run of four of 100 to 300, so that transactions stay open
//! long enough on the server for many kills to land inside one. The child
//! reports each batch it begins (`begun`), each event its handler wrote
//! (`applied`, once the statements have run in the transaction) and each
//! batch committed (`committed`): the parent kills it a random delay after
//! one of its first writes (up to one and a half times what a batch of the
//! run's size takes, on average), so kills fall inside an open transaction,
//! around its commit, between batches and in the next batch before it
//! writes. The test prints where they fell.
//!
//! The child is this test binary again, running `read_model_crash_child`
//! with `SOURCERY_POSTGRES_READ_MODEL_CRASH_CHILD` set.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::num::NonZeroUsize;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::{Advance, Claim, Fence};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::read_model::{ApplyInTransaction, Batch, Delivery};
use sourcery_core::runner::{ReadModelRunner, WaitError};
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_postgres::{ApplySql, ReadModel, ReadModelTransaction, SqlEvents, SqlProjection, Store};
use sqlx::PgPool;

/// `<schema> <application name> <run> <batch size> <events to append>
/// <first n>`, in the child.
const CHILD: &str = "SOURCERY_POSTGRES_READ_MODEL_CRASH_CHILD";
const KILLS: u32 = 50;
/// The largest batch of most runs.
const MAX_BATCH: u64 = 50;
/// The batches of one run in [`LARGE_EVERY`] are of this size and up to
/// twice it.
const LARGE_BATCH: u64 = 100;
const LARGE_EVERY: u32 = 4;
/// The largest backlog the parent appends before a run of small batches.
const MAX_BACKLOG: u64 = 80;
/// The most a backlog exceeds the batch size in runs of large batches.
const LARGE_EXTRA: u64 = 30;
/// The most events a child appends while it applies.
const MAX_CHILD_APPENDS: u64 = 20;
/// The kill falls after one of the first this many writes of a run.
const MAX_WRITES_BEFORE_KILL: u64 = 120;
/// Events spread over this many streams (so the upserts meet).
const STREAMS: u64 = 5;
/// One event in this many is of a kind the read model does not consume.
const SKIPPED_EVERY: u64 = 6;
/// The mean time per event of a batch assumed before one is measured.
const FIRST_EVENT_GUESS: Duration = Duration::from_micros(500);
/// How long the parent waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds every database call of the parent, in seconds.
const CALL: u64 = 30;
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

type PgStore = Store<String, ()>;

/// Writes to stderr directly: the harness captures `eprintln!` of passing
/// tests, and the figures are meant to be seen.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// xorshift64, seeded from the clock; the seed is printed, so a failed run
/// can be told apart and reasoned about.
struct Random {
    state: u64,
    seed: u64,
}

impl Random {
    fn from_clock() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| u64::from(elapsed.subsec_nanos()) ^ elapsed.as_secs())
            | 1;
        say(&format!("read-model crash test seed: {seed}"));
        Self { state: seed, seed }
    }

    /// A number below `below`.
    fn next(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }
}

/// The test's name as the harness knows it (`read_model_crash::name`).
fn test_name(function: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_owned(),
    }
}

/// The child's output, line by line, read on a thread of its own so that
/// each line is waited for with a bound.
fn lines_of(stdout: ChildStdout) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let (send, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (lines, reader)
}

/// `applied (position, stream, n, run)`: a row per applied event, no key;
/// `totals (stream primary key, count, sum)`: upserted per event.
struct Tallies {
    /// The schema of both tables.
    schema: String,
    /// Which run applied a row (for a failure's message; not compared).
    run: i64,
    /// Whether to report each write on standard output (in the child).
    report: bool,
}

impl SqlProjection for Tallies {
    const KIND: &'static str = "read-model-crash";
    type Id = String;
    type Metadata = ();
    type Error = sqlx::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Counted>()
    }
}

impl ApplySql<Counted> for Tallies {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Counted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), sqlx::Error> {
        let schema = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".applied (position, stream, n, run) VALUES ($1, $2, $3, $4)"
        ))
        .bind(delivery.position())
        .bind(delivery.aggregate_id())
        .bind(event.n)
        .bind(self.run)
        .execute(&mut **tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".totals AS totals (stream, count, sum) VALUES ($1, 1, $2) \
             ON CONFLICT (stream) DO UPDATE SET count = totals.count + 1, sum = totals.sum + EXCLUDED.sum"
        ))
        .bind(delivery.aggregate_id())
        .bind(event.n)
        .execute(&mut **tx)
        .await?;
        if self.report {
            // The server holds both writes, in the open transaction.
            println!("{MARK}applied {}", delivery.position());
        }
        Ok(())
    }
}

/// The read model, reporting each batch it begins and each it commits.
struct Reported<T>(T);

impl<T: ApplyInTransaction<PgStore>> ApplyInTransaction<PgStore> for Reported<T> {
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
        events: Batch<PgStore>,
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

async fn read_state(pool: &PgPool, schema: &str) -> ReadModelState {
    let mut tx = pool.begin().await.expect("a read transaction");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .expect("one snapshot");
    let checkpoint: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT position FROM \"{schema}\".sourcery_checkpoints WHERE name = $1"
    ))
    .bind(format!("{}.v1", Tallies::KIND))
    .fetch_optional(&mut *tx)
    .await
    .expect("the checkpoint reads")
    .flatten();
    let rows = sqlx::query_as(&format!(
        "SELECT position, stream, n FROM \"{schema}\".applied ORDER BY position, stream, n"
    ))
    .fetch_all(&mut *tx)
    .await
    .expect("the rows read");
    let totals = sqlx::query_as(&format!(
        "SELECT stream, count, sum FROM \"{schema}\".totals ORDER BY stream"
    ))
    .fetch_all(&mut *tx)
    .await
    .expect("the totals read");
    tx.commit().await.expect("the read ends");
    ReadModelState {
        checkpoint,
        rows,
        totals,
    }
}

/// Checks the read model against a replay of `log` up to its checkpoint,
/// and returns the checkpoint.
async fn check(store: &PgStore, log: &[Logged], context: &str) -> Option<i64> {
    let state = support::bounded(
        "reading the read model",
        CALL,
        read_state(store.pool(), store.schema()),
    )
    .await;
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

/// Creates the read model's tables in the store's schema.
async fn create_tables(store: &PgStore) {
    let schema = store.schema();
    for statement in [
        format!(
            "CREATE TABLE \"{schema}\".applied (position bigint NOT NULL, stream text NOT NULL, \
             n bigint NOT NULL, run bigint NOT NULL)"
        ),
        format!(
            "CREATE TABLE \"{schema}\".totals (stream text PRIMARY KEY, count bigint NOT NULL, \
             sum bigint NOT NULL)"
        ),
    ] {
        sqlx::query(&statement)
            .execute(store.pool())
            .await
            .expect("the read model's tables");
    }
}

/// Appends `count` events from `first_n` on, in commits of up to three
/// events on one stream; one in [`SKIPPED_EVERY`] is not counted.
async fn append(store: &PgStore, first_n: u64, count: u64) {
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
        support::bounded("an append", CALL, tx.commit())
            .await
            .expect("the append");
    }
}

async fn load_log(store: &PgStore) -> Vec<Logged> {
    let events = support::bounded(
        "loading the log",
        CALL,
        store.load_events(&[
            EventFilter::for_event(Counted::KIND),
            EventFilter::for_event(Skipped::KIND),
        ]),
    )
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

/// Waits until the server has ended every session of the killed child
/// (and so rolled back the transaction it had open): then nothing of it is
/// still on its way to a commit.
async fn sessions_ended(pool: &PgPool, application_name: &str) {
    support::bounded("the killed child's sessions ending", CALL, async {
        loop {
            let sessions: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                    .bind(application_name)
                    .fetch_one(pool)
                    .await
                    .expect("the server's sessions");
            if sessions == 0 {
                break;
            }
            // The server ends them as it reads the closed sockets.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// Where the kills fell.
#[derive(Debug, Default)]
struct Tally {
    /// Inside a batch's transaction, after its handler wrote: rolled back.
    in_transaction: u32,
    /// Of those, in a run of large batches.
    in_large_transaction: u32,
    /// The events written by those rolled-back transactions.
    rolled_back_writes: usize,
    /// In a batch, before its first write: nothing of it committed.
    before_writes: u32,
    /// After a batch committed, before it was reported.
    committed_unreported: u32,
    /// Between batches.
    between_batches: u32,
}

/// The mean time per event from a batch's `begun` to its `committed`, as
/// seen by the parent.
#[derive(Debug, Default)]
struct Durations {
    total: Duration,
    events: u32,
}

impl Durations {
    fn per_event(&self) -> Duration {
        if self.events == 0 {
            FIRST_EVENT_GUESS
        } else {
            self.total / self.events
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
    /// Takes one line; returns what the child said if it is not a report
    /// (it stopped).
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
                if let Some((events, _, _, begun)) = self.open.take()
                    && events > 0
                {
                    durations.total += begun.elapsed();
                    durations.events += u32::try_from(events).expect("small");
                }
            }
            _ => return Some(report.to_owned()),
        }
        None
    }
}

impl Tally {
    /// Prints where the kills fell, with the size of the log and the time.
    fn say(&self, seed: u64, log: &[Logged], started: Instant, durations: &[Durations; 2]) {
        let counted = log.iter().filter(|event| event.counted.is_some()).count();
        say(&format!(
            "read-model crash test (seed {seed}): {KILLS} kills over {} events ({counted} counted) in \
             {:.1?}; kills inside an open transaction after it wrote: {} ({} in the {} runs of large \
             batches; {} writes rolled back), in a batch before its first write: {}, after a commit \
             before its report: {}, between batches: {}; {:.0?} per event of a batch of up to \
             {MAX_BATCH} events, {:.0?} of a large one",
            log.len(),
            started.elapsed(),
            self.in_transaction,
            self.in_large_transaction,
            KILLS / LARGE_EVERY,
            self.rolled_back_writes,
            self.before_writes,
            self.committed_unreported,
            self.between_batches,
            durations[0].per_event(),
            durations[1].per_event()
        ));
    }

    /// Counts where the kill fell, given the checkpoint found after it.
    fn count(&mut self, reports: &Reports, found: Option<i64>, large: bool) {
        match reports.open {
            None => self.between_batches += 1,
            Some((_, through, _, _)) if Some(through) <= found => self.committed_unreported += 1,
            Some((_, _, 0, _)) => self.before_writes += 1,
            Some((_, _, written, _)) => {
                self.in_transaction += 1;
                self.in_large_transaction += u32::from(large);
                self.rolled_back_writes += written;
            }
        }
    }
}

/// Starts the child with `spec`, waits for its `kill_after`th write, then
/// for `delay_per_mille` thousandths of what a batch of `batch` events
/// takes on average, kills it with SIGKILL and returns what it reported.
fn run_and_kill(
    spec: &str,
    kill_after: u64,
    delay_per_mille: u64,
    batch: u64,
    durations: &mut Durations,
    context: &str,
) -> Reports {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &test_name("read_model_crash_child"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let (received, reader) = lines_of(child.stdout.take().expect("the child's stdout"));
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
    let delay = durations.per_event()
        * u32::try_from(batch).expect("small")
        * u32::try_from(delay_per_mille).expect("small")
        / 1000;
    let spin = Instant::now();
    while spin.elapsed() < delay {
        std::hint::spin_loop();
    }
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
async fn run_to_head(store: &PgStore, head: i64) {
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(100).expect("not zero"))
        .start(ReadModel::new(
            store,
            Tallies {
                schema: store.schema().to_owned(),
                run: i64::from(KILLS),
                report: false,
            },
        ))
        .expect("the runner starts");
    runner
        .wait_for(head, Duration::from_secs(CALL))
        .await
        .expect("the read model reaches the head");
    support::bounded("stopping the runner", CALL, runner.stop())
        .await
        .expect("the runner stops cleanly");
}

#[test]
fn a_killed_read_model_runner_leaves_a_replay_of_the_log_up_to_its_checkpoint() {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let Some(store) = runtime.block_on(support::store_with::<String, ()>(4)) else {
        return;
    };
    runtime.block_on(create_tables(&store));
    let mut random = Random::from_clock();
    let seed = random.seed;
    let mut next_n: u64 = 0;
    let mut checkpoint: Option<i64> = None;
    let mut tally = Tally::default();
    // Of the runs of small batches, and of large ones.
    let mut durations = [Durations::default(), Durations::default()];

    for run in 0..KILLS {
        let large = run % LARGE_EVERY == LARGE_EVERY - 1;
        let batch = if large {
            LARGE_BATCH + random.next(LARGE_BATCH + 1)
        } else {
            1 + random.next(MAX_BATCH)
        };
        // Two events at least, so one is counted; a large batch's worth in
        // runs of large batches.
        let backlog = if large {
            batch + 2 + random.next(LARGE_EXTRA - 1)
        } else {
            2 + random.next(MAX_BACKLOG - 1)
        };
        runtime.block_on(append(&store, next_n, backlog));
        next_n += backlog;
        let log = runtime.block_on(load_log(&store));
        let waiting = log
            .iter()
            .filter(|event| event.counted.is_some() && Some(event.position) > checkpoint)
            .count();
        // The child writes at least the events waiting (unless it is
        // killed); after the first three quarters of them, more are left.
        let waiting = u64::try_from(waiting).expect("small");
        let kill_after = 1 + random.next((waiting * 3 / 4).clamp(1, MAX_WRITES_BEFORE_KILL));
        let delay_per_mille = random.next(1500);
        let appends = random.next(MAX_CHILD_APPENDS + 1);
        let child_n = 1_000_000 * (u64::from(run) + 1);
        let application_name = format!("read-model-crash-{}-{run}", std::process::id());
        let spec = format!(
            "{} {application_name} {run} {batch} {appends} {child_n}",
            store.schema()
        );
        let context = format!("run {run} (seed {seed}, batch size {batch}, kill after write {kill_after})");

        let reports = run_and_kill(
            &spec,
            kill_after,
            delay_per_mille,
            batch,
            &mut durations[usize::from(large)],
            &context,
        );

        let found = runtime.block_on(async {
            sessions_ended(store.pool(), &application_name).await;
            let log = load_log(&store).await;
            check(&store, &log, &context).await
        });
        assert!(
            found >= checkpoint,
            "{context}: the checkpoint went back from {checkpoint:?} to {found:?}"
        );
        assert!(
            reports.committed <= found,
            "{context}: the child reported a commit through {:?}, the checkpoint is {found:?}",
            reports.committed
        );
        tally.count(&reports, found, large);
        checkpoint = found;
    }

    // The read model run to the head here equals a replay of the whole log.
    let (log, found) = runtime.block_on(async {
        let log = load_log(&store).await;
        let head = log.last().map(|event| event.position).expect("a log");
        run_to_head(&store, head).await;
        let found = check(&store, &log, &format!("after the kills (seed {seed})")).await;
        (log, found)
    });
    let last_counted = log
        .iter()
        .rev()
        .find(|event| event.counted.is_some())
        .map(|event| event.position);
    assert!(
        found >= last_counted,
        "after the kills (seed {seed}): the checkpoint {found:?} covers the last counted event at \
         {last_counted:?}"
    );
    assert!(
        tally.in_transaction > 0,
        "seed {seed}: no kill fell inside an open transaction after it wrote ({tally:?}): the test \
         tested less than it should"
    );
    tally.say(seed, &log, started, &durations);
}

/// The child: runs the read model with the spec's batch size and appends
/// the spec's events meanwhile, reporting as it goes, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_crash_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let [schema, application_name, run, batch, appends, first_n] = spec.split(' ').collect::<Vec<_>>()[..]
    else {
        panic!("{CHILD}={spec} is not `schema application_name run batch appends first_n`");
    };
    let number = |word: &str| word.parse::<u64>().expect("a number");
    let pool = support::pool(4, application_name)
        .await
        .expect("DATABASE_URL is set");
    let store = PgStore::with_schema(pool, schema).expect("a valid schema");
    let read_model = Reported(ReadModel::new(
        &store,
        Tallies {
            schema: schema.to_owned(),
            run: i64::try_from(number(run)).expect("small"),
            report: true,
        },
    ));
    let runner = ReadModelRunner::new(store.clone())
        .batch_size(NonZeroUsize::new(usize::try_from(number(batch)).expect("small")).expect("not zero"))
        .start(read_model)
        .expect("the runner starts");
    println!("{MARK}running");
    // The log grows while the runner applies.
    append(&store, number(first_n), number(appends)).await;
    match runner.wait_for(i64::MAX, CHILD_LIFETIME).await {
        Err(WaitError::Stopped) => println!("{MARK}stopped {:?}", runner.stop().await),
        other => println!("{MARK}gave up {other:?}"),
    }
}

//! A paused holder of a read model's lease, resumed after a standby took
//! over: none of its writes land, and the read model equals a single
//! replay of the log ([`ReadModel`], [`Lease`], fencing).
//!
//! A child process runs a [`ReadModelRunner`] with a [`Lease`] (50 ms
//! heartbeat and retry) on a read model of one row per applied event in a
//! table without a key (an event applied twice is two rows), each row
//! tagged with the run that wrote it. Ten rounds, on one schema:
//!
//! 1. The parent appends a backlog, starts the child and waits until the
//!    child has committed it.
//! 2. It appends a group of events in one commit and waits until the
//!    child, in the batch of that group, has written a chosen event of it
//!    (the first, a middle one or the last: each round another). The
//!    child's handler reports `holding` there, with its data session's
//!    backend pid, and waits for a line on its standard input: what
//!    follows finds it inside an open transaction that wrote, whatever the
//!    timing. The parent stops it with SIGSTOP and sees it stopped (`ps`),
//!    checks on the server that that session is idle in a transaction
//!    that wrote, and writes the line into the pipe: the child reads it
//!    when it runs again, so SIGCONT is what lets it go on.
//! 3. It terminates the child's lease connection (its data connection
//!    stays), starts a standby runner here with its own lease, appends
//!    more events and waits until the standby has committed up to the
//!    head; the child is still stopped after that.
//! 4. It resumes the child with SIGCONT: the child writes the rest of its
//!    batch and tries to commit it with its old fence. The parent waits
//!    for the child's report of the refusal and of how its runner stopped,
//!    and for its exit.
//! 5. It checks that the batch was refused by the standby's fence and the
//!    runner stopped `Fenced`; the read model equals a replay of the log
//!    up to the checkpoint, row for row; the child's rows are exactly the
//!    events of the batches it committed before the pause, none of the
//!    paused batch; and the checkpoint is the standby's (its position and
//!    fence), as it was before the child resumed, never behind the last
//!    round's.
//!
//! In these rounds the child's read model has its idle-in-transaction
//! timeout ([`ReadModel::idle_in_transaction_timeout`]) disabled, so that
//! how long it stays paused changes nothing; the standby's keeps the
//! default (10 s).
//!
//! The paused transaction only inserts into a table without a key, so the
//! standby needs none of its locks. A second test runs one round with a
//! read model that also upserts a row per stream: there the paused
//! holder's open transaction holds the row lock the standby's first batch
//! needs, and the standby waits for it — not a deadlock (the wait ends
//! with the holder's transaction: when it resumes and is refused, or when
//! its session ends). With the child's timeout disabled nothing ends that
//! session while it is paused, so the takeover is held up for as long as
//! the pause lasts (with the default timeout, for up to 10 s). The test
//! shows the wait on the server (the standby's session blocked by the
//! child's) and that it ends, with the same checks, once the child
//! resumes.
//!
//! A third test runs that round with the child's timeout at
//! [`IDLE_TIMEOUT`] (400 ms) and keeps the child stopped through its first
//! checks: PostgreSQL ends the paused holder's data session once it has
//! sat idle in its transaction that long (SQLSTATE 25P03), the
//! transaction is rolled back and its row locks go, and the standby
//! commits up to the head within [`UNBLOCKED_WITHIN`] (5 s) of the
//! takeover's appends. The test checks that the data session is gone from
//! `pg_stat_activity` and that the read model is a replay of the log up to
//! the standby's checkpoint, row for row, none of the paused batch's rows
//! in it. Then it resumes the child: the next statement of its batch gets
//! the server's error (25P03, sent as it closed the connection), its
//! runner stops with [`RunnerError::Projection`], and it committed nothing
//! more: the read model is as it was.
//!
//! Not reached here: a holder paused between its batch's advance (the last
//! statement) and its commit. Its advance passed the fence before the
//! standby claimed the checkpoint, and holds the checkpoint's row lock, so
//! the standby's claim waits for it; resumed, the holder commits its batch
//! (the fence allowed it when checked), and the standby's claim then reads
//! the checkpoint after it: its writes land, once. (That is with a pause
//! shorter than the holder's idle-in-transaction timeout, or none; past
//! it, the server ends the holder's session first, its batch is rolled
//! back, and the standby's claim goes on.)
//!
//! The child is this test binary again, running `read_model_pause_child`
//! with `SOURCERY_POSTGRES_READ_MODEL_PAUSE_CHILD` set. It is killed with
//! SIGKILL and reaped when the parent lets go of it, on every path
//! (a failed assertion included), so no stopped process stays behind.

use crate::support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::checkpoint::{Advance, Claim, Fence};
use sourcery_core::event::DomainEvent;
use sourcery_core::runner::read_model::{ApplyInTransaction, Batch, Delivery, RunningReadModel};
use sourcery_core::runner::{ReadModelRunner, RunnerError, WaitError};
use sourcery_core::store::{EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::{ApplySql, Lease, ReadModel, ReadModelTransaction, SqlEvents, SqlProjection, Store};
use sqlx::PgPool;
use tokio::runtime::Runtime;

/// `<schema> <application name> <run> <n to hold after> <rows|upserts>
/// <idle-in-transaction timeout in ms, 0 for none>`, in the child.
const CHILD: &str = "SOURCERY_POSTGRES_READ_MODEL_PAUSE_CHILD";
/// What the child's lines start with (the harness may print the test's
/// name before the first one, on the same line).
const MARK: &str = "read-model-pause:";
/// The checkpoint's and the lease's name: `<KIND>.v<VERSION>`.
const NAME: &str = "read-model-pause.v1";
/// The rounds of the first test.
const ROUNDS: i64 = 10;
/// In round `r`, the child is paused after writing event
/// `HOLD_AT[r % 5]` (from 0) of the group: the first, the middle, the
/// last, then the others.
const HOLD_AT: [i64; 5] = [0, 2, 4, 1, 3];
/// Events appended one per commit before the child starts.
const BACKLOG: i64 = 6;
/// Events appended in one commit: the child's paused batch.
const GROUP: i64 = 5;
/// Events appended one per commit after the takeover.
const TAKEOVER_APPENDS: i64 = 4;
/// The runners' batch size (the group fits in one batch).
const BATCH: usize = 8;
/// The lease's heartbeat and retry interval, in both processes.
const BEAT: Duration = Duration::from_millis(50);
/// How long the parent waits for one line of the child's output, for the
/// child's exit, for a runner to reach a position.
const WAIT: Duration = Duration::from_secs(30);
/// Bounds every database call of the parent, in seconds.
const CALL: u64 = 30;
/// How long the parent waits for `ps` to show the child stopped.
const STATE_WAIT: Duration = Duration::from_secs(10);
/// The child's idle-in-transaction timeout in the third test.
const IDLE_TIMEOUT: Duration = Duration::from_millis(400);
/// How long the standby of the third test has, once the takeover's events
/// are appended, to commit up to the head, the child still paused.
const UNBLOCKED_WITHIN: Duration = Duration::from_secs(5);
/// The child gives up after this long (the parent is done long before).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

type PgStore = Store<String, ()>;

/// Writes to stderr directly: the harness captures `eprintln!` of passing
/// tests, and the figures are meant to be seen.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: i64,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "read-model-pause.noted";
}

/// `applied (position, n, run)`: a row per applied event, no key; with
/// `upserts`, also `totals (stream primary key, count)`, upserted per
/// event.
struct Rows {
    schema: String,
    /// Which run wrote a row.
    run: i64,
    upserts: bool,
    /// In the child: reports each write on standard output, and after
    /// writing the event of this `n`, reports `holding` and waits for the
    /// parent's line on standard input.
    hold_after: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error("a statement of the read model failed")]
    Sql(#[from] sqlx::Error),
    #[error("the parent's line did not come: {0}")]
    NoLine(String),
}

impl SqlProjection for Rows {
    const KIND: &'static str = "read-model-pause";
    type Id = String;
    type Metadata = ();
    type Error = RowsError;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<Noted>()
    }
}

impl ApplySql<Noted> for Rows {
    async fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &Noted,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> Result<(), RowsError> {
        let schema = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".applied (position, n, run) VALUES ($1, $2, $3)"
        ))
        .bind(delivery.position())
        .bind(event.n)
        .bind(self.run)
        .execute(&mut **tx)
        .await?;
        if self.upserts {
            sqlx::query(&format!(
                "INSERT INTO \"{schema}\".totals AS totals (stream, count) VALUES ($1, 1) \
                 ON CONFLICT (stream) DO UPDATE SET count = totals.count + 1"
            ))
            .bind(delivery.aggregate_id())
            .execute(&mut **tx)
            .await?;
        }
        if let Some(hold_after) = self.hold_after {
            // The server holds the writes, in the open transaction.
            println!("{MARK}applied {}", delivery.position());
            if event.n == hold_after {
                // Its data session, for the parent to find on the server.
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut **tx)
                    .await?;
                println!("{MARK}holding {} {pid}", delivery.position());
                parents_line().await.map_err(RowsError::NoLine)?;
            }
        }
        Ok(())
    }
}

/// Waits (bounded) for the line `resume` on standard input.
async fn parents_line() -> Result<(), String> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    match tokio::time::timeout(CHILD_LIFETIME, read).await {
        Ok(Ok(Ok(line))) if line.trim_end() == "resume" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// The read model, reporting each batch it begins (its events, `through`
/// and fence) and what came of it.
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
        println!(
            "{MARK}begun {} {through} {}",
            events.len(),
            fence.map_or(0, Fence::get)
        );
        let advanced = self.0.apply(events, from, through, fence).await?;
        match advanced {
            Advance::Saved => println!("{MARK}committed {through}"),
            Advance::Fenced(newer) => println!("{MARK}refused fenced {}", newer.get()),
            Advance::Behind(saved) => println!("{MARK}refused behind {saved}"),
        }
        Ok(advanced)
    }
}

fn quick_lease(store: &PgStore) -> Lease {
    Lease::new(store).retry_interval(BEAT).heartbeat(BEAT)
}

fn read_model(store: &PgStore, run: i64, upserts: bool, hold_after: Option<i64>) -> ReadModel<Rows> {
    ReadModel::new(
        store,
        Rows {
            schema: store.schema().to_owned(),
            run,
            upserts,
            hold_after,
        },
    )
}

/// Appends `Noted { n }` for each of `numbers` to `stream`, in one commit;
/// returns the last position.
async fn append(store: &PgStore, stream: &str, numbers: Range<i64>) -> i64 {
    let events: Vec<_> = numbers
        .map(|n| PersistableEvent {
            id: EventId::new(),
            kind: Noted::KIND.to_owned(),
            schema_version: 1,
            data: serde_json::to_vec(&Noted { n }).expect("the event encodes"),
            metadata: (),
        })
        .collect();
    let events = NonEmpty::from_vec(events).expect("events to append");
    support::bounded(
        "an append",
        CALL,
        store.append("noter", &stream.to_owned(), None, events),
    )
    .await
    .expect("the append")
    .last_position
}

/// Appends `count` events from `first` on, one commit each, over three
/// streams; returns the last position.
async fn append_each(store: &PgStore, first: i64, count: i64) -> i64 {
    let mut last = 0;
    for n in first..first + count {
        last = append(store, &format!("s{}", n % 3), n..n + 1).await;
    }
    last
}

async fn create_tables(store: &PgStore) {
    let schema = store.schema();
    for statement in [
        format!(
            "CREATE TABLE \"{schema}\".applied (position bigint NOT NULL, n bigint NOT NULL, \
             run bigint NOT NULL)"
        ),
        format!("CREATE TABLE \"{schema}\".totals (stream text PRIMARY KEY, count bigint NOT NULL)"),
    ] {
        support::bounded(
            "creating a table",
            CALL,
            sqlx::query(&statement).execute(store.pool()),
        )
        .await
        .expect("the read model's tables");
    }
}

/// A row of `applied`: `(position, n, run)`.
type Row = (i64, i64, i64);

/// The read model and its checkpoint, read in one snapshot.
#[derive(Debug, PartialEq, Eq)]
struct ReadModelState {
    /// The checkpoint's position and fence.
    checkpoint: (Option<i64>, Option<i64>),
    /// By position, then run.
    rows: Vec<Row>,
    /// `(stream, count)`, by stream.
    totals: Vec<(String, i64)>,
}

async fn read_state(pool: &PgPool, schema: &str) -> ReadModelState {
    let mut tx = pool.begin().await.expect("a read transaction");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .expect("one snapshot");
    let checkpoint: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT position, fence FROM \"{schema}\".sourcery_checkpoints WHERE name = $1"
    ))
    .bind(NAME)
    .fetch_optional(&mut *tx)
    .await
    .expect("the checkpoint reads");
    let rows = sqlx::query_as(&format!(
        "SELECT position, n, run FROM \"{schema}\".applied ORDER BY position, run"
    ))
    .fetch_all(&mut *tx)
    .await
    .expect("the rows read");
    let totals = sqlx::query_as(&format!(
        "SELECT stream, count FROM \"{schema}\".totals ORDER BY stream"
    ))
    .fetch_all(&mut *tx)
    .await
    .expect("the totals read");
    tx.commit().await.expect("the read ends");
    ReadModelState {
        checkpoint: checkpoint.unwrap_or_default(),
        rows,
        totals,
    }
}

async fn state(store: &PgStore) -> ReadModelState {
    support::bounded(
        "reading the read model",
        CALL,
        read_state(store.pool(), store.schema()),
    )
    .await
}

/// What a replay of the log up to `through` writes: `(position, n)` by
/// position, and `(stream, count)` by stream.
async fn replay(store: &PgStore, through: Option<i64>) -> (Vec<(i64, i64)>, Vec<(String, i64)>) {
    let events = support::bounded(
        "loading the log",
        CALL,
        store.load_events(&[EventFilter::for_event(Noted::KIND)]),
    )
    .await
    .expect("the log loads");
    let mut rows = Vec::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for event in events.iter().filter(|event| Some(event.position) <= through) {
        let noted: Noted = serde_json::from_slice(&event.data).expect("an event decodes");
        rows.push((event.position, noted.n));
        *totals.entry(event.aggregate_id.clone()).or_default() += 1;
    }
    rows.sort_unstable();
    (rows, totals.into_iter().collect())
}

/// Checks that `found` is what a replay of the log up to its checkpoint
/// writes: its rows (one per event, no event twice, none missing) and,
/// with `upserts`, its totals.
async fn check_replay(store: &PgStore, found: &ReadModelState, upserts: bool, context: &str) {
    let (replayed, totals) = replay(store, found.checkpoint.0).await;
    let rows: Vec<(i64, i64)> = found.rows.iter().map(|&(position, n, _)| (position, n)).collect();
    if rows != replayed {
        let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for &(position, _, run) in &found.rows {
            seen.entry(position).or_default().push(run);
        }
        let twice: Vec<_> = seen.iter().filter(|(_, runs)| runs.len() > 1).collect();
        let missing: Vec<i64> = replayed
            .iter()
            .map(|row| row.0)
            .filter(|position| !seen.contains_key(position))
            .collect();
        panic!(
            "{context}: the read model ({} rows) is not a replay of the log up to the checkpoint \
             {:?} ({} rows); applied more than once (position: runs): {twice:?}; missing: {missing:?}",
            rows.len(),
            found.checkpoint,
            replayed.len()
        );
    }
    if upserts {
        assert_eq!(found.totals, totals, "{context}: the totals are a replay's");
    }
}

/// Who wrote a round's rows.
#[derive(Debug)]
struct Runs {
    /// The last round's checkpoint: the round's rows are above it.
    previous: Option<i64>,
    /// The child's last commit before the pause.
    committed_before: Option<i64>,
    child: i64,
    standby: i64,
}

/// Checks that of the round's `rows`, the child's are those of the
/// batches it committed before the pause and the standby's all after,
/// none of the paused batch (its writes at `paused`) the child's.
fn check_runs(rows: &[Row], runs: &Runs, paused: &[i64], context: &str) {
    let this_round: Vec<Row> = rows
        .iter()
        .copied()
        .filter(|&(position, _, _)| Some(position) > runs.previous)
        .collect();
    let misplaced: Vec<&Row> = this_round
        .iter()
        .filter(|&&(position, _, run)| {
            let expected = if Some(position) <= runs.committed_before {
                runs.child
            } else {
                runs.standby
            };
            run != expected
        })
        .collect();
    assert!(
        misplaced.is_empty(),
        "{context}: rows of the wrong run ({runs:?}): {misplaced:?}"
    );
    let from_paused: Vec<&Row> = rows
        .iter()
        .filter(|&&(position, _, run)| run == runs.child && paused.contains(&position))
        .collect();
    assert!(
        from_paused.is_empty(),
        "{context}: rows of the paused batch landed: {from_paused:?}"
    );
    assert!(
        this_round.iter().any(|&(_, _, run)| run == runs.child),
        "{context}: the child committed rows before the pause (so the checks above check its rows)"
    );
}

/// The sessions of `application_name`: `(pid, state, whether its
/// transaction wrote)`.
async fn sessions(pool: &PgPool, application_name: &str) -> Vec<(i32, Option<String>, bool)> {
    support::bounded(
        "listing sessions",
        CALL,
        sqlx::query_as(
            "SELECT pid, state, backend_xid IS NOT NULL FROM pg_stat_activity \
             WHERE application_name = $1 ORDER BY pid",
        )
        .bind(application_name)
        .fetch_all(pool),
    )
    .await
    .expect("the server's sessions")
}

/// Waits (bounded) until the server has ended every session of
/// `application_name`.
async fn sessions_ended(pool: &PgPool, application_name: &str) {
    support::bounded("the child's sessions ending", CALL, async {
        while !sessions(pool, application_name).await.is_empty() {
            // The server ends them as it reads the closed sockets.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// Whether a session of `application_name` waits for a lock `holder`
/// holds.
async fn blocked_by(pool: &PgPool, application_name: &str, holder: i32) -> bool {
    support::bounded(
        "reading the server's lock waits",
        CALL,
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
             WHERE application_name = $1 AND $2 = ANY (pg_blocking_pids(pid)))",
        )
        .bind(application_name)
        .bind(holder)
        .fetch_one(pool),
    )
    .await
    .expect("the server's lock waits")
}

/// The generation of the lease's latest holder.
async fn lease_generation(store: &PgStore) -> i64 {
    support::bounded(
        "reading the lease's generation",
        CALL,
        sqlx::query_scalar(&format!(
            "SELECT generation FROM \"{}\".sourcery_leases WHERE name = $1",
            store.schema()
        ))
        .bind(NAME)
        .fetch_one(store.pool()),
    )
    .await
    .expect("the lease's generation")
}

/// What the child reported so far.
#[derive(Debug, Default)]
struct Reports {
    running: bool,
    /// Each batch begun: its events, its `through`, its fence.
    batches: Vec<(usize, i64, u64)>,
    /// The positions written in the last batch begun.
    written: Vec<i64>,
    /// The last `through` committed.
    committed: Option<i64>,
    /// Where the handler holds: the position, and the backend pid of its
    /// data session.
    holding: Option<(i64, i32)>,
    /// What refused a batch: `fenced <generation>` or `behind <position>`.
    refused: Option<String>,
    /// How the runner stopped: `fenced <generation>`, `lease-lost`,
    /// `projection database <SQLSTATE>` (or `projection io <kind>`,
    /// `projection otherwise <error>`), or `otherwise <what stop
    /// returned>`.
    stopped: Option<String>,
}

impl Reports {
    /// Takes one line; returns what the child said if it is not a report.
    fn take(&mut self, line: &str) -> Result<(), String> {
        // The harness's own lines.
        let Some((_, report)) = line.split_once(MARK) else {
            return Ok(());
        };
        let (word, rest) = report.split_once(' ').unwrap_or((report, ""));
        let number = |word: &str| word.parse::<i64>().map_err(|_| report.to_owned());
        match word {
            "running" => self.running = true,
            "begun" => {
                let mut words = rest.split(' ');
                let mut next = || words.next().map_or(Err(report.to_owned()), number);
                let events = usize::try_from(next()?).map_err(|_| report.to_owned())?;
                let through = next()?;
                let fence = u64::try_from(next()?).map_err(|_| report.to_owned())?;
                self.batches.push((events, through, fence));
                self.written.clear();
            }
            "applied" => self.written.push(number(rest)?),
            "holding" => {
                let (position, pid) = rest.split_once(' ').ok_or_else(|| report.to_owned())?;
                let pid = i32::try_from(number(pid)?).map_err(|_| report.to_owned())?;
                self.holding = Some((number(position)?, pid));
            }
            "committed" => self.committed = Some(number(rest)?),
            "refused" => self.refused = Some(rest.to_owned()),
            "stopped" => self.stopped = Some(rest.to_owned()),
            _ => return Err(report.to_owned()),
        }
        Ok(())
    }
}

/// The child process. Dropping it kills it with SIGKILL (which ends a
/// stopped process too) and reaps it, so no stopped process outlives a
/// failed assertion.
struct ChildRunner {
    process: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    reports: Reports,
    context: String,
}

impl ChildRunner {
    fn start(spec: &str, context: &str) -> Self {
        let mut process = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                &test_name("read_model_pause_child"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the child starts");
        let stdin = process.stdin.take();
        let stdout = process.stdout.take().expect("the child's stdout");
        // Read on a thread of its own, so that each line is waited for with
        // a bound; the thread ends when the child's stdout closes.
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            process,
            stdin,
            lines,
            reports: Reports::default(),
            context: context.to_owned(),
        }
    }

    /// Reads the child's lines until `done` holds of its reports, each
    /// line within [`WAIT`].
    fn until(&mut self, what: &str, done: impl Fn(&Reports) -> bool) {
        while !done(&self.reports) {
            let line = match self.lines.recv_timeout(WAIT) {
                Ok(line) => line,
                Err(error) => panic!(
                    "{}: waiting for {what}: no line from the child ({error}); it reported {:?}",
                    self.context, self.reports
                ),
            };
            if let Err(said) = self.reports.take(&line) {
                panic!("{}: waiting for {what}, the child says: {said}", self.context);
            }
            assert!(
                self.reports.stopped.is_none() || done(&self.reports),
                "{}: waiting for {what}, the child's runner stopped: {:?}",
                self.context,
                self.reports
            );
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) with `kill`, checked.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.process.id().to_string()])
            .status()
            .expect("`kill` runs");
        assert!(
            status.success(),
            "{}: kill {signal} {} failed: {status}",
            self.context,
            self.process.id()
        );
    }

    /// Whether `ps` shows the child stopped by a signal.
    fn is_stopped(&self) -> bool {
        let output = Command::new("ps")
            .args(["-o", "stat=", "-p", &self.process.id().to_string()])
            .output()
            .expect("`ps` runs");
        assert!(
            output.status.success(),
            "{}: ps finds the child {}: {output:?}",
            self.context,
            self.process.id()
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_start()
            .starts_with('T')
    }

    /// Waits (bounded) until `ps` shows the child stopped: the signal is
    /// delivered asynchronously.
    fn wait_until_stopped(&self) {
        let deadline = Instant::now() + STATE_WAIT;
        while !self.is_stopped() {
            assert!(
                Instant::now() < deadline,
                "{}: the child is not stopped {STATE_WAIT:?} after SIGSTOP",
                self.context
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes the line the child's handler waits for into its standard
    /// input (the pipe holds it until the child reads it).
    fn send_resume(&mut self) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        stdin
            .write_all(b"resume\n")
            .and_then(|()| stdin.flush())
            .expect("the line reaches the pipe");
    }

    /// Reads the child's lines to their end (its exit closes its stdout),
    /// each within [`WAIT`], and reaps it.
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => {
                    if let Err(said) = self.reports.take(&line) {
                        panic!("{}: the child says: {said}", self.context);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: the child did not exit within {WAIT:?} of its last line ({:?})",
                    self.context, self.reports
                ),
            }
        }
        self.process.wait().expect("the child is reaped")
    }
}

impl Drop for ChildRunner {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Harmless when it has exited and been reaped already.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The test's name as the harness knows it (`read_model_pause::name`).
fn test_name(function: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_owned(),
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// What a round's read model writes, and the child's
/// [`ReadModel::idle_in_transaction_timeout`] (the standby keeps the
/// default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Rows only; the child's timeout disabled, so that how long it is
    /// paused changes nothing.
    Rows,
    /// Rows and upserts; the child's timeout disabled.
    Upserts,
    /// Rows and upserts; the child's timeout [`IDLE_TIMEOUT`].
    UpsertsTimedOut,
}

impl Scenario {
    fn upserts(self) -> bool {
        self != Self::Rows
    }

    /// The child's timeout, in milliseconds (0: none).
    fn timeout_ms(self) -> u128 {
        match self {
            Self::Rows | Self::Upserts => 0,
            Self::UpsertsTimedOut => IDLE_TIMEOUT.as_millis(),
        }
    }
}

/// A round's child, paused inside the batch of the group, and what it had
/// done (steps 1 and 2).
struct Paused {
    child: ChildRunner,
    scenario: Scenario,
    context: String,
    application_name: String,
    child_run: i64,
    standby_run: i64,
    /// The `n` of the first event after the group.
    next_n: i64,
    backlog_head: i64,
    /// The child's last commit before the pause.
    committed_before: Option<i64>,
    /// The positions the paused batch had written.
    written_at_pause: Vec<i64>,
    /// The paused batch: its events, its `through`, its fence.
    batch: (usize, i64, u64),
    /// The backend pid of the child's data session (its report).
    data_pid: i32,
    /// The child's sessions on the server after SIGSTOP.
    child_sessions: Vec<(i32, Option<String>, bool)>,
    /// Whether the data session was still on the server after SIGSTOP
    /// (idle in its transaction), or its timeout had ended it already.
    seen_idle: bool,
    /// When SIGSTOP was sent.
    stopped_at: Instant,
}

/// Steps 1 and 2 of a round (see the module's docs): the child of run
/// `2 * number + 1` commits a backlog and is paused after writing event
/// `hold_at` of the group's batch.
fn pause(runtime: &Runtime, store: &PgStore, number: i64, hold_at: i64, scenario: Scenario) -> Paused {
    let context = format!(
        "round {number} (paused after writing event {} of {GROUP}; {scenario:?})",
        hold_at + 1
    );
    let child_run = 2 * number + 1;
    // Each round's events have `n`s of their own.
    let first = number * 100;
    let backlog_head = runtime.block_on(append_each(store, first, BACKLOG));
    let group = first + BACKLOG..first + BACKLOG + GROUP;
    let hold_after = group.start + hold_at;
    let application_name = format!("pause-{}-{number}", store.schema());
    let spec = format!(
        "{} {application_name} {child_run} {hold_after} {} {}",
        store.schema(),
        if scenario.upserts() { "upserts" } else { "rows" },
        scenario.timeout_ms()
    );

    // 1. The child commits the backlog.
    let mut child = ChildRunner::start(&spec, &context);
    child.until("its commit of the backlog", |reports| {
        reports.committed >= Some(backlog_head)
    });
    assert!(child.reports.running, "{context}: the child said it was running");

    // 2. It is paused inside the batch of the group, after writes.
    let group_head = runtime.block_on(append(store, "s0", group.clone()));
    child.until("its write of the event to hold after", |reports| {
        reports.holding.is_some()
    });
    child.signal("-STOP");
    let paused = Instant::now();
    child.wait_until_stopped();
    let committed_before = child.reports.committed;
    let written_at_pause = child.reports.written.clone();
    let batch = *child.reports.batches.last().expect("a batch begun");
    let (_, data_pid) = child.reports.holding.expect("the child holds");
    assert!(
        written_at_pause
            .iter()
            .all(|&position| position > backlog_head && position <= group_head),
        "{context}: the paused batch writes the group: {written_at_pause:?}"
    );
    let child_sessions = runtime.block_on(sessions(store.pool(), &application_name));
    assert!(
        child_sessions
            .iter()
            .all(|&(pid, _, wrote)| pid == data_pid || !wrote),
        "{context}: no session of the child but its data session {data_pid} has a transaction \
         that wrote: {child_sessions:?}"
    );
    let seen_idle = match child_sessions.iter().find(|session| session.0 == data_pid) {
        Some((_, state, true)) => {
            assert_eq!(
                state.as_deref(),
                Some("idle in transaction"),
                "{context}: the paused child's transaction is open on the server"
            );
            true
        }
        // Its timeout may have ended the session (gone, or on its way out,
        // its transaction over) before the parent looked.
        None | Some((_, _, false)) if scenario == Scenario::UpsertsTimedOut => false,
        _ => panic!(
            "{context}: the child's data session {data_pid} has a transaction that wrote: \
             {child_sessions:?}"
        ),
    };
    child.send_resume();
    Paused {
        child,
        scenario,
        context,
        application_name,
        child_run,
        standby_run: child_run + 1,
        next_n: group.end,
        backlog_head,
        committed_before,
        written_at_pause,
        batch,
        data_pid,
        child_sessions,
        seen_idle,
        stopped_at: paused,
    }
}

/// The standby, running.
struct Standby {
    runner: RunningReadModel<i64>,
    application_name: String,
    /// The head once the takeover's events were appended.
    head: i64,
    /// When the child's lease connection was terminated.
    takeover: Instant,
}

/// The start of step 3: terminates the child's lease connection, starts a
/// standby (run `2 * number + 2`) with its own lease, and appends more
/// events.
fn take_over(runtime: &Runtime, store: &PgStore, number: i64, paused: &Paused) -> Standby {
    let context = &paused.context;
    let lease_pid = runtime
        .block_on(support::bounded(
            "looking up the lease's holder",
            CALL,
            quick_lease(store).holder(NAME),
        ))
        .expect("the lease's holder")
        .expect("the lease is held");
    assert!(
        lease_pid != paused.data_pid && paused.child_sessions.iter().any(|session| session.0 == lease_pid),
        "{context}: the lease is held by a session of the child other than its data session \
         {}: {lease_pid}, of {:?}",
        paused.data_pid,
        paused.child_sessions
    );
    let killed: bool = runtime
        .block_on(support::bounded(
            "terminating the lease's backend",
            CALL,
            sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(lease_pid)
                .fetch_one(store.pool()),
        ))
        .expect("pg_terminate_backend");
    assert!(
        killed,
        "{context}: the lease's backend {lease_pid} was terminated"
    );
    let takeover = Instant::now();
    let application_name = format!("pause-standby-{}-{number}", store.schema());
    let runner = runtime.block_on(async {
        let pool = support::pool(4, &application_name)
            .await
            .expect("DATABASE_URL is set");
        let standby_store = PgStore::with_schema(pool, store.schema()).expect("a valid schema");
        ReadModelRunner::new(standby_store.clone())
            .with_lease(quick_lease(&standby_store))
            .batch_size(NonZeroUsize::new(BATCH).expect("not zero"))
            .start(read_model(
                &standby_store,
                paused.standby_run,
                paused.scenario.upserts(),
                None,
            ))
            .expect("the standby starts")
    });
    let head = runtime.block_on(append_each(store, paused.next_n, TAKEOVER_APPENDS));
    Standby {
        runner,
        application_name,
        head,
        takeover,
    }
}

/// Stops the standby and checks that the checkpoint stays its own.
fn stop_standby(
    runtime: &Runtime,
    store: &PgStore,
    standby: Standby,
    checkpoint: (Option<i64>, Option<i64>),
    context: &str,
) {
    runtime
        .block_on(support::bounded(
            "stopping the standby",
            CALL,
            standby.runner.stop(),
        ))
        .unwrap_or_else(|error| panic!("{context}: the standby stops cleanly: {error}"));
    assert_eq!(
        runtime.block_on(state(store)).checkpoint,
        checkpoint,
        "{context}: the checkpoint stays the standby's"
    );
}

/// What a round measured.
#[derive(Debug)]
struct Round {
    /// The standby's checkpoint at the end.
    checkpoint: i64,
    /// The paused batch's events, and how many it had written at the pause.
    batch: usize,
    written_at_pause: usize,
    /// How many it wrote after SIGCONT.
    written_after: usize,
    /// How the child said its runner stopped.
    stopped: String,
    /// SIGSTOP to SIGCONT.
    paused_for: Duration,
    /// From the lease's termination to the standby's commit of the head
    /// (with upserts: to its lock wait on the server).
    takeover: Duration,
    /// With upserts: how long the standby took to reach the head after
    /// SIGCONT.
    unblocked_after: Option<Duration>,
    elapsed: Duration,
}

/// One round of the first two tests (see the module's docs): the child
/// (its timeout disabled) is paused after writing event `hold_at` of its
/// batch, the standby takes over, the child resumes and is fenced off.
/// `previous` is the last round's checkpoint.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, step by step, with its checks"
)]
fn round(
    runtime: &Runtime,
    store: &PgStore,
    number: i64,
    hold_at: i64,
    upserts: bool,
    previous: Option<i64>,
) -> Round {
    let started = Instant::now();
    let scenario = if upserts {
        Scenario::Upserts
    } else {
        Scenario::Rows
    };
    let mut paused = pause(runtime, store, number, hold_at, scenario);
    let context = paused.context.clone();
    let data_pid = paused.data_pid;
    let (batch, through, fence) = paused.batch;

    // 3. The takeover, the child stopped.
    let standby = take_over(runtime, store, number, &paused);
    let head = standby.head;
    if upserts {
        // The standby's first batch upserts the group's stream, whose row
        // the paused transaction holds: it waits for the child.
        runtime.block_on(support::bounded("the standby's lock wait", CALL, async {
            while !blocked_by(store.pool(), &standby.application_name, data_pid).await {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    } else {
        runtime
            .block_on(standby.runner.wait_for(head, WAIT))
            .unwrap_or_else(|error| {
                panic!("{context}: the standby commits up to the head while the child is paused: {error}")
            });
    }
    let takeover = standby.takeover.elapsed();
    let child = &mut paused.child;
    assert!(
        child.is_stopped(),
        "{context}: the child stayed stopped through the takeover"
    );
    let generation = runtime.block_on(lease_generation(store));
    assert!(
        u64::try_from(generation).expect("a generation") > fence,
        "{context}: the standby's lease generation {generation} is above the child's fence {fence}"
    );
    let taken = runtime.block_on(state(store)).checkpoint;
    if upserts {
        assert!(
            runtime.block_on(blocked_by(store.pool(), &standby.application_name, data_pid)),
            "{context}: the standby still waits for the paused child"
        );
        assert_eq!(
            taken.0, paused.committed_before,
            "{context}: the blocked standby has committed nothing"
        );
    } else {
        assert_eq!(
            taken,
            (Some(head), Some(generation)),
            "{context}: the checkpoint is the standby's, at the head"
        );
    }

    // 4. The child resumes: it writes the rest of its batch and is refused.
    child.signal("-CONT");
    let paused_for = paused.stopped_at.elapsed();
    let resumed = Instant::now();
    child.until("its report of how its runner stopped", |reports| {
        reports.stopped.is_some()
    });
    let status = child.wait_for_exit();
    assert!(status.success(), "{context}: the child exits cleanly: {status}");
    let unblocked_after = upserts.then(|| {
        runtime
            .block_on(standby.runner.wait_for(head, WAIT))
            .unwrap_or_else(|error| {
                panic!("{context}: the standby commits up to the head once the child resumed: {error}")
            });
        resumed.elapsed()
    });
    runtime.block_on(sessions_ended(store.pool(), &paused.application_name));

    // 5. The checks.
    let reports = &child.reports;
    let fenced = format!("fenced {generation}");
    assert_eq!(
        reports.refused.as_deref(),
        Some(fenced.as_str()),
        "{context}: the fence refused the child's batch: {reports:?}"
    );
    // Not `LeaseLost` either: the batch reached its advance, so the
    // refusal is what stopped the runner.
    assert_eq!(
        reports.stopped.as_deref(),
        Some(fenced.as_str()),
        "{context}: the child's runner stopped fenced off: {reports:?}"
    );
    assert_eq!(
        reports.batches.last(),
        Some(&(batch, through, fence)),
        "{context}: the child began no batch after the paused one"
    );
    assert!(
        reports.written.starts_with(&paused.written_at_pause),
        "{context}: after SIGCONT the child went on with its batch: {:?} after {:?}",
        reports.written,
        paused.written_at_pause
    );
    let written_after = reports.written.len() - paused.written_at_pause.len();
    let found = runtime.block_on(state(store));
    assert_eq!(
        found.checkpoint,
        (Some(head), Some(generation)),
        "{context}: the checkpoint is the standby's, at the head{}",
        if upserts {
            ""
        } else {
            ", as before the child resumed"
        }
    );
    assert!(
        found.checkpoint.0 >= previous && found.checkpoint.0 >= taken.0,
        "{context}: the checkpoint did not move back (last round's {previous:?}, before the \
         resume {taken:?}, now {:?})",
        found.checkpoint
    );
    runtime.block_on(check_replay(store, &found, upserts, &context));
    check_runs(
        &found.rows,
        &Runs {
            previous,
            committed_before: paused.committed_before,
            child: paused.child_run,
            standby: paused.standby_run,
        },
        &reports.written,
        &context,
    );
    let stopped = reports.stopped.clone().unwrap_or_default();
    let written_at_pause = paused.written_at_pause.len();
    drop(paused);

    stop_standby(runtime, store, standby, found.checkpoint, &context);
    Round {
        checkpoint: head,
        batch,
        written_at_pause,
        written_after,
        stopped,
        paused_for,
        takeover,
        unblocked_after,
        elapsed: started.elapsed(),
    }
}

#[test]
fn a_paused_holder_resumed_after_the_standby_took_over_lands_none_of_its_writes() {
    let started = Instant::now();
    let runtime = runtime();
    let Some(store) = runtime.block_on(support::store_with::<String, ()>(4)) else {
        return;
    };
    runtime.block_on(create_tables(&store));
    let mut checkpoint = None;
    for number in 0..ROUNDS {
        let hold_at = HOLD_AT[usize::try_from(number).expect("small") % HOLD_AT.len()];
        let round = round(&runtime, &store, number, hold_at, false, checkpoint);
        say(&format!(
            "read-model pause round {number}: paused after write {} of a batch of {} ({} more \
             after SIGCONT; stopped {}), paused for {:.0?}, takeover in {:.0?}; round {:.0?}",
            round.written_at_pause,
            round.batch,
            round.written_after,
            round.stopped,
            round.paused_for,
            round.takeover,
            round.elapsed
        ));
        checkpoint = Some(round.checkpoint);
    }
    say(&format!(
        "read-model pause test: {ROUNDS} rounds in {:.1?}",
        started.elapsed()
    ));
}

#[test]
fn a_paused_holder_holds_up_a_standby_that_needs_its_row_locks_until_it_is_fenced() {
    let runtime = runtime();
    let Some(store) = runtime.block_on(support::store_with::<String, ()>(4)) else {
        return;
    };
    runtime.block_on(create_tables(&store));
    let round = round(&runtime, &store, 0, GROUP / 2, true, None);
    say(&format!(
        "read-model pause with upserts, the holder's idle-in-transaction timeout disabled: the \
         standby waited for the paused holder's row lock (paused for {:.0?}; lock wait seen \
         {:.0?} after the lease's termination), and reached the head {:.0?} after SIGCONT (the \
         child stopped {}); round {:.0?}",
        round.paused_for,
        round.takeover,
        round.unblocked_after.unwrap_or_default(),
        round.stopped,
        round.elapsed
    ));
}

/// Runs `until` to its end; meanwhile watches whether a session of
/// `application_name` waits for a lock `holder` holds. Returns what
/// `until` returned and whether the wait was seen.
async fn watching_lock_waits<T>(
    pool: &PgPool,
    application_name: &str,
    holder: i32,
    until: impl Future<Output = T>,
) -> (T, bool) {
    let mut until = std::pin::pin!(until);
    let watch = async {
        while !blocked_by(pool, application_name, holder).await {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        output = &mut until => return (output, false),
        () = watch => {}
    }
    (until.await, true)
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario, step by step, with its checks"
)]
fn a_paused_holders_idle_in_transaction_timeout_frees_a_standby_that_needs_its_row_locks() {
    let started = Instant::now();
    let runtime = runtime();
    let Some(store) = runtime.block_on(support::store_with::<String, ()>(4)) else {
        return;
    };
    runtime.block_on(create_tables(&store));
    let mut paused = pause(&runtime, &store, 0, GROUP / 2, Scenario::UpsertsTimedOut);
    let context = paused.context.clone();
    let data_pid = paused.data_pid;

    // 3. The takeover, the child stopped: the server ends the child's data
    // session after its timeout, and with it the transaction that holds
    // the row the standby's first batch upserts.
    let standby = take_over(&runtime, &store, 0, &paused);
    let head = standby.head;
    let (reached, lock_wait_seen) = runtime.block_on(watching_lock_waits(
        store.pool(),
        &standby.application_name,
        data_pid,
        standby.runner.wait_for(head, UNBLOCKED_WITHIN),
    ));
    reached.unwrap_or_else(|error| {
        panic!(
            "{context}: the standby commits up to the head within {UNBLOCKED_WITHIN:?} of the \
             takeover's appends, the child still paused: {error}"
        )
    });
    let takeover = standby.takeover.elapsed();
    let child = &mut paused.child;
    assert!(
        child.is_stopped(),
        "{context}: the child stayed stopped through the takeover"
    );
    // The standby got the row lock, so the transaction has ended; the
    // backend leaves pg_stat_activity as it exits.
    runtime.block_on(support::bounded("the child's data session ending", CALL, async {
        while sessions(store.pool(), &paused.application_name)
            .await
            .iter()
            .any(|session| session.0 == data_pid)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }));
    let generation = runtime.block_on(lease_generation(&store));
    let fence = paused.batch.2;
    assert!(
        u64::try_from(generation).expect("a generation") > fence,
        "{context}: the standby's lease generation {generation} is above the child's fence {fence}"
    );
    let found = runtime.block_on(state(&store));
    assert_eq!(
        found.checkpoint,
        (Some(head), Some(generation)),
        "{context}: the checkpoint is the standby's, at the head"
    );
    runtime.block_on(check_replay(&store, &found, true, &context));
    let runs = Runs {
        previous: None,
        committed_before: paused.committed_before,
        child: paused.child_run,
        standby: paused.standby_run,
    };
    check_runs(&found.rows, &runs, &paused.written_at_pause, &context);

    // 4. The child resumes: its batch's next statement finds its
    // connection closed by the server.
    child.signal("-CONT");
    let paused_for = paused.stopped_at.elapsed();
    child.until("its report of how its runner stopped", |reports| {
        reports.stopped.is_some()
    });
    let status = child.wait_for_exit();
    assert!(status.success(), "{context}: the child exits cleanly: {status}");
    runtime.block_on(sessions_ended(store.pool(), &paused.application_name));

    // 5. The checks: the child's runner stopped on a database error, and
    // it committed nothing more.
    let reports = &child.reports;
    assert_eq!(
        reports.stopped.as_deref(),
        Some(CLOSED_BY_TIMEOUT),
        "{context}: the child's runner stopped on its session's end: {reports:?}"
    );
    assert_eq!(
        reports.refused, None,
        "{context}: the child's batch did not reach its advance: {reports:?}"
    );
    assert_eq!(
        (reports.committed, reports.batches.last()),
        (paused.committed_before, Some(&paused.batch)),
        "{context}: the child committed nothing and began no batch after the pause: {reports:?}"
    );
    assert_eq!(
        reports.written, paused.written_at_pause,
        "{context}: after SIGCONT the child wrote nothing more: {reports:?}"
    );
    assert_eq!(
        runtime.block_on(state(&store)),
        found,
        "{context}: the read model is as it was before the child resumed"
    );
    let stopped = reports.stopped.clone().unwrap_or_default();
    let written_at_pause = paused.written_at_pause.len();
    let seen_idle = paused.seen_idle;
    let backlog_head = paused.backlog_head;
    drop(paused);

    stop_standby(&runtime, &store, standby, found.checkpoint, &context);
    say(&format!(
        "read-model pause with upserts, the holder's idle-in-transaction timeout {IDLE_TIMEOUT:?}: \
         the data session {} when the parent looked after SIGSTOP; the standby {} and reached \
         the head {:.0?} after the lease's termination, the holder still paused, which resumed \
         (paused for {:.0?}, {written_at_pause} writes of its batch done, backlog to \
         {backlog_head}) stopped with `{stopped}`; test {:.0?}",
        if seen_idle {
            "was idle in its transaction"
        } else {
            "had been ended already"
        },
        if lock_wait_seen {
            "was seen waiting for its row lock"
        } else {
            "was not seen waiting for its row lock"
        },
        takeover,
        paused_for,
        started.elapsed()
    ));
}

/// What the child reports when its runner stopped on its batch's next
/// statement after PostgreSQL ended its session for the
/// idle-in-transaction timeout (SQLSTATE 25P03).
const CLOSED_BY_TIMEOUT: &str = "projection database 25P03";

/// The first [`sqlx::Error`] in `error`'s chain of sources.
fn sql_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a sqlx::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(sql) = error.downcast_ref::<sqlx::Error>() {
            return Some(sql);
        }
        next = error.source();
    }
    None
}

/// How a runner stopped, as the child reports it.
fn stopped_how(stopped: Result<(), RunnerError>) -> String {
    match stopped {
        Err(RunnerError::Fenced(_, fence)) => format!("fenced {}", fence.get()),
        Err(RunnerError::LeaseLost(_)) => "lease-lost".to_owned(),
        Err(RunnerError::Projection(_, error)) => match sql_cause(&*error) {
            Some(sqlx::Error::Database(database)) => format!(
                "projection database {}",
                database.code().as_deref().unwrap_or("(no code)")
            ),
            Some(sqlx::Error::Io(io)) => format!("projection io {:?}", io.kind()),
            other => format!("projection otherwise {other:?}: {error}"),
        },
        other => format!("otherwise {other:?}"),
    }
}

/// The child: runs the read model with a lease, reporting as it goes,
/// until its runner stops; then says how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_pause_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let [schema, application_name, run, hold_after, mode, timeout_ms] =
        spec.split(' ').collect::<Vec<_>>()[..]
    else {
        panic!("{CHILD}={spec} is not `schema application_name run hold_after rows|upserts timeout_ms`");
    };
    let number = |word: &str| word.parse::<i64>().expect("a number");
    let timeout = match timeout_ms.parse::<u64>().expect("a timeout") {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let pool = support::pool(4, application_name)
        .await
        .expect("DATABASE_URL is set");
    let store = PgStore::with_schema(pool, schema).expect("a valid schema");
    let runner = ReadModelRunner::new(store.clone())
        .with_lease(quick_lease(&store))
        .batch_size(NonZeroUsize::new(BATCH).expect("not zero"))
        .start(Reported(
            read_model(&store, number(run), mode == "upserts", Some(number(hold_after)))
                .idle_in_transaction_timeout(timeout),
        ))
        .expect("the runner starts");
    println!("{MARK}running");
    match runner.wait_for(i64::MAX, CHILD_LIFETIME).await {
        Err(WaitError::Stopped) => println!("{MARK}stopped {}", stopped_how(runner.stop().await)),
        other => println!("{MARK}gave-up {other:?}"),
    }
}

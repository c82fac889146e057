//! Unknown commit outcomes: a connection lost during an append leaves the
//! caller not knowing whether the batch was written. A proxy between the
//! store and the server (`tests/support/proxy.rs`) cuts the append's
//! exchange at a random point, before the commit (nothing written) or after
//! it (written, the acknowledgement lost); a retry with the same event ids
//! then returns the first append's outcome, and the stream holds the batch
//! once. The repository does the same for commands with a command id, by
//! hand or by its retry policy, and two processes running one command id at
//! the same moment write it once and are told the same outcome. A last test
//! checks the proxy itself on the other ways an append can commit: a
//! `COMMIT` after it in a transaction (the store's rerun of an append that
//! lost a race for the stream runs so), and a simple query in autocommit.
//!
//! The random test's seed is printed with every failure; rerun one with
//! `SOURCERY_UNKNOWN_OUTCOME_SEED=<seed>`.

use crate::proxy::{Cut, Cutting, Proxy};
use crate::support;

use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::id::CommandId;
use sourcery_core::repository::{CommandError, CommandOptions, Repository, RetryPolicy};
use sourcery_core::store::{AppendError, EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::Store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection};

type PgStore = Store<String, serde_json::Value>;

const KIND: &str = "outcome.noted";
const AGGREGATE: &str = "outcome";
const ITERATIONS: u64 = 200;
/// The random test gives up (failing) past this.
const TIME_CAP: Duration = Duration::from_secs(120);
/// How long one call (an append, a load, a cut's report) may take.
const CALL: u64 = 30;
const SEED_VARIABLE: &str = "SOURCERY_UNKNOWN_OUTCOME_SEED";
const DEFAULT_SEED: u64 = 0x0DD5_EED0_F1A5_7C0D;

/// The client's messages of an append on a fresh connection: `Parse`,
/// `Describe`, `Sync` (preparing the statement), `Bind`, `Execute`,
/// `Close`, `Sync` (the commit, at index 6).
const CLIENT_MESSAGES: usize = 7;
/// The server's answer to the commit before its `ReadyForQuery`:
/// `BindComplete`, a `DataRow` per event, `CommandComplete`,
/// `CloseComplete`.
const ANSWER_BESIDES_ROWS: usize = 3;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        // Xorshift stays at 0 from 0.
        Self(seed.max(1))
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// The seed: `SOURCERY_UNKNOWN_OUTCOME_SEED` (decimal or `0x` hex), or a
/// fixed one.
fn seed() -> u64 {
    let Ok(text) = std::env::var(SEED_VARIABLE) else {
        return DEFAULT_SEED;
    };
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|error| panic!("{SEED_VARIABLE}={text} is not a seed: {error}"))
}

/// Writes to stderr directly: the harness captures `eprintln!` of passing
/// tests, and the figures are meant to be seen.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn batch(iteration: u64, size: u64) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = (0..size)
        .map(|part| {
            PersistableEvent::new(
                KIND,
                format!("{iteration}/{part}").into_bytes(),
                serde_json::json!({ "iteration": iteration, "part": part }),
            )
        })
        .collect();
    NonEmpty::from_vec(events).expect("size > 0")
}

/// A store in a fresh schema, connected directly, and one on the same
/// schema connected through a proxy (one connection).
struct Harness {
    proxy: Proxy,
    proxied: PgStore,
    direct: PgStore,
}

async fn harness() -> Option<Harness> {
    let direct: PgStore = support::store_with(4).await?;
    let url = support::database_url()?;
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
    let proxy = Proxy::start(&options).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(CALL))
        .connect_with(
            proxy
                .connect_options()
                .application_name("sourcery-postgres-test-proxied"),
        )
        .await
        .expect("the server accepts connections through the proxy");
    let proxied = Store::with_schema(pool, direct.schema()).expect("the test schema's name is valid");
    Some(Harness {
        proxy,
        proxied,
        direct,
    })
}

/// The stream's events, by id and position.
async fn stream_of(store: &PgStore, aggregate_kind: &str, stream: &str) -> Vec<(EventId, i64)> {
    let filter = [EventFilter::for_stream(aggregate_kind, stream.to_owned())];
    support::bounded("a stream's load", CALL, store.load_events(&filter))
        .await
        .expect("the stream loads")
        .iter()
        .map(|event| (event.id, event.position))
        .collect()
}

#[derive(Debug, Default)]
struct Figures {
    unacknowledged: u64,
    not_landed: u64,
    events: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_cut_append_returns_the_first_outcome_and_writes_once() {
    let Some(harness) = harness().await else {
        return;
    };
    let seed = seed();
    let mut random = Random::new(seed);
    let started = Instant::now();
    let mut figures = Figures::default();
    for iteration in 0..ITERATIONS {
        assert!(
            started.elapsed() < TIME_CAP,
            "seed {seed:#x}: {iteration} of {ITERATIONS} iterations in {:?}, over the cap of {TIME_CAP:?} \
             ({figures:?})",
            started.elapsed()
        );
        let size = 1 + random.below(4);
        // Anywhere in the exchange, and a little past its end (the whole
        // answer swallowed).
        let points = CLIENT_MESSAGES + ANSWER_BESIDES_ROWS + usize::try_from(size).expect("small") + 1;
        let point = random.below(u64::try_from(points).expect("small"));
        let cut = Cut::Before(usize::try_from(point).expect("small"));
        let context = format!("seed {seed:#x}, iteration {iteration}, {size} events, {cut:?}");
        let landed = cut_and_retry(
            &harness,
            &batch(iteration, size),
            &format!("s-{iteration}"),
            cut,
            &context,
        )
        .await;
        if landed {
            figures.unacknowledged += 1;
        } else {
            figures.not_landed += 1;
        }
        figures.events += usize::try_from(size).expect("small");
    }
    assert_eq!(harness.proxy.disarm(), 0, "seed {seed:#x}: every cut was taken");
    let everything = support::bounded(
        "the whole log",
        CALL,
        harness.direct.load_events(&[EventFilter::for_event(KIND)]),
    )
    .await
    .expect("the log loads");
    assert_eq!(
        everything.len(),
        figures.events,
        "seed {seed:#x}: each batch once, nothing else"
    );
    say(&format!(
        "unknown outcome (seed {seed:#x}): {} appends landed unacknowledged, {} did not land, \
         {ITERATIONS} in all, {:.1?}",
        figures.unacknowledged,
        figures.not_landed,
        started.elapsed()
    ));
    assert!(
        figures.unacknowledged > 0,
        "seed {seed:#x}: no cut fell after a commit ({figures:?})"
    );
    assert!(
        figures.not_landed > 0,
        "seed {seed:#x}: no cut fell before a commit ({figures:?})"
    );
}

/// Appends `events` to a new `stream` through the proxy, armed with `cut`;
/// retries them directly once the cut is done, and twice more expecting
/// other versions; checks every outcome and the stream. Returns whether the
/// cut attempt had landed.
async fn cut_and_retry(
    harness: &Harness,
    events: &NonEmpty<PersistableEvent<serde_json::Value>>,
    stream: &str,
    cut: Cut,
    context: &str,
) -> bool {
    let Harness {
        proxy,
        proxied,
        direct,
    } = harness;
    let stream = stream.to_owned();
    let ids: Vec<EventId> = events.iter().map(|event| event.id).collect();
    proxy.arm(cut);
    let first = support::bounded(
        "the cut append",
        CALL,
        proxied.append_expecting_new(AGGREGATE, &stream, events.clone()),
    )
    .await;
    assert!(
        matches!(first, Err(AppendError::Store(_))),
        "{context}: the cut append returned {first:?}"
    );
    let cutting: Cutting = proxy.cut_done(CALL).await;
    let context = format!("{context}; the proxy: {cutting}");

    let retried = support::bounded(
        "the retry",
        CALL,
        direct.append_expecting_new(AGGREGATE, &stream, events.clone()),
    )
    .await
    .unwrap_or_else(|error| panic!("{context}: the retry failed: {error:?}"));
    let stored = stream_of(direct, AGGREGATE, &stream).await;
    let stored_ids: Vec<EventId> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(stored_ids, ids, "{context}: the stream holds the batch once");
    let positions: Vec<i64> = stored.iter().map(|(_, position)| *position).collect();
    assert_eq!(
        Some(retried.last_position),
        positions.last().copied(),
        "{context}: the retry returns the batch's last position"
    );
    let landed = cutting.landed();
    if landed {
        assert!(
            retried.replayed,
            "{context}: the first attempt committed, so the retry is a replay"
        );
        assert_eq!(
            cutting.positions, positions,
            "{context}: the stored positions are the ones the lost answer held"
        );
    } else {
        assert!(
            !retried.replayed,
            "{context}: the first attempt never committed, so the retry writes"
        );
    }
    // Whatever the expected version now: another version, or none.
    for expected in [Some(retried.last_position + 1_000), None] {
        let again = support::bounded(
            "another retry",
            CALL,
            direct.append(AGGREGATE, &stream, expected, events.clone()),
        )
        .await
        .unwrap_or_else(|error| panic!("{context}: a retry expecting {expected:?} failed: {error:?}"));
        assert!(
            again.replayed && again.last_position == retried.last_position,
            "{context}: a retry expecting {expected:?} returned {again:?}"
        );
    }
    landed
}

// ---- The proxy on its own: an append in an explicit transaction commits
// with the `COMMIT` after it; one sent as a simple query, with itself.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_finds_the_commit_of_an_append_in_a_transaction_or_a_simple_query() {
    let Some(url) = support::database_url() else {
        return;
    };
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
    let mut direct = PgConnection::connect_with(&options).await.expect("connect");
    // A table whose inserts the proxy takes for appends.
    let table = format!("\"{}\".sourcery_events_probe", support::fresh_schema_name());
    let schema = table.split('.').next().expect("qualified");
    for statement in [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {table} (n int PRIMARY KEY)"),
    ] {
        sqlx::raw_sql(&statement)
            .execute(&mut direct)
            .await
            .expect("the probe table");
    }
    let proxy = Proxy::start(&options).await;
    // Extended insert, simple COMMIT, cut after it: written.
    let after = in_transaction(&proxy, &table, 1, Cut::AfterCommit).await;
    assert!(after.landed() && after.forwarded.ends_with('Q'), "{after}");
    assert!(holds(&mut direct, &table, 1).await, "{after}");
    // The same cut before the COMMIT: nothing written.
    let commit = after.forwarded.len() - 1;
    let before = in_transaction(&proxy, &table, 2, Cut::Before(commit)).await;
    assert!(!before.landed() && !before.commit_forwarded, "{before}");
    assert!(!holds(&mut direct, &table, 2).await, "{before}");

    // A simple query in autocommit is its own commit.
    let mut connection = PgConnection::connect_with(&proxy.connect_options())
        .await
        .expect("connect through the proxy");
    proxy.arm(Cut::AfterCommit);
    let cut = sqlx::raw_sql(&format!("INSERT INTO {table} VALUES (3)"))
        .execute(&mut connection)
        .await;
    assert!(cut.is_err(), "{cut:?}");
    let simple = proxy.cut_done(CALL).await;
    assert!(simple.landed() && simple.forwarded == "Q", "{simple}");
    assert!(holds(&mut direct, &table, 3).await, "{simple}");
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut direct)
        .await
        .expect("the probe schema is dropped");
}

/// Whether `table` holds `n`.
async fn holds(direct: &mut PgConnection, table: &str, n: i32) -> bool {
    sqlx::query_scalar(&format!("SELECT EXISTS (SELECT FROM {table} WHERE n = $1)"))
        .bind(n)
        .fetch_one(direct)
        .await
        .expect("the probe table reads")
}

/// Inserts `n` into `table` in an explicit transaction on a fresh
/// connection through `proxy`, armed with `cut`; returns the cut's report.
async fn in_transaction(proxy: &Proxy, table: &str, n: i32, cut: Cut) -> Cutting {
    let mut connection = PgConnection::connect_with(&proxy.connect_options())
        .await
        .expect("connect through the proxy");
    proxy.arm(cut);
    sqlx::raw_sql("BEGIN")
        .execute(&mut connection)
        .await
        .expect("begin");
    sqlx::query(&format!("INSERT INTO {table} VALUES ($1)"))
        .bind(n)
        .execute(&mut connection)
        .await
        .expect("the insert, before the commit");
    let commit = sqlx::raw_sql("COMMIT").execute(&mut connection).await;
    assert!(commit.is_err(), "the cut COMMIT returned {commit:?}");
    proxy.cut_done(CALL).await
}

// ---- Commands with a command id.

/// A command id unique to the schema (ids are unique in a store, and keys
/// repeat across runs).
fn command_id(store: &PgStore, key: &str) -> CommandId {
    CommandId::from_key(format!("{}/{key}", store.schema()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cut_after_its_commit_is_replayed_by_its_command_id() {
    let Some(Harness {
        proxy,
        proxied,
        direct,
    }) = harness().await
    else {
        return;
    };
    let id = "t-1".to_owned();
    let direct = Repository::new(direct);
    direct
        .create::<Tally, _>(&id, &Open, serde_json::json!({}))
        .await
        .expect("the tally is opened");
    let command = command_id(direct.store(), "add-once");
    let add = Add { amount: 5, parts: 2 };
    let through_proxy = Repository::new(proxied);

    proxy.arm(Cut::AfterCommit);
    let first = support::bounded(
        "the cut command",
        CALL,
        through_proxy.execute_with::<Tally, _>(
            &id,
            &add,
            serde_json::json!({}),
            CommandOptions::new().command_id(command),
        ),
    )
    .await;
    assert!(
        matches!(first, Err(CommandError::Store(_))),
        "the cut command returned {first:?}"
    );
    let cutting = proxy.cut_done(CALL).await;
    assert!(cutting.landed(), "the cut fell after the commit: {cutting}");

    let again = support::bounded(
        "the command again",
        CALL,
        through_proxy.execute_with::<Tally, _>(
            &id,
            &add,
            serde_json::json!({}),
            CommandOptions::new().command_id(command),
        ),
    )
    .await
    .expect("the command again");
    assert!(again.replayed, "{again:?}");
    assert_eq!(
        again.last_position,
        cutting.positions.last().copied(),
        "{cutting}"
    );
    assert_eq!(again.events, 2, "{again:?}");
    let derived: Vec<EventId> = (0..2).map(|index| command.event_id(index)).collect();
    assert_eq!(again.event_ids, derived);

    let tally = direct.load::<Tally>(&id).await.expect("the tally loads");
    assert_eq!(
        (tally.total, tally.additions),
        (10, 2),
        "the command applied once"
    );
    let stored = stream_of(direct.store(), Tally::KIND, &id).await;
    assert_eq!(
        stored.len(),
        3,
        "opened, and the command's two events: {stored:?}"
    );
    assert_eq!(stored[1..].iter().map(|(id, _)| *id).collect::<Vec<_>>(), derived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_retried_after_a_store_error_finds_its_commit() {
    let Some(Harness {
        proxy,
        proxied,
        direct,
    }) = harness().await
    else {
        return;
    };
    let id = "t-2".to_owned();
    let direct = Repository::new(direct);
    direct
        .create::<Tally, _>(&id, &Open, serde_json::json!({}))
        .await
        .expect("the tally is opened");
    let command = command_id(direct.store(), "add-retried");
    let through_proxy = Repository::new(proxied);

    // Fires once, then the proxy passes everything.
    proxy.arm(Cut::AfterCommit);
    let outcome = support::bounded(
        "the retried command",
        CALL,
        through_proxy.execute_with::<Tally, _>(
            &id,
            &Add { amount: 7, parts: 1 },
            serde_json::json!({}),
            CommandOptions::new().command_id(command).retry(
                RetryPolicy::new()
                    .store_errors(3)
                    .backoff(Duration::ZERO, Duration::ZERO),
            ),
        ),
    )
    .await
    .expect("the command succeeds on its second attempt");
    let cutting = proxy.try_cut_done().expect("the cut was reported");
    assert!(cutting.landed(), "the cut fell after the commit: {cutting}");
    assert_eq!(outcome.attempts, 2, "{outcome:?}");
    assert!(
        outcome.replayed,
        "the second attempt found the first's events: {outcome:?}"
    );
    assert_eq!(
        outcome.last_position,
        cutting.positions.last().copied(),
        "{cutting}"
    );

    let tally = direct.load::<Tally>(&id).await.expect("the tally loads");
    assert_eq!((tally.total, tally.additions), (7, 1), "the command applied once");
    let stored = stream_of(direct.store(), Tally::KIND, &id).await;
    assert_eq!(
        stored.iter().map(|(id, _)| *id).collect::<Vec<_>>()[1..],
        [command.event_id(0)],
        "the event is stored once"
    );
}

// ---- Two processes, one command id.

/// Set in the children: `<schema> <lock key> <aggregate id> <command id>`.
const CHILD: &str = "SOURCERY_POSTGRES_COMMAND_CHILD";
const ROUNDS: u32 = 5;
const PROCESSES: usize = 2;
/// The first key of the parent's two-key advisory lock (the store's own
/// locks take one `bigint` key: the two spaces never meet).
const BARRIER_CLASS: i32 = 0x5eed;
/// How long the parent waits for one line of a child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
const ADD: Add = Add { amount: 3, parts: 3 };

/// The test's name as the harness knows it (`unknown_outcome::name`).
fn test_name(function: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_owned(),
    }
}

/// A child process, killed if the parent gives up on it.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(spec: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                &test_name("same_command_child"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("the child's stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line that holds `marker`, and what follows it.
    fn line_after(&mut self, marker: &str) -> String {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    if let Some((_, rest)) = line.split_once(marker) {
                        return rest.trim().to_owned();
                    }
                }
                Err(error) => panic!("a child printed no {marker:?} within {LINE_TIMEOUT:?}: {error}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a child was told: `(last position, replayed, events)`.
type Told = (Option<i64>, bool, usize);

fn parse_told(line: &str) -> Result<Told, String> {
    let mut words = line.split_whitespace();
    let (Some(position), Some(replayed), Some(events), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(line.to_owned());
    };
    let position = match position {
        "none" => None,
        position => Some(position.parse().map_err(|_| line.to_owned())?),
    };
    Ok((
        position,
        replayed.parse().map_err(|_| line.to_owned())?,
        events.parse().map_err(|_| line.to_owned())?,
    ))
}

#[test]
fn two_processes_running_one_command_id_write_it_once_and_agree() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let Some(store) = runtime.block_on(support::store_with::<String, serde_json::Value>(2)) else {
        return;
    };
    let repository = Repository::new(store);
    let url = support::database_url().expect("DATABASE_URL is set");
    let mut barrier = runtime.block_on(async {
        PgConnection::connect(&url)
            .await
            .expect("the barrier's connection")
    });
    for round in 0..ROUNDS {
        let id = format!("shared-{round}");
        let command = command_id(repository.store(), &id);
        // The key of this round's barrier: this process and round.
        let key = i32::try_from(std::process::id() % 1_000_000).expect("small") * 10
            + i32::try_from(round).expect("small");
        runtime.block_on(async {
            repository
                .create::<Tally, _>(&id, &Open, serde_json::json!({}))
                .await
                .expect("the tally is opened");
            sqlx::query("SELECT pg_advisory_lock($1, $2)")
                .bind(BARRIER_CLASS)
                .bind(key)
                .execute(&mut barrier)
                .await
                .expect("the parent holds the barrier");
        });
        let spec = format!("{} {key} {id} {command}", repository.store().schema());
        let mut children: Vec<Running> = (0..PROCESSES).map(|_| Running::start(&spec)).collect();
        for child in &mut children {
            child.line_after("ready");
        }
        // Both wait on the barrier: then it opens for both at once.
        runtime.block_on(support::bounded("the children reaching the barrier", 60, async {
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int4::oid \
                     AND objid = $2::int4::oid AND objsubid = 2 AND NOT granted",
                )
                .bind(BARRIER_CLASS)
                .bind(key)
                .fetch_one(&mut barrier)
                .await
                .expect("the lock table");
                if waiting == i64::try_from(PROCESSES).expect("small") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(BARRIER_CLASS)
                .bind(key)
                .execute(&mut barrier)
                .await
                .expect("the parent opens the barrier");
        }));
        let told: Vec<Told> = children
            .iter_mut()
            .map(|child| {
                let line = child.line_after("outcome:");
                parse_told(&line).unwrap_or_else(|line| panic!("round {round}: a child failed: {line}"))
            })
            .collect();
        drop(children);

        let writers = told.iter().filter(|(_, replayed, _)| !replayed).count();
        assert_eq!(
            writers, 1,
            "round {round}: one process wrote, the other replayed: {told:?}"
        );
        assert!(
            told.iter()
                .all(|outcome| outcome.0 == told[0].0 && outcome.2 == 3),
            "round {round}: both were told the same outcome: {told:?}"
        );
        let (tally, stored) = runtime.block_on(async {
            let tally = repository.load::<Tally>(&id).await.expect("the tally loads");
            (tally, stream_of(repository.store(), Tally::KIND, &id).await)
        });
        assert_eq!(
            (tally.total, tally.additions),
            (9, 3),
            "round {round}: the command applied once ({told:?})"
        );
        let derived: Vec<EventId> = (0..3).map(|index| command.event_id(index)).collect();
        assert_eq!(
            stored.iter().map(|(id, _)| *id).collect::<Vec<_>>()[1..],
            derived,
            "round {round}: its events are stored once"
        );
        assert_eq!(
            told[0].0,
            stored.last().map(|(_, position)| *position),
            "round {round}"
        );
    }
}

/// The child: runs the command when the parent's barrier opens, prints
/// what it was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_command_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let [schema, key, id, command] = spec.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{CHILD}={spec} is not `schema key id command`");
    };
    let key: i32 = key.parse().expect("the barrier's key");
    let command = CommandId::from_uuid(command.parse().expect("the command id"));
    let url = support::database_url().expect("DATABASE_URL is set");
    let pool = support::pool(1, "sourcery-postgres-command-child")
        .await
        .expect("DATABASE_URL is set");
    let repository = Repository::new(PgStore::with_schema(pool, schema).expect("a valid schema"));
    let id = id.to_owned();
    // Warm: the pool's connection is open and the load prepared.
    repository.load::<Tally>(&id).await.expect("the tally loads");
    let mut barrier = PgConnection::connect(&url)
        .await
        .expect("the barrier's connection");
    println!("ready");
    support::bounded("the barrier", 60, async {
        sqlx::query("SELECT pg_advisory_lock_shared($1, $2)")
            .bind(BARRIER_CLASS)
            .bind(key)
            .execute(&mut barrier)
            .await
            .expect("the barrier opens")
    })
    .await;
    let outcome = support::bounded(
        "the command",
        60,
        repository.execute_with::<Tally, _>(
            &id,
            &ADD,
            serde_json::json!({}),
            CommandOptions::new().command_id(command),
        ),
    )
    .await;
    match outcome {
        Ok(outcome) => println!(
            "outcome: {} {} {}",
            outcome
                .last_position
                .map_or_else(|| "none".to_owned(), |position| position.to_string()),
            outcome.replayed,
            outcome.events
        ),
        Err(error) => println!("outcome: error {error:?}"),
    }
}

// ---- An aggregate, written by hand (this crate does not depend on the
// derive macros).

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;

impl DomainEvent for Opened {
    const KIND: &'static str = "tally.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    amount: u64,
}

impl DomainEvent for Added {
    const KIND: &'static str = "tally.added";
}

#[derive(Debug, Clone, PartialEq)]
enum TallyEvent {
    Opened(Opened),
    Added(Added),
}

impl EventPayload for TallyEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened(event) => event.kind(),
            Self::Added(event) => event.kind(),
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            Self::Opened(event) => event.schema_version(),
            Self::Added(event) => event.schema_version(),
        }
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        match self {
            Self::Opened(event) => event.encode_with(codec),
            Self::Added(event) => event.encode_with(codec),
        }
    }
}

impl DecodeEvent for TallyEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Opened::KIND, Added::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if let Some(event) = Opened::decode_with(codec, event)? {
            return Ok(Some(Self::Opened(event)));
        }
        Ok(Added::decode_with(codec, event)?.map(Self::Added))
    }
}

/// The sum of the amounts added, and how many additions: a command applied
/// twice shows in both.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    additions: u64,
}

impl Aggregate for Tally {
    const KIND: &'static str = "tally";
    type Id = String;
    type Event = TallyEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &TallyEvent) {
        if let TallyEvent::Added(added) = event {
            self.total += added.amount;
            self.additions += 1;
        }
    }
}

struct Open;

/// Adds `amount`, `parts` times: one event each, one batch.
struct Add {
    amount: u64,
    parts: u64,
}

impl HandleCreate<Open> for Tally {
    fn handle_create(_: &Open) -> Result<Vec<TallyEvent>, Infallible> {
        Ok(vec![TallyEvent::Opened(Opened)])
    }
}

impl Handle<Add> for Tally {
    fn handle(&self, add: &Add) -> Result<Vec<TallyEvent>, Infallible> {
        Ok((0..add.parts)
            .map(|_| TallyEvent::Added(Added { amount: add.amount }))
            .collect())
    }
}

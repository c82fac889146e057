//! Several processes open one file that does not exist yet, at the same
//! moment, with the default options (issue 21): every open succeeds, the
//! ones that find the file locked waiting up to the busy timeout.
//!
//! The children are this test binary again, running `open_child` with
//! `SOURCERY_SQLITE_OPEN_CHILD` set. Each says `ready` on its stdout and
//! then blocks reading its stdin; once all are ready the parent writes a line
//! to each, so they open together (a real barrier, no sleeps), and each
//! reports `opened` or the error on its stdout.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sourcery_core::store::{EventFilter, EventStore, NonEmpty, PersistableEvent};
use sourcery_sqlite::{Error, OpenOptions, Store};

const CHILD: &str = "SOURCERY_SQLITE_OPEN_CHILD";
const PROCESSES: usize = 6;
const ROUNDS: usize = 30;
/// How long the parent waits for one line of a child's output: far above
/// the busy timeout (5 s), so a child that waited the timeout out reports
/// its error rather than being given up on.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

type TestStore = Store<String, ()>;

#[test]
fn processes_opening_a_new_file_together_all_succeed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let path = dir.path().join(format!("round-{round}.db"));
        for (child, outcome) in open_together(&path).into_iter().enumerate() {
            if outcome != "opened" {
                failures.push(format!("round {round}, process {child}: {outcome}"));
            }
        }
        // Every process saw the schema whole: each appended one event.
        let connection = rusqlite::Connection::open(&path).expect("the file opens");
        let events: i64 = connection
            .query_row("SELECT count(*) FROM sourcery_events", [], |row| row.get(0))
            .expect("the events table exists");
        // The migrations table keeps one row per version: as many rows as
        // the highest version means none was applied twice or skipped.
        let (migrations, latest): (i64, i64) = connection
            .query_row(
                "SELECT count(*), max(version) FROM sourcery_migrations",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("the migrations table exists");
        let journal: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("the journal mode");
        assert_eq!(journal, "wal", "round {round}");
        if failures.is_empty() {
            assert_eq!(events, i64::try_from(PROCESSES).unwrap(), "round {round}");
        }
        assert_eq!(migrations, latest, "round {round}: each migration applied once");
    }
    assert!(
        failures.is_empty(),
        "{} of {} opens failed:\n{}",
        failures.len(),
        ROUNDS * PROCESSES,
        failures.join("\n")
    );
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn line(&mut self, what: &str) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(error) => {
                let _ = self.child.kill();
                panic!("a child did not report {what} within {LINE_TIMEOUT:?}: {error}");
            }
        }
    }
}

/// Starts the children, lets them open `path` together, and returns each
/// one's outcome.
fn open_together(path: &Path) -> Vec<String> {
    let mut children: Vec<Running> = (0..PROCESSES)
        .map(|_| {
            let mut child = Command::new(std::env::current_exe().expect("the test binary"))
                .args([
                    "--exact",
                    &test_name!(open_child),
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the child starts");
            let stdin = child.stdin.take().expect("the child's stdin");
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
            Running { child, stdin, lines }
        })
        .collect();
    // The barrier: all are blocked on their stdin before any is released.
    for child in &mut children {
        // The test harness prints lines of its own first, and the start of
        // `test open_child ... ` on the line where `ready` lands.
        while !child.line("ready").ends_with("ready") {}
    }
    for child in &mut children {
        writeln!(child.stdin, "go").expect("the child reads its stdin");
    }
    children
        .into_iter()
        .map(|mut child| {
            let outcome = loop {
                let line = child.line("its outcome");
                if let Some((_, outcome)) = line.split_once("outcome: ") {
                    break outcome.to_owned();
                }
            };
            child.child.wait().expect("the child is reaped");
            outcome
        })
        .collect()
}

/// A file not yet in WAL mode, write-locked by another connection (as by
/// another process migrating it): opening waits the busy timeout out, then
/// fails with `Busy` (SQLite's switch to WAL answers "database is locked"
/// at once, without its busy handler).
#[test]
fn an_open_waits_out_a_write_lock_on_a_file_not_yet_in_wal_mode() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("locked.db");
    let holder = rusqlite::Connection::open(&path).expect("the file opens");
    holder
        .execute_batch(
            "CREATE TABLE application (x INTEGER); BEGIN IMMEDIATE; INSERT INTO application VALUES (1);",
        )
        .expect("the other connection takes the write lock");
    let timeout = Duration::from_millis(300);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let started = std::time::Instant::now();
    let opened = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            OpenOptions::new().busy_timeout(timeout).open::<String, ()>(&path),
        )
        .await
        .expect("the open ends")
    });
    let waited = started.elapsed();
    assert!(matches!(opened, Err(Error::Busy(_))), "{opened:?}");
    assert!(
        waited >= timeout,
        "it failed after {waited:?}, before the busy timeout"
    );
    // Released, the file opens.
    holder.execute_batch("COMMIT").expect("commit");
    let store = runtime
        .block_on(OpenOptions::new().busy_timeout(timeout).open::<String, ()>(&path))
        .expect("the file opens once the lock is released");
    drop(store);
}

/// The child: waits for the parent's line, opens the store, appends one
/// event, reports.
#[test]
fn open_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("the parent's signal");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(async {
        let store: TestStore = match Store::open(Path::new(&path)).await {
            Ok(store) => store,
            Err(error) => return format!("open failed: {error:?}"),
        };
        let event = PersistableEvent::new("opened", b"{}".to_vec(), ());
        if let Err(error) = store
            .append(
                "child",
                &std::process::id().to_string(),
                None,
                NonEmpty::new(event),
            )
            .await
        {
            return format!("append failed: {error:?}");
        }
        match store.load_events(&[EventFilter::for_event("opened")]).await {
            Ok(_) => "opened".to_owned(),
            Err(error) => format!("load failed: {error:?}"),
        }
    });
    println!("outcome: {outcome}");
}

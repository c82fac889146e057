//! Crash safety: a child process appends batches in a loop and reports each
//! commit; the parent kills it with SIGKILL at a random moment, 50 times, on
//! the same file. After each kill the file opens, `PRAGMA integrity_check`
//! says `ok`, every batch the child reported is there, and no batch is
//! there in part.
//!
//! The child is this test binary again, running `crash_child` with
//! `SOURCERY_SQLITE_CRASH_CHILD` set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

const CHILD: &str = "SOURCERY_SQLITE_CRASH_CHILD";
const KILLS: u32 = 50;
const BATCH: u32 = 10;
/// The most commits the parent waits for before it kills the child.
const MAX_COMMITS_BEFORE_KILL: u64 = 30;
/// How long the parent waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Written {
    run: u32,
    batch: u32,
    index: u32,
    /// Makes rows of varied sizes, some spanning overflow pages.
    padding: String,
}

impl DomainEvent for Written {
    const KIND: &'static str = "crash.written";
    /// Not 1, so the test sees the stored schema version survive the kills.
    const VERSION: u32 = 2;
}

type TestStore = Store<String, serde_json::Value>;

#[test]
fn a_killed_writer_leaves_whole_batches_and_a_sound_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("crash.db");
    let mut random = super::Random::from_clock("crash test");
    let seed = random.seed;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut reported: BTreeSet<(u32, u32)> = BTreeSet::new();

    for run in 0..KILLS {
        let synchronous = if run % 2 == 0 { "full" } else { "normal" };
        let kill_after = random.next(MAX_COMMITS_BEFORE_KILL + 1);
        let committed = run_and_kill(&path, run, synchronous, kill_after);
        reported.extend(committed.iter().map(|&batch| (run, batch)));

        assert_eq!(
            integrity_check(&path),
            "ok",
            "run {run} (seed {seed}): the file is sound"
        );
        let found = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), batches_in(&path))
                .await
                .expect("the check finishes in time")
        });
        for (batch, indices) in &found {
            assert_eq!(
                indices,
                &(0..BATCH).collect::<Vec<_>>(),
                "run {run} (seed {seed}): batch {batch:?} is whole and in order"
            );
        }
        let missing: Vec<_> = reported
            .iter()
            .filter(|batch| !found.contains_key(batch))
            .collect();
        assert!(
            missing.is_empty(),
            "run {run} (seed {seed}): reported batches are missing: {missing:?}"
        );
    }
    eprintln!(
        "{} batches reported committed across {KILLS} kills",
        reported.len()
    );
}

/// Starts the child, waits for `kill_after` reported commits, kills it with
/// SIGKILL and returns every batch it reported.
fn run_and_kill(path: &Path, run: u32, synchronous: &str, kill_after: u64) -> Vec<u32> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &test_name!(crash_child),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, path)
        .env("SOURCERY_SQLITE_CRASH_RUN", run.to_string())
        .env("SOURCERY_SQLITE_CRASH_SYNCHRONOUS", synchronous)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (received, reader) = super::lines_of(stdout);
    let mut committed = Vec::new();
    let parse = |line: &str| -> Option<u32> { line.strip_prefix("committed ")?.parse().ok() };
    while (committed.len() as u64) < kill_after {
        match received.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => committed.extend(parse(&line)),
            Err(error) => {
                let _ = child.kill();
                panic!("run {run}: the child stopped reporting commits: {error}");
            }
        }
    }
    child.kill().expect("SIGKILL reaches the child");
    child.wait().expect("the child is reaped");
    // Lines printed before the kill are commits too.
    while let Ok(line) = received.recv_timeout(LINE_TIMEOUT) {
        committed.extend(parse(&line));
    }
    reader.join().expect("the reader thread ends");
    committed
}

fn integrity_check(path: &Path) -> String {
    let connection = rusqlite::Connection::open(path).expect("the file opens");
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("the integrity check runs")
}

/// Every batch in the file: its (run, batch) and the indices of its events
/// in position order.
async fn batches_in(path: &Path) -> BTreeMap<(u32, u32), Vec<u32>> {
    let store = TestStore::open(path).await.expect("the store opens after a kill");
    let events = store
        .load_events(&[EventFilter::for_event(Written::KIND)])
        .await
        .expect("the log loads");
    let mut batches: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for event in &events {
        assert_eq!(
            event.schema_version,
            Written::VERSION,
            "an event at position {} came back with another schema version",
            event.position
        );
        let written: Written = event.decode(store.codec()).expect("a written event decodes");
        batches
            .entry((written.run, written.batch))
            .or_default()
            .push(written.index);
    }
    batches
}

/// The child: appends batches until it is killed, printing each commit.
#[tokio::test]
async fn crash_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let run: u32 = std::env::var("SOURCERY_SQLITE_CRASH_RUN")
        .ok()
        .and_then(|run| run.parse().ok())
        .expect("the run number");
    let synchronous = match std::env::var("SOURCERY_SQLITE_CRASH_SYNCHRONOUS").as_deref() {
        Ok("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let store: TestStore = OpenOptions::new()
        .synchronous(synchronous)
        .open(Path::new(&path))
        .await
        .expect("the child opens the store");
    // Bounded: the parent kills the child long before this ends.
    for batch in 0..100_000 {
        let stream = format!("crash-{run}-{}", batch % 4);
        let mut tx = store.begin::<Unchecked>("crash", stream, None);
        for index in 0..BATCH {
            let padding = "x".repeat(((batch * 7 + index * 131) % 3000) as usize);
            tx.append(
                Written {
                    run,
                    batch,
                    index,
                    padding,
                },
                serde_json::json!({ "run": run }),
            )
            .expect("the event encodes");
        }
        tx.commit().await.expect("the child's commit");
        println!("committed {batch}");
    }
}

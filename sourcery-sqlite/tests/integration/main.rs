//! The integration tests of the SQLite store, in one test binary: each module is
//! one theme. One binary compiles and links once, where a binary per file
//! linked every dependency again (`tests/conformance.rs` stays apart).

/// The test harness's name for test `$function` of the calling module (its
/// module path without the crate's name, then the function), for tests that
/// run one test of this binary in a child process with `--exact`.
macro_rules! test_name {
    ($function:ident) => {{
        let _ = $function;
        match module_path!().split_once("::") {
            Some((_, module)) => format!("{module}::{}", stringify!($function)),
            None => stringify!($function).to_owned(),
        }
    }};
}

/// A child process's output, line by line, read on a thread of its own so
/// the test can wait for each line with a bound (`recv_timeout`): the
/// receiver of the lines and the reading thread (which ends with the
/// child's output).
fn lines_of(
    stdout: std::process::ChildStdout,
) -> (std::sync::mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    use std::io::BufRead as _;
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (received, reader)
}

/// xorshift64: random enough to pick kill moments, and reproducible from
/// the seed it prints.
struct Random {
    state: u64,
    /// The seed, for failure messages.
    seed: u64,
}

impl Random {
    /// Seeded from the clock; the seed is printed under `label`, so a failed
    /// run can be told apart and reasoned about.
    fn from_clock(label: &str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| u64::from(elapsed.subsec_nanos()) ^ elapsed.as_secs())
            | 1;
        eprintln!("{label} seed: {seed}");
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

/// Bounds every store call of the crash tests' parents (and their waits for
/// a runner to reach a position).
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `call`, failing the test if it takes longer than [`CALL_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .expect("the store call finishes in time")
}

/// Busy-waits for `delay`: picks the moment of a kill after a child's
/// report (not a wait for anything to happen; the crash tests' assertions
/// hold wherever the kill falls).
fn spin_for(delay: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < delay {
        std::hint::spin_loop();
    }
}

mod bad_files;
mod checkpoints;
mod concurrency;
mod crash;
mod data;
mod ids;
mod migrations;
mod open_together;
mod reactor_crash;
mod reactor_store;
mod read_model;
mod read_model_crash;
mod retry_after_kill;
mod snapshots;
mod subscriptions;
mod wal;

//! A retry after an unknown outcome: a child process appends batches and is
//! killed with SIGKILL at a random moment, 10 times, on the same file. Before
//! each append it prints a record of the batch (its stream, how it appends,
//! its event ids) to its standard output, a pipe the parent reads: once the
//! write returns, the record is in the pipe and survives the kill. After
//! each commit it prints the batch's last position. So after the kill the
//! parent knows the batch that was in flight (recorded, never reported) but
//! not whether it landed.
//!
//! The parent, a new process on the file, then retries that batch with the
//! same ids and the same expected version. If the batch had landed (all its
//! ids stored, none without the others), the retry must be a replay that
//! returns its position; if not, the retry writes it. A second retry is a
//! replay of whichever wrote it. Every batch ever recorded is then stored
//! exactly once: every recorded id once, in its batch's order, on
//! consecutive positions, and no event that was not recorded.
//!
//! The runs go through the four ways to append (no version check, an exact
//! version, a new stream, an existing stream), at both durability levels;
//! the test prints how many in-flight batches had landed (`--nocapture`).
//!
//! The child is this test binary again, running `retry_child` with
//! `SOURCERY_SQLITE_RETRY_CHILD` set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::event::DomainEvent;
use sourcery_core::store::{
    AppendOutcome, EventFilter, EventId, EventStore, JsonCodec, NonEmpty, PersistableEvent,
};
use sourcery_sqlite::{Error, OpenOptions, Store, Synchronous};

use super::bounded;

const CHILD: &str = "SOURCERY_SQLITE_RETRY_CHILD";
const KILLS: u32 = 30;
const BATCH: u32 = 5;
/// Streams per run (but one per batch when each batch starts a stream).
const STREAMS: u32 = 3;
/// The most records the parent reads before it kills the child.
const MAX_RECORDS_BEFORE_KILL: u64 = 20;
/// The latest moment the parent kills the child after reading the record
/// of the batch it is appending. Appends of the (unoptimised) test build
/// take a millisecond or two here, so the kill falls before, in or after
/// one: about half the in-flight batches had landed over a few runs.
const MAX_KILL_DELAY: Duration = Duration::from_millis(4);
/// How long the parent waits for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Written {
    run: u32,
    batch: u32,
    index: u32,
}

impl DomainEvent for Written {
    const KIND: &'static str = "retry.written";
}

type TestStore = Store<String, serde_json::Value>;

/// How a batch is appended, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `append(None)`.
    Any,
    /// `append(Some(version))`.
    Exact(i64),
    /// `append_expecting_new`.
    New,
    /// `append_expecting_existing`.
    Existing,
}

impl Expect {
    fn to_text(self) -> String {
        match self {
            Self::Any => "any".to_owned(),
            Self::Exact(version) => format!("exact:{version}"),
            Self::New => "new".to_owned(),
            Self::Existing => "existing".to_owned(),
        }
    }

    fn from_text(text: &str) -> Option<Self> {
        match text {
            "any" => Some(Self::Any),
            "new" => Some(Self::New),
            "existing" => Some(Self::Existing),
            other => other.strip_prefix("exact:")?.parse().ok().map(Self::Exact),
        }
    }
}

/// A batch about to be appended, as the child prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    run: u32,
    batch: u32,
    stream: String,
    expect: Expect,
    ids: Vec<EventId>,
}

impl Record {
    /// The line the child prints: `record ... end`, so that a line the
    /// kill cut (a record never followed by its append) is seen as such.
    fn to_line(&self) -> String {
        let ids: Vec<String> = self.ids.iter().map(ToString::to_string).collect();
        format!(
            "record {} {} {} {} {} end",
            self.run,
            self.batch,
            self.stream,
            self.expect.to_text(),
            ids.join(",")
        )
    }

    fn from_line(line: &str) -> Option<Self> {
        let (_, record) = line.split_once("record ")?;
        let mut parts = record.split(' ');
        let record = Self {
            run: parts.next()?.parse().ok()?,
            batch: parts.next()?.parse().ok()?,
            stream: parts.next()?.to_owned(),
            expect: Expect::from_text(parts.next()?)?,
            ids: parts
                .next()?
                .split(',')
                .map(|id| id.parse().ok())
                .collect::<Option<_>>()?,
        };
        (parts.next() == Some("end") && parts.next().is_none()).then_some(record)
    }

    fn events(&self) -> NonEmpty<PersistableEvent<serde_json::Value>> {
        let events = (0..)
            .zip(&self.ids)
            .map(|(index, id)| {
                let written = Written {
                    run: self.run,
                    batch: self.batch,
                    index,
                };
                let data = serde_json::to_vec(&written).expect("the event encodes");
                PersistableEvent::new(Written::KIND, data, serde_json::json!({ "run": self.run }))
                    .with_id(*id)
            })
            .collect();
        NonEmpty::from_vec(events).expect("a batch has events")
    }

    async fn append(&self, store: &TestStore) -> AppendOutcome<i64, Error> {
        let (kind, id) = ("retry", &self.stream);
        match self.expect {
            Expect::Any => store.append(kind, id, None, self.events()).await,
            Expect::Exact(version) => store.append(kind, id, Some(version), self.events()).await,
            Expect::New => store.append_expecting_new(kind, id, self.events()).await,
            Expect::Existing => store.append_expecting_existing(kind, id, self.events()).await,
        }
    }
}

/// What the kills left in flight.
#[derive(Debug, Default)]
struct Tally {
    /// The in-flight batch had committed: the retry was a replay.
    landed: u32,
    /// It had not: the retry wrote it.
    written_by_retry: u32,
    /// The kill fell between a report and the next record.
    none_in_flight: u32,
}

#[test]
fn a_retry_after_a_kill_is_a_replay_if_the_batch_landed_and_a_write_if_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("retry.db");
    let mut random = super::Random::from_clock("retry test");
    let seed = random.seed;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let mut tally = Tally::default();
    let mut recorded: Vec<Record> = Vec::new();

    for run in 0..KILLS {
        let synchronous = if run % 2 == 0 { "full" } else { "normal" };
        let way = (run / 2) % 4;
        let kill_after = 1 + random.next(MAX_RECORDS_BEFORE_KILL);
        let delay =
            Duration::from_micros(random.next(u64::try_from(MAX_KILL_DELAY.as_micros()).unwrap_or(1)));
        let (records, reported) = run_and_kill(&path, run, synchronous, way, kill_after, delay);
        let context = format!("run {run} (seed {seed}, way {way}, {synchronous})");
        assert!(!records.is_empty(), "{context}: the child recorded a batch");
        // Records are written in order, each before its append: every batch
        // but the last recorded one was reported.
        for record in &records[..records.len() - 1] {
            assert!(
                reported.contains_key(&record.batch),
                "{context}: batch {} was recorded and followed by another, so it was reported",
                record.batch
            );
        }

        runtime.block_on(async {
            let store: TestStore = bounded(Store::open(&path))
                .await
                .expect("the store opens after a kill");
            // Acknowledged batches are where the child was told they are.
            for record in &records {
                if let Some(&position) = reported.get(&record.batch) {
                    let positions = positions_of(&store, record).await;
                    assert_eq!(
                        positions.last().copied().flatten(),
                        Some(position),
                        "{context}: batch {} is where its commit said",
                        record.batch
                    );
                }
            }
            let last = records.last().expect("a record");
            if reported.contains_key(&last.batch) {
                tally.none_in_flight += 1;
            } else {
                // In flight: landed whole, or not at all.
                let positions = positions_of(&store, last).await;
                let landed = if positions.iter().all(Option::is_some) {
                    Some(positions.last().copied().flatten().expect("a position"))
                } else {
                    assert!(
                        positions.iter().all(Option::is_none),
                        "{context}: batch {} landed in part: {positions:?}",
                        last.batch
                    );
                    None
                };
                let retry = bounded(last.append(&store)).await.unwrap_or_else(|error| {
                    panic!("{context}: the retry of batch {} failed: {error:?}", last.batch)
                });
                if let Some(position) = landed {
                    assert!(
                        retry.replayed,
                        "{context}: the landed batch {} is replayed",
                        last.batch
                    );
                    assert_eq!(retry.last_position, position, "{context}: the original position");
                    tally.landed += 1;
                } else {
                    assert!(
                        !retry.replayed,
                        "{context}: the lost batch {} is written",
                        last.batch
                    );
                    tally.written_by_retry += 1;
                }
                let again = bounded(last.append(&store))
                    .await
                    .unwrap_or_else(|error| panic!("{context}: a second retry failed: {error:?}"));
                assert!(again.replayed, "{context}: a second retry is a replay");
                assert_eq!(again.last_position, retry.last_position, "{context}");
            }
            recorded.extend(records);
            exactly_once(&store, &recorded, &context).await;
        });
    }
    eprintln!(
        "{KILLS} kills: {} in-flight batches had landed (replayed by the retry), {} had not (written by the \
         retry), {} kills fell between a commit's report and the next record",
        tally.landed, tally.written_by_retry, tally.none_in_flight
    );
}

async fn positions_of(store: &TestStore, record: &Record) -> Vec<Option<i64>> {
    bounded(store.event_positions("retry", &record.stream, &record.ids))
        .await
        .expect("the positions read")
}

/// Every recorded batch is stored once, whole and in order, and nothing
/// else is.
async fn exactly_once(store: &TestStore, recorded: &[Record], context: &str) {
    let events = bounded(store.load_events(&[EventFilter::for_event(Written::KIND)]))
        .await
        .expect("the log loads");
    let mut stored: BTreeMap<EventId, (i64, String, Written)> = BTreeMap::new();
    for event in &events {
        let written: Written = event.decode(&JsonCodec).expect("a written event decodes");
        let previous = stored.insert(event.id, (event.position, event.aggregate_id.clone(), written));
        assert!(
            previous.is_none(),
            "{context}: the id {} is stored twice",
            event.id
        );
    }
    let mut expected: BTreeSet<EventId> = BTreeSet::new();
    for record in recorded {
        let mut previous: Option<i64> = None;
        for (index, id) in (0..).zip(&record.ids) {
            let (position, stream, written) = stored.get(id).unwrap_or_else(|| {
                panic!(
                    "{context}: batch {} of run {} is missing",
                    record.batch, record.run
                )
            });
            assert_eq!(stream, &record.stream, "{context}");
            assert_eq!(
                written,
                &Written {
                    run: record.run,
                    batch: record.batch,
                    index
                },
                "{context}"
            );
            if let Some(previous) = previous {
                assert_eq!(
                    *position,
                    previous + 1,
                    "{context}: a batch is on consecutive positions"
                );
            }
            previous = Some(*position);
            expected.insert(*id);
        }
    }
    let stray: Vec<_> = stored.keys().filter(|id| !expected.contains(id)).collect();
    assert!(stray.is_empty(), "{context}: events nobody recorded: {stray:?}");
}

/// Starts the child, waits for `kill_after` records and then
/// `delay`, kills it with SIGKILL and returns every batch it recorded, and
/// every batch it reported with its last position.
fn run_and_kill(
    path: &Path,
    run: u32,
    synchronous: &str,
    way: u32,
    kill_after: u64,
    delay: Duration,
) -> (Vec<Record>, BTreeMap<u32, i64>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            &test_name!(retry_child),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, path)
        .env("SOURCERY_SQLITE_RETRY_RUN", run.to_string())
        .env("SOURCERY_SQLITE_RETRY_WAY", way.to_string())
        .env("SOURCERY_SQLITE_RETRY_SYNCHRONOUS", synchronous)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (received, reader) = super::lines_of(stdout);
    let mut records = Vec::new();
    let mut reported = BTreeMap::new();
    // The harness may print the test's name on the line of the first one.
    let mut take = |line: &str| {
        if let Some(record) = Record::from_line(line) {
            records.push(record);
        } else if let Some((_, report)) = line.split_once("committed ")
            && let Some((batch, position)) = report.split_once(' ')
            && let (Ok(batch), Ok(position)) = (batch.parse::<u32>(), position.parse::<i64>())
        {
            reported.insert(batch, position);
        }
    };
    let mut seen = 0;
    while seen < kill_after {
        match received.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => {
                seen += u64::from(line.contains("record "));
                take(&line);
            }
            Err(error) => {
                let _ = child.kill();
                panic!("run {run}: the child stopped reporting commits: {error}");
            }
        }
    }
    // Not waiting for anything to happen: this picks the moment of the
    // kill, around the append of the batch just recorded. The assertions
    // hold wherever it falls.
    super::spin_for(delay);
    child.kill().expect("SIGKILL reaches the child");
    child.wait().expect("the child is reaped");
    // What the child wrote before the kill is in the pipe.
    while let Ok(line) = received.recv_timeout(LINE_TIMEOUT) {
        take(&line);
    }
    reader.join().expect("the reader thread ends");
    (records, reported)
}

/// The child: records each batch, appends it, reports it; until it is
/// killed.
#[tokio::test]
async fn retry_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        // Run as a normal test: nothing to do.
        return;
    };
    let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let run: u32 = variable("SOURCERY_SQLITE_RETRY_RUN").parse().expect("the run");
    let way: u32 = variable("SOURCERY_SQLITE_RETRY_WAY").parse().expect("the way");
    let synchronous = match variable("SOURCERY_SQLITE_RETRY_SYNCHRONOUS").as_str() {
        "normal" => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let store: TestStore = OpenOptions::new()
        .synchronous(synchronous)
        .open(Path::new(&path))
        .await
        .expect("the child opens the store");
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    // Bounded: the parent kills the child long before this ends.
    for batch in 0..100_000 {
        let stream = match way {
            // A new stream for each batch.
            2 => format!("run-{run}-batch-{batch}"),
            _ => format!("run-{run}-stream-{}", batch % STREAMS),
        };
        let version = versions.get(&stream).copied();
        let expect = match (way, version) {
            (1, Some(version)) => Expect::Exact(version),
            (1 | 2, _) => Expect::New,
            (3, Some(_)) => Expect::Existing,
            _ => Expect::Any,
        };
        let record = Record {
            run,
            batch,
            stream: stream.clone(),
            expect,
            ids: (0..BATCH).map(|_| EventId::new()).collect(),
        };
        // Standard output writes each line at once: the record is in the
        // pipe before the append starts.
        println!("{}", record.to_line());
        let written = record.append(&store).await.expect("the child's append");
        assert!(!written.replayed);
        versions.insert(stream, written.last_position);
        println!("committed {batch} {}", written.last_position);
    }
}

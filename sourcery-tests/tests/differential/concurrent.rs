//! The concurrent variant: several tasks append to a few shared streams at
//! once, most of them optimistically; afterwards the store's log must be
//! explainable by some serial order of the commits.
//!
//! What "explainable" means here, checked on the final log:
//!
//! - nothing lost or duplicated: the log holds every event of every
//!   committed batch once, and no event of a refused one;
//! - every committed batch is contiguous in its stream and in order, its
//!   last event at the position its commit returned;
//! - each successful optimistic commit expected exactly the stream's
//!   version just before its batch (so of writers racing from one version,
//!   one won);
//! - each conflict reports the expected version it was given and an actual
//!   version the stream really had, later than the expected one and not
//!   older than anything the task had already seen of the stream;
//! - a task sees its own writes (its reads and its commits never go back);
//! - a batch sent again with the same ids right after it returned (a retry
//!   after an unknown outcome) is a replay of its commit, at the same last
//!   position, or a conflict again after a conflict, and writes nothing;
//! - every stream's version is its last event's position;
//! - readers that follow the log skip nothing: a load of every event kind
//!   is a prefix of the log, and a subscription delivers all of it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::{collection, sample};
use sourcery_core::concurrency::{ExpectedVersion, Optimistic};
use sourcery_core::store::{AppendError, AppendOutcome, EventFilter, StoredEvent};
use tokio::sync::Barrier;

use crate::model::{EVENT_KINDS, Event, Kind, Planned, Stream};
use crate::run::{Meta, Store, WAIT, batch, bounded, describe, error_text, is, persistable};

/// How one attempt chooses what to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Reads the stream's version, then appends expecting it.
    ReadThenAppend,
    /// Appends expecting the version the task last learnt of the stream
    /// (from its own commit or a conflict), maybe stale by now; new when
    /// it learnt nothing yet.
    Remembered,
    /// `append_expecting_new`.
    ExpectingNew,
    /// No check.
    Unchecked,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadThenAppend => "read the version, then append expecting it",
            Self::Remembered => "append expecting the version last learnt",
            Self::ExpectingNew => "append_expecting_new",
            Self::Unchecked => "append unchecked",
        })
    }
}

/// One generated attempt: a stream, a batch size, a mode, and whether the
/// batch is sent again once the first call returned.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    stream: Stream,
    size: usize,
    mode: Mode,
    again: bool,
}

/// The streams the tasks share: few, so that they collide.
fn shared_streams() -> Vec<Stream> {
    Stream::all().take(3).collect()
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let mode = prop_oneof![
        4 => Just(Mode::ReadThenAppend),
        2 => Just(Mode::Remembered),
        1 => Just(Mode::ExpectingNew),
        1 => Just(Mode::Unchecked),
    ];
    let again = prop_oneof![3 => Just(false), 1 => Just(true)];
    (sample::select(shared_streams()), 1..=3_usize, mode, again).prop_map(|(stream, size, mode, again)| {
        Attempt {
            stream,
            size,
            mode,
            again,
        }
    })
}

/// 2-4 tasks of 1-6 attempts each.
pub(crate) fn tasks() -> impl Strategy<Value = Vec<Vec<Attempt>>> {
    collection::vec(collection::vec(attempt(), 1..=6), 2..=4)
}

/// An attempt with its events numbered.
#[derive(Clone, Debug)]
pub(crate) struct PlannedAttempt {
    stream: Stream,
    events: Vec<Planned>,
    mode: Mode,
    again: bool,
}

/// Numbers every event of every task, uniquely.
pub(crate) fn plan(tasks: &[Vec<Attempt>]) -> Vec<Vec<PlannedAttempt>> {
    let mut next = 0;
    tasks
        .iter()
        .map(|attempts| {
            attempts
                .iter()
                .map(|attempt| PlannedAttempt {
                    stream: attempt.stream,
                    events: (0..attempt.size)
                        .map(|_| {
                            next += 1;
                            Planned {
                                kind: Kind::cycling(next),
                                n: next,
                            }
                        })
                        .collect(),
                    mode: attempt.mode,
                    again: attempt.again,
                })
                .collect()
        })
        .collect()
}

/// The tasks, readably.
pub(crate) fn describe_plan(tasks: &[Vec<PlannedAttempt>]) -> String {
    let mut text = String::new();
    for (task, attempts) in tasks.iter().enumerate() {
        let _ = writeln!(text, "  task {task}:");
        for attempt in attempts {
            let numbers: Vec<String> = attempt
                .events
                .iter()
                .map(|planned| format!("#{}", planned.n))
                .collect();
            let again = if attempt.again { ", then again" } else { "" };
            let _ = writeln!(
                text,
                "    {} to {}: [{}]{again}",
                attempt.mode,
                attempt.stream,
                numbers.join(", ")
            );
        }
    }
    text
}

/// What an attempt got.
#[derive(Clone, Debug)]
enum Result<P> {
    Committed(P),
    /// Nothing written: the batch was stored already, ending here.
    Replayed(P),
    Conflict {
        expected: Option<P>,
        actual: Option<P>,
    },
    Failed(String),
}

impl<P: fmt::Debug> fmt::Display for Result<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Committed(last) => write!(f, "committed, last at {last:?}"),
            Self::Replayed(last) => write!(f, "replayed, last at {last:?}"),
            Self::Conflict { expected, actual } => {
                write!(f, "conflict (expected {expected:?}, actual {actual:?})")
            }
            Self::Failed(why) => write!(f, "FAILED {why}"),
        }
    }
}

/// A stream's version as a task read or passed it: the position of its
/// last event, `None` for a stream without events.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version<P>(Option<P>);

impl<P: fmt::Debug> fmt::Debug for Version<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One attempt as it ran.
#[derive(Clone, Debug)]
struct Record<P> {
    task: usize,
    attempt: PlannedAttempt,
    /// What the task read before appending (`ReadThenAppend`).
    read: Option<Version<P>>,
    /// The version passed; `None` for an unchecked append.
    expected: Option<Version<P>>,
    result: Result<P>,
    /// What sending the same batch again got, if it was sent again.
    retry: Option<Result<P>>,
}

impl<P: fmt::Debug> fmt::Display for Record<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numbers: Vec<String> = self
            .attempt
            .events
            .iter()
            .map(|planned| format!("#{}", planned.n))
            .collect();
        write!(
            f,
            "task {}: {} to {} [{}]",
            self.task,
            self.attempt.mode,
            self.attempt.stream,
            numbers.join(", ")
        )?;
        if let Some(read) = &self.read {
            write!(f, ", read {read:?}")?;
        }
        if let Some(expected) = &self.expected {
            write!(f, ", expected {expected:?}")?;
        }
        write!(f, ": {}", self.result)?;
        match &self.retry {
            Some(retry) => write!(f, "; again: {retry}"),
            None => Ok(()),
        }
    }
}

/// Sends `attempt`'s batch, expecting `expected` as its mode says.
async fn send<S: Store>(
    store: &S,
    attempt: &PlannedAttempt,
    expected: Option<Version<S::Position>>,
) -> std::result::Result<AppendOutcome<S::Position, S::Error>, String> {
    let (kind, id) = (attempt.stream.kind(), attempt.stream.id());
    match (attempt.mode, expected) {
        (Mode::Unchecked, _) | (_, None) => {
            bounded("append", store.append(kind, &id, None, batch(&attempt.events))).await
        }
        (Mode::ExpectingNew, _) => {
            bounded(
                "append_expecting_new",
                store.append_expecting_new(kind, &id, batch(&attempt.events)),
            )
            .await
        }
        (Mode::ReadThenAppend | Mode::Remembered, Some(Version(expected))) => {
            let mut transaction = store.begin::<Optimistic>(kind, id.clone(), expected);
            for &planned in &attempt.events {
                transaction.append_persistable(persistable(planned));
            }
            bounded("commit", transaction.commit())
                .await
                .map(|committed| committed.map(|written| written.expect("the batch is not empty")))
        }
    }
}

/// An append's outcome, as the checks read it.
fn result<P: Copy + fmt::Debug + 'static, E: std::error::Error + 'static>(
    outcome: std::result::Result<AppendOutcome<P, E>, String>,
) -> Result<P> {
    match outcome {
        Ok(Ok(written)) if written.replayed => Result::Replayed(written.last_position),
        Ok(Ok(written)) => Result::Committed(written.last_position),
        Ok(Err(AppendError::Conflict(conflict))) => match conflict.expected {
            ExpectedVersion::Exact(expected) => Result::Conflict {
                expected: Some(expected),
                actual: conflict.actual,
            },
            ExpectedVersion::NoStream => Result::Conflict {
                expected: None,
                actual: conflict.actual,
            },
            other => Result::Failed(format!("a conflict expecting {other}: {conflict}")),
        },
        Ok(Err(error)) => Result::Failed(error_text(&error)),
        Err(timeout) => Result::Failed(timeout),
    }
}

/// Runs one task's attempts, one after the other, once every task is ready.
async fn run_task<S: Store>(
    store: S,
    task: usize,
    attempts: Vec<PlannedAttempt>,
    start: Arc<Barrier>,
) -> Vec<Record<S::Position>> {
    start.wait().await;
    let mut learnt: HashMap<Stream, Option<S::Position>> = HashMap::new();
    let mut records = Vec::new();
    for attempt in attempts {
        let (kind, id) = (attempt.stream.kind(), attempt.stream.id());
        let (read, expected) = match attempt.mode {
            Mode::ReadThenAppend => match bounded("stream_version", store.stream_version(kind, &id)).await {
                Ok(Ok(version)) => (Some(Version(version)), Some(Version(version))),
                Ok(Err(error)) => {
                    let why = format!("stream_version failed: {}", error_text(&error));
                    records.push(failed(task, attempt, why));
                    continue;
                }
                Err(timeout) => {
                    records.push(failed(task, attempt, timeout));
                    continue;
                }
            },
            Mode::Remembered => (
                None,
                Some(Version(learnt.get(&attempt.stream).copied().flatten())),
            ),
            Mode::ExpectingNew => (None, Some(Version(None))),
            Mode::Unchecked => (None, None),
        };
        if read.is_some() {
            // Let the other tasks run between the read and the append.
            tokio::task::yield_now().await;
        }
        let result = result(send(&store, &attempt, expected).await);
        match &result {
            Result::Committed(last) => {
                learnt.insert(attempt.stream, Some(*last));
            }
            Result::Conflict { actual, .. } => {
                learnt.insert(attempt.stream, *actual);
            }
            Result::Replayed(_) | Result::Failed(_) => {}
        }
        // The same ids, as a client that did not hear the answer sends them.
        let retry = if attempt.again {
            Some(self::result(send(&store, &attempt, expected).await))
        } else {
            None
        };
        records.push(Record {
            task,
            attempt,
            read,
            expected,
            result,
            retry,
        });
    }
    records
}

fn failed<P>(task: usize, attempt: PlannedAttempt, why: String) -> Record<P> {
    Record {
        task,
        attempt,
        read: None,
        expected: None,
        result: Result::Failed(why),
        retry: None,
    }
}

/// Runs the tasks on `store` (empty) at once and checks the log they leave.
/// `Err` describes what cannot be explained, with every attempt and the
/// log.
pub(crate) async fn check<S: Store>(
    store: S,
    name: &str,
    tasks: &[Vec<PlannedAttempt>],
) -> std::result::Result<(), String> {
    let start = Arc::new(Barrier::new(tasks.len()));
    let handles: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(task, attempts)| {
            tokio::spawn(run_task(
                store.clone(),
                task,
                attempts.clone(),
                Arc::clone(&start),
            ))
        })
        .collect();
    let joined = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(handles))
        .await
        .map_err(|_| "the tasks did not finish within 120s".to_owned())?;
    let mut records = Vec::new();
    for handle in joined {
        records.extend(handle.map_err(|error| format!("a task panicked: {error}"))?);
    }

    // The whole log through stream filters without `after`: a load every
    // store answers with every committed event (PostgreSQL cuts loads of
    // event kinds at its safe frontier, see `followed`).
    let every_stream: Vec<EventFilter<String, S::Position>> = shared_streams()
        .into_iter()
        .map(|stream| EventFilter::for_stream(stream.kind(), stream.id()))
        .collect();
    let log = bounded("load_events", store.load_events(&every_stream))
        .await?
        .map_err(|error| format!("load_events failed: {}", error_text(&error)))?;
    let mut streams = BTreeMap::new();
    for stream in shared_streams() {
        let filters = [EventFilter::for_stream(stream.kind(), stream.id())];
        let events = bounded("load_events", store.load_events(&filters))
            .await?
            .map_err(|error| format!("load_events failed: {}", error_text(&error)))?;
        let id = stream.id();
        let version = bounded("stream_version", store.stream_version(stream.kind(), &id))
            .await?
            .map_err(|error| format!("stream_version failed: {}", error_text(&error)))?;
        streams.insert(stream, (events, version));
    }
    let why = match explain(&records, &log, &streams) {
        Ok(()) => match followed(&store, name, &log).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        },
        Err(why) => why,
    };
    let mut text = format!("{why}\n\nthe attempts, as they ran:\n");
    for record in &records {
        let _ = writeln!(text, "  {record}");
    }
    text.push_str("the log:\n");
    for event in &log {
        let _ = writeln!(text, "  {}", describe(event));
    }
    text.push_str(&store.diagnose().await);
    Err(text)
}

/// What readers that follow the log see of it once every append has
/// returned: a load of every event kind returns a prefix of the log (it
/// never skips an event), and a subscription to every kind delivers the
/// whole log, in order, each event within [`WAIT`].
///
/// The load may be a *shorter* prefix on PostgreSQL, which cuts such loads
/// at its safe frontier: a refused append's transaction can still be
/// ending there after its caller got the conflict, holding the frontier
/// below the hole it left (see the guide's page). That is reported on
/// stderr, not failed; the subscription must catch up.
async fn followed<S: Store>(
    store: &S,
    name: &str,
    log: &Loaded<S::Position>,
) -> std::result::Result<(), String> {
    let every_kind: Vec<EventFilter<String, S::Position>> = EVENT_KINDS
        .iter()
        .map(|kind| EventFilter::for_event(*kind))
        .collect();
    let full: Vec<S::Position> = log.iter().map(|event| event.position).collect();
    let loaded = bounded("load_events", store.load_events(&every_kind))
        .await?
        .map_err(|error| format!("load_events failed: {}", error_text(&error)))?;
    let seen: Vec<S::Position> = loaded.iter().map(|event| event.position).collect();
    if !full.starts_with(&seen) {
        return Err(format!(
            "a load of every event kind returns {seen:?}, which is not a prefix of the log {full:?}"
        ));
    }
    if seen.len() < full.len() {
        let _ = writeln!(
            std::io::stderr(),
            "note: {name}: a load of every event kind, made after every append had returned, lagged the log: \
             it ended at {:?}, the log at {:?} (see docs/src/testing/differential.md, \"What it found\")",
            seen.last(),
            full.last()
        );
    }
    let mut subscription = store.subscribe(every_kind, None);
    let mut delivered = Vec::new();
    while delivered.len() < full.len() {
        let what = match tokio::time::timeout(WAIT, subscription.next()).await {
            Ok(Some(Ok(event))) => {
                delivered.push(event.position);
                continue;
            }
            Ok(Some(Err(error))) => format!("an error: {}", error_text(&error)),
            Ok(None) => "the end of the subscription".to_owned(),
            Err(_) => format!("nothing within {}s", WAIT.as_secs()),
        };
        return Err(format!(
            "a subscription to every event kind delivered {delivered:?}, then {what}; the log is {full:?}"
        ));
    }
    if delivered != full {
        return Err(format!(
            "a subscription to every event kind delivered {delivered:?}; the log is {full:?}"
        ));
    }
    Ok(())
}

type Loaded<P> = Vec<StoredEvent<String, P, Meta>>;

/// Whether the final log has a serial explanation (see the module docs).
fn explain<P: Copy + Ord + fmt::Debug>(
    records: &[Record<P>],
    log: &Loaded<P>,
    streams: &BTreeMap<Stream, (Loaded<P>, Option<P>)>,
) -> std::result::Result<(), String> {
    if let Some(record) = records.iter().find(|record| {
        matches!(record.result, Result::Failed(_)) || matches!(record.retry, Some(Result::Failed(_)))
    }) {
        return Err(format!("an attempt failed: {record}"));
    }
    if let Some(record) = records
        .iter()
        .find(|record| matches!(record.result, Result::Replayed(_)))
    {
        return Err(format!("a batch of new ids was reported as a replay: {record}"));
    }
    for record in records {
        let answered = match (&record.result, &record.retry) {
            (Result::Committed(last), Some(Result::Replayed(again))) => again == last,
            (_, None) | (Result::Conflict { .. }, Some(Result::Conflict { .. })) => true,
            _ => false,
        };
        if !answered {
            return Err(format!(
                "{record}: sent again with the same ids, the batch must be a replay of its commit (the same \
                 last position) or a conflict again after a conflict"
            ));
        }
    }
    if let Some([before, after]) = log.windows(2).find(|pair| pair[0].position >= pair[1].position) {
        return Err(format!(
            "the log is not in ascending position order: {} before {}",
            describe(before),
            describe(after)
        ));
    }
    let written = contents(records, log)?;
    let histories = batches(records, log, streams, &written)?;
    sequences(records, &histories)
}

/// Nothing lost or duplicated, nothing of a refused batch, every event as
/// written. Returns which record wrote each event number.
fn contents<P: Copy + Ord + fmt::Debug>(
    records: &[Record<P>],
    log: &Loaded<P>,
) -> std::result::Result<HashMap<u64, usize>, String> {
    let mut written: HashMap<u64, (usize, Event)> = HashMap::new();
    for (number, record) in records.iter().enumerate() {
        for planned in &record.attempt.events {
            let event = Event {
                stream: record.attempt.stream,
                kind: planned.kind,
                n: planned.n,
            };
            written.insert(planned.n, (number, event));
        }
    }
    let mut found = HashMap::new();
    for event in log {
        let n = event.metadata.n;
        let Some((number, expected)) = written.get(&n) else {
            return Err(format!(
                "the log holds an event no attempt wrote: {}",
                describe(event)
            ));
        };
        if !is(event, expected) {
            return Err(format!("event #{n} does not round-trip: {}", describe(event)));
        }
        if !matches!(records[*number].result, Result::Committed(_)) {
            return Err(format!(
                "the log holds #{n} of a refused batch: {}",
                records[*number]
            ));
        }
        if found.insert(n, event.position).is_some() {
            return Err(format!("the log holds #{n} twice"));
        }
    }
    for record in records {
        if matches!(record.result, Result::Committed(_))
            && let Some(lost) = record
                .attempt
                .events
                .iter()
                .find(|planned| !found.contains_key(&planned.n))
        {
            return Err(format!("#{} of a committed batch is lost: {record}", lost.n));
        }
    }
    Ok(written.into_iter().map(|(n, (number, _))| (n, number)).collect())
}

/// Per stream: the stream's load agrees with the log, its batches are
/// contiguous and in order, each ends where its commit said, each
/// optimistic one expected the version just before it, and the stream's
/// version is its last event's. Returns each stream's versions in order,
/// from `None`.
fn batches<P: Copy + Ord + fmt::Debug>(
    records: &[Record<P>],
    log: &Loaded<P>,
    streams: &BTreeMap<Stream, (Loaded<P>, Option<P>)>,
    written: &HashMap<u64, usize>,
) -> std::result::Result<BTreeMap<Stream, Vec<Version<P>>>, String> {
    let mut histories = BTreeMap::new();
    for (stream, (events, version)) in streams {
        let own: Vec<P> = log
            .iter()
            .filter(|event| event.aggregate_kind == stream.kind() && event.aggregate_id == stream.id())
            .map(|event| event.position)
            .collect();
        let loaded: Vec<P> = events.iter().map(|event| event.position).collect();
        if own != loaded {
            return Err(format!(
                "for_stream({stream}) loads {loaded:?}, the whole log has {own:?} in that stream"
            ));
        }
        let mut history = vec![Version(None)];
        let mut at = 0;
        while at < events.len() {
            let n = events[at].metadata.n;
            let Some(record) = written.get(&n).map(|&number| &records[number]) else {
                return Err(format!(
                    "{stream} holds an event no attempt wrote: {}",
                    describe(&events[at])
                ));
            };
            let batch: Vec<u64> = record.attempt.events.iter().map(|planned| planned.n).collect();
            let here: Vec<u64> = events[at..]
                .iter()
                .take(batch.len())
                .map(|event| event.metadata.n)
                .collect();
            if here != batch {
                return Err(format!(
                    "in {stream}, the batch {batch:?} is not contiguous and in order: from #{n} the stream holds {here:?} ({record})"
                ));
            }
            let last = events[at + batch.len() - 1].position;
            if !matches!(record.result, Result::Committed(reported) if reported == last) {
                return Err(format!("in {stream}, the batch of {record} ends at {last:?}"));
            }
            let before = *history.last().expect("starts with None");
            if record.expected.is_some_and(|expected| expected != before) {
                return Err(format!(
                    "{record}; but the stream was at {before:?} just before its batch"
                ));
            }
            history.push(Version(Some(last)));
            at += batch.len();
        }
        let last = events.last().map(|event| event.position);
        if *version != last {
            return Err(format!(
                "stream_version({stream}) is {version:?}, its last event is at {last:?}"
            ));
        }
        histories.insert(*stream, history);
    }
    Ok(histories)
}

/// Conflicts report the expected version they were given and a later
/// version the stream really had; a task's reads and conflicts never go
/// back behind what it had seen of a stream, and its commits rise.
fn sequences<P: Copy + Ord + fmt::Debug>(
    records: &[Record<P>],
    histories: &BTreeMap<Stream, Vec<Version<P>>>,
) -> std::result::Result<(), String> {
    let place =
        |stream: &Stream, version: Version<P>| histories[stream].iter().position(|had| *had == version);
    let mut learnt: HashMap<(usize, Stream), usize> = HashMap::new();
    let mut last_commit: HashMap<usize, P> = HashMap::new();
    for record in records {
        let stream = record.attempt.stream;
        let floor = learnt.get(&(record.task, stream)).copied().unwrap_or(0);
        if let Some(read) = record.read {
            match place(&stream, read) {
                Some(at) if at >= floor => {}
                Some(_) => {
                    return Err(format!(
                        "{record}: read a version older than one the task had seen"
                    ));
                }
                None => return Err(format!("{record}: read a version the stream never had")),
            }
        }
        match record.result {
            Result::Committed(last) => {
                if let Some(earlier) = last_commit.insert(record.task, last)
                    && earlier >= last
                {
                    return Err(format!("{record}: after the task's commit at {earlier:?}"));
                }
                learnt.insert(
                    (record.task, stream),
                    place(&stream, Version(Some(last))).unwrap_or(0),
                );
            }
            Result::Conflict { expected, actual } => {
                if Some(Version(expected)) != record.expected {
                    return Err(format!("{record}: the conflict reports another expected version"));
                }
                let Some(from) = place(&stream, Version(expected)) else {
                    return Err(format!("{record}: expected a version the stream never had"));
                };
                match place(&stream, Version(actual)) {
                    Some(at) if at > from && at >= floor => {
                        learnt.insert((record.task, stream), at);
                    }
                    Some(_) => {
                        return Err(format!(
                            "{record}: the conflict's actual version is not later than the expected one \
                             and everything the task had seen"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{record}: the conflict's actual version is no version the stream had"
                        ));
                    }
                }
            }
            Result::Failed(_) | Result::Replayed(_) => {
                unreachable!("failed attempts and replays of new batches were reported above")
            }
        }
    }
    Ok(())
}

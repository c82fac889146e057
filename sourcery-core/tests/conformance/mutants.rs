//! Deliberately wrong stores, each with one defect, and the meta-tests that
//! prove the conformance suite catches every one of them.
//!
//! [`Mutant`] wraps the in-memory event store and does the store's work
//! itself — version checks, the id rule, name handling, selection of
//! events — with a
//! [`Defect`] that changes one thing; [`Checkpoints`], [`Snapshots`] and
//! [`Leases`] do the same for the other stores the suite checks. With no
//! defect each passes the whole suite (`the_wrapper_without_a_defect_passes`),
//! so what fails on a mutant fails because of its defect.
//!
//! Each test below runs the whole suite (`Suite::check`, the lease rules
//! only for lease mutants) on one mutant and checks that the rules listed
//! for it fail, each with its label: the rules its defect is aimed at, which
//! catch it every time. It may fail more; `--nocapture` shows them all.
//! Together the lists name every rule of the suite
//! (`every_rule_is_failed_by_some_mutant`): a rule that no wrong store fails
//! would test nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sourcery_core::checkpoint::{self, Advance, CheckpointStore, Claim, Fence};
use sourcery_core::concurrency::{ConcurrencyConflict, ExpectedVersion};
use sourcery_core::runner::{Lease, LeaseGuard};
use sourcery_core::snapshot::{
    self, SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore, SnapshotSubject,
};
use sourcery_core::store::{
    AppendError, AppendOutcome, AppendResult, EventFilter, EventId, EventStore, GloballyOrdered, IdReuse,
    InvalidBatch, JsonCodec, NonEmpty, PersistableEvent, StoredEvent, StoredId, TextField, Transaction,
    check_batch, check_metadata, inmemory, replay_of,
};
use sourcery_core::subscription::{CommitNotifier, CommitSignal, Subscribe};
use sourcery_core::test::conformance::{LeaseFixture, Outcome, Report, Suite};
use tokio::sync::{OwnedMutexGuard, watch};

type Event = StoredEvent<String, u64, Value>;
type Filter = EventFilter<String, u64>;
type Batch = NonEmpty<PersistableEvent<Value>>;

/// How long a mutant's store call may take before the suite calls it hung:
/// short, so that mutants that never deliver fail fast.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long a defect that needs a second writer (a race, an interleaving)
/// waits for one that has not called the store yet...
const RIVAL_WAIT: Duration = Duration::from_millis(200);

/// ... and, at most, for one that has called it and waits its turn.
const RIVAL_PATIENCE: Duration = Duration::from_millis(500);

/// How long a writer whose defect needs a rival waits for one to call the
/// store at all, when it waits on every batch of a kind the suite writes
/// often (`IdCheckThenWriteRace`).
const RIVAL_ENTRY: Duration = Duration::from_millis(25);

/// The kinds of the suite's typed test events, as a store that reads a
/// whole stream by the kinds it has heard of would know them.
const KNOWN_KINDS: [&str; 2] = ["conformance.opened", "conformance.noted"];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The event store
// ---------------------------------------------------------------------------

/// One way an event store can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// None: the wrapper as it should be.
    None,

    // Versions and optimistic concurrency.
    /// An expected version is never checked.
    NoVersionCheck,
    /// The version is a per-stream counter (the number of the stream's
    /// events): versions read, checked and reported by commits are counts;
    /// loaded events keep their real positions.
    PerStreamCounters,
    /// The version is looked up by id alone, whatever the aggregate kind.
    VersionIgnoresAggregateKind,
    /// The version is the log's head position, for every stream.
    HeadAsVersion,
    /// An expected version at or after the stream's version commits.
    AcceptsVersionAhead,
    /// Any expected version commits on a stream without events.
    AcceptsAnyVersionOnEmptyStream,
    /// A conflict reports the expected version as the actual one.
    ConflictReportsExpectedAsActual,
    /// A refused batch still writes its first event.
    WritesFirstEventOfRefusedBatch,
    /// `append_expecting_new` appends without a check.
    ExpectingNewUnchecked,
    /// An unchecked append is treated as "expect a new stream".
    UncheckedExpectsNew,
    /// The check and the append are two steps: a second writer can pass the
    /// check before the first appends.
    CheckThenAppendRace,

    // Expected versions beyond a version or a new stream.
    /// "The stream must exist" commits on a stream without events.
    StreamExistsAsAny,
    /// "The stream must exist" is checked as "the stream must be new".
    StreamExistsAsNoStream,
    /// `append_expecting_existing` reads the stream's version before it
    /// checks the batch: a batch no store keeps, on a stream without
    /// events, is reported as a conflict.
    ExistingVersionBeforeContents,
    /// `begin_expecting` ignores its mode: the transaction expects a new
    /// stream.
    BeginExpectingIgnoresMode,

    // Event ids and replays.
    /// Loads return an id made up from the event's position, not the one
    /// appended.
    IdsNotKept,
    /// Ids are never looked up: a retry is written again (or conflicts), and
    /// so is any reuse.
    NoReplayCheck,
    /// A replay is reported as a fresh write (`replayed: false`).
    ReplayReportedAsWritten,
    /// A replay reports the stream's version, not the position of the
    /// batch's last event.
    ReplayReportsStreamVersion,
    /// A replay writes the retry's data over the stored events (an upsert).
    ReplayOverwritesData,
    /// The version is checked before the ids: a replay is recognised only
    /// while the expected version still holds.
    ReplayOnlyWhenVersionMatches,
    /// A batch reusing some stored ids writes its new events.
    PartialReuseWritesTheNew,
    /// Ids are unique per stream only: a batch reusing ids of another stream
    /// is written.
    IdsUniquePerStream,
    /// Stored ids sent in another order are a replay.
    IdOrderNotChecked,
    /// A batch holding one id twice is written.
    DuplicateIdsAccepted,
    /// The ids of a batch are looked up before the writer lock is taken
    /// (the lookup and the write are two steps; for a new batch of two
    /// events or more on a stream with events, a writer waits for another
    /// one in the store to look its ids up too): racing writers of one batch
    /// all find it new.
    IdCheckThenWriteRace,
    /// `event_positions` finds ids in any stream.
    EventPositionsIgnoreStream,

    // What is written.
    /// Every event of a batch gets the first event's metadata.
    MetadataOfFirstEvent,
    /// Data is stored as lossy UTF-8.
    BytesAsLossyUtf8,
    /// A commit reports its batch's first position.
    CommitReportsFirstPosition,
    /// Every event of a batch loads at the batch's first position.
    BatchSharesOnePosition,
    /// Every event loads at schema version 1.
    SchemaVersionsForgotten,
    /// Every event of a batch gets the first event's schema version.
    SchemaVersionOfFirstEvent,
    /// A batch is written as single appends, yielding between them (and,
    /// for batches of ten events or more, waiting for another writer after
    /// the first): batches interleave and readers see half batches.
    TornBatch,
    /// A batch of two events or more loses its last event.
    TornBatchDropsLastEvent,
    /// Batches over 5,000 events are cut there.
    BatchCutAt5000,
    /// Payloads over 8 MiB are cut there.
    PayloadCutAt8MiB,

    // Reading.
    /// Overlapping filters return an event once per filter.
    DuplicatesOnOverlappingFilters,
    /// The union is each filter's events in turn, not sorted.
    UnionUnsorted,
    /// Loads come newest first.
    ReversedLoad,
    /// Loads come grouped by stream.
    GroupedByStream,
    /// `after(p)` includes `p`.
    AfterInclusive,
    /// `after` is ignored.
    AfterIgnored,
    /// A stream filter's `after(p)` is ignored unless `p` is a position of
    /// that stream.
    AfterOnlyOwnStreamPositions,
    /// The first `after` of a union applies to every filter of it.
    OneAfterForTheUnion,
    /// `for_aggregate` matches the id whatever the aggregate kind.
    ForAggregateIgnoresAggregateKind,
    /// `for_stream` matches the id whatever the aggregate kind.
    ForStreamIgnoresAggregateKind,
    /// `for_aggregate` selects the whole stream, every kind.
    ForAggregateReadsWholeStream,
    /// Event kinds match by prefix.
    KindsMatchedByPrefix,
    /// A kind the store never wrote selects every event.
    UnknownKindSelectsEverything,
    /// No filters select every event.
    NoFiltersSelectEverything,
    /// A whole stream is read as the suite's typed kinds only.
    WholeStreamAsKnownKinds,

    // Names.
    /// Names match as SQL `LIKE` patterns (`%`, `_`).
    LikeMatching,
    /// Quotes and `;` are stripped from names.
    QuotesStripped,
    /// Characters beyond ASCII become `?`.
    NonAsciiReplaced,
    /// An empty id matches every id of the aggregate kind.
    EmptyIdMatchesEveryId,
    /// Ids are trimmed.
    IdsTrimmed,
    /// Ids are lower-cased.
    IdsCaseFolded,
    /// Streams are keyed by aggregate kind and id concatenated.
    StreamKeyedByConcatenation,
    /// Names are cut at 255 characters.
    NamesCutAt255,

    // What no store keeps.
    /// Names are C strings, cut at a NUL, and NULs are dropped from
    /// metadata: batches holding one are written instead of refused.
    NamesCutAtNul,
    /// Texts that only look like NUL (a backslash then `0` or `u0000`, or
    /// U+0001) are refused as if they held one.
    RefusesNulLookalikes,
    /// An event at schema version 0 is written at version 1.
    SchemaVersionZeroAccepted,

    // Following.
    /// Every third batch is invisible to loads until one has returned a
    /// later position: later positions are seen first.
    LateCommitsHidden,
    /// The commit signal never fires, and there is no poll interval.
    CommitSignalNeverFires,
    /// `load_page` skips the first event when a filter has `after`.
    LoadPageSkipsFirstAfterBound,
    /// `load_page` returns nothing.
    LoadPageEmpty,
    /// `load_page` ignores `after`.
    LoadPageIgnoresAfter,
    /// `head_position` is one behind the last commit.
    HeadOneBehind,
}

/// What an append expects of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Any,
    New,
    Exists,
    Version(u64),
}

/// How a stream is looked up: for its version, by a kind filter on it, or
/// by a whole-stream filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Version,
    OneKind,
    WholeStream,
}

/// A filter as the mutant reads it.
#[derive(Debug, Clone)]
struct Selector {
    kind: Option<String>,
    stream: Option<(String, String)>,
    after: Option<u64>,
}

/// Where an event id is stored: its stream (names as stored) and position.
#[derive(Debug, Clone)]
struct Placed {
    kind: String,
    id: String,
    position: u64,
}

/// What the id rule makes of a batch: write it, or answer the append
/// without writing (a replay, or a refusal for reused ids).
enum Ids {
    Write(Batch),
    Answer(AppendOutcome<u64, Infallible>),
}

/// An event store over the in-memory one, with one [`Defect`].
#[derive(Debug, Clone)]
struct Mutant {
    inner: inmemory::Store<String, Value>,
    defect: Defect,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Makes the version check and the append one step.
    writer: tokio::sync::Mutex<()>,
    /// Every event kind written: the whole log is their union.
    kinds: Mutex<BTreeSet<String>>,
    /// Each batch's first and last position, ascending.
    batches: Mutex<Vec<(u64, u64)>>,
    /// Where each event id the client chose is stored.
    ids: Mutex<HashMap<EventId, Placed>>,
    /// The id the client chose for each id of the inner store: the mutant
    /// gives the inner store fresh ids, so that it never takes a batch the
    /// mutant writes for a replay.
    aliases: Mutex<HashMap<EventId, EventId>>,
    /// What replays wrote over stored events, by position
    /// (`ReplayOverwritesData`).
    overwritten: Mutex<HashMap<u64, PersistableEvent<Value>>>,
    /// Batches loads do not see yet (`LateCommitsHidden`).
    hidden: Mutex<Vec<Hidden>>,
    /// Batches committed.
    commits: AtomicU64,
    /// Who is writing (`CheckThenAppendRace`, `TornBatch`,
    /// `IdCheckThenWriteRace`).
    traffic: watch::Sender<Traffic>,
    /// A notifier that never notifies (`CommitSignalNeverFires`); kept, so
    /// its signals wait instead of falling back to polling.
    silent: CommitNotifier,
}

/// Writers in the store, and what they did.
#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    /// Calls to `append` or `append_expecting_new` not yet returned.
    writers: usize,
    /// Writers that passed a version check.
    passes: u64,
    /// Writers that looked their batch's ids up (`IdCheckThenWriteRace`).
    lookups: u64,
    /// Appends to the inner store.
    writes: u64,
}

/// Counts a writer in [`Traffic::writers`] while it lives.
struct Writing<'a>(&'a watch::Sender<Traffic>);

impl<'a> Writing<'a> {
    fn enter(traffic: &'a watch::Sender<Traffic>) -> Self {
        traffic.send_modify(|traffic| traffic.writers += 1);
        Self(traffic)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|traffic| traffic.writers -= 1);
    }
}

/// A batch loads do not see until one has returned a later position.
#[derive(Debug)]
struct Hidden {
    first: u64,
    last: u64,
    seen_past: bool,
}

impl Mutant {
    fn new(defect: Defect) -> Self {
        Self {
            inner: inmemory::Store::new(),
            defect,
            state: Arc::new(State {
                writer: tokio::sync::Mutex::new(()),
                kinds: Mutex::new(BTreeSet::new()),
                batches: Mutex::new(Vec::new()),
                ids: Mutex::new(HashMap::new()),
                aliases: Mutex::new(HashMap::new()),
                overwritten: Mutex::new(HashMap::new()),
                hidden: Mutex::new(Vec::new()),
                commits: AtomicU64::new(0),
                traffic: watch::Sender::new(Traffic::default()),
                silent: CommitNotifier::new(),
            }),
        }
    }

    /// An aggregate kind or event kind as the store keeps it.
    fn name(&self, text: &str) -> String {
        match self.defect {
            Defect::QuotesStripped => text.chars().filter(|c| !matches!(c, '\'' | '"' | ';')).collect(),
            Defect::NonAsciiReplaced => text.chars().map(|c| if c.is_ascii() { c } else { '?' }).collect(),
            Defect::NamesCutAt255 => text.chars().take(255).collect(),
            Defect::NamesCutAtNul => text.split('\0').next().unwrap_or_default().to_owned(),
            _ => text.to_owned(),
        }
    }

    /// An aggregate id as the store keeps it.
    fn id(&self, id: &str) -> String {
        let id = self.name(id);
        match self.defect {
            Defect::IdsTrimmed => id.trim().to_owned(),
            Defect::IdsCaseFolded => id.to_lowercase(),
            _ => id,
        }
    }

    /// Every event, in position order, hidden ones included, with the ids
    /// the client chose.
    async fn log(&self) -> Vec<Event> {
        let kinds: Vec<Filter> = lock(&self.state.kinds)
            .iter()
            .map(|kind| EventFilter::for_event(kind.clone()))
            .collect();
        if kinds.is_empty() {
            return Vec::new();
        }
        let mut log = self
            .inner
            .load_events(&kinds)
            .await
            .unwrap_or_else(|never| match never {});
        let aliases = lock(&self.state.aliases);
        for event in &mut log {
            if let Some(&id) = aliases.get(&event.id) {
                event.id = id;
            }
        }
        log
    }

    fn same_stream(&self, lookup: Lookup, kind: &str, id: &str, event: &Event) -> bool {
        match (self.defect, lookup) {
            (Defect::VersionIgnoresAggregateKind, Lookup::Version)
            | (Defect::ForAggregateIgnoresAggregateKind, Lookup::OneKind)
            | (Defect::ForStreamIgnoresAggregateKind, Lookup::WholeStream) => id == event.aggregate_id,
            (Defect::LikeMatching, _) => like(kind, &event.aggregate_kind) && like(id, &event.aggregate_id),
            (Defect::EmptyIdMatchesEveryId, _) => {
                kind == event.aggregate_kind && (id.is_empty() || id == event.aggregate_id)
            }
            (Defect::StreamKeyedByConcatenation, _) => {
                format!("{kind}{id}") == format!("{}{}", event.aggregate_kind, event.aggregate_id)
            }
            _ => kind == event.aggregate_kind && id == event.aggregate_id,
        }
    }

    fn same_kind(&self, wanted: &str, kind: &str, known: &BTreeSet<String>) -> bool {
        match self.defect {
            Defect::KindsMatchedByPrefix => kind.starts_with(wanted),
            Defect::LikeMatching => like(wanted, kind),
            Defect::UnknownKindSelectsEverything if !known.contains(wanted) => true,
            _ => wanted == kind,
        }
    }

    /// The stream's version (names as stored).
    async fn version(&self, kind: &str, id: &str) -> Option<u64> {
        let log = self.log().await;
        match self.defect {
            Defect::PerStreamCounters => {
                let count = log
                    .iter()
                    .filter(|event| event.aggregate_kind == kind && event.aggregate_id == id)
                    .count();
                (count > 0).then(|| u64::try_from(count).unwrap_or(u64::MAX))
            }
            Defect::HeadAsVersion => log.last().map(|event| event.position),
            _ => log
                .iter()
                .rev()
                .find(|event| self.same_stream(Lookup::Version, kind, id, event))
                .map(|event| event.position),
        }
    }

    async fn check(&self, kind: &str, id: &str, expect: Expect) -> Result<(), ConcurrencyConflict<u64>> {
        let actual = self.version(kind, id).await;
        let holds = match expect {
            Expect::Any => true,
            Expect::New => actual.is_none(),
            Expect::Exists => match self.defect {
                Defect::StreamExistsAsAny => true,
                Defect::StreamExistsAsNoStream => actual.is_none(),
                _ => actual.is_some(),
            },
            Expect::Version(expected) => match self.defect {
                Defect::AcceptsVersionAhead => actual.is_some_and(|actual| expected >= actual),
                Defect::AcceptsAnyVersionOnEmptyStream => actual.is_none() || actual == Some(expected),
                _ => actual == Some(expected),
            },
        };
        if holds {
            return Ok(());
        }
        let (expected, reported) = match expect {
            Expect::Version(expected) => (ExpectedVersion::Exact(expected), Some(expected)),
            Expect::Any => (ExpectedVersion::Any, None),
            Expect::New => (ExpectedVersion::NoStream, None),
            Expect::Exists => (ExpectedVersion::StreamExists, None),
        };
        let actual = if self.defect == Defect::ConflictReportsExpectedAsActual {
            reported
        } else {
            actual
        };
        Err(ConcurrencyConflict::new(expected, actual))
    }

    /// The batch as the store writes it.
    fn shape(&self, events: Batch) -> Batch {
        let mut events = events.into_vec();
        let (metadata, schema_version) = (events[0].metadata.clone(), events[0].schema_version);
        match self.defect {
            Defect::BatchCutAt5000 => events.truncate(5_000),
            Defect::TornBatchDropsLastEvent if events.len() > 1 => {
                events.pop();
            }
            _ => {}
        }
        for event in &mut events {
            event.kind = self.name(&event.kind);
            match self.defect {
                Defect::MetadataOfFirstEvent => event.metadata = metadata.clone(),
                Defect::BytesAsLossyUtf8 => {
                    event.data = String::from_utf8_lossy(&event.data).into_owned().into_bytes();
                }
                Defect::SchemaVersionOfFirstEvent => event.schema_version = schema_version,
                Defect::PayloadCutAt8MiB => event.data.truncate(8 * 1024 * 1024),
                Defect::NamesCutAtNul => strip_nul(&mut event.metadata),
                Defect::SchemaVersionZeroAccepted if event.schema_version == 0 => event.schema_version = 1,
                _ => {}
            }
        }
        match NonEmpty::from_vec(events) {
            Some(events) => events,
            None => unreachable!("a batch keeps at least its first event"),
        }
    }

    /// Appends to the inner store, unchecked, and records where the batch's
    /// ids are; returns the batch's first and last positions.
    async fn push(&self, kind: &str, id: &String, events: Batch) -> (u64, u64) {
        {
            let mut kinds = lock(&self.state.kinds);
            for event in &events {
                if !kinds.contains(&event.kind) {
                    kinds.insert(event.kind.clone());
                }
            }
        }
        let mut events = events.into_vec();
        let chosen: Vec<EventId> = events.iter().map(|event| event.id).collect();
        {
            // Before the append: a load that sees the events finds their ids.
            let mut aliases = lock(&self.state.aliases);
            for event in &mut events {
                let inner = EventId::new();
                aliases.insert(inner, event.id);
                event.id = inner;
            }
        }
        let Some(events) = NonEmpty::from_vec(events) else {
            unreachable!("a batch holds at least one event")
        };
        let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let commit = self.state.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.defect == Defect::LateCommitsHidden && commit.is_multiple_of(3) {
            // Under the writer lock: the batch lands right after the head.
            let head = self
                .inner
                .head_position()
                .await
                .unwrap_or_else(|never| match never {})
                .unwrap_or(0);
            lock(&self.state.hidden).push(Hidden {
                first: head + 1,
                last: head + count,
                seen_past: false,
            });
        }
        let last = match self.inner.append(kind, id, None, events).await {
            Ok(written) => written.last_position,
            Err(error) => panic!("the in-memory store refused an unchecked append: {error}"),
        };
        let first = last + 1 - count;
        {
            let mut ids = lock(&self.state.ids);
            for (position, chosen) in (first..=last).zip(chosen) {
                let placed = Placed {
                    kind: kind.to_owned(),
                    id: id.clone(),
                    position,
                };
                ids.insert(chosen, placed);
            }
        }
        lock(&self.state.batches).push((first, last));
        self.state.traffic.send_modify(|traffic| traffic.writes += 1);
        (first, last)
    }

    /// Waits until `done` holds of the traffic: for a rival that has not
    /// called the store yet, a short while; for one already in a call, a
    /// while longer (this writer is one of `writers`).
    async fn wait_for_rival(&self, done: impl Fn(&Traffic) -> bool) {
        let mut traffic = self.state.traffic.subscribe();
        if tokio::time::timeout(RIVAL_WAIT, traffic.wait_for(&done))
            .await
            .is_ok()
        {
            return;
        }
        let _ = tokio::time::timeout(
            RIVAL_PATIENCE,
            traffic.wait_for(|now| done(now) || now.writers <= 1),
        )
        .await;
    }

    /// Writes a batch event by event (`TornBatch`).
    async fn push_torn(&self, kind: &str, id: &String, events: Batch) -> (u64, u64) {
        let total = events.len();
        let mut span = None;
        for (index, event) in events.into_iter().enumerate() {
            let (first, last) = self.push(kind, id, NonEmpty::new(event)).await;
            span = Some(span.map_or((first, last), |(first, _)| (first, last)));
            if index == 0 && total >= 10 {
                // Let another writer's events in between, if one is coming.
                let mine = self.state.traffic.borrow().writes;
                self.wait_for_rival(|traffic| traffic.writes > mine).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        match span {
            Some(span) => span,
            None => unreachable!("a batch holds at least one event"),
        }
    }

    async fn write(
        &self,
        kind: &str,
        id: &str,
        expect: Expect,
        events: Batch,
    ) -> AppendOutcome<u64, Infallible> {
        self.check_contents(kind, id, &events)?;
        let kind = self.name(kind);
        let id = self.id(id);
        let ids: Vec<EventId> = events.iter().map(|event| event.id).collect();
        let mut events = self.shape(events);
        let expect = match (self.defect, expect) {
            (Defect::NoVersionCheck, Expect::Version(_)) | (Defect::ExpectingNewUnchecked, Expect::New) => {
                Expect::Any
            }
            (Defect::UncheckedExpectsNew, Expect::Any) => Expect::New,
            (_, expect) => expect,
        };
        let _writing = Writing::enter(&self.state.traffic);
        let looked_up = match self.defect {
            Defect::IdCheckThenWriteRace if ids.len() > 1 => {
                Some(self.look_up_racing(&kind, &id, &ids).await)
            }
            _ => None,
        };
        let writer = self.state.writer.lock().await;
        let stored = looked_up.unwrap_or_else(|| self.stored(&kind, &id, &ids));
        let ids_first = self.defect != Defect::ReplayOnlyWhenVersionMatches;
        if ids_first {
            events = match self.id_rule(&kind, &id, &ids, &stored, events).await {
                Ids::Write(events) => events,
                Ids::Answer(outcome) => return outcome,
            };
        }
        if let Err(conflict) = self.check(&kind, &id, expect).await {
            if self.defect == Defect::WritesFirstEventOfRefusedBatch {
                self.push(&kind, &id, NonEmpty::new(events.first().clone())).await;
            }
            return Err(AppendError::Conflict(conflict));
        }
        if !ids_first {
            events = match self.id_rule(&kind, &id, &ids, &stored, events).await {
                Ids::Write(events) => events,
                Ids::Answer(outcome) => return outcome,
            };
        }
        let (first, last) = match self.defect {
            Defect::CheckThenAppendRace if expect != Expect::Any => {
                let mut mine = 0;
                self.state.traffic.send_modify(|traffic| {
                    traffic.passes += 1;
                    mine = traffic.passes;
                });
                drop(writer);
                // A second writer that gets the lock now passes the same check.
                self.wait_for_rival(|traffic| traffic.passes > mine).await;
                self.push(&kind, &id, events).await
            }
            Defect::TornBatch => {
                drop(writer);
                self.push_torn(&kind, &id, events).await
            }
            _ => self.push(&kind, &id, events).await,
        };
        let last_position = match self.defect {
            Defect::CommitReportsFirstPosition => first,
            Defect::PerStreamCounters => self.version(&kind, &id).await.unwrap_or(last),
            _ => last,
        };
        Ok(AppendResult::new(last_position))
    }

    /// Where each of `ids` is stored, seen from the stream `kind` / `id`
    /// (names as stored).
    fn stored(&self, kind: &str, id: &str, ids: &[EventId]) -> Vec<StoredId<u64>> {
        let placed = lock(&self.state.ids);
        ids.iter()
            .map(|event_id| match placed.get(event_id) {
                None => StoredId::Missing,
                Some(at) if at.kind == kind && at.id == id => StoredId::InStream(at.position),
                Some(_) if self.defect == Defect::IdsUniquePerStream => StoredId::Missing,
                Some(_) => StoredId::Elsewhere,
            })
            .collect()
    }

    /// Looks `ids` up before the writer lock (`IdCheckThenWriteRace`) and,
    /// for a new batch on a stream with events, when another writer is in
    /// the store or comes in soon, waits for it to look its batch up too
    /// before going on to write.
    async fn look_up_racing(&self, kind: &str, id: &str, ids: &[EventId]) -> Vec<StoredId<u64>> {
        let stored = self.stored(kind, id, ids);
        let fresh = stored.iter().all(|stored| *stored == StoredId::Missing);
        if !fresh || self.version(kind, id).await.is_none() {
            return stored;
        }
        let mut mine = 0;
        self.state.traffic.send_modify(|traffic| {
            traffic.lookups += 1;
            mine = traffic.lookups;
        });
        let mut traffic = self.state.traffic.subscribe();
        let rival = tokio::time::timeout(RIVAL_ENTRY, traffic.wait_for(|traffic| traffic.writers > 1))
            .await
            .is_ok();
        if rival {
            self.wait_for_rival(|traffic| traffic.lookups > mine).await;
        }
        stored
    }

    /// The id rule (invariant 7 of the contract) on a batch whose ids are
    /// stored as `stored` says, as the defect leaves it.
    async fn id_rule(
        &self,
        kind: &str,
        id: &str,
        ids: &[EventId],
        stored: &[StoredId<u64>],
        events: Batch,
    ) -> Ids {
        if self.defect == Defect::NoReplayCheck {
            return Ids::Write(events);
        }
        let refused = match replay_of(ids, stored) {
            Ok(None) => return Ids::Write(events),
            Ok(Some(last)) => return Ids::Answer(Ok(self.replay(kind, id, last, stored, events).await)),
            Err(refused) => refused,
        };
        let positions: Option<Vec<u64>> = stored
            .iter()
            .map(|stored| match stored {
                StoredId::InStream(position) => Some(*position),
                StoredId::Missing | StoredId::Elsewhere => None,
            })
            .collect();
        match (self.defect, refused.reason, positions) {
            (Defect::IdOrderNotChecked, IdReuse::Order, Some(positions)) => {
                let last = positions.into_iter().max().unwrap_or_default();
                Ids::Answer(Ok(AppendResult::replay(last)))
            }
            (Defect::PartialReuseWritesTheNew, IdReuse::Partial, _) => {
                let new: Vec<PersistableEvent<Value>> = events
                    .into_iter()
                    .zip(stored)
                    .filter(|(_, stored)| **stored == StoredId::Missing)
                    .map(|(event, _)| event)
                    .collect();
                match NonEmpty::from_vec(new) {
                    Some(new) => Ids::Write(new),
                    None => Ids::Answer(Err(AppendError::IdReused(refused))),
                }
            }
            _ => Ids::Answer(Err(AppendError::IdReused(refused))),
        }
    }

    /// What a replay of a batch stored up to `last` answers.
    async fn replay(
        &self,
        kind: &str,
        id: &str,
        last: u64,
        stored: &[StoredId<u64>],
        events: Batch,
    ) -> AppendResult<u64> {
        match self.defect {
            Defect::ReplayReportedAsWritten => AppendResult::new(last),
            Defect::ReplayReportsStreamVersion => {
                AppendResult::replay(self.version(kind, id).await.unwrap_or(last))
            }
            Defect::ReplayOverwritesData => {
                let mut overwritten = lock(&self.state.overwritten);
                for (event, stored) in events.into_iter().zip(stored) {
                    if let StoredId::InStream(position) = stored {
                        overwritten.insert(*position, event);
                    }
                }
                AppendResult::replay(last)
            }
            _ => AppendResult::replay(last),
        }
    }

    /// The contract's checks on a batch's content, before anything is
    /// written, as the defect leaves them.
    fn check_contents(
        &self,
        kind: &str,
        id: &str,
        events: &Batch,
    ) -> Result<(), AppendError<u64, Infallible>> {
        if self.defect == Defect::NamesCutAtNul {
            // Only the NUL checks are gone.
            return match events.iter().position(|event| event.schema_version == 0) {
                Some(index) => Err(AppendError::Invalid(InvalidBatch::SchemaVersionZero { index })),
                None => Ok(()),
            };
        }
        if self.defect == Defect::RefusesNulLookalikes {
            let looks_like_nul =
                |text: &str| text.contains("\\0") || text.contains("\\u0000") || text.contains('\u{1}');
            if looks_like_nul(kind) || looks_like_nul(id) {
                return Err(AppendError::Invalid(InvalidBatch::Nul {
                    field: TextField::AggregateKind,
                }));
            }
        }
        match check_batch(kind, id, events) {
            Err(InvalidBatch::SchemaVersionZero { .. })
                if self.defect == Defect::SchemaVersionZeroAccepted => {}
            Err(InvalidBatch::DuplicateId { .. }) if self.defect == Defect::DuplicateIdsAccepted => {}
            Err(invalid) => return Err(AppendError::Invalid(invalid)),
            Ok(()) => {}
        }
        for (index, event) in events.iter().enumerate() {
            check_metadata(index, &event.metadata).map_err(AppendError::Invalid)?;
        }
        Ok(())
    }

    fn selectors(&self, filters: &[Filter], ignore_after: bool) -> Vec<Selector> {
        let mut selectors = Vec::new();
        for filter in filters {
            let after = if ignore_after {
                None
            } else {
                filter.after_position()
            };
            let kind = filter.event_kind().map(|kind| self.name(kind));
            let stream = filter
                .aggregate()
                .map(|(kind, id)| (self.name(kind), self.id(id)));
            match (self.defect, kind, stream) {
                (Defect::WholeStreamAsKnownKinds, None, Some(stream)) => {
                    for known in KNOWN_KINDS {
                        selectors.push(Selector {
                            kind: Some(known.to_owned()),
                            stream: Some(stream.clone()),
                            after,
                        });
                    }
                }
                (Defect::ForAggregateReadsWholeStream, Some(_), Some(stream)) => selectors.push(Selector {
                    kind: None,
                    stream: Some(stream),
                    after,
                }),
                (_, kind, stream) => selectors.push(Selector { kind, stream, after }),
            }
        }
        match self.defect {
            Defect::AfterInclusive => {
                for selector in &mut selectors {
                    selector.after = selector.after.and_then(|after| after.checked_sub(1));
                }
            }
            Defect::AfterIgnored => {
                for selector in &mut selectors {
                    selector.after = None;
                }
            }
            Defect::OneAfterForTheUnion => {
                let shared = selectors.iter().find_map(|selector| selector.after);
                for selector in &mut selectors {
                    selector.after = shared;
                }
            }
            _ => {}
        }
        selectors
    }

    fn selects(&self, selector: &Selector, event: &Event, known: &BTreeSet<String>) -> bool {
        let lookup = if selector.kind.is_some() {
            Lookup::OneKind
        } else {
            Lookup::WholeStream
        };
        selector
            .kind
            .as_deref()
            .is_none_or(|kind| self.same_kind(kind, &event.kind, known))
            && selector
                .stream
                .as_ref()
                .is_none_or(|(kind, id)| self.same_stream(lookup, kind, id, event))
            && selector.after.is_none_or(|after| event.position > after)
    }

    /// The log loads may see (`LateCommitsHidden`).
    fn visible(&self, mut log: Vec<Event>) -> Vec<Event> {
        if self.defect != Defect::LateCommitsHidden {
            return log;
        }
        let mut hidden = lock(&self.state.hidden);
        hidden.retain(|batch| !batch.seen_past);
        log.retain(|event| {
            !hidden
                .iter()
                .any(|batch| (batch.first..=batch.last).contains(&event.position))
        });
        log
    }

    /// What `load_events` (and `load_page` before its limit) returns.
    async fn select(&self, filters: &[Filter], ignore_after: bool) -> Vec<Event> {
        let mut selectors = self.selectors(filters, ignore_after);
        let log = self.visible(self.log().await);
        let known = lock(&self.state.kinds).clone();
        if self.defect == Defect::AfterOnlyOwnStreamPositions {
            for selector in &mut selectors {
                if let (Some((kind, id)), Some(after)) = (&selector.stream, selector.after) {
                    let own = log.iter().any(|event| {
                        event.position == after && event.aggregate_kind == *kind && event.aggregate_id == *id
                    });
                    if !own {
                        selector.after = None;
                    }
                }
            }
        }
        let mut events: Vec<Event> = match self.defect {
            Defect::NoFiltersSelectEverything if selectors.is_empty() => log,
            Defect::DuplicatesOnOverlappingFilters => {
                let mut events = Vec::new();
                for selector in &selectors {
                    events.extend(
                        log.iter()
                            .filter(|event| self.selects(selector, event, &known))
                            .cloned(),
                    );
                }
                events.sort_by_key(|event| event.position);
                events
            }
            Defect::UnionUnsorted => {
                let mut seen = HashSet::new();
                let mut events = Vec::new();
                for selector in &selectors {
                    events.extend(
                        log.iter()
                            .filter(|event| {
                                self.selects(selector, event, &known) && seen.insert(event.position)
                            })
                            .cloned(),
                    );
                }
                events
            }
            _ => log
                .into_iter()
                .filter(|event| {
                    selectors
                        .iter()
                        .any(|selector| self.selects(selector, event, &known))
                })
                .collect(),
        };
        self.after_loading(&mut events);
        events
    }

    fn after_loading(&self, events: &mut [Event]) {
        match self.defect {
            Defect::IdsNotKept => {
                for event in events.iter_mut() {
                    event.id = made_up_id(event.position);
                }
            }
            Defect::ReplayOverwritesData => {
                let overwritten = lock(&self.state.overwritten);
                for event in events.iter_mut() {
                    if let Some(written) = overwritten.get(&event.position) {
                        event.data.clone_from(&written.data);
                        event.metadata.clone_from(&written.metadata);
                    }
                }
            }
            Defect::SchemaVersionsForgotten => {
                for event in events.iter_mut() {
                    event.schema_version = 1;
                }
            }
            Defect::BatchSharesOnePosition => {
                let batches = lock(&self.state.batches);
                for event in events.iter_mut() {
                    let batch = batches.partition_point(|&(first, _)| first <= event.position);
                    if let Some(&(first, _)) = batch.checked_sub(1).and_then(|index| batches.get(index)) {
                        event.position = first;
                    }
                }
            }
            Defect::ReversedLoad => events.reverse(),
            Defect::GroupedByStream => events.sort_by(|a, b| {
                (&a.aggregate_kind, &a.aggregate_id).cmp(&(&b.aggregate_kind, &b.aggregate_id))
            }),
            Defect::LateCommitsHidden => {
                let newest = events.iter().map(|event| event.position).max();
                for batch in lock(&self.state.hidden).iter_mut() {
                    if newest.is_some_and(|newest| newest > batch.last) {
                        batch.seen_past = true;
                    }
                }
            }
            _ => {}
        }
    }
}

/// The id a store that forgot ids makes up for the event at `position`.
fn made_up_id(position: u64) -> EventId {
    let mut bytes = [0; 16];
    bytes[8..].copy_from_slice(&position.to_be_bytes());
    EventId::from_bytes(bytes)
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one character.
fn like(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['%', '_']) {
        return pattern == text;
    }
    let text: Vec<char> = text.chars().collect();
    // `matched[j]`: the pattern so far matches the first `j` characters.
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for wanted in pattern.chars() {
        let mut next = vec![false; text.len() + 1];
        if wanted == '%' {
            let mut any = false;
            for (j, slot) in next.iter_mut().enumerate() {
                any |= matched[j];
                *slot = any;
            }
        } else {
            for j in 1..=text.len() {
                next[j] = matched[j - 1] && (wanted == '_' || wanted == text[j - 1]);
            }
        }
        matched = next;
    }
    matched[text.len()]
}

impl EventStore for Mutant {
    type Id = String;
    type Position = u64;
    type Error = Infallible;
    type Codec = JsonCodec;
    type Metadata = Value;

    fn codec(&self) -> &JsonCodec {
        self.inner.codec()
    }

    async fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
    ) -> Result<Option<u64>, Infallible> {
        Ok(self
            .version(&self.name(aggregate_kind), &self.id(aggregate_id))
            .await)
    }

    async fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        expected_version: Option<u64>,
        events: Batch,
    ) -> AppendOutcome<u64, Infallible> {
        let expect = expected_version.map_or(Expect::Any, Expect::Version);
        self.write(aggregate_kind, aggregate_id, expect, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        events: Batch,
    ) -> AppendOutcome<u64, Infallible> {
        self.write(aggregate_kind, aggregate_id, Expect::New, events)
            .await
    }

    async fn append_expecting_existing<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        events: Batch,
    ) -> AppendOutcome<u64, Infallible> {
        if self.defect == Defect::ExistingVersionBeforeContents
            && self
                .version(&self.name(aggregate_kind), &self.id(aggregate_id))
                .await
                .is_none()
        {
            return Err(ConcurrencyConflict::new(ExpectedVersion::StreamExists, None).into());
        }
        self.write(aggregate_kind, aggregate_id, Expect::Exists, events)
            .await
    }

    async fn event_positions<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        ids: &'a [EventId],
    ) -> Result<Vec<Option<u64>>, Infallible> {
        let (kind, id) = (self.name(aggregate_kind), self.id(aggregate_id));
        let placed = lock(&self.state.ids);
        Ok(ids
            .iter()
            .map(|event_id| {
                placed
                    .get(event_id)
                    .filter(|at| {
                        self.defect == Defect::EventPositionsIgnoreStream || (at.kind == kind && at.id == id)
                    })
                    .map(|at| at.position)
            })
            .collect())
    }

    fn begin_expecting(
        &self,
        aggregate_kind: &str,
        aggregate_id: String,
        expected: ExpectedVersion<u64>,
    ) -> Transaction<'_, Self> {
        let transaction = Transaction::new(self, aggregate_kind.to_owned(), aggregate_id, None);
        if self.defect == Defect::BeginExpectingIgnoresMode {
            transaction
        } else {
            transaction.expecting(expected)
        }
    }

    async fn load_events<'a>(&'a self, filters: &'a [Filter]) -> Result<Vec<Event>, Infallible> {
        Ok(self.select(filters, false).await)
    }
}

impl GloballyOrdered for Mutant {}

impl Subscribe for Mutant {
    fn commit_signal(&self) -> CommitSignal {
        if self.defect == Defect::CommitSignalNeverFires {
            self.state.silent.signal()
        } else {
            self.inner.commit_signal()
        }
    }

    async fn head_position(&self) -> Result<Option<u64>, Infallible> {
        let head = self.inner.head_position().await?;
        Ok(match self.defect {
            Defect::HeadOneBehind => head.and_then(|head| head.checked_sub(1)).filter(|head| *head > 0),
            _ => head,
        })
    }

    async fn load_page<'a>(&'a self, filters: &'a [Filter], limit: usize) -> Result<Vec<Event>, Infallible> {
        let mut page = match self.defect {
            Defect::LoadPageEmpty => Vec::new(),
            Defect::LoadPageIgnoresAfter => self.select(filters, true).await,
            Defect::LoadPageSkipsFirstAfterBound => {
                let mut page = self.select(filters, false).await;
                if filters.iter().any(|filter| filter.after_position().is_some()) && !page.is_empty() {
                    page.remove(0);
                }
                page
            }
            _ => self.select(filters, false).await,
        };
        page.truncate(limit);
        Ok(page)
    }
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// One way a checkpoint store can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointDefect {
    None,
    /// One checkpoint for every name.
    OneSlot,
    /// The first save under a name is kept forever.
    KeepsFirst,
    /// Saves are dropped.
    SavesNothing,
    /// Names are trimmed and lower-cased.
    NamesFolded,
    /// A name nothing was saved under loads as position 0.
    MissingIsZero,
    /// The position saved is one ahead of the one given.
    SavedAhead,

    // Claims.
    /// A claim records its fence and succeeds whatever fence claimed the
    /// name before.
    ClaimIgnoresHigherFence,
    /// A claim returns no checkpoint, whatever is saved.
    ClaimForgetsCheckpoint,
    /// A claim of a name without a checkpoint saves position 0 (a column
    /// that cannot be NULL).
    ClaimSavesZero,

    // Advances.
    /// An advance never checks the fence.
    AdvanceIgnoresFences,
    /// An advance never checks the saved position.
    AdvanceMovesBackwards,
    /// An advance to the saved position is refused as behind.
    AdvanceToSavedIsBehind,
    /// An advance keeps the recorded fence, even when its own is higher.
    AdvanceKeepsRecordedFence,
    /// An advance without a fence is checked as the lowest fence: refused
    /// once any fence claimed the name.
    UnfencedAdvanceRefused,
    /// An advance without a fence records none: the fence that claimed the
    /// name is forgotten.
    UnfencedAdvanceClearsFence,
    /// An advance only updates a checkpoint that is there (an `UPDATE`
    /// without an insert): one of a new name reports `Saved` and writes
    /// nothing.
    AdvanceOnlyUpdates,

    // Fences.
    /// A save forgets the fence that claimed the name.
    SaveDropsFence,
    /// One fence is recorded for every name.
    OneFenceForAllNames,
}

/// What the mutant keeps: positions and fences, apart so that each can be
/// keyed wrongly on its own.
#[derive(Debug, Default)]
struct Kept {
    positions: HashMap<String, u64>,
    fences: HashMap<String, Fence>,
}

/// A checkpoint store in memory that does the in-memory store's work
/// itself (so that a defect can change any part of it: the refusal rule is
/// core's `checkpoint::refusal`, as for the real stores), with one defect.
#[derive(Debug, Clone)]
struct Checkpoints {
    kept: Arc<Mutex<Kept>>,
    defect: CheckpointDefect,
}

impl Checkpoints {
    fn new(defect: CheckpointDefect) -> Self {
        Self {
            kept: Arc::new(Mutex::new(Kept::default())),
            defect,
        }
    }

    fn key(&self, name: &str) -> String {
        match self.defect {
            CheckpointDefect::OneSlot => String::new(),
            CheckpointDefect::NamesFolded => name.trim().to_lowercase(),
            _ => name.to_owned(),
        }
    }

    fn fence_key(&self, name: &str) -> String {
        match self.defect {
            CheckpointDefect::OneFenceForAllNames => String::new(),
            _ => self.key(name),
        }
    }
}

impl CheckpointStore<u64> for Checkpoints {
    type Error = Infallible;

    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<u64>, Infallible> {
        let found = lock(&self.kept).positions.get(&self.key(name)).copied();
        Ok(match self.defect {
            CheckpointDefect::MissingIsZero => found.or(Some(0)),
            _ => found,
        })
    }

    async fn save<'a>(&'a self, name: &'a str, position: u64) -> Result<(), Infallible> {
        let key = self.key(name);
        let mut kept = lock(&self.kept);
        match self.defect {
            CheckpointDefect::SavesNothing => {}
            CheckpointDefect::KeepsFirst if kept.positions.contains_key(&key) => {}
            CheckpointDefect::SavedAhead => {
                kept.positions.insert(key, position + 1);
            }
            _ => {
                kept.positions.insert(key, position);
            }
        }
        if self.defect == CheckpointDefect::SaveDropsFence {
            kept.fences.remove(&self.fence_key(name));
        }
        Ok(())
    }

    async fn claim<'a>(&'a self, name: &'a str, fence: Fence) -> Result<Claim<u64>, Infallible> {
        let (key, fence_key) = (self.key(name), self.fence_key(name));
        let mut kept = lock(&self.kept);
        if let Some(&recorded) = kept.fences.get(&fence_key)
            && recorded > fence
            && self.defect != CheckpointDefect::ClaimIgnoresHigherFence
        {
            return Ok(Claim::Fenced(recorded));
        }
        kept.fences.insert(fence_key, fence);
        let saved = kept.positions.get(&key).copied();
        Ok(match self.defect {
            CheckpointDefect::ClaimForgetsCheckpoint => Claim::Claimed(None),
            CheckpointDefect::ClaimSavesZero if saved.is_none() => {
                kept.positions.insert(key, 0);
                Claim::Claimed(None)
            }
            _ => Claim::Claimed(saved),
        })
    }

    async fn advance<'a>(
        &'a self,
        name: &'a str,
        position: u64,
        fence: Option<Fence>,
    ) -> Result<Advance<u64>, Infallible> {
        let (key, fence_key) = (self.key(name), self.fence_key(name));
        let mut kept = lock(&self.kept);
        let saved = kept.positions.get(&key).copied();
        let recorded = kept.fences.get(&fence_key).copied();
        let checked_saved = match self.defect {
            CheckpointDefect::AdvanceMovesBackwards => None,
            _ => saved,
        };
        let checked_fence = match self.defect {
            CheckpointDefect::AdvanceIgnoresFences => None,
            CheckpointDefect::UnfencedAdvanceRefused => fence.or(Some(Fence::new(0))),
            _ => fence,
        };
        if let Some(refused) = checkpoint::refusal(checked_saved, recorded, position, checked_fence) {
            return Ok(refused);
        }
        match self.defect {
            CheckpointDefect::AdvanceToSavedIsBehind if saved == Some(position) => {
                return Ok(Advance::Behind(position));
            }
            CheckpointDefect::AdvanceOnlyUpdates if saved.is_none() && recorded.is_none() => {
                return Ok(Advance::Saved);
            }
            _ => {}
        }
        kept.positions.insert(key, position);
        let fence = match self.defect {
            CheckpointDefect::AdvanceKeepsRecordedFence => recorded,
            CheckpointDefect::UnfencedAdvanceClearsFence => fence,
            _ => recorded.max(fence),
        };
        match fence {
            Some(fence) => kept.fences.insert(fence_key, fence),
            None => kept.fences.remove(&fence_key),
        };
        Ok(Advance::Saved)
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// One way a snapshot store can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotDefect {
    None,
    /// Every save replaces the snapshot, older ones too.
    AcceptsOlder,
    /// A save at the same position replaces the snapshot.
    AcceptsEqual,
    /// Snapshots are keyed by kind alone.
    KeyedByKindOnly,
    /// Schema versions are stored as 1.
    SchemaVersionLost,
    /// Data is cut at 64 KiB.
    DataCut,
}

/// A snapshot store over the in-memory one, with one defect. Accepting
/// saves the in-memory store would decline, it writes each save under a
/// new generation of the key and reads the newest generation.
#[derive(Debug, Clone)]
struct Snapshots {
    inner: snapshot::inmemory::Store<u64>,
    defect: SnapshotDefect,
    generations: Arc<Mutex<HashMap<SnapshotKey, u64>>>,
}

impl Snapshots {
    fn new(defect: SnapshotDefect) -> Self {
        Self {
            inner: snapshot::inmemory::Store::new(SnapshotPolicy::Never),
            defect,
            generations: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The inner key of `key`'s generation `generation`.
    fn generation(key: &SnapshotKey, generation: u64) -> SnapshotKey {
        let id = format!("{}\u{1f}{generation}", key.id());
        match key.subject() {
            SnapshotSubject::Aggregate => SnapshotKey::aggregate(key.kind(), id),
            _ => SnapshotKey::projection_instance(key.kind(), id),
        }
    }

    /// The inner key `key` is read from now.
    fn current(&self, key: &SnapshotKey) -> SnapshotKey {
        match self.defect {
            SnapshotDefect::KeyedByKindOnly => SnapshotKey::aggregate(key.kind(), ""),
            SnapshotDefect::AcceptsOlder | SnapshotDefect::AcceptsEqual => {
                let generation = lock(&self.generations).get(key).copied().unwrap_or(0);
                Self::generation(key, generation)
            }
            _ => key.clone(),
        }
    }
}

impl SnapshotStore<u64> for Snapshots {
    type Error = Infallible;

    fn policy(&self) -> SnapshotPolicy {
        self.inner.policy()
    }

    async fn load<'a>(&'a self, key: &'a SnapshotKey) -> Result<Option<Snapshot<u64>>, Infallible> {
        self.inner.load(&self.current(key)).await
    }

    async fn save<'a>(
        &'a self,
        key: &'a SnapshotKey,
        mut snapshot: Snapshot<u64>,
    ) -> Result<SaveOutcome, Infallible> {
        match self.defect {
            SnapshotDefect::SchemaVersionLost => snapshot.schema_version = 1,
            SnapshotDefect::DataCut => snapshot.data.truncate(64 * 1024),
            _ => {}
        }
        let kept = self.inner.load(&self.current(key)).await?;
        let replace = match (self.defect, &kept) {
            (SnapshotDefect::AcceptsOlder, Some(_)) => true,
            (SnapshotDefect::AcceptsEqual, Some(kept)) => kept.position <= snapshot.position,
            _ => false,
        };
        if replace {
            let generation = {
                let mut generations = lock(&self.generations);
                let generation = generations.entry(key.clone()).or_insert(0);
                *generation += 1;
                *generation
            };
            return self
                .inner
                .save(&Self::generation(key, generation), snapshot)
                .await;
        }
        self.inner.save(&self.current(key), snapshot).await
    }
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

/// One way a lease can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseDefect {
    None,
    /// Every contender gets the lease at once.
    NeverExclusive,
    /// Dropping the guard keeps the lease held.
    NeverReleasedOnDrop,
    /// A severed holder's `lost` never resolves.
    LostNeverFires,
    /// Severing the holder's connection does not release the lease.
    SeverKeepsLock,
    /// Every name shares one lock.
    OneLockForAllNames,
    /// Every holder gets the same fence.
    FenceNeverGrows,
    /// Holders get no fence.
    NoFence,
    /// Each contender counts its own generations, so a new holder's fence
    /// may be below the previous holder's (a counter in the process, not
    /// the database).
    FencePerContender,
}

/// Leases in memory — a lock per name and a count of generations, shared
/// by every contender as a database would be — with one defect. Also the
/// fixture: severing a guard marks it lost and releases its lock, as a
/// dead connection would.
#[derive(Debug, Clone)]
struct Leases {
    defect: LeaseDefect,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Locks dropped guards keep (`NeverReleasedOnDrop`).
    leaked: Arc<Mutex<Vec<OwnedMutexGuard<()>>>>,
    /// The last generation handed out, for every name: each holder's fence
    /// is one more.
    generations: Arc<AtomicU64>,
}

impl Leases {
    fn new(defect: LeaseDefect) -> Self {
        Self {
            defect,
            locks: Arc::new(Mutex::new(HashMap::new())),
            leaked: Arc::new(Mutex::new(Vec::new())),
            generations: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The fence of a new holder.
    fn next_fence(&self) -> Option<Fence> {
        match self.defect {
            LeaseDefect::NoFence => None,
            LeaseDefect::FenceNeverGrows => Some(Fence::new(1)),
            _ => Some(Fence::new(self.generations.fetch_add(1, Ordering::Relaxed) + 1)),
        }
    }
}

/// A held lease.
#[derive(Debug)]
struct Held {
    lock: Option<OwnedMutexGuard<()>>,
    lost: watch::Receiver<bool>,
    severed: watch::Sender<bool>,
    fence: Option<Fence>,
    leases: Leases,
}

impl Lease for Leases {
    type Guard = Held;
    type Error = Infallible;

    async fn acquire<'a>(&'a self, name: &'a str) -> Result<Held, Infallible> {
        let name = if self.defect == LeaseDefect::OneLockForAllNames {
            ""
        } else {
            name
        };
        let mutex = Arc::clone(lock(&self.locks).entry(name.to_owned()).or_default());
        let lock = if self.defect == LeaseDefect::NeverExclusive {
            None
        } else {
            Some(mutex.lock_owned().await)
        };
        let (severed, lost) = watch::channel(false);
        Ok(Held {
            lock,
            lost,
            severed,
            fence: self.next_fence(),
            leases: self.clone(),
        })
    }
}

impl LeaseGuard for Held {
    async fn lost(&mut self) {
        // The sender lives in `self`: this only ends when the flag is set.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    fn fence(&self) -> Option<Fence> {
        self.fence
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.leases.defect == LeaseDefect::NeverReleasedOnDrop
            && let Some(held) = self.lock.take()
        {
            lock(&self.leases.leaked).push(held);
        }
    }
}

impl LeaseFixture for Leases {
    type Lease = Leases;

    async fn contender(&self) -> Leases {
        let mut contender = self.clone();
        if self.defect == LeaseDefect::FencePerContender {
            contender.generations = Arc::new(AtomicU64::new(0));
        }
        contender
    }

    async fn sever<'a>(&'a self, guard: &'a mut Held) {
        if self.defect != LeaseDefect::LostNeverFires {
            guard.severed.send_replace(true);
        }
        if self.defect != LeaseDefect::SeverKeepsLock {
            guard.lock = None;
        }
    }
}

// ---------------------------------------------------------------------------
// The meta-tests
// ---------------------------------------------------------------------------

/// What a mutant is wrong about.
#[derive(Debug, Clone, Copy)]
enum Wrong {
    Store(Defect),
    Checkpoints(CheckpointDefect),
    Snapshots(SnapshotDefect),
    Leases(LeaseDefect),
}

/// A mutant and the rules that must catch it.
#[derive(Debug)]
struct Case {
    name: &'static str,
    wrong: Wrong,
    fails: &'static [&'static str],
    /// The family of the first rule to fail, and words its message holds.
    first: Option<(&'static str, &'static str)>,
}

/// Runs the whole suite with one mutant in place of the correct store it
/// stands for: every capability declared, but the leases only for a lease
/// mutant or none (the lease rules use nothing else, and spend a third of a
/// second watching a held lease).
async fn report(wrong: Wrong) -> Report {
    let (store, checkpoints, snapshots, leases) = match wrong {
        Wrong::Store(defect) => (defect, CheckpointDefect::None, SnapshotDefect::None, None),
        Wrong::Checkpoints(defect) => (Defect::None, defect, SnapshotDefect::None, None),
        Wrong::Snapshots(defect) => (Defect::None, CheckpointDefect::None, defect, None),
        Wrong::Leases(defect) => (
            Defect::None,
            CheckpointDefect::None,
            SnapshotDefect::None,
            Some(defect),
        ),
    };
    let leases = leases.or((store == Defect::None
        && checkpoints == CheckpointDefect::None
        && snapshots == SnapshotDefect::None)
        .then_some(LeaseDefect::None));
    let suite = Suite::new(move || async move { Mutant::new(store) })
        .ordered()
        .subscribe()
        .checkpoints(move || async move { Checkpoints::new(checkpoints) })
        .snapshots(move || async move { Snapshots::new(snapshots) })
        .timeout(TIMEOUT);
    match leases {
        Some(defect) => {
            suite
                .leases(move || async move { Leases::new(defect) })
                .check()
                .await
        }
        None => suite.check().await,
    }
}

/// Runs the suite on the mutant `name` and checks that each of its rules
/// fails with its label.
async fn check(name: &str) {
    let Some(case) = MUTANTS.iter().find(|case| case.name == name) else {
        panic!("no mutant named {name}");
    };
    let started = Instant::now();
    let report = report(case.wrong).await;
    let failed: Vec<&str> = report.failures().map(|(rule, _)| rule).collect();
    // Seen with `--nocapture`: everything the mutant fails.
    let hung = report
        .failures()
        .filter(|(_, message)| {
            message
                .rsplit_once(", got ")
                .is_some_and(|(_, got)| got.contains("hung") || got.contains("within"))
        })
        .count();
    eprintln!(
        "mutant {name} ({:?}) fails {} rules ({hung} by a timeout) in {:.1?}: {failed:?}",
        case.wrong,
        failed.len(),
        started.elapsed()
    );
    for (rule, message) in report.failures() {
        assert!(
            message.starts_with(&format!("conformance rule {rule}: expected ")),
            "mutant {name}: rule {rule} failed without its label: {message}"
        );
    }
    for rule in case.fails {
        match report.outcome(rule) {
            Some(Outcome::Failed(_)) => {}
            other => panic!("mutant {name}: expected rule {rule} to fail, got {other:?}\n{report}"),
        }
    }
    if let Some((family, says)) = case.first {
        let first = report.failures().next();
        assert!(
            first.is_some_and(|(rule, message)| rule.starts_with(family) && message.contains(says)),
            "mutant {name}: expected the first failure to be a {family} rule saying {says:?}, got {first:?}"
        );
    }
}

/// Declares the mutants: one test each, and the table
/// `every_rule_is_failed_by_some_mutant` reads.
macro_rules! mutants {
    ($($test:ident: $wrong:expr => [$($rule:literal),* $(,)?] $(first $family:literal saying $says:literal)?;)*) => {
        const MUTANTS: &[Case] = &[$(Case {
            name: stringify!($test),
            wrong: $wrong,
            fails: &[$($rule),*],
            first: mutants!(@first $($family $says)?),
        }),*];

        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                check(stringify!($test)).await;
            }
        )*
    };
    (@first) => { None };
    (@first $family:literal $says:literal) => { Some(($family, $says)) };
}

use CheckpointDefect as C;
use Defect as D;
use LeaseDefect as L;
use SnapshotDefect as N;
use Wrong::{Checkpoints as Cp, Leases as Ls, Snapshots as Sn, Store};

mutants! {
    // Versions and optimistic concurrency.
    no_version_check: Store(D::NoVersionCheck) => [
        "optimistic.stale_version_conflicts", "optimistic.ahead_of_stream_conflicts",
        "optimistic.version_of_another_stream_conflicts", "optimistic.on_empty_stream_conflicts",
        "optimistic.conflict_reports_versions", "optimistic.conflict_writes_nothing", "optimistic.race_one_winner",
    ];
    per_stream_counters: Store(D::PerStreamCounters) => [
        "version.is_last_position_of_stream", "optimistic.version_of_another_stream_conflicts",
        "batch.contiguous_in_order", "subscribe.head_position_is_last_visible",
    ] first "version." saying "to be the position of its last event";
    version_ignores_aggregate_kind: Store(D::VersionIgnoresAggregateKind) => [
        "version.aggregate_kind_separates_streams", "optimistic.version_of_another_stream_conflicts",
    ];
    head_as_version: Store(D::HeadAsVersion) => [
        "version.is_last_position_of_stream", "version.none_for_new_stream", "version.other_streams_do_not_move_it",
        "append.expecting_new_creates", "optimistic.current_version_commits",
    ];
    accepts_version_ahead: Store(D::AcceptsVersionAhead) => [
        "optimistic.ahead_of_stream_conflicts", "optimistic.version_of_another_stream_conflicts",
    ];
    accepts_any_version_on_empty_stream: Store(D::AcceptsAnyVersionOnEmptyStream) => [
        "optimistic.on_empty_stream_conflicts",
    ];
    conflict_reports_expected_as_actual: Store(D::ConflictReportsExpectedAsActual) => [
        "optimistic.conflict_reports_versions", "optimistic.stale_version_conflicts",
        "append.expecting_new_on_existing_conflicts",
    ];
    writes_first_event_of_refused_batch: Store(D::WritesFirstEventOfRefusedBatch) => [
        "optimistic.conflict_writes_nothing", "optimistic.stale_version_conflicts", "batch.whole_or_nothing",
        "append.expecting_new_on_existing_conflicts",
    ];
    expecting_new_unchecked: Store(D::ExpectingNewUnchecked) => [
        "append.expecting_new_on_existing_conflicts", "optimistic.create_race_one_winner", "batch.whole_or_nothing",
    ];
    unchecked_expects_new: Store(D::UncheckedExpectsNew) => ["unchecked.appends_whatever_the_stream_holds"];
    check_then_append_race: Store(D::CheckThenAppendRace) => [
        "optimistic.race_one_winner", "optimistic.create_race_one_winner",
    ];

    // Expected versions beyond a version or a new stream.
    stream_exists_as_any: Store(D::StreamExistsAsAny) => [
        "expected.stream_exists_on_empty_conflicts", "expected.transaction_modes",
    ];
    stream_exists_as_no_stream: Store(D::StreamExistsAsNoStream) => [
        "expected.stream_exists_appends_at_any_version", "expected.transaction_modes",
    ];
    existing_version_before_contents: Store(D::ExistingVersionBeforeContents) => [
        "expected.stream_exists_refuses_invalid_first",
    ];
    begin_expecting_ignores_mode: Store(D::BeginExpectingIgnoresMode) => ["expected.transaction_modes"];

    // Event ids and replays.
    ids_not_kept: Store(D::IdsNotKept) => ["ids.round_trip"];
    no_replay_check: Store(D::NoReplayCheck) => [
        "ids.replay_returns_first_outcome", "ids.replay_whatever_expected_version", "ids.replay_of_a_creation",
        "ids.first_write_wins", "ids.partial_reuse_refused", "ids.other_stream_refused", "ids.other_order_refused",
        "ids.race_writes_once",
    ];
    replay_reported_as_written: Store(D::ReplayReportedAsWritten) => [
        "ids.replay_returns_first_outcome", "ids.replay_whatever_expected_version", "ids.replay_of_a_creation",
        "ids.first_write_wins", "ids.race_writes_once",
    ];
    replay_reports_stream_version: Store(D::ReplayReportsStreamVersion) => [
        "ids.replay_whatever_expected_version",
    ];
    replay_overwrites_data: Store(D::ReplayOverwritesData) => ["ids.first_write_wins"];
    replay_only_when_version_matches: Store(D::ReplayOnlyWhenVersionMatches) => [
        "ids.replay_whatever_expected_version", "ids.replay_of_a_creation", "ids.race_writes_once",
    ];
    partial_reuse_writes_the_new: Store(D::PartialReuseWritesTheNew) => ["ids.partial_reuse_refused"];
    ids_unique_per_stream: Store(D::IdsUniquePerStream) => ["ids.other_stream_refused"];
    id_order_not_checked: Store(D::IdOrderNotChecked) => ["ids.other_order_refused"];
    duplicate_ids_accepted: Store(D::DuplicateIdsAccepted) => ["ids.duplicate_in_batch_refused"];
    id_check_then_write_race: Store(D::IdCheckThenWriteRace) => ["ids.race_writes_once"];
    event_positions_ignore_stream: Store(D::EventPositionsIgnoreStream) => ["ids.event_positions_found"];

    // What is written.
    metadata_of_first_event: Store(D::MetadataOfFirstEvent) => ["append.metadata_round_trip"];
    bytes_as_lossy_utf8: Store(D::BytesAsLossyUtf8) => ["append.bytes_exact", "size.payload_of_16_mib"];
    commit_reports_first_position: Store(D::CommitReportsFirstPosition) => [
        "append.reports_last_position", "version.reported_by_the_commit", "unchecked.creates_a_new_stream",
        "append.expecting_new_creates", "size.batch_of_10000",
    ];
    batch_shares_one_position: Store(D::BatchSharesOnePosition) => [
        "append.positions_strictly_ascend", "order.stream_in_append_order", "order.global_in_position_order",
    ];
    schema_versions_forgotten: Store(D::SchemaVersionsForgotten) => ["schema.versions_round_trip", "schema.mixed_batch"];
    schema_version_of_first_event: Store(D::SchemaVersionOfFirstEvent) => ["schema.mixed_batch"];
    torn_batch: Store(D::TornBatch) => ["batch.concurrent_batches_do_not_interleave"];
    torn_batch_drops_last_event: Store(D::TornBatchDropsLastEvent) => [
        "append.round_trip", "batch.contiguous_in_order", "size.batch_of_10000",
    ];
    batch_cut_at_5000: Store(D::BatchCutAt5000) => ["size.batch_of_10000"];
    payload_cut_at_8_mib: Store(D::PayloadCutAt8MiB) => ["size.payload_of_16_mib"];

    // Reading.
    duplicates_on_overlapping_filters: Store(D::DuplicatesOnOverlappingFilters) => [
        "filter.union_each_once", "stream.union_each_once",
    ];
    union_unsorted: Store(D::UnionUnsorted) => ["filter.union_ascending"];
    reversed_load: Store(D::ReversedLoad) => [
        "append.round_trip", "append.positions_strictly_ascend", "order.stream_in_append_order",
        "order.global_in_position_order",
    ];
    grouped_by_stream: Store(D::GroupedByStream) => ["order.global_in_position_order"];
    after_inclusive: Store(D::AfterInclusive) => [
        "filter.after_is_strict", "filter.after_last_is_empty", "stream.after", "subscribe.resumes_after_position",
        "runner.resumes_after_checkpoint",
    ];
    after_ignored: Store(D::AfterIgnored) => [
        "filter.after_is_strict", "filter.after_last_is_empty", "stream.after", "read.following_never_skips",
    ];
    after_only_own_stream_positions: Store(D::AfterOnlyOwnStreamPositions) => [
        "filter.after_position_of_another_stream", "stream.after_position_of_another_stream",
    ];
    one_after_for_the_union: Store(D::OneAfterForTheUnion) => [
        "filter.union_after_per_filter", "stream.union_after_per_filter",
    ];
    for_aggregate_ignores_aggregate_kind: Store(D::ForAggregateIgnoresAggregateKind) => [
        "filter.for_aggregate_matches_the_aggregate_kind",
    ];
    for_stream_ignores_aggregate_kind: Store(D::ForStreamIgnoresAggregateKind) => [
        "stream.only_its_stream", "order.same_id_other_kind_is_another_stream",
    ];
    for_aggregate_reads_whole_stream: Store(D::ForAggregateReadsWholeStream) => [
        "filter.for_aggregate_selects_its_stream",
    ];
    kinds_matched_by_prefix: Store(D::KindsMatchedByPrefix) => ["filter.for_event_selects_its_kind"];
    unknown_kind_selects_everything: Store(D::UnknownKindSelectsEverything) => ["filter.unknown_kind_selects_nothing"];
    no_filters_select_everything: Store(D::NoFiltersSelectEverything) => ["filter.no_filters_select_nothing"];
    whole_stream_as_known_kinds: Store(D::WholeStreamAsKnownKinds) => ["stream.every_kind"];

    // Names.
    like_matching: Store(D::LikeMatching) => ["names.like_wildcards"];
    quotes_stripped: Store(D::QuotesStripped) => ["names.quotes_and_sql"];
    non_ascii_replaced: Store(D::NonAsciiReplaced) => ["names.unicode"];
    empty_id_matches_every_id: Store(D::EmptyIdMatchesEveryId) => ["names.empty_string"];
    ids_trimmed: Store(D::IdsTrimmed) => ["names.whitespace_and_case"];
    ids_case_folded: Store(D::IdsCaseFolded) => ["names.whitespace_and_case"];
    stream_keyed_by_concatenation: Store(D::StreamKeyedByConcatenation) => ["names.concatenation_collisions"];
    names_cut_at_255: Store(D::NamesCutAt255) => ["names.long_names"];

    // What no store keeps.
    names_cut_at_nul: Store(D::NamesCutAtNul) => [
        "text.nul_in_aggregate_kind_refused", "text.nul_in_aggregate_id_refused", "text.nul_in_event_kind_refused",
        "text.nul_in_metadata_refused", "text.nul_lookups_find_nothing",
    ];
    refuses_nul_lookalikes: Store(D::RefusesNulLookalikes) => ["text.nul_lookalikes_round_trip"];
    schema_version_zero_accepted: Store(D::SchemaVersionZeroAccepted) => ["schema.version_zero_refused"];

    // Following.
    late_commits_hidden: Store(D::LateCommitsHidden) => [
        "read.prefixes_only", "read.following_never_skips", "subscribe.concurrent_writers_and_subscribers",
        "subscribe.subscribers_share_one_order",
    ];
    commit_signal_never_fires: Store(D::CommitSignalNeverFires) => ["subscribe.catch_up_then_live"];
    load_page_skips_first_after_bound: Store(D::LoadPageSkipsFirstAfterBound) => [
        "subscribe.load_page_is_a_prefix", "subscribe.resumes_after_position", "subscribe.filter_after_is_kept",
    ];
    load_page_empty: Store(D::LoadPageEmpty) => [
        "subscribe.load_page_is_a_prefix", "subscribe.catch_up_then_live",
        "subscribe.concurrent_writers_and_subscribers", "subscribe.subscribers_share_one_order",
        "runner.applies_each_event_once_in_order", "runner.fenced_off_writes_nothing",
    ];
    load_page_ignores_after: Store(D::LoadPageIgnoresAfter) => [
        "subscribe.filter_after_is_kept", "subscribe.resumes_after_position", "runner.resumes_after_checkpoint",
    ];
    head_one_behind: Store(D::HeadOneBehind) => [
        "subscribe.head_position_is_last_visible", "subscribe.progress_past_filtered_events",
        "runner.wait_for_filtered_position",
    ];

    // Checkpoints.
    checkpoints_in_one_slot: Cp(C::OneSlot) => ["checkpoint.missing_is_none", "checkpoint.names_apart"];
    checkpoints_keep_the_first: Cp(C::KeepsFirst) => ["checkpoint.replaces_the_previous"];
    checkpoints_save_nothing: Cp(C::SavesNothing) => ["checkpoint.round_trip", "checkpoint.replaces_the_previous"];
    checkpoint_names_folded: Cp(C::NamesFolded) => ["checkpoint.names_apart", "checkpoint.awkward_names"];
    missing_checkpoint_is_zero: Cp(C::MissingIsZero) => ["checkpoint.missing_is_none"];
    checkpoint_saved_ahead: Cp(C::SavedAhead) => ["checkpoint.round_trip", "checkpoint.replaces_the_previous"];
    claim_ignores_higher_fence: Cp(C::ClaimIgnoresHigherFence) => ["checkpoint.claim_refuses_lower_fence"];
    claim_forgets_checkpoint: Cp(C::ClaimForgetsCheckpoint) => [
        "checkpoint.claim_returns_checkpoint", "checkpoint.advance_refuses_lower_fence",
    ];
    claim_saves_zero: Cp(C::ClaimSavesZero) => ["checkpoint.claim_returns_checkpoint"];
    advance_ignores_fences: Cp(C::AdvanceIgnoresFences) => [
        "checkpoint.claim_refuses_lower_fence", "checkpoint.advance_refuses_lower_fence",
        "checkpoint.save_keeps_fence",
    ];
    advance_moves_backwards: Cp(C::AdvanceMovesBackwards) => [
        "checkpoint.advance_never_backwards", "checkpoint.advance_unfenced_checks_only_order",
    ];
    advance_to_saved_is_behind: Cp(C::AdvanceToSavedIsBehind) => ["checkpoint.advance_never_backwards"];
    advance_keeps_recorded_fence: Cp(C::AdvanceKeepsRecordedFence) => ["checkpoint.advance_records_higher_fence"];
    unfenced_advance_refused: Cp(C::UnfencedAdvanceRefused) => ["checkpoint.advance_unfenced_checks_only_order"];
    unfenced_advance_clears_fence: Cp(C::UnfencedAdvanceClearsFence) => [
        "checkpoint.advance_unfenced_checks_only_order",
    ];
    advance_only_updates: Cp(C::AdvanceOnlyUpdates) => ["checkpoint.advance_records_higher_fence"];
    save_drops_fence: Cp(C::SaveDropsFence) => ["checkpoint.save_keeps_fence"];
    one_fence_for_all_names: Cp(C::OneFenceForAllNames) => ["checkpoint.fences_names_apart"];

    // Snapshots.
    snapshots_accept_older: Sn(N::AcceptsOlder) => ["snapshot.declines_older_or_equal"];
    snapshots_accept_equal: Sn(N::AcceptsEqual) => ["snapshot.declines_older_or_equal"];
    snapshots_keyed_by_kind_only: Sn(N::KeyedByKindOnly) => ["snapshot.keys_stay_apart"];
    snapshot_schema_version_lost: Sn(N::SchemaVersionLost) => ["snapshot.keeps_the_newest", "snapshot.round_trip"];
    snapshot_data_cut: Sn(N::DataCut) => ["snapshot.round_trip"];

    // Leases.
    lease_never_exclusive: Ls(L::NeverExclusive) => ["lease.one_holder"];
    lease_never_released_on_drop: Ls(L::NeverReleasedOnDrop) => ["lease.released_on_drop"];
    lease_lost_never_fires: Ls(L::LostNeverFires) => ["lease.lost_when_severed"];
    lease_sever_keeps_lock: Ls(L::SeverKeepsLock) => ["lease.takeover_after_holder_dies"];
    leases_share_one_lock: Ls(L::OneLockForAllNames) => ["lease.names_apart"];
    lease_fence_never_grows: Ls(L::FenceNeverGrows) => ["lease.fence_grows"];
    lease_without_fence: Ls(L::NoFence) => ["lease.fence_grows"];
    lease_fence_per_contender: Ls(L::FencePerContender) => ["lease.fence_grows"];
}

/// The wrapper without a defect — event store, checkpoints, snapshots and
/// leases — passes every rule: what fails on a mutant is its defect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wrapper_without_a_defect_passes() {
    let report = report(Wrong::Store(Defect::None)).await;
    assert!(report.failures().next().is_none(), "{report}");
    assert!(report.not_applicable().next().is_none(), "{report}");
}

/// Every rule of the suite is in some mutant's list, and every name listed
/// is a rule: with each mutant's test passing, no rule is left that no
/// wrong store fails.
#[test]
fn every_rule_is_failed_by_some_mutant() {
    let rules: BTreeSet<&str> = Suite::<Mutant>::rules().map(|(rule, _)| rule).collect();
    let caught: BTreeSet<&str> = MUTANTS
        .iter()
        .flat_map(|case| case.fails.iter().copied())
        .collect();
    let unknown: Vec<&&str> = caught.difference(&rules).collect();
    assert!(
        unknown.is_empty(),
        "mutants list rules the suite does not have: {unknown:?}"
    );
    let untested: Vec<&&str> = rules.difference(&caught).collect();
    assert!(untested.is_empty(), "no mutant fails these rules: {untested:?}");
}

/// Drops every NUL from the strings and keys of `value`.
fn strip_nul(value: &mut Value) {
    match value {
        Value::String(text) => text.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (mut key, mut item) in entries {
                key.retain(|c| c != '\0');
                strip_nul(&mut item);
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

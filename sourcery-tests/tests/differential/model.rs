//! The names operations use, the operations proptest generates, and the
//! reference model of the log they run on.
//!
//! An operation is generated in abstract terms ("a stale version of this
//! stream", "after some earlier position") and resolved against the model
//! into a [`Step`] that names events by their place in commit order (`p1`
//! is the first event committed, `p2` the second, ...). Every store runs
//! the same steps, translating `pN` into its own positions, so stores whose
//! positions differ (`u64` from 1 in memory, `i64` with gaps on PostgreSQL)
//! are compared in one vocabulary.
//!
//! Every event's id is derived from its number ([`event_id`]), so that an
//! operation can send a batch again with the same ids (a retry after an
//! unknown outcome) and the model can say what the store must make of it:
//! a replay of the stored batch, a reuse it refuses, or a batch it writes
//! now because the first attempt was refused.

use std::fmt;

use proptest::prelude::*;
use proptest::{collection, option};
use sourcery_core::store::EventId;

// The alphabet: every name an operation can use, in one place. They are
// chosen to trip up stores that build SQL by hand (quotes, LIKE
// wildcards), normalise Unicode (a precomposed "é" beside "e" + a
// combining accent), or treat the empty string as missing.
//
// "a\0b" holds a NUL, which no store keeps: every append to its streams is
// refused before anything is written (`AppendError::Invalid`), and reads
// naming it find nothing.

/// Aggregate kinds (the first half of a stream's name).
pub(crate) const AGGREGATE_KINDS: [&str; 2] = ["account", "a'b"];
/// Aggregate ids (the second half of a stream's name).
pub(crate) const AGGREGATE_IDS: [&str; 6] = ["", "a'b", "%_", "é", "e\u{301}🦀", "a\0b"];
/// Event kinds.
pub(crate) const EVENT_KINDS: [&str; 3] = ["deposited", "%_", "ü🦀"];

/// One stream: an aggregate kind and id from the alphabet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Stream {
    kind: usize,
    id: usize,
}

impl Stream {
    pub(crate) fn kind(self) -> &'static str {
        AGGREGATE_KINDS[self.kind]
    }

    pub(crate) fn id(self) -> String {
        AGGREGATE_IDS[self.id].to_owned()
    }

    /// Every stream of the alphabet.
    pub(crate) fn all() -> impl Iterator<Item = Self> {
        (0..AGGREGATE_KINDS.len()).flat_map(|kind| (0..AGGREGATE_IDS.len()).map(move |id| Self { kind, id }))
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.kind(), AGGREGATE_IDS[self.id])
    }
}

/// An event kind from the alphabet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kind(usize);

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        EVENT_KINDS[self.0]
    }

    /// The kind the `n`th event of a generated batch gets when the test
    /// does not choose (the concurrent variant).
    pub(crate) fn cycling(n: u64) -> Self {
        let len = u64::try_from(EVENT_KINDS.len()).expect("a few kinds");
        Self(usize::try_from(n % len).expect("below the number of kinds"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

/// What every generated event carries beside its kind: a number unique in
/// the whole test case, so that an event a store returns is recognised
/// whatever position it got. The data is `{"n":N}`, the metadata `Meta { n }`,
/// the id [`event_id`]`(N)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) kind: Kind,
    pub(crate) n: u64,
}

/// The id of the event numbered `n`: the same for every attempt to write
/// it, as a client retrying a batch sends it.
pub(crate) fn event_id(n: u64) -> EventId {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(b"diff-evt");
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    EventId::from_bytes(bytes)
}

/// A choice among the candidates at the time the operation runs (earlier
/// positions, earlier versions), as a fraction of the way through them
/// (`n / 256`): when shrinking removes earlier operations, it still names
/// a candidate about as far through, so a failure tends to survive the
/// removal. Shrinks towards the first candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pick(u8);

impl Pick {
    fn among(self, count: usize) -> Option<usize> {
        (count > 0).then(|| usize::from(self.0) * count / 256)
    }
}

// ---------------------------------------------------------------------------
// Generated operations.

/// One generated operation, before it is resolved against the model.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Appends a batch of 1-4 events to a stream.
    Append {
        stream: Stream,
        events: Vec<Kind>,
        how: How,
    },
    /// `load_events` with 0-3 filters.
    Load { filters: Vec<FilterSpec> },
    /// `stream_version`.
    Version { stream: Stream },
    /// The events of the last `Append` sent again, with the same ids (a
    /// retry after an unknown outcome), maybe changed as `resend` says.
    Retry { resend: Resend, how: How },
    /// `Subscribe::subscribe(filters, from)`: what it delivers up to the
    /// head; then, live, what it delivers of 0-2 unchecked appends made
    /// after it caught up.
    Subscribe {
        filters: Vec<FilterSpec>,
        from: Option<Pick>,
        live: Vec<(Stream, Vec<Kind>)>,
    },
}

/// What a retry sends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resend {
    /// The same batch to the same stream.
    Same,
    /// The same batch to this stream (maybe the same one).
    ToStream(Stream),
    /// The batch and one new event after it.
    PlusOne(Kind),
    /// The batch in reverse order.
    Reversed,
    /// The batch and its first event again after it: one id twice.
    Doubled,
}

/// How an append is checked.
#[derive(Clone, Debug)]
pub(crate) enum How {
    /// `append(.., None, ..)`: no check.
    Unchecked,
    /// `append_expecting_new`.
    ExpectingNew,
    /// `append_expecting_existing`.
    ExpectingExisting,
    /// An optimistic transaction (`begin::<Optimistic>(.., expected)` and
    /// `commit`) with an expected version chosen so.
    Optimistic(Choice),
}

/// Which expected version an optimistic append passes.
#[derive(Clone, Debug)]
pub(crate) enum Choice {
    /// `None`: the stream must be new.
    New,
    /// The stream's actual version: the append must succeed.
    Actual,
    /// An earlier position of the stream (an older version, or an event in
    /// the middle of a batch); `None` when the stream has no earlier one.
    Stale(Pick),
    /// Another stream's version (maybe the same stream's, maybe `None`).
    OtherStream(Stream),
    /// One past the stream's version (`version + 1`, or 1 for an empty
    /// stream): a position that is not the stream's version, and maybe no
    /// event's.
    OneAhead,
}

/// A filter before it is resolved.
#[derive(Clone, Debug)]
pub(crate) struct FilterSpec {
    shape: Shape,
    /// After some earlier position of the log (any stream's).
    after: Option<Pick>,
}

/// What a filter selects, `after` aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `EventFilter::for_event(kind)`.
    Event(Kind),
    /// `EventFilter::for_aggregate(kind, stream kind, stream id)`.
    Aggregate(Kind, Stream),
    /// `EventFilter::for_stream(stream kind, stream id)`.
    Stream(Stream),
}

fn stream() -> impl Strategy<Value = Stream> {
    (0..AGGREGATE_KINDS.len(), 0..AGGREGATE_IDS.len()).prop_map(|(kind, id)| Stream { kind, id })
}

fn kind() -> impl Strategy<Value = Kind> {
    (0..EVENT_KINDS.len()).prop_map(Kind)
}

fn pick() -> impl Strategy<Value = Pick> {
    any::<u8>().prop_map(Pick)
}

fn batch() -> impl Strategy<Value = Vec<Kind>> {
    collection::vec(kind(), 1..=4)
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        Just(Choice::New),
        Just(Choice::Actual),
        pick().prop_map(Choice::Stale),
        stream().prop_map(Choice::OtherStream),
        Just(Choice::OneAhead),
    ]
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![
        2 => Just(How::Unchecked),
        1 => Just(How::ExpectingNew),
        1 => Just(How::ExpectingExisting),
        4 => choice().prop_map(How::Optimistic),
    ]
}

fn resend() -> impl Strategy<Value = Resend> {
    prop_oneof![
        4 => Just(Resend::Same),
        1 => stream().prop_map(Resend::ToStream),
        1 => kind().prop_map(Resend::PlusOne),
        1 => Just(Resend::Reversed),
        1 => Just(Resend::Doubled),
    ]
}

fn filter() -> impl Strategy<Value = FilterSpec> {
    let shape = prop_oneof![
        kind().prop_map(Shape::Event),
        (kind(), stream()).prop_map(|(kind, stream)| Shape::Aggregate(kind, stream)),
        stream().prop_map(Shape::Stream),
    ];
    (shape, option::of(pick())).prop_map(|(shape, after)| FilterSpec { shape, after })
}

fn filters() -> impl Strategy<Value = Vec<FilterSpec>> {
    collection::vec(filter(), 0..=3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (stream(), batch(), how()).prop_map(|(stream, events, how)| Op::Append { stream, events, how }),
        2 => filters().prop_map(|filters| Op::Load { filters }),
        1 => stream().prop_map(|stream| Op::Version { stream }),
        2 => (resend(), how()).prop_map(|(resend, how)| Op::Retry { resend, how }),
        2 => (filters(), option::of(pick()), collection::vec((stream(), batch()), 0..=2))
            .prop_map(|(filters, from, live)| Op::Subscribe { filters, from, live }),
    ]
}

/// Sequences of 1 to `max` operations.
pub(crate) fn operations(max: usize) -> impl Strategy<Value = Vec<Op>> {
    collection::vec(op(), 1..=max)
}

// ---------------------------------------------------------------------------
// Resolved steps and their outcomes.

/// A model version: the position of event `pN`, or one past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    /// The position of the event at this index of the log.
    At(usize),
    /// One past the position of this event (1 with `None`).
    OnePast(Option<usize>),
    /// A position a store reported that is neither (never in the model).
    Stray(String),
}

/// How a resolved append is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Unchecked,
    ExpectingNew,
    ExpectingExisting,
    Optimistic(Option<Version>),
}

/// What a conflict says the append required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    /// A new stream.
    NoStream,
    /// A stream with events.
    StreamExists,
    /// The stream at this version.
    Exact(Version),
    /// Something no append of the test requires.
    Other(String),
}

/// How a batch that reuses stored ids differs from a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Some of its ids are stored, some not.
    Partial,
    /// Its ids are stored in another stream.
    OtherStream,
    /// Its ids are stored in this stream, in another order.
    Order,
}

/// A resolved filter: `after` names an event of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) shape: Shape,
    pub(crate) after: Option<usize>,
}

/// A resolved operation.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Append {
        stream: Stream,
        events: Vec<Planned>,
        check: Check,
        /// Whether the batch resends events of an earlier one.
        retry: bool,
    },
    Load {
        filters: Vec<Filter>,
    },
    Version {
        stream: Stream,
    },
    Subscribe {
        filters: Vec<Filter>,
        from: Option<usize>,
        live: Vec<(Stream, Vec<Planned>)>,
    },
}

/// An event a store returned, by its place in commit order, or a
/// description of what it was when it is no event of the log (or not the
/// one at its position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    At(usize),
    Stray(String),
}

/// What a subscription delivered: through `Subscribe::subscribe` (as many
/// events as the model expects), and through a `Follower` on the same
/// filters until it reported being caught up to the store's head (so an
/// extra event after the expected ones shows too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) subscription: Vec<Seen>,
    pub(crate) follower: Vec<Seen>,
}

/// What a step did, in the model's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed {
        last: Seen,
    },
    /// Every id of the batch was stored, in its stream and order: nothing
    /// written, the first append's last position.
    Replayed {
        last: Seen,
    },
    Conflict {
        expected: Expected,
        actual: Option<Seen>,
    },
    /// Refused before anything was written: a name holds a NUL.
    Refused,
    /// Refused before anything was written: the batch holds an id twice, at
    /// these indices.
    DuplicateId {
        first: usize,
        second: usize,
    },
    /// Refused: the batch reuses stored ids without being a replay, for
    /// any of these reasons (the contract does not say which a store names
    /// when several apply).
    IdReused(Vec<Reuse>),
    Events(Vec<Seen>),
    Version(Option<Seen>),
    Subscribed {
        history: Delivery,
        live: Vec<Outcome>,
        delivered_live: Delivery,
    },
    /// A store error, a timeout, or a store that contradicts itself (a
    /// commit whose events do not load back). Never the model's outcome.
    Broken(String),
}

/// One event of the model's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) stream: Stream,
    pub(crate) kind: Kind,
    pub(crate) n: u64,
}

/// The reference model: the log as a plain list, in commit order.
#[derive(Debug, Default)]
struct Model {
    log: Vec<Event>,
    /// The `n` of the next event planned, committed or not.
    next: u64,
    /// The stream and events of the last `Append` step, for a retry.
    last_batch: Option<(Stream, Vec<Planned>)>,
}

// ANCHOR: model
impl Filter {
    /// The contract's filter, on the model: `after` is strictly greater.
    fn matches(&self, index: usize, event: &Event) -> bool {
        let selected = match self.shape {
            Shape::Event(kind) => event.kind == kind,
            Shape::Aggregate(kind, stream) => event.kind == kind && event.stream == stream,
            Shape::Stream(stream) => event.stream == stream,
        };
        selected && self.after.is_none_or(|after| index > after)
    }
}

impl Model {
    /// A stream's version: its last event (`None` when it has none).
    fn version(&self, stream: Stream) -> Option<usize> {
        self.log.iter().rposition(|event| event.stream == stream)
    }

    /// The union of the filters, each event once, ascending; only events
    /// after `from` (a subscription's start).
    fn select(&self, filters: &[Filter], from: Option<usize>) -> Vec<Seen> {
        (0..self.log.len())
            .filter(|&index| from.is_none_or(|from| index > from))
            .filter(|&index| {
                filters
                    .iter()
                    .any(|filter| filter.matches(index, &self.log[index]))
            })
            .map(Seen::At)
            .collect()
    }

    /// An append: refused when a name holds a NUL or the batch an id
    /// twice; then a replay when every id is stored in the stream in this
    /// order, refused when some are stored otherwise; then committed
    /// exactly when the check holds.
    fn append(&mut self, stream: Stream, events: &[Planned], check: &Check) -> Outcome {
        if AGGREGATE_IDS[stream.id].contains('\0') {
            return Outcome::Refused;
        }
        for (second, event) in events.iter().enumerate() {
            if let Some(first) = events[..second].iter().position(|earlier| earlier.n == event.n) {
                return Outcome::DuplicateId { first, second };
            }
        }
        // Where each event is stored (an id is its event's number).
        let stored: Vec<Option<usize>> = events
            .iter()
            .map(|planned| self.log.iter().position(|event| event.n == planned.n))
            .collect();
        if stored.iter().any(Option::is_some) {
            let here: Vec<usize> = stored
                .iter()
                .flatten()
                .copied()
                .filter(|&index| self.log[index].stream == stream)
                .collect();
            let mut reasons = Vec::new();
            if stored.iter().any(Option::is_none) {
                reasons.push(Reuse::Partial);
            }
            if here.len() < stored.iter().flatten().count() {
                reasons.push(Reuse::OtherStream);
            }
            if here.windows(2).any(|pair| pair[0] > pair[1]) {
                reasons.push(Reuse::Order);
            }
            return match here.last() {
                Some(&last) if reasons.is_empty() => Outcome::Replayed { last: Seen::At(last) },
                _ => Outcome::IdReused(reasons),
            };
        }
        let version = self.version(stream);
        let expected = match check {
            Check::Unchecked => None,
            Check::ExpectingNew | Check::Optimistic(None) => Some(Expected::NoStream),
            Check::ExpectingExisting => Some(Expected::StreamExists),
            Check::Optimistic(Some(version)) => Some(Expected::Exact(version.clone())),
        };
        if let Some(expected) = expected {
            let holds = match &expected {
                Expected::NoStream => version.is_none(),
                Expected::StreamExists => version.is_some(),
                Expected::Exact(Version::At(at)) => version == Some(*at),
                Expected::Exact(Version::OnePast(_) | Version::Stray(_)) | Expected::Other(_) => false,
            };
            if !holds {
                return Outcome::Conflict {
                    expected,
                    actual: version.map(Seen::At),
                };
            }
        }
        for planned in events {
            self.log.push(Event {
                stream,
                kind: planned.kind,
                n: planned.n,
            });
        }
        Outcome::Committed {
            last: Seen::At(self.log.len() - 1),
        }
    }
    // ANCHOR_END: model

    fn plan_batch(&mut self, kinds: &[Kind]) -> Vec<Planned> {
        kinds
            .iter()
            .map(|&kind| {
                self.next += 1;
                Planned { kind, n: self.next }
            })
            .collect()
    }

    fn resolve_filters(&self, specs: &[FilterSpec]) -> Vec<Filter> {
        specs
            .iter()
            .map(|spec| Filter {
                shape: spec.shape,
                after: spec.after.and_then(|pick| pick.among(self.log.len())),
            })
            .collect()
    }

    fn resolve_choice(&self, stream: Stream, choice: &Choice) -> Option<Version> {
        match choice {
            Choice::New => None,
            Choice::Actual => self.version(stream).map(Version::At),
            Choice::Stale(pick) => {
                let mut earlier: Vec<usize> = (0..self.log.len())
                    .filter(|&index| self.log[index].stream == stream)
                    .collect();
                earlier.pop();
                pick.among(earlier.len()).map(|at| Version::At(earlier[at]))
            }
            Choice::OtherStream(other) => self.version(*other).map(Version::At),
            Choice::OneAhead => Some(Version::OnePast(self.version(stream))),
        }
    }

    fn resolve_how(&self, stream: Stream, how: &How) -> Check {
        match how {
            How::Unchecked => Check::Unchecked,
            How::ExpectingNew => Check::ExpectingNew,
            How::ExpectingExisting => Check::ExpectingExisting,
            How::Optimistic(choice) => Check::Optimistic(self.resolve_choice(stream, choice)),
        }
    }

    /// Resolves `op` and runs it on the model; `None` for a retry with no
    /// batch before it.
    fn step(&mut self, op: &Op) -> Option<(Step, Outcome)> {
        Some(match op {
            Op::Append { stream, events, how } => {
                let check = self.resolve_how(*stream, how);
                let events = self.plan_batch(events);
                let outcome = self.append(*stream, &events, &check);
                self.last_batch = Some((*stream, events.clone()));
                let step = Step::Append {
                    stream: *stream,
                    events,
                    check,
                    retry: false,
                };
                (step, outcome)
            }
            Op::Retry { resend, how } => {
                let (mut stream, mut events) = self.last_batch.clone()?;
                match *resend {
                    Resend::Same => {}
                    Resend::ToStream(other) => stream = other,
                    Resend::PlusOne(kind) => events.extend(self.plan_batch(&[kind])),
                    Resend::Reversed => events.reverse(),
                    Resend::Doubled => events.push(events[0]),
                }
                let check = self.resolve_how(stream, how);
                let outcome = self.append(stream, &events, &check);
                let step = Step::Append {
                    stream,
                    events,
                    check,
                    retry: true,
                };
                (step, outcome)
            }
            Op::Load { filters } => {
                let filters = self.resolve_filters(filters);
                let outcome = Outcome::Events(self.select(&filters, None));
                (Step::Load { filters }, outcome)
            }
            Op::Version { stream } => {
                let outcome = Outcome::Version(self.version(*stream).map(Seen::At));
                (Step::Version { stream: *stream }, outcome)
            }
            Op::Subscribe { filters, from, live } => {
                let filters = self.resolve_filters(filters);
                let from = from.and_then(|pick| pick.among(self.log.len()));
                let history = self.select(&filters, from);
                let seen_before = self.log.len();
                let mut batches = Vec::new();
                let mut commits = Vec::new();
                for (stream, kinds) in live {
                    let events = self.plan_batch(kinds);
                    commits.push(self.append(*stream, &events, &Check::Unchecked));
                    batches.push((*stream, events));
                }
                let delivered_live: Vec<Seen> = self
                    .select(&filters, from)
                    .into_iter()
                    .filter(|seen| matches!(seen, Seen::At(index) if *index >= seen_before))
                    .collect();
                let outcome = Outcome::Subscribed {
                    history: Delivery {
                        subscription: history.clone(),
                        follower: history,
                    },
                    live: commits,
                    delivered_live: Delivery {
                        subscription: delivered_live.clone(),
                        follower: delivered_live,
                    },
                };
                let step = Step::Subscribe {
                    filters,
                    from,
                    live: batches,
                };
                (step, outcome)
            }
        })
    }
}

/// A sequence of operations, resolved and run on the model.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) expected: Vec<Outcome>,
    /// The model's log after the last step: every event a store commits,
    /// in commit order.
    pub(crate) log: Vec<Event>,
}

impl Plan {
    pub(crate) fn new(ops: &[Op]) -> Self {
        let mut model = Model::default();
        let (steps, expected) = ops.iter().filter_map(|op| model.step(op)).unzip();
        Self {
            steps,
            expected,
            log: model.log,
        }
    }
}

// ---------------------------------------------------------------------------
// How steps and outcomes print: events as `pN` (the Nth committed).

/// `pN` for the event at `index` of the log.
pub(crate) struct P(pub(crate) usize);

impl fmt::Display for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(index) => write!(f, "{}", P(*index)),
            Self::OnePast(Some(index)) => write!(f, "{}+1", P(*index)),
            Self::OnePast(None) => f.write_str("position 1 (one past an empty stream)"),
            Self::Stray(what) => f.write_str(what),
        }
    }
}

fn version(version: Option<&Version>) -> String {
    version.map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("a new stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(version) => write!(f, "{version}"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Shape::Event(kind) => write!(f, "for_event({kind})")?,
            Shape::Aggregate(kind, stream) => write!(f, "for_aggregate({kind}, {stream})")?,
            Shape::Stream(stream) => write!(f, "for_stream({stream})")?,
        }
        match self.after {
            Some(after) => write!(f, ".after({})", P(after)),
            None => Ok(()),
        }
    }
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let shown: Vec<String> = items.iter().map(show).collect();
    format!("[{}]", shown.join(", "))
}

fn batch_text(events: &[Planned]) -> String {
    list(events, |planned| format!("{} #{}", planned.kind, planned.n))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Append {
                stream,
                events,
                check,
                retry,
            } => {
                let how = match check {
                    Check::Unchecked => "append (unchecked)".to_owned(),
                    Check::ExpectingNew => "append_expecting_new".to_owned(),
                    Check::ExpectingExisting => "append_expecting_existing".to_owned(),
                    Check::Optimistic(expected) => {
                        format!("append (optimistic, expecting {})", version(expected.as_ref()))
                    }
                };
                let again = if *retry { ", resending ids" } else { "" };
                write!(f, "{how} to {stream}{again}: {}", batch_text(events))
            }
            Self::Load { filters } => write!(f, "load_events({})", list(filters, ToString::to_string)),
            Self::Version { stream } => write!(f, "stream_version({stream})"),
            Self::Subscribe { filters, from, live } => {
                let from = from.map_or_else(|| "None".to_owned(), |from| format!("Some({})", P(from)));
                write!(f, "subscribe({}, {from})", list(filters, ToString::to_string))?;
                for (stream, events) in live {
                    write!(f, "; then append (unchecked) to {stream}: {}", batch_text(events))?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(index) => write!(f, "{}", P(*index)),
            Self::Stray(what) => write!(f, "<{what}>"),
        }
    }
}

fn seen(seen: Option<&Seen>) -> String {
    seen.map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subscription = list(&self.subscription, ToString::to_string);
        if self.subscription == self.follower {
            f.write_str(&subscription)
        } else {
            let follower = list(&self.follower, ToString::to_string);
            write!(f, "{subscription} (a follower on the same filters: {follower})")
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Committed { last } => write!(f, "committed, last position {last}"),
            Self::Replayed { last } => write!(f, "replayed (nothing written), last position {last}"),
            Self::Conflict { expected, actual } => write!(
                f,
                "conflict (expected {expected}, actual {})",
                seen(actual.as_ref())
            ),
            Self::Refused => f.write_str("refused (a NUL in a name)"),
            Self::DuplicateId { first, second } => {
                write!(f, "refused (events {first} and {second} have one id)")
            }
            Self::IdReused(reasons) => {
                let reasons: Vec<String> = reasons.iter().map(|reason| format!("{reason:?}")).collect();
                write!(f, "refused (ids reused: {})", reasons.join(" or "))
            }
            Self::Events(events) => write!(f, "{}", list(events, ToString::to_string)),
            Self::Version(at) => write!(f, "{}", seen(at.as_ref())),
            Self::Subscribed {
                history,
                live,
                delivered_live,
            } => {
                write!(f, "delivered {history}")?;
                if !live.is_empty() {
                    let commits = list(live, ToString::to_string);
                    write!(f, "; live appends {commits}; then delivered {delivered_live}")?;
                }
                Ok(())
            }
            Self::Broken(what) => write!(f, "FAILED: {what}"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} #{}", self.stream, self.kind, self.n)
    }
}

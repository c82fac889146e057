//! Running a [`Plan`] on a store and describing what it did in the model's
//! vocabulary, so that it can be compared with the model outcome by
//! outcome.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sourcery_core::concurrency::{ExpectedVersion, Optimistic};
use sourcery_core::store::{
    AppendError, AppendResult, EventFilter, IdReuse, IdReused, InvalidBatch, NonEmpty, PersistableEvent,
    StoredEvent,
};
use sourcery_core::subscription::{Follower, Progress, Subscribe, Subscription};

use crate::model::{
    Check, Delivery, Event, Expected, Filter, Outcome, P, Plan, Planned, Reuse, Seen, Shape, Step, Stream,
    Version, event_id,
};

/// The metadata of every event: its number again, so that metadata is
/// seen to round-trip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) n: u64,
}

/// A store's position type, with what the test needs beyond `Ord`.
pub(crate) trait Position: Copy + Ord + fmt::Debug + Send + Sync + 'static {
    /// One past `version`; 1 for `None`.
    fn one_past(version: Option<Self>) -> Self;
}

impl Position for u64 {
    fn one_past(version: Option<Self>) -> Self {
        version.map_or(1, |position| position + 1)
    }
}

impl Position for i64 {
    fn one_past(version: Option<Self>) -> Self {
        version.map_or(1, |position| position + 1)
    }
}

/// The stores under test: string ids, [`Meta`] metadata, followable.
pub(crate) trait Store: Subscribe<Id = String, Metadata = Meta, Position: Position> {
    /// What the store can say about its state beyond the contract, for a
    /// failure report (PostgreSQL: its table and its safe frontier).
    fn diagnose(&self) -> impl Future<Output = String> + Send {
        async { String::new() }
    }
}

/// How long any one call to a store may take, and how long a subscription
/// may take to deliver its next event, before the step counts as failed.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Awaits `future` for at most [`WAIT`].
pub(crate) async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, future)
        .await
        .map_err(|_| format!("{what} did not finish within {}s", WAIT.as_secs()))
}

/// An error with its causes, on one line.
pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors (sqlx's) repeat their cause in their own message.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The data of the event numbered `n`.
pub(crate) fn data(n: u64) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

/// The event numbered `n` of `kind`, as it goes into a store, with the id
/// of its number.
pub(crate) fn persistable(planned: Planned) -> PersistableEvent<Meta> {
    PersistableEvent::new(planned.kind.name(), data(planned.n), Meta { n: planned.n })
        .with_id(event_id(planned.n))
}

/// A batch as it goes into a store.
pub(crate) fn batch(events: &[Planned]) -> NonEmpty<PersistableEvent<Meta>> {
    NonEmpty::from_vec(events.iter().copied().map(persistable).collect())
        .expect("generated batches are never empty")
}

/// A stored event, briefly, for messages.
pub(crate) fn describe<Pos: fmt::Debug>(event: &StoredEvent<String, Pos, Meta>) -> String {
    format!(
        "{:?}/{:?} {:?} at {:?} (id {}, schema version {}, data {:?}, metadata {:?})",
        event.aggregate_kind,
        event.aggregate_id,
        event.kind,
        event.position,
        event.id,
        event.schema_version,
        String::from_utf8_lossy(&event.data),
        event.metadata
    )
}

/// Whether `event` is the model's `expected`, envelope (id included), data
/// and metadata.
pub(crate) fn is<Pos>(event: &StoredEvent<String, Pos, Meta>, expected: &Event) -> bool {
    event.id == event_id(expected.n)
        && event.aggregate_kind == expected.stream.kind()
        && event.aggregate_id == expected.stream.id()
        && event.kind == expected.kind.name()
        && event.schema_version == 1
        && event.data == data(expected.n)
        && event.metadata == Meta { n: expected.n }
}

/// A refusal for reused ids, in the model's terms: it must name an event of
/// the batch by its index and id.
fn reuse(reused: &IdReused, events: &[Planned]) -> Outcome {
    let named = events.get(reused.index).map(|planned| event_id(planned.n));
    if named != Some(reused.event_id) {
        return Outcome::Broken(format!(
            "the refusal names event {} with id {}, which is {named:?} in the batch",
            reused.index, reused.event_id
        ));
    }
    match reused.reason {
        IdReuse::Partial => Outcome::IdReused(vec![Reuse::Partial]),
        IdReuse::OtherStream => Outcome::IdReused(vec![Reuse::OtherStream]),
        IdReuse::Order => Outcome::IdReused(vec![Reuse::Order]),
        other => Outcome::Broken(format!("a reuse of a new kind: {other}")),
    }
}

/// Runs a plan on one store, keeping the map between the model's commit
/// order and the store's positions.
pub(crate) struct Executor<'p, S: Store> {
    store: S,
    plan: &'p Plan,
    /// The store's position of each committed event, in commit order.
    positions: Vec<S::Position>,
    /// The other way round.
    index: BTreeMap<S::Position, usize>,
}

/// Where a store first differed from the model.
#[derive(Debug)]
pub(crate) struct Divergence {
    pub(crate) step: usize,
    pub(crate) actual: Outcome,
    /// The store's positions of `p1`, `p2`, ... so far.
    pub(crate) positions: String,
    /// What the store says about itself ([`Store::diagnose`]).
    pub(crate) diagnostics: String,
}

impl<'p, S: Store> Executor<'p, S> {
    /// Runs every step of `plan` on `store`, which must be empty, and stops
    /// at the first outcome that differs from the model's.
    pub(crate) async fn run(store: S, plan: &'p Plan) -> Result<(), Divergence> {
        let mut executor = Self {
            store,
            plan,
            positions: Vec::new(),
            index: BTreeMap::new(),
        };
        for (number, (step, expected)) in plan.steps.iter().zip(&plan.expected).enumerate() {
            let actual = executor.step(step, expected).await;
            if actual != *expected {
                return Err(Divergence {
                    step: number,
                    actual,
                    positions: executor.positions(),
                    diagnostics: executor.store.diagnose().await,
                });
            }
        }
        Ok(())
    }

    fn positions(&self) -> String {
        let shown: Vec<String> = self
            .positions
            .iter()
            .enumerate()
            .map(|(index, position)| format!("{}={position:?}", P(index)))
            .collect();
        shown.join(" ")
    }

    async fn step(&mut self, step: &Step, expected: &Outcome) -> Outcome {
        let result = match step {
            Step::Append {
                stream,
                events,
                check,
                retry: _,
            } => Ok(match self.append(*stream, events, check).await {
                // Where several reasons apply, the store may name any.
                Outcome::IdReused(named) => match expected {
                    Outcome::IdReused(reasons) if named.iter().all(|reason| reasons.contains(reason)) => {
                        expected.clone()
                    }
                    _ => Outcome::IdReused(named),
                },
                actual => actual,
            }),
            Step::Load { filters } => self.load(filters).await,
            Step::Version { stream } => self.version(*stream).await,
            Step::Subscribe { filters, from, live } => self.subscribe(filters, *from, live, expected).await,
        };
        result.unwrap_or_else(Outcome::Broken)
    }

    /// The store's version of `stream` as far as the test knows: the
    /// position of the stream's last committed event.
    fn known_version(&self, stream: Stream) -> Option<S::Position> {
        (0..self.positions.len())
            .rev()
            .find(|&index| self.plan.log[index].stream == stream)
            .map(|index| self.positions[index])
    }

    fn resolve(&self, version: &Version) -> S::Position {
        match version {
            Version::At(index) => self.positions[*index],
            Version::OnePast(index) => S::Position::one_past(index.map(|index| self.positions[index])),
            Version::Stray(what) => unreachable!("the model never passes a stray version ({what})"),
        }
    }

    /// A position the store reported, in the model's terms.
    fn seen_position(&self, position: S::Position) -> Seen {
        match self.index.get(&position) {
            Some(&index) => Seen::At(index),
            None => Seen::Stray(format!("{position:?}, the position of no event committed")),
        }
    }

    /// An event the store returned, in the model's terms.
    fn seen(&self, event: &StoredEvent<String, S::Position, Meta>) -> Seen {
        match self.index.get(&event.position) {
            Some(&index) if is(event, &self.plan.log[index]) => Seen::At(index),
            Some(&index) => Seen::Stray(format!(
                "{}, where {} is {}",
                describe(event),
                P(index),
                self.plan.log[index]
            )),
            None => Seen::Stray(format!("{}, at no position committed", describe(event))),
        }
    }

    fn filters(&self, filters: &[Filter]) -> Vec<EventFilter<String, S::Position>> {
        filters
            .iter()
            .map(|filter| {
                let selected = match filter.shape {
                    Shape::Event(kind) => EventFilter::for_event(kind.name()),
                    Shape::Aggregate(kind, stream) => {
                        EventFilter::for_aggregate(kind.name(), stream.kind(), stream.id())
                    }
                    Shape::Stream(stream) => EventFilter::for_stream(stream.kind(), stream.id()),
                };
                match filter.after {
                    Some(after) => selected.after(self.positions[after]),
                    None => selected,
                }
            })
            .collect()
    }

    async fn append(&mut self, stream: Stream, events: &[Planned], check: &Check) -> Outcome {
        let (kind, id) = (stream.kind(), stream.id());
        let before = self.known_version(stream);
        let outcome = match check {
            Check::Unchecked => bounded("append", self.store.append(kind, &id, None, batch(events))).await,
            Check::ExpectingNew => {
                bounded(
                    "append_expecting_new",
                    self.store.append_expecting_new(kind, &id, batch(events)),
                )
                .await
            }
            Check::ExpectingExisting => {
                bounded(
                    "append_expecting_existing",
                    self.store.append_expecting_existing(kind, &id, batch(events)),
                )
                .await
            }
            Check::Optimistic(expected) => {
                let expected = expected.as_ref().map(|version| self.resolve(version));
                let mut transaction = self.store.begin::<Optimistic>(kind, id.clone(), expected);
                for &planned in events {
                    transaction.append_persistable(persistable(planned));
                }
                bounded("commit", transaction.commit())
                    .await
                    .map(|committed| committed.map(|written| written.expect("the batch is not empty")))
            }
        };
        match outcome {
            Err(timeout) => Outcome::Broken(timeout),
            Ok(Ok(written)) if written.replayed => match self.verify_replay(stream, before, &written).await {
                Ok(()) => Outcome::Replayed {
                    last: self.seen_position(written.last_position),
                },
                Err(broken) => Outcome::Broken(broken),
            },
            Ok(Ok(written)) => match self
                .verify_commit(stream, events, before, written.last_position)
                .await
            {
                Ok(()) => Outcome::Committed {
                    last: Seen::At(self.positions.len() - 1),
                },
                Err(broken) => Outcome::Broken(broken),
            },
            Ok(Err(AppendError::Conflict(conflict))) => {
                let passed = match check {
                    Check::Optimistic(expected) => expected.clone(),
                    Check::Unchecked | Check::ExpectingNew | Check::ExpectingExisting => None,
                };
                let expected = match conflict.expected {
                    ExpectedVersion::NoStream => Expected::NoStream,
                    ExpectedVersion::StreamExists => Expected::StreamExists,
                    ExpectedVersion::Exact(reported) => Expected::Exact(match &passed {
                        Some(version) if self.resolve(version) == reported => version.clone(),
                        _ => match self.seen_position(reported) {
                            Seen::At(index) => Version::At(index),
                            Seen::Stray(what) => Version::Stray(what),
                        },
                    }),
                    ExpectedVersion::Any => Expected::Other("any version".to_owned()),
                };
                Outcome::Conflict {
                    expected,
                    actual: conflict.actual.map(|actual| self.seen_position(actual)),
                }
            }
            Ok(Err(AppendError::Invalid(InvalidBatch::DuplicateId { first, second }))) => {
                Outcome::DuplicateId { first, second }
            }
            Ok(Err(AppendError::Invalid(_))) => Outcome::Refused,
            Ok(Err(AppendError::IdReused(reused))) => reuse(&reused, events),
            Ok(Err(AppendError::Store(error))) => {
                Outcome::Broken(format!("the store failed: {}", error_text(&error)))
            }
            Ok(Err(other)) => {
                Outcome::Broken(format!("an append error of a new kind: {}", error_text(&other)))
            }
        }
    }

    /// After a replay: the stream holds nothing after its previous version.
    async fn verify_replay(
        &self,
        stream: Stream,
        before: Option<S::Position>,
        written: &AppendResult<S::Position>,
    ) -> Result<(), String> {
        let mut filter = EventFilter::for_stream(stream.kind(), stream.id());
        if let Some(before) = before {
            filter = filter.after(before);
        }
        let loaded = bounded("load_events", self.store.load_events(&[filter]))
            .await?
            .map_err(|error| format!("reading back a replay failed: {}", error_text(&error)))?;
        if loaded.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = loaded.iter().map(describe).collect();
        Err(format!(
            "replayed (last at {:?}), but the stream after {before:?} loads [{}]",
            written.last_position,
            shown.join(", ")
        ))
    }

    /// After a commit: the stream, read after its previous version, holds
    /// exactly the batch, in order, above every earlier position, the last
    /// at the position the commit returned. Records the batch's positions.
    async fn verify_commit(
        &mut self,
        stream: Stream,
        events: &[Planned],
        before: Option<S::Position>,
        last: S::Position,
    ) -> Result<(), String> {
        let mut filter = EventFilter::for_stream(stream.kind(), stream.id());
        if let Some(before) = before {
            filter = filter.after(before);
        }
        let filters = [filter];
        let loaded = bounded("load_events", self.store.load_events(&filters))
            .await?
            .map_err(|error| format!("reading back a commit failed: {}", error_text(&error)))?;
        let committed = self.positions.len();
        let wrong = || {
            let shown: Vec<String> = loaded.iter().map(describe).collect();
            format!(
                "committed {} event(s), last at {last:?}, but the stream after {before:?} loads [{}]",
                events.len(),
                shown.join(", ")
            )
        };
        if loaded.len() != events.len() {
            return Err(wrong());
        }
        let mut previous = self.positions.last().copied();
        for (event, planned) in loaded.iter().zip(events) {
            let written = Event {
                stream,
                kind: planned.kind,
                n: planned.n,
            };
            if !is(event, &written) || previous.is_some_and(|p| event.position <= p) {
                return Err(wrong());
            }
            previous = Some(event.position);
        }
        if previous != Some(last) {
            return Err(wrong());
        }
        for (offset, event) in loaded.iter().enumerate() {
            self.positions.push(event.position);
            self.index.insert(event.position, committed + offset);
        }
        Ok(())
    }

    async fn load(&self, filters: &[Filter]) -> Result<Outcome, String> {
        let filters = self.filters(filters);
        let loaded = bounded("load_events", self.store.load_events(&filters))
            .await?
            .map_err(|error| format!("load_events failed: {}", error_text(&error)))?;
        Ok(Outcome::Events(
            loaded.iter().map(|event| self.seen(event)).collect(),
        ))
    }

    async fn version(&self, stream: Stream) -> Result<Outcome, String> {
        let id = stream.id();
        let version = bounded("stream_version", self.store.stream_version(stream.kind(), &id))
            .await?
            .map_err(|error| format!("stream_version failed: {}", error_text(&error)))?;
        Ok(Outcome::Version(
            version.map(|position| self.seen_position(position)),
        ))
    }

    async fn subscribe(
        &mut self,
        filters: &[Filter],
        from: Option<usize>,
        live: &[(Stream, Vec<Planned>)],
        expected: &Outcome,
    ) -> Result<Outcome, String> {
        let Outcome::Subscribed {
            history: expected_history,
            delivered_live: expected_live,
            ..
        } = expected
        else {
            unreachable!("the model's outcome of a subscription is a delivery");
        };
        let filters = self.filters(filters);
        let from = from.map(|index| self.positions[index]);
        let mut subscription = self.store.subscribe(filters.clone(), from);
        let mut follower = Follower::new(self.store.clone(), filters, from);
        let history = Delivery {
            subscription: self
                .read_subscription(&mut subscription, expected_history.subscription.len())
                .await,
            follower: self.read_follower(&mut follower, from).await,
        };
        let mut commits = Vec::new();
        for (stream, events) in live {
            commits.push(self.append(*stream, events, &Check::Unchecked).await);
        }
        let delivered_live = if live.is_empty() {
            Delivery::default()
        } else {
            Delivery {
                subscription: self
                    .read_subscription(&mut subscription, expected_live.subscription.len())
                    .await,
                follower: self.read_follower(&mut follower, from).await,
            }
        };
        Ok(Outcome::Subscribed {
            history,
            live: commits,
            delivered_live,
        })
    }

    /// The next `count` events of the subscription, each within [`WAIT`].
    async fn read_subscription(&self, subscription: &mut Subscription<S>, count: usize) -> Vec<Seen> {
        let mut delivered = Vec::new();
        while delivered.len() < count {
            match tokio::time::timeout(WAIT, subscription.next()).await {
                Ok(Some(Ok(event))) => delivered.push(self.seen(&event)),
                Ok(Some(Err(error))) => {
                    delivered.push(Seen::Stray(format!("an error: {}", error_text(&error))));
                    break;
                }
                Ok(None) => {
                    delivered.push(Seen::Stray("the end of the subscription".to_owned()));
                    break;
                }
                Err(_) => {
                    delivered.push(Seen::Stray(format!(
                        "no further event within {}s",
                        WAIT.as_secs()
                    )));
                    break;
                }
            }
        }
        delivered
    }

    /// What the follower delivers until it reports having caught up to the
    /// store's head, each report within [`WAIT`]. Nothing when the head is
    /// not past `from` or the follower's position: a follower reports
    /// nothing then, and nothing is due.
    async fn read_follower(&self, follower: &mut Follower<S>, from: Option<S::Position>) -> Vec<Seen> {
        let Some(head) = self.positions.last().copied() else {
            return Vec::new();
        };
        // Nothing is due when the head is not past where the follower started
        // or has read to already (a live append that was refused or lost
        // its race moves no head).
        if from.max(follower.position()).is_some_and(|read| read >= head) {
            return Vec::new();
        }
        let mut delivered = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, follower.next()).await {
                Ok(Some(Ok(Progress::Event(event)))) => delivered.push(self.seen(&event)),
                Ok(Some(Ok(Progress::CaughtUp(position)))) if position >= head => break,
                Ok(Some(Ok(Progress::CaughtUp(_)))) => {}
                Ok(Some(Err(error))) => {
                    delivered.push(Seen::Stray(format!("an error: {}", error_text(&error))));
                    break;
                }
                Ok(None) => {
                    delivered.push(Seen::Stray("the end of the follower".to_owned()));
                    break;
                }
                Err(_) => {
                    delivered.push(Seen::Stray(format!(
                        "not caught up to {head:?} within {}s",
                        WAIT.as_secs()
                    )));
                    break;
                }
            }
        }
        delivered
    }
}

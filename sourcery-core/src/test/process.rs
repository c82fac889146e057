//! Given–when–then tests for process managers, with no store.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::event::DomainEvent;
use crate::id::EventId;
use crate::metadata::CausedBy;
use crate::reactor::{Decision, Envelope, ProcessManager, ReactError};
use crate::snapshot::NoSnapshots;
use crate::store::{EventStore, StoredEvent};

/// Tests a process manager's decisions like an aggregate's: given the
/// process's past events, when an event arrives, then these events are
/// recorded and these commands, timers and cancellations follow.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sourcery_core::aggregate::Aggregate;
/// # use sourcery_core::codec::Codec;
/// # use sourcery_core::event::{DecodeEvent, DecodeFailure, RawEvent, DomainEvent, EventPayload};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # struct Placed { total: u64 }
/// # impl DomainEvent for Placed { const KIND: &'static str = "order.placed"; }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # struct Started;
/// # impl DomainEvent for Started { const KIND: &'static str = "billing.started"; }
/// # #[derive(Debug, Clone, PartialEq)]
/// # enum BillingEvent { Started(Started) }
/// # impl From<Started> for BillingEvent { fn from(e: Started) -> Self { Self::Started(e) } }
/// # impl EventPayload for BillingEvent {
/// #     fn kind(&self) -> &'static str { Started::KIND }
/// #     fn schema_version(&self) -> u32 { 1 }
/// #     fn encode_with<C: Codec>(&self, c: &C) -> Result<Vec<u8>, C::Error> { let Self::Started(e) = self; e.encode_with(c) }
/// # }
/// # impl DecodeEvent for BillingEvent {
/// #     fn event_kinds() -> &'static [&'static str] { &[Started::KIND] }
/// #     fn decode_with<C: Codec>(c: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> { Ok(Started::decode_with(c, event)?.map(Self::Started)) }
/// # }
/// # #[derive(Debug, Default)] struct Billing { started: bool }
/// # impl Aggregate for Billing {
/// #     const KIND: &'static str = "billing";
/// #     type Id = String; type Event = BillingEvent; type Error = std::convert::Infallible;
/// #     fn apply(&mut self, _: &BillingEvent) { self.started = true; }
/// # }
/// use sourcery_core::reactor::{Cause, ProcessManager};
/// use sourcery_core::store::inmemory;
/// use sourcery_core::test::ProcessTest;
///
/// type Store = inmemory::Store<String, ()>;
///
/// fn order<E>(_: &E, cause: Cause<'_, Store>) -> Option<String> {
///     Some(cause.aggregate_id.clone())
/// }
///
/// let billing = ProcessManager::<Billing, Store>::new("billing").on(order::<Placed>, |state: &Billing, _: &Placed, _, out| {
///     if !state.started {
///         out.record(Started);
///     }
///     Ok::<_, std::convert::Infallible>(())
/// });
///
/// ProcessTest::new(&billing)
///     .when("order", "o-1".to_owned(), &Placed { total: 30 }, 1)
///     .then_expect_events(&[Started])
///     .then_expect_no_commands();
///
/// ProcessTest::new(&billing)
///     .given(&[Started])
///     .when("order", "o-1".to_owned(), &Placed { total: 30 }, 2)
///     .then_expect_events::<Started>(&[]);
/// ```
#[must_use = "a process test checks nothing until `when` and a `then_*`"]
pub struct ProcessTest<'p, P: Aggregate, S: EventStore, Snap = NoSnapshots> {
    process: &'p ProcessManager<P, S, Snap>,
    given: Vec<P::Event>,
    now: DateTime<Utc>,
    codec: S::Codec,
}

impl<'p, P, S, Snap> ProcessTest<'p, P, S, Snap>
where
    P: Aggregate<Id = S::Id>,
    S: EventStore,
    S::Id: PartialEq,
    S::Metadata: CausedBy,
    S::Codec: Default,
    Snap: 'static,
{
    /// A test of `process` with no history, deciding at the system's time
    /// now (see [`at`](Self::at)).
    pub fn new(process: &'p ProcessManager<P, S, Snap>) -> Self {
        Self {
            process,
            given: Vec::new(),
            now: Utc::now(),
            codec: S::Codec::default(),
        }
    }

    /// The process's past events (domain events or its event enum).
    pub fn given<E>(mut self, events: &[E]) -> Self
    where
        E: Clone + Into<P::Event>,
    {
        self.given.extend(events.iter().cloned().map(Into::into));
        self
    }

    /// Decides at `now` (timers scheduled relative to it).
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// When `event` of the aggregate `aggregate_kind` / `aggregate_id` is
    /// delivered at `position`, with default metadata.
    ///
    /// # Panics
    ///
    /// When the event does not encode.
    #[must_use = "a test checks nothing until a `then_*` is called"]
    pub fn when<E: DomainEvent>(
        self,
        aggregate_kind: &str,
        aggregate_id: S::Id,
        event: &E,
        position: S::Position,
    ) -> ProcessOutcome<P, S, Snap>
    where
        S::Metadata: Default,
    {
        let data = match self.codec.encode(event) {
            Ok(data) => data,
            Err(error) => panic!("the event {} does not encode: {error}", E::KIND),
        };
        let cause = StoredEvent {
            id: EventId::new(),
            aggregate_kind: aggregate_kind.to_owned(),
            aggregate_id,
            kind: E::KIND.to_owned(),
            position,
            schema_version: E::VERSION,
            data,
            metadata: S::Metadata::default(),
        };
        self.when_stored(&cause)
    }

    /// When the stored event `cause` is delivered.
    #[must_use = "a test checks nothing until a `then_*` is called"]
    pub fn when_stored(self, cause: &Envelope<S>) -> ProcessOutcome<P, S, Snap> {
        let given = self.given;
        let decided = self.process.decide(
            cause,
            &self.codec,
            |_| {
                let mut state = P::default();
                for event in &given {
                    state.apply(event);
                }
                state
            },
            self.now,
        );
        ProcessOutcome {
            decided: decided.map(|decided| decided.map(|(id, _, decision)| (id, decision))),
        }
    }
}

impl<P: Aggregate, S: EventStore, Snap> Debug for ProcessTest<'_, P, S, Snap> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessTest")
            .field("process", &self.process)
            .field("given", &self.given)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What a process manager decided in a [`ProcessTest`], waiting for its
/// `then_*` checks (each returns the outcome, so they chain).
pub struct ProcessOutcome<P: Aggregate, S: EventStore, Snap = NoSnapshots> {
    decided: Result<Routed<P, S, Snap>, ReactError>,
}

/// The process an event went to and the decision on it, if it went to one.
type Routed<P, S, Snap> = Option<(<P as Aggregate>::Id, Decision<P, S, Snap>)>;

#[expect(
    clippy::return_self_not_must_use,
    reason = "the checks chain; the last one's outcome is dropped on purpose"
)]
impl<P: Aggregate, S: EventStore, Snap> ProcessOutcome<P, S, Snap>
where
    S::Id: PartialEq,
{
    #[track_caller]
    fn decision(&self) -> &Decision<P, S, Snap> {
        match &self.decided {
            Ok(Some((_, decision))) => decision,
            Ok(None) => panic!("expected a decision, but the event belongs to no process"),
            Err(error) => panic!("expected a decision, but deciding failed: {error}"),
        }
    }

    /// Checks that the decision recorded exactly `expected` in the
    /// process's stream.
    ///
    /// # Panics
    ///
    /// When it recorded something else, failed, or the event belongs to
    /// no process.
    #[track_caller]
    pub fn then_expect_events<E>(self, expected: &[E]) -> Self
    where
        E: Clone + Into<P::Event>,
        P::Event: PartialEq,
    {
        let expected: Vec<P::Event> = expected.iter().cloned().map(Into::into).collect();
        let recorded = self.decision().events();
        assert!(
            recorded == expected.as_slice(),
            "expected the process to record {expected:?}, it recorded {recorded:?}"
        );
        self
    }

    /// Checks that the decision runs `command` on aggregate `A` with `id`
    /// (among its commands).
    ///
    /// # Panics
    ///
    /// When it does not.
    #[track_caller]
    pub fn then_expect_command<A: Aggregate, C: PartialEq + Debug + 'static>(
        self,
        id: &S::Id,
        command: &C,
    ) -> Self {
        let commands = self.decision().commands();
        assert!(
            commands.iter().any(|planned| planned.is::<A, C>(id, command)),
            "expected the command {command:?} on {} {id:?}, the decision runs {commands:?}",
            A::KIND
        );
        self
    }

    /// Checks that the decision runs no command.
    ///
    /// # Panics
    ///
    /// When it runs one.
    #[track_caller]
    pub fn then_expect_no_commands(self) -> Self {
        let commands = self.decision().commands();
        assert!(
            commands.is_empty(),
            "expected no command, the decision runs {commands:?}"
        );
        self
    }

    /// Checks that the decision schedules `command` on aggregate `A` with
    /// `id` for `due`.
    ///
    /// # Panics
    ///
    /// When it does not.
    #[track_caller]
    pub fn then_expect_timer<A: Aggregate, C: PartialEq + Debug + 'static>(
        self,
        id: &S::Id,
        command: &C,
        due: DateTime<Utc>,
    ) -> Self {
        let timers = self.decision().timers();
        assert!(
            timers.iter().any(|timer| timer.is::<A, C>(id, command, due)),
            "expected the command {command:?} on {} {id:?} scheduled for {due}, the decision schedules {timers:?}",
            A::KIND
        );
        self
    }

    /// Checks that the decision schedules nothing.
    ///
    /// # Panics
    ///
    /// When it schedules a timer.
    #[track_caller]
    pub fn then_expect_no_timers(self) -> Self {
        let timers = self.decision().timers();
        assert!(
            timers.is_empty(),
            "expected no timer, the decision schedules {timers:?}"
        );
        self
    }

    /// Checks that the decision cancels exactly the timers with `keys`.
    ///
    /// # Panics
    ///
    /// When it cancels others.
    #[track_caller]
    pub fn then_expect_cancelled(self, keys: &[&str]) -> Self {
        let cancelled = self.decision().cancelled();
        assert!(
            cancelled.iter().map(String::as_str).eq(keys.iter().copied()),
            "expected the timers {keys:?} cancelled, the decision cancels {cancelled:?}"
        );
        self
    }

    /// Checks that the event belongs to no process (its correlation gave
    /// none).
    ///
    /// # Panics
    ///
    /// When it was routed to a process, or deciding failed.
    #[track_caller]
    pub fn then_expect_no_process(self) -> Self {
        match &self.decided {
            Ok(None) => {}
            Ok(Some((id, _))) => panic!("expected the event to belong to no process, it went to {id:?}"),
            Err(error) => panic!("expected the event to belong to no process, deciding failed: {error}"),
        }
        self
    }

    /// Checks that deciding failed, with a message containing `text`.
    ///
    /// # Panics
    ///
    /// When it did not fail, or failed otherwise.
    #[track_caller]
    pub fn then_expect_error_containing(self, text: &str) -> Self {
        match &self.decided {
            Err(error) => {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                assert!(
                    message.contains(text),
                    "expected an error containing {text:?}, got {message:?}"
                );
            }
            Ok(_) => panic!("expected deciding to fail with {text:?}, it decided"),
        }
        self
    }

    /// The decision, for checks of your own.
    ///
    /// # Panics
    ///
    /// When deciding failed or the event belongs to no process.
    #[track_caller]
    pub fn into_decision(self) -> Decision<P, S, Snap> {
        match self.decided {
            Ok(Some((_, decision))) => decision,
            Ok(None) => panic!("expected a decision, but the event belongs to no process"),
            Err(error) => panic!("expected a decision, but deciding failed: {error}"),
        }
    }
}

impl<P: Aggregate, S: EventStore, Snap> Debug for ProcessOutcome<P, S, Snap> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.decided {
            Ok(Some((id, decision))) => f
                .debug_struct("ProcessOutcome")
                .field("process", id)
                .field("decision", decision)
                .finish(),
            Ok(None) => f.write_str("ProcessOutcome(no process)"),
            Err(error) => f.debug_tuple("ProcessOutcome").field(error).finish(),
        }
    }
}

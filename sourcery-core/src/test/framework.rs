//! Given–when–then tests for aggregates, with no store and no
//! serialization.

use std::fmt::{Debug, Write as _};
use std::marker::PhantomData;

use crate::aggregate::{Aggregate, Handle, HandleCreate};

/// Tests an aggregate's decisions: given past events, when a command
/// arrives, then these events (or this error) follow.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sourcery_core::aggregate::{Aggregate, Apply, Handle};
/// # use sourcery_core::codec::Codec;
/// # use sourcery_core::event::{DecodeEvent, DecodeFailure, RawEvent, DomainEvent, EventPayload};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # struct Added { n: u64 }
/// # impl DomainEvent for Added { const KIND: &'static str = "counter.added"; }
/// # #[derive(Debug, Clone, PartialEq)]
/// # enum CounterEvent { Added(Added) }
/// # impl From<Added> for CounterEvent { fn from(e: Added) -> Self { Self::Added(e) } }
/// # impl EventPayload for CounterEvent {
/// #     fn kind(&self) -> &'static str { Added::KIND }
/// #     fn schema_version(&self) -> u32 { Added::VERSION }
/// #     fn encode_with<C: Codec>(&self, c: &C) -> Result<Vec<u8>, C::Error> { let Self::Added(e) = self; e.encode_with(c) }
/// # }
/// # impl DecodeEvent for CounterEvent {
/// #     fn event_kinds() -> &'static [&'static str] { &[Added::KIND] }
/// #     fn decode_with<C: Codec>(c: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> { Ok(Added::decode_with(c, event)?.map(Self::Added)) }
/// # }
/// # #[derive(Debug, PartialEq, thiserror::Error)] #[error("the counter is full")] struct Full;
/// # #[derive(Debug, Default)] struct Counter { total: u64 }
/// # impl Aggregate for Counter {
/// #     const KIND: &'static str = "counter";
/// #     type Id = String; type Event = CounterEvent; type Error = Full;
/// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Added(a) = e; self.total += a.n; }
/// # }
/// struct Add(u64);
/// impl Handle<Add> for Counter {
///     fn handle(&self, add: &Add) -> Result<Vec<CounterEvent>, Full> {
///         if self.total + add.0 > 10 {
///             return Err(Full);
///         }
///         Ok(vec![Added { n: add.0 }.into()])
///     }
/// }
///
/// use sourcery_core::test::TestFramework;
///
/// TestFramework::<Counter>::new()
///     .given(&[Added { n: 4 }])
///     .when(&Add(5))
///     .then_expect_events(&[Added { n: 5 }]);
///
/// TestFramework::<Counter>::new()
///     .given(&[Added { n: 8 }])
///     .when(&Add(5))
///     .then_expect_error_message("the counter is full");
/// ```
#[must_use = "a test framework checks nothing until `when` and a `then_*`"]
pub struct TestFramework<A: Aggregate> {
    given: Vec<A::Event>,
}

/// The outcome of `when`, waiting for a `then_*` check.
#[must_use = "a test checks nothing until a `then_*` is called"]
pub struct Outcome<A: Aggregate> {
    result: Result<Vec<A::Event>, A::Error>,
    aggregate: PhantomData<A>,
}

impl<A: Aggregate> TestFramework<A> {
    /// A test with no history yet.
    pub fn new() -> Self {
        Self { given: Vec::new() }
    }

    /// The aggregate's past events (domain events or its event enum).
    pub fn given<E>(mut self, events: &[E]) -> Self
    where
        E: Clone + Into<A::Event>,
    {
        self.given.extend(events.iter().cloned().map(Into::into));
        self
    }

    /// More past events, after those given so far.
    pub fn and<E>(self, events: &[E]) -> Self
    where
        E: Clone + Into<A::Event>,
    {
        self.given(events)
    }

    /// States that the aggregate has no history (reads better than nothing).
    pub fn given_no_previous_events(self) -> Self {
        self
    }

    fn state(&self) -> A {
        let mut state = A::default();
        for event in &self.given {
            state.apply(event);
        }
        state
    }

    /// The command arrives at the aggregate rebuilt from the given events.
    pub fn when<C>(self, command: &C) -> Outcome<A>
    where
        A: Handle<C>,
    {
        Outcome {
            result: self.state().handle(command),
            aggregate: PhantomData,
        }
    }

    /// A creation command arrives (no history is consulted: creation
    /// commands only run on new streams).
    pub fn when_creating<C>(self, command: &C) -> Outcome<A>
    where
        A: HandleCreate<C>,
    {
        Outcome {
            result: A::handle_create(command),
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Default for TestFramework<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts that the command produced exactly `expected`, in order.
    ///
    /// # Panics
    ///
    /// With a per-event diff when the events differ, or the error when the
    /// command was rejected.
    #[track_caller]
    pub fn then_expect_events<E>(self, expected: &[E])
    where
        E: Clone + Into<A::Event>,
        A::Event: PartialEq,
    {
        let expected: Vec<A::Event> = expected.iter().cloned().map(Into::into).collect();
        match self.result {
            Ok(actual) if actual == expected => {}
            Ok(actual) => panic!("the command produced other events\n{}", diff(&expected, &actual)),
            Err(error) => panic!(
                "expected events, but the command was rejected: {error}\nexpected:\n{}",
                listing(&expected)
            ),
        }
    }

    /// Asserts that the command succeeded and produced no events.
    ///
    /// # Panics
    ///
    /// When it produced events or was rejected.
    #[track_caller]
    pub fn then_expect_no_events(self) {
        match self.result {
            Ok(actual) if actual.is_empty() => {}
            Ok(actual) => panic!("expected no events, the command produced:\n{}", listing(&actual)),
            Err(error) => panic!("expected no events, but the command was rejected: {error}"),
        }
    }

    /// Asserts that the command was rejected, whatever the error.
    ///
    /// # Panics
    ///
    /// When the command succeeded.
    #[track_caller]
    pub fn then_expect_error(self) {
        if let Ok(actual) = self.result {
            panic!(
                "expected the command to be rejected, it produced:\n{}",
                listing(&actual)
            );
        }
    }

    /// Asserts that the command was rejected with `expected`.
    ///
    /// # Panics
    ///
    /// When the command succeeded or failed with another error.
    #[track_caller]
    pub fn then_expect_error_eq(self, expected: &A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Err(error) if error == *expected => {}
            Err(error) => panic!(
                "the command was rejected with another error\n  expected: {expected:?}\n    actual: {error:?}"
            ),
            Ok(actual) => panic!(
                "expected the error {expected:?}, the command produced:\n{}",
                listing(&actual)
            ),
        }
    }

    /// Asserts that the command was rejected with an error whose whole
    /// `Display` message is `expected`, exactly. To match a part of it, use
    /// [`then_expect_error_message_contains`](Self::then_expect_error_message_contains).
    ///
    /// # Panics
    ///
    /// When the command succeeded or the message differs.
    #[track_caller]
    pub fn then_expect_error_message(self, expected: &str) {
        match self.result {
            Err(error) if error.to_string() == expected => {}
            Err(error) => panic!(
                "the command was rejected with another message\n  expected: {expected}\n    actual: {error}"
            ),
            Ok(actual) => panic!(
                "expected the error \"{expected}\", the command produced:\n{}",
                listing(&actual)
            ),
        }
    }

    /// Asserts that the command was rejected with an error whose `Display`
    /// message contains `part` (a substring match; for the whole message
    /// use [`then_expect_error_message`](Self::then_expect_error_message)).
    ///
    /// # Panics
    ///
    /// When the command succeeded or the message does not contain `part`.
    #[track_caller]
    pub fn then_expect_error_message_contains(self, part: &str) {
        match self.result {
            Err(error) if error.to_string().contains(part) => {}
            Err(error) => panic!(
                "the command was rejected with a message that does not contain the expected part\n  \
                 expected a part: {part}\n           actual: {error}"
            ),
            Ok(actual) => panic!(
                "expected an error containing \"{part}\", the command produced:\n{}",
                listing(&actual)
            ),
        }
    }

    /// The raw result, for checks of your own.
    ///
    /// # Errors
    ///
    /// The aggregate's error when it rejected the command.
    pub fn inspect_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

fn listing<T: Debug>(events: &[T]) -> String {
    if events.is_empty() {
        return "  (none)\n".to_owned();
    }
    let mut out = String::new();
    for (index, event) in events.iter().enumerate() {
        let _ = writeln!(out, "  [{index}] {event:?}");
    }
    out
}

fn diff<T: Debug + PartialEq>(expected: &[T], actual: &[T]) -> String {
    let mut out = format!("expected {} event(s), got {}:\n", expected.len(), actual.len());
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if e == a => {
                let _ = writeln!(out, "  [{index}]   {e:?}");
            }
            (Some(e), Some(a)) => {
                let _ = writeln!(out, "  [{index}] - {e:?}\n  [{index}] + {a:?}");
            }
            (Some(e), None) => {
                let _ = writeln!(out, "  [{index}] - {e:?}   (missing)");
            }
            (None, Some(a)) => {
                let _ = writeln!(out, "  [{index}] + {a:?}   (unexpected)");
            }
            (None, None) => {}
        }
    }
    out
}

impl<A: Aggregate> Debug for TestFramework<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFramework")
            .field("given", &self.given)
            .finish()
    }
}

impl<A: Aggregate> Debug for Outcome<A>
where
    A::Error: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome").field("result", &self.result).finish()
    }
}

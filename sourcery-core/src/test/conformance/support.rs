//! What the rules share: labelled failures, bounded store calls, the test
//! events and small fixtures.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConformanceMetadata;
use crate::codec::Codec;
use crate::event::DomainEvent;
use crate::store::{EventFilter, EventStore, NonEmpty, PersistableEvent, StoredEvent};

/// How long a single store call may take before a rule calls it hung,
/// unless the suite sets another limit.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

tokio::task_local! {
    /// The limit the running suite set for each store call.
    pub(crate) static CALL_TIMEOUT: Duration;
}

/// The limit for one store call in the current rule.
pub(crate) fn call_timeout() -> Duration {
    CALL_TIMEOUT.try_with(|limit| *limit).unwrap_or(DEFAULT_TIMEOUT)
}

/// A stored event as the rules see it.
pub(crate) type Stored<S> =
    StoredEvent<<S as EventStore>::Id, <S as EventStore>::Position, <S as EventStore>::Metadata>;

/// A filter on a store's ids and positions.
pub(crate) type Filter<S> = EventFilter<<S as EventStore>::Id, <S as EventStore>::Position>;

/// One rule's failures, labelled with its name:
/// `conformance rule <name>: expected <what was expected>, got <what came>`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check(pub(crate) &'static str);

impl Check {
    /// Fails the rule.
    pub(crate) fn fail(self, expected: impl Display, got: impl Display) -> ! {
        panic!("conformance rule {}: expected {expected}, got {got}", self.0)
    }

    /// Fails the rule unless `got == expected`; `what` says what was
    /// compared ("the stream's version", ...).
    #[expect(
        clippy::needless_pass_by_value,
        reason = "rules pass the values they just computed; by value reads better at every call"
    )]
    pub(crate) fn same<T: PartialEq + Debug>(self, what: impl Display, expected: T, got: T) {
        if got != expected {
            self.fail(format_args!("{what}: {expected:?}"), format_args!("{got:?}"));
        }
    }

    /// Fails the rule unless `holds`; `got` describes what came instead.
    pub(crate) fn ensure(self, holds: bool, expected: impl Display, got: impl FnOnce() -> String) {
        if !holds {
            self.fail(expected, got());
        }
    }

    /// Waits for `future`, failing the rule when it takes longer than the
    /// suite's limit for one call.
    pub(crate) async fn bounded<T>(self, what: &str, future: impl Future<Output = T>) -> T {
        let limit = call_timeout();
        match tokio::time::timeout(limit, future).await {
            Ok(value) => value,
            Err(_) => self.fail(
                format_args!("{what} to finish within {limit:?}"),
                "no answer (it hung)",
            ),
        }
    }

    /// Waits for `future` and its `Ok` value, failing the rule on an error
    /// or a hang.
    pub(crate) async fn ok<T, E: Display>(self, what: &str, future: impl Future<Output = Result<T, E>>) -> T {
        match self.bounded(what, future).await {
            Ok(value) => value,
            Err(error) => self.fail(
                format_args!("{what} to succeed"),
                format_args!("the error: {error}"),
            ),
        }
    }

    /// `load_events(filters)`, which must succeed.
    pub(crate) async fn load<S: EventStore>(self, store: &S, filters: &[Filter<S>]) -> Vec<Stored<S>> {
        self.ok("load_events", store.load_events(filters)).await
    }

    /// `stream_version`, which must succeed.
    pub(crate) async fn version<S: EventStore>(
        self,
        store: &S,
        aggregate_kind: &str,
        aggregate_id: &S::Id,
    ) -> Option<S::Position> {
        self.ok(
            "stream_version",
            store.stream_version(aggregate_kind, aggregate_id),
        )
        .await
    }

    /// Appends test events (kind, number) to a stream as one unchecked batch
    /// and returns the position the store reports.
    pub(crate) async fn append<S>(
        self,
        store: &S,
        aggregate_kind: &str,
        aggregate_id: &S::Id,
        events: &[(&str, u64)],
    ) -> S::Position
    where
        S: EventStore,
        S::Metadata: ConformanceMetadata,
    {
        let batch = self.batch(store, events);
        let written = self
            .ok(
                "an unchecked append",
                store.append(aggregate_kind, aggregate_id, None, batch),
            )
            .await;
        written.last_position
    }

    /// `Noted` events numbered `numbers`, appended as one unchecked batch.
    pub(crate) async fn notes<S>(
        self,
        store: &S,
        aggregate_kind: &str,
        aggregate_id: &S::Id,
        numbers: &[u64],
    ) -> S::Position
    where
        S: EventStore,
        S::Metadata: ConformanceMetadata,
    {
        let events: Vec<(&str, u64)> = numbers.iter().map(|&n| (Noted::KIND, n)).collect();
        self.append(store, aggregate_kind, aggregate_id, &events).await
    }

    /// A batch of test events (kind, number) at schema version 1.
    pub(crate) fn batch<S>(self, store: &S, events: &[(&str, u64)]) -> NonEmpty<PersistableEvent<S::Metadata>>
    where
        S: EventStore,
        S::Metadata: ConformanceMetadata,
    {
        let batch: Vec<_> = events
            .iter()
            .map(|&(kind, n)| self.event(store, kind, n, 1))
            .collect();
        match NonEmpty::from_vec(batch) {
            Some(batch) => batch,
            None => self.fail("a test batch of at least one event", "an empty one"),
        }
    }

    /// A test event of `kind` numbered `n` (an `Opened` payload for
    /// [`Opened::KIND`], a `Noted` one for any other kind), encoded with
    /// the store's codec, at `schema_version`, with metadata `sample(n)`.
    pub(crate) fn event<S>(
        self,
        store: &S,
        kind: &str,
        n: u64,
        schema_version: u32,
    ) -> PersistableEvent<S::Metadata>
    where
        S: EventStore,
        S::Metadata: ConformanceMetadata,
    {
        let codec = store.codec();
        let data = if kind == Opened::KIND {
            codec.encode(&Opened { n })
        } else {
            codec.encode(&Noted {
                n,
                text: format!("{kind} {n}"),
            })
        };
        match data {
            Ok(data) => {
                PersistableEvent::new(kind, data, S::Metadata::sample(n)).with_schema_version(schema_version)
            }
            Err(error) => self.fail(
                "the store's codec to encode a test event",
                format_args!("{error}"),
            ),
        }
    }

    /// The number of each test event, in the order given.
    pub(crate) fn numbers<S: EventStore>(self, store: &S, events: &[Stored<S>]) -> Vec<u64> {
        self.labels(store, events).into_iter().map(|(_, n)| n).collect()
    }

    /// Each test event's kind and number, in the order given.
    pub(crate) fn labels<S: EventStore>(self, store: &S, events: &[Stored<S>]) -> Vec<(String, u64)> {
        let codec = store.codec();
        events
            .iter()
            .map(|event| {
                let n = if event.kind == Opened::KIND {
                    codec.decode::<Opened>(&event.data).map(|e| e.n)
                } else {
                    codec.decode::<Noted>(&event.data).map(|e| e.n)
                };
                match n {
                    Ok(n) => (event.kind.clone(), n),
                    Err(error) => self.fail(
                        format_args!("the data of a test event of kind {:?} to decode", event.kind),
                        format_args!("{error}"),
                    ),
                }
            })
            .collect()
    }

    /// Fails unless `filters` select exactly the test events numbered
    /// `expected`, in ascending position; `case` says which selection.
    pub(crate) async fn selects<S>(self, store: &S, case: &str, filters: &[Filter<S>], expected: &[u64])
    where
        S: EventStore,
    {
        let loaded = self.load(store, filters).await;
        self.same(
            format_args!("the events {case}"),
            expected.to_vec(),
            self.numbers(store, &loaded),
        );
        self.ascending::<S>(case, &loaded);
    }

    /// Fails unless positions strictly ascend.
    pub(crate) fn ascending<S: EventStore>(self, what: &str, events: &[Stored<S>]) {
        for pair in events.windows(2) {
            if pair[0].position >= pair[1].position {
                self.fail(
                    format_args!("{what}: positions in strictly ascending order"),
                    format_args!("{:?} then {:?}", pair[0].position, pair[1].position),
                );
            }
        }
    }
}

/// Kind and number pairs as owned labels.
pub(crate) fn labelled(events: &[(&str, u64)]) -> Vec<(String, u64)> {
    events.iter().map(|&(kind, n)| (kind.to_owned(), n)).collect()
}

/// An id of the store's type.
pub(crate) fn id<S: EventStore>(text: &str) -> S::Id
where
    S::Id: From<String>,
{
    S::Id::from(text.to_owned())
}

/// Filters on every test event kind, across streams.
pub(crate) fn everything<S: EventStore>() -> Vec<Filter<S>> {
    vec![
        EventFilter::for_event(Opened::KIND),
        EventFilter::for_event(Noted::KIND),
        EventFilter::for_event(UNLISTED),
    ]
}

/// A test event: one kind per struct, with a payload that tells them apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Opened {
    pub(crate) n: u64,
}

impl DomainEvent for Opened {
    const KIND: &'static str = "conformance.opened";
}

/// The other test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Noted {
    pub(crate) n: u64,
    pub(crate) text: String,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "conformance.noted";
}

/// A kind written with a `Noted` payload that no typed event declares: only
/// a whole-stream filter or a filter naming it finds it.
pub(crate) const UNLISTED: &str = "conformance.unlisted";

/// The aggregate kinds of the test streams.
pub(crate) const ACCOUNT: &str = "conformance-account";
/// Another aggregate kind, with the same ids as [`ACCOUNT`] streams.
pub(crate) const LEDGER: &str = "conformance-ledger";

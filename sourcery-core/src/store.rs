//! The storage contract: [`EventStore`] and the types that cross it.
//!
//! A store keeps an append-only log of events, grouped in streams (one per
//! aggregate instance, named by aggregate kind and id). Writers append
//! batches through a [`Transaction`]; readers load events with
//! [`EventFilter`]s.
//!
//! Every store keeps these invariants, and the conformance suite
//! (`sourcery_core::test::conformance`, feature `test-util`) checks them:
//!
//! 1. A committed batch is all there or not there at all.
//! 2. Per stream, events load in append order; globally, in position order.
//! 3. An optimistic commit succeeds exactly when the stream's version is the
//!    one expected; of N racing writers with the same expected version, one
//!    wins.
//! 4. Nothing committed is lost or duplicated; bytes and metadata
//!    round-trip.
//! 5. A reader that follows positions (`after(p)`) never skips an event that
//!    commits later with a lower position.
//! 6. No store keeps the character NUL (U+0000) in a text: PostgreSQL's
//!    `text` and `jsonb` cannot hold it. A batch holding it in the aggregate
//!    kind, the aggregate id's text, an event's kind or an event's metadata
//!    (any string or key of its JSON) is refused before anything is written,
//!    with [`AppendError::Invalid`] naming the field
//!    ([`InvalidBatch::Nul`]); so is an event at schema version 0
//!    ([`InvalidBatch::SchemaVersionZero`]). The check comes first: such a
//!    batch is refused as invalid whatever the stream's version. Stores run
//!    it with [`check_batch`] and [`check_metadata`] (or
//!    [`check_metadata_json`]). Event data is bytes, not text: it may hold
//!    NUL bytes. Reads that name a text with NUL (a filter,
//!    [`stream_version`](EventStore::stream_version)) find nothing and do
//!    not fail ([`EventFilter::holds_nul`]).
//!
//! A stream's *version* is the position of its last event (`None` for a
//! stream with no events).
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Optimistic;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore, inmemory};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct FundsDeposited {
//!     amount: u64,
//! }
//!
//! impl DomainEvent for FundsDeposited {
//!     const KIND: &'static str = "account.deposited";
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = inmemory::Store::<String, ()>::new();
//! let id = "ACC-001".to_string();
//!
//! // A new stream: an optimistic transaction with no expected version.
//! let mut tx = store.begin::<Optimistic>("account", id.clone(), None);
//! tx.append(FundsDeposited { amount: 100 }, ())?;
//! let written = tx.commit().await?.expect("one event was buffered");
//!
//! let events = store
//!     .load_events(&[EventFilter::for_aggregate("account.deposited", "account", id.clone())])
//!     .await?;
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].position, written.last_position);
//! let deposit: FundsDeposited = events[0].decode(store.codec())?;
//! assert_eq!(deposit, FundsDeposited { amount: 100 });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use crate::codec::Codec;
use crate::concurrency::{ConcurrencyConflict, ConcurrencyStrategy, Optimistic};
use crate::event::{DecodeError, DecodeEvent, DecodeFailure, EncodeError, EventPayload, RawEvent};

pub use crate::codec::JsonCodec;
pub use crate::non_empty::NonEmpty;
pub use check::{InvalidBatch, TextField, check_batch, check_metadata, check_metadata_json};
pub use text_id::{IdParseError, TextId};

pub mod after;
mod check;
pub mod inmemory;
mod text_id;

/// An event on its way into a store: its kind, the schema version of its
/// shape, its encoded data and its metadata. The store assigns the position.
///
/// ```
/// use sourcery_core::store::PersistableEvent;
///
/// let event = PersistableEvent::new("account.deposited", br#"{"amount":5}"#.to_vec(), ());
/// assert_eq!(event.schema_version, 1);
/// let newer = event.with_schema_version(2);
/// assert_eq!(newer.schema_version, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistableEvent<M> {
    /// The event's stored kind ([`DomainEvent::KIND`](crate::event::DomainEvent::KIND)).
    pub kind: String,
    /// The version of the event's shape the data is written in
    /// ([`DomainEvent::VERSION`](crate::event::DomainEvent::VERSION); 1 for
    /// an event that never changed shape). Stores keep it beside the data;
    /// loading upcasts older versions before decoding. Versions start at 1
    /// (`#[derive(DomainEvent)]` refuses `version = 0`); every store refuses
    /// a batch holding 0 ([`InvalidBatch::SchemaVersionZero`]), and
    /// PostgreSQL one above `i32::MAX` (a store error), before writing
    /// anything.
    pub schema_version: u32,
    /// The event encoded by the store's codec.
    pub data: Vec<u8>,
    /// The metadata recorded with the event.
    pub metadata: M,
}

impl<M> PersistableEvent<M> {
    /// An event of `kind` with `data` and `metadata`, at schema version 1.
    pub fn new(kind: impl Into<String>, data: Vec<u8>, metadata: M) -> Self {
        Self {
            kind: kind.into(),
            schema_version: 1,
            data,
            metadata,
        }
    }

    /// The same event, written in schema version `version`.
    #[must_use]
    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }
}

/// An event as a store returns it: the envelope (stream, kind, position,
/// metadata) around the encoded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent<Id, Pos, M> {
    /// The kind of the stream the event belongs to.
    pub aggregate_kind: String,
    /// The id of the stream's aggregate.
    pub aggregate_id: Id,
    /// The event's stored kind.
    pub kind: String,
    /// Where the event sits in the store's order.
    pub position: Pos,
    /// The version of the event's shape the data was written in (see
    /// [`PersistableEvent::schema_version`]).
    pub schema_version: u32,
    /// The event encoded by the store's codec.
    pub data: Vec<u8>,
    /// The metadata recorded with the event.
    pub metadata: M,
}

impl<Id: fmt::Debug + Clone, Pos: fmt::Debug + Copy, M> StoredEvent<Id, Pos, M> {
    /// Decodes the event into `E` (a domain event or an aggregate's event
    /// enum) with `codec`, upcasting it first when it was written in an
    /// older schema version.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the kind, stream and position when the kind
    /// is not one `E` knows (aliases included), the event cannot be upcast,
    /// or the bytes do not decode.
    pub fn decode<E: DecodeEvent>(&self, codec: &impl Codec) -> Result<E, DecodeError<Id, Pos>> {
        let raw = RawEvent {
            kind: &self.kind,
            schema_version: self.schema_version,
            data: &self.data,
        };
        let reason = match E::decode_with(codec, raw) {
            Ok(Some(event)) => return Ok(event),
            Ok(None) => DecodeFailure::UnknownKind {
                expected: E::decoded_kinds(),
            },
            Err(failure) => failure,
        };
        Err(self.decode_error(reason))
    }

    /// A [`DecodeError`] for this event: its kind, stream and position, and
    /// `reason`.
    pub fn decode_error(&self, reason: DecodeFailure) -> DecodeError<Id, Pos> {
        DecodeError {
            event_kind: self.kind.clone(),
            aggregate_kind: self.aggregate_kind.clone(),
            aggregate_id: self.aggregate_id.clone(),
            position: self.position,
            reason,
        }
    }
}

/// Which events to load: all events of one kind, the events of one kind
/// in one stream, or every event of one stream whatever its kind;
/// optionally only those strictly after a position.
///
/// [`EventStore::load_events`] takes a slice of filters and returns their
/// union, each event once, in ascending position.
///
/// ```
/// use sourcery_core::store::EventFilter;
///
/// let deposits = EventFilter::<String, u64>::for_event("account.deposited").after(41);
/// assert_eq!(deposits.event_kind(), Some("account.deposited"));
/// assert_eq!(deposits.after_position(), Some(41));
///
/// let one = EventFilter::<String, u64>::for_aggregate("account.deposited", "account", "ACC-1".into());
/// assert_eq!(one.aggregate(), Some(("account", &"ACC-1".to_string())));
///
/// // A whole stream: what loading an aggregate reads.
/// let stream = EventFilter::<String, u64>::for_stream("account", "ACC-1".into());
/// assert_eq!(stream.event_kind(), None);
/// assert!(stream.matches("account", &"ACC-1".into(), "account.renamed-later", &3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventFilter<Id, Pos> {
    event_kind: Option<String>,
    aggregate: Option<(String, Id)>,
    after: Option<Pos>,
}

impl<Id, Pos> EventFilter<Id, Pos> {
    /// Every event of `event_kind`, whatever its stream.
    pub fn for_event(event_kind: impl Into<String>) -> Self {
        Self {
            event_kind: Some(event_kind.into()),
            aggregate: None,
            after: None,
        }
    }

    /// The events of `event_kind` in the stream of `aggregate_kind` /
    /// `aggregate_id`.
    pub fn for_aggregate(
        event_kind: impl Into<String>,
        aggregate_kind: impl Into<String>,
        aggregate_id: Id,
    ) -> Self {
        Self {
            event_kind: Some(event_kind.into()),
            aggregate: Some((aggregate_kind.into(), aggregate_id)),
            after: None,
        }
    }

    /// Every event of the stream of `aggregate_kind` / `aggregate_id`,
    /// whatever its kind. Loading an aggregate reads its stream with it, so
    /// an event of a kind the code does not know is seen (and reported),
    /// never skipped.
    pub fn for_stream(aggregate_kind: impl Into<String>, aggregate_id: Id) -> Self {
        Self {
            event_kind: None,
            aggregate: Some((aggregate_kind.into(), aggregate_id)),
            after: None,
        }
    }

    /// Only events whose position is strictly greater than `position`.
    #[must_use]
    pub fn after(mut self, position: Pos) -> Self {
        self.after = Some(position);
        self
    }

    /// The event kind the filter selects; `None` for a whole-stream filter
    /// ([`for_stream`](Self::for_stream)), which selects every kind (and
    /// then [`aggregate`](Self::aggregate) is always `Some`).
    #[must_use]
    pub fn event_kind(&self) -> Option<&str> {
        self.event_kind.as_deref()
    }

    /// The stream the filter is restricted to, if any: aggregate kind and id.
    #[must_use]
    pub fn aggregate(&self) -> Option<(&str, &Id)> {
        self.aggregate.as_ref().map(|(kind, id)| (kind.as_str(), id))
    }

    /// The position events must be strictly after, if any.
    #[must_use]
    pub fn after_position(&self) -> Option<Pos>
    where
        Pos: Copy,
    {
        self.after
    }

    /// Whether an event with this envelope passes the filter. Handy for
    /// stores that filter in memory.
    pub fn matches(&self, aggregate_kind: &str, aggregate_id: &Id, event_kind: &str, position: &Pos) -> bool
    where
        Id: PartialEq,
        Pos: PartialOrd,
    {
        self.event_kind.as_deref().is_none_or(|kind| kind == event_kind)
            && self
                .aggregate
                .as_ref()
                .is_none_or(|(kind, id)| kind == aggregate_kind && id == aggregate_id)
            && self.after.as_ref().is_none_or(|after| position > after)
    }
}

/// A successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult<Pos> {
    /// The position of the last event written, which is the stream's new
    /// version.
    pub last_position: Pos,
}

/// Why an append wrote nothing: another writer got there first, the batch
/// holds something no store keeps, or the store failed. Retry the first; fix
/// the caller for the second; alert on the third.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError<Pos: fmt::Debug, E> {
    /// The stream was not at the expected version.
    #[error(transparent)]
    Conflict(ConcurrencyConflict<Pos>),
    /// The batch holds a text with a NUL character or an event at schema
    /// version 0, which every store refuses (invariant 6 of the
    /// [contract](self)).
    #[error(transparent)]
    Invalid(InvalidBatch),
    /// The store could not complete the append.
    #[error("the event store failed")]
    Store(#[source] E),
}

impl<Pos: fmt::Debug, E> AppendError<Pos, E> {
    /// The conflict, if that is what this is.
    pub fn as_conflict(&self) -> Option<&ConcurrencyConflict<Pos>> {
        match self {
            Self::Conflict(conflict) => Some(conflict),
            Self::Invalid(_) | Self::Store(_) => None,
        }
    }

    /// Why the batch was refused, if it was invalid.
    pub fn as_invalid(&self) -> Option<&InvalidBatch> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Conflict(_) | Self::Store(_) => None,
        }
    }

    /// The store's error, if that is what this is.
    pub fn as_store(&self) -> Option<&E> {
        match self {
            Self::Store(error) => Some(error),
            Self::Conflict(_) | Self::Invalid(_) => None,
        }
    }

    /// Whether this is a concurrency conflict (worth a reload and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

impl<Pos: fmt::Debug, E> From<ConcurrencyConflict<Pos>> for AppendError<Pos, E> {
    fn from(conflict: ConcurrencyConflict<Pos>) -> Self {
        Self::Conflict(conflict)
    }
}

impl<Pos: fmt::Debug, E> From<InvalidBatch> for AppendError<Pos, E> {
    fn from(invalid: InvalidBatch) -> Self {
        Self::Invalid(invalid)
    }
}

/// What an append returns: the last position written, or why nothing was.
pub type AppendOutcome<Pos, Err> = Result<AppendResult<Pos>, AppendError<Pos, Err>>;

// ANCHOR: event_store_trait
/// A durable, append-only log of events grouped in streams.
///
/// Implement it to keep events in your own database: the user guide's
/// custom stores chapter (`docs/src/advanced/custom-stores.md`) walks
/// through it, and the conformance suite (`sourcery_core::test::conformance`,
/// feature `test-util`) checks an implementation against the invariants
/// listed in the [module docs](self).
pub trait EventStore: Send + Sync + Sized {
    /// The aggregate id type of the streams.
    type Id: Clone + fmt::Debug + Send + Sync + 'static;
    /// Where an event sits in the store's order. `()` means no ordering.
    type Position: Copy + Ord + fmt::Debug + Send + Sync + 'static;
    /// What goes wrong in the store itself.
    type Error: std::error::Error + Send + Sync + 'static;
    /// How events are turned into bytes.
    type Codec: Codec;
    /// What is recorded beside each event.
    type Metadata: Send + Sync + 'static;

    /// The codec transactions use to encode events and readers use to decode
    /// them.
    fn codec(&self) -> &Self::Codec;

    /// The stream's version: the position of its last event, or `None` when
    /// it has no events (always for an aggregate kind or id holding a NUL
    /// character, which no store writes).
    fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
    ) -> impl Future<Output = Result<Option<Self::Position>, Self::Error>> + Send + 'a;

    /// Starts a transaction on one stream. `C` decides whether the commit
    /// checks `expected_version` ([`Optimistic`]) or not
    /// ([`Unchecked`](crate::concurrency::Unchecked)).
    fn begin<C: ConcurrencyStrategy>(
        &self,
        aggregate_kind: &str,
        aggregate_id: Self::Id,
        expected_version: Option<Self::Position>,
    ) -> Transaction<'_, Self, C> {
        Transaction::new(self, aggregate_kind.to_string(), aggregate_id, expected_version)
    }

    /// Appends `events` to the stream atomically. With `Some(version)`, only
    /// if the stream is at that version (otherwise a
    /// [`ConcurrencyConflict`] and nothing written); with `None`, whatever
    /// the stream holds.
    ///
    /// A batch with a NUL character in the aggregate kind, the aggregate
    /// id's text, an event's kind or metadata, or an event at schema version
    /// 0, is refused first, whatever the stream's version:
    /// [`AppendError::Invalid`] naming the field, and nothing written.
    /// Implementations call [`check_batch`] and [`check_metadata`] (or
    /// [`check_metadata_json`] on metadata they encoded as JSON) before they
    /// write; the conformance suite's `text` rules check it.
    fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        expected_version: Option<Self::Position>,
        events: NonEmpty<PersistableEvent<Self::Metadata>>,
    ) -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a;

    /// Appends `events` atomically only if the stream has no events yet;
    /// otherwise a [`ConcurrencyConflict`] and nothing written. A batch
    /// that no store keeps is refused first, as by [`append`](Self::append).
    fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        events: NonEmpty<PersistableEvent<Self::Metadata>>,
    ) -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a;

    /// The union of the events every filter selects, each event once, in
    /// ascending position. No filters select nothing, and neither does a
    /// filter naming a text with a NUL character
    /// ([`EventFilter::holds_nul`]).
    #[expect(
        clippy::type_complexity,
        reason = "the store authors' guide fixes this signature"
    )]
    fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<Self::Id, Self::Position>],
    ) -> impl Future<Output = Result<Vec<StoredEvent<Self::Id, Self::Position, Self::Metadata>>, Self::Error>>
    + Send
    + 'a;

    /// Tells a stored event that does not decode (metadata of another
    /// shape than the store's metadata type) apart from a store failure:
    /// `Ok` with the [`DecodeError`] naming the event when `error` is one,
    /// the error back otherwise. The repository reports the first as
    /// `LoadError::Decode`, the second as `LoadError::Store`. By default
    /// every error is a store failure.
    ///
    /// # Errors
    ///
    /// `error` itself when it is not about a stored event's content.
    fn into_decode_error(error: Self::Error) -> Result<DecodeError<Self::Id, Self::Position>, Self::Error> {
        Err(error)
    }
}
// ANCHOR_END: event_store_trait

/// A store whose positions form one total order across all streams that
/// readers can follow: once a reader has seen position `p`, no event with a
/// position at or below `p` becomes visible later.
///
/// Multi-stream projections and subscriptions require it. Implement it only
/// when that holds under concurrent writers.
pub trait GloballyOrdered: EventStore {}

/// A batch of events for one stream, written atomically by
/// [`commit`](Self::commit). Dropping it uncommitted writes nothing.
///
/// `C` is the [concurrency strategy](crate::concurrency).
#[must_use = "a transaction writes nothing until it is committed"]
pub struct Transaction<'a, S: EventStore, C: ConcurrencyStrategy = Optimistic> {
    store: &'a S,
    aggregate_kind: String,
    aggregate_id: S::Id,
    expected_version: Option<S::Position>,
    events: Vec<PersistableEvent<S::Metadata>>,
    strategy: PhantomData<C>,
}

impl<'a, S: EventStore, C: ConcurrencyStrategy> Transaction<'a, S, C> {
    /// A transaction on the stream `aggregate_kind` / `aggregate_id` that
    /// read the stream at `expected_version`. Stores call it from
    /// [`EventStore::begin`].
    pub fn new(
        store: &'a S,
        aggregate_kind: String,
        aggregate_id: S::Id,
        expected_version: Option<S::Position>,
    ) -> Self {
        Self {
            store,
            aggregate_kind,
            aggregate_id,
            expected_version,
            events: Vec::new(),
            strategy: PhantomData,
        }
    }

    /// Encodes `event` (a domain event or an aggregate's event enum) with the
    /// store's codec and buffers it with `metadata`.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] when the codec cannot encode the event; nothing is
    /// buffered then.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "events are handed over like values (`tx.append(event, metadata)`), as the store contract reads"
    )]
    pub fn append<E: EventPayload>(&mut self, event: E, metadata: S::Metadata) -> Result<(), EncodeError> {
        let data = event
            .encode_with(self.store.codec())
            .map_err(|error| EncodeError {
                event_kind: event.kind(),
                source: Box::new(error),
            })?;
        self.events.push(PersistableEvent {
            kind: event.kind().to_owned(),
            schema_version: event.schema_version(),
            data,
            metadata,
        });
        Ok(())
    }

    /// Buffers an event that is already encoded.
    pub fn append_persistable(&mut self, event: PersistableEvent<S::Metadata>) {
        self.events.push(event);
    }

    /// The number of buffered events.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The stream's aggregate kind.
    #[must_use]
    pub fn aggregate_kind(&self) -> &str {
        &self.aggregate_kind
    }

    /// The stream's aggregate id.
    #[must_use]
    pub fn aggregate_id(&self) -> &S::Id {
        &self.aggregate_id
    }

    /// The version the transaction expects the stream at.
    #[must_use]
    pub fn expected_version(&self) -> Option<S::Position> {
        self.expected_version
    }

    /// Writes the buffered events as one atomic batch.
    ///
    /// Returns `Ok(None)` when nothing was buffered (and writes nothing),
    /// otherwise the position of the last event written.
    ///
    /// # Errors
    ///
    /// [`AppendError::Conflict`] when the strategy is [`Optimistic`] and the
    /// stream moved since `expected_version` (with no expected version: the
    /// stream is not new); [`AppendError::Invalid`] when the batch holds a
    /// NUL character in a text (naming the field) or an event at schema
    /// version 0; [`AppendError::Store`] when the store failed. Nothing is
    /// written in any case (the store's contract).
    pub async fn commit(
        self,
    ) -> Result<Option<AppendResult<S::Position>>, AppendError<S::Position, S::Error>> {
        let Some(events) = NonEmpty::from_vec(self.events) else {
            return Ok(None);
        };
        let kind = self.aggregate_kind.as_str();
        let id = &self.aggregate_id;
        let outcome = match (C::CHECKS_VERSION, self.expected_version) {
            (false, _) => self.store.append(kind, id, None, events).await,
            (true, Some(version)) => self.store.append(kind, id, Some(version), events).await,
            (true, None) => self.store.append_expecting_new(kind, id, events).await,
        };
        outcome.map(Some)
    }
}

impl<S: EventStore, C: ConcurrencyStrategy> fmt::Debug for Transaction<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("aggregate_kind", &self.aggregate_kind)
            .field("aggregate_id", &self.aggregate_id)
            .field("expected_version", &self.expected_version)
            .field("checks_version", &C::CHECKS_VERSION)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

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
//! 7. Every event has an id ([`EventId`]) chosen by the client, unique in
//!    the store; a batch holding one id twice is refused
//!    ([`InvalidBatch::DuplicateId`]). A batch whose ids are all stored
//!    already, in this stream and in the batch's order, is a *replay*: it
//!    writes nothing and returns the first append's outcome (the position of
//!    its last event, with [`AppendResult::replayed`] set), whatever the
//!    expected version says now, so a retry after a lost acknowledgement is
//!    always safe. A batch that reuses some stored ids but not all, or ids
//!    stored in another stream or another order, is refused with
//!    [`AppendError::IdReused`], and nothing of it is written. The id check
//!    comes before the version check. Stores decide with [`replay_of`].
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
use crate::concurrency::{ConcurrencyConflict, ConcurrencyStrategy, ExpectedVersion, Optimistic};
use crate::event::{DecodeError, DecodeEvent, DecodeFailure, EncodeError, EventPayload, RawEvent};

pub use crate::codec::JsonCodec;
pub use crate::id::EventId;
pub use crate::non_empty::NonEmpty;
pub use check::{InvalidBatch, TextField, check_batch, check_metadata, check_metadata_json};
pub use replay::{IdReuse, IdReused, StoredId, replay_of};
pub use text_id::{IdParseError, TextId};

pub mod after;
mod check;
pub mod inmemory;
mod replay;
mod text_id;

/// An event on its way into a store: its id, its kind, the schema version
/// of its shape, its encoded data and its metadata. The store assigns the
/// position.
///
/// ```
/// use sourcery_core::store::{EventId, PersistableEvent};
///
/// let event = PersistableEvent::new("account.deposited", br#"{"amount":5}"#.to_vec(), ());
/// assert_eq!(event.schema_version, 1);
/// let newer = event.with_schema_version(2);
/// assert_eq!(newer.schema_version, 2);
///
/// // A retry sends the same ids as the attempt it repeats.
/// let id = EventId::new();
/// let retried = PersistableEvent::new("account.deposited", Vec::new(), ()).with_id(id);
/// assert_eq!(retried.id, id);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistableEvent<M> {
    /// The event's unique id, chosen before the append (a fresh UUID v7 by
    /// default). Sending the same ids again is how a retry stays safe
    /// (invariant 7 of the [contract](self)).
    pub id: EventId,
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
    /// An event of `kind` with `data` and `metadata`, at schema version 1,
    /// with a fresh id ([`EventId::new`]).
    pub fn new(kind: impl Into<String>, data: Vec<u8>, metadata: M) -> Self {
        Self {
            id: EventId::new(),
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

    /// The same event, with id `id` (the id of an attempt being retried, or
    /// one derived from a command id).
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }
}

/// An event as a store returns it: the envelope (id, stream, kind,
/// position, metadata) around the encoded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent<Id, Pos, M> {
    /// The event's id, as it was appended.
    pub id: EventId,
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

/// A successful append: the batch is stored, by this append or (a replay)
/// by an earlier one with the same event ids.
///
/// ```
/// use sourcery_core::store::AppendResult;
///
/// let first = AppendResult::new(7_u64);
/// assert!(!first.replayed);
/// let retry = AppendResult::replay(7_u64);
/// assert_eq!(retry.last_position, first.last_position);
/// assert!(retry.replayed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendResult<Pos> {
    /// The position of the batch's last event. After a fresh write it is
    /// the stream's new version; after a replay, the position the first
    /// append returned (the stream may have moved on since).
    pub last_position: Pos,
    /// Whether the batch was stored already (every event id was), so this
    /// append wrote nothing (invariant 7 of the [contract](self)).
    pub replayed: bool,
}

impl<Pos> AppendResult<Pos> {
    /// A batch written now, ending at `last_position`.
    pub fn new(last_position: Pos) -> Self {
        Self {
            last_position,
            replayed: false,
        }
    }

    /// A replay of a batch stored earlier, ending at `last_position`.
    pub fn replay(last_position: Pos) -> Self {
        Self {
            last_position,
            replayed: true,
        }
    }
}

/// Why an append wrote nothing: another writer got there first, the batch
/// holds something no store keeps or reuses stored ids, or the store
/// failed. Retry the first; fix the caller for the second and third; for
/// the last, alert, or retry with the same event ids (a replay is safe).
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
    /// Some event ids of the batch are stored already, but the batch is not
    /// a replay of stored events (invariant 7 of the [contract](self)).
    #[error(transparent)]
    IdReused(IdReused),
    /// The store could not complete the append. Whether the batch was
    /// written may be unknown (a connection lost during the commit): retry
    /// with the same event ids to find out.
    #[error("the event store failed")]
    Store(#[source] E),
}

impl<Pos: fmt::Debug, E> AppendError<Pos, E> {
    /// The conflict, if that is what this is.
    pub fn as_conflict(&self) -> Option<&ConcurrencyConflict<Pos>> {
        match self {
            Self::Conflict(conflict) => Some(conflict),
            Self::Invalid(_) | Self::IdReused(_) | Self::Store(_) => None,
        }
    }

    /// Why the batch was refused, if it was invalid.
    pub fn as_invalid(&self) -> Option<&InvalidBatch> {
        match self {
            Self::Invalid(invalid) => Some(invalid),
            Self::Conflict(_) | Self::IdReused(_) | Self::Store(_) => None,
        }
    }

    /// The store's error, if that is what this is.
    pub fn as_store(&self) -> Option<&E> {
        match self {
            Self::Store(error) => Some(error),
            Self::Conflict(_) | Self::Invalid(_) | Self::IdReused(_) => None,
        }
    }

    /// The id reuse, if that is what this is.
    pub fn as_id_reused(&self) -> Option<&IdReused> {
        match self {
            Self::IdReused(reused) => Some(reused),
            Self::Conflict(_) | Self::Invalid(_) | Self::Store(_) => None,
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

impl<Pos: fmt::Debug, E> From<IdReused> for AppendError<Pos, E> {
    fn from(reused: IdReused) -> Self {
        Self::IdReused(reused)
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
    ///
    /// A batch whose event ids are all stored in this stream, in this order,
    /// is a replay: nothing is written and the result is the first append's
    /// ([`AppendResult::replay`]), whatever `expected_version` says. A batch
    /// reusing stored ids otherwise is refused with
    /// [`AppendError::IdReused`] ([`replay_of`] decides; the `ids` rules of
    /// the conformance suite check it).
    fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        expected_version: Option<Self::Position>,
        events: NonEmpty<PersistableEvent<Self::Metadata>>,
    ) -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a;

    /// Appends `events` atomically only if the stream has no events yet;
    /// otherwise a [`ConcurrencyConflict`] and nothing written. A batch
    /// that no store keeps is refused first, and a replay recognised, as by
    /// [`append`](Self::append).
    fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        events: NonEmpty<PersistableEvent<Self::Metadata>>,
    ) -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a;

    /// Appends `events` atomically only if the stream has events, at any
    /// version ([`ExpectedVersion::StreamExists`]); otherwise a
    /// [`ConcurrencyConflict`] and nothing written. A batch that no store
    /// keeps is refused first, and a replay recognised, as by
    /// [`append`](Self::append).
    ///
    /// The default reads the stream's version and, when it has one, appends
    /// without a version check: streams are never deleted, so a stream
    /// found with events still has them when the append commits. Before it
    /// reads, it checks what it can without the store's types (the aggregate
    /// kind and the events' kinds, schema versions and ids); on a stream
    /// with no events, a NUL character in the aggregate id's text or the
    /// metadata is reported as the conflict. Override it to check
    /// everything first and do both in one round trip, as the stores of
    /// this project do.
    fn append_expecting_existing<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        events: NonEmpty<PersistableEvent<Self::Metadata>>,
    ) -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a {
        async move {
            if aggregate_kind.contains('\0') {
                return Err(InvalidBatch::Nul {
                    field: TextField::AggregateKind,
                }
                .into());
            }
            check::check_events(&events)?;
            let version = self
                .stream_version(aggregate_kind, aggregate_id)
                .await
                .map_err(AppendError::Store)?;
            if version.is_none() {
                return Err(ConcurrencyConflict::new(ExpectedVersion::StreamExists, None).into());
            }
            self.append(aggregate_kind, aggregate_id, None, events).await
        }
    }

    /// For each of `ids`, the position of the event of the stream
    /// `aggregate_kind` / `aggregate_id` with that id, or `None` when the
    /// stream holds none. The repository reads it to recognise a command
    /// that ran before (the event ids derived from its command id).
    ///
    /// The default loads the whole stream and looks; stores with an index
    /// on event ids override it (the `ids` rules of the conformance suite
    /// check both).
    fn event_positions<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Self::Id,
        ids: &'a [EventId],
    ) -> impl Future<Output = Result<Vec<Option<Self::Position>>, Self::Error>> + Send + 'a {
        async move {
            let stream = [EventFilter::for_stream(aggregate_kind, aggregate_id.clone())];
            let events = self.load_events(&stream).await?;
            Ok(ids
                .iter()
                .map(|id| {
                    events
                        .iter()
                        .find(|event| event.id == *id)
                        .map(|event| event.position)
                })
                .collect())
        }
    }

    /// Starts a transaction on one stream that commits only if the stream's
    /// version meets `expected`, whatever the transaction's strategy type
    /// says: [`ExpectedVersion::Any`], [`NoStream`](ExpectedVersion::NoStream),
    /// [`StreamExists`](ExpectedVersion::StreamExists) or
    /// [`Exact`](ExpectedVersion::Exact).
    fn begin_expecting(
        &self,
        aggregate_kind: &str,
        aggregate_id: Self::Id,
        expected: ExpectedVersion<Self::Position>,
    ) -> Transaction<'_, Self> {
        Transaction::new(self, aggregate_kind.to_string(), aggregate_id, None).expecting(expected)
    }

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
    expected: ExpectedVersion<S::Position>,
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
            expected: ExpectedVersion::of::<C>(expected_version),
            events: Vec::new(),
            strategy: PhantomData,
        }
    }

    /// The same transaction, committing only if the stream's version meets
    /// `expected` (instead of what the strategy and the expected version
    /// given to [`new`](Self::new) say).
    pub fn expecting(mut self, expected: ExpectedVersion<S::Position>) -> Self {
        self.expected = expected;
        self
    }

    /// Encodes `event` (a domain event or an aggregate's event enum) with the
    /// store's codec and buffers it with `metadata` and a fresh event id
    /// ([`EventId::new`]).
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] when the codec cannot encode the event; nothing is
    /// buffered then.
    pub fn append<E: EventPayload>(&mut self, event: E, metadata: S::Metadata) -> Result<(), EncodeError> {
        self.append_with_id(EventId::new(), event, metadata)
    }

    /// [`append`](Self::append) with the event id `id`: the id of the same
    /// event in an attempt being retried, or one derived from a command id
    /// ([`EventId::derived`]).
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] when the codec cannot encode the event; nothing is
    /// buffered then.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "events are handed over like values (`tx.append(event, metadata)`), as the store contract reads"
    )]
    pub fn append_with_id<E: EventPayload>(
        &mut self,
        id: EventId,
        event: E,
        metadata: S::Metadata,
    ) -> Result<(), EncodeError> {
        let data = event
            .encode_with(self.store.codec())
            .map_err(|error| EncodeError {
                event_kind: event.kind(),
                source: Box::new(error),
            })?;
        self.events.push(PersistableEvent {
            id,
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

    /// The version the transaction expects the stream at exactly, if it
    /// expects one ([`ExpectedVersion::Exact`]).
    #[must_use]
    pub fn expected_version(&self) -> Option<S::Position> {
        match self.expected {
            ExpectedVersion::Exact(version) => Some(version),
            ExpectedVersion::Any | ExpectedVersion::NoStream | ExpectedVersion::StreamExists => None,
        }
    }

    /// What the commit requires of the stream's version.
    #[must_use]
    pub fn expected(&self) -> ExpectedVersion<S::Position> {
        self.expected
    }

    /// The ids of the buffered events, in order: what a retry after an
    /// unknown outcome must send again.
    #[must_use]
    pub fn event_ids(&self) -> Vec<EventId> {
        self.events.iter().map(|event| event.id).collect()
    }

    /// Writes the buffered events as one atomic batch.
    ///
    /// Returns `Ok(None)` when nothing was buffered (and writes nothing),
    /// otherwise the position of the last event written (or, for a replay
    /// of a batch with the same event ids, the first append's, with
    /// [`AppendResult::replayed`] set).
    ///
    /// # Errors
    ///
    /// [`AppendError::Conflict`] when the stream's version does not meet
    /// [`expected`](Self::expected) (with an [`Optimistic`] strategy: the
    /// stream moved since `expected_version`, or with no expected version
    /// the stream is not new); [`AppendError::Invalid`] when the batch holds
    /// a NUL character in a text (naming the field), an event at schema
    /// version 0 or one event id twice; [`AppendError::IdReused`] when it
    /// reuses stored event ids without being a replay;
    /// [`AppendError::Store`] when the store failed. Nothing is written in
    /// any case (the store's contract).
    pub async fn commit(
        self,
    ) -> Result<Option<AppendResult<S::Position>>, AppendError<S::Position, S::Error>> {
        let Some(events) = NonEmpty::from_vec(self.events) else {
            return Ok(None);
        };
        let kind = self.aggregate_kind.as_str();
        let id = &self.aggregate_id;
        let outcome = match self.expected {
            ExpectedVersion::Any => self.store.append(kind, id, None, events).await,
            ExpectedVersion::Exact(version) => self.store.append(kind, id, Some(version), events).await,
            ExpectedVersion::NoStream => self.store.append_expecting_new(kind, id, events).await,
            ExpectedVersion::StreamExists => self.store.append_expecting_existing(kind, id, events).await,
        };
        outcome.map(Some)
    }
}

impl<S: EventStore, C: ConcurrencyStrategy> fmt::Debug for Transaction<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("aggregate_kind", &self.aggregate_kind)
            .field("aggregate_id", &self.aggregate_id)
            .field("expected", &self.expected)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

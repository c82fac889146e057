//! Domain events and the glue that stores and loads them.
//!
//! A domain event is a plain serde struct named in the past tense, with a
//! stable stored name:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::event::DomainEvent;
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct FundsDeposited {
//!     amount: u64,
//! }
//!
//! impl DomainEvent for FundsDeposited {
//!     const KIND: &'static str = "account.deposited";
//! }
//! ```
//!
//! Events carry no ids or timestamps: the store's envelope
//! ([`StoredEvent`](crate::store::StoredEvent)) holds the aggregate id, the
//! position and the metadata.
//!
//! [`EventPayload`] and [`DecodeEvent`] are the glue between typed events and
//! the bytes a store keeps. Every [`DomainEvent`] implements both; an
//! aggregate's event enum implements them by dispatching on its variants.

use std::any::Any;
use std::error::Error as StdError;

use serde::{Serialize, de::DeserializeOwned};

use crate::codec::Codec;

/// A fact that happened in the domain, with a stable stored name.
///
/// `KIND` is what the store records; renaming the Rust type is free. A
/// changed `KIND` must keep the old name in [`ALIASES`](Self::ALIASES), or
/// the events already stored under it no longer load (loading them is an
/// error, never a skip). Namespacing kinds (`"account.deposited"`) keeps
/// them unique across aggregates.
///
/// When the event's shape changes in a way its serde encoding does not
/// absorb, raise [`VERSION`](Self::VERSION) and write the step from each
/// older version in [`upcast`](Self::upcast): loading turns a payload stored
/// at version 1 into version 2, 3, ... on the codec's value (for
/// [`JsonCodec`](crate::codec::JsonCodec): a `serde_json::Value`) before
/// decoding it.
///
/// `#[derive(DomainEvent)]` writes the impl from
/// `#[event(kind = "..", aliases(".."), version = N, upcast = path)]`.
///
/// An event type may be used by several aggregates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    note = "derive it: `#[derive(DomainEvent)]` with `#[event(kind = \"...\")]`, or implement `DomainEvent` with a stable `KIND`"
)]
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name the event is stored under.
    const KIND: &'static str;

    /// Names the event was stored under before (a renamed `KIND`). Loads
    /// select and decode them as this event; new events are written under
    /// [`KIND`](Self::KIND). None by default.
    const ALIASES: &'static [&'static str] = &[];

    /// The version of the event's shape, stored with every event written.
    /// 1 by default; raise it when the shape changes and add the step to
    /// [`upcast`](Self::upcast).
    const VERSION: u32 = 1;

    /// Turns a payload stored at schema version `step.from_version()` into
    /// the next version, in place. Loading calls it once per version
    /// between the stored one and [`VERSION`](Self::VERSION), in order.
    ///
    /// The default knows no step: an event stored at an older version than
    /// `VERSION` then fails to load with
    /// [`DecodeFailure::Upcast`].
    ///
    /// # Errors
    ///
    /// An [`UpcastError`] when the step is unknown or the stored value does
    /// not have the shape the step expects.
    ///
    /// # Example
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use sourcery_core::event::{DomainEvent, UpcastError, UpcastStep};
    ///
    /// /// v1: `{"amount": 5}` (whole euros); v2: `{"cents": 500}`.
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// struct FundsDeposited { cents: u64 }
    ///
    /// impl DomainEvent for FundsDeposited {
    ///     const KIND: &'static str = "account.deposited";
    ///     const VERSION: u32 = 2;
    ///
    ///     fn upcast(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
    ///         match step.from_version() {
    ///             1 => {
    ///                 let value = step.json_mut()?;
    ///                 let amount = value["amount"].as_u64().ok_or_else(|| UpcastError::invalid("no amount"))?;
    ///                 *value = serde_json::json!({ "cents": amount * 100 });
    ///                 Ok(())
    ///             }
    ///             from => Err(UpcastError::Missing { from }),
    ///         }
    ///     }
    /// }
    ///
    /// let v2 = sourcery_core::event::upcast::<FundsDeposited, _>(
    ///     "account.deposited",
    ///     1,
    ///     serde_json::json!({ "amount": 5 }),
    /// )?;
    /// assert_eq!(v2, serde_json::json!({ "cents": 500 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn upcast(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
        Err(UpcastError::Missing {
            from: step.from_version(),
        })
    }
}

/// One step of an upcast: a stored payload, decoded to the codec's value
/// type, at schema version [`from_version`](Self::from_version), to be
/// turned into the next version in place.
pub struct UpcastStep<'a> {
    stored_kind: &'a str,
    from_version: u32,
    value: &'a mut (dyn Any + Send),
}

impl<'a> UpcastStep<'a> {
    /// A step on `value` (the codec's value type), stored under
    /// `stored_kind` at `from_version`.
    pub fn new(stored_kind: &'a str, from_version: u32, value: &'a mut (dyn Any + Send)) -> Self {
        Self {
            stored_kind,
            from_version,
            value,
        }
    }

    /// The kind the event was stored under: its current kind or one of its
    /// aliases (an alias can tell an older shape apart).
    #[must_use]
    pub fn stored_kind(&self) -> &str {
        self.stored_kind
    }

    /// The schema version the value is at; the step turns it into
    /// `from_version() + 1`.
    #[must_use]
    pub fn from_version(&self) -> u32 {
        self.from_version
    }

    /// The value, as the codec's value type `V`.
    ///
    /// # Errors
    ///
    /// [`UpcastError::WrongValueType`] when the store's codec has another
    /// value type.
    pub fn value_mut<V: Any>(&mut self) -> Result<&mut V, UpcastError> {
        self.value.downcast_mut::<V>().ok_or(UpcastError::WrongValueType {
            expected: std::any::type_name::<V>(),
        })
    }

    /// The value as JSON, for stores with [`JsonCodec`](crate::codec::JsonCodec).
    ///
    /// # Errors
    ///
    /// [`UpcastError::WrongValueType`] when the store's codec is not JSON.
    pub fn json_mut(&mut self) -> Result<&mut serde_json::Value, UpcastError> {
        self.value_mut::<serde_json::Value>()
    }
}

impl std::fmt::Debug for UpcastStep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpcastStep")
            .field("stored_kind", &self.stored_kind)
            .field("from_version", &self.from_version)
            .finish_non_exhaustive()
    }
}

/// Why an upcast step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The event declares no step from this version.
    #[error("no upcaster from schema version {from}")]
    Missing {
        /// The version the value is at.
        from: u32,
    },
    /// The upcaster asked for another value type than the codec's.
    #[error("the upcaster expects the codec's value to be a `{expected}`")]
    WrongValueType {
        /// The type the upcaster asked for.
        expected: &'static str,
    },
    /// The stored value does not have the shape the step expects.
    #[error("the stored value cannot be upcast: {message}")]
    Invalid {
        /// What is wrong with it.
        message: String,
    },
}

impl UpcastError {
    /// The stored value does not have the shape the step expects.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }
}

/// Upcasts `value`, stored under `stored_kind` at `from_version`, to
/// [`E::VERSION`](DomainEvent::VERSION) with `E`'s steps. Loading does this
/// before decoding; it is public so that upcasters can be tested alone.
///
/// # Errors
///
/// [`DecodeFailure::UnsupportedVersion`] when `from_version` is newer than
/// `E::VERSION`, [`DecodeFailure::Upcast`] naming the step that failed.
pub fn upcast<E: DomainEvent, V: Any + Send>(
    stored_kind: &str,
    from_version: u32,
    mut value: V,
) -> Result<V, DecodeFailure> {
    if from_version > E::VERSION {
        return Err(DecodeFailure::UnsupportedVersion {
            stored: from_version,
            current: E::VERSION,
        });
    }
    for version in from_version..E::VERSION {
        let mut step = UpcastStep::new(stored_kind, version, &mut value);
        E::upcast(&mut step).map_err(|source| DecodeFailure::Upcast {
            from: version,
            source,
        })?;
    }
    Ok(value)
}

/// A value that a [`Transaction`](crate::store::Transaction) can append: a
/// single [`DomainEvent`] or an aggregate's event enum.
///
/// Implemented for every `DomainEvent`; `#[derive(Aggregate)]` implements it
/// for the event enum it writes.
pub trait EventPayload {
    /// The stored kind of this value.
    fn kind(&self) -> &'static str;

    /// The schema version of this value's shape
    /// ([`DomainEvent::VERSION`]).
    fn schema_version(&self) -> u32;

    /// Encodes the event's data (not its kind) with `codec`.
    ///
    /// # Errors
    ///
    /// When the codec cannot encode the event.
    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error>;
}

impl<E: DomainEvent> EventPayload for E {
    fn kind(&self) -> &'static str {
        E::KIND
    }

    fn schema_version(&self) -> u32 {
        E::VERSION
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        codec.encode(self)
    }
}

/// An encoded event as a store keeps it: its stored kind, the schema
/// version of its shape and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// The kind it was stored under.
    pub kind: &'a str,
    /// The schema version it was written in.
    pub schema_version: u32,
    /// The bytes the codec wrote.
    pub data: &'a [u8],
}

/// A type that can be rebuilt from a stored kind, schema version and bytes:
/// a single [`DomainEvent`] or an aggregate's event enum.
pub trait DecodeEvent: Sized {
    /// The kinds this type is written under (one per event). Loading code
    /// uses them, with [`alias_kinds`](Self::alias_kinds), to build filters.
    fn event_kinds() -> &'static [&'static str];

    /// The older kinds this type also decodes ([`DomainEvent::ALIASES`]).
    /// None by default.
    #[must_use]
    fn alias_kinds() -> &'static [&'static str] {
        &[]
    }

    /// Every kind this type decodes: [`event_kinds`](Self::event_kinds)
    /// then [`alias_kinds`](Self::alias_kinds).
    #[must_use]
    fn decoded_kinds() -> Vec<&'static str> {
        Self::event_kinds()
            .iter()
            .chain(Self::alias_kinds())
            .copied()
            .collect()
    }

    /// Decodes `event`, upcasting it first when it was written in an older
    /// schema version.
    ///
    /// Returns `Ok(None)` when its kind is none of
    /// [`decoded_kinds`](Self::decoded_kinds).
    ///
    /// # Errors
    ///
    /// When the kind is known but the event cannot be upcast or its bytes do
    /// not decode.
    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure>;
}

impl<E: DomainEvent> DecodeEvent for E {
    fn event_kinds() -> &'static [&'static str] {
        const { &[E::KIND] }
    }

    fn alias_kinds() -> &'static [&'static str] {
        E::ALIASES
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if event.kind != E::KIND && !E::ALIASES.contains(&event.kind) {
            return Ok(None);
        }
        let payload = |error: C::Error| DecodeFailure::Payload(Box::new(error));
        if event.schema_version == E::VERSION {
            return codec.decode(event.data).map(Some).map_err(payload);
        }
        if event.schema_version > E::VERSION {
            return Err(DecodeFailure::UnsupportedVersion {
                stored: event.schema_version,
                current: E::VERSION,
            });
        }
        let value = codec.decode_value(event.data).map_err(payload)?;
        let value = upcast::<E, C::Value>(event.kind, event.schema_version, value)?;
        codec.decode_from_value(value).map(Some).map_err(payload)
    }
}

/// An event could not be encoded before it was buffered in a transaction.
///
/// Nothing was buffered and nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode event `{event_kind}`")]
pub struct EncodeError {
    /// The kind of the event that failed to encode.
    pub event_kind: &'static str,
    /// What the codec reported.
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

/// A stored event could not be turned back into a typed event.
///
/// It names the event kind, the stream (aggregate kind and id, typed as the
/// store's `Id`) and the position (the store's `Position`), so callers can
/// match on them and the offending row can be found. The event stays in the
/// store untouched.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode stored event `{event_kind}` of stream `{aggregate_kind}` {aggregate_id:?} at position {position:?}"
)]
pub struct DecodeError<Id: std::fmt::Debug, Pos: std::fmt::Debug> {
    /// The stored kind of the event.
    pub event_kind: String,
    /// The kind of the stream it belongs to.
    pub aggregate_kind: String,
    /// The stream's aggregate id.
    pub aggregate_id: Id,
    /// The event's position.
    pub position: Pos,
    /// Why it failed.
    #[source]
    pub reason: DecodeFailure,
}

/// Why a stored event did not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// The kind is not one the target type knows (an event from a newer
    /// version of the code, or a renamed kind without an alias). Declare
    /// the old name in [`DomainEvent::ALIASES`], or retire the kind on the
    /// aggregate (`#[aggregate(retired(".."))]`) if it is meant to be
    /// ignored.
    #[error("the event kind is not one of {expected:?}")]
    UnknownKind {
        /// The kinds the target type decodes (aliases included).
        expected: Vec<&'static str>,
    },
    /// The event was written in a schema version newer than the code's (by
    /// a newer release).
    #[error("the event was written in schema version {stored}, newer than this code's {current}")]
    UnsupportedVersion {
        /// The version stored with the event.
        stored: u32,
        /// The event type's [`DomainEvent::VERSION`].
        current: u32,
    },
    /// An upcast step failed.
    #[error("cannot upcast the event from schema version {from}")]
    Upcast {
        /// The version the failing step started from.
        from: u32,
        /// Why it failed.
        #[source]
        source: UpcastError,
    },
    /// The kind is known but the bytes do not decode (a changed event shape,
    /// corrupt data).
    #[error("the payload does not decode")]
    Payload(#[source] Box<dyn StdError + Send + Sync>),
    /// The event's metadata does not decode.
    #[error("the metadata does not decode")]
    Metadata(#[source] Box<dyn StdError + Send + Sync>),
}

/// Support for `#[derive(Aggregate)]`: the compile-time check that no two
/// events of an aggregate share a stored kind. Not public API.
#[doc(hidden)]
pub mod __private {
    /// A message built at compile time (const code cannot format).
    #[derive(Debug, Clone, Copy)]
    pub struct Message {
        bytes: [u8; 1024],
        len: usize,
    }

    impl Message {
        const fn new() -> Self {
            Self {
                bytes: [0; 1024],
                len: 0,
            }
        }

        const fn push(mut self, text: &str) -> Self {
            let text = text.as_bytes();
            let mut i = 0;
            // Cut at a character boundary if it does not fit.
            while i < text.len() && self.len < self.bytes.len() - 4 {
                self.bytes[self.len] = text[i];
                self.len += 1;
                i += 1;
            }
            while i < text.len() && (text[i] & 0b1100_0000) == 0b1000_0000 && self.len > 0 {
                self.len -= 1;
                i -= 1;
            }
            self
        }

        /// The message.
        #[must_use]
        pub const fn as_str(&self) -> &str {
            match core::str::from_utf8(self.bytes.split_at(self.len).0) {
                Ok(text) => text,
                Err(_) => "two events of the aggregate share a stored kind",
            }
        }
    }

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The stored kinds of one event: its `KIND` then its `ALIASES`.
    const fn kind_at<'a>(kind: &'a str, aliases: &'a [&'a str], index: usize) -> &'a str {
        if index == 0 { kind } else { aliases[index - 1] }
    }

    /// For `events` (name, `KIND`, `ALIASES`) and the `retired` kinds of
    /// aggregate `aggregate`: a message naming two events (or an event and
    /// the retired list) that share a kind, and the kind; `None` when every
    /// kind is unique.
    #[must_use]
    #[expect(
        clippy::many_single_char_names,
        reason = "nested index loops (const code has no iterators) read best with short names"
    )]
    pub const fn kind_clash(
        aggregate: &str,
        events: &[(&str, &str, &[&str])],
        retired: &[&str],
    ) -> Option<Message> {
        let mut a = 0;
        while a < events.len() {
            let (a_name, a_kind, a_aliases) = events[a];
            let mut i = 0;
            while i <= a_aliases.len() {
                let kind = kind_at(a_kind, a_aliases, i);
                // Against the later kinds of the same event.
                let mut j = i + 1;
                while j <= a_aliases.len() {
                    if same(kind, kind_at(a_kind, a_aliases, j)) {
                        let message = Message::new()
                            .push("event `")
                            .push(a_name)
                            .push("` of aggregate `")
                            .push(aggregate)
                            .push("` lists the stored kind `")
                            .push(kind)
                            .push("` twice");
                        return Some(message);
                    }
                    j += 1;
                }
                // Against every kind of the later events.
                let mut b = a + 1;
                while b < events.len() {
                    let (b_name, b_kind, b_aliases) = events[b];
                    let mut k = 0;
                    while k <= b_aliases.len() {
                        if same(kind, kind_at(b_kind, b_aliases, k)) {
                            let message = Message::new()
                                .push("events `")
                                .push(a_name)
                                .push("` and `")
                                .push(b_name)
                                .push("` of aggregate `")
                                .push(aggregate)
                                .push("` share the stored kind `")
                                .push(kind)
                                .push("`: every kind and alias must belong to one event");
                            return Some(message);
                        }
                        k += 1;
                    }
                    b += 1;
                }
                // Against the retired kinds.
                let mut r = 0;
                while r < retired.len() {
                    if same(kind, retired[r]) {
                        let message = Message::new()
                            .push("the kind `")
                            .push(kind)
                            .push("` of event `")
                            .push(a_name)
                            .push("` is also retired on aggregate `")
                            .push(aggregate)
                            .push("`");
                        return Some(message);
                    }
                    r += 1;
                }
                i += 1;
            }
            a += 1;
        }
        None
    }

    /// The aliases of several events, concatenated into one array of `N`.
    #[must_use]
    pub const fn concat<const N: usize>(lists: &[&[&'static str]]) -> [&'static str; N] {
        let mut out = [""; N];
        let mut n = 0;
        let mut l = 0;
        while l < lists.len() {
            let mut i = 0;
            while i < lists[l].len() {
                out[n] = lists[l][i];
                n += 1;
                i += 1;
            }
            l += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::codec::JsonCodec;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Opened {
        owner: String,
    }

    impl DomainEvent for Opened {
        const KIND: &'static str = "account.opened";
    }

    fn raw<'a>(kind: &'a str, schema_version: u32, data: &'a [u8]) -> RawEvent<'a> {
        RawEvent {
            kind,
            schema_version,
            data,
        }
    }

    #[test]
    fn a_domain_event_encodes_and_decodes_under_its_kind() {
        let event = Opened { owner: "ana".into() };
        assert_eq!(event.kind(), "account.opened");
        let bytes = event.encode_with(&JsonCodec).unwrap();
        let back = Opened::decode_with(&JsonCodec, raw("account.opened", 1, &bytes)).unwrap();
        assert_eq!(back, Some(event));
        assert_eq!(Opened::event_kinds(), ["account.opened"]);
    }

    #[test]
    fn another_kind_is_not_decoded() {
        let decoded = Opened::decode_with(&JsonCodec, raw("account.closed", 1, b"{}")).unwrap();
        assert_eq!(decoded, None);
        assert!(Opened::decode_with(&JsonCodec, raw("account.opened", 1, b"{}")).is_err());
    }
}

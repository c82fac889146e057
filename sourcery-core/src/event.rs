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

use std::error::Error as StdError;

use serde::{Serialize, de::DeserializeOwned};

use crate::codec::Codec;

/// A fact that happened in the domain, with a stable stored name.
///
/// `KIND` is what the store records; renaming the Rust type is free, changing
/// `KIND` orphans the events already stored under the old name. Namespacing
/// kinds (`"account.deposited"`) keeps them unique across aggregates.
///
/// An event type may be used by several aggregates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    note = "implement `DomainEvent` with a stable `KIND`: `impl DomainEvent for {Self} {{ const KIND: &'static str = \"...\"; }}`"
)]
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name the event is stored under.
    const KIND: &'static str;
}

/// A value that a [`Transaction`](crate::store::Transaction) can append: a
/// single [`DomainEvent`] or an aggregate's event enum.
///
/// Implemented for every `DomainEvent`; `#[derive(Aggregate)]` implements it
/// for the event enum it writes.
pub trait EventPayload {
    /// The stored kind of this value.
    fn kind(&self) -> &'static str;

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

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        codec.encode(self)
    }
}

/// A type that can be rebuilt from a stored kind and its bytes: a single
/// [`DomainEvent`] or an aggregate's event enum.
pub trait DecodeEvent: Sized {
    /// Every kind this type decodes. Loading code uses it to build filters.
    fn event_kinds() -> &'static [&'static str];

    /// Decodes `data` stored under `kind`.
    ///
    /// Returns `Ok(None)` when `kind` is not one of [`Self::event_kinds`].
    ///
    /// # Errors
    ///
    /// When the kind is known but the bytes do not decode.
    fn decode_with<C: Codec>(codec: &C, kind: &str, data: &[u8]) -> Result<Option<Self>, C::Error>;
}

impl<E: DomainEvent> DecodeEvent for E {
    fn event_kinds() -> &'static [&'static str] {
        const { &[E::KIND] }
    }

    fn decode_with<C: Codec>(codec: &C, kind: &str, data: &[u8]) -> Result<Option<Self>, C::Error> {
        if kind == E::KIND {
            codec.decode(data).map(Some)
        } else {
            Ok(None)
        }
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
/// It names the event kind, the stream and the position, so the offending
/// row can be found. The event stays in the store untouched.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode stored event `{event_kind}` of stream `{aggregate_kind}` {aggregate_id} at position {position}"
)]
pub struct DecodeError {
    /// The stored kind of the event.
    pub event_kind: String,
    /// The kind of the stream it belongs to.
    pub aggregate_kind: String,
    /// The stream's aggregate id, as its `Debug` rendering.
    pub aggregate_id: String,
    /// The event's position, as its `Debug` rendering.
    pub position: String,
    /// Why it failed.
    #[source]
    pub reason: DecodeFailure,
}

/// Why a stored event did not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// The kind is not one the target type knows (an event from a newer
    /// version of the code, or a renamed kind).
    #[error("the event kind is not one of {expected:?}")]
    UnknownKind {
        /// The kinds the target type decodes.
        expected: &'static [&'static str],
    },
    /// The kind is known but the bytes do not decode (a changed event shape,
    /// corrupt data).
    #[error("the payload does not decode")]
    Payload(#[source] Box<dyn StdError + Send + Sync>),
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

    #[test]
    fn a_domain_event_encodes_and_decodes_under_its_kind() {
        let event = Opened { owner: "ana".into() };
        assert_eq!(event.kind(), "account.opened");
        let bytes = event.encode_with(&JsonCodec).unwrap();
        let back = Opened::decode_with(&JsonCodec, "account.opened", &bytes).unwrap();
        assert_eq!(back, Some(event));
        assert_eq!(Opened::event_kinds(), ["account.opened"]);
    }

    #[test]
    fn another_kind_is_not_decoded() {
        let decoded = Opened::decode_with(&JsonCodec, "account.closed", b"{}").unwrap();
        assert_eq!(decoded, None);
        assert!(Opened::decode_with(&JsonCodec, "account.opened", b"{}").is_err());
    }
}

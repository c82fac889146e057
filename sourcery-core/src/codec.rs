//! Turning values into bytes and back.
//!
//! Every [`EventStore`](crate::store::EventStore) names a [`Codec`]; a
//! [`Transaction`](crate::store::Transaction) uses it to encode the events it
//! buffers, and loading uses it to decode them. [`JsonCodec`] is the default.

use serde::{Serialize, de::DeserializeOwned};

/// Encodes values to bytes and decodes them back.
///
/// Implement it to store events in another format (`MessagePack`, `bincode`,
/// protobuf through serde, ...). Implementations must be deterministic enough
/// that `decode(encode(v)) == v` for every value they accept.
///
/// # Example
///
/// ```
/// use sourcery_core::codec::{Codec, JsonCodec};
///
/// let bytes = JsonCodec.encode(&vec![1, 2, 3]).unwrap();
/// assert_eq!(bytes, b"[1,2,3]");
/// let back: Vec<i32> = JsonCodec.decode(&bytes).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// ```
pub trait Codec: Send + Sync {
    /// What goes wrong while encoding or decoding.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Encodes `value` to bytes.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented in this format.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Self::Error>;

    /// Decodes a value from `bytes`.
    ///
    /// # Errors
    ///
    /// When the bytes are not a valid encoding of a `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Self::Error>;

    /// The format's dynamic value (for JSON: `serde_json::Value`): what
    /// upcasters ([`DomainEvent::upcast`](crate::event::DomainEvent::upcast))
    /// rewrite when a stored event's shape is older than its type's.
    type Value: Send + 'static;

    /// Decodes bytes into the format's dynamic value.
    ///
    /// # Errors
    ///
    /// When the bytes are not valid in this format.
    fn decode_value(&self, bytes: &[u8]) -> Result<Self::Value, Self::Error>;

    /// Decodes a `T` from the format's dynamic value.
    ///
    /// # Errors
    ///
    /// When the value is not a valid `T`.
    fn decode_from_value<T: DeserializeOwned>(&self, value: Self::Value) -> Result<T, Self::Error>;
}

/// The default codec: JSON through `serde_json`.
///
/// JSON is readable in the database, tolerant of added optional fields and
/// understood by every tool, which is why it is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(bytes)
    }

    type Value = serde_json::Value;

    fn decode_value(&self, bytes: &[u8]) -> Result<serde_json::Value, Self::Error> {
        serde_json::from_slice(bytes)
    }

    fn decode_from_value<T: DeserializeOwned>(&self, value: serde_json::Value) -> Result<T, Self::Error> {
        serde_json::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_reports_bad_bytes() {
        let bytes = JsonCodec.encode(&("a", 1u8)).unwrap();
        let back: (String, u8) = JsonCodec.decode(&bytes).unwrap();
        assert_eq!(back, ("a".to_owned(), 1));
        assert!(JsonCodec.decode::<(String, u8)>(b"{not json").is_err());
    }
}

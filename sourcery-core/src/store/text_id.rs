//! Aggregate ids that SQL stores keep as text.

use std::error::Error as StdError;
use std::fmt::Display;
use std::str::FromStr;

/// An aggregate id that a store can keep as text and parse back.
///
/// Implemented for every type with `Display` and `FromStr` that round-trip:
/// `String`, `uuid::Uuid`, the integer types, and your own newtypes once they
/// implement both.
///
/// ```
/// use sourcery_core::store::TextId;
///
/// assert_eq!("ACC-1".to_string().to_text(), "ACC-1");
/// assert_eq!(i64::from_text("42").unwrap(), 42);
/// let error = i64::from_text("forty-two").unwrap_err();
/// assert_eq!(error.to_string(), "the stored aggregate id \"forty-two\" does not parse");
/// ```
pub trait TextId: Sized {
    /// The id as stored.
    fn to_text(&self) -> String;

    /// Parses an id read from the store.
    ///
    /// # Errors
    ///
    /// An [`IdParseError`] naming the text when it is not a valid id.
    fn from_text(text: &str) -> Result<Self, IdParseError>;
}

impl<T> TextId for T
where
    T: Display + FromStr,
    T::Err: Display,
{
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Result<Self, IdParseError> {
        text.parse().map_err(|error: T::Err| IdParseError {
            text: text.to_owned(),
            source: error.to_string().into(),
        })
    }
}

/// A stored aggregate id did not parse into the store's id type.
#[derive(Debug, thiserror::Error)]
#[error("the stored aggregate id {text:?} does not parse")]
pub struct IdParseError {
    /// The text read from the store.
    pub text: String,
    /// What the id type's parser said.
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

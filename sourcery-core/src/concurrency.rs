//! How a commit treats writers that raced it.
//!
//! A [`Transaction`](crate::store::Transaction) is typed by its strategy:
//!
//! - [`Optimistic`] (the default): the commit succeeds only if the stream is
//!   still at the version the caller read. With no expected version, the
//!   stream must be new. A stale read fails with a [`ConcurrencyConflict`];
//!   reload and retry.
//! - [`Unchecked`]: the commit appends whatever the stream holds. Use it for
//!   streams with a single writer, or where the order of writers does not
//!   matter.

use std::fmt;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Unchecked {}
    impl Sealed for super::Optimistic {}
}

/// The concurrency strategy of a transaction: [`Optimistic`] or
/// [`Unchecked`]. Sealed: the store contract knows exactly these two.
pub trait ConcurrencyStrategy: sealed::Sealed + Send + Sync + 'static {
    /// Whether a commit checks the stream's version.
    const CHECKS_VERSION: bool;
}

/// Commit without checking the stream's version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unchecked;

impl ConcurrencyStrategy for Unchecked {
    const CHECKS_VERSION: bool = false;
}

/// Commit only if the stream is still at the expected version (or, with no
/// expected version, still empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optimistic;

impl ConcurrencyStrategy for Optimistic {
    const CHECKS_VERSION: bool = true;
}

/// What a commit requires of the stream's version.
///
/// A transaction's strategy gives the usual modes ([`Unchecked`]: any;
/// [`Optimistic`] with a version: exactly it; with none: a new stream);
/// [`EventStore::begin_expecting`](crate::store::EventStore::begin_expecting)
/// takes any of them, including [`StreamExists`](Self::StreamExists).
///
/// ```
/// use sourcery_core::concurrency::ExpectedVersion;
///
/// let exact = ExpectedVersion::Exact(7_u64);
/// assert!(exact.allows(Some(7)));
/// assert!(!exact.allows(Some(8)));
/// assert!(ExpectedVersion::<u64>::StreamExists.allows(Some(1)));
/// assert!(!ExpectedVersion::<u64>::StreamExists.allows(None));
/// assert!(ExpectedVersion::<u64>::NoStream.allows(None));
/// assert!(ExpectedVersion::<u64>::Any.allows(None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion<Pos> {
    /// Whatever the stream holds, even nothing.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must have events, at any version.
    StreamExists,
    /// The stream must be at this version.
    Exact(Pos),
}

impl<Pos: PartialEq> ExpectedVersion<Pos> {
    /// Whether a stream at `actual` (`None`: no events) meets the
    /// expectation.
    pub fn allows(&self, actual: Option<Pos>) -> bool {
        match (self, actual) {
            (Self::Any, _) | (Self::NoStream, None) | (Self::StreamExists, Some(_)) => true,
            (Self::Exact(expected), Some(actual)) => *expected == actual,
            (Self::NoStream, Some(_)) | (Self::StreamExists | Self::Exact(_), None) => false,
        }
    }
}

impl<Pos> ExpectedVersion<Pos> {
    /// The mode of a transaction with strategy `C` that read the stream at
    /// `version`: [`Any`](Self::Any) when `C` does not check versions,
    /// otherwise [`Exact`](Self::Exact) or, with no version,
    /// [`NoStream`](Self::NoStream).
    pub fn of<C: ConcurrencyStrategy>(version: Option<Pos>) -> Self {
        match (C::CHECKS_VERSION, version) {
            (false, _) => Self::Any,
            (true, Some(version)) => Self::Exact(version),
            (true, None) => Self::NoStream,
        }
    }
}

impl<Pos> From<Option<Pos>> for ExpectedVersion<Pos> {
    /// What an optimistic transaction expects: `Some(v)` exactly `v`, `None`
    /// a new stream.
    fn from(version: Option<Pos>) -> Self {
        version.map_or(Self::NoStream, Self::Exact)
    }
}

impl<Pos: fmt::Debug> fmt::Display for ExpectedVersion<Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("the stream at any version"),
            Self::NoStream => f.write_str("a new stream (no version)"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(position) => write!(f, "the stream at version {position:?}"),
        }
    }
}

/// The stream was not at the version the commit required: another writer
/// got there first (or, for [`ExpectedVersion::StreamExists`], the stream
/// has no events).
///
/// A version is the position of the stream's last event; `None` means the
/// stream has no events. Nothing of the failed batch was written: reload the
/// aggregate and run the command again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "concurrency conflict: expected {expected}, found {}; reload and retry",
    VersionDisplay(self.actual.as_ref())
)]
pub struct ConcurrencyConflict<Pos: fmt::Debug> {
    /// What the writer required.
    pub expected: ExpectedVersion<Pos>,
    /// The version the stream had when the commit was refused.
    pub actual: Option<Pos>,
}

impl<Pos: fmt::Debug> ConcurrencyConflict<Pos> {
    /// A conflict of a writer that required `expected` with a stream at
    /// `actual`; `expected` may be a version (`Some(v)`: exactly `v`;
    /// `None`: a new stream) or an [`ExpectedVersion`].
    pub fn new(expected: impl Into<ExpectedVersion<Pos>>, actual: Option<Pos>) -> Self {
        Self {
            expected: expected.into(),
            actual,
        }
    }
}

struct VersionDisplay<'a, Pos>(Option<&'a Pos>);

impl<Pos: fmt::Debug> fmt::Display for VersionDisplay<'_, Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(f, "it at version {position:?}"),
            None => f.write_str("no events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_names_both_versions_and_the_remedy() {
        let conflict = ConcurrencyConflict::new(Some(3_u64), Some(5));
        assert_eq!(
            conflict.to_string(),
            "concurrency conflict: expected the stream at version 3, found it at version 5; reload and retry"
        );
        let new = ConcurrencyConflict::<u64>::new(None, Some(1));
        assert_eq!(
            new.to_string(),
            "concurrency conflict: expected a new stream (no version), found it at version 1; reload and retry"
        );
        let missing = ConcurrencyConflict::<u64>::new(ExpectedVersion::StreamExists, None);
        assert_eq!(
            missing.to_string(),
            "concurrency conflict: expected an existing stream, found no events; reload and retry"
        );
    }
}

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

/// The stream moved between the read and the commit: another writer got
/// there first.
///
/// A version is the position of the stream's last event; `None` means the
/// stream has no events. Nothing of the failed batch was written: reload the
/// aggregate and run the command again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "concurrency conflict: expected the stream at {}, found it at {}; reload and retry",
    VersionDisplay(self.expected.as_ref()),
    VersionDisplay(self.actual.as_ref())
)]
pub struct ConcurrencyConflict<Pos: fmt::Debug> {
    /// The version the writer read.
    pub expected: Option<Pos>,
    /// The version the stream had when the commit was refused.
    pub actual: Option<Pos>,
}

struct VersionDisplay<'a, Pos>(Option<&'a Pos>);

impl<Pos: fmt::Debug> fmt::Display for VersionDisplay<'_, Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(f, "version {position:?}"),
            None => f.write_str("no version (a new stream)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_names_both_versions_and_the_remedy() {
        let conflict = ConcurrencyConflict {
            expected: Some(3_u64),
            actual: Some(5),
        };
        assert_eq!(
            conflict.to_string(),
            "concurrency conflict: expected the stream at version 3, found it at version 5; reload and retry"
        );
        let new = ConcurrencyConflict::<u64> {
            expected: None,
            actual: Some(1),
        };
        assert!(new.to_string().contains("no version (a new stream)"));
    }
}

//! What goes wrong in the SQLite store.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;
use sourcery_core::store::IdParseError;

/// An error of the SQLite store.
///
/// Concurrency conflicts are not errors of the store: they come back as
/// [`AppendError::Conflict`](sourcery_core::store::AppendError::Conflict).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened or created (a missing
    /// directory, no permission to create it, ...).
    #[error("cannot open the SQLite database at {}", path.display())]
    Open {
        /// The path given to the store.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: DatabaseError,
    },
    /// The file exists but is not a SQLite database (or is encrypted or its
    /// header is corrupt). Nothing was written to it.
    #[error("the file at {} is not a SQLite database; nothing was written to it", path.display())]
    NotADatabase {
        /// The path given to the store.
        path: PathBuf,
    },
    /// The database holds an event store schema from a newer version of
    /// `sourcery-es-sqlite` than this one. Nothing was written to it;
    /// upgrade `sourcery-es-sqlite` to use it.
    #[error(
        "the database at {} has event store schema version {found}, newer than version {supported} \
         that this sourcery-es-sqlite knows; nothing was written to it",
        path.display()
    )]
    SchemaTooNew {
        /// The path given to the store.
        path: PathBuf,
        /// The highest schema version recorded in the database.
        found: i64,
        /// The highest schema version this crate knows.
        supported: i64,
    },
    /// The database cannot be written: the file or its directory is
    /// read-only, or the file system is mounted read-only. The store needs to
    /// write (its schema, its write-ahead log, events).
    #[error("the SQLite database at {} is read-only, and the event store needs to write to it", path.display())]
    ReadOnly {
        /// The path given to the store.
        path: PathBuf,
    },
    /// Another connection (another process, usually) held the database lock
    /// for longer than the busy timeout
    /// ([`OpenOptions::busy_timeout`](crate::OpenOptions::busy_timeout)).
    /// Nothing was written; the operation can be retried.
    #[error("the SQLite database stayed locked by another connection for longer than the busy timeout")]
    Busy(#[source] DatabaseError),
    /// SQLite failed (a full disk, an I/O error, a corrupt page, ...).
    #[error("the SQLite database failed")]
    Database(#[source] DatabaseError),
    /// An event's metadata could not be encoded as JSON. Nothing was written.
    #[error("cannot encode the metadata of event `{event_kind}` as JSON; nothing was written")]
    EncodeMetadata {
        /// The kind of the event whose metadata failed.
        event_kind: String,
        /// What `serde_json` reported.
        #[source]
        source: serde_json::Error,
    },
    /// A stored schema version is not a `u32` (the column's check keeps it
    /// above 0: the row was written by something other than the store).
    #[error(
        "stored event `{event_kind}` of stream `{aggregate_kind}` {aggregate_id:?} at position {position} \
         has schema version {found}, which is not a version"
    )]
    DecodeSchemaVersion {
        /// The stored kind of the event.
        event_kind: String,
        /// The kind of the stream it belongs to.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// The event's position.
        position: i64,
        /// The stored value.
        found: i64,
        /// Why it does not convert.
        #[source]
        source: std::num::TryFromIntError,
    },
    /// A stored event id is not 16 bytes (the column's check keeps it so:
    /// the row was written by something other than the store).
    #[error(
        "stored event `{event_kind}` of stream `{aggregate_kind}` {aggregate_id:?} at position {position} \
         has an event id of {length} bytes, not 16"
    )]
    DecodeEventId {
        /// The stored kind of the event.
        event_kind: String,
        /// The kind of the stream it belongs to.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// The event's position.
        position: i64,
        /// The stored id's length in bytes.
        length: usize,
    },
    /// A stored aggregate id does not parse into the store's id type (the
    /// store was opened with another id type than the one that wrote it).
    #[error(
        "the aggregate id of stored event `{event_kind}` of stream `{aggregate_kind}` at position {position} \
         does not decode"
    )]
    DecodeAggregateId {
        /// The stored kind of the event.
        event_kind: String,
        /// The kind of the stream it belongs to.
        aggregate_kind: String,
        /// The event's position.
        position: i64,
        /// What the id type's parser said (it holds the stored text).
        #[source]
        source: IdParseError,
    },
    /// Stored metadata does not decode into the store's metadata type.
    #[error(
        "the metadata of stored event `{event_kind}` of stream `{aggregate_kind}` {aggregate_id:?} at position \
         {position} does not decode"
    )]
    DecodeMetadata {
        /// The stored kind of the event.
        event_kind: String,
        /// The kind of the stream it belongs to.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// The event's position.
        position: i64,
        /// What `serde_json` reported.
        #[source]
        source: serde_json::Error,
    },
    /// A column of a stored timer (table `sourcery_timers`) holds what the
    /// store never writes: an id that is not 16 bytes, a state it does not
    /// know, a negative number of attempts, a due time out of range. The
    /// row was written by something other than the store.
    #[error("the `{column}` of stored timer {timer} of reactor `{reactor}` does not decode")]
    DecodeTimer {
        /// The reactor the timer belongs to.
        reactor: String,
        /// The timer's id (its stored bytes in hexadecimal when the id is
        /// what does not decode).
        timer: String,
        /// The column that does not decode.
        column: &'static str,
        /// Why it does not.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A column of a stored dead letter (table `sourcery_dead_letters`)
    /// does not decode: its event's aggregate id does not parse into the
    /// store's id type, its metadata not into the metadata type (the store
    /// was opened with other types than the ones that parked it), or a
    /// column holds what the store never writes.
    #[error(
        "the `{column}` of the dead letter of reactor `{reactor}` at position {position} does not decode"
    )]
    DecodeDeadLetter {
        /// The reactor the dead letter belongs to.
        reactor: String,
        /// The position of its event.
        position: i64,
        /// The column that does not decode.
        column: &'static str,
        /// Why it does not.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// One of the store's threads could not be started.
    #[error("cannot start a thread for the SQLite store")]
    Thread(#[source] std::io::Error),
    /// One of the store's threads stopped (it panicked); the operation's
    /// outcome is unknown. Open the store again; an append can then be
    /// retried with the same event ids (a replay if it had committed).
    #[error("a thread of the SQLite store stopped; the operation's outcome is unknown")]
    Stopped,
}

impl Error {
    /// Sorts a SQLite failure into the variant a caller can act on.
    pub(crate) fn from_sqlite(path: &Path, error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Self::NotADatabase {
                path: path.to_owned(),
            },
            Some(ErrorCode::ReadOnly) => Self::ReadOnly {
                path: path.to_owned(),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::Busy(DatabaseError(error)),
            _ => Self::Database(DatabaseError(error)),
        }
    }
}

/// What SQLite reported, kept opaque so that the store's driver stays an
/// implementation detail. Its `Display` is SQLite's message.
pub struct DatabaseError(rusqlite::Error);

impl DatabaseError {
    /// SQLite's extended result code, when the failure came from SQLite
    /// itself (see <https://www.sqlite.org/rescode.html>).
    #[must_use]
    pub fn extended_code(&self) -> Option<i32> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
            _ => None,
        }
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

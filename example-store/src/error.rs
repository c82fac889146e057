//! What goes wrong in the store: [`Error`].

use std::io;
use std::path::{Path, PathBuf};

use sourcery::event::DecodeError;
use sourcery::store::{AppendError, EventId};

/// Why a store or checkpoint call failed.
///
/// [`Decode`](Self::Decode) is about one stored event (the repository
/// reports it as a decode error, through
/// [`EventStore::into_decode_error`](sourcery::store::EventStore::into_decode_error));
/// everything else is the store failing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What the store was doing (`"open"`, `"write"`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A complete line of the log is not a valid batch. Lines are never
    /// skipped: the file needs a look from an operator. (A *partial* last
    /// line, left by a crash during a write, is not corruption: opening
    /// the store removes it.)
    #[error("line {line} of {} is corrupt", path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        #[source]
        reason: Corruption,
    },
    /// A checkpoint file is not in the format the
    /// [`CheckpointStore`](crate::CheckpointStore) writes (nor a bare
    /// position, as older versions wrote).
    #[error("the checkpoint file {} does not hold a checkpoint", path.display())]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// A write to the log failed earlier, so the end of the file is not
    /// known; the store refuses further appends. Open the store again: the
    /// failed batch is then either wholly there or gone (a partial line is
    /// removed on open).
    #[error("an earlier write to {} failed; open the store again to recover", path.display())]
    Broken {
        /// The log file.
        path: PathBuf,
    },
    /// An event's metadata did not serialise to JSON; nothing was written.
    #[error("an event does not serialise to JSON")]
    Encode(#[source] serde_json::Error),
    /// A stored event's metadata does not decode into the store's metadata
    /// type.
    #[error("a stored event does not decode")]
    Decode(#[source] DecodeError<String, u64>),
    /// The blocking task doing the file work did not finish (it panicked,
    /// or the runtime is shutting down).
    #[error("the file task did not finish")]
    Task(#[source] tokio::task::JoinError),
}

/// A store failure is an append failure, so that `?` works in the append
/// path.
impl From<Error> for AppendError<u64, Error> {
    fn from(error: Error) -> Self {
        Self::Store(error)
    }
}

/// What is wrong with a corrupt line of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The line is not the JSON of a batch.
    #[error("it is not the JSON of a batch")]
    Json(#[source] serde_json::Error),
    /// The batch does not start where the previous one ended.
    #[error("its batch starts at position {found}, where {expected} was expected")]
    Position {
        /// The position the line names.
        found: u64,
        /// The position after the previous batch.
        expected: u64,
    },
    /// The batch holds no events.
    #[error("its batch holds no events")]
    Empty,
    /// An event's data is not hexadecimal.
    #[error("the data of its event {index} is not hexadecimal")]
    Data {
        /// The event's index in the batch, from 0.
        index: usize,
    },
    /// An event has the id of an earlier event: ids are unique in a log.
    #[error("its event {index} has the id {id} of an earlier event")]
    DuplicateId {
        /// The event's index in the batch, from 0.
        index: usize,
        /// The id.
        id: EventId,
    },
}

impl Error {
    /// Wraps an I/O error of `action` on `path`, for `map_err`.
    pub(crate) fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

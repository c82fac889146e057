//! Appending a batch: the version check and the inserts in one write
//! transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sourcery_core::concurrency::ConcurrencyConflict;
use sourcery_core::store::{AppendError, AppendOutcome, AppendResult};

use crate::Error;
use crate::schema::At;

/// The stream's version: the position of its last event.
/// Walks the stream index backwards and stops at the first entry.
pub(crate) const STREAM_VERSION: &str = "SELECT position FROM sourcery_events \
                                         WHERE aggregate_kind = ?1 AND aggregate_id = ?2 \
                                         ORDER BY position DESC LIMIT 1";

const INSERT: &str = "INSERT INTO sourcery_events \
                      (aggregate_kind, aggregate_id, event_kind, schema_version, data, metadata) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// What the stream must look like for the batch to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expected {
    /// Whatever it holds.
    Any,
    /// No events.
    New,
    /// Its last event at this position.
    At(i64),
}

/// An event ready for its row: kind, schema version, data, metadata as JSON.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) kind: String,
    pub(crate) schema_version: u32,
    pub(crate) data: Vec<u8>,
    pub(crate) metadata: String,
}

/// Writes `rows` to the stream in one transaction, if the stream is as
/// `expected`.
///
/// `BEGIN IMMEDIATE` takes SQLite's write lock before the version is read, so
/// no other writer (in this process or another) can move the stream between
/// the check and the inserts; positions are assigned under the same lock,
/// hence in commit order. A refused or failed batch rolls back whole.
pub(crate) fn append(
    connection: &mut Connection,
    path: &Path,
    aggregate_kind: &str,
    aggregate_id: &str,
    expected: Expected,
    rows: &[Row],
) -> AppendOutcome<i64, Error> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path)
        .map_err(AppendError::Store)?;
    let wanted = match expected {
        Expected::Any => None,
        Expected::New => Some(None),
        Expected::At(version) => Some(Some(version)),
    };
    if let Some(wanted) = wanted {
        let actual: Option<i64> = transaction
            .prepare_cached(STREAM_VERSION)
            .and_then(|mut statement| {
                statement
                    .query_row((aggregate_kind, aggregate_id), |row| row.get(0))
                    .optional()
            })
            .at(path)
            .map_err(AppendError::Store)?;
        if actual != wanted {
            // Dropping the transaction rolls it back.
            return Err(AppendError::Conflict(ConcurrencyConflict {
                expected: wanted,
                actual,
            }));
        }
    }
    {
        let mut insert = transaction
            .prepare_cached(INSERT)
            .at(path)
            .map_err(AppendError::Store)?;
        for row in rows {
            insert
                .execute((
                    aggregate_kind,
                    aggregate_id,
                    row.kind.as_str(),
                    row.schema_version,
                    row.data.as_slice(),
                    row.metadata.as_str(),
                ))
                .at(path)
                .map_err(AppendError::Store)?;
        }
    }
    let last_position = transaction.last_insert_rowid();
    transaction.commit().at(path).map_err(AppendError::Store)?;
    Ok(AppendResult { last_position })
}

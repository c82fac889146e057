//! Appending a batch: the version check and the inserts in one write
//! transaction; replays recognised by the unique index on event ids.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, ffi};
use sourcery_core::concurrency::{ConcurrencyConflict, ExpectedVersion};
use sourcery_core::store::{AppendError, AppendOutcome, AppendResult, EventId, replay_of};

use crate::Error;
use crate::event_id::stored_ids;
use crate::schema::At;

/// The stream's version: the position of its last event.
/// Walks the stream index backwards and stops at the first entry.
pub(crate) const STREAM_VERSION: &str = "SELECT position FROM sourcery_events \
                                         WHERE aggregate_kind = ?1 AND aggregate_id = ?2 \
                                         ORDER BY position DESC LIMIT 1";

const INSERT: &str = "INSERT INTO sourcery_events \
                      (aggregate_kind, aggregate_id, event_kind, schema_version, data, metadata, event_id) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// An event ready for its row: id, kind, schema version, data, metadata as
/// JSON.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) id: EventId,
    pub(crate) kind: String,
    pub(crate) schema_version: u32,
    pub(crate) data: Vec<u8>,
    pub(crate) metadata: String,
}

/// Writes `rows` to the stream in one transaction, if the stream is as
/// `expected`, or recognises the batch as a replay of one stored earlier.
///
/// `BEGIN IMMEDIATE` takes SQLite's write lock before the version is read, so
/// no other writer (in this process or another) can move the stream between
/// the check and the inserts; positions are assigned under the same lock,
/// hence in commit order. A refused or failed batch rolls back whole.
///
/// The batch's ids are looked up only when they may be stored (the crate
/// docs, "Idempotent appends", say why): when the stream is not as expected
/// (a retry whose first attempt committed finds the stream moved by its own
/// write), and when an insert violates the unique index on event ids. Then
/// [`replay_of`] decides between a replay, a reused id and the conflict.
/// An append whose inserts all succeed reused no id: the index saw to it.
pub(crate) fn append(
    connection: &mut Connection,
    path: &Path,
    aggregate_kind: &str,
    aggregate_id: &str,
    expected: ExpectedVersion<i64>,
    rows: &[Row],
) -> AppendOutcome<i64, Error> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path)
        .map_err(AppendError::Store)?;
    if expected != ExpectedVersion::Any {
        let actual: Option<i64> = transaction
            .prepare_cached(STREAM_VERSION)
            .and_then(|mut statement| {
                statement
                    .query_row((aggregate_kind, aggregate_id), |row| row.get(0))
                    .optional()
            })
            .at(path)
            .map_err(AppendError::Store)?;
        if !expected.allows(actual) {
            // Under the write lock still, nothing written: the ids are
            // looked up in the state the version was read in. Dropping the
            // transaction rolls it back.
            return match replay(&transaction, path, aggregate_kind, aggregate_id, rows)? {
                Some(last) => Ok(AppendResult::replay(last)),
                None => Err(AppendError::Conflict(ConcurrencyConflict::new(expected, actual))),
            };
        }
    }
    if let Err(error) = insert(&transaction, aggregate_kind, aggregate_id, rows) {
        if !is_unique_violation(&error) {
            return Err(AppendError::Store(Error::from_sqlite(path, error)));
        }
        // Some id is stored already. The events of the batch inserted before
        // the violation are in the transaction: roll it back, then look the
        // ids up. Stored events are never removed nor moved, so what the
        // lookup finds held when the inserts failed, and still holds.
        transaction.rollback().at(path).map_err(AppendError::Store)?;
        return match replay(connection, path, aggregate_kind, aggregate_id, rows)? {
            Some(last) => Ok(AppendResult::replay(last)),
            // No id of the batch is stored: the violation was of a unique
            // index someone else added to the table.
            None => Err(AppendError::Store(Error::from_sqlite(path, error))),
        };
    }
    let last_position = transaction.last_insert_rowid();
    transaction.commit().at(path).map_err(AppendError::Store)?;
    Ok(AppendResult::new(last_position))
}

/// Inserts the rows, one cached statement.
fn insert(
    connection: &Connection,
    aggregate_kind: &str,
    aggregate_id: &str,
    rows: &[Row],
) -> rusqlite::Result<()> {
    let mut insert = connection.prepare_cached(INSERT)?;
    for row in rows {
        insert.execute((
            aggregate_kind,
            aggregate_id,
            row.kind.as_str(),
            row.schema_version,
            row.data.as_slice(),
            row.metadata.as_str(),
            row.id.as_bytes(),
        ))?;
    }
    Ok(())
}

/// Whether the batch is a replay of stored events (`Some` with the position
/// of its last event), new (`None`), or reuses stored ids otherwise (the
/// error).
fn replay(
    connection: &Connection,
    path: &Path,
    aggregate_kind: &str,
    aggregate_id: &str,
    rows: &[Row],
) -> Result<Option<i64>, AppendError<i64, Error>> {
    let ids: Vec<EventId> = rows.iter().map(|row| row.id).collect();
    let bytes: Vec<[u8; 16]> = ids.iter().map(|id| *id.as_bytes()).collect();
    let stored = stored_ids(connection, aggregate_kind, aggregate_id, &bytes)
        .at(path)
        .map_err(AppendError::Store)?;
    Ok(replay_of(&ids, &stored)?)
}

/// Whether SQLite refused a row for a `UNIQUE` index (a reused position
/// has a code of its own, `SQLITE_CONSTRAINT_PRIMARYKEY`). The only unique
/// index on the events the store made is the one on event ids,
/// `sourcery_events_event_id`; the caller checks the ids rather than
/// trusting that (nor the message, which names the index).
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _) if failure.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

//! Opening connections and migrating the schema.
//!
//! The schema is versioned by numbered files in `migrations/`, applied in
//! order, each in the same write transaction as the row recording it in
//! `sourcery_migrations`. Opening applies the missing ones, so opening is
//! idempotent and two processes opening one file at once apply each
//! migration exactly once. (A table rather than `PRAGMA user_version`, which
//! the application may use for its own tables in the same file.)
//!
//! Every table is prefixed `sourcery_`: `sourcery_events` (1),
//! `sourcery_checkpoints` (2), `sourcery_snapshots` (3); 4 adds the events'
//! `schema_version` column, 5 their `event_id` column and its unique index
//! `sourcery_events_event_id` (ids of older events from their metadata, or
//! random), 6 the checkpoints' `fence` column (and a nullable `position`) and `sourcery_read_models`, 7 the
//! reactors' `sourcery_timers` and `sourcery_dead_letters`. A file at an older version gets the missing
//! migrations when it is opened.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, DatabaseName, OpenFlags, TransactionBehavior};

use crate::Error;
use crate::options::{OpenOptions, Synchronous};

/// A numbered schema change.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "events",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        description: "checkpoints",
        sql: include_str!("../migrations/0002_checkpoints.sql"),
    },
    Migration {
        version: 3,
        description: "snapshots",
        sql: include_str!("../migrations/0003_snapshots.sql"),
    },
    Migration {
        version: 4,
        description: "event schema versions",
        sql: include_str!("../migrations/0004_schema_version.sql"),
    },
    Migration {
        version: 5,
        description: "event ids",
        sql: include_str!("../migrations/0005_event_ids.sql"),
    },
    Migration {
        version: 6,
        description: "checkpoint fences, read model versions",
        sql: include_str!("../migrations/0006_read_models.sql"),
    },
    Migration {
        version: 7,
        description: "reactor timers and dead letters",
        sql: include_str!("../migrations/0007_reactors.sql"),
    },
];

/// The schema version this crate writes and reads.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS sourcery_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT";

/// Attaches the path to a SQLite failure.
pub(crate) trait At<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|error| Error::from_sqlite(path, error))
    }
}

/// Opens the connection that writes, checks that the file is a database the
/// store may use, switches it to WAL and migrates it.
///
/// The checks run before anything is written, so a file that is not a
/// database, or whose schema is newer, is left exactly as it was.
pub(crate) fn open_writer(path: &Path, options: &OpenOptions) -> Result<Connection, Error> {
    // No SQLITE_OPEN_URI: the path is a path, even if it starts with `file:`.
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    connection.busy_timeout(options.busy_timeout).at(path)?;
    // SQLite falls back to read-only when the file cannot be opened for
    // writing; the store cannot work like that.
    if connection.is_readonly(DatabaseName::Main).at(path)? {
        return Err(Error::ReadOnly {
            path: path.to_owned(),
        });
    }
    // Other processes opening the file at the same moment hold its locks
    // while they switch it to WAL and migrate it. SQLite waits for them
    // within the busy timeout for most steps, but not all: asking for WAL on
    // a file that is not in WAL yet, while another connection holds a lock,
    // fails at once with "database is locked". So the whole preparation
    // (every step of it can be run again) is retried until the busy timeout
    // has passed since the first attempt; then it fails with `Error::Busy`.
    let deadline = Instant::now().checked_add(options.busy_timeout);
    let mut pause = FIRST_PAUSE;
    loop {
        match prepare_writer(&mut connection, path, options) {
            Err(Error::Busy(source)) => {
                let remaining = match deadline {
                    Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                    None => Duration::MAX,
                };
                if remaining.is_zero() {
                    return Err(Error::Busy(source));
                }
                std::thread::sleep(pause.min(remaining));
                pause = (pause * 2).min(LONGEST_PAUSE);
                // The steps that use SQLite's busy handler wait no longer
                // than what is left.
                connection
                    .busy_timeout(remaining.min(options.busy_timeout))
                    .at(path)?;
            }
            Err(other) => return Err(other),
            Ok(()) => break,
        }
    }
    connection.busy_timeout(options.busy_timeout).at(path)?;
    Ok(connection)
}

/// The first pause between two attempts to prepare a file other processes
/// hold locked; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// The writer's preparation of the file: every step can run again after a
/// `Busy` failure.
fn prepare_writer(connection: &mut Connection, path: &Path, options: &OpenOptions) -> Result<(), Error> {
    // The first statement reads the file's header: a file that is not a
    // database fails here, untouched.
    check_version(connection, path)?;
    // WAL lets readers work while the writer writes. Where it cannot be used
    // (a file system without shared memory), SQLite keeps its rollback
    // journal: as durable, but readers and the writer then wait for each
    // other, within the busy timeout.
    let _mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .at(path)?;
    connection
        .pragma_update(None, "synchronous", options.synchronous.pragma_value())
        .at(path)?;
    // At `NORMAL` the store checkpoints on a connection of its own (see
    // `wal`); the writer's own checkpoint is then the backstop.
    if options.synchronous == Synchronous::Normal {
        connection
            .pragma_update(None, "wal_autocheckpoint", crate::wal::WRITER_AUTOCHECKPOINT)
            .at(path)?;
    }
    migrate(connection, path)
}

/// Opens the connection that checkpoints the write-ahead log (see `wal`),
/// on a database `open_writer` prepared.
pub(crate) fn open_checkpointer(path: &Path, options: &OpenOptions) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    connection.busy_timeout(options.busy_timeout).at(path)?;
    connection
        .pragma_update(None, "synchronous", options.synchronous.pragma_value())
        .at(path)?;
    Ok(connection)
}

/// Opens a connection that only reads, on a database `open_writer` prepared.
pub(crate) fn open_reader(path: &Path, options: &OpenOptions) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    connection.busy_timeout(options.busy_timeout).at(path)?;
    connection.pragma_update(None, "query_only", true).at(path)?;
    Ok(connection)
}

/// Opens a private in-memory database with the schema: the one connection
/// both writes and reads.
pub(crate) fn open_memory(path: &Path) -> Result<Connection, Error> {
    let mut connection = Connection::open_in_memory().map_err(|error| open_error(path, error))?;
    migrate(&mut connection, path)?;
    Ok(connection)
}

fn open_error(path: &Path, error: rusqlite::Error) -> Error {
    match Error::from_sqlite(path, error) {
        Error::Database(source) | Error::Busy(source) => Error::Open {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

/// The highest migration recorded in the database, `None` for a database
/// the store has never opened.
fn recorded_version(connection: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_table: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sourcery_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    connection.query_row("SELECT max(version) FROM sourcery_migrations", [], |row| {
        row.get(0)
    })
}

fn check_version(connection: &Connection, path: &Path) -> Result<Option<i64>, Error> {
    let found = recorded_version(connection).at(path)?;
    match found {
        Some(found) if found > LATEST_VERSION => Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: LATEST_VERSION,
        }),
        _ => Ok(found),
    }
}

/// Applies the missing migrations in one write transaction.
fn migrate(connection: &mut Connection, path: &Path) -> Result<(), Error> {
    if check_version(connection, path)? == Some(LATEST_VERSION) {
        return Ok(());
    }
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path)?;
    transaction.execute_batch(CREATE_MIGRATIONS_TABLE).at(path)?;
    // Another process may have migrated between the check and the lock.
    let current = check_version(&transaction, path)?.unwrap_or(0);
    for migration in MIGRATIONS.iter().filter(|migration| migration.version > current) {
        transaction.execute_batch(migration.sql).at(path)?;
        transaction
            .execute(
                "INSERT INTO sourcery_migrations (version, description) VALUES (?1, ?2)",
                (migration.version, migration.description),
            )
            .at(path)?;
    }
    transaction.commit().at(path)
}

//! What goes wrong in the PostgreSQL store.

use sourcery_core::schedule::TimerId;
use sourcery_core::store::IdParseError;

/// A failure of the PostgreSQL store.
///
/// Concurrency conflicts are not errors of the store: they come back as
/// [`AppendError::Conflict`](sourcery_core::store::AppendError::Conflict),
/// and batches reusing stored event ids as
/// [`AppendError::IdReused`](sourcery_core::store::AppendError::IdReused).
/// Everything here is either the database failing ([`Error::Database`],
/// worth an alert and perhaps a retry), the store's tables missing, or data
/// in the database that this program cannot read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database or the connection to it failed.
    #[error("the database failed")]
    Database(#[source] sqlx::Error),

    /// The store's tables or functions are not in the schema: run
    /// [`Store::migrate`](crate::Store::migrate).
    #[error("the event store is not set up in schema {schema:?}; run `Store::migrate` first")]
    NotMigrated {
        /// The schema the store was configured with.
        schema: String,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },

    /// A stored aggregate id does not parse into the store's id type.
    #[error(
        "the event at position {position} in a stream of kind {aggregate_kind:?} has an aggregate id that does not parse"
    )]
    AggregateId {
        /// The stream's aggregate kind.
        aggregate_kind: String,
        /// The event's position.
        position: i64,
        /// The parse failure, with the stored text.
        #[source]
        source: IdParseError,
    },

    /// Stored metadata does not decode into the store's metadata type.
    #[error(
        "the metadata of the event at position {position} in stream {aggregate_kind:?}/{aggregate_id:?} does not decode"
    )]
    Metadata {
        /// The stored kind of the event.
        event_kind: String,
        /// The stream's aggregate kind.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// The event's position.
        position: i64,
        /// What the JSON decoder said.
        #[source]
        source: serde_json::Error,
    },

    /// The metadata of an event in a batch does not encode as JSON; nothing
    /// of the batch was written.
    #[error("the metadata of event {index} of the batch does not encode as JSON")]
    EncodeMetadata {
        /// The event's index in the batch, from 0.
        index: usize,
        /// What the JSON encoder said.
        #[source]
        source: serde_json::Error,
    },

    /// An event of a batch has a schema version the store cannot keep:
    /// versions run from 1 to 2,147,483,647 (PostgreSQL's `integer`).
    /// Nothing of the batch was written.
    #[error("event {index} of the batch has schema version {version}; versions run from 1 to 2147483647")]
    InvalidSchemaVersion {
        /// The event's index in the batch, from 0.
        index: usize,
        /// The schema version given.
        version: u32,
    },

    /// A stored schema version is negative (the column's check forbids it:
    /// the row was changed by hand).
    #[error(
        "the event at position {position} in stream {aggregate_kind:?}/{aggregate_id:?} has schema version {found}, which is not a version"
    )]
    StoredSchemaVersion {
        /// The stream's aggregate kind.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// The event's position.
        position: i64,
        /// The stored value.
        found: i32,
        /// Why it does not convert.
        #[source]
        source: std::num::TryFromIntError,
    },

    /// A filter's `after` is negative. Positions start at 1; `after(0)`
    /// selects everything.
    #[error("`after({position})` is out of range: positions start at 1, `after` takes 0 or more")]
    InvalidAfter {
        /// The position given.
        position: i64,
    },

    /// A load combined more distinct filters than one statement can bind
    /// (filters on the same kinds or streams merge, so this takes many
    /// thousands of distinct streams).
    #[error("one load binds at most {max} values, these filters need {count}")]
    TooManyFilters {
        /// The number of values the filters need.
        count: usize,
        /// The limit.
        max: usize,
    },

    /// The schema name is refused: it is not an identifier the store
    /// accepts, or PostgreSQL reserves it (the `pg_` prefix).
    #[error("{name:?} is not a usable schema name: {reason}")]
    InvalidSchemaName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A migration failed; it was rolled back, with every other migration of
    /// the same `migrate` call.
    #[error("migration {version} ({name}) failed")]
    Migration {
        /// The migration's number.
        version: i64,
        /// The migration's file name.
        name: &'static str,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },

    /// A migration recorded in the schema is not the one this release ships
    /// under the same number.
    #[error(
        "migration {version} recorded in schema {schema:?} is not the migration {name} this release ships"
    )]
    MigrationChanged {
        /// The schema.
        schema: String,
        /// The migration's number.
        version: i64,
        /// The file this release ships under that number.
        name: &'static str,
    },

    /// The schema was migrated by a newer release of this crate.
    #[error("schema {schema:?} is at migration {found}, newer than this release knows ({known})")]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The highest migration recorded in the schema.
        found: i64,
        /// The highest migration this release ships.
        known: i64,
    },

    /// An append that expects no exact version (unchecked, or
    /// [`append_expecting_existing`](sourcery_core::store::EventStore::append_expecting_existing))
    /// lost the race for the stream's next sequence numbers to concurrent
    /// appends to the same stream this many times in a row; nothing of the
    /// batch was written. Such appends retry on their own, so this takes
    /// sustained contention on one stream.
    #[error(
        "an append to stream {aggregate_kind:?}/{aggregate_id:?} expecting no exact version lost to concurrent appends {attempts} times"
    )]
    Contended {
        /// The stream's aggregate kind.
        aggregate_kind: String,
        /// The stream's aggregate id, as stored.
        aggregate_id: String,
        /// How many times the append was tried.
        attempts: usize,
    },

    /// The thread that holds a [`Lease`](crate::Lease) (and watches its
    /// connection, whatever the runtime's workers do) could not start.
    #[error("the thread holding a lease could not be started")]
    LeaseThread(#[source] std::io::Error),

    /// A stored timer's state is not one of `pending`, `fired`,
    /// `cancelled` and `failed` (the column's check forbids it: the row was
    /// changed by hand, or the check dropped).
    #[error("timer {timer} has the state {found:?}, which is not a timer state")]
    StoredTimerState {
        /// The timer.
        timer: TimerId,
        /// The stored state.
        found: String,
    },

    /// A stored timer's or dead letter's count of attempts is negative (the
    /// column's check forbids it).
    #[error("a {what} of reactor {reactor:?} has {found} attempts, which is not a count")]
    StoredAttempts {
        /// `"timer"` or `"dead letter"`.
        what: &'static str,
        /// The reactor.
        reactor: String,
        /// The stored value.
        found: i32,
        /// Why it does not convert.
        #[source]
        source: std::num::TryFromIntError,
    },

    /// A number to store does not fit its `integer` column (at most
    /// 2,147,483,647): a dead letter's attempts or its event's schema
    /// version. Nothing was written.
    #[error("the {field} {value} does not fit its column (at most 2147483647)")]
    OutOfRange {
        /// What the number is.
        field: &'static str,
        /// The number given.
        value: u64,
    },

    /// A text to store holds a NUL character, which PostgreSQL's `text`
    /// (and `jsonb`) cannot hold. Nothing was written.
    #[error("the {field} holds a NUL character, which PostgreSQL text cannot hold")]
    Nul {
        /// Which text: `"timer's reactor"`, `"dead letter's error"`, ...
        field: &'static str,
    },

    /// A timer outcome this release of the store does not know (the core's
    /// `TimerOutcome` grew a variant); nothing was written.
    #[error("this release of the PostgreSQL store does not know the timer outcome {outcome}")]
    UnknownTimerOutcome {
        /// The outcome, as `Debug` prints it.
        outcome: String,
    },

    /// The database answered in a way the store's own SQL cannot produce.
    #[error("the database returned an unexpected result: {detail}")]
    Unexpected {
        /// What was unexpected.
        detail: &'static str,
    },
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

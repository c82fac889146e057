//! [`Store`]: the event store on a PostgreSQL pool.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::TryStreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::concurrency::{ConcurrencyConflict, ExpectedVersion};
use sourcery_core::event::{DecodeError, DecodeFailure};
use sourcery_core::store::{
    AppendError, AppendOutcome, AppendResult, EventFilter, EventId, EventStore, GloballyOrdered, JsonCodec,
    NonEmpty, PersistableEvent, StoredEvent, StoredId, TextId, check_batch, check_metadata_json, replay_of,
};
use sqlx::Postgres;
use sqlx::Row;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::types::{Json, Uuid};

use crate::load::{self, Bind};
use crate::schema::Schema;
use crate::subscription::{Live, SubscriptionOptions};
use crate::{Error, migrate};

/// The name of the constraint that refuses a second writer extending a
/// stream from the same version.
const STREAM_SEQUENCE_KEY: &str = "sourcery_events_stream_sequence_key";

/// The name of the unique constraint on event ids (migration 0009): a
/// violation means that ids of the batch are stored already, by a commit
/// the statement waited for if it was in flight.
const EVENT_ID_KEY: &str = "sourcery_events_event_id_key";

/// SQLSTATE `deadlock_detected`: two appends that reuse each other's event
/// ids in opposite orders can each wait for the other's row in the unique
/// index; the server aborts one, which then runs again (and meets the
/// other's committed ids).
const DEADLOCK_DETECTED: &str = "40P01";

/// How many times an unchecked append runs before giving up when concurrent
/// appends to the same stream keep taking the sequence numbers it read.
/// Every lost race is another append's success, so this bounds starvation,
/// not progress.
const UNCHECKED_ATTEMPTS: usize = 64;

/// The PostgreSQL event store.
///
/// `Id` is the aggregate id type, stored as text through [`TextId`]
/// (`String`, `uuid::Uuid`, integers, your own newtypes with `Display` and
/// `FromStr`). `M` is the metadata type, any serde type, stored as JSONB.
/// Positions are `i64`, from 1, one total order across all streams that
/// readers can follow without skipping events ([`GloballyOrdered`]; see the
/// [crate docs](crate#global-order) for how and at what cost).
///
/// Cheap to clone: clones share the pool.
///
/// Call [`migrate`](Self::migrate) once before use (it is idempotent and
/// safe to run from several processes at once). Write events only through
/// the store: rows inserted by hand bypass the version check and the global
/// order argument.
pub struct Store<Id = String, M = serde_json::Value> {
    pool: PgPool,
    sql: Arc<Statements>,
    codec: JsonCodec,
    types: PhantomData<fn() -> (Id, M)>,
    /// Subscriptions' shared state (`LISTEN` connection, notifier).
    live: Arc<Live>,
}

/// The store's SQL, schema-qualified once at construction.
#[derive(Debug)]
struct Statements {
    schema: Schema,
    /// The append of a batch of any size, from arrays.
    append: String,
    /// The appends of batches of 1 to [`VALUES_ROWS`] events, from a
    /// multi-row `VALUES` list (`append_values[n - 1]` for `n` events).
    append_values: Vec<String>,
    /// The stream's transaction advisory lock, taken before an unchecked
    /// append that lost a race runs again.
    stream_lock: String,
    stream_version: String,
    /// What an append that wrote nothing needs to know, on one snapshot:
    /// the stream's version (a row without an event id) and where each of
    /// the batch's ids is stored (`$3`, `uuid[]`), in this stream or not.
    settle: String,
    /// The positions of the events of one stream with these ids (`$3`).
    event_positions: String,
    load_select: String,
    /// The events table, schema-qualified.
    events: String,
    /// Cuts a load at the safe frontier. A sub-select, so the frontier is
    /// computed once per statement, on the statement's snapshot.
    frontier: String,
    safe_position: String,
    frontier_blockers: String,
}

impl Statements {
    fn new(schema: Schema) -> Self {
        let events = schema.qualify("sourcery_events");
        let frontier = schema.qualify("sourcery_frontier");
        let appenders = schema.appender_lock_class();
        Self {
            append: append_statement(&schema, Rows::Arrays),
            append_values: (1..=VALUES_ROWS)
                .map(|rows| append_statement(&schema, Rows::Values(rows)))
                .collect(),
            stream_lock: format!(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, {}))",
                schema.stream_lock_seed()
            ),
            stream_version: format!(
                "SELECT position FROM {events} WHERE aggregate_kind = $1 AND aggregate_id = $2 \
                 ORDER BY position DESC LIMIT 1"
            ),
            settle: format!(
                "SELECT NULL::uuid, (SELECT position FROM {events} WHERE aggregate_kind = $1 AND aggregate_id = $2 \
                                     ORDER BY position DESC LIMIT 1), true \
                 UNION ALL \
                 SELECT event_id, position, aggregate_kind = $1 AND aggregate_id = $2 \
                 FROM {events} WHERE event_id = ANY($3)"
            ),
            event_positions: format!(
                "SELECT event_id, position FROM {events} \
                 WHERE aggregate_kind = $1 AND aggregate_id = $2 AND event_id = ANY($3)"
            ),
            load_select: format!(
                "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata::text, schema_version, \
                        event_id \
                 FROM {events} WHERE "
            ),
            frontier: format!("position <= (SELECT {frontier}())"),
            events: events.clone(),
            safe_position: format!("SELECT {frontier}()"),
            frontier_blockers: format!(
                "WITH frontier AS MATERIALIZED (SELECT {frontier}() AS position), \
                 below AS (SELECT coalesce((SELECT e.tx_id FROM {events} e, frontier f \
                                            WHERE e.position = f.position), '0'::xid8) AS tx_id), \
                 above AS (SELECT e.tx_id FROM {events} e, frontier f WHERE e.position > f.position \
                           ORDER BY e.position LIMIT 1), \
                 running AS (SELECT xid(r.tx_id) AS xid \
                             FROM pg_snapshot_xip(pg_current_snapshot()) AS r(tx_id), below, above \
                             WHERE r.tx_id > below.tx_id AND r.tx_id < above.tx_id \
                               AND (pg_is_in_recovery() OR EXISTS (\
                                   SELECT FROM pg_locks l \
                                   WHERE l.locktype = 'advisory' AND l.classid = {appenders}::oid \
                                     AND l.objsubid = 1 AND l.objid = xid(r.tx_id)::text::oid \
                                     AND l.database = (SELECT d.oid FROM pg_database d \
                                                       WHERE d.datname = current_database())))) \
                 SELECT a.pid, age(a.backend_xid) AS xid_age, \
                        EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)::float8, \
                        a.state, NULL::text \
                 FROM running JOIN pg_stat_activity a ON a.backend_xid = running.xid \
                 UNION ALL \
                 SELECT NULL, age(p.transaction), \
                        EXTRACT(EPOCH FROM clock_timestamp() - p.prepared)::float8, 'prepared', p.gid \
                 FROM running JOIN pg_prepared_xacts p ON p.transaction = running.xid \
                 ORDER BY xid_age DESC"
            ),
            schema,
        }
    }
}

/// Metadata the store serialized itself, sent as `jsonb` without being
/// parsed again on the client.
struct JsonText(String);

impl sqlx::Type<Postgres> for JsonText {
    fn type_info() -> PgTypeInfo {
        <Json<()> as sqlx::Type<Postgres>>::type_info()
    }
}

impl PgHasArrayType for JsonText {
    fn array_type_info() -> PgTypeInfo {
        <Json<()> as PgHasArrayType>::array_type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // jsonb's binary format: version 1, then the text.
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// Batches of at most this many events (a command's, usually) are inserted
/// from a multi-row `VALUES` list with five parameters per event; larger
/// ones from five array parameters. PostgreSQL reads plain parameters more
/// cheaply than it decodes and unnests arrays, and a handful of statement
/// shapes keeps the prepared-statement cache of each connection small.
const VALUES_ROWS: usize = 16;

/// Where an append's rows come from.
#[derive(Debug, Clone, Copy)]
enum Rows {
    /// `$5` kinds (`text[]`), `$6` data (`bytea[]`), `$7` metadata (JSON
    /// `text[]`, or `jsonb[]`), `$8` schema versions (`int4[]`), `$9` event
    /// ids (`uuid[]`).
    Arrays,
    /// This many events, five parameters each from `$5`: kind (`text`),
    /// data (`bytea`), metadata (`jsonb`), schema version (`int4`), event id
    /// (`uuid`).
    Values(usize),
}

/// The one statement of an append (see
/// `docs/adr/0006-postgres-append-statement.md`).
///
/// Parameters: `$1` aggregate kind, `$2` aggregate id, `$3` what the stream
/// must be at (`'any'`: anything; `'exact'`: its version is `$4`, where
/// `NULL` is a stream with no events; `'exists'`: it has events), `$4` the
/// expected version, then the events as `rows` says. Returns the position
/// of each event written: no row when the check failed.
///
/// An `INSERT … SELECT … RETURNING` without CTEs: every node, tuple store
/// and expression of the plan is set up and torn down on each append, and
/// PostgreSQL's heap grew and shrank on every append when there were many
/// (the first shape of this statement had seven materialized CTEs and an
/// aggregate; each CTE costs a 16 kB tuple store).
///
/// The `SELECT` reads `head`, one row, built by subqueries kept apart by
/// `OFFSET 0`, so that each runs when the one around it pulls its row:
///
/// 1. the stream's last event, through the unique
///    `(kind, id, stream_sequence)` index: the last sequence number (0 for
///    a new stream), and whether the version check passes (after refusing a
///    transaction that already has an id);
/// 2. only when it passes (nothing else runs otherwise: no position or
///    transaction id is consumed), the critical section: under the schema's
///    session advisory lock the transaction id is assigned and the batch's
///    positions are drawn, so position order equals transaction id order
///    among appends (ADR 0002); the lock is released before the first row
///    is inserted. Before drawing, the append takes the schema's appender
///    lock (shared, keyed by its transaction id, held until it ends), which
///    is what the frontier waits for.
///
/// The rows come from a `VALUES` list joined `LATERAL` to `head` (so `head`
/// is the outer side of the join and runs once), or from set-returning
/// functions in the select list, walked in step. `stream_sequence`
/// continues from the last; the unique index refuses a writer whose snapshot
/// missed a concurrent append to the stream (a conflict, or a retry for
/// appends that expect no exact version). Each row carries its event id;
/// the unique index on ids refuses a batch whose ids are stored (after
/// waiting for the writer of an id still in flight): the store then finds
/// out whether the batch is a replay.
fn append_statement(schema: &Schema, rows: Rows) -> String {
    let events = schema.qualify("sourcery_events");
    // Renamed by migration 0007: appends of older releases fail on the old
    // name instead of appending without the appender lock.
    let sequence = schema.qualify("sourcery_positions");
    let refuse = schema.qualify("sourcery_refuse_written_transaction");
    let lock = schema.order_lock();
    // The batch's positions, drawn in order: one `nextval` per event (an
    // array constructor's elements are evaluated first to last).
    let draw = format!("nextval('{sequence}'::regclass)");
    // Taken before the positions are drawn and held until the transaction
    // ends: the frontier waits only for transactions that hold it (ADR 0002).
    let register = format!(
        "pg_advisory_xact_lock_shared({} | xid(pg_current_xact_id())::text::bigint) IS NOT NULL",
        schema.appender_lock_class() << 32
    );
    let positions = match rows {
        Rows::Arrays => format!(
            "ARRAY(SELECT {draw} FROM (SELECT generate_series(1, cardinality($5::text[])) OFFSET 0) AS n)"
        ),
        Rows::Values(count) => format!("ARRAY[{}]", vec![draw.as_str(); count].join(", ")),
    };
    let head = format!(
        "(SELECT drawn.tx_id, drawn.positions, drawn.sequence, \
                 CASE WHEN drawn.positions IS NOT NULL THEN pg_advisory_unlock({lock}) END AS released \
          FROM (SELECT CASE WHEN locked.passed THEN pg_current_xact_id() END AS tx_id, \
                       CASE WHEN locked.passed AND {register} THEN {positions} END AS positions, \
                       locked.sequence \
                FROM (SELECT CASE WHEN checked.passed THEN pg_advisory_lock({lock}) END AS locked, \
                             checked.passed, checked.sequence \
                      FROM (SELECT coalesce(last.stream_sequence, 0) AS sequence, \
                                   (CASE $3::text WHEN 'any' THEN true \
                                                  WHEN 'exact' THEN last.position IS NOT DISTINCT FROM $4 \
                                                  WHEN 'exists' THEN last.position IS NOT NULL END) \
                                   AND CASE WHEN pg_current_xact_id_if_assigned() IS NULL THEN true \
                                            ELSE {refuse}() END AS passed \
                            FROM (SELECT) AS one LEFT JOIN LATERAL (\
                                SELECT e.position, e.stream_sequence FROM {events} e \
                                WHERE e.aggregate_kind = $1 AND e.aggregate_id = $2 \
                                ORDER BY e.stream_sequence DESC LIMIT 1) AS last ON true \
                            OFFSET 0) AS checked \
                      OFFSET 0) AS locked \
                OFFSET 0) AS drawn \
          WHERE drawn.positions IS NOT NULL \
          OFFSET 0) AS head"
    );
    let select = match rows {
        Rows::Arrays => format!(
            "SELECT unnest(head.positions), head.tx_id, $1, $2, \
                    generate_series(head.sequence + 1, head.sequence + cardinality(head.positions)), \
                    unnest($5::text[]), unnest($8::int4[]), unnest($6::bytea[]), unnest($7::jsonb[]), \
                    unnest($9::uuid[]) \
             FROM {head}"
        ),
        Rows::Values(count) => {
            let values: Vec<String> = (0..count)
                .map(|row| {
                    let first = 5 + 5 * row;
                    format!(
                        "({}, head.positions[{}], ${first}::text, ${}::bytea, ${}::jsonb, ${}::int4, ${}::uuid)",
                        row + 1,
                        row + 1,
                        first + 1,
                        first + 2,
                        first + 3,
                        first + 4
                    )
                })
                .collect();
            format!(
                "SELECT v.position, head.tx_id, $1, $2, head.sequence + v.ordinal, v.kind, v.schema_version, \
                        v.data, v.metadata, v.event_id \
                 FROM {head} \
                 CROSS JOIN LATERAL (VALUES {}) \
                     AS v(ordinal, position, kind, data, metadata, schema_version, event_id)",
                values.join(", ")
            )
        }
    };
    format!(
        "INSERT INTO {events} \
             (position, tx_id, aggregate_kind, aggregate_id, stream_sequence, event_kind, schema_version, \
              data, metadata, event_id) \
         {select} \
         RETURNING position"
    )
}

impl<Id, M> Store<Id, M> {
    /// A store on `pool`, with its tables in the `public` schema.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self::from_parts(pool, Schema::public())
    }

    /// A store on `pool`, with its tables in `schema` (created by
    /// [`migrate`](Self::migrate) if missing). Several stores can share a
    /// database in different schemas; each has its own log and order, and
    /// its followers wait only for its own appends in flight, never for
    /// transactions of other schemas or other databases (see the
    /// [crate docs](crate#global-order)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`] unless the name is 1 to 63 ASCII
    /// letters, digits and `_`, not starting with a digit nor with `pg_`
    /// (PostgreSQL reserves that prefix for system schemas).
    pub fn with_schema(pool: PgPool, schema: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::from_parts(pool, Schema::new(schema.into())?))
    }

    /// Connects a pool to `url` (`postgres://user@host/database`) with
    /// sqlx's default pool options, for a store in the `public` schema.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the URL is invalid or the server refuses.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self::new(PgPool::connect(url).await?))
    }

    fn from_parts(pool: PgPool, schema: Schema) -> Self {
        let live = Arc::new(Live::new(&schema, SubscriptionOptions::default()));
        Self {
            live,
            pool,
            sql: Arc::new(Statements::new(schema)),
            codec: JsonCodec,
            types: PhantomData,
        }
    }

    /// The pool the store runs on.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The store with `options` for its subscriptions (poll interval,
    /// notifications, the stall warning). Call it before subscribing: the
    /// store gets fresh subscription state, which its clones made from now
    /// on share.
    #[must_use]
    pub fn with_subscription_options(mut self, options: SubscriptionOptions) -> Self {
        self.live = Arc::new(Live::new(&self.sql.schema, options));
        self
    }

    /// Subscriptions' shared state.
    pub(crate) fn live(&self) -> &Live {
        &self.live
    }

    /// The schema the store's tables live in.
    #[must_use]
    pub fn schema(&self) -> &str {
        self.sql.schema.name()
    }

    /// Creates or upgrades the store's tables and functions: applies the
    /// migrations the schema lacks, in one transaction, and returns their
    /// numbers (empty when the schema is up to date).
    ///
    /// Safe to call on every start and from several processes at once: a
    /// transaction advisory lock keyed by the schema name lets one apply
    /// while the others wait, then find nothing to do.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] when a migration fails (nothing is applied then),
    /// [`Error::SchemaTooNew`] when a newer release migrated the schema,
    /// [`Error::MigrationChanged`] when a recorded migration differs from the
    /// one shipped, [`Error::Database`] when the database fails.
    pub async fn migrate(&self) -> Result<Vec<i64>, Error> {
        migrate::run(&self.pool, &self.sql.schema).await
    }

    /// Applies the migrations the schema lacks up to number `last`
    /// (included), leaving the schema as the release that shipped `last`
    /// left it. For tests of upgrades from an older release; not part of
    /// the stable API.
    ///
    /// # Errors
    ///
    /// As [`migrate`](Self::migrate).
    #[doc(hidden)]
    pub async fn migrate_up_to(&self, last: i64) -> Result<Vec<i64>, Error> {
        migrate::run_up_to(&self.pool, &self.sql.schema, last).await
    }

    /// The safe frontier: the highest position below which nothing more will
    /// ever commit, so every event at or below it is visible now. `None`
    /// while nothing is.
    ///
    /// This is where a subscription can safely resume; a load cut at the
    /// frontier (see the [crate docs](crate#which-loads-are-cut-at-the-frontier))
    /// never returns an event above it.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the tables are missing.
    pub async fn safe_position(&self) -> Result<Option<i64>, Error> {
        let position: i64 = sqlx::query_scalar(&self.sql.safe_position)
            .fetch_one(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok((position > 0).then_some(position))
    }

    /// The transactions that hold the safe frontier back, oldest first: the
    /// running appends of this schema (holders of its appender lock) that
    /// may own the first missing position above the frontier, prepared
    /// transactions included. Transactions of other schemas and databases
    /// are never listed: they do not hold the frontier. Empty when nothing
    /// holds it back.
    ///
    /// Appends commit within one call, so an entry that stays is a
    /// transaction kept open around an append, and explains a stalled
    /// projection. Ending it (commit, rollback or
    /// `pg_terminate_backend(pid)`) moves the frontier on.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database fails.
    pub async fn frontier_blockers(&self) -> Result<Vec<FrontierBlocker>, Error> {
        let rows = sqlx::query(&self.sql.frontier_blockers)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        rows.iter()
            .map(|row| {
                let seconds: Option<f64> = row.try_get(2)?;
                Ok(FrontierBlocker {
                    pid: row.try_get(0)?,
                    transaction_id_age: row.try_get(1)?,
                    running_for: seconds.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
                    state: row.try_get(3)?,
                    prepared_as: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The statement the store runs for an append of any size: `$1`
    /// aggregate kind, `$2` id, `$3` the check (`'any'`, `'exact'` or
    /// `'exists'`), `$4` the expected version for `'exact'` (`NULL`: a
    /// stream with no events), `$5` kinds (`text[]`), `$6` data
    /// (`bytea[]`), `$7` metadata (JSON `text[]` or `jsonb[]`), `$8` schema
    /// versions (`int4[]`), `$9` event ids (`uuid[]`); it returns the
    /// position of each event written (no row if the check failed). For
    /// tests that freeze an append inside a transaction of their own; not
    /// part of the stable API.
    #[doc(hidden)]
    #[must_use]
    pub fn append_statement(&self) -> &str {
        &self.sql.append
    }

    /// The channel the store's `NOTIFY`s go to, for tests that overhear
    /// them; not part of the stable API.
    #[doc(hidden)]
    #[must_use]
    pub fn notification_channel(&self) -> &str {
        self.live.channel()
    }

    /// The validated schema, for the crate's other stores on the same tables.
    pub(crate) fn schema_definition(&self) -> &Schema {
        &self.sql.schema
    }

    /// Maps a database error, telling missing tables apart.
    fn database(&self, error: sqlx::Error) -> Error {
        database_error(self.schema(), error)
    }
}

/// Maps a database error of a store in `schema`, telling missing tables
/// apart.
pub(crate) fn database_error(schema: &str, error: sqlx::Error) -> Error {
    let missing = error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| {
            // undefined_table, undefined_function, invalid_schema_name
            matches!(code.as_ref(), "42P01" | "42883" | "3F000")
        });
    if missing {
        Error::NotMigrated {
            schema: schema.to_owned(),
            source: error,
        }
    } else {
        Error::Database(error)
    }
}

/// A transaction holding back the safe frontier, from
/// [`Store::frontier_blockers`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FrontierBlocker {
    /// The backend's process id (`None` for a prepared transaction).
    pub pid: Option<i32>,
    /// How many transaction ids were assigned since this one's.
    pub transaction_id_age: Option<i32>,
    /// How long the transaction has run (or been prepared), when known.
    pub running_for: Option<std::time::Duration>,
    /// The backend's state (`active`, `idle in transaction`, ...), or
    /// `prepared`; `None` when the role may not see it.
    pub state: Option<String>,
    /// A prepared transaction's global id.
    pub prepared_as: Option<String>,
}

impl<Id, M> Clone for Store<Id, M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: Arc::clone(&self.sql),
            codec: self.codec,
            types: PhantomData,
            live: Arc::clone(&self.live),
        }
    }
}

impl<Id, M> fmt::Debug for Store<Id, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::Store")
            .field("schema", &self.schema())
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<Id, M> Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// One statement, one round trip, in its own transaction (see
    /// [`append_statement`]).
    ///
    /// A unique violation on the stream's sequence means a concurrent append
    /// extended the stream after this statement's snapshot: a conflict for
    /// an append expecting an exact version (unless the batch turns out to
    /// be stored: a replay); the others run again on a fresh snapshot. A
    /// unique violation on the event ids, or a version check that failed,
    /// sends the store to [`settle`](Self::settle) the append: a replay, an
    /// id reuse or a conflict.
    async fn append_batch(
        &self,
        aggregate_kind: &str,
        aggregate_id: &Id,
        expected: ExpectedVersion<i64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        let id = aggregate_id.to_text();
        // `text` and `jsonb` cannot hold NUL: refuse it here, typed, rather
        // than have the server fail the statement. Duplicate ids too.
        check_batch(aggregate_kind, &id, &events)?;
        let columns = Columns::of(&events)?;
        let (event_ids, uuids) = (&columns.event_ids, &columns.uuids);
        let (mode, version) = match expected {
            ExpectedVersion::Any => ("any", None),
            ExpectedVersion::NoStream => ("exact", None),
            ExpectedVersion::Exact(version) => ("exact", Some(version)),
            ExpectedVersion::StreamExists => ("exists", None),
        };
        // Whether losing the race for the next sequence numbers is a
        // conflict: for an exact version, yes; a stream that has events
        // keeps them, so for the others the append runs again.
        let exact = matches!(expected, ExpectedVersion::NoStream | ExpectedVersion::Exact(_));
        let statement = self.sql.append_values.get(events.len() - 1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut connection = self
                .pool
                .acquire()
                .await
                .map_err(|error| AppendError::Store(self.database(error)))?;
            let append = sqlx::query(statement.unwrap_or(&self.sql.append))
                .bind(aggregate_kind)
                .bind(&id)
                .bind(mode)
                .bind(version);
            let append = columns.bind(append, statement.is_some());
            // An append that lost a race queues on the stream's lock before
            // it runs again: writers that lost take turns instead of racing
            // each other (and drawing positions) again.
            let outcome = if attempts > 1 {
                self.append_queued(&mut connection, aggregate_kind, &id, append)
                    .await
            } else {
                append.fetch_all(&mut *connection).await
            };
            // Every settling read below runs on the append's own connection:
            // it waits for the server to finish aborting a refused
            // statement's transaction, which until then holds the appender
            // lock and the positions it drew, so readers cut at the safe
            // frontier see every commit after them once the caller has its
            // answer.
            let rows = match outcome {
                Ok(rows) => rows,
                Err(error) if violates(&error, EVENT_ID_KEY) => {
                    // Ids of the batch are stored (the statement waited for
                    // their writer to commit): a replay or a reuse.
                    match self
                        .settle(&mut connection, aggregate_kind, &id, event_ids, uuids)
                        .await?
                    {
                        Settled::Stored(outcome) => return outcome,
                        // Gone again (rows deleted by hand): run again.
                        Settled::New { .. } if attempts < UNCHECKED_ATTEMPTS => continue,
                        Settled::New { .. } => {
                            return Err(AppendError::Store(Error::Unexpected {
                                detail: "the event id index refused ids that are not stored",
                            }));
                        }
                    }
                }
                Err(error) if violates(&error, STREAM_SEQUENCE_KEY) => {
                    if exact {
                        // Another writer extended the stream from the same
                        // version: the database refused the second. Unless
                        // that writer stored this very batch (a retry racing
                        // its first attempt), a conflict.
                        return self
                            .settle(&mut connection, aggregate_kind, &id, event_ids, uuids)
                            .await?
                            .or_conflict(expected);
                    }
                    drop(connection);
                    if attempts < UNCHECKED_ATTEMPTS {
                        continue;
                    }
                    return Err(AppendError::Store(Error::Contended {
                        aggregate_kind: aggregate_kind.to_owned(),
                        aggregate_id: id,
                        attempts,
                    }));
                }
                Err(error) if is_deadlock(&error) && attempts < UNCHECKED_ATTEMPTS => {
                    // Nothing was written; the other append has committed
                    // or will: the next run meets its ids.
                    drop(connection);
                    continue;
                }
                Err(error) => {
                    // The statement may have failed inside its critical
                    // section (a cancellation, say) and kept the session's
                    // order lock: the connection must not serve anyone else.
                    connection.close_on_drop();
                    return Err(AppendError::Store(self.database(error)));
                }
            };
            let mut last_position = None;
            for row in &rows {
                let position: i64 = row.try_get(0).map_err(|e| AppendError::Store(e.into()))?;
                last_position = last_position.max(Some(position));
            }
            if let Some(last_position) = last_position {
                drop(connection);
                self.live.appended(&self.pool);
                return Ok(AppendResult::new(last_position));
            }
            if matches!(expected, ExpectedVersion::Any) {
                return Err(AppendError::Store(Error::Unexpected {
                    detail: "an unchecked append wrote nothing",
                }));
            }
            // The version check on the statement's snapshot failed. A retry
            // whose first attempt committed sees the stream moved by its own
            // batch: look for the ids before calling it a conflict.
            return self
                .settle(&mut connection, aggregate_kind, &id, event_ids, uuids)
                .await?
                .or_conflict(expected);
        }
    }

    /// Where the stream stands and where the batch's ids are stored, read
    /// on `connection` in one statement, after an append wrote nothing; and
    /// what that makes of the append ([`replay_of`]).
    async fn settle(
        &self,
        connection: &mut PgConnection,
        aggregate_kind: &str,
        aggregate_id: &str,
        event_ids: &[EventId],
        uuids: &[Uuid],
    ) -> Result<Settled, AppendError<i64, Error>> {
        let store = |error: sqlx::Error| AppendError::Store(self.database(error));
        let rows = sqlx::query(&self.sql.settle)
            .bind(aggregate_kind)
            .bind(aggregate_id)
            .bind(uuids)
            .fetch_all(connection)
            .await
            .map_err(store)?;
        let mut version = None;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let event_id: Option<Uuid> = row.try_get(0).map_err(store)?;
            let position: Option<i64> = row.try_get(1).map_err(store)?;
            let here: bool = row.try_get(2).map_err(store)?;
            match (event_id, position) {
                (None, position) => version = position,
                (Some(event_id), Some(position)) => {
                    let stored = if here {
                        StoredId::InStream(position)
                    } else {
                        StoredId::Elsewhere
                    };
                    found.insert(event_id, stored);
                }
                (Some(_), None) => {
                    return Err(AppendError::Store(Error::Unexpected {
                        detail: "a stored event without a position",
                    }));
                }
            }
        }
        let stored: Vec<StoredId<i64>> = uuids
            .iter()
            .map(|uuid| found.get(uuid).copied().unwrap_or(StoredId::Missing))
            .collect();
        Ok(match replay_of(event_ids, &stored) {
            Ok(Some(last)) => Settled::Stored(Ok(AppendResult::replay(last))),
            Err(reused) => Settled::Stored(Err(AppendError::IdReused(reused))),
            Ok(None) => Settled::New { version },
        })
    }

    /// Runs `append` in a transaction that first takes the stream's
    /// transaction advisory lock. The append's statement takes its snapshot
    /// after the lock is granted, so it sees every append of the writers
    /// that held the lock before; only a first attempt running at the same
    /// moment can still take its sequence numbers.
    async fn append_queued(
        &self,
        connection: &mut PgConnection,
        aggregate_kind: &str,
        aggregate_id: &str,
        append: Query<'_, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut transaction = sqlx::Connection::begin(connection).await?;
        sqlx::query(&self.sql.stream_lock)
            .bind(aggregate_kind)
            .bind(aggregate_id)
            .execute(&mut *transaction)
            .await?;
        let rows = append.fetch_all(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(rows)
    }

    async fn version_of(&self, aggregate_kind: &str, aggregate_id: &str) -> Result<Option<i64>, Error> {
        sqlx::query_scalar(&self.sql.stream_version)
            .bind(aggregate_kind)
            .bind(aggregate_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| self.database(error))
    }
}

impl<Id, M> Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// One statement for all filters, streamed row by row into the result,
    /// at most `limit` events. Cut at the safe frontier when the plan asks
    /// for it or `cut` does (subscriptions always cut).
    pub(crate) async fn load(
        &self,
        filters: &[EventFilter<Id, i64>],
        limit: Option<usize>,
        cut: bool,
    ) -> Result<Vec<StoredEvent<Id, i64, M>>, Error> {
        let Some(plan) = load::plan(filters, cut)? else {
            return Ok(Vec::new());
        };
        let predicate = plan.predicate.replace(load::EVENTS, &self.sql.events);
        let sql = if plan.frontier || cut {
            format!(
                "{}({}) AND {} ORDER BY position",
                self.sql.load_select, predicate, self.sql.frontier
            )
        } else {
            format!("{}{} ORDER BY position", self.sql.load_select, predicate)
        };
        let limit = limit.map(|limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let sql = match limit {
            Some(_) => format!("{sql} LIMIT ${}", plan.binds.len() + 1),
            None => sql,
        };
        let mut query = sqlx::query(&sql);
        for bind in plan.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Texts(texts) => query.bind(texts),
                Bind::Position(position) => query.bind(position),
            };
        }
        if let Some(limit) = limit {
            query = query.bind(limit);
        }
        let mut rows = query.fetch(&self.pool);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(|error| self.database(error))? {
            events.push(decode(&row)?);
        }
        Ok(events)
    }
}

/// A batch's columns, encoded once for every run of its append.
struct Columns<'a> {
    kinds: Vec<&'a str>,
    data: Vec<&'a [u8]>,
    metadata: Vec<JsonText>,
    versions: Vec<i32>,
    event_ids: Vec<EventId>,
    uuids: Vec<Uuid>,
}

impl<'a> Columns<'a> {
    /// The columns of `events`; refuses metadata that does not encode or
    /// holds NUL, and schema versions the column cannot hold.
    fn of<M: Serialize>(events: &'a NonEmpty<PersistableEvent<M>>) -> Result<Self, AppendError<i64, Error>> {
        let mut columns = Self {
            kinds: Vec::with_capacity(events.len()),
            data: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            event_ids: Vec::with_capacity(events.len()),
            uuids: Vec::with_capacity(events.len()),
        };
        for (index, event) in events.iter().enumerate() {
            columns.kinds.push(event.kind.as_str());
            columns.data.push(event.data.as_slice());
            let version = schema_version_column(index, event.schema_version).map_err(AppendError::Store)?;
            columns.versions.push(version);
            let json = serde_json::to_string(&event.metadata)
                .map_err(|source| AppendError::Store(Error::EncodeMetadata { index, source }))?;
            check_metadata_json(index, &json)?;
            columns.metadata.push(JsonText(json));
            columns.event_ids.push(event.id);
            columns.uuids.push(*event.id.as_uuid());
        }
        Ok(columns)
    }

    /// Binds the events to `append` after its first four parameters: five
    /// per event for the `VALUES` statement (`values`), five arrays
    /// otherwise.
    fn bind<'q>(
        &'q self,
        mut append: Query<'q, Postgres, PgArguments>,
        values: bool,
    ) -> Query<'q, Postgres, PgArguments> {
        if values {
            let rows = self.kinds.iter().zip(&self.data).zip(&self.metadata);
            for (((kind, data), metadata), (version, uuid)) in rows.zip(self.versions.iter().zip(&self.uuids))
            {
                append = append
                    .bind(*kind)
                    .bind(*data)
                    .bind(metadata)
                    .bind(*version)
                    .bind(*uuid);
            }
            append
        } else {
            append
                .bind(&self.kinds)
                .bind(&self.data)
                .bind(&self.metadata)
                .bind(&self.versions)
                .bind(&self.uuids)
        }
    }
}

/// What an append that wrote nothing learnt from [`Store::settle`].
enum Settled {
    /// Ids of the batch are stored: the append's outcome is a replay, or an
    /// id reuse.
    Stored(AppendOutcome<i64, Error>),
    /// None of the batch's ids is stored; the stream is at `version`.
    New { version: Option<i64> },
}

impl Settled {
    /// The outcome of an append refused by its version check: the batch's
    /// own, if its ids are stored, otherwise the conflict.
    fn or_conflict(self, expected: ExpectedVersion<i64>) -> AppendOutcome<i64, Error> {
        match self {
            Self::Stored(outcome) => outcome,
            // The check found the stream empty (it has no events to lose).
            Self::New { .. } if expected == ExpectedVersion::StreamExists => {
                Err(ConcurrencyConflict::new(expected, None).into())
            }
            Self::New { version } => Err(ConcurrencyConflict::new(expected, version).into()),
        }
    }
}

/// Whether the server aborted the statement to break a deadlock.
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == DEADLOCK_DETECTED)
}

/// Whether `error` is a unique violation of the constraint `name`.
fn violates(error: &sqlx::Error, name: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(name))
}

/// An event's schema version as the `integer` column holds it: 1 to
/// `i32::MAX` (0 is refused before, by `check_batch`; the column's check
/// refuses it too).
fn schema_version_column(index: usize, version: u32) -> Result<i32, Error> {
    match i32::try_from(version) {
        Ok(column) if column > 0 => Ok(column),
        _ => Err(Error::InvalidSchemaVersion { index, version }),
    }
}

/// Decodes one row of a load, or the event of a dead letter: the first
/// eight columns, in the order `load_select` selects them.
pub(crate) fn decode<Id: TextId, M: DeserializeOwned>(row: &PgRow) -> Result<StoredEvent<Id, i64, M>, Error> {
    let position: i64 = row.try_get(0)?;
    let aggregate_kind: String = row.try_get(1)?;
    let id: &str = row.try_get(2)?;
    let kind: String = row.try_get(3)?;
    let data: Vec<u8> = row.try_get(4)?;
    let metadata: &str = row.try_get(5)?;
    let schema_version: i32 = row.try_get(6)?;
    let event_id: Uuid = row.try_get(7)?;
    let schema_version = match u32::try_from(schema_version) {
        Ok(schema_version) => schema_version,
        Err(source) => {
            return Err(Error::StoredSchemaVersion {
                aggregate_kind,
                aggregate_id: id.to_owned(),
                position,
                found: schema_version,
                source,
            });
        }
    };
    let metadata = match serde_json::from_str(metadata) {
        Ok(metadata) => metadata,
        Err(source) => {
            return Err(Error::Metadata {
                event_kind: kind,
                aggregate_kind,
                aggregate_id: id.to_owned(),
                position,
                source,
            });
        }
    };
    let aggregate_id = match Id::from_text(id) {
        Ok(aggregate_id) => aggregate_id,
        Err(source) => {
            return Err(Error::AggregateId {
                aggregate_kind,
                position,
                source,
            });
        }
    };
    Ok(StoredEvent {
        id: EventId::from_uuid(event_id),
        aggregate_kind,
        aggregate_id,
        kind,
        position,
        schema_version,
        data,
        metadata,
    })
}

impl<Id, M> EventStore for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Id = Id;
    type Position = i64;
    type Error = Error;
    type Codec = JsonCodec;
    type Metadata = M;

    /// Stored metadata that does not decode into `M` is a decode error of
    /// that event; everything else is the store failing.
    fn into_decode_error(error: Error) -> Result<DecodeError<Id, i64>, Error> {
        let Error::Metadata {
            event_kind,
            aggregate_kind,
            aggregate_id,
            position,
            source,
        } = error
        else {
            return Err(error);
        };
        match Id::from_text(&aggregate_id) {
            Ok(id) => Ok(DecodeError {
                event_kind,
                aggregate_kind,
                aggregate_id: id,
                position,
                reason: DecodeFailure::Metadata(Box::new(source)),
            }),
            Err(_) => Err(Error::Metadata {
                event_kind,
                aggregate_kind,
                aggregate_id,
                position,
                source,
            }),
        }
    }

    fn codec(&self) -> &JsonCodec {
        &self.codec
    }

    /// Reads every committed event of the stream (no frontier): a writer
    /// sees its own commits.
    async fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
    ) -> Result<Option<i64>, Error> {
        let id = aggregate_id.to_text();
        // No stream holds NUL in its name (appends refuse it), and the
        // server would refuse it as a parameter.
        if aggregate_kind.contains('\0') || id.contains('\0') {
            return Ok(None);
        }
        self.version_of(aggregate_kind, &id).await
    }

    async fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        expected_version: Option<i64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        let expected = expected_version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
        self.append_batch(aggregate_kind, aggregate_id, expected, events)
            .await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        self.append_batch(aggregate_kind, aggregate_id, ExpectedVersion::NoStream, events)
            .await
    }

    /// One statement, as [`append`](EventStore::append): its version check
    /// asks only that the stream has events. The batch is checked first;
    /// a replay is recognised as by `append`.
    async fn append_expecting_existing<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        self.append_batch(
            aggregate_kind,
            aggregate_id,
            ExpectedVersion::StreamExists,
            events,
        )
        .await
    }

    /// One indexed query on the stream and the ids, every committed event
    /// seen (no frontier).
    async fn event_positions<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        ids: &'a [EventId],
    ) -> Result<Vec<Option<i64>>, Error> {
        let id = aggregate_id.to_text();
        // No stream holds NUL in its name (appends refuse it), and the
        // server would refuse it as a parameter.
        if ids.is_empty() || aggregate_kind.contains('\0') || id.contains('\0') {
            return Ok(vec![None; ids.len()]);
        }
        let uuids: Vec<Uuid> = ids.iter().map(|event_id| *event_id.as_uuid()).collect();
        let rows = sqlx::query(&self.sql.event_positions)
            .bind(aggregate_kind)
            .bind(&id)
            .bind(&uuids)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let event_id: Uuid = row.try_get(0)?;
            let position: i64 = row.try_get(1)?;
            found.insert(event_id, position);
        }
        Ok(uuids.iter().map(|uuid| found.get(uuid).copied()).collect())
    }

    /// One statement for all filters, streamed row by row into the result.
    /// Cut at the safe frontier unless every filter is a plain stream filter
    /// (see the [crate docs](crate#which-loads-are-cut-at-the-frontier)).
    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<Id, i64>],
    ) -> Result<Vec<StoredEvent<Id, i64, M>>, Error> {
        self.load(filters, None, false).await
    }
}

impl<Id, M> GloballyOrdered for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
}

//! [`ReactorStore`]: reactors' timers and dead letters in the store's schema.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::reactor::{self, DeadLetter};
use sourcery_core::schedule::{NewTimer, Timer, TimerId, TimerOutcome, TimerState};
use sourcery_core::store::{TextId, check_metadata_json};
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Uuid;

use crate::timestamp::Timestamp;
use crate::{Error, Store};

/// Reactors' timers and dead letters in PostgreSQL: the tables
/// `sourcery_timers` and `sourcery_dead_letters` of the event store's
/// schema, created by [`Store::migrate`] (migration 0011). Implements
/// core's [`ReactorStore<Id, i64, M>`](sourcery_core::reactor::ReactorStore)
/// for the reactor runner.
///
/// Built from the [`Store`] whose events the reactors follow
/// ([`ReactorStore::new`]), on its pool and in its schema, with its id and
/// metadata types: a dead letter's event is stored as the events table
/// stores it (the id as text, the metadata as JSONB). Cheap to clone:
/// clones share the pool.
///
/// Every method is one statement, in its own transaction: `schedule`
/// inserts a whole batch of timers with one `INSERT … SELECT FROM UNNEST`
/// (one round trip whatever its size) that skips the ids stored already,
/// so processes that schedule the same timers at once store each once;
/// `finish` changes a timer only while it is pending, so that of two
/// runners firing one timer (an old lease holder waking up) one records
/// its outcome. Times keep microseconds.
///
/// PostgreSQL's `text` cannot hold a NUL character: a timer or dead letter
/// with one in its texts is refused ([`Error::Nul`]), and a reactor name or
/// key with one selects nothing.
///
/// ```no_run
/// use chrono::Utc;
/// use sourcery_core::reactor::ReactorStore as _;
/// use sourcery_core::schedule::{NewTimer, TimerId};
/// use sourcery_postgres::{ReactorStore, Store};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Store = Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// store.migrate().await?;
/// let reactors = ReactorStore::new(&store);
/// let timer = NewTimer {
///     id: TimerId::from_uuid(uuid::Uuid::now_v7()),
///     reactor: "reminders".into(),
///     key: "payment-deadline/order-7".into(),
///     due: Utc::now(),
///     command: "invoice/invoice.remind".into(),
///     payload: br#"{"invoice":"INV-7"}"#.to_vec(),
///     cause: 41,
/// };
/// reactors.schedule(vec![timer.clone()]).await?;
/// reactors.schedule(vec![timer]).await?; // stored once
/// assert_eq!(reactors.due("reminders", Utc::now(), 10).await?.len(), 1);
/// // Only a later event's reaction cancels it.
/// assert_eq!(reactors.cancel("reminders", "payment-deadline/order-7", 41).await?, 0);
/// assert_eq!(reactors.cancel("reminders", "payment-deadline/order-7", 42).await?, 1);
/// # Ok(())
/// # }
/// ```
pub struct ReactorStore<Id = String, M = serde_json::Value> {
    pool: PgPool,
    sql: Arc<Statements>,
    types: PhantomData<fn() -> (Id, M)>,
}

/// The reactor store's SQL, schema-qualified once at construction.
#[derive(Debug)]
struct Statements {
    schema: String,
    schedule: String,
    cancel: String,
    due: String,
    next_due: String,
    fired: String,
    retry: String,
    failed: String,
    timers: String,
    retry_timer: String,
    cancel_timer: String,
    park: String,
    dead_letters: String,
    retry_requests: String,
    request_retry: String,
    discard: String,
}

/// A timer's columns, in the order [`timer`] reads them.
const TIMER_COLUMNS: &str = "id, reactor, key, due, command, payload, cause, state, attempts, last_error";

/// A count of attempts plus one, saturating at the column's maximum (the
/// in-memory store saturates at `u32::MAX`; no timer gets near either).
const ATTEMPT: &str = "attempts = CASE WHEN attempts < 2147483647 THEN attempts + 1 ELSE attempts END";

impl Statements {
    fn new(schema: &str) -> Self {
        let timers = format!("\"{schema}\".sourcery_timers");
        let letters = format!("\"{schema}\".sourcery_dead_letters");
        let pending = "WHERE id = $1 AND state = 'pending'";
        Self {
            schedule: format!(
                "INSERT INTO {timers} (id, reactor, key, due, command, payload, cause) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
                                      $6::bytea[], $7::int8[]) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            cancel: format!(
                "UPDATE {timers} SET state = 'cancelled' \
                 WHERE reactor = $1 AND key = $2 AND state = 'pending' AND cause < $3"
            ),
            due: format!(
                "SELECT {TIMER_COLUMNS} FROM {timers} \
                 WHERE reactor = $1 AND state = 'pending' AND due <= $2 ORDER BY due, id LIMIT $3"
            ),
            next_due: format!("SELECT min(due) FROM {timers} WHERE reactor = $1 AND state = 'pending'"),
            fired: format!("UPDATE {timers} SET state = 'fired' {pending}"),
            retry: format!("UPDATE {timers} SET due = $2, {ATTEMPT}, last_error = $3 {pending}"),
            failed: format!("UPDATE {timers} SET state = 'failed', {ATTEMPT}, last_error = $2 {pending}"),
            timers: format!("SELECT {TIMER_COLUMNS} FROM {timers} WHERE reactor = $1 ORDER BY due, id"),
            retry_timer: format!(
                "UPDATE {timers} SET state = 'pending', due = $2, attempts = 0 WHERE id = $1 AND state = 'failed'"
            ),
            cancel_timer: format!(
                "UPDATE {timers} SET state = 'cancelled' WHERE id = $1 AND state IN ('pending', 'failed')"
            ),
            park: format!(
                "INSERT INTO {letters} AS letter \
                     (reactor, position, event_id, aggregate_kind, aggregate_id, event_kind, schema_version, \
                      data, metadata, error, attempts, parked_at, retry_requested) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, false) \
                 ON CONFLICT (reactor, position) DO UPDATE \
                 SET event_id = EXCLUDED.event_id, aggregate_kind = EXCLUDED.aggregate_kind, \
                     aggregate_id = EXCLUDED.aggregate_id, event_kind = EXCLUDED.event_kind, \
                     schema_version = EXCLUDED.schema_version, data = EXCLUDED.data, \
                     metadata = EXCLUDED.metadata, error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
                     parked_at = EXCLUDED.parked_at, retry_requested = false"
            ),
            // The event's columns first, as `store::decode` reads them.
            dead_letters: format!(
                "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata::text, schema_version, \
                        event_id, reactor, error, attempts, parked_at, retry_requested \
                 FROM {letters} WHERE reactor = $1 ORDER BY position"
            ),
            retry_requests: format!(
                "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata::text, schema_version, \
                        event_id, reactor, error, attempts, parked_at, retry_requested \
                 FROM {letters} WHERE reactor = $1 AND retry_requested ORDER BY position"
            ),
            request_retry: format!(
                "UPDATE {letters} SET retry_requested = true WHERE reactor = $1 AND position = $2"
            ),
            discard: format!("DELETE FROM {letters} WHERE reactor = $1 AND position = $2"),
            schema: schema.to_owned(),
        }
    }
}

impl<Id, M> ReactorStore<Id, M> {
    /// The timers and dead letters of `store`'s schema, on its pool, with
    /// its id and metadata types.
    #[must_use]
    pub fn new(store: &Store<Id, M>) -> Self {
        Self {
            pool: store.pool().clone(),
            sql: Arc::new(Statements::new(store.schema())),
            types: PhantomData,
        }
    }

    /// Maps a database error, telling a missing table apart (the schema
    /// is not migrated to 0011).
    fn database(&self, error: sqlx::Error) -> Error {
        let missing = error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .is_some_and(|code| matches!(code.as_ref(), "42P01" | "42703" | "3F000"));
        if missing {
            Error::NotMigrated {
                schema: self.sql.schema.clone(),
                source: error,
            }
        } else {
            Error::Database(error)
        }
    }
}

impl<Id, M> Clone for ReactorStore<Id, M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: Arc::clone(&self.sql),
            types: PhantomData,
        }
    }
}

impl<Id, M> fmt::Debug for ReactorStore<Id, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::ReactorStore")
            .field("schema", &self.sql.schema)
            .finish_non_exhaustive()
    }
}

/// Whether `text` can be stored in a `text` column.
fn storable(text: &str) -> bool {
    !text.contains('\0')
}

/// Refuses `text` when it holds a NUL character.
fn check(text: &str, field: &'static str) -> Result<(), Error> {
    if storable(text) {
        Ok(())
    } else {
        Err(Error::Nul { field })
    }
}

/// A number as an `integer` column holds it.
fn integer(value: u32, field: &'static str) -> Result<i32, Error> {
    i32::try_from(value).map_err(|_| Error::OutOfRange {
        field,
        value: u64::from(value),
    })
}

/// A stored count of attempts.
fn attempts(found: i32, what: &'static str, reactor: &str) -> Result<u32, Error> {
    u32::try_from(found).map_err(|source| Error::StoredAttempts {
        what,
        reactor: reactor.to_owned(),
        found,
        source,
    })
}

/// Decodes a row of [`TIMER_COLUMNS`].
fn timer(row: &PgRow) -> Result<Timer<i64>, Error> {
    let id = TimerId::from_uuid(row.try_get::<Uuid, _>(0)?);
    let reactor: String = row.try_get(1)?;
    let state: &str = row.try_get(7)?;
    let Some(state) = TimerState::from_name(state) else {
        return Err(Error::StoredTimerState {
            timer: id,
            found: state.to_owned(),
        });
    };
    let attempts = attempts(row.try_get(8)?, "timer", &reactor)?;
    let mut timer = Timer::pending(NewTimer {
        id,
        reactor,
        key: row.try_get(2)?,
        due: row.try_get::<Timestamp, _>(3)?.0,
        command: row.try_get(4)?,
        payload: row.try_get(5)?,
        cause: row.try_get(6)?,
    });
    timer.state = state;
    timer.attempts = attempts;
    timer.last_error = row.try_get(9)?;
    Ok(timer)
}

/// The columns of a batch of timers, in the order of their ids (so that
/// two batches sharing ids insert them in the same order and cannot
/// deadlock); of several timers with one id, the first is kept.
#[derive(Default)]
struct TimerColumns {
    ids: Vec<Uuid>,
    reactors: Vec<String>,
    keys: Vec<String>,
    due: Vec<Timestamp>,
    commands: Vec<String>,
    payloads: Vec<Vec<u8>>,
    causes: Vec<i64>,
}

impl TimerColumns {
    fn of(mut timers: Vec<NewTimer<i64>>) -> Result<Self, Error> {
        // Stable: of equal ids, the first scheduled stays first, and
        // `ON CONFLICT DO NOTHING` keeps it.
        timers.sort_by_key(|timer| timer.id);
        let mut columns = Self::default();
        for timer in timers {
            check(&timer.reactor, "timer's reactor")?;
            check(&timer.key, "timer's key")?;
            check(&timer.command, "timer's command")?;
            columns.ids.push(*timer.id.as_uuid());
            columns.reactors.push(timer.reactor);
            columns.keys.push(timer.key);
            columns.due.push(Timestamp(timer.due));
            columns.commands.push(timer.command);
            columns.payloads.push(timer.payload);
            columns.causes.push(timer.cause);
        }
        Ok(columns)
    }
}

impl<Id, M> ReactorStore<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The dead letters of `reactor` that the query `sql` selects.
    async fn letters(&self, sql: &str, reactor: &str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        if !storable(reactor) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql)
            .bind(reactor)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        rows.iter()
            .map(|row| {
                let event = crate::store::decode(row)?;
                let reactor: String = row.try_get(8)?;
                let attempts = attempts(row.try_get(10)?, "dead letter", &reactor)?;
                let parked_at = row.try_get::<Timestamp, _>(11)?.0;
                let mut letter =
                    DeadLetter::new(reactor, event, row.try_get::<String, _>(9)?, attempts, parked_at);
                letter.retry_requested = row.try_get(12)?;
                Ok(letter)
            })
            .collect()
    }
}

impl<Id, M> reactor::ReactorStore<Id, i64, M> for ReactorStore<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::Nul`] when a timer's reactor, key or command holds a NUL
    /// character (nothing is stored), [`Error::Database`] when the
    /// database fails, [`Error::NotMigrated`] when the table is missing.
    async fn schedule(&self, timers: Vec<NewTimer<i64>>) -> Result<(), Error> {
        if timers.is_empty() {
            return Ok(());
        }
        let columns = TimerColumns::of(timers)?;
        sqlx::query(&self.sql.schedule)
            .bind(&columns.ids)
            .bind(&columns.reactors)
            .bind(&columns.keys)
            .bind(&columns.due)
            .bind(&columns.commands)
            .bind(&columns.payloads)
            .bind(&columns.causes)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(())
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn cancel<'a>(&'a self, reactor: &'a str, key: &'a str, before: i64) -> Result<u64, Error> {
        if !storable(reactor) || !storable(key) {
            return Ok(0);
        }
        let cancelled = sqlx::query(&self.sql.cancel)
            .bind(reactor)
            .bind(key)
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(cancelled.rows_affected())
    }

    /// # Errors
    ///
    /// [`Error::StoredTimerState`] and [`Error::StoredAttempts`] for a row
    /// changed by hand, [`Error::Database`] when the database fails,
    /// [`Error::NotMigrated`] when the table is missing.
    async fn due<'a>(
        &'a self,
        reactor: &'a str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer<i64>>, Error> {
        if !storable(reactor) || limit == 0 {
            return Ok(Vec::new());
        }
        // More than `i64::MAX` rows is all of them.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&self.sql.due)
            .bind(reactor)
            .bind(Timestamp(now))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        rows.iter().map(timer).collect()
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn next_due<'a>(&'a self, reactor: &'a str) -> Result<Option<DateTime<Utc>>, Error> {
        if !storable(reactor) {
            return Ok(None);
        }
        let due: Option<Timestamp> = sqlx::query_scalar(&self.sql.next_due)
            .bind(reactor)
            .fetch_one(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(due.map(|due| due.0))
    }

    /// # Errors
    ///
    /// [`Error::Nul`] when the outcome's error holds a NUL character,
    /// [`Error::UnknownTimerOutcome`] for an outcome this release does not
    /// know, [`Error::Database`] when the database fails,
    /// [`Error::NotMigrated`] when the table is missing.
    async fn finish(&self, id: TimerId, outcome: TimerOutcome) -> Result<bool, Error> {
        let id = *id.as_uuid();
        let statement = match &outcome {
            TimerOutcome::Fired => sqlx::query(&self.sql.fired).bind(id),
            TimerOutcome::Retry { due, error } => {
                check(error, "timer's error")?;
                sqlx::query(&self.sql.retry)
                    .bind(id)
                    .bind(Timestamp(*due))
                    .bind(error.as_str())
            }
            TimerOutcome::Failed { error } => {
                check(error, "timer's error")?;
                sqlx::query(&self.sql.failed).bind(id).bind(error.as_str())
            }
            unknown => {
                return Err(Error::UnknownTimerOutcome {
                    outcome: format!("{unknown:?}"),
                });
            }
        };
        let finished = statement
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(finished.rows_affected() > 0)
    }

    /// # Errors
    ///
    /// As [`due`](reactor::ReactorStore::due).
    async fn timers<'a>(&'a self, reactor: &'a str) -> Result<Vec<Timer<i64>>, Error> {
        if !storable(reactor) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&self.sql.timers)
            .bind(reactor)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        rows.iter().map(timer).collect()
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn retry_timer(&self, id: TimerId, now: DateTime<Utc>) -> Result<bool, Error> {
        let retried = sqlx::query(&self.sql.retry_timer)
            .bind(*id.as_uuid())
            .bind(Timestamp(now))
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(retried.rows_affected() > 0)
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn cancel_timer(&self, id: TimerId) -> Result<bool, Error> {
        let cancelled = sqlx::query(&self.sql.cancel_timer)
            .bind(*id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(cancelled.rows_affected() > 0)
    }

    /// # Errors
    ///
    /// [`Error::Nul`] when a text of the letter or its event holds a NUL
    /// character, [`Error::EncodeMetadata`] when the metadata does not
    /// encode, [`Error::OutOfRange`] for attempts or a schema version above
    /// 2,147,483,647 (nothing is stored), [`Error::Database`] when the
    /// database fails, [`Error::NotMigrated`] when the table is missing.
    async fn park(&self, letter: DeadLetter<Id, i64, M>) -> Result<(), Error> {
        let event = &letter.event;
        let aggregate_id = event.aggregate_id.to_text();
        check(&letter.reactor, "dead letter's reactor")?;
        check(&letter.error, "dead letter's error")?;
        check(&event.aggregate_kind, "dead letter's aggregate kind")?;
        check(&aggregate_id, "dead letter's aggregate id")?;
        check(&event.kind, "dead letter's event kind")?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|source| Error::EncodeMetadata { index: 0, source })?;
        if check_metadata_json(0, &metadata).is_err() {
            return Err(Error::Nul {
                field: "dead letter's metadata",
            });
        }
        sqlx::query(&self.sql.park)
            .bind(letter.reactor.as_str())
            .bind(event.position)
            .bind(*event.id.as_uuid())
            .bind(event.aggregate_kind.as_str())
            .bind(aggregate_id)
            .bind(event.kind.as_str())
            .bind(integer(event.schema_version, "dead letter's schema version")?)
            .bind(event.data.as_slice())
            .bind(metadata)
            .bind(letter.error.as_str())
            .bind(integer(letter.attempts, "dead letter's attempts")?)
            .bind(Timestamp(letter.parked_at))
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(())
    }

    /// # Errors
    ///
    /// [`Error::AggregateId`], [`Error::Metadata`],
    /// [`Error::StoredSchemaVersion`] and [`Error::StoredAttempts`] when a
    /// stored letter does not decode into the store's types,
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn dead_letters<'a>(&'a self, reactor: &'a str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        self.letters(&self.sql.dead_letters, reactor).await
    }

    /// Only the rows with a retry request (as `dead_letters` otherwise).
    ///
    /// # Errors
    ///
    /// As [`dead_letters`](reactor::ReactorStore::dead_letters).
    async fn retry_requests<'a>(&'a self, reactor: &'a str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        self.letters(&self.sql.retry_requests, reactor).await
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn request_retry<'a>(&'a self, reactor: &'a str, position: i64) -> Result<bool, Error> {
        if !storable(reactor) {
            return Ok(false);
        }
        let requested = sqlx::query(&self.sql.request_retry)
            .bind(reactor)
            .bind(position)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(requested.rows_affected() > 0)
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn discard<'a>(&'a self, reactor: &'a str, position: i64) -> Result<bool, Error> {
        if !storable(reactor) {
            return Ok(false);
        }
        let discarded = sqlx::query(&self.sql.discard)
            .bind(reactor)
            .bind(position)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(discarded.rows_affected() > 0)
    }
}

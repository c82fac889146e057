//! Reactors' timers and dead letters in the store's file: [`ReactorStore`].

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::reactor::{self, DeadLetter};
use sourcery_core::schedule::{NewTimer, Timer, TimerId, TimerOutcome, TimerState};
use sourcery_core::store::{EventId, StoredEvent, TextId};
use uuid::Uuid;

use crate::Error;
use crate::schema::At;
use crate::store::{Inner, Store};

/// A timer whose id is stored already is skipped, whatever its state.
const SCHEDULE: &str = "INSERT INTO sourcery_timers (id, reactor, key, due, command, payload, cause, state) \
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending') ON CONFLICT (id) DO NOTHING";

/// Through the partial index `sourcery_timers_key`.
const CANCEL: &str = "UPDATE sourcery_timers SET state = 'cancelled' \
                      WHERE reactor = ?1 AND key = ?2 AND state = 'pending' AND cause < ?3";

/// Through `sourcery_timers_due`, in its order: no sort.
const DUE: &str = "SELECT id, reactor, key, due, command, payload, cause, state, attempts, last_error \
                   FROM sourcery_timers WHERE reactor = ?1 AND state = 'pending' AND due <= ?2 \
                   ORDER BY due, id LIMIT ?3";

/// The first entry of the reactor's pending timers in `sourcery_timers_due`.
const NEXT_DUE: &str = "SELECT due, id FROM sourcery_timers WHERE reactor = ?1 AND state = 'pending' \
                        ORDER BY due, id LIMIT 1";

const TIMERS: &str = "SELECT id, reactor, key, due, command, payload, cause, state, attempts, last_error \
                      FROM sourcery_timers WHERE reactor = ?1 ORDER BY due, id";

const PENDING: &str = "SELECT id, reactor, key, due, command, payload, cause, state, attempts, last_error \
                       FROM sourcery_timers WHERE id = ?1 AND state = 'pending'";

const FINISH: &str = "UPDATE sourcery_timers SET state = ?2, due = ?3, attempts = ?4, last_error = ?5 \
                      WHERE id = ?1 AND state = 'pending'";

const RETRY_TIMER: &str = "UPDATE sourcery_timers SET state = 'pending', due = ?2, attempts = 0 \
                           WHERE id = ?1 AND state = 'failed'";

const CANCEL_TIMER: &str = "UPDATE sourcery_timers SET state = 'cancelled' \
                            WHERE id = ?1 AND state IN ('pending', 'failed')";

/// Replaces a letter of the same reactor and position whole, its retry
/// request cleared.
const PARK: &str = "INSERT INTO sourcery_dead_letters \
                    (reactor, position, event_id, aggregate_kind, aggregate_id, event_kind, schema_version, \
                     data, metadata, error, attempts, parked_at, retry_requested) \
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0) \
                    ON CONFLICT (reactor, position) DO UPDATE SET \
                    event_id = excluded.event_id, aggregate_kind = excluded.aggregate_kind, \
                    aggregate_id = excluded.aggregate_id, event_kind = excluded.event_kind, \
                    schema_version = excluded.schema_version, data = excluded.data, \
                    metadata = excluded.metadata, error = excluded.error, attempts = excluded.attempts, \
                    parked_at = excluded.parked_at, retry_requested = 0";

/// Through the primary key, in its order.
const DEAD_LETTERS: &str = "SELECT position, event_id, aggregate_kind, aggregate_id, event_kind, \
                            schema_version, data, metadata, error, attempts, parked_at, retry_requested \
                            FROM sourcery_dead_letters WHERE reactor = ?1 ORDER BY position";

/// The same, only those with a retry request.
const RETRY_REQUESTS: &str = "SELECT position, event_id, aggregate_kind, aggregate_id, event_kind, \
                              schema_version, data, metadata, error, attempts, parked_at, retry_requested \
                              FROM sourcery_dead_letters WHERE reactor = ?1 AND retry_requested ORDER BY position";

const REQUEST_RETRY: &str =
    "UPDATE sourcery_dead_letters SET retry_requested = 1 WHERE reactor = ?1 AND position = ?2";

const DISCARD: &str = "DELETE FROM sourcery_dead_letters WHERE reactor = ?1 AND position = ?2";

/// Reactors' timers and dead letters kept in the event store's file
/// (tables `sourcery_timers` and `sourcery_dead_letters`, schema version
/// 7), for the [`ReactorRunner`](sourcery_core::reactor::ReactorRunner)
/// and for operators.
///
/// Made by [`Store::reactors`], with the store's aggregate id and metadata
/// types (a dead letter holds a copy of its event, kept as the events
/// table keeps it: the aggregate id as text, the metadata as JSON). It
/// shares the store's connections (changes go through its writer thread,
/// reads through its readers), and clones share them too. Every method is
/// one statement, or one `IMMEDIATE` transaction
/// ([`schedule`](reactor::ReactorStore::schedule) and
/// [`finish`](reactor::ReactorStore::finish)), apart from the events; other
/// processes on the same file see each change once it returns.
///
/// Times (a timer's due time, when a letter was parked) are kept in whole
/// milliseconds since 1970 (UTC), finer parts dropped.
///
/// ```
/// use chrono::Utc;
/// use sourcery_core::reactor::ReactorStore as _;
/// use sourcery_core::schedule::{NewTimer, TimerId, TimerOutcome};
/// use sourcery_sqlite::Store;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let store: Store<String, ()> = Store::open_in_memory().await?;
/// let reactors = store.reactors();
///
/// let id = TimerId::from_uuid(uuid::Uuid::from_u128(1));
/// let timer = NewTimer {
///     id,
///     reactor: "reminders".into(),
///     key: "payment-deadline/order-7".into(),
///     due: Utc::now(),
///     command: "order/order.cancel".into(),
///     payload: b"{}".to_vec(),
///     cause: 7,
/// };
/// reactors.schedule(vec![timer.clone()]).await?;
/// reactors.schedule(vec![timer]).await?; // stored once
/// assert_eq!(reactors.due("reminders", Utc::now(), 10).await?.len(), 1);
///
/// assert!(reactors.finish(id, TimerOutcome::Fired).await?);
/// assert!(!reactors.finish(id, TimerOutcome::Fired).await?); // fired already
/// assert_eq!(reactors.next_due("reminders").await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReactorStore<Id, M> {
    inner: Arc<Inner>,
    types: PhantomData<fn() -> (Id, M)>,
}

impl<Id, M> Store<Id, M> {
    /// The reactors' timers and dead letters in this store's file.
    #[must_use]
    pub fn reactors(&self) -> ReactorStore<Id, M> {
        ReactorStore {
            inner: Arc::clone(self.inner()),
            types: PhantomData,
        }
    }
}

impl<Id, M> Clone for ReactorStore<Id, M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            types: PhantomData,
        }
    }
}

impl<Id, M> fmt::Debug for ReactorStore<Id, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::ReactorStore")
            .field("path", &self.inner.error_path())
            .finish_non_exhaustive()
    }
}

/// A time as the tables keep it: milliseconds since 1970 (UTC), rounded
/// down.
fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// A count of changed rows as the trait returns it (`usize` always fits
/// `u64` where Rust runs; saturated if not).
fn count(changed: usize) -> u64 {
    u64::try_from(changed).unwrap_or(u64::MAX)
}

/// A `sourcery_timers` row as SQLite returns it.
struct TimerRow {
    id: Vec<u8>,
    reactor: String,
    key: String,
    due: i64,
    command: String,
    payload: Vec<u8>,
    cause: i64,
    state: String,
    attempts: i64,
    last_error: Option<String>,
}

impl TimerRow {
    /// Reads the columns of [`DUE`], [`TIMERS`], [`PENDING`].
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            reactor: row.get(1)?,
            key: row.get(2)?,
            due: row.get(3)?,
            command: row.get(4)?,
            payload: row.get(5)?,
            cause: row.get(6)?,
            state: row.get(7)?,
            attempts: row.get(8)?,
            last_error: row.get(9)?,
        })
    }

    fn decode(self) -> Result<Timer<i64>, Error> {
        let Ok(bytes) = <[u8; 16]>::try_from(self.id.as_slice()) else {
            return Err(Error::DecodeTimer {
                timer: hex(&self.id),
                reactor: self.reactor,
                column: "id",
                source: format!("an id of {} bytes, not 16", self.id.len()).into(),
            });
        };
        let id = TimerId::from_uuid(Uuid::from_bytes(bytes));
        let fails =
            |reactor: &str, column, source: Box<dyn std::error::Error + Send + Sync>| Error::DecodeTimer {
                reactor: reactor.to_owned(),
                timer: id.to_string(),
                column,
                source,
            };
        let Some(state) = TimerState::from_name(&self.state) else {
            return Err(fails(
                &self.reactor,
                "state",
                format!("no timer state is named {:?}", self.state).into(),
            ));
        };
        let attempts =
            u32::try_from(self.attempts).map_err(|error| fails(&self.reactor, "attempts", error.into()))?;
        let Some(due) = DateTime::<Utc>::from_timestamp_millis(self.due) else {
            return Err(fails(&self.reactor, "due", out_of_range(self.due)));
        };
        let mut timer = Timer::pending(NewTimer {
            id,
            reactor: self.reactor,
            key: self.key,
            due,
            command: self.command,
            payload: self.payload,
            cause: self.cause,
        });
        timer.state = state;
        timer.attempts = attempts;
        timer.last_error = self.last_error;
        Ok(timer)
    }
}

/// Why a stored time is not one.
fn out_of_range(millis: i64) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{millis} milliseconds since 1970 is out of range").into()
}

/// Bytes in hexadecimal, for an id that is not one.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// The timers `sql` selects with `parameters`, as stored.
fn select_timers(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> rusqlite::Result<Vec<TimerRow>> {
    connection
        .prepare_cached(sql)?
        .query_map(parameters, TimerRow::read)?
        .collect()
}

/// A `sourcery_dead_letters` row as SQLite returns it.
struct LetterRow {
    position: i64,
    event_id: Vec<u8>,
    aggregate_kind: String,
    aggregate_id: String,
    event_kind: String,
    schema_version: i64,
    data: Vec<u8>,
    metadata: String,
    error: String,
    attempts: i64,
    parked_at: i64,
    retry_requested: bool,
}

impl LetterRow {
    /// Reads the columns of [`DEAD_LETTERS`] (and [`RETRY_REQUESTS`]).
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            position: row.get(0)?,
            event_id: row.get(1)?,
            aggregate_kind: row.get(2)?,
            aggregate_id: row.get(3)?,
            event_kind: row.get(4)?,
            schema_version: row.get(5)?,
            data: row.get(6)?,
            metadata: row.get(7)?,
            error: row.get(8)?,
            attempts: row.get(9)?,
            parked_at: row.get(10)?,
            retry_requested: row.get(11)?,
        })
    }

    fn decode<Id: TextId, M: DeserializeOwned>(self, reactor: &str) -> Result<DeadLetter<Id, i64, M>, Error> {
        let position = self.position;
        let fails = |column, source: Box<dyn std::error::Error + Send + Sync>| Error::DecodeDeadLetter {
            reactor: reactor.to_owned(),
            position,
            column,
            source,
        };
        let id = <[u8; 16]>::try_from(self.event_id.as_slice()).map_err(|_| {
            fails(
                "event_id",
                format!("an event id of {} bytes, not 16", self.event_id.len()).into(),
            )
        })?;
        let aggregate_id =
            Id::from_text(&self.aggregate_id).map_err(|error| fails("aggregate_id", error.into()))?;
        let schema_version =
            u32::try_from(self.schema_version).map_err(|error| fails("schema_version", error.into()))?;
        let metadata =
            serde_json::from_str(&self.metadata).map_err(|error| fails("metadata", error.into()))?;
        let attempts = u32::try_from(self.attempts).map_err(|error| fails("attempts", error.into()))?;
        let parked_at = DateTime::<Utc>::from_timestamp_millis(self.parked_at)
            .ok_or_else(|| fails("parked_at", out_of_range(self.parked_at)))?;
        let event = StoredEvent {
            id: EventId::from_bytes(id),
            aggregate_kind: self.aggregate_kind,
            aggregate_id,
            kind: self.event_kind,
            position,
            schema_version,
            data: self.data,
            metadata,
        };
        let mut letter = DeadLetter::new(reactor, event, self.error, attempts, parked_at);
        letter.retry_requested = self.retry_requested;
        Ok(letter)
    }
}

/// [`finish`](reactor::ReactorStore::finish) in one `IMMEDIATE`
/// transaction: the pending timer read, [`Timer::finished`] applied, the
/// row written back, so that the transitions are the core's own.
fn finish_on(
    connection: &mut Connection,
    path: &Path,
    id: TimerId,
    outcome: &TimerOutcome,
) -> Result<bool, Error> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path)?;
    let row = transaction
        .prepare_cached(PENDING)
        .and_then(|mut statement| {
            statement
                .query_row([id.as_uuid().as_bytes()], TimerRow::read)
                .optional()
        })
        .at(path)?;
    // Dropping the transaction rolls it back (it wrote nothing).
    let Some(row) = row else {
        return Ok(false);
    };
    let timer = row.decode()?.finished(outcome);
    let changed = transaction
        .prepare_cached(FINISH)
        .and_then(|mut statement| {
            statement.execute((
                id.as_uuid().as_bytes(),
                timer.state.as_str(),
                millis(timer.due),
                i64::from(timer.attempts),
                timer.last_error.as_deref(),
            ))
        })
        .at(path)?;
    transaction.commit().at(path)?;
    Ok(changed > 0)
}

impl<Id, M> ReactorStore<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The dead letters of `reactor` that the query `sql` selects.
    async fn letters(&self, sql: &'static str, reactor: &str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        let name = reactor.to_owned();
        let rows = self
            .inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(sql)
                    .and_then(|mut statement| {
                        statement
                            .query_map([name.as_str()], LetterRow::read)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .at(path)
            })
            .await??;
        // Decoded here, on the caller's task (as loads are).
        rows.into_iter().map(|row| row.decode(reactor)).collect()
    }
}

impl<Id, M> reactor::ReactorStore<Id, i64, M> for ReactorStore<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Error = Error;

    /// One `IMMEDIATE` transaction of `INSERT … ON CONFLICT (id) DO
    /// NOTHING`, one per timer.
    async fn schedule(&self, timers: Vec<NewTimer<i64>>) -> Result<(), Error> {
        if timers.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .run(move |connection, path| {
                let transaction = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .at(path)?;
                {
                    let mut insert = transaction.prepare_cached(SCHEDULE).at(path)?;
                    for timer in &timers {
                        insert
                            .execute((
                                timer.id.as_uuid().as_bytes(),
                                timer.reactor.as_str(),
                                timer.key.as_str(),
                                millis(timer.due),
                                timer.command.as_str(),
                                timer.payload.as_slice(),
                                timer.cause,
                            ))
                            .at(path)?;
                    }
                }
                transaction.commit().at(path)
            })
            .await?
    }

    async fn cancel<'a>(&'a self, reactor: &'a str, key: &'a str, before: i64) -> Result<u64, Error> {
        let reactor = reactor.to_owned();
        let key = key.to_owned();
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(CANCEL)
                    .and_then(|mut statement| statement.execute((reactor.as_str(), key.as_str(), before)))
                    .map(count)
                    .at(path)
            })
            .await?
    }

    async fn due<'a>(
        &'a self,
        reactor: &'a str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer<i64>>, Error> {
        let reactor = reactor.to_owned();
        // More than any table holds.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .readers
            .run(move |connection, path| {
                select_timers(connection, DUE, (reactor.as_str(), millis(now), limit)).at(path)
            })
            .await??;
        rows.into_iter().map(TimerRow::decode).collect()
    }

    async fn next_due<'a>(&'a self, reactor: &'a str) -> Result<Option<DateTime<Utc>>, Error> {
        let reactor = reactor.to_owned();
        let first = self
            .inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(NEXT_DUE)
                    .and_then(|mut statement| {
                        statement
                            .query_row([reactor.as_str()], |row| {
                                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, reactor.clone()))
                            })
                            .optional()
                    })
                    .at(path)
            })
            .await??;
        let Some((due, id, reactor)) = first else {
            return Ok(None);
        };
        DateTime::<Utc>::from_timestamp_millis(due)
            .map(Some)
            .ok_or_else(|| Error::DecodeTimer {
                reactor,
                timer: <[u8; 16]>::try_from(id.as_slice())
                    .map_or_else(|_| hex(&id), |bytes| Uuid::from_bytes(bytes).to_string()),
                column: "due",
                source: out_of_range(due),
            })
    }

    /// One `IMMEDIATE` transaction: the timer read if pending,
    /// [`Timer::finished`] applied, the row written back.
    async fn finish(&self, id: TimerId, outcome: TimerOutcome) -> Result<bool, Error> {
        self.inner
            .writer
            .run(move |connection, path| finish_on(connection, path, id, &outcome))
            .await?
    }

    async fn timers<'a>(&'a self, reactor: &'a str) -> Result<Vec<Timer<i64>>, Error> {
        let reactor = reactor.to_owned();
        let rows = self
            .inner
            .readers
            .run(move |connection, path| select_timers(connection, TIMERS, [reactor.as_str()]).at(path))
            .await??;
        rows.into_iter().map(TimerRow::decode).collect()
    }

    async fn retry_timer(&self, id: TimerId, now: DateTime<Utc>) -> Result<bool, Error> {
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(RETRY_TIMER)
                    .and_then(|mut statement| statement.execute((id.as_uuid().as_bytes(), millis(now))))
                    .map(|changed| changed > 0)
                    .at(path)
            })
            .await?
    }

    async fn cancel_timer(&self, id: TimerId) -> Result<bool, Error> {
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(CANCEL_TIMER)
                    .and_then(|mut statement| statement.execute([id.as_uuid().as_bytes()]))
                    .map(|changed| changed > 0)
                    .at(path)
            })
            .await?
    }

    /// One upsert on the primary key `(reactor, position)`.
    async fn park(&self, letter: DeadLetter<Id, i64, M>) -> Result<(), Error> {
        // Encoded here, on the caller's task, so the writer thread only
        // writes.
        let event = letter.event;
        let metadata = serde_json::to_string(&event.metadata).map_err(|source| Error::EncodeMetadata {
            event_kind: event.kind.clone(),
            source,
        })?;
        let aggregate_id = event.aggregate_id.to_text();
        let reactor = letter.reactor;
        let error = letter.error;
        let attempts = i64::from(letter.attempts);
        let parked_at = millis(letter.parked_at);
        let event_id = *event.id.as_bytes();
        let position = event.position;
        let aggregate_kind = event.aggregate_kind;
        let kind = event.kind;
        let schema_version = i64::from(event.schema_version);
        let data = event.data;
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(PARK)
                    .and_then(|mut statement| {
                        statement.execute(rusqlite::params![
                            reactor,
                            position,
                            event_id,
                            aggregate_kind,
                            aggregate_id,
                            kind,
                            schema_version,
                            data,
                            metadata,
                            error,
                            attempts,
                            parked_at,
                        ])
                    })
                    .map(drop)
                    .at(path)
            })
            .await?
    }

    async fn dead_letters<'a>(&'a self, reactor: &'a str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        self.letters(DEAD_LETTERS, reactor).await
    }

    async fn retry_requests<'a>(&'a self, reactor: &'a str) -> Result<Vec<DeadLetter<Id, i64, M>>, Error> {
        self.letters(RETRY_REQUESTS, reactor).await
    }

    async fn request_retry<'a>(&'a self, reactor: &'a str, position: i64) -> Result<bool, Error> {
        let reactor = reactor.to_owned();
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(REQUEST_RETRY)
                    .and_then(|mut statement| statement.execute((reactor.as_str(), position)))
                    .map(|changed| changed > 0)
                    .at(path)
            })
            .await?
    }

    async fn discard<'a>(&'a self, reactor: &'a str, position: i64) -> Result<bool, Error> {
        let reactor = reactor.to_owned();
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(DISCARD)
                    .and_then(|mut statement| statement.execute((reactor.as_str(), position)))
                    .map(|changed| changed > 0)
                    .at(path)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every step of `sql`'s query plan, with `parameters`.
    fn plan(sql: &str, parameters: impl rusqlite::Params) -> Vec<String> {
        let connection = crate::schema::open_memory(Path::new(":memory:")).expect("an in-memory database");
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("the plan prepares");
        statement
            .query_map(parameters, |row| row.get(3))
            .expect("the plan runs")
            .collect::<Result<_, _>>()
            .expect("the plan reads")
    }

    #[test]
    fn indexes_serve_the_runners_statements_without_a_sort() {
        assert_eq!(
            plan(super::DUE, ("r", 0, 10)),
            ["SEARCH sourcery_timers USING INDEX sourcery_timers_due (reactor=? AND state=? AND due<?)"],
            "the due timers: the index, already in (due, id) order"
        );
        assert_eq!(
            plan(super::NEXT_DUE, ["r"]),
            ["SEARCH sourcery_timers USING COVERING INDEX sourcery_timers_due (reactor=? AND state=?)"],
            "the next due time: the first index entry"
        );
        assert_eq!(
            plan(super::CANCEL, ("r", "k", 5)),
            ["SEARCH sourcery_timers USING INDEX sourcery_timers_key (reactor=? AND key=?)"],
            "a cancellation: the pending timers of the key"
        );
        assert_eq!(
            plan(super::DEAD_LETTERS, ["r"]),
            ["SEARCH sourcery_dead_letters USING INDEX sqlite_autoindex_sourcery_dead_letters_1 (reactor=?)"],
            "the dead letters: the primary key, in position order"
        );
        assert_eq!(
            plan(super::RETRY_REQUESTS, ["r"]),
            ["SEARCH sourcery_dead_letters USING INDEX sqlite_autoindex_sourcery_dead_letters_1 (reactor=?)"],
            "the retry requests: the reactor's letters, in position order"
        );
    }
}

//! Transactional projections: read models written with plain SQL in the
//! write transaction that advances their checkpoint ([`ReadModel`]).

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};
use sourcery_core::checkpoint::{Advance, CheckpointStore as _, Claim, Fence};
use sourcery_core::codec::JsonCodec;
use sourcery_core::event::{DecodeError, DecodeEvent};
use sourcery_core::runner::read_model::{
    self, ApplyInTransaction, Batch, Delivery, Parked, Routes, Tables, quote_identifier, version_name,
};
use sourcery_core::store::{EventFilter, StoredEvent};

use crate::checkpoint::{advance_from_on, replay_until_on};
use crate::schema::At;
use crate::store::Inner;
use crate::{CheckpointStore, Error, Store};

/// A projection whose read model is tables in a SQLite file, written by its
/// [`ApplySql`] handlers inside the runner's write transaction (on the
/// store's writer thread: handlers are synchronous, as rusqlite is).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::event::DomainEvent;
/// use sourcery_core::runner::read_model::Delivery;
/// use sourcery_sqlite::{ApplySql, SqlEvents, SqlProjection};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Deposited { amount: i64 }
/// impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
///
/// /// `balances (account TEXT PRIMARY KEY, balance INTEGER)`.
/// struct Balances;
///
/// impl SqlProjection for Balances {
///     const KIND: &'static str = "balances";
///     type Id = String;
///     type Metadata = ();
///     type Error = rusqlite::Error;
///
///     fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
///         events.event::<Deposited>()
///     }
/// }
///
/// impl ApplySql<Deposited> for Balances {
///     fn apply(
///         &self,
///         tx: &rusqlite::Transaction<'_>,
///         event: &Deposited,
///         delivery: Delivery<'_, String, i64, ()>,
///     ) -> Result<(), rusqlite::Error> {
///         tx.prepare_cached(
///             "INSERT INTO balances (account, balance) VALUES (?1, ?2) \
///              ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
///         )?
///         .execute((delivery.aggregate_id(), event.amount))?;
///         Ok(())
///     }
/// }
/// ```
pub trait SqlProjection: Send + Sync + Sized + 'static {
    /// A stable name: the checkpoint and the lease are kept under it (with
    /// the version: `<KIND>.v<VERSION>`).
    const KIND: &'static str;

    /// The version of the read model (default 1). Bump it when what the
    /// handlers write changes: the new version is built from the start of
    /// the log into tables of its own while the old one keeps serving, and
    /// readers switch to it once it has caught up (see [`ReadModel`]).
    const VERSION: u32 = 1;

    /// The tables the read model owns, by the names readers query (plain
    /// names; none by default). Each version writes its own
    /// (`<table>_v<VERSION>`, named for handlers by [`Delivery::table`]);
    /// `<table>` is a view of the live version's.
    const TABLES: &'static [&'static str] = &[];
    /// The aggregate id type of the store it reads.
    type Id: Clone + fmt::Debug + Send + Sync + 'static;
    /// The metadata type of the store it reads.
    type Metadata: Send + Sync + 'static;
    /// What its handlers fail with.
    type Error: StdError + Send + Sync + 'static;

    /// The events it consumes.
    #[must_use]
    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self>;

    /// Creates this version's tables (named by `tables`) if they do not
    /// exist: run in its own transaction before the runner applies
    /// anything. Does nothing by default.
    ///
    /// # Errors
    ///
    /// Whatever the projection fails with.
    fn setup(&self, tx: &Transaction<'_>, tables: &Tables) -> Result<(), Self::Error> {
        let _ = (tx, tables);
        Ok(())
    }
}

/// How a [`SqlProjection`] writes event `E` (a domain event, or an
/// aggregate's event enum).
pub trait ApplySql<E>: SqlProjection {
    /// Writes the effect of `event` in `tx`. An error rolls the whole batch
    /// back and stops the runner, naming the event.
    ///
    /// # Errors
    ///
    /// Whatever the projection fails with.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &E,
        delivery: Delivery<'_, Self::Id, i64, Self::Metadata>,
    ) -> Result<(), Self::Error>;
}

type Stored<P> = StoredEvent<<P as SqlProjection>::Id, i64, <P as SqlProjection>::Metadata>;

type Handler<P> = fn(
    &P,
    &Transaction<'_>,
    &Stored<P>,
    &Tables,
    bool,
) -> Result<(), Failure<<P as SqlProjection>::Id, <P as SqlProjection>::Error>>;

/// Why a handler did not apply an event.
enum Failure<Id: fmt::Debug, E> {
    Decode(DecodeError<Id, i64>),
    Handler(E),
}

/// The events a [`SqlProjection`] consumes, each kind with its handler.
pub struct SqlEvents<P: SqlProjection> {
    routes: Routes<P::Id, i64, Handler<P>>,
}

impl<P: SqlProjection> SqlEvents<P> {
    /// Every event of kind `E`, from any stream.
    #[must_use]
    pub fn event<E>(self) -> Self
    where
        E: sourcery_core::event::DomainEvent,
        P: ApplySql<E>,
    {
        self.events::<E>()
    }

    /// Every event `T` decodes (a domain event, or all events of an
    /// aggregate's event enum), from any stream.
    #[must_use]
    pub fn events<T>(mut self) -> Self
    where
        T: DecodeEvent,
        P: ApplySql<T>,
    {
        for kind in T::decoded_kinds() {
            self.routes.push(EventFilter::for_event(kind), handle::<P, T>);
        }
        self
    }

    fn handler(&self, event: &Stored<P>) -> Option<Handler<P>>
    where
        P::Id: PartialEq,
    {
        self.routes.route(event).copied()
    }
}

fn handle<P: ApplySql<T>, T: DecodeEvent>(
    projection: &P,
    tx: &Transaction<'_>,
    event: &Stored<P>,
    tables: &Tables,
    replay: bool,
) -> Result<(), Failure<P::Id, P::Error>> {
    let decoded: T = event.decode(&JsonCodec).map_err(Failure::Decode)?;
    projection
        .apply(tx, &decoded, Delivery::new(event, tables, replay))
        .map_err(Failure::Handler)
}

impl<P: SqlProjection> fmt::Debug for SqlEvents<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.routes.fmt(f)
    }
}

/// What stopped a [`ReadModel`]'s batch; nothing of it was committed.
/// [`ReadModelError::Database`] holds this crate's [`Error`].
pub type ReadModelError = read_model::ReadModelError<Error, i64>;

/// A [`SqlProjection`] with the SQLite file it writes in: hand it to a
/// [`ReadModelRunner`](sourcery_core::runner::ReadModelRunner).
///
/// Each batch is one `IMMEDIATE` write transaction on that file's writer
/// thread: the handlers' writes and the advance of the checkpoint (table
/// `sourcery_checkpoints`, name `<KIND>.v<VERSION>`) commit together
/// or not at all, so every event's effect is applied exactly once, whatever
/// crashes when.
///
/// **Same file (the default).** Built from the event store, the read
/// model's tables live in the events' file. A batch holds the file's write
/// lock while it runs, as an append does: appends wait for it (keep
/// handlers short; the batch size bounds the wait).
///
/// **Another file.** Built from a [`Store`] opened on another file (which
/// then holds the checkpoint table; its event tables stay empty), read
/// model and checkpoint still commit together, so exactly once holds, and
/// appends never wait for the read model. What no longer holds: a query
/// cannot join the read model with the events in one snapshot.
pub struct ReadModel<P: SqlProjection> {
    projection: Arc<P>,
    events: Arc<SqlEvents<P>>,
    inner: Arc<Inner>,
    checkpoints: CheckpointStore,
    /// `<KIND>.v<VERSION>`.
    name: String,
    tables: Arc<Tables>,
    /// Whether readers are known to see this version or a later one.
    switched: AtomicBool,
    /// The events at or below this position are replays (`i64::MIN`:
    /// none).
    replay_until: AtomicI64,
    /// The positions of the parked events, as of the last claim.
    parked: Mutex<Arc<BTreeSet<i64>>>,
}

impl<P: SqlProjection> ReadModel<P> {
    /// `projection`, writing in `database`'s file: the event store itself
    /// for the same-file mode.
    #[must_use]
    pub fn new<Id, M>(database: &Store<Id, M>, projection: P) -> Self {
        Self {
            projection: Arc::new(projection),
            events: Arc::new(P::declare(SqlEvents {
                routes: Routes::new(),
            })),
            inner: Arc::clone(database.inner()),
            checkpoints: database.checkpoints(),
            name: version_name(P::KIND, P::VERSION),
            tables: Arc::new(version_tables::<P>(P::VERSION)),
            switched: AtomicBool::new(false),
            replay_until: AtomicI64::new(i64::MIN),
            parked: Mutex::new(Arc::new(BTreeSet::new())),
        }
    }

    /// Parks the event at `position` for this version: its runner skips
    /// it from its next start on (it reads the parked events when it
    /// starts), and the record of why stays. For an event whose handler
    /// fails (the runner stopped on it, naming its position): park it,
    /// then start the runner again. Nothing is ever skipped without one.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when SQLite fails.
    pub async fn park(&self, position: i64, reason: &str) -> Result<(), ReadModelError> {
        let (name, reason) = (self.name.clone(), reason.to_owned());
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .execute(
                        "INSERT INTO sourcery_parked_events (name, position, reason) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (name, position) DO UPDATE SET reason = excluded.reason, \
                         parked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                        (&name, position, &reason),
                    )
                    .map(drop)
                    .at(path)
            })
            .await??;
        Ok(())
    }

    /// Takes the event at `position` off the parked list (a runner that
    /// has passed it does not go back to it). Returns whether it was
    /// parked.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when SQLite fails.
    pub async fn unpark(&self, position: i64) -> Result<bool, ReadModelError> {
        let name = self.name.clone();
        let deleted = self
            .inner
            .writer
            .run(move |connection, path| {
                connection
                    .execute(
                        "DELETE FROM sourcery_parked_events WHERE name = ?1 AND position = ?2",
                        (&name, position),
                    )
                    .at(path)
            })
            .await??;
        Ok(deleted > 0)
    }

    /// The events parked for this version, by position.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when SQLite fails.
    pub async fn parked(&self) -> Result<Vec<Parked<i64>>, ReadModelError> {
        let name = self.name.clone();
        let parked = self
            .inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(
                        "SELECT position, reason FROM sourcery_parked_events WHERE name = ?1 ORDER BY position",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_map([&name], |row| Ok(Parked::new(row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .at(path)
            })
            .await??;
        Ok(parked)
    }

    /// The tables this version writes.
    #[must_use]
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The version readers see (whose tables the views select from), if
    /// any has caught up yet.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when SQLite fails.
    pub async fn live_version(&self) -> Result<Option<u32>, ReadModelError> {
        let live = self
            .inner
            .readers
            .run(|connection, path| {
                connection
                    .prepare_cached(LIVE_VERSION)
                    .and_then(|mut statement| {
                        statement
                            .query_row([P::KIND], |row| row.get::<_, u32>(0))
                            .optional()
                    })
                    .at(path)
            })
            .await??;
        Ok(live)
    }

    /// Points readers at this version, in one transaction: each declared
    /// table's view is made to select from this version's table, and this
    /// version is recorded as live. Does nothing when this version or a
    /// later one is live already. The runner does it when it starts the
    /// first version of a projection (no version is live yet), and for a
    /// later version once it has caught up with the log; call it yourself
    /// to switch earlier.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when SQLite fails (a table of the
    /// declared name that is not a view, for one).
    pub async fn switch(&self) -> Result<(), ReadModelError> {
        let tables = Arc::clone(&self.tables);
        self.inner
            .writer
            .run(move |connection, path| -> rusqlite::Result<()> {
                let _ = path;
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let live: Option<u32> = tx
                    .prepare_cached(LIVE_VERSION)?
                    .query_row([P::KIND], |row| row.get(0))
                    .optional()?;
                if live.is_none_or(|live| live < P::VERSION) {
                    for (table, version_table) in tables.iter() {
                        let view = quote_identifier(table);
                        tx.execute_batch(&format!(
                            "DROP VIEW IF EXISTS {view}; CREATE VIEW {view} AS SELECT * FROM {version_table};"
                        ))?;
                    }
                    tx.execute(
                        "INSERT INTO sourcery_read_models (name, live_version) VALUES (?1, ?2) \
                         ON CONFLICT (name) DO UPDATE SET live_version = excluded.live_version, \
                         switched_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                        (P::KIND, P::VERSION),
                    )?;
                }
                tx.commit()
            })
            .await?
            .map_err(|error| Error::from_sqlite(self.inner.error_path(), error))?;
        self.switched.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops the tables and the checkpoint of `version` (an older one,
    /// once readers switched away from it), in one transaction. The tables
    /// dropped are those this code declares, with that version's suffix.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Live`] when `version` is the live one;
    /// [`ReadModelError::Database`] when SQLite fails.
    pub async fn drop_version(&self, version: u32) -> Result<(), ReadModelError> {
        let tables = version_tables::<P>(version);
        let checkpoint = version_name(P::KIND, version);
        self.inner
            .writer
            .run(move |connection, path| -> Result<(), ReadModelError> {
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .at(path)?;
                let live: Option<u32> = tx
                    .prepare_cached(LIVE_VERSION)
                    .and_then(|mut statement| statement.query_row([P::KIND], |row| row.get(0)).optional())
                    .at(path)?;
                if live == Some(version) {
                    return Err(ReadModelError::Live {
                        projection: P::KIND,
                        version,
                    });
                }
                for (_, table) in tables.iter() {
                    tx.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))
                        .at(path)?;
                }
                tx.execute("DELETE FROM sourcery_checkpoints WHERE name = ?1", [&checkpoint])
                    .at(path)?;
                tx.commit().at(path)?;
                Ok(())
            })
            .await?
    }

    /// The projection.
    #[must_use]
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The checkpoint store the read model advances in its transactions.
    #[must_use]
    pub fn checkpoints(&self) -> &CheckpointStore {
        &self.checkpoints
    }
}

fn failure<P: SqlProjection>(event: &Stored<P>, failure: Failure<P::Id, P::Error>) -> ReadModelError {
    match failure {
        Failure::Decode(error) => ReadModelError::Decode(Box::new(error)),
        Failure::Handler(error) => ReadModelError::handler(P::KIND, event, error),
    }
}

impl<P: SqlProjection> fmt::Debug for ReadModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::ReadModel")
            .field("projection", &P::KIND)
            .field("version", &P::VERSION)
            .field("tables", &self.tables)
            .field("events", &self.events)
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

impl<P, M> ApplyInTransaction<Store<P::Id, M>> for ReadModel<P>
where
    P: SqlProjection<Metadata = M>,
    M: Send + Sync + 'static,
    Store<P::Id, M>: sourcery_core::subscription::Subscribe<Id = P::Id, Position = i64, Metadata = M>,
    P::Id: PartialEq,
{
    type Error = ReadModelError;

    fn kind(&self) -> &'static str {
        P::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn filters(&self) -> Vec<EventFilter<P::Id, i64>> {
        self.events.routes.filters()
    }

    async fn claim(&self, fence: Option<Fence>, head: Option<i64>) -> Result<Claim<i64>, ReadModelError> {
        let projection = Arc::clone(&self.projection);
        let tables = Arc::clone(&self.tables);
        self.inner
            .writer
            .run(move |connection, path| -> Result<(), ReadModelError> {
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .at(path)?;
                projection
                    .setup(&tx, &tables)
                    .map_err(|error| ReadModelError::Setup {
                        projection: P::KIND,
                        version: P::VERSION,
                        source: Box::new(error),
                    })?;
                tx.commit().at(path)?;
                Ok(())
            })
            .await??;
        if self.live_version().await?.is_none() {
            // The first version of a projection is live from the start.
            self.switch().await?;
        }
        let claimed = match fence {
            Some(fence) => self.checkpoints.claim(&self.name, fence).await?,
            None => Claim::Claimed(self.checkpoints.load(&self.name).await?),
        };
        if let Claim::Claimed(_) = claimed {
            let name = self.name.clone();
            let until = self
                .inner
                .writer
                .run(move |connection, path| replay_until_on(connection, &name, head.unwrap_or(0)).at(path))
                .await??;
            self.replay_until
                .store(until.unwrap_or(i64::MIN), Ordering::Release);
            let parked: BTreeSet<i64> = self
                .parked()
                .await?
                .into_iter()
                .map(|parked| parked.position)
                .collect();
            *self.parked.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(parked);
        }
        Ok(claimed)
    }

    async fn apply(
        &self,
        events: Batch<Store<P::Id, M>>,
        from: Option<i64>,
        through: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, ReadModelError> {
        let projection = Arc::clone(&self.projection);
        let handlers = Arc::clone(&self.events);
        let tables = Arc::clone(&self.tables);
        let name = self.name.clone();
        let replay_until = self.replay_until.load(Ordering::Acquire);
        let parked = Arc::clone(&self.parked.lock().unwrap_or_else(PoisonError::into_inner));
        let applied = self
            .inner
            .writer
            .run(move |connection, path| -> Result<Advance<i64>, ReadModelError> {
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .at(path)?;
                for event in &events {
                    if parked.contains(&event.position) {
                        tracing::warn!(
                            projection = P::KIND,
                            position = event.position,
                            "sourcery-sqlite: skipping a parked event"
                        );
                        continue;
                    }
                    if let Some(handler) = handlers.handler(event) {
                        handler(&projection, &tx, event, &tables, event.position <= replay_until)
                            .map_err(|failed| failure::<P>(event, failed))?;
                    }
                }
                let advanced = advance_from_on(&tx, &name, from, through, fence).at(path)?;
                if advanced == Advance::Saved {
                    tx.commit().at(path)?;
                }
                // Otherwise dropping `tx` rolls the batch back.
                Ok(advanced)
            })
            .await??;
        Ok(applied)
    }

    async fn caught_up(&self, _head: i64) -> Result<(), ReadModelError> {
        if self.switched.load(Ordering::Acquire) {
            return Ok(());
        }
        self.switch().await
    }
}

const LIVE_VERSION: &str = "SELECT live_version FROM sourcery_read_models WHERE name = ?1";

/// The tables of `version` of `P`.
fn version_tables<P: SqlProjection>(version: u32) -> Tables {
    Tables::versioned(P::TABLES, version, |table| table)
}

//! Transactional projections: read models written with plain SQL in the
//! transaction that advances their checkpoint ([`ReadModel`]).

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use sourcery_core::checkpoint::{Advance, CheckpointStore as _, Claim, Fence};
use sourcery_core::codec::JsonCodec;
use sourcery_core::event::{DecodeError, DecodeEvent};
use sourcery_core::runner::read_model::{
    self, ApplyInTransaction, Batch, Delivery, Parked, Routes, Tables, quote_identifier, version_name,
};
use sourcery_core::store::{EventFilter, StoredEvent};
use sqlx::{Postgres, Transaction};

use crate::{CheckpointStore, Error, Store};

/// The transaction a [`SqlProjection`]'s handlers write in: it also
/// advances the projection's checkpoint, and commits after the batch.
pub type ReadModelTransaction = Transaction<'static, Postgres>;

/// A projection whose read model is tables in PostgreSQL, written by its
/// [`ApplySql`] handlers inside the runner's transaction.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::event::DomainEvent;
/// use sourcery_core::runner::read_model::Delivery;
/// use sourcery_postgres::{ApplySql, ReadModelTransaction, SqlEvents, SqlProjection};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Deposited { amount: i64 }
/// impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
///
/// /// `balances (account text primary key, balance bigint)`.
/// struct Balances;
///
/// impl SqlProjection for Balances {
///     const KIND: &'static str = "balances";
///     type Id = String;
///     type Metadata = serde_json::Value;
///     type Error = sqlx::Error;
///
///     fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
///         events.event::<Deposited>()
///     }
/// }
///
/// impl ApplySql<Deposited> for Balances {
///     async fn apply(
///         &self,
///         tx: &mut ReadModelTransaction,
///         event: &Deposited,
///         delivery: Delivery<'_, String, i64, serde_json::Value>,
///     ) -> Result<(), sqlx::Error> {
///         sqlx::query(
///             "INSERT INTO balances (account, balance) VALUES ($1, $2) \
///              ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2",
///         )
///         .bind(delivery.aggregate_id())
///         .bind(event.amount)
///         .execute(&mut **tx)
///         .await?;
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
    /// names, in the read model's schema; none by default). Each version
    /// writes its own (`<table>_v<VERSION>`, named for handlers by
    /// [`Delivery::table`]); `<table>` is a view of the live version's.
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
    fn setup(
        &self,
        tx: &mut ReadModelTransaction,
        tables: &Tables,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (tx, tables);
        async { Ok(()) }
    }
}

/// How a [`SqlProjection`] writes event `E` (a domain event, or an
/// aggregate's event enum).
pub trait ApplySql<E>: SqlProjection {
    /// Writes the effect of `event` in `tx`. An error rolls the whole batch
    /// back and stops the runner, naming the event.
    fn apply(
        &self,
        tx: &mut ReadModelTransaction,
        event: &E,
        delivery: Delivery<'_, Self::Id, i64, Self::Metadata>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How a [`SqlProjection`] writes runs of consecutive events `T` (a domain
/// event, or an aggregate's event enum) at once: registered with
/// [`SqlEvents::batched`], it receives every run of consecutive events of a
/// batch that `T` decodes, so that it can write their rows in a few
/// statements instead of one statement (one round trip) per event.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::event::DomainEvent;
/// use sourcery_core::runner::read_model::Delivery;
/// use sourcery_postgres::{ApplySqlBatch, ReadModelTransaction, SqlEvents, SqlProjection};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Deposited { amount: i64 }
/// impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
///
/// /// `deposits (position bigint primary key, account text, amount bigint)`.
/// struct Deposits;
///
/// impl SqlProjection for Deposits {
///     const KIND: &'static str = "deposits";
///     type Id = String;
///     type Metadata = serde_json::Value;
///     type Error = sqlx::Error;
///
///     fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
///         events.batched::<Deposited>()
///     }
/// }
///
/// impl ApplySqlBatch<Deposited> for Deposits {
///     async fn apply_batch(
///         &self,
///         tx: &mut ReadModelTransaction,
///         events: &[(Deposited, Delivery<'_, String, i64, serde_json::Value>)],
///     ) -> Result<(), sqlx::Error> {
///         let positions: Vec<i64> = events.iter().map(|(_, at)| at.position()).collect();
///         let accounts: Vec<&str> = events.iter().map(|(_, at)| at.aggregate_id().as_str()).collect();
///         let amounts: Vec<i64> = events.iter().map(|(event, _)| event.amount).collect();
///         sqlx::query(
///             "INSERT INTO deposits (position, account, amount) \
///              SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[])",
///         )
///         .bind(&positions)
///         .bind(&accounts)
///         .bind(&amounts)
///         .execute(&mut **tx)
///         .await?;
///         Ok(())
///     }
/// }
/// ```
pub trait ApplySqlBatch<T>: SqlProjection {
    /// Writes the effect of `events` (consecutive in the log, in order, at
    /// least one; at most a runner's batch) in `tx`. An error rolls the
    /// whole batch back and stops the runner, naming the run
    /// ([`ReadModelError::Batch`]).
    #[expect(
        clippy::type_complexity,
        reason = "spelled out, the signature shows implementors what they get"
    )]
    fn apply_batch(
        &self,
        tx: &mut ReadModelTransaction,
        events: &[(T, Delivery<'_, Self::Id, i64, Self::Metadata>)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

type Stored<P> = StoredEvent<<P as SqlProjection>::Id, i64, <P as SqlProjection>::Metadata>;

/// The handler of one event ([`ApplySql`]); the flag says whether it is a
/// replay.
type EventHandler<P> =
    for<'a> fn(&'a P, &'a mut ReadModelTransaction, &'a Stored<P>, &'a Tables, bool) -> Handled<'a, P>;

/// The handler of a run of events ([`ApplySqlBatch`]); the events at or
/// below the position given are replays.
type RunHandler<P> =
    for<'a> fn(&'a P, &'a mut ReadModelTransaction, &'a [Stored<P>], &'a Tables, i64) -> Handled<'a, P>;

/// What a handler's future resolves to.
type Handled<'a, P> =
    BoxFuture<'a, Result<(), Failure<<P as SqlProjection>::Id, <P as SqlProjection>::Error>>>;

/// How the events a filter selects are handed over.
enum Handler<P: SqlProjection> {
    /// One by one.
    Event(EventHandler<P>),
    /// By runs of consecutive events of the same registration.
    Run(RunHandler<P>),
}

// By hand: derived, they would ask for `P: Clone`.
impl<P: SqlProjection> Clone for Handler<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: SqlProjection> Copy for Handler<P> {}

/// A handler and the registration (`SqlEvents::events` or `batched` call)
/// it came from: a run is the consecutive events of one registration.
type Registered<P> = (Handler<P>, usize);

/// Why a handler did not apply an event.
enum Failure<Id: fmt::Debug, E> {
    Decode(DecodeError<Id, i64>),
    Handler(E),
}

/// The events a [`SqlProjection`] consumes, each kind with its handler.
pub struct SqlEvents<P: SqlProjection> {
    routes: Routes<P::Id, i64, Registered<P>>,
    /// How many registrations were made.
    registrations: usize,
}

impl<P: SqlProjection> SqlEvents<P> {
    /// Every event of kind `E`, from any stream.
    #[must_use]
    pub fn event<E>(self) -> Self
    where
        E: sourcery_core::event::DomainEvent + Send + Sync,
        P: ApplySql<E>,
    {
        self.events::<E>()
    }

    /// Every event `T` decodes (a domain event, or all events of an
    /// aggregate's event enum), from any stream.
    #[must_use]
    pub fn events<T>(self) -> Self
    where
        T: DecodeEvent + Send + Sync,
        P: ApplySql<T>,
    {
        self.register::<T>(Handler::Event(handle::<P, T>))
    }

    /// Every event `T` decodes (a domain event, or all events of an
    /// aggregate's event enum), from any stream, handed to
    /// [`ApplySqlBatch`] by runs: each run of consecutive events of a
    /// runner's batch that `T` decodes in one call.
    #[must_use]
    pub fn batched<T>(self) -> Self
    where
        T: DecodeEvent + Send + Sync,
        P: ApplySqlBatch<T>,
    {
        self.register::<T>(Handler::Run(handle_run::<P, T>))
    }

    fn register<T: DecodeEvent>(mut self, handler: Handler<P>) -> Self {
        let registration = self.registrations;
        self.registrations += 1;
        for kind in T::decoded_kinds() {
            self.routes
                .push(EventFilter::for_event(kind), (handler, registration));
        }
        self
    }

    /// The handler of `event`, with its registration.
    fn route(&self, event: &Stored<P>) -> Option<Registered<P>>
    where
        P::Id: PartialEq,
    {
        self.routes.route(event).copied()
    }
}

fn handle<'a, P, T>(
    projection: &'a P,
    tx: &'a mut ReadModelTransaction,
    event: &'a Stored<P>,
    tables: &'a Tables,
    replay: bool,
) -> Handled<'a, P>
where
    P: ApplySql<T>,
    T: DecodeEvent + Send + Sync,
{
    Box::pin(async move {
        let decoded: T = event.decode(&JsonCodec).map_err(Failure::Decode)?;
        projection
            .apply(tx, &decoded, Delivery::new(event, tables, replay))
            .await
            .map_err(Failure::Handler)
    })
}

fn handle_run<'a, P, T>(
    projection: &'a P,
    tx: &'a mut ReadModelTransaction,
    events: &'a [Stored<P>],
    tables: &'a Tables,
    replay_until: i64,
) -> Handled<'a, P>
where
    P: ApplySqlBatch<T>,
    T: DecodeEvent + Send + Sync,
{
    Box::pin(async move {
        let decoded = events
            .iter()
            .map(|event| {
                let delivery = Delivery::new(event, tables, event.position <= replay_until);
                Ok((event.decode(&JsonCodec)?, delivery))
            })
            .collect::<Result<Vec<(T, _)>, DecodeError<P::Id, i64>>>()
            .map_err(Failure::Decode)?;
        projection
            .apply_batch(tx, &decoded)
            .await
            .map_err(Failure::Handler)
    })
}

impl<P: SqlProjection> fmt::Debug for SqlEvents<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.routes.fmt(f)
    }
}

/// What stopped a [`ReadModel`]'s batch; nothing of it was committed.
/// [`ReadModelError::Database`] holds this crate's [`Error`] (a missing
/// table is [`Error::NotMigrated`]).
pub type ReadModelError = read_model::ReadModelError<Error, i64>;

/// A [`SqlProjection`] with the database it writes in: hand it to a
/// [`ReadModelRunner`](sourcery_core::runner::ReadModelRunner).
///
/// Each batch of events is one transaction on that database: the handlers'
/// writes and the advance of the checkpoint (table `sourcery_checkpoints`,
/// name `<KIND>.v<VERSION>`) commit together or not at all, so every
/// event's effect is applied exactly once, whatever crashes when.
///
/// **Same database (the default).** Built from the event store, the read
/// model's tables live beside the events, in any schema the handlers name.
///
/// **Another database.** Built from a [`Store`] connected to another
/// database (migrated: it holds the checkpoint table there; its event
/// tables stay empty), the read model and its checkpoint still commit
/// together, so exactly once holds. What no longer holds: a query cannot
/// join the read model with the events in one snapshot, and the read model
/// lags behind a commit by one more connection's round trip.
///
/// With a [`Lease`](crate::Lease) on the runner, the checkpoint is advanced
/// with the holder's fence in the same transaction: a holder that lost its
/// lease has its whole batch rolled back by the database.
pub struct ReadModel<P: SqlProjection> {
    projection: Arc<P>,
    events: Arc<SqlEvents<P>>,
    pool: sqlx::PgPool,
    checkpoints: CheckpointStore,
    /// The quoted schema the tables and views are in.
    schema: String,
    /// `<KIND>.v<VERSION>`.
    name: String,
    tables: Tables,
    /// Whether readers are known to see this version or a later one.
    switched: AtomicBool,
    /// The events at or below this position are replays (`i64::MIN`:
    /// none).
    replay_until: AtomicI64,
    /// The positions of the parked events, as of the last claim.
    parked: Mutex<Arc<BTreeSet<i64>>>,
    /// `SET LOCAL idle_in_transaction_session_timeout` of each batch, in
    /// milliseconds (0: none).
    idle_timeout_ms: u64,
}

impl<P: SqlProjection> ReadModel<P> {
    /// `projection`, writing in `database`'s database (and its schema's
    /// checkpoint table): the event store itself for the same-database
    /// mode.
    #[must_use]
    pub fn new<Id, M>(database: &Store<Id, M>, projection: P) -> Self {
        let schema = quote_identifier(database.schema());
        Self {
            projection: Arc::new(projection),
            events: Arc::new(P::declare(SqlEvents {
                routes: Routes::new(),
                registrations: 0,
            })),
            pool: database.pool().clone(),
            checkpoints: CheckpointStore::new(database),
            tables: version_tables::<P>(&schema, P::VERSION),
            schema,
            name: version_name(P::KIND, P::VERSION),
            switched: AtomicBool::new(false),
            idle_timeout_ms: 10_000,
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
    /// [`ReadModelError::Database`] when the database fails.
    pub async fn park(&self, position: i64, reason: &str) -> Result<(), ReadModelError> {
        sqlx::query(&format!(
            "INSERT INTO {}.sourcery_parked_events (name, position, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (name, position) DO UPDATE SET reason = EXCLUDED.reason, parked_at = now()",
            self.schema
        ))
        .bind(&self.name)
        .bind(position)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(|error| self.checkpoints.database(error))?;
        Ok(())
    }

    /// Takes the event at `position` off the parked list (a runner that
    /// has passed it does not go back to it). Returns whether it was
    /// parked.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when the database fails.
    pub async fn unpark(&self, position: i64) -> Result<bool, ReadModelError> {
        let deleted = sqlx::query(&format!(
            "DELETE FROM {}.sourcery_parked_events WHERE name = $1 AND position = $2",
            self.schema
        ))
        .bind(&self.name)
        .bind(position)
        .execute(&self.pool)
        .await
        .map_err(|error| self.checkpoints.database(error))?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The events parked for this version, by position.
    ///
    /// # Errors
    ///
    /// [`ReadModelError::Database`] when the database fails.
    pub async fn parked(&self) -> Result<Vec<Parked<i64>>, ReadModelError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
            "SELECT position, reason FROM {}.sourcery_parked_events WHERE name = $1 ORDER BY position",
            self.schema
        ))
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| self.checkpoints.database(error))?;
        Ok(rows
            .into_iter()
            .map(|(position, reason)| Parked::new(position, reason))
            .collect())
    }

    /// How long a batch's transaction may sit idle — its runner waiting
    /// between two statements — before PostgreSQL ends the session
    /// (`idle_in_transaction_session_timeout`, set for each batch; default
    /// 10 s, `None` for no limit). A holder that is paused or cut off in
    /// the middle of a batch holds the row locks of what it wrote so far:
    /// a standby whose first batch writes the same rows waits for them
    /// until that session ends, however early the lease moved. The
    /// timeout bounds that wait. Keep it above the longest pause a handler
    /// makes inside a batch (a slow call between two statements): a batch
    /// whose session is ended fails, and its runner stops with the error.
    #[must_use]
    pub fn idle_in_transaction_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.idle_timeout_ms = timeout.map_or(0, |timeout| {
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self
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
    /// [`ReadModelError::Database`] when the database fails.
    pub async fn live_version(&self) -> Result<Option<u32>, ReadModelError> {
        let live: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT live_version FROM {}.sourcery_read_models WHERE name = $1",
            self.schema
        ))
        .bind(P::KIND)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| self.checkpoints.database(error))?;
        Ok(live.map(i32::cast_unsigned))
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
    /// [`ReadModelError::Database`] when the database fails (a table of the
    /// declared name that is not a view, for one).
    pub async fn switch(&self) -> Result<(), ReadModelError> {
        let registry = format!("{}.sourcery_read_models", self.schema);
        let fail = |error| ReadModelError::Database(self.checkpoints.database(error));
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query(&format!(
            "INSERT INTO {registry} (name, live_version) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING"
        ))
        .bind(P::KIND)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let live: i32 = sqlx::query_scalar(&format!(
            "SELECT live_version FROM {registry} WHERE name = $1 FOR UPDATE"
        ))
        .bind(P::KIND)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        if live.cast_unsigned() < P::VERSION {
            for (table, version_table) in self.tables.iter() {
                let view = format!("{}.{}", self.schema, quote_identifier(table));
                sqlx::query(&format!("DROP VIEW IF EXISTS {view}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                sqlx::query(&format!("CREATE VIEW {view} AS SELECT * FROM {version_table}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query(&format!(
                "UPDATE {registry} SET live_version = $2, switched_at = now() WHERE name = $1"
            ))
            .bind(P::KIND)
            .bind(P::VERSION.cast_signed())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
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
    /// [`ReadModelError::Database`] when the database fails.
    pub async fn drop_version(&self, version: u32) -> Result<(), ReadModelError> {
        if self.live_version().await? == Some(version) {
            return Err(ReadModelError::Live {
                projection: P::KIND,
                version,
            });
        }
        let fail = |error| ReadModelError::Database(self.checkpoints.database(error));
        let mut tx = self.pool.begin().await.map_err(fail)?;
        for (_, table) in version_tables::<P>(&self.schema, version).iter() {
            sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::query(&format!(
            "DELETE FROM {}.sourcery_checkpoints WHERE name = $1",
            self.schema
        ))
        .bind(version_name(P::KIND, version))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(())
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

    fn failure(event: &Stored<P>, failure: Failure<P::Id, P::Error>) -> ReadModelError {
        match failure {
            Failure::Decode(error) => ReadModelError::Decode(Box::new(error)),
            Failure::Handler(error) => ReadModelError::handler(P::KIND, event, error),
        }
    }

    fn run_failure(run: &[Stored<P>], failure: Failure<P::Id, P::Error>) -> ReadModelError {
        match failure {
            Failure::Decode(error) => ReadModelError::Decode(Box::new(error)),
            Failure::Handler(error) => ReadModelError::Batch {
                projection: P::KIND,
                events: run.len(),
                first: run.first().map_or(0, |event| event.position),
                last: run.last().map_or(0, |event| event.position),
                source: Box::new(error),
            },
        }
    }
}

impl<P: SqlProjection> fmt::Debug for ReadModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::ReadModel")
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
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        self.projection
            .setup(&mut tx, &self.tables)
            .await
            .map_err(|error| ReadModelError::Setup {
                projection: P::KIND,
                version: P::VERSION,
                source: Box::new(error),
            })?;
        tx.commit().await.map_err(Error::Database)?;
        if self.live_version().await?.is_none() {
            // The first version of a projection is live from the start.
            self.switch().await?;
        }
        let claimed = match fence {
            Some(fence) => self.checkpoints.claim(&self.name, fence).await?,
            None => Claim::Claimed(self.checkpoints.load(&self.name).await?),
        };
        if let Claim::Claimed(_) = claimed {
            let until = self
                .checkpoints
                .replay_until(&self.name, head.unwrap_or(0))
                .await?;
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
        let mut tx = self.pool.begin().await.map_err(Error::Database)?;
        if self.idle_timeout_ms > 0 {
            // A paused holder's session ends after this, with its locks.
            sqlx::query(&format!(
                "SET LOCAL idle_in_transaction_session_timeout = {}",
                self.idle_timeout_ms
            ))
            .execute(&mut *tx)
            .await
            .map_err(Error::Database)?;
        }
        let replay_until = self.replay_until.load(Ordering::Acquire);
        let parked = Arc::clone(&self.parked.lock().unwrap_or_else(PoisonError::into_inner));
        let mut at = 0;
        while let Some(event) = events.get(at) {
            if parked.contains(&event.position) {
                tracing::warn!(
                    projection = P::KIND,
                    position = event.position,
                    "sourcery-postgres: skipping a parked event"
                );
                at += 1;
                continue;
            }
            match self.events.route(event) {
                None => at += 1,
                Some((Handler::Event(handler), _)) => {
                    let replay = event.position <= replay_until;
                    handler(&self.projection, &mut tx, event, &self.tables, replay)
                        .await
                        .map_err(|failure| Self::failure(event, failure))?;
                    at += 1;
                }
                Some((Handler::Run(handler), registration)) => {
                    // The run: the consecutive events of this registration,
                    // up to a parked one.
                    let end = events[at..]
                        .iter()
                        .position(|event| {
                            parked.contains(&event.position)
                                || self
                                    .events
                                    .route(event)
                                    .is_none_or(|(_, other)| other != registration)
                        })
                        .map_or(events.len(), |length| at + length);
                    let run = &events[at..end];
                    handler(&self.projection, &mut tx, run, &self.tables, replay_until)
                        .await
                        .map_err(|failure| Self::run_failure(run, failure))?;
                    at = end;
                }
            }
        }
        let advanced = self
            .checkpoints
            .advance_from_on(&mut tx, &self.name, from, through, fence)
            .await?;
        if advanced == Advance::Saved {
            tx.commit().await.map_err(Error::Database)?;
        } else {
            tx.rollback().await.map_err(Error::Database)?;
        }
        Ok(advanced)
    }

    async fn caught_up(&self, _head: i64) -> Result<(), ReadModelError> {
        if self.switched.load(Ordering::Acquire) {
            return Ok(());
        }
        self.switch().await
    }
}

/// The tables of `version` of `P`, in the quoted `schema`.
fn version_tables<P: SqlProjection>(schema: &str, version: u32) -> Tables {
    Tables::versioned(P::TABLES, version, |table| format!("{schema}.{table}"))
}

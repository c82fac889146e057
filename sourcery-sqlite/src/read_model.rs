//! Transactional projections: read models written with plain SQL in the
//! write transaction that advances their checkpoint ([`ReadModel`]).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use rusqlite::{Transaction, TransactionBehavior};
use sourcery_core::checkpoint::{Advance, CheckpointStore as _, Claim, Fence};
use sourcery_core::codec::JsonCodec;
use sourcery_core::event::{DecodeError, DecodeEvent};
use sourcery_core::runner::read_model::{ApplyInTransaction, Batch, Delivery};
use sourcery_core::store::{EventFilter, StoredEvent};

use crate::checkpoint::advance_on;
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
    /// A stable name: the checkpoint and the lease are kept under it.
    const KIND: &'static str;
    /// The aggregate id type of the store it reads.
    type Id: Clone + fmt::Debug + Send + Sync + 'static;
    /// The metadata type of the store it reads.
    type Metadata: Send + Sync + 'static;
    /// What its handlers fail with.
    type Error: StdError + Send + Sync + 'static;

    /// The events it consumes.
    #[must_use]
    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self>;
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
) -> Result<(), Failure<<P as SqlProjection>::Id, <P as SqlProjection>::Error>>;

/// Why a handler did not apply an event.
enum Failure<Id: fmt::Debug, E> {
    Decode(DecodeError<Id, i64>),
    Handler(E),
}

/// The events a [`SqlProjection`] consumes, each kind with its handler.
pub struct SqlEvents<P: SqlProjection> {
    entries: Vec<(EventFilter<P::Id, i64>, Handler<P>)>,
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
            self.entries.push((EventFilter::for_event(kind), handle::<P, T>));
        }
        self
    }

    fn handler(&self, event: &Stored<P>) -> Option<Handler<P>>
    where
        P::Id: PartialEq,
    {
        self.entries
            .iter()
            .find(|(filter, _)| {
                filter.matches(
                    &event.aggregate_kind,
                    &event.aggregate_id,
                    &event.kind,
                    &event.position,
                )
            })
            .map(|(_, handler)| *handler)
    }
}

fn handle<P: ApplySql<T>, T: DecodeEvent>(
    projection: &P,
    tx: &Transaction<'_>,
    event: &Stored<P>,
) -> Result<(), Failure<P::Id, P::Error>> {
    let decoded: T = event.decode(&JsonCodec).map_err(Failure::Decode)?;
    projection
        .apply(tx, &decoded, Delivery::new(event))
        .map_err(Failure::Handler)
}

impl<P: SqlProjection> fmt::Debug for SqlEvents<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(filter, _)| filter))
            .finish()
    }
}

/// What stopped a [`ReadModel`]'s batch; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// SQLite failed (or the store was closed).
    #[error(transparent)]
    Database(#[from] Error),
    /// A consumed event does not decode: a [`DecodeError`] naming it
    /// (downcast the source to read it).
    #[error(transparent)]
    Decode(Box<dyn StdError + Send + Sync>),
    /// The projection's handler failed on an event.
    #[error(
        "the projection `{projection}` failed on the {kind:?} event at position {position} of stream {aggregate_kind:?}/{aggregate_id}"
    )]
    Handler {
        /// The projection.
        projection: &'static str,
        /// The event's kind.
        kind: String,
        /// Its stream's aggregate kind.
        aggregate_kind: String,
        /// Its stream's aggregate id, as `Debug` prints it.
        aggregate_id: String,
        /// Its position.
        position: i64,
        /// What the handler returned.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// A [`SqlProjection`] with the SQLite file it writes in: hand it to a
/// [`ReadModelRunner`](sourcery_core::runner::ReadModelRunner).
///
/// Each batch is one `IMMEDIATE` write transaction on that file's writer
/// thread: the handlers' writes and the advance of the checkpoint (table
/// `sourcery_checkpoints`, name [`SqlProjection::KIND`]) commit together
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
}

impl<P: SqlProjection> ReadModel<P> {
    /// `projection`, writing in `database`'s file: the event store itself
    /// for the same-file mode.
    #[must_use]
    pub fn new<Id, M>(database: &Store<Id, M>, projection: P) -> Self {
        Self {
            projection: Arc::new(projection),
            events: Arc::new(P::declare(SqlEvents { entries: Vec::new() })),
            inner: Arc::clone(database.inner()),
            checkpoints: database.checkpoints(),
        }
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
        Failure::Handler(error) => ReadModelError::Handler {
            projection: P::KIND,
            kind: event.kind.clone(),
            aggregate_kind: event.aggregate_kind.clone(),
            aggregate_id: format!("{:?}", event.aggregate_id),
            position: event.position,
            source: Box::new(error),
        },
    }
}

impl<P: SqlProjection> fmt::Debug for ReadModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::ReadModel")
            .field("projection", &P::KIND)
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

    fn name(&self) -> &'static str {
        P::KIND
    }

    fn filters(&self) -> Vec<EventFilter<P::Id, i64>> {
        self.events
            .entries
            .iter()
            .map(|(filter, _)| filter.clone())
            .collect()
    }

    async fn claim(&self, fence: Option<Fence>) -> Result<Claim<i64>, ReadModelError> {
        Ok(match fence {
            Some(fence) => self.checkpoints.claim(P::KIND, fence).await?,
            None => Claim::Claimed(self.checkpoints.load(P::KIND).await?),
        })
    }

    async fn apply(
        &self,
        events: Batch<Store<P::Id, M>>,
        through: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, ReadModelError> {
        let projection = Arc::clone(&self.projection);
        let handlers = Arc::clone(&self.events);
        let applied = self
            .inner
            .writer
            .run(move |connection, path| -> Result<Advance<i64>, ReadModelError> {
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .at(path)?;
                for event in &events {
                    if let Some(handler) = handlers.handler(event) {
                        handler(&projection, &tx, event).map_err(|failed| failure::<P>(event, failed))?;
                    }
                }
                let advanced = advance_on(&tx, P::KIND, through, fence).at(path)?;
                if advanced == Advance::Saved {
                    tx.commit().at(path)?;
                }
                // Otherwise dropping `tx` rolls the batch back.
                Ok(advanced)
            })
            .await??;
        Ok(applied)
    }
}

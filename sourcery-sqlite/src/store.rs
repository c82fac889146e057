//! The store: [`Store`] and its [`EventStore`] implementation.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::concurrency::ExpectedVersion;
use sourcery_core::event::{DecodeError, DecodeFailure};
use sourcery_core::store::{
    AppendError, AppendOutcome, EventFilter, EventId, EventStore, GloballyOrdered, JsonCodec, NonEmpty,
    PersistableEvent, StoredEvent, StoredId, TextId, check_batch, check_metadata_json,
};
use sourcery_core::subscription::CommitNotifier;

use crate::Error;
use crate::append::{self, Row};
use crate::event_id::stored_ids;
use crate::load::{self, Query};
use crate::options::{OpenOptions, Synchronous};
use crate::schema::{self, At};
use crate::wal::Checkpoints;
use crate::worker::Worker;

/// What [`Store::path`] reports for a store in memory, and what its errors
/// name.
const IN_MEMORY: &str = ":memory:";

/// An event store in one SQLite file (or in memory).
///
/// `Id` is the aggregate id type, kept as text through [`TextId`] (`String`,
/// `uuid::Uuid`, integers, your newtypes with `Display` + `FromStr`); `M` is
/// the metadata type, kept as JSON text, so any serde type works (`()`
/// included). Event data is kept as a BLOB, as the [`JsonCodec`] encoded it.
///
/// Clones are cheap and share the connections; the connections close when
/// the last clone is dropped.
///
/// One connection writes, on a thread of its own; reads run on a pool of
/// reader connections (in WAL mode, readers never wait for the writer nor the
/// writer for them). See the [crate docs](crate) for durability and
/// ordering.
pub struct Store<Id, M> {
    inner: Arc<Inner>,
    codec: JsonCodec,
    types: PhantomData<fn() -> (Id, M)>,
}

/// What the clones of a store share (and its checkpoint and snapshot
/// stores).
pub(crate) struct Inner {
    pub(crate) path: Option<PathBuf>,
    pub(crate) writer: Worker,
    pub(crate) readers: Worker,
    /// Rung after every commit through this store; wakes its subscriptions.
    pub(crate) commits: CommitNotifier,
    /// How often subscriptions read anyway, for other processes' commits.
    pub(crate) poll_interval: Option<Duration>,
    /// Checkpoints the write-ahead log off the append path; `None` in
    /// memory and at `synchronous=FULL`.
    pub(crate) checkpoints: Option<Checkpoints>,
}

impl Inner {
    /// The path errors name: the file, or `:memory:`.
    pub(crate) fn error_path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(IN_MEMORY))
    }
}

impl<Id, M> Store<Id, M> {
    /// Opens the store in the SQLite file at `path`, creating the file if it
    /// is missing and migrating its schema, with the default
    /// [`OpenOptions`] (`synchronous=FULL`: every committed batch survives a
    /// power loss).
    ///
    /// The file may hold other tables: the store's are all named
    /// `sourcery_*`.
    ///
    /// # Errors
    ///
    /// - [`Error::NotADatabase`]: the file is not a SQLite database.
    /// - [`Error::SchemaTooNew`]: a newer `sourcery-es-sqlite` wrote the
    ///   schema.
    /// - [`Error::ReadOnly`]: the file cannot be written.
    /// - [`Error::Open`]: the file cannot be opened or created.
    /// - [`Error::Busy`]: other processes held the database locked for
    ///   longer than the busy timeout while this one switched the file to
    ///   WAL and migrated its schema. Several processes may open one file,
    ///   new or not, at the same moment: each waits for the others within
    ///   the busy timeout.
    /// - [`Error::Database`], [`Error::Thread`]: SQLite or the system failed.
    ///
    /// Nothing is written to a file that fails the first three checks.
    pub fn open(path: impl AsRef<Path>) -> impl Future<Output = Result<Self, Error>> + Send {
        Self::open_with(path, OpenOptions::new())
    }

    /// Opens the store in the SQLite file at `path` with `options`; see
    /// [`Store::open`] and [`OpenOptions`].
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_with(
        path: impl AsRef<Path>,
        options: OpenOptions,
    ) -> impl Future<Output = Result<Self, Error>> + Send {
        let path: Arc<Path> = Arc::from(path.as_ref());
        async move {
            let writer = {
                let options = options.clone();
                Worker::start("sourcery-sqlite-writer", 1, Arc::clone(&path), move |path| {
                    schema::open_writer(path, &options)
                })
                .await?
            };
            let readers = {
                let options = options.clone();
                Worker::start(
                    "sourcery-sqlite-reader",
                    options.readers.get(),
                    Arc::clone(&path),
                    move |path| schema::open_reader(path, &options),
                )
                .await?
            };
            // At `NORMAL` only: see `wal`.
            let checkpoints = if options.synchronous == Synchronous::Normal {
                let options = options.clone();
                let worker = Worker::start(
                    "sourcery-sqlite-checkpointer",
                    1,
                    Arc::clone(&path),
                    move |path| schema::open_checkpointer(path, &options),
                )
                .await?;
                Some(Checkpoints::new(worker))
            } else {
                None
            };
            Ok(Self::from_inner(Inner {
                path: Some(path.to_path_buf()),
                writer,
                readers,
                commits: CommitNotifier::new(),
                poll_interval: options.poll_interval,
                checkpoints,
            }))
        }
    }

    /// Opens a store in memory: private to this value and its clones, gone
    /// when the last is dropped. For tests and demos; one connection serves
    /// both reads and writes.
    ///
    /// # Errors
    ///
    /// [`Error::Open`], [`Error::Database`] or [`Error::Thread`] when SQLite
    /// or the system fails.
    #[expect(
        clippy::manual_async_fn,
        reason = "the signature states that the future is `Send`, as every public async method does here"
    )]
    pub fn open_in_memory() -> impl Future<Output = Result<Self, Error>> + Send {
        async move {
            let worker = Worker::start(
                "sourcery-sqlite-memory",
                1,
                Arc::from(Path::new(IN_MEMORY)),
                schema::open_memory,
            )
            .await?;
            Ok(Self::from_inner(Inner {
                path: None,
                writer: worker.clone(),
                readers: worker,
                commits: CommitNotifier::new(),
                // Nothing else can write a private in-memory database: the
                // store's own notifications are never missed.
                poll_interval: None,
                checkpoints: None,
            }))
        }
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
            codec: JsonCodec,
            types: PhantomData,
        }
    }

    /// What the store's clones share.
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The file the store keeps its events in, `None` for a store in memory.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }
}

impl<Id, M> Clone for Store<Id, M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            codec: self.codec,
            types: PhantomData,
        }
    }
}

impl<Id, M> fmt::Debug for Store<Id, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::Store")
            .field("path", &self.path().unwrap_or(Path::new(IN_MEMORY)))
            .finish_non_exhaustive()
    }
}

impl<Id, M> Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn write(
        &self,
        aggregate_kind: &str,
        aggregate_id: &Id,
        expected: ExpectedVersion<i64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        // What every store refuses (SQLite would keep NUL, PostgreSQL
        // cannot; a batch holding one id twice), before anything reaches
        // the writer.
        let aggregate_id = aggregate_id.to_text();
        check_batch(aggregate_kind, &aggregate_id, &events)?;
        // Encode here, on the caller's task, so the single writer thread only
        // writes.
        let rows = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let metadata = serde_json::to_string(&event.metadata).map_err(|source| {
                    AppendError::Store(Error::EncodeMetadata {
                        event_kind: event.kind.clone(),
                        source,
                    })
                })?;
                check_metadata_json(index, &metadata)?;
                Ok(Row {
                    id: event.id,
                    kind: event.kind,
                    schema_version: event.schema_version,
                    data: event.data,
                    metadata,
                })
            })
            .collect::<Result<Vec<_>, AppendError<i64, Error>>>()?;
        let aggregate_kind = aggregate_kind.to_owned();
        // What the batch adds to the log, about (see `wal`).
        let bytes = rows
            .iter()
            .map(|row| {
                aggregate_kind.len()
                    + aggregate_id.len()
                    + size_of::<EventId>()
                    + row.kind.len()
                    + row.data.len()
                    + row.metadata.len()
            })
            .sum::<usize>();
        let outcome = self
            .inner
            .writer
            .run(move |connection, path| {
                append::append(connection, path, &aggregate_kind, &aggregate_id, expected, &rows)
            })
            .await
            .map_err(AppendError::Store)?;
        // After the commit, outside the writer thread. A failure may hide a
        // commit (its outcome unknown): a needless wake-up costs one read.
        // A replay, a conflict or a refusal wrote nothing.
        let wrote = match &outcome {
            Ok(written) => !written.replayed,
            Err(error) => error.as_store().is_some(),
        };
        if wrote {
            self.inner.commits.notify();
        }
        if let (Ok(written), Some(checkpoints)) = (&outcome, &self.inner.checkpoints)
            && !written.replayed
        {
            checkpoints.committed(bytes);
        }
        outcome
    }
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
        let Error::DecodeMetadata {
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
            Err(_) => Err(Error::DecodeMetadata {
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

    async fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
    ) -> Result<Option<i64>, Error> {
        let aggregate_kind = aggregate_kind.to_owned();
        let aggregate_id = aggregate_id.to_text();
        self.inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(append::STREAM_VERSION)
                    .and_then(|mut statement| {
                        statement
                            .query_row((aggregate_kind.as_str(), aggregate_id.as_str()), |row| row.get(0))
                            .optional()
                    })
                    .at(path)
            })
            .await?
    }

    async fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        expected_version: Option<i64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        let expected = expected_version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
        self.write(aggregate_kind, aggregate_id, expected, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        self.write(aggregate_kind, aggregate_id, ExpectedVersion::NoStream, events)
            .await
    }

    /// Checks the batch (NUL, schema versions, repeated ids, metadata) on
    /// the caller's task, then reads the stream's version and writes in one
    /// trip to the writer thread, one transaction.
    async fn append_expecting_existing<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<i64, Error> {
        self.write(
            aggregate_kind,
            aggregate_id,
            ExpectedVersion::StreamExists,
            events,
        )
        .await
    }

    /// One statement through the unique index on event ids (one probe per
    /// id), on a reader connection.
    async fn event_positions<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a Id,
        ids: &'a [EventId],
    ) -> Result<Vec<Option<i64>>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let aggregate_kind = aggregate_kind.to_owned();
        let aggregate_id = aggregate_id.to_text();
        let ids: Vec<[u8; 16]> = ids.iter().map(|id| *id.as_bytes()).collect();
        let stored = self
            .inner
            .readers
            .run(move |connection, path| {
                stored_ids(connection, &aggregate_kind, &aggregate_id, &ids).at(path)
            })
            .await??;
        Ok(stored
            .into_iter()
            .map(|found| match found {
                StoredId::InStream(position) => Some(position),
                StoredId::Missing | StoredId::Elsewhere => None,
            })
            .collect())
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<Id, i64>],
    ) -> Result<Vec<StoredEvent<Id, i64, M>>, Error> {
        let query = Query::new(filters);
        if query.is_empty() {
            return Ok(Vec::new());
        }
        load::load(&self.inner.readers, self.inner.error_path(), query).await
    }
}

/// Positions are assigned inside SQLite's write lock (`BEGIN IMMEDIATE`),
/// which admits one writer at a time across every process using the file,
/// so they rise in commit order; a reader's snapshot always holds a prefix
/// of the log.
impl<Id, M> GloballyOrdered for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
}

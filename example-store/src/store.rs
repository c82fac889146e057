//! The event store: [`Store`].

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery::concurrency::{ConcurrencyConflict, ExpectedVersion};
use sourcery::event::{DecodeError, DecodeFailure};
use sourcery::snapshot::SnapshotFrontier;
use sourcery::store::{
    AppendError, AppendOutcome, AppendResult, EventFilter, EventId, EventStore, GloballyOrdered, JsonCodec,
    NonEmpty, PersistableEvent, StoredEvent, StoredId, after, check_batch, check_metadata, replay_of,
};
use sourcery::subscription::{CommitNotifier, CommitSignal, Subscribe};

use crate::error::Error;
use crate::line::{self, Event};
use crate::sync_directory;

/// An event store in one append-only JSON-lines file.
///
/// Aggregate ids are `String`s; positions are `u64`, from 1, one per event
/// in commit order. `M` is the metadata type, kept as JSON in the file.
/// Clones share one file and one in-memory copy of the log.
///
/// Open a file with one `Store` at a time (clone it to share it): the store
/// does not lock the file against a second writer. Opening and appending
/// need a Tokio runtime: the file work runs on its blocking pool.
pub struct Store<M = serde_json::Value> {
    inner: Arc<Inner>,
    metadata: PhantomData<fn() -> M>,
}

struct Inner {
    path: PathBuf,
    /// The writing side, held while a batch is written and synced, so that
    /// batches reach the file one at a time, in position order.
    writer: Mutex<Writer>,
    /// The reading side: every durable event. Readers never wait for an
    /// `fsync`.
    log: RwLock<Log>,
    commits: CommitNotifier,
    codec: JsonCodec,
}

struct Writer {
    file: File,
    /// False from the start of a write until its `fsync` succeeded: after a
    /// failure the end of the file is unknown, and nothing more is written.
    clean: bool,
}

/// The log in memory, in position order: the event at index `i` has
/// position `i + 1`.
struct Log {
    events: Vec<Event>,
    /// The version of each stream (the position of its last event), by
    /// aggregate kind and id.
    versions: HashMap<String, HashMap<String, u64>>,
    /// The index in `events` of each event id.
    ids: HashMap<EventId, usize>,
}

// ANCHOR: open
impl<M> Store<M> {
    /// Opens the log at `path`, creating an empty one if there is none, and
    /// reads it into memory. A partial last line (a write that a crash cut
    /// short, never acknowledged) is removed from the file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be opened, read or repaired;
    /// [`Error::Corrupt`] when a complete line is not a valid batch (the
    /// file is left as it is); [`Error::Task`] when the runtime is shutting
    /// down.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let inner = tokio::task::spawn_blocking(move || Inner::open(path))
            .await
            .map_err(Error::Task)??;
        Ok(Self {
            inner: Arc::new(inner),
            metadata: PhantomData,
        })
    }

    /// The log file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    fn open(path: PathBuf) -> Result<Self, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        // A file just created must survive a crash too: its directory
        // entry is synced.
        sync_directory(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(Error::io("read", &path))?;
        let contents = line::read(&bytes).map_err(|(line, reason)| Error::Corrupt {
            path: path.clone(),
            line,
            reason,
        })?;
        if contents.complete_len < bytes.len() {
            let complete_len = u64::try_from(contents.complete_len).map_err(io::Error::other);
            complete_len
                .and_then(|length| file.set_len(length))
                .and_then(|()| file.sync_data())
                .map_err(Error::io("remove the partial last line of", &path))?;
        }
        let mut log = Log {
            events: Vec::with_capacity(contents.events.len()),
            versions: HashMap::new(),
            ids: HashMap::with_capacity(contents.events.len()),
        };
        log.publish(contents.events);
        Ok(Self {
            path,
            writer: Mutex::new(Writer { file, clean: true }),
            log: RwLock::new(log),
            commits: CommitNotifier::new(),
            codec: JsonCodec,
        })
    }
}
// ANCHOR_END: open

// ANCHOR: append
impl Inner {
    /// Appends one batch: recognises a replay, checks the stream's version,
    /// writes the batch as one line, syncs it, and only then makes it
    /// visible to readers. The writer lock is held throughout, so the ids
    /// and the version checked are those the batch is written after, and
    /// positions become visible in order.
    fn append<M: Serialize>(
        &self,
        aggregate_kind: &str,
        aggregate_id: &str,
        expected: ExpectedVersion<u64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<u64, Error> {
        // Every check on the batch's content comes first, before anything
        // is written: no store keeps a NUL in a name or in metadata,
        // schema versions start at 1, and a batch holds each id once.
        check_batch(aggregate_kind, aggregate_id, &events)?;
        for (index, event) in events.iter().enumerate() {
            check_metadata(index, &event.metadata)?;
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !writer.clean {
            return Err(Error::Broken {
                path: self.path.clone(),
            }
            .into());
        }
        let ids: Vec<EventId> = events.iter().map(|event| event.id).collect();
        let (stored, actual, first) = {
            let log = self.read_log();
            let stored: Vec<StoredId<u64>> = ids
                .iter()
                .map(|id| log.stored_id(aggregate_kind, aggregate_id, id))
                .collect();
            (
                stored,
                log.version(aggregate_kind, aggregate_id),
                log.next_position(),
            )
        };
        // The ids before the version: a retry of a batch written already
        // is answered with the first outcome, whatever it expects now.
        if let Some(last) = replay_of(&ids, &stored)? {
            return Ok(AppendResult::replay(last));
        }
        if !expected.allows(actual) {
            return Err(ConcurrencyConflict::new(expected, actual).into());
        }
        let batch = (first..)
            .zip(events)
            .map(|(position, event)| {
                Ok(Event {
                    id: event.id,
                    aggregate_kind: aggregate_kind.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    kind: event.kind,
                    position,
                    schema_version: event.schema_version,
                    data: event.data,
                    metadata: serde_json::to_value(&event.metadata)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(Error::Encode)?;
        let line = line::encode(&batch).map_err(Error::Encode)?;

        writer.clean = false;
        writer
            .file
            .write_all(&line)
            .map_err(Error::io("write", &self.path))?;
        writer.file.sync_data().map_err(Error::io("sync", &self.path))?;
        writer.clean = true;

        let last_position = batch.last().map_or(first, |event| event.position);
        self.log
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .publish(batch);
        drop(writer);
        self.commits.notify();
        Ok(AppendResult::new(last_position))
    }

    fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(PoisonError::into_inner)
    }
}
// ANCHOR_END: append

// ANCHOR: log
impl Log {
    fn version(&self, aggregate_kind: &str, aggregate_id: &str) -> Option<u64> {
        self.versions.get(aggregate_kind)?.get(aggregate_id).copied()
    }

    fn head(&self) -> Option<u64> {
        self.events.last().map(|event| event.position)
    }

    fn next_position(&self) -> u64 {
        self.head().map_or(1, |head| head + 1)
    }

    /// Where the event with `id` is, seen from the stream `aggregate_kind`
    /// / `aggregate_id`: what [`replay_of`] decides from.
    fn stored_id(&self, aggregate_kind: &str, aggregate_id: &str, id: &EventId) -> StoredId<u64> {
        match self.ids.get(id).map(|&index| &self.events[index]) {
            None => StoredId::Missing,
            Some(event) if event.aggregate_kind == aggregate_kind && event.aggregate_id == aggregate_id => {
                StoredId::InStream(event.position)
            }
            Some(_) => StoredId::Elsewhere,
        }
    }

    fn publish(&mut self, events: Vec<Event>) {
        for event in events {
            let streams = self.versions.entry(event.aggregate_kind.clone()).or_default();
            streams.insert(event.aggregate_id.clone(), event.position);
            self.ids.insert(event.id, self.events.len());
            self.events.push(event);
        }
    }

    /// The events any of `filters` selects, each once, in position order:
    /// one pass over the log, from the loosest `after` bound on.
    fn select<'a>(&'a self, filters: &'a [EventFilter<String, u64>]) -> impl Iterator<Item = &'a Event> {
        let loosest = filters
            .iter()
            .map(EventFilter::after_position)
            .reduce(after::looser);
        let start = match loosest {
            // No filters select nothing.
            None => self.events.len(),
            Some(None) => 0,
            // The events after position `p` start at index `p`.
            Some(Some(after)) => usize::try_from(after).unwrap_or(usize::MAX),
        };
        self.events
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(move |event| {
                filters.iter().any(|filter| {
                    filter.matches(
                        &event.aggregate_kind,
                        &event.aggregate_id,
                        &event.kind,
                        &event.position,
                    )
                })
            })
    }
}
// ANCHOR_END: log

impl<M: DeserializeOwned> Store<M> {
    /// The first `limit` events `filters` select, with their metadata
    /// decoded.
    fn load(
        &self,
        filters: &[EventFilter<String, u64>],
        limit: usize,
    ) -> Result<Vec<StoredEvent<String, u64, M>>, Error> {
        let log = self.inner.read_log();
        log.select(filters).take(limit).map(decode_metadata).collect()
    }

    async fn write(
        &self,
        aggregate_kind: &str,
        aggregate_id: &str,
        expected: ExpectedVersion<u64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<u64, Error>
    where
        M: Serialize + Send + 'static,
    {
        // File I/O blocks: it runs on Tokio's blocking pool, not on the
        // task's worker thread.
        let inner = Arc::clone(&self.inner);
        let (aggregate_kind, aggregate_id) = (aggregate_kind.to_owned(), aggregate_id.to_owned());
        tokio::task::spawn_blocking(move || inner.append(&aggregate_kind, &aggregate_id, expected, events))
            .await
            .map_err(|error| AppendError::Store(Error::Task(error)))?
    }
}

// ANCHOR: decode_metadata
/// The event with its metadata decoded into `M`; a [`DecodeError`] naming
/// the event when it does not decode (a file written with another metadata
/// type).
fn decode_metadata<M: DeserializeOwned>(event: &Event) -> Result<StoredEvent<String, u64, M>, Error> {
    match M::deserialize(&event.metadata) {
        Ok(metadata) => Ok(StoredEvent {
            id: event.id,
            aggregate_kind: event.aggregate_kind.clone(),
            aggregate_id: event.aggregate_id.clone(),
            kind: event.kind.clone(),
            position: event.position,
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata,
        }),
        Err(error) => Err(Error::Decode(
            event.decode_error(DecodeFailure::Metadata(Box::new(error))),
        )),
    }
}
// ANCHOR_END: decode_metadata

// ANCHOR: event_store
impl<M> EventStore for Store<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Id = String;
    type Position = u64;
    type Error = Error;
    type Codec = JsonCodec;
    type Metadata = M;

    fn codec(&self) -> &JsonCodec {
        &self.inner.codec
    }

    async fn stream_version<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
    ) -> Result<Option<u64>, Error> {
        Ok(self.inner.read_log().version(aggregate_kind, aggregate_id))
    }

    async fn append<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        expected_version: Option<u64>,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<u64, Error> {
        let expected = expected_version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
        self.write(aggregate_kind, aggregate_id, expected, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<u64, Error> {
        self.write(aggregate_kind, aggregate_id, ExpectedVersion::NoStream, events)
            .await
    }

    // The provided method reads the version, then appends: two steps. The
    // store's own append checks the batch, the ids and "the stream has
    // events" in one step, under its writer lock.
    async fn append_expecting_existing<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        events: NonEmpty<PersistableEvent<M>>,
    ) -> AppendOutcome<u64, Error> {
        self.write(
            aggregate_kind,
            aggregate_id,
            ExpectedVersion::StreamExists,
            events,
        )
        .await
    }

    // The provided method loads the whole stream; the store has an index.
    async fn event_positions<'a>(
        &'a self,
        aggregate_kind: &'a str,
        aggregate_id: &'a String,
        ids: &'a [EventId],
    ) -> Result<Vec<Option<u64>>, Error> {
        let log = self.inner.read_log();
        Ok(ids
            .iter()
            .map(|id| match log.stored_id(aggregate_kind, aggregate_id, id) {
                StoredId::InStream(position) => Some(position),
                StoredId::Missing | StoredId::Elsewhere => None,
            })
            .collect())
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [EventFilter<String, u64>],
    ) -> Result<Vec<StoredEvent<String, u64, M>>, Error> {
        self.load(filters, usize::MAX)
    }

    fn into_decode_error(error: Error) -> Result<DecodeError<String, u64>, Error> {
        match error {
            Error::Decode(decode) => Ok(decode),
            other => Err(other),
        }
    }
}

/// Positions are assigned and made visible under the writer lock, in
/// order: once a reader has seen position `p`, every event at or below it
/// is visible already.
impl<M> GloballyOrdered for Store<M> where M: Serialize + DeserializeOwned + Send + Sync + 'static {}

/// For the same reason every event a load returns is final, so projection
/// snapshots may be taken at the last event applied (the default).
impl<M> SnapshotFrontier for Store<M> where M: Serialize + DeserializeOwned + Send + Sync + 'static {}
// ANCHOR_END: event_store

// ANCHOR: subscribe
impl<M> Subscribe for Store<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn commit_signal(&self) -> CommitSignal {
        self.inner.commits.signal()
    }

    // Every event is visible from the moment it has a position, so the
    // head (the last position) is settled.
    async fn head_position(&self) -> Result<Option<u64>, Error> {
        Ok(self.inner.read_log().head())
    }

    async fn load_page<'a>(
        &'a self,
        filters: &'a [EventFilter<String, u64>],
        limit: usize,
    ) -> Result<Vec<StoredEvent<String, u64, M>>, Error> {
        self.load(filters, limit)
    }
}
// ANCHOR_END: subscribe

impl<M> Clone for Store<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            metadata: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Store<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("jsonl::Store")
            .field("path", &self.inner.path)
            .field("events", &self.inner.read_log().events.len())
            .finish_non_exhaustive()
    }
}

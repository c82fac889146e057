//! How a store is opened: durability, lock waits, readers.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::store::TextId;

use crate::{Error, Store};

/// How hard SQLite works to keep a committed batch on disk
/// (SQLite's `PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is flushed to disk (`fsync`) before it is reported.
    /// A committed batch survives a crash of the process, of the operating
    /// system and a power loss. The default.
    #[default]
    Full,
    /// Commits are written to the write-ahead log but flushed only at
    /// checkpoints. A committed batch survives a crash of the process; an
    /// operating system crash or a power loss may lose the last commits
    /// (never a part of a batch, and the file stays consistent). Appends are
    /// faster, most of all on slow disks. Opt in when that trade is right for
    /// you.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Options for opening a [`Store`]: durability, how long to wait for a lock
/// held by another process, how many reader connections, how often
/// subscriptions look for events written by other processes.
///
/// ```
/// use std::time::Duration;
/// use sourcery_sqlite::{OpenOptions, Store, Synchronous};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store: Store<String, ()> = OpenOptions::new()
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(10))
///     .readers(2)
///     .open(dir.path().join("events.db"))
///     .await?;
/// # drop(store);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) readers: NonZeroUsize,
    pub(crate) poll_interval: Option<Duration>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// The defaults: [`Synchronous::Full`], a busy timeout of 5 seconds,
    /// 4 reader connections, subscriptions polling every second.
    #[must_use]
    pub fn new() -> Self {
        Self {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            readers: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            poll_interval: Some(Duration::from_secs(1)),
        }
    }

    /// How hard SQLite works to keep each commit on disk; see
    /// [`Synchronous`].
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long an operation waits for a lock held by another connection
    /// (another process with the same file, a backup) before it fails with
    /// [`Error::Busy`]. Within one store, writers queue and never see it.
    /// Opening waits too: processes opening one file at the same moment
    /// (switching it to WAL, migrating it) wait for each other up to this
    /// long in all.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many connections serve reads, each on its own thread; reads run
    /// in parallel with each other and with the writer. At least one.
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = NonZeroUsize::new(readers).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// How often a waiting subscription reads the file even though this
    /// store committed nothing: the longest delay before it sees events that
    /// *another process* (or another [`Store`] opened on the same file)
    /// appended. Commits through this store (and its clones) wake its
    /// subscriptions at once, whatever this is.
    ///
    /// `None` turns polling off: right only when nothing but this store
    /// writes the file. The default is one second; each poll is one indexed
    /// read (`max(position)`) per waiting subscription.
    #[must_use]
    pub fn poll_interval(mut self, interval: Option<Duration>) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Opens (creating it if missing) the store in the file at `path`; see
    /// [`Store::open`].
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub async fn open<Id, M>(&self, path: impl AsRef<Path>) -> Result<Store<Id, M>, Error>
    where
        Id: TextId + Clone + std::fmt::Debug + Send + Sync + 'static,
        M: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Store::open_with(path, self.clone()).await
    }
}

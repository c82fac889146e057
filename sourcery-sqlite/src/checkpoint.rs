//! Checkpoints in the store's file: [`CheckpointStore`].

use std::fmt;
use std::sync::Arc;

use rusqlite::OptionalExtension;
use sourcery_core::checkpoint;

use crate::Error;
use crate::schema::At;
use crate::store::{Inner, Store};

const LOAD: &str = "SELECT position FROM sourcery_checkpoints WHERE name = ?1";

const SAVE: &str = "INSERT INTO sourcery_checkpoints (name, position) VALUES (?1, ?2) \
                    ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Projection checkpoints kept in the event store's file (table
/// `sourcery_checkpoints`), for the
/// [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner).
///
/// Made by [`Store::checkpoints`]; it shares the store's connections (saves
/// go through its writer thread, loads through its readers), and clones
/// share them too. A checkpoint is saved in its own transaction, apart from
/// the events.
///
/// ```
/// use sourcery_core::checkpoint::CheckpointStore as _;
/// use sourcery_sqlite::Store;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let store: Store<String, ()> = Store::open_in_memory().await?;
/// let checkpoints = store.checkpoints();
/// checkpoints.save("totals", 42).await?;
/// assert_eq!(checkpoints.load("totals").await?, Some(42));
/// assert_eq!(checkpoints.load("other").await?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CheckpointStore {
    inner: Arc<Inner>,
}

impl<Id, M> Store<Id, M> {
    /// The checkpoint store in this store's file.
    #[must_use]
    pub fn checkpoints(&self) -> CheckpointStore {
        CheckpointStore {
            inner: Arc::clone(self.inner()),
        }
    }
}

impl fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::CheckpointStore")
            .field("path", &self.inner.error_path())
            .finish_non_exhaustive()
    }
}

impl checkpoint::CheckpointStore<i64> for CheckpointStore {
    type Error = Error;

    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<i64>, Error> {
        let name = name.to_owned();
        self.inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(LOAD)
                    .and_then(|mut statement| statement.query_row([&name], |row| row.get(0)).optional())
                    .at(path)
            })
            .await?
    }

    async fn save<'a>(&'a self, name: &'a str, position: i64) -> Result<(), Error> {
        let name = name.to_owned();
        self.inner
            .writer
            .run(move |connection, path| {
                connection
                    .prepare_cached(SAVE)
                    .and_then(|mut statement| statement.execute((name.as_str(), position)))
                    .map(drop)
                    .at(path)
            })
            .await?
    }
}

//! Snapshots in the store's file: [`SnapshotStore`].

use std::fmt;
use std::sync::Arc;

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::snapshot::{self, SaveOutcome, Snapshot, SnapshotFrontier, SnapshotKey, SnapshotPolicy};
use sourcery_core::store::TextId;

use crate::Error;
use crate::schema::At;
use crate::store::{Inner, Store};

const LOAD: &str = "SELECT position, schema_version, data FROM sourcery_snapshots \
                    WHERE subject = ?1 AND kind = ?2 AND id = ?3";

/// One statement: insert, or replace only a snapshot at an earlier position.
/// When the `WHERE` of the update is false, SQLite changes no row: declined.
const SAVE: &str = "INSERT INTO sourcery_snapshots (subject, kind, id, position, schema_version, data) \
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                    ON CONFLICT (subject, kind, id) DO UPDATE SET \
                    position = excluded.position, schema_version = excluded.schema_version, \
                    data = excluded.data, taken_at = excluded.taken_at \
                    WHERE sourcery_snapshots.position < excluded.position";

/// Snapshots kept in the event store's file (table `sourcery_snapshots`):
/// one row per [`SnapshotKey`], the newest snapshot only.
///
/// Made by [`Store::snapshots`] with the policy that says when a repository
/// takes one; it shares the store's connections (saves go through its
/// writer thread, loads through its readers), and clones share them too.
/// A save is one `INSERT … ON CONFLICT … DO UPDATE … WHERE position <
/// excluded.position`, so of two racing saves the later position wins,
/// whichever commits first.
///
/// ```
/// use std::num::NonZeroU64;
/// use sourcery_core::snapshot::{SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore as _};
/// use sourcery_sqlite::Store;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let store: Store<String, ()> = Store::open_in_memory().await?;
/// let every_100 = SnapshotPolicy::EveryNEvents(NonZeroU64::MIN.saturating_add(99));
/// let snapshots = store.snapshots(every_100);
///
/// let key = SnapshotKey::aggregate("account", SnapshotKey::id_text("ACC-1")?);
/// let taken = Snapshot { position: 7, schema_version: 1, data: b"{}".to_vec() };
/// assert_eq!(snapshots.save(&key, taken.clone()).await?, SaveOutcome::Saved);
/// let older = Snapshot { position: 5, ..taken.clone() };
/// assert_eq!(snapshots.save(&key, older).await?, SaveOutcome::Declined);
/// assert_eq!(snapshots.load(&key).await?, Some(taken));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With a [`Repository`](sourcery_core::repository::Repository):
/// `Repository::new(store.clone()).with_snapshots(store.snapshots(policy))`.
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<Inner>,
    policy: SnapshotPolicy,
}

impl<Id, M> Store<Id, M> {
    /// The snapshot store in this store's file, taking snapshots as `policy`
    /// says (every policy loads the snapshots already there).
    #[must_use]
    pub fn snapshots(&self, policy: SnapshotPolicy) -> SnapshotStore {
        SnapshotStore {
            inner: Arc::clone(self.inner()),
            policy,
        }
    }
}

impl SnapshotStore {
    /// The same snapshots, taken as `policy` says.
    #[must_use]
    pub fn with_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("sqlite::SnapshotStore")
            .field("path", &self.inner.error_path())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl snapshot::SnapshotStore<i64> for SnapshotStore {
    type Error = Error;

    fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    async fn load<'a>(&'a self, key: &'a SnapshotKey) -> Result<Option<Snapshot<i64>>, Error> {
        let subject = key.subject().as_str();
        let kind = key.kind().to_owned();
        let id = key.id().to_owned();
        self.inner
            .readers
            .run(move |connection, path| {
                connection
                    .prepare_cached(LOAD)
                    .and_then(|mut statement| {
                        statement
                            .query_row((subject, kind.as_str(), id.as_str()), |row| {
                                // A schema version outside `u32` fails here
                                // (as a database error), not wraps.
                                Ok(Snapshot {
                                    position: row.get(0)?,
                                    schema_version: row.get(1)?,
                                    data: row.get(2)?,
                                })
                            })
                            .optional()
                    })
                    .at(path)
            })
            .await?
    }

    async fn save<'a>(&'a self, key: &'a SnapshotKey, snapshot: Snapshot<i64>) -> Result<SaveOutcome, Error> {
        let subject = key.subject().as_str();
        let kind = key.kind().to_owned();
        let id = key.id().to_owned();
        self.inner
            .writer
            .run(move |connection, path| {
                let changed = connection
                    .prepare_cached(SAVE)
                    .and_then(|mut statement| {
                        statement.execute((
                            subject,
                            kind.as_str(),
                            id.as_str(),
                            snapshot.position,
                            i64::from(snapshot.schema_version),
                            snapshot.data.as_slice(),
                        ))
                    })
                    .at(path)?;
                Ok(if changed == 0 {
                    SaveOutcome::Declined
                } else {
                    SaveOutcome::Saved
                })
            })
            .await?
    }
}

/// The default frontier (`None`: every event a load returns is final) is
/// right here: positions are assigned under SQLite's write lock, which
/// admits one writer at a time across every process using the file, so no
/// event can later commit below a position a reader has seen. A snapshot may
/// be taken at any position a load returned.
impl<Id, M> SnapshotFrontier for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
}

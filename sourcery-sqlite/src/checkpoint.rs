//! Checkpoints in the store's file: [`CheckpointStore`].

use std::fmt;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use sourcery_core::checkpoint::{self, Advance, Claim, Fence};

use crate::Error;
use crate::schema::At;
use crate::store::{Inner, Store};

const LOAD: &str = "SELECT position FROM sourcery_checkpoints WHERE name = ?1";

const SAVE: &str = "INSERT INTO sourcery_checkpoints (name, position) VALUES (?1, ?2) \
                    ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

const CLAIM: &str = "INSERT INTO sourcery_checkpoints (name, position, fence) VALUES (?1, NULL, ?2) \
                     ON CONFLICT (name) DO UPDATE SET fence = excluded.fence, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE sourcery_checkpoints.fence IS NULL OR sourcery_checkpoints.fence <= excluded.fence \
                     RETURNING position";

const ADVANCE: &str = "INSERT INTO sourcery_checkpoints (name, position, fence) VALUES (?1, ?2, ?3) \
                       ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                       fence = max(coalesce(sourcery_checkpoints.fence, excluded.fence), \
                                   coalesce(excluded.fence, sourcery_checkpoints.fence)), \
                       updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                       WHERE (sourcery_checkpoints.fence IS NULL OR excluded.fence IS NULL \
                              OR sourcery_checkpoints.fence <= excluded.fence) \
                         AND (sourcery_checkpoints.position IS NULL \
                              OR sourcery_checkpoints.position <= excluded.position)";

/// `ADVANCE`, also requiring the saved position to be `?4`.
const ADVANCE_FROM: &str = "INSERT INTO sourcery_checkpoints (name, position, fence) VALUES (?1, ?2, ?3) \
                            ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                            fence = max(coalesce(sourcery_checkpoints.fence, excluded.fence), \
                                        coalesce(excluded.fence, sourcery_checkpoints.fence)), \
                            updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                            WHERE (sourcery_checkpoints.fence IS NULL OR excluded.fence IS NULL \
                                   OR sourcery_checkpoints.fence <= excluded.fence) \
                              AND (sourcery_checkpoints.position IS NULL \
                                   OR sourcery_checkpoints.position <= excluded.position) \
                              AND sourcery_checkpoints.position IS ?4";

const SAVED: &str = "SELECT position, fence FROM sourcery_checkpoints WHERE name = ?1";

/// Projection checkpoints kept in the event store's file (table
/// `sourcery_checkpoints`), for the
/// [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner).
///
/// [`claim`](checkpoint::CheckpointStore::claim) and
/// [`advance`](checkpoint::CheckpointStore::advance) are conditional
/// upserts on the writer, so a runner fenced off by a newer lease holder
/// cannot move the checkpoint; a transactional projection advances it
/// inside its own write transaction.
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
                    .and_then(|mut statement| {
                        statement
                            .query_row([&name], |row| row.get::<_, Option<i64>>(0))
                            .optional()
                    })
                    .map(Option::flatten)
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

    async fn claim<'a>(&'a self, name: &'a str, fence: Fence) -> Result<Claim<i64>, Error> {
        let name = name.to_owned();
        self.inner
            .writer
            .run(move |connection, path| claim_on(connection, &name, fence).at(path))
            .await?
    }

    async fn advance<'a>(
        &'a self,
        name: &'a str,
        position: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, Error> {
        let name = name.to_owned();
        self.inner
            .writer
            .run(move |connection, path| advance_on(connection, &name, position, fence).at(path))
            .await?
    }
}

/// [`claim`](checkpoint::CheckpointStore::claim) on `connection`, in the
/// transaction it may be in.
///
/// # Errors
///
/// When SQLite fails (a fence above `i64::MAX` is a conversion error).
pub(crate) fn claim_on(connection: &Connection, name: &str, fence: Fence) -> rusqlite::Result<Claim<i64>> {
    let bound = stored_fence(fence)?;
    for _ in 0..RACES {
        let claimed: Option<Option<i64>> = connection
            .prepare_cached(CLAIM)?
            .query_row((name, bound), |row| row.get(0))
            .optional()?;
        if let Some(checkpoint) = claimed {
            return Ok(Claim::Claimed(checkpoint));
        }
        let (_, recorded) = saved_on(connection, name)?;
        if let Some(recorded) = recorded.filter(|recorded| *recorded > fence) {
            return Ok(Claim::Fenced(recorded));
        }
    }
    Err(raced())
}

/// [`advance`](checkpoint::CheckpointStore::advance) on `connection`, in
/// the transaction it may be in: a transactional projection advances its
/// checkpoint in the transaction of its writes, so that a refusal rolls
/// them back with it.
///
/// # Errors
///
/// As [`claim_on`].
pub(crate) fn advance_on(
    connection: &Connection,
    name: &str,
    position: i64,
    fence: Option<Fence>,
) -> rusqlite::Result<Advance<i64>> {
    advance_checked(connection, name, position, fence, Start::Any)
}

/// [`advance_on`], also refused ([`Advance::Behind`], with the saved
/// position) unless the saved checkpoint is `from`: a read model's batch
/// starts where its runner last saw the checkpoint, so a batch another
/// runner committed in the meantime is never applied twice, lease or not.
pub(crate) fn advance_from_on(
    connection: &Connection,
    name: &str,
    from: Option<i64>,
    position: i64,
    fence: Option<Fence>,
) -> rusqlite::Result<Advance<i64>> {
    advance_checked(connection, name, position, fence, Start::At(from))
}

fn advance_checked(
    connection: &Connection,
    name: &str,
    position: i64,
    fence: Option<Fence>,
    from: Start,
) -> rusqlite::Result<Advance<i64>> {
    let bound = fence.map(stored_fence).transpose()?;
    for _ in 0..RACES {
        let changed = match from {
            Start::At(from) => connection
                .prepare_cached(ADVANCE_FROM)?
                .execute((name, position, bound, from))?,
            Start::Any => connection
                .prepare_cached(ADVANCE)?
                .execute((name, position, bound))?,
        };
        if changed > 0 {
            return Ok(Advance::Saved);
        }
        let (saved, recorded) = saved_on(connection, name)?;
        if let Some(refused) = checkpoint::refusal(saved, recorded, position, fence) {
            return Ok(refused);
        }
        if let Start::At(from) = from
            && saved != from
        {
            return Ok(Advance::Behind(saved.unwrap_or(position)));
        }
    }
    Err(raced())
}

/// Records `head` as where the replay of `name`'s history ends, unless
/// the name has applied something or has one recorded already; returns the
/// one recorded (`None` for a name that applied events before replays were
/// recorded).
pub(crate) fn replay_until_on(
    connection: &Connection,
    name: &str,
    head: i64,
) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached(
            "INSERT INTO sourcery_checkpoints (name, position, replay_until) VALUES (?1, NULL, ?2) \
             ON CONFLICT (name) DO UPDATE SET replay_until = excluded.replay_until \
             WHERE sourcery_checkpoints.replay_until IS NULL AND sourcery_checkpoints.position IS NULL",
        )?
        .execute((name, head))?;
    let recorded: Option<Option<i64>> = connection
        .prepare_cached("SELECT replay_until FROM sourcery_checkpoints WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    Ok(recorded.flatten())
}

/// The position and fence saved under `name`.
fn saved_on(connection: &Connection, name: &str) -> rusqlite::Result<(Option<i64>, Option<Fence>)> {
    let row: Option<(Option<i64>, Option<i64>)> = connection
        .prepare_cached(SAVED)?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (position, fence) = row.unwrap_or_default();
    Ok((position, fence.map(|fence| Fence::new(fence.cast_unsigned()))))
}

/// Where an advance may start from.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// Any saved position (below the new one).
    Any,
    /// Exactly this saved position.
    At(Option<i64>),
}

/// How often a refused claim or advance is tried again when the row read
/// after it allows it (it was deleted in between, by another process).
const RACES: usize = 3;

/// A claim or advance refused `RACES` times by a row that then allowed it.
fn raced() -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(
        "a checkpoint's conditional upsert was refused by a row that allows it".into(),
    )
}

/// A fence as the `INTEGER` column holds it.
fn stored_fence(fence: Fence) -> rusqlite::Result<i64> {
    i64::try_from(fence.get()).map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

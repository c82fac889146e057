//! [`CheckpointStore`]: projection checkpoints in the store's schema.

use std::fmt;
use std::sync::Arc;

use sourcery_core::checkpoint::{self, Advance, Claim, Fence};
use sqlx::postgres::{PgConnection, PgPool};

use crate::{Error, Store};

/// Projection checkpoints in PostgreSQL: the table `sourcery_checkpoints`
/// (`name`, `position`, `fence`, `updated_at`) in the event store's schema,
/// created by [`Store::migrate`]. Implements core's
/// [`CheckpointStore<i64>`](sourcery_core::checkpoint::CheckpointStore) for
/// the [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner).
///
/// [`claim`](checkpoint::CheckpointStore::claim) and
/// [`advance`](checkpoint::CheckpointStore::advance) are each one
/// conditional upsert: the row lock orders them, so a runner fenced off by
/// a newer [`Lease`](crate::Lease) holder cannot move the checkpoint, even
/// if its save was already on its way when the new holder claimed.
///
/// Cheap to clone: clones share the pool.
///
/// ```no_run
/// use sourcery_core::checkpoint::CheckpointStore as _;
/// use sourcery_postgres::{CheckpointStore, Store};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Store = Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// store.migrate().await?;
/// let checkpoints = CheckpointStore::new(&store);
/// checkpoints.save("revenue", 42).await?;
/// assert_eq!(checkpoints.load("revenue").await?, Some(42));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CheckpointStore {
    pool: PgPool,
    schema: Arc<str>,
    load: Arc<str>,
    save: Arc<str>,
    claim: Arc<str>,
    advance: Arc<str>,
    /// `advance`, also requiring the saved position to be `$4`.
    advance_from: Arc<str>,
    saved: Arc<str>,
}

impl CheckpointStore {
    /// The checkpoints of `store`'s schema, on its pool.
    #[must_use]
    pub fn new<Id, M>(store: &Store<Id, M>) -> Self {
        let table = format!("\"{}\".sourcery_checkpoints", store.schema());
        Self {
            pool: store.pool().clone(),
            schema: Arc::from(store.schema()),
            load: Arc::from(format!("SELECT position FROM {table} WHERE name = $1")),
            save: Arc::from(format!(
                "INSERT INTO {table} (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
            )),
            claim: Arc::from(format!(
                "INSERT INTO {table} AS saved (name, position, fence) VALUES ($1, NULL, $2) \
                 ON CONFLICT (name) DO UPDATE SET fence = EXCLUDED.fence, updated_at = now() \
                 WHERE saved.fence IS NULL OR saved.fence <= EXCLUDED.fence \
                 RETURNING position"
            )),
            advance: Arc::from(advance_sql(&table, "")),
            advance_from: Arc::from(advance_sql(&table, "AND saved.position IS NOT DISTINCT FROM $4")),
            saved: Arc::from(format!("SELECT position, fence FROM {table} WHERE name = $1")),
        }
    }

    /// [`claim`](checkpoint::CheckpointStore::claim) on `connection`, in the
    /// transaction it may be in.
    ///
    /// # Errors
    ///
    /// As `claim`.
    pub async fn claim_on(
        &self,
        connection: &mut PgConnection,
        name: &str,
        fence: Fence,
    ) -> Result<Claim<i64>, Error> {
        let fence = stored_fence(fence)?;
        for _ in 0..RACES {
            let claimed: Option<Option<i64>> = sqlx::query_scalar(&self.claim)
                .bind(name)
                .bind(fence)
                .fetch_optional(&mut *connection)
                .await
                .map_err(|error| self.database(error))?;
            if let Some(checkpoint) = claimed {
                return Ok(Claim::Claimed(checkpoint));
            }
            // Refused: a higher fence holds the row. Fences only grow, so
            // the row read now (a newer snapshot) shows one.
            let (_, recorded) = self.saved_on(connection, name).await?;
            if let Some(recorded) = recorded.filter(|recorded| recorded.get() > fence.cast_unsigned()) {
                return Ok(Claim::Fenced(recorded));
            }
        }
        Err(raced())
    }

    /// [`advance`](checkpoint::CheckpointStore::advance) on `connection`, in
    /// the transaction it may be in: a transactional projection advances
    /// its checkpoint in the transaction of its writes, so that a refusal
    /// rolls them back with it.
    ///
    /// # Errors
    ///
    /// As `advance`.
    pub async fn advance_on(
        &self,
        connection: &mut PgConnection,
        name: &str,
        position: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, Error> {
        self.advance_checked(connection, name, position, fence, Start::Any)
            .await
    }

    /// [`advance_on`](Self::advance_on), also refused
    /// ([`Advance::Behind`], with the saved position) unless the saved
    /// checkpoint is `from`: a read model's batch starts where its runner
    /// last saw the checkpoint, so a batch another runner committed in the
    /// meantime is never applied twice, lease or not.
    pub(crate) async fn advance_from_on(
        &self,
        connection: &mut PgConnection,
        name: &str,
        from: Option<i64>,
        position: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, Error> {
        self.advance_checked(connection, name, position, fence, Start::At(from))
            .await
    }

    async fn advance_checked(
        &self,
        connection: &mut PgConnection,
        name: &str,
        position: i64,
        fence: Option<Fence>,
        from: Start,
    ) -> Result<Advance<i64>, Error> {
        let bound = fence.map(stored_fence).transpose()?;
        for _ in 0..RACES {
            let statement = match from {
                Start::At(from) => sqlx::query(&self.advance_from)
                    .bind(name)
                    .bind(position)
                    .bind(bound)
                    .bind(from),
                Start::Any => sqlx::query(&self.advance).bind(name).bind(position).bind(bound),
            };
            let advanced = statement
                .execute(&mut *connection)
                .await
                .map_err(|error| self.database(error))?;
            if advanced.rows_affected() > 0 {
                return Ok(Advance::Saved);
            }
            let (saved, recorded) = self.saved_on(connection, name).await?;
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
    /// the name has applied something or has one recorded already; returns
    /// the one recorded (`None` for a name that applied events before
    /// replays were recorded).
    pub(crate) async fn replay_until(&self, name: &str, head: i64) -> Result<Option<i64>, Error> {
        let table = format!("\"{}\".sourcery_checkpoints", self.schema);
        sqlx::query(&format!(
            "INSERT INTO {table} AS saved (name, position, replay_until) VALUES ($1, NULL, $2) \
             ON CONFLICT (name) DO UPDATE SET replay_until = EXCLUDED.replay_until \
             WHERE saved.replay_until IS NULL AND saved.position IS NULL"
        ))
        .bind(name)
        .bind(head)
        .execute(&self.pool)
        .await
        .map_err(|error| self.database(error))?;
        let recorded: Option<Option<i64>> =
            sqlx::query_scalar(&format!("SELECT replay_until FROM {table} WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|error| self.database(error))?;
        Ok(recorded.flatten())
    }

    /// The position and fence saved under `name`.
    async fn saved_on(
        &self,
        connection: &mut PgConnection,
        name: &str,
    ) -> Result<(Option<i64>, Option<Fence>), Error> {
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(&self.saved)
            .bind(name)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|error| self.database(error))?;
        let (position, fence) = row.unwrap_or_default();
        Ok((position, fence.map(|fence| Fence::new(fence.cast_unsigned()))))
    }

    /// Deletes the checkpoint saved under `name`, so that the projection is
    /// rebuilt from the start on its next run. Returns whether there was
    /// one. The fence that claimed the name stays: a runner fenced off
    /// before stays fenced off.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    pub async fn reset(&self, name: &str) -> Result<bool, Error> {
        let delete = format!(
            "UPDATE \"{}\".sourcery_checkpoints SET position = NULL, updated_at = now() \
             WHERE name = $1 AND position IS NOT NULL",
            self.schema
        );
        let deleted = sqlx::query(&delete)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Maps a database error, telling a missing table apart.
    pub(crate) fn database(&self, error: sqlx::Error) -> Error {
        let missing = error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .is_some_and(|code| matches!(code.as_ref(), "42P01" | "42703" | "3F000"));
        if missing {
            Error::NotMigrated {
                schema: self.schema.to_string(),
                source: error,
            }
        } else {
            Error::Database(error)
        }
    }
}

impl fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::CheckpointStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl checkpoint::CheckpointStore<i64> for CheckpointStore {
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<i64>, Error> {
        let saved: Option<Option<i64>> = sqlx::query_scalar(&self.load)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(saved.flatten())
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    async fn save<'a>(&'a self, name: &'a str, position: i64) -> Result<(), Error> {
        sqlx::query(&self.save)
            .bind(name)
            .bind(position)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(())
    }

    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing or lacks the fence (migrate).
    async fn claim<'a>(&'a self, name: &'a str, fence: Fence) -> Result<Claim<i64>, Error> {
        let mut connection = self.pool.acquire().await?;
        self.claim_on(&mut connection, name, fence).await
    }

    /// # Errors
    ///
    /// As `claim`.
    async fn advance<'a>(
        &'a self,
        name: &'a str,
        position: i64,
        fence: Option<Fence>,
    ) -> Result<Advance<i64>, Error> {
        let mut connection = self.pool.acquire().await?;
        self.advance_on(&mut connection, name, position, fence).await
    }
}

/// The conditional upsert of an advance into `table`, with `extra`
/// conditions on the saved row.
fn advance_sql(table: &str, extra: &str) -> String {
    format!(
        "INSERT INTO {table} AS saved (name, position, fence) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE \
         SET position = EXCLUDED.position, fence = GREATEST(saved.fence, EXCLUDED.fence), \
             updated_at = now() \
         WHERE (saved.fence IS NULL OR EXCLUDED.fence IS NULL OR saved.fence <= EXCLUDED.fence) \
           AND (saved.position IS NULL OR saved.position <= EXCLUDED.position) {extra} \
         RETURNING 1"
    )
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
/// after it allows it (it was deleted in between).
const RACES: usize = 3;

/// A claim or advance refused `RACES` times by a row that then allowed it.
fn raced() -> Error {
    Error::Unexpected {
        detail: "a checkpoint's conditional upsert was refused by a row that allows it",
    }
}

/// A fence as the `bigint` column holds it.
fn stored_fence(fence: Fence) -> Result<i64, Error> {
    i64::try_from(fence.get()).map_err(|_| Error::Unexpected {
        detail: "a fence above i64::MAX (PostgreSQL leases count from 1)",
    })
}

//! [`CheckpointStore`]: projection checkpoints in the store's schema.

use std::fmt;
use std::sync::Arc;

use sourcery_core::checkpoint;
use sqlx::postgres::PgPool;

use crate::{Error, Store};

/// Projection checkpoints in PostgreSQL: the table `sourcery_checkpoints`
/// (`name`, `position`, `updated_at`) in the event store's schema, created by
/// [`Store::migrate`]. Implements core's
/// [`CheckpointStore<i64>`](sourcery_core::checkpoint::CheckpointStore) for
/// the [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner).
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
        }
    }

    /// Deletes the checkpoint saved under `name`, so that the projection is
    /// rebuilt from the start on its next run. Returns whether there was one.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database fails, [`Error::NotMigrated`]
    /// when the table is missing.
    pub async fn reset(&self, name: &str) -> Result<bool, Error> {
        let delete = format!(
            "DELETE FROM \"{}\".sourcery_checkpoints WHERE name = $1",
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
    fn database(&self, error: sqlx::Error) -> Error {
        let missing = error
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .is_some_and(|code| matches!(code.as_ref(), "42P01" | "3F000"));
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
        sqlx::query_scalar(&self.load)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| self.database(error))
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
}

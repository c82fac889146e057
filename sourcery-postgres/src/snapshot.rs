//! [`SnapshotStore`]: snapshots in the event store's database, one row per
//! key; and the event store's snapshot frontier.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::snapshot::{self, SaveOutcome, Snapshot, SnapshotFrontier, SnapshotKey, SnapshotPolicy};
use sourcery_core::store::TextId;
use sqlx::Row as _;
use sqlx::postgres::PgPool;

use crate::schema::Schema;
use crate::store::database_error;
use crate::{Error, Store, migrate};

/// Snapshots of aggregates and projections, kept in PostgreSQL beside the
/// events: the table `sourcery_snapshots` in the event store's schema, one
/// row per [`SnapshotKey`].
///
/// Implements [`sourcery_core::snapshot::SnapshotStore`] for the event
/// store's `i64` positions; give it to
/// [`Repository::with_snapshots`](sourcery_core::repository::Repository::with_snapshots).
/// Make one from the event store with [`Store::snapshots`], so both use the
/// same pool and schema; the table is created by [`Store::migrate`] (or
/// [`migrate`](Self::migrate), the same migrations).
///
/// - A [`save`](sourcery_core::snapshot::SnapshotStore::save) is one
///   statement in autocommit: an upsert that replaces the row only with a
///   strictly later position. A racing writer with an older state changes
///   nothing and gets [`SaveOutcome::Declined`].
/// - A [`load`](sourcery_core::snapshot::SnapshotStore::load) is one
///   primary-key lookup.
///
/// Cheap to clone: clones share the pool. [`with_policy`](Self::with_policy)
/// gives a handle on the same snapshots with another policy.
pub struct SnapshotStore {
    pool: PgPool,
    sql: Arc<Statements>,
    policy: SnapshotPolicy,
}

/// The snapshot store's SQL, schema-qualified once at construction.
#[derive(Debug)]
struct Statements {
    schema: Schema,
    load: String,
    save: String,
}

impl Statements {
    fn new(schema: Schema) -> Self {
        let table = schema.qualify("sourcery_snapshots");
        Self {
            load: format!(
                "SELECT position, schema_version, data FROM {table} \
                 WHERE subject = $1 AND kind = $2 AND id = $3"
            ),
            // Newest wins in one statement: a conflicting row is replaced
            // only by a later position; otherwise no row is touched.
            save: format!(
                "INSERT INTO {table} AS kept (subject, kind, id, position, schema_version, data) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (subject, kind, id) DO UPDATE \
                 SET position = EXCLUDED.position, schema_version = EXCLUDED.schema_version, \
                     data = EXCLUDED.data, recorded_at = now() \
                 WHERE kept.position < EXCLUDED.position"
            ),
            schema,
        }
    }
}

impl SnapshotStore {
    /// A snapshot store on `pool`, with its table in the `public` schema,
    /// taking snapshots per `policy`.
    #[must_use]
    pub fn new(pool: PgPool, policy: SnapshotPolicy) -> Self {
        Self::from_parts(pool, Schema::public(), policy)
    }

    /// A snapshot store on `pool`, with its table in `schema` (the event
    /// store's: [`Store::snapshots`] does this for you).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`] unless the name is 1 to 63 ASCII
    /// letters, digits and `_`, not starting with a digit nor with `pg_`
    /// (PostgreSQL reserves that prefix for system schemas).
    pub fn with_schema(
        pool: PgPool,
        schema: impl Into<String>,
        policy: SnapshotPolicy,
    ) -> Result<Self, Error> {
        Ok(Self::from_parts(pool, Schema::new(schema.into())?, policy))
    }

    fn from_parts(pool: PgPool, schema: Schema, policy: SnapshotPolicy) -> Self {
        Self {
            pool,
            sql: Arc::new(Statements::new(schema)),
            policy,
        }
    }

    /// A handle on the same snapshots (same pool and table) with another
    /// policy.
    #[must_use]
    pub fn with_policy(&self, policy: SnapshotPolicy) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: Arc::clone(&self.sql),
            policy,
        }
    }

    /// The pool the store runs on.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the snapshot table lives in.
    #[must_use]
    pub fn schema(&self) -> &str {
        self.sql.schema.name()
    }

    /// Creates or upgrades the schema's tables, the event store's included:
    /// the same migrations as [`Store::migrate`], with the same guarantees.
    ///
    /// # Errors
    ///
    /// As [`Store::migrate`].
    pub async fn migrate(&self) -> Result<Vec<i64>, Error> {
        migrate::run(&self.pool, &self.sql.schema).await
    }

    fn database(&self, error: sqlx::Error) -> Error {
        database_error(self.schema(), error)
    }
}

impl Clone for SnapshotStore {
    fn clone(&self) -> Self {
        self.with_policy(self.policy)
    }
}

impl fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::SnapshotStore")
            .field("schema", &self.schema())
            .field("policy", &self.policy)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl snapshot::SnapshotStore<i64> for SnapshotStore {
    type Error = Error;

    fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    /// One primary-key lookup.
    async fn load<'a>(&'a self, key: &'a SnapshotKey) -> Result<Option<Snapshot<i64>>, Error> {
        let row = sqlx::query(&self.sql.load)
            .bind(key.subject().as_str())
            .bind(key.kind())
            .bind(key.id())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let position: i64 = row.try_get(0)?;
        let schema_version: i64 = row.try_get(1)?;
        let data: Vec<u8> = row.try_get(2)?;
        let schema_version = u32::try_from(schema_version).map_err(|_| Error::Unexpected {
            detail: "a snapshot's schema version is outside 0..=4294967295 (the table's check forbids it)",
        })?;
        Ok(Some(Snapshot {
            position,
            schema_version,
            data,
        }))
    }

    /// One upsert in autocommit; no row touched means a snapshot at the
    /// same or a later position is kept: [`SaveOutcome::Declined`].
    async fn save<'a>(&'a self, key: &'a SnapshotKey, snapshot: Snapshot<i64>) -> Result<SaveOutcome, Error> {
        let written = sqlx::query(&self.sql.save)
            .bind(key.subject().as_str())
            .bind(key.kind())
            .bind(key.id())
            .bind(snapshot.position)
            .bind(i64::from(snapshot.schema_version))
            .bind(snapshot.data)
            .execute(&self.pool)
            .await
            .map_err(|error| self.database(error))?;
        Ok(if written.rows_affected() == 0 {
            SaveOutcome::Declined
        } else {
            SaveOutcome::Saved
        })
    }
}

impl<Id, M> Store<Id, M> {
    /// A snapshot store on this store's pool and schema, taking snapshots
    /// per `policy`.
    ///
    /// ```no_run
    /// use std::num::NonZeroU64;
    /// use sourcery_core::repository::Repository;
    /// use sourcery_core::snapshot::SnapshotPolicy;
    /// use sourcery_postgres::Store;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store: Store = Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// store.migrate().await?; // the events' and the snapshots' tables
    /// let every_100 = SnapshotPolicy::EveryNEvents(NonZeroU64::new(100).ok_or("zero")?);
    /// let repository = Repository::new(store.clone()).with_snapshots(store.snapshots(every_100));
    /// # let _ = repository;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn snapshots(&self, policy: SnapshotPolicy) -> SnapshotStore {
        SnapshotStore::from_parts(self.pool().clone(), self.schema_definition().clone(), policy)
    }
}

/// Projection snapshots are taken only at or below the safe frontier
/// ([`Store::safe_position`]): a position below which no transaction can
/// still commit an event, so a projection that resumes after its snapshot
/// never misses an append that was in flight when the snapshot was taken.
/// While nothing is safe yet, the frontier is position 0: no snapshot.
impl<Id, M> SnapshotFrontier for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn snapshot_frontier(&self) -> Result<Option<i64>, Error> {
        // `None` would mean "every loaded event is final"; 0 is "nothing is".
        Ok(Some(self.safe_position().await?.unwrap_or(0)))
    }
}

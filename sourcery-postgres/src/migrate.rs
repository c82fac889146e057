//! Versioned, embedded migrations.
//!
//! The files in `migrations/` are numbered; `migrate` applies the ones a
//! schema lacks, in order, in one transaction, under a transaction advisory
//! lock keyed by the schema name, and records each in
//! `<schema>.sourcery_migrations` with a checksum of its text. Several
//! processes may call it at once: one applies, the others wait for it and
//! then find nothing to do.

use sqlx::{Executor as _, PgPool, Row};

use crate::Error;
use crate::schema::{Schema, fnv1a};

/// One migration: its number, file name and SQL, with placeholders.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this release ships, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_events.sql",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_append.sql",
        sql: include_str!("../migrations/0002_append.sql"),
    },
    Migration {
        version: 3,
        name: "0003_frontier.sql",
        sql: include_str!("../migrations/0003_frontier.sql"),
    },
    Migration {
        version: 4,
        name: "0004_checkpoints.sql",
        sql: include_str!("../migrations/0004_checkpoints.sql"),
    },
    Migration {
        version: 5,
        name: "0005_snapshots.sql",
        sql: include_str!("../migrations/0005_snapshots.sql"),
    },
    Migration {
        version: 6,
        name: "0006_append_statement.sql",
        sql: include_str!("../migrations/0006_append_statement.sql"),
    },
    Migration {
        version: 7,
        name: "0007_frontier_own_appends.sql",
        sql: include_str!("../migrations/0007_frontier_own_appends.sql"),
    },
    Migration {
        version: 8,
        name: "0008_schema_version.sql",
        sql: include_str!("../migrations/0008_schema_version.sql"),
    },
    Migration {
        version: 9,
        name: "0009_event_ids.sql",
        sql: include_str!("../migrations/0009_event_ids.sql"),
    },
    Migration {
        version: 10,
        name: "0010_read_models.sql",
        sql: include_str!("../migrations/0010_read_models.sql"),
    },
    Migration {
        version: 11,
        name: "0011_reactors.sql",
        sql: include_str!("../migrations/0011_reactors.sql"),
    },
];

/// The highest migration this release ships.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

impl Migration {
    /// The checksum recorded with the migration: of its text with
    /// placeholders, so that it is the same in every schema.
    fn checksum(&self) -> String {
        format!("{:016x}", fnv1a(&[self.sql]))
    }

    /// The SQL for `schema`: placeholders replaced by the quoted schema and
    /// the lock keys (numbers, never user text).
    fn sql_for(&self, schema: &Schema) -> String {
        self.sql
            .replace("__SCHEMA__", schema.quoted())
            .replace("__ORDER_LOCK__", &schema.order_lock().to_string())
            .replace("__STREAM_LOCK_SEED__", &schema.stream_lock_seed().to_string())
            .replace(
                "__APPENDER_LOCK_CLASS__",
                &schema.appender_lock_class().to_string(),
            )
    }
}

/// Brings `schema` up to the latest migration. Returns the versions applied
/// by this call.
pub(crate) async fn run(pool: &PgPool, schema: &Schema) -> Result<Vec<i64>, Error> {
    run_up_to(pool, schema, latest_version()).await
}

/// Applies the migrations `schema` lacks up to `last` (included): the schema
/// as the release that shipped `last` left it. Returns the versions applied
/// by this call.
pub(crate) async fn run_up_to(pool: &PgPool, schema: &Schema, last: i64) -> Result<Vec<i64>, Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(schema.migration_lock())
        .execute(&mut *tx)
        .await?;
    // Under the lock, so concurrent callers cannot race on the catalog.
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             version    bigint      PRIMARY KEY,
             name       text        NOT NULL,
             checksum   text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema = schema.quoted(),
        table = schema.qualify("sourcery_migrations"),
    );
    // Multi-statement SQL through `Executor::execute` with a bare `&str`
    // (the simple query protocol): `raw_sql(..).execute(..)` makes the
    // future not `Send` (sqlx #3150).
    (&mut *tx).execute(setup.as_str()).await?;

    let select = format!(
        "SELECT version, checksum FROM {} ORDER BY version",
        schema.qualify("sourcery_migrations")
    );
    let recorded = sqlx::query(&select).fetch_all(&mut *tx).await?;
    let mut applied = Vec::with_capacity(recorded.len());
    for row in &recorded {
        let version: i64 = row.try_get(0)?;
        let checksum: String = row.try_get(1)?;
        applied.push((version, checksum));
    }
    if let Some(&(found, _)) = applied.last()
        && found > latest_version()
    {
        return Err(Error::SchemaTooNew {
            schema: schema.name().to_owned(),
            found,
            known: latest_version(),
        });
    }

    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|migration| migration.version <= last) {
        if let Some((_, checksum)) = applied.iter().find(|(version, _)| *version == migration.version) {
            if *checksum != migration.checksum() {
                return Err(Error::MigrationChanged {
                    schema: schema.name().to_owned(),
                    version: migration.version,
                    name: migration.name,
                });
            }
            continue;
        }
        let failed = |source| Error::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        let sql = migration.sql_for(schema);
        (&mut *tx).execute(sql.as_str()).await.map_err(failed)?;
        let record = format!(
            "INSERT INTO {} (version, name, checksum) VALUES ($1, $2, $3)",
            schema.qualify("sourcery_migrations")
        );
        sqlx::query(&record)
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        newly_applied.push(migration.version);
    }
    tx.commit().await?;
    Ok(newly_applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn migrating_can_be_spawned() {
        // Compile-time: the future is `Send`, so `tokio::spawn` takes it.
        let _ = |pool: PgPool, schema: Schema| async move {
            assert_send(run(&pool, &schema));
        };
    }

    #[test]
    fn migrations_are_numbered_in_order_and_named_by_their_number() {
        assert_eq!(MIGRATIONS.first().map(|migration| migration.version), Some(1));
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "{} must come after {}",
                pair[1].name,
                pair[0].name
            );
        }
        for migration in MIGRATIONS {
            assert!(
                migration.name.starts_with(&format!("{:04}_", migration.version)),
                "{} is not named by its number {}",
                migration.name,
                migration.version
            );
        }
    }

    #[test]
    fn placeholders_are_all_replaced() {
        let schema = Schema::new("Tenant_A".to_owned()).unwrap();
        for migration in MIGRATIONS {
            let sql = migration.sql_for(&schema);
            assert!(
                !sql.contains("__S") && !sql.contains("__O") && !sql.contains("__A"),
                "{} keeps a placeholder",
                migration.name
            );
            assert!(sql.contains("\"Tenant_A\".sourcery_"));
        }
    }
}

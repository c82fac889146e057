//! Fresh, empty stores for each test case: in memory, in a SQLite temp
//! file, and in a PostgreSQL schema of its own that is dropped afterwards.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sourcery_postgres::SubscriptionOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::run::{Meta, Store};

pub(crate) type InMemory = sourcery_core::store::inmemory::Store<String, Meta>;
pub(crate) type Sqlite = sourcery_sqlite::Store<String, Meta>;
pub(crate) type Postgres = sourcery_postgres::Store<String, Meta>;

impl Store for InMemory {}

impl Store for Sqlite {}

impl Store for Postgres {
    /// The rows of the table with their transactions, the safe frontier
    /// and what holds it back.
    async fn diagnose(&self) -> String {
        // Position, transaction, its status, aggregate kind and id, sequence.
        type Row = (i64, String, Option<String>, String, String, i64);
        let rows: Result<Vec<Row>, sqlx::Error> =
            sqlx::query_as(&format!(
                "SELECT position, tx_id::text, pg_xact_status(tx_id), aggregate_kind, aggregate_id, stream_sequence \
                 FROM \"{}\".sourcery_events ORDER BY position",
                self.schema()
            ))
            .fetch_all(self.pool())
            .await;
        let snapshot: Result<String, sqlx::Error> = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(self.pool())
            .await;
        let mut text = format!(
            "PostgreSQL, schema {}: safe position {:?}, frontier blockers {:?}, snapshot {snapshot:?}\n",
            self.schema(),
            self.safe_position().await,
            self.frontier_blockers().await
        );
        match rows {
            Ok(rows) => {
                for (position, tx_id, status, kind, id, sequence) in rows {
                    let _ = writeln!(
                        text,
                        "  position {position}: transaction {tx_id} ({status:?}), {kind:?}/{id:?} #{sequence}"
                    );
                }
            }
            Err(error) => {
                let _ = writeln!(text, "  the table cannot be read: {error}");
            }
        }
        text
    }
}

/// An empty in-memory store.
pub(crate) fn in_memory() -> InMemory {
    InMemory::new()
}

/// An empty SQLite store in a file of a fresh temporary directory, which
/// goes when the returned directory is dropped (after the store).
pub(crate) async fn sqlite() -> (Sqlite, tempfile::TempDir) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    // `NORMAL`: a commit survives a crash of the process, which is all a
    // test needs, without an fsync per commit.
    let store = sourcery_sqlite::OpenOptions::new()
        .synchronous(sourcery_sqlite::Synchronous::Normal)
        .open(directory.path().join("events.db"))
        .await
        .expect("a SQLite store opens in a fresh directory");
    (store, directory)
}

/// The schemas these tests create are named `sourcery_diff<unix
/// seconds>_<pid>_<n>`.
const PREFIX: &str = "sourcery_diff";

/// Schemas of this prefix older than this are left-overs of an interrupted
/// run: the next run drops them.
const LEFT_OVER_AFTER: Duration = Duration::from_secs(3600);

static NEXT_SCHEMA: AtomicU32 = AtomicU32::new(0);

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The PostgreSQL server, where each test case gets a schema of its own.
#[derive(Debug)]
pub(crate) struct Server {
    pool: PgPool,
}

impl Server {
    /// The server of `DATABASE_URL`, or `None` after saying on stderr that
    /// the PostgreSQL part of `test` is skipped. Panics when `DATABASE_URL`
    /// is unset but `CI` is set: CI must run it.
    pub(crate) async fn connect(test: &str, connections: u32) -> Option<Self> {
        let url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "DATABASE_URL is not set, and CI is: the differential test must run on PostgreSQL in CI \
                     (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
                );
                // Straight to stderr: the harness captures `eprintln!` of a
                // passing test, and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: the PostgreSQL store is SKIPPED, DATABASE_URL is not set \
                     (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test); \
                     only the in-memory and SQLite stores were compared with the model"
                );
                return None;
            }
        };
        let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("sourcery-differential-test"))
            .await
            .expect("the PostgreSQL server of DATABASE_URL accepts connections");
        let server = Self { pool };
        server.drop_left_overs().await;
        Some(server)
    }

    /// An empty, migrated store in a fresh schema. Drop it with
    /// [`drop_store`](Self::drop_store).
    pub(crate) async fn fresh(&self) -> Postgres {
        let name = format!(
            "{PREFIX}{}_{}_{}",
            unix_seconds(),
            std::process::id(),
            NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
        );
        // One process, one store value: subscribers are woken in process,
        // so no `LISTEN` connection or `NOTIFY` per case.
        let store = Postgres::with_schema(self.pool.clone(), name)
            .expect("the test's schema names are valid")
            .with_subscription_options(
                SubscriptionOptions::default()
                    .listen(false)
                    .notify_other_processes(false),
            );
        store
            .migrate()
            .await
            .expect("the migrations apply to a fresh schema");
        store
    }

    /// Drops `store` (every clone of it must be gone) and its schema.
    pub(crate) async fn drop_store(&self, store: Postgres) {
        let schema = store.schema().to_owned();
        drop(store);
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&self.pool)
            .await
            .expect("the test's schema can be dropped");
    }

    /// Drops the schemas interrupted runs left behind.
    async fn drop_left_overs(&self) {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)")
                .bind(PREFIX)
                .fetch_all(&self.pool)
                .await
                .expect("the catalog can be read");
        let now = unix_seconds();
        for name in names {
            let created: Option<u64> = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|seconds| seconds.parse().ok());
            if created.is_some_and(|created| created + LEFT_OVER_AFTER.as_secs() < now) {
                // Another run may be dropping the same schema: ignore errors.
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&self.pool)
                    .await;
            }
        }
    }
}

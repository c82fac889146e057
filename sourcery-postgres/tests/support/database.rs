//! What every PostgreSQL test needs: the server's URL from `DATABASE_URL`,
//! and a fresh schema per store, so tests run in parallel and twice in a row.
//!
//! Included as `mod support` by `tests/conformance.rs` and by
//! `tests/integration/main.rs` (whose modules `use crate::support`).

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different part of the helper"
)]

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_postgres::Store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

/// Test schemas are named `sourcery_t<unix seconds>_<pid>_<n>`.
const PREFIX: &str = "sourcery_t";

/// Schemas older than this are dropped by the next test run.
const KEEP_FOR: Duration = Duration::from_secs(3600);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The server's URL, or `None` (after saying so) when `DATABASE_URL` is
/// unset on a developer's machine. Panics when it is unset under CI.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "DATABASE_URL is not set, and CI is: the PostgreSQL tests must run in CI \
                 (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
            );
            // Written to stderr directly, not through `eprintln!`: the test
            // harness captures the macros' output of passing tests, and a
            // skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL tests SKIPPED: DATABASE_URL is not set \
                 (set it, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test, to run them)"
            );
            None
        }
    }
}

/// A pool of at most `connections` connections, tagged with
/// `application_name` (tests find their backends by it).
pub async fn pool(connections: u32, application_name: &str) -> Option<PgPool> {
    let url = database_url()?;
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.application_name(application_name))
        .await
        .expect("the test database accepts connections");
    Some(pool)
}

/// A schema name no other test (in this run or another) uses.
pub fn fresh_schema_name() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format!(
        "{PREFIX}{seconds}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A migrated store in a fresh schema, on a pool of `connections`.
pub async fn store_with<Id, M>(connections: u32) -> Option<Store<Id, M>>
where
    Id: Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let pool = pool(connections, "sourcery-postgres-test").await?;
    sweep_old_schemas(&pool).await;
    let store = Store::with_schema(pool, fresh_schema_name()).expect("test schema names are valid");
    store.migrate().await.expect("migrations apply to a fresh schema");
    Some(store)
}

/// A migrated store in a fresh schema, on a pool of 10.
pub async fn store<Id, M>() -> Option<Store<Id, M>>
where
    Id: Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    store_with(10).await
}

/// Drops the test schemas of runs older than [`KEEP_FOR`]; recent ones stay
/// for inspection. Errors are ignored: a parallel test may drop the same.
async fn sweep_old_schemas(pool: &PgPool) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)",
    )
    .bind(PREFIX)
    .fetch_all(pool)
    .await
    else {
        return;
    };
    for name in names {
        let seconds: Option<u64> = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|seconds| seconds.parse().ok());
        if seconds.is_some_and(|seconds| seconds + KEEP_FOR.as_secs() < now) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(pool)
                .await;
        }
    }
}

/// Awaits `future` for at most `seconds`, panicking with `what` if it hangs.
pub async fn bounded<T>(what: &str, seconds: u64, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(elapsed) => panic!("{what} did not finish within {seconds}s ({elapsed})"),
    }
}

/// Where a foreign transaction runs: somewhere that shares the server with
/// a store but none of its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// An application's own table, in another schema of the store's database.
    OtherSchema,
    /// Another database of the same server (`postgres`).
    OtherDatabase,
}

impl Foreign {
    pub const ALL: [Self; 2] = [Self::OtherSchema, Self::OtherDatabase];
}

/// Opens a transaction that has a transaction id (so it is in every
/// snapshot's list of running transactions until it ends) and keeps it
/// open: an insert into a table of a fresh schema, or `pg_current_xact_id()`
/// in the `postgres` database. Roll it back (or drop the connection) to end
/// it.
pub async fn foreign_transaction(place: Foreign) -> PgConnection {
    let url = database_url().expect("DATABASE_URL is set");
    let mut options: PgConnectOptions = url.parse().expect("DATABASE_URL is a valid PostgreSQL URL");
    options = options.application_name("sourcery-postgres-test-foreign");
    let mut connection = match place {
        Foreign::OtherSchema => {
            let mut connection = PgConnection::connect_with(&options).await.expect("connect");
            let schema = fresh_schema_name();
            for statement in [
                format!("CREATE SCHEMA \"{schema}\""),
                format!("CREATE TABLE \"{schema}\".orders (id bigint PRIMARY KEY)"),
            ] {
                sqlx::query(&statement)
                    .execute(&mut connection)
                    .await
                    .expect("the application's schema");
            }
            sqlx::query("BEGIN")
                .execute(&mut connection)
                .await
                .expect("begin");
            sqlx::query(&format!("INSERT INTO \"{schema}\".orders VALUES (1)"))
                .execute(&mut connection)
                .await
                .expect("the application's insert");
            connection
        }
        Foreign::OtherDatabase => {
            let mut connection = PgConnection::connect_with(&options.database("postgres"))
                .await
                .expect("connect to the postgres database");
            sqlx::query("BEGIN")
                .execute(&mut connection)
                .await
                .expect("begin");
            connection
        }
    };
    // An insert has one already; in the other database this assigns it.
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut connection)
        .await
        .expect("a transaction id");
    connection
}

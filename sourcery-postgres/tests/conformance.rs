//! The PostgreSQL store passes the conformance suite, one test per rule,
//! each in a fresh schema: with its checkpoint store, snapshot store and
//! lease; and with `()` metadata.

#[path = "support/database.rs"]
mod support;

use std::time::Duration;

use sourcery_core::snapshot::SnapshotPolicy;
use sourcery_core::test::conformance::LeaseFixture;
use sourcery_postgres::{CheckpointStore, Lease, LeaseGuard, Store};

async fn fresh_store() -> Store<String, serde_json::Value> {
    support::store_with(20).await.expect("DATABASE_URL is set")
}

/// Contenders for leases in one schema, each acquiring on connections of
/// its own; a holder is severed with `pg_terminate_backend`.
struct Leases(Store<String, serde_json::Value>);

impl LeaseFixture for Leases {
    type Lease = Lease;

    async fn contender(&self) -> Lease {
        Lease::new(&self.0)
            .retry_interval(Duration::from_millis(50))
            .heartbeat(Duration::from_millis(100))
    }

    async fn sever<'a>(&'a self, guard: &'a mut LeaseGuard) {
        let killed: Result<bool, _> = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(guard.pid())
            .fetch_one(self.0.pool())
            .await;
        assert!(
            matches!(killed, Ok(true)),
            "the lease holder's backend {} could be terminated: {killed:?}",
            guard.pid()
        );
    }
}

// ANCHOR: conformance
sourcery_core::test::conformance::suite! {
    store: fresh_store,
    capabilities: [ordered, subscribe],
    checkpoints: || async { CheckpointStore::new(&fresh_store().await) },
    snapshots: || async { fresh_store().await.snapshots(SnapshotPolicy::Never) },
    leases: || async { Leases(fresh_store().await) },
    skip_if: support::database_url().is_none(),
}
// ANCHOR_END: conformance

/// With `()` metadata.
mod unit_metadata {
    use super::support;

    sourcery_core::test::conformance::suite! {
        store: || async {
            let store: sourcery_postgres::Store<String, ()> =
                support::store_with(20).await.expect("DATABASE_URL is set");
            store
        },
        capabilities: [ordered, subscribe],
        skip_if: support::database_url().is_none(),
    }
}

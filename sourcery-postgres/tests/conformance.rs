//! The PostgreSQL store passes the store conformance suite.

#[path = "support/database.rs"]
mod support;

use sourcery_core::test::conformance;
use sourcery_postgres::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_with_json_metadata_conforms() {
    if support::database_url().is_none() {
        return;
    }
    conformance::run(|| async {
        support::store_with::<String, serde_json::Value>(20)
            .await
            .expect("DATABASE_URL is set")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_with_unit_metadata_conforms() {
    if support::database_url().is_none() {
        return;
    }
    conformance::run(|| async {
        let store: Store<String, ()> = support::store_with(20).await.expect("DATABASE_URL is set");
        store
    })
    .await;
}

//! Subscriptions on PostgreSQL: the conformance suite, the in-flight gap,
//! checkpoints, the stall warning and a load test with several writers and
//! subscribers.

#[path = "support/database.rs"]
mod support;

use sourcery_core::test::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_subscriptions_conform() {
    if support::database_url().is_none() {
        return;
    }
    conformance::run_subscriptions(|| async {
        support::store_with::<String, serde_json::Value>(20)
            .await
            .expect("DATABASE_URL is set")
    })
    .await;
}

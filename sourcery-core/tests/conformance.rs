//! The in-memory store passes the store conformance suite.

use sourcery_core::store::inmemory;
use sourcery_core::test::conformance;

// ANCHOR: conformance
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inmemory_store_with_json_metadata_conforms() {
    conformance::run(|| async { inmemory::Store::<String, serde_json::Value>::new() }).await;
}
// ANCHOR_END: conformance

#[tokio::test]
async fn inmemory_store_with_unit_metadata_conforms() {
    conformance::run(|| async { inmemory::Store::<String, ()>::new() }).await;
}

// ANCHOR: subscriptions
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inmemory_store_subscriptions_conform() {
    conformance::run_subscriptions(|| async { inmemory::Store::<String, serde_json::Value>::new() }).await;
}
// ANCHOR_END: subscriptions

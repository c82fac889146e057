//! The JSON-lines store passes the store conformance suite: the event store
//! checks (with two metadata types, on both Tokio runtimes) and the
//! subscription checks.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use sourcery::test::conformance;
use sourcery_example_jsonl::Store;
use tempfile::TempDir;

// The custom stores chapter of the user guide shows the lines between the
// ANCHOR comments: keep them around the suite's call when its syntax changes.
// ANCHOR: conformance
/// A fresh, empty store: a new file in the test's temporary directory.
fn fresh_store<M>(directory: &TempDir) -> impl Future<Output = Store<M>> {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let file = FILES.fetch_add(1, Ordering::Relaxed);
    let path = directory.path().join(format!("events-{file}.jsonl"));
    async move { Store::open(path).await.expect("a new store opens") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_store_conforms() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    conformance::run(|| fresh_store::<serde_json::Value>(&directory)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn its_subscriptions_conform() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    conformance::run_subscriptions(|| fresh_store::<serde_json::Value>(&directory)).await;
}
// ANCHOR_END: conformance

#[tokio::test]
async fn it_conforms_with_unit_metadata_on_a_current_thread_runtime() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    conformance::run(|| fresh_store::<()>(&directory)).await;
}

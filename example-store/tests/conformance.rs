//! The JSON-lines store passes the conformance suite, one test per rule:
//! the event store rules, the global order, subscriptions and the
//! projection runner, and its checkpoint store; and again with `()`
//! metadata.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sourcery_example_jsonl::{CheckpointStore, Store};

/// This run's files. A `static` is never dropped, so nothing removes the
/// directory at the end: each run deletes the runs older than an hour.
static DIRECTORY: LazyLock<PathBuf> = LazyLock::new(|| {
    let root = std::env::temp_dir().join("sourcery-example-jsonl-conformance");
    for old in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let age = old.metadata().and_then(|metadata| metadata.modified()).ok();
        if age.and_then(|modified| modified.elapsed().ok()) > Some(Duration::from_secs(3600)) {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    let run = root.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&run).expect("a directory for the test files");
    run
});

/// A path no other rule uses.
fn fresh_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    DIRECTORY.join(format!("{what}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

// The custom stores chapter of the user guide shows the lines between the
// ANCHOR comments.
// ANCHOR: conformance
/// A fresh, empty store: a new file.
async fn fresh_store<M>() -> Store<M> {
    Store::open(fresh_path("events"))
        .await
        .expect("a new store opens")
}

sourcery::test::conformance::suite! {
    store: fresh_store::<serde_json::Value>,
    capabilities: [ordered, subscribe],
    checkpoints: || async {
        CheckpointStore::open(fresh_path("checkpoints")).await.expect("a checkpoint directory opens")
    },
}
// ANCHOR_END: conformance

/// With `()` metadata.
mod unit_metadata {
    sourcery::test::conformance::suite! {
        store: super::fresh_store::<()>,
        capabilities: [ordered, subscribe],
    }
}

//! The SQLite store passes the conformance suite, one test per rule: in a
//! file with its checkpoint and snapshot stores, in memory, and at normal
//! durability with one reader connection and no polling.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sourcery_core::snapshot::SnapshotPolicy;
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

/// The directory of this run's database files; runs older than an hour
/// (whose directories were never removed: statics are not dropped) are
/// swept when it is made.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let prefix = "sourcery-sqlite-conformance-";
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if stale && entry.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temporary directory")
        .keep()
});

/// A path no other rule uses.
fn fresh_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    DIR.join(format!("store-{}.db", NEXT.fetch_add(1, Ordering::Relaxed)))
}

async fn file_store() -> Store<String, serde_json::Value> {
    Store::open(fresh_path()).await.expect("the store opens")
}

// ANCHOR: conformance
sourcery_core::test::conformance::suite! {
    store: file_store,
    capabilities: [ordered, subscribe],
    checkpoints: || async { file_store().await.checkpoints() },
    snapshots: || async { file_store().await.snapshots(SnapshotPolicy::Never) },
}
// ANCHOR_END: conformance

/// In memory, with `String` metadata.
mod memory {
    use sourcery_sqlite::Store;

    sourcery_core::test::conformance::suite! {
        store: || async { Store::<String, String>::open_in_memory().await.expect("the store opens") },
        capabilities: [ordered, subscribe],
    }
}

/// At normal durability, with one reader connection, no polling (live
/// events through the commit signal alone) and `()` metadata.
mod normal_durability {
    use super::{OpenOptions, Synchronous, fresh_path};

    sourcery_core::test::conformance::suite! {
        store: || async {
            OpenOptions::new()
                .synchronous(Synchronous::Normal)
                .readers(1)
                .poll_interval(None)
                .open::<String, ()>(fresh_path())
                .await
                .expect("the store opens")
        },
        capabilities: [ordered, subscribe],
    }
}

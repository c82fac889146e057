//! The SQLite store passes the store conformance suite, in a file and in
//! memory, at both durability levels.

use sourcery_core::test::conformance;
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_with_json_metadata_conforms() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut n = 0;
    conformance::run(|| {
        n += 1;
        let path = dir.path().join(format!("conformance-{n}.db"));
        async move {
            Store::<String, serde_json::Value>::open(path)
                .await
                .expect("the store opens")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_with_unit_metadata_and_normal_durability_conforms() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut n = 0;
    conformance::run(|| {
        n += 1;
        let path = dir.path().join(format!("conformance-{n}.db"));
        async move {
            OpenOptions::new()
                .synchronous(Synchronous::Normal)
                .readers(1)
                .open::<String, ()>(path)
                .await
                .expect("the store opens")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    conformance::run(|| async {
        Store::<String, serde_json::Value>::open_in_memory()
            .await
            .expect("the store opens")
    })
    .await;
}

#[tokio::test]
async fn memory_store_with_string_metadata_conforms_on_a_current_thread_runtime() {
    conformance::run(|| async {
        Store::<String, String>::open_in_memory()
            .await
            .expect("the store opens")
    })
    .await;
}

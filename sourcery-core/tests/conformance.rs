//! The in-memory stores pass the conformance suite, one test per rule; and
//! the suite catches every deliberately wrong store in `mutants`.

use sourcery_core::checkpoint;
use sourcery_core::snapshot::{self, SnapshotPolicy};
use sourcery_core::store::inmemory;

// ANCHOR: conformance
sourcery_core::test::conformance::suite! {
    store: || async { inmemory::Store::<String, serde_json::Value>::new() },
    capabilities: [ordered, subscribe],
    checkpoints: || async { checkpoint::inmemory::CheckpointStore::new() },
    snapshots: || async { snapshot::inmemory::Store::<u64>::new(SnapshotPolicy::Never) },
}
// ANCHOR_END: conformance

/// The suite with `()` metadata and nothing declared beyond the contract:
/// the other rules are generated as ignored tests.
mod unit_metadata {
    use sourcery_core::store::inmemory;

    sourcery_core::test::conformance::suite! {
        store: || async { inmemory::Store::<String, ()>::new() },
    }
}

#[path = "conformance/mutants.rs"]
mod mutants;

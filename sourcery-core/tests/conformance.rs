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

/// The guide's table of rules names every rule of the suite.
#[test]
fn the_guide_lists_every_rule() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/src/testing/conformance.md"
    ))
    .expect("the conformance guide page is readable");
    for (name, _) in sourcery_core::test::conformance::Suite::<inmemory::Store<String, ()>>::rules() {
        let (family, rule) = name.split_once('.').expect("rule names are family.rule");
        let row = page
            .lines()
            .find(|line| line.starts_with(&format!("| `{family}`")))
            .unwrap_or_else(|| panic!("the guide has no row for the family {family}"));
        assert!(
            row.contains(&format!("`{rule}`")),
            "the guide's row for {family} does not name {rule}"
        );
    }
}

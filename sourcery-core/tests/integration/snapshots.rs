//! The in-memory snapshot store keeps the snapshot store rules, and snapshot
//! plus tail equals a full replay for random histories (property test).

use proptest::prelude::*;
use sourcery_core::snapshot::{SnapshotPolicy, conformance, inmemory};
use sourcery_core::store::inmemory as events;

fn step() -> impl Strategy<Value = conformance::Step> {
    (any::<u32>(), 0_u8..4, any::<bool>(), any::<bool>()).prop_map(|(amount, events, snapshot, unchecked)| {
        conformance::Step {
            amount,
            events,
            snapshot,
            unchecked,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replay_equals_snapshot_plus_tail(steps in proptest::collection::vec(step(), 0..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        // One event store and one snapshot store for every case: each case
        // writes its own aggregate, so they also show that runs stay apart.
        let result = runtime.block_on(conformance::replay_equals_snapshot_plus_tail(
            &STORES.0,
            &STORES.1,
            &steps,
            serde_json::json!({ "case": steps.len() }),
        ));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}

static STORES: std::sync::LazyLock<(events::Store<String, serde_json::Value>, inmemory::Store<u64>)> =
    std::sync::LazyLock::new(|| (events::Store::new(), inmemory::Store::new(SnapshotPolicy::Never)));

//! Checks for [`SnapshotStore`](super::SnapshotStore) implementations (feature `test-util`).

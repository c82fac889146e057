//! Test helpers (feature `test-util`).
//!
//! - [`conformance`]: the suite every [`EventStore`](crate::store::EventStore)
//!   implementation must pass: ours and yours.

pub mod conformance;

//! Sourcery's own cross-store tests live in `tests/`: they run the same
//! operations on every store, and they use crates (`proptest`, `sqlx`) that
//! the facade's examples do not need. The library itself is empty.

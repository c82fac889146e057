//! The integration tests of the core crate, in one test binary: each module is
//! one theme. One binary compiles and links once, where a binary per file
//! linked every dependency again (`tests/conformance.rs` stays apart).

mod commands;
mod read_models;
mod schema_samples;
mod snapshots;
mod subscriptions;

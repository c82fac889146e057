//! The integration tests of the facade, in one test binary: each module is
//! one theme. One binary compiles and links once, where a binary per file
//! linked every dependency again (`tests/conformance.rs` stays apart).

mod derive;
mod projection;
mod reactor;
mod repository;
mod runner;
mod schema_evolution;
mod snapshots;
mod test_framework;

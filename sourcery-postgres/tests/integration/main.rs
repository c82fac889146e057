//! The integration tests of the PostgreSQL store, in one test binary: each module is
//! one theme. One binary compiles and links once, where a binary per file
//! linked every dependency again (`tests/conformance.rs` stays apart).

#[path = "../support/database.rs"]
mod support;

#[path = "../support/proxy.rs"]
mod proxy;

mod concurrency;
mod data;
mod faults;
mod global_order;
mod ids;
mod migrations;
mod reactor;
mod reactor_store;
mod read_model;
mod read_model_crash;
mod read_model_pause;
mod runner;
mod snapshots;
mod subscriptions;
mod unknown_outcome;

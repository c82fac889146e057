//! The integration tests of the SQLite store, in one test binary: each module is
//! one theme. One binary compiles and links once, where a binary per file
//! linked every dependency again (`tests/conformance.rs` stays apart).

/// The test harness's name for test `$function` of the calling module (its
/// module path without the crate's name, then the function), for tests that
/// run one test of this binary in a child process with `--exact`.
macro_rules! test_name {
    ($function:ident) => {{
        let _ = $function;
        match module_path!().split_once("::") {
            Some((_, module)) => format!("{module}::{}", stringify!($function)),
            None => stringify!($function).to_owned(),
        }
    }};
}

mod bad_files;
mod checkpoints;
mod concurrency;
mod crash;
mod data;
mod ids;
mod migrations;
mod open_together;
mod retry_after_kill;
mod snapshots;
mod subscriptions;
mod wal;

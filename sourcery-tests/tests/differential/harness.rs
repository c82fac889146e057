//! The proptest configuration (bounded by default, longer on demand) and
//! how a failure is reported.

use std::hash::{BuildHasher as _, RandomState};

use proptest::test_runner::{Config, RngSeed, TestError};

/// The configuration: `default_cases` cases unless `PROPTEST_CASES` says
/// otherwise, at most 2048 shrink steps and ten minutes of shrinking unless
/// `PROPTEST_MAX_SHRINK_ITERS` and `PROPTEST_MAX_SHRINK_TIME`
/// (milliseconds) say otherwise, and a seed
/// that is printed on failure (`PROPTEST_RNG_SEED` replays it). Every other
/// `PROPTEST_*` variable works as proptest documents it.
pub(crate) fn config(default_cases: u32) -> (Config, u64) {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    // Proptest's own bound (four shrink steps per case) stops a sequence
    // of operations long before it is minimal.
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        config.max_shrink_iters = 2048;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 10 * 60 * 1000;
    }
    // The failing case is printed in full (and replayed by its seed); no
    // regression files beside the sources.
    config.failure_persistence = None;
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => RandomState::new().hash_one(std::process::id()),
    };
    config.rng_seed = RngSeed::Fixed(seed);
    (config, seed)
}

/// A multi-threaded runtime for the stores' tasks.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Panics with the shrunk failing case when there is one.
pub(crate) fn finish<T>(test: &str, result: Result<(), TestError<T>>, seed: u64, cases: u32) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, _)) => panic!(
            "{test}: a case of {cases} failed; after shrinking:\n\n{reason}\n\
             Replay it with PROPTEST_RNG_SEED={seed} (and the same PROPTEST_CASES)."
        ),
        Err(TestError::Abort(reason)) => {
            panic!("{test}: proptest gave up: {reason} (PROPTEST_RNG_SEED={seed})")
        }
    }
}

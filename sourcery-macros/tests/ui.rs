//! Compile tests for `#[derive(Aggregate)]` and `#[derive(Projection)]`:
//! what must compile (`tests/ui/pass`) and the errors wrong attributes give
//! (`tests/ui/fail`, each with its `.stderr` snapshot).
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p sourcery-es-macros --test ui`
//! and read them: each error must point at the offending attribute or token.

#[test]
fn derive_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

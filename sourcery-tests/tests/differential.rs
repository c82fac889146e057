//! A model-based differential test of the event stores.
//!
//! Proptest generates sequences of operations over a few streams with
//! awkward names — unchecked, optimistic and expecting-new appends,
//! `load_events` with random filter sets, `stream_version`, subscriptions
//! caught up and live — and runs each sequence on a fresh in-memory store,
//! a fresh SQLite store, a fresh PostgreSQL store (its own schema, dropped
//! afterwards) and a reference model of the log, a plain list
//! ([`model`]). Outcomes are compared one by one, with every position
//! mapped to its place in commit order, so that stores whose positions
//! differ are compared in one vocabulary. A failing case is shrunk and
//! printed as the list of operations, what the model did and what each
//! store did instead.
//!
//! A second test runs several tasks appending at once and checks that the
//! log they leave has a serial explanation ([`concurrent`]).
//!
//! Each test runs 32 cases by default; `PROPTEST_CASES` asks for more. The
//! guide's page `docs/src/testing/differential.md` says how and what the
//! test has found.
//!
//! PostgreSQL is reached through `DATABASE_URL`; without it the PostgreSQL
//! part is skipped, and says so, unless `CI` is set, when it fails.

#[path = "differential/concurrent.rs"]
mod concurrent;
#[path = "differential/harness.rs"]
mod harness;
#[path = "differential/model.rs"]
mod model;
#[path = "differential/run.rs"]
mod run;
#[path = "differential/stores.rs"]
mod stores;

use std::fmt::Write as _;

use proptest::test_runner::{TestCaseError, TestRunner};

use crate::model::{P, Plan};
use crate::run::{Divergence, Executor};
use crate::stores::Server;

/// Cases per test unless `PROPTEST_CASES` says otherwise: enough to find
/// both bugs this test has found within a CI run, few enough that each
/// test takes seconds (every case migrates a fresh PostgreSQL schema).
const CASES: u32 = 32;

/// The longest operation sequence generated.
const MAX_OPERATIONS: usize = 24;

#[test]
fn serial_operations_agree_with_the_model() {
    const TEST: &str = "serial_operations_agree_with_the_model";
    let runtime = harness::runtime();
    let server = runtime.block_on(Server::connect(TEST, 2));
    let (config, seed) = harness::config(CASES);
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&model::operations(MAX_OPERATIONS), |operations| {
        let plan = Plan::new(&operations);
        runtime
            .block_on(compare(&plan, server.as_ref()))
            .map_err(TestCaseError::fail)
    });
    harness::finish(TEST, result, seed, cases);
}

/// Runs `plan` on every store; `Err` is the report of those that differ
/// from the model.
async fn compare(plan: &Plan, server: Option<&Server>) -> Result<(), String> {
    let mut divergences = Vec::new();
    let mut compared = vec!["in-memory", "SQLite"];
    if let Err(divergence) = Executor::run(stores::in_memory(), plan).await {
        divergences.push(("in-memory", divergence));
    }
    let (sqlite, directory) = stores::sqlite().await;
    if let Err(divergence) = Executor::run(sqlite, plan).await {
        divergences.push(("SQLite", divergence));
    }
    drop(directory);
    if let Some(server) = server {
        compared.push("PostgreSQL");
        let store = server.fresh().await;
        let result = Executor::run(store.clone(), plan).await;
        server.drop_store(store).await;
        if let Err(divergence) = result {
            divergences.push(("PostgreSQL", divergence));
        }
    }
    if divergences.is_empty() {
        Ok(())
    } else {
        Err(report(plan, &compared, &divergences))
    }
}

/// The operations up to the last divergence, each with the model's
/// outcome, and where a store differed, the store's.
fn report(plan: &Plan, compared: &[&str], divergences: &[(&str, Divergence)]) -> String {
    let differing: Vec<&str> = divergences.iter().map(|(store, _)| *store).collect();
    let verb = if differing.len() == 1 { "differs" } else { "differ" };
    let mut text = format!(
        "{} {verb} from the model (compared: {}).\n\
         pN is the Nth event committed (in commit order), #n the number an event carries in its data \
         and metadata; each store stops at its first difference.\n\n",
        differing.join(", "),
        compared.join(", ")
    );
    let last = divergences
        .iter()
        .map(|(_, divergence)| divergence.step)
        .max()
        .unwrap_or(0);
    for (number, (step, expected)) in plan.steps.iter().zip(&plan.expected).enumerate().take(last + 1) {
        let _ = writeln!(text, "{:>3}. {step}", number + 1);
        let here: Vec<&(&str, Divergence)> = divergences
            .iter()
            .filter(|(_, divergence)| divergence.step == number)
            .collect();
        if here.is_empty() {
            let _ = writeln!(text, "       -> {expected}");
        } else {
            let _ = writeln!(text, "       model:      {expected}");
            for (store, divergence) in here {
                let _ = writeln!(text, "       {:<11} {}", format!("{store}:"), divergence.actual);
            }
        }
    }
    let rest = plan.steps.len() - (last + 1);
    if rest > 0 {
        let _ = writeln!(text, "     ({rest} further operation(s) not shown)");
    }
    let _ = writeln!(text, "\nthe model's log:");
    for (index, event) in plan.log.iter().enumerate() {
        let _ = writeln!(text, "  {} {event}", P(index));
    }
    for (store, divergence) in divergences {
        let _ = writeln!(text, "positions on {store}: {}", divergence.positions);
        text.push_str(&divergence.diagnostics);
    }
    text
}

#[test]
fn concurrent_appends_have_a_serial_explanation() {
    const TEST: &str = "concurrent_appends_have_a_serial_explanation";
    let runtime = harness::runtime();
    let server = runtime.block_on(Server::connect(TEST, 8));
    let (config, seed) = harness::config(CASES);
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&concurrent::tasks(), |tasks| {
        let tasks = concurrent::plan(&tasks);
        runtime
            .block_on(concurrently(&tasks, server.as_ref()))
            .map_err(TestCaseError::fail)
    });
    harness::finish(TEST, result, seed, cases);
}

/// Runs the tasks on every store; `Err` reports the stores whose log has
/// no serial explanation.
async fn concurrently(
    tasks: &[Vec<concurrent::PlannedAttempt>],
    server: Option<&Server>,
) -> Result<(), String> {
    let mut failures = Vec::new();
    if let Err(why) = concurrent::check(stores::in_memory(), "in-memory", tasks).await {
        failures.push(("in-memory", why));
    }
    let (sqlite, directory) = stores::sqlite().await;
    if let Err(why) = concurrent::check(sqlite, "SQLite", tasks).await {
        failures.push(("SQLite", why));
    }
    drop(directory);
    if let Some(server) = server {
        let store = server.fresh().await;
        let result = concurrent::check(store.clone(), "PostgreSQL", tasks).await;
        server.drop_store(store).await;
        if let Err(why) = result {
            failures.push(("PostgreSQL", why));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let mut text = format!("the tasks:\n{}", concurrent::describe_plan(tasks));
    for (store, why) in failures {
        let _ = write!(text, "\n{store}: {why}");
    }
    Err(text)
}

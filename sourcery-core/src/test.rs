//! Test helpers (feature `test-util`).
//!
//! - [`TestFramework`]: given–when–then tests of an aggregate's decisions.
//! - [`ProcessTest`]: the same for a process manager's: given its past
//!   events, when an event arrives, then these events, commands and timers.
//! - [`RepositoryTestExt`]: seed a store with history, and simulate a
//!   concurrent writer, in integration tests.
//! - [`conformance`]: the suite every [`EventStore`](crate::store::EventStore)
//!   implementation must pass: ours and yours.
//! - [`reactor_store`]: the rules every [`ReactorStore`](crate::reactor::ReactorStore)
//!   keeps (timers and dead letters), as one check.
//! - [`schema`]: golden samples of your events, so CI fails when today's
//!   types no longer read yesterday's data.

pub mod conformance;
mod framework;
mod process;
pub mod reactor_store;
mod repository;
pub mod schema;

pub use framework::{Outcome, TestFramework};
pub use process::{ProcessOutcome, ProcessTest};
pub use repository::RepositoryTestExt;

//! The conformance suite for [`EventStore`] implementations, and for the
//! checkpoint stores, snapshot stores and leases beside them.
//!
//! The suite is a list of small named rules (`version.is_last_position_of_stream`,
//! `optimistic.ahead_of_stream_conflicts`, `filter.union_each_once`, ...),
//! each a public function of the module named for its family. A broken rule
//! fails with one message shape:
//!
//! ```text
//! conformance rule version.is_last_position_of_stream: expected the version of stream
//! conformance-account/version-a (the position of its last event): Some(4), got Some(2)
//! ```
//!
//! Each rule runs against a fresh, empty store. Every deliberately wrong
//! store we could think of fails at least one rule: the suite's own tests
//! (`sourcery-core/tests/conformance/mutants.rs`) run it against one
//! wrong store per defect and check which rule catches it.
//!
//! # Running it against your store
//!
//! Enable the `test-util` feature in your dev-dependencies and, in one test
//! file, hand the [`suite!`] macro a function that makes an empty store (a
//! fresh schema, database or file per call). It generates one `#[test]` per
//! rule, so `cargo test` lists every rule by name:
//!
//! ```ignore
//! // tests/conformance.rs
//! sourcery::test::conformance::suite! {
//!     store: || async { MyStore::open_fresh().await },
//!     capabilities: [ordered, subscribe],
//! }
//! ```
//!
//! The same from code, with a [`Report`] of every rule's [`Outcome`]:
//!
//! ```
//! use sourcery_core::store::inmemory;
//! use sourcery_core::test::conformance::Suite;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! Suite::new(|| async { inmemory::Store::<String, serde_json::Value>::new() })
//!     .ordered()
//!     .subscribe()
//!     .run()
//!     .await;
//! # });
//! ```
//!
//! # What a store declares
//!
//! Rules need more than the [`EventStore`] contract in places. A store
//! declares what it supports; the rules of a capability it does not declare
//! are reported as not applicable ([`Outcome::NotApplicable`], or an
//! ignored test), never passed:
//!
//! | capability | rules | needs |
//! |---|---|---|
//! | *(always)* | `version`, `append`, `optimistic`, `unchecked`, `expected`, `ids`, `order`, `filter`, `stream`, `schema`, `batch`, `names`, `size`, `text` | [`EventStore`] |
//! | `ordered` | `read`: concurrent readers see prefixes of the log and never skip a late commit | [`GloballyOrdered`](crate::store::GloballyOrdered) |
//! | `subscribe` | `subscribe`, `runner`: catch-up then live, resume, several subscribers; the projection runner over the store, stopped by a newer lease holder's claim | [`Subscribe`](crate::subscription::Subscribe) |
//! | `checkpoints` | `checkpoint`: saves; claims and advances with [fences](crate::checkpoint#fencing) | a [`CheckpointStore`](crate::checkpoint::CheckpointStore) |
//! | `snapshots` | `snapshot` | a [`SnapshotStore`](crate::snapshot::SnapshotStore) |
//! | `leases` | `lease`: one holder, release, takeover after the holder's connection dies, a fence that grows with each holder | a [`LeaseFixture`] |
//!
//! The store's `Id` must be buildable from a `String` (rules use ids such as
//! `""`, `"it's"` and `"клиент-🦀"`) and its metadata must implement
//! [`ConformanceMetadata`] (done for `serde_json::Value`, `String` and `()`).

use std::fmt::Debug;
use std::future::Future;

use crate::store::EventStore;

pub mod append;
pub mod batch;
pub mod checkpoint;
pub mod expected;
pub mod filter;
pub mod ids;
pub mod lease;
pub mod names;
pub mod optimistic;
pub mod order;
pub mod read;
pub mod runner;
pub mod schema;
pub mod size;
pub mod snapshot;
pub mod stream;
pub mod subscribe;
mod suite;
mod support;
pub mod text;
pub mod unchecked;
pub mod version;

pub use crate::__sourcery_conformance_suite as suite;
pub use lease::LeaseFixture;
#[doc(hidden)]
pub use suite::__run_rule;
pub use suite::{Capability, Outcome, Report, Suite};

/// Metadata the suite can make and compare.
pub trait ConformanceMetadata: Clone + PartialEq + Debug + Send + Sync + 'static {
    /// A value that differs for different `n` where the type allows it.
    fn sample(n: u64) -> Self;

    /// A value holding `text` where a store keeps it as text (a JSON string
    /// or key), for the [`text`] rules; `None`, the default, when the type
    /// holds no text (those rules then do not apply).
    #[must_use]
    fn with_text(text: &str) -> Option<Self> {
        let _ = text;
        None
    }
}

impl ConformanceMetadata for serde_json::Value {
    fn sample(n: u64) -> Self {
        serde_json::json!({ "n": n, "actor": "tëst \"user\"", "tags": ["a", n.to_string()] })
    }

    fn with_text(text: &str) -> Option<Self> {
        let mut keyed = serde_json::Map::new();
        keyed.insert(text.to_owned(), serde_json::Value::Bool(true));
        Some(serde_json::json!({ "note": text, "keyed": keyed }))
    }
}

impl ConformanceMetadata for String {
    fn sample(n: u64) -> Self {
        format!("metadata-{n}-ü")
    }

    fn with_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl ConformanceMetadata for () {
    fn sample(_: u64) -> Self {}
}

/// A store the suite can run on: ids from strings, metadata it can make.
/// Implemented for every such [`EventStore`].
pub trait ConformanceStore:
    EventStore<Id: From<String> + PartialEq, Metadata: ConformanceMetadata> + 'static
{
}

impl<S> ConformanceStore for S
where
    S: EventStore + 'static,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
}

/// Runs every rule every store must keep, each against a fresh store from
/// `make_store`; [`Suite`] adds the others.
///
/// Needs a Tokio runtime with timers; the race rules spawn tasks, so a
/// multi-threaded runtime exercises real parallelism.
///
/// # Panics
///
/// When a rule fails, with every failed rule's message.
pub async fn run<S, F, Fut>(make_store: F)
where
    S: ConformanceStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    Suite::new(make_store).run().await;
}

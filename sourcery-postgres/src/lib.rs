//! The PostgreSQL event store for Sourcery.
//!
//! [`Store`] keeps every stream in one table, `sourcery_events`, in a schema
//! of your choice, and implements [`EventStore`](sourcery_core::store::EventStore)
//! and [`GloballyOrdered`](sourcery_core::store::GloballyOrdered):
//!
//! - **Ids** are stored as text through
//!   [`TextId`](sourcery_core::store::TextId) (`String`, `uuid::Uuid`,
//!   integers, your newtypes with `Display` + `FromStr`); **metadata** is any
//!   serde type, stored as JSONB; **data** is the codec's bytes, as BYTEA.
//! - **An append is one round trip**: one call of the `sourcery_append`
//!   function with the batch as arrays, in its own transaction. The batch is
//!   all there or not at all.
//! - **Conflicts come from the database.** Writers of one stream queue on a
//!   transaction advisory lock keyed by the stream, check the stream's
//!   version after the previous writer's outcome is known, and a unique
//!   constraint on `(aggregate_kind, aggregate_id, stream_sequence)` refuses
//!   any second writer that extends a stream from the same version. A
//!   refused append is an [`AppendError::Conflict`](sourcery_core::store::AppendError::Conflict)
//!   carrying the stream's actual version. Unchecked writers of one stream
//!   take turns, so the stream stays consistent.
//! - **A load is one statement** for any set of filters, grouped so that
//!   each branch is served by an index, streamed from the server row by row.
//!
//! # Example
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Optimistic;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore};
//! use sourcery_postgres::Store;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct FundsDeposited {
//!     amount: u64,
//! }
//!
//! impl DomainEvent for FundsDeposited {
//!     const KIND: &'static str = "account.deposited";
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Store<String, serde_json::Value> =
//!     Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
//! store.migrate().await?; // idempotent: run it on every start
//!
//! let id = "ACC-001".to_string();
//! let mut tx = store.begin::<Optimistic>("account", id.clone(), None);
//! tx.append(FundsDeposited { amount: 100 }, serde_json::json!({ "actor": "alice" }))?;
//! let written = tx.commit().await?.expect("one event was buffered");
//!
//! let events = store
//!     .load_events(&[EventFilter::for_aggregate("account.deposited", "account", id)])
//!     .await?;
//! assert_eq!(events[0].position, written.last_position);
//! let deposit: FundsDeposited = events[0].decode(store.codec())?;
//! assert_eq!(deposit.amount, 100);
//! # Ok(())
//! # }
//! ```
//!
//! # Schema and migrations
//!
//! [`Store::migrate`] applies the numbered files of `migrations/`
//! (embedded in the crate) that the schema lacks, in one transaction, under
//! an advisory lock, and records them in `sourcery_migrations`. Tables,
//! constraints and functions are prefixed `sourcery_`, so the store can share
//! a schema with an application; [`Store::with_schema`] puts it in its own.
//!
//! # Global order
//!
//! A sequence value is drawn when a row is inserted but becomes visible when
//! its transaction commits, so a reader following positions could pass an
//! event that commits later with a lower position. This store closes that
//! gap (design and alternatives in `docs/adr/0002-postgres-global-order.md`):
//!
//! 1. `sourcery_append` draws its transaction id (`pg_current_xact_id()`) and
//!    the batch's positions inside one short critical section (a session
//!    advisory lock taken and released around just those two steps, released
//!    on every error), so **position order is transaction id order** among
//!    writers.
//! 2. Loads that followers use only return rows of transactions older than
//!    every transaction still running: `tx_id < xmin` of the statement's
//!    snapshot. Such a transaction has finished, and by 1. so has every
//!    transaction holding a lower position: nothing can appear below an
//!    event a reader has seen.
//!
//! The price: a transaction anywhere in the cluster that has written and
//! stays open holds the frontier back, and followers see nothing committed
//! after it began until it ends. [`Store::frontier_blockers`] names it (pid,
//! age, state); [`Store::safe_position`] reports how far followers may go.
//! Positions survive `pg_dump` and restore; transaction ids do not, which is
//! harmless: after a restore every stored `tx_id` is far below the new
//! cluster's horizon, so all restored events are visible.
//!
//! ## Which loads are cut at the frontier
//!
//! A load is cut at the frontier when **any** of its filters is not
//! restricted to one stream ([`EventFilter::for_event`](sourcery_core::store::EventFilter::for_event))
//! or has an `after`: those are the loads of followers, and the whole load is
//! cut so that the highest position it returns is a safe cursor. A load whose
//! filters are all plain [`for_aggregate`](sourcery_core::store::EventFilter::for_aggregate)
//! filters without `after` (the repository's read before a command) and
//! [`stream_version`](sourcery_core::store::EventStore::stream_version) see
//! every committed event: a writer reads its own writes. Writers of one
//! stream commit one after the other, so such a read is always a prefix of
//! the stream.
//!
//! # Failures
//!
//! A connection lost mid-append returns [`Error::Database`]; the batch is
//! then either fully written or absent (one transaction), and the pool opens
//! a new connection for the next call. If the connection dropped during the
//! commit itself, the caller cannot know which: reload the stream before
//! retrying.

mod error;
mod load;
mod migrate;
mod schema;
mod store;

pub use error::Error;
pub use store::{FrontierBlocker, Store};

//! The core of Sourcery: everything but the SQL stores and the derive macros.
//!
//! | module | holds |
//! |---|---|
//! | [`event`], [`codec`], [`metadata`] | domain events, how they become bytes, what is recorded beside them |
//! | [`aggregate`], [`projection`] | the traits domain code implements |
//! | [`repository`] | loading aggregates, executing commands, loading projections |
//! | [`store`], [`concurrency`] | the storage contract, the in-memory store, optimistic and unchecked commits |
//! | [`snapshot`] | snapshot stores and policies |
//! | [`subscription`], [`checkpoint`], [`runner`] | following the log live and keeping projections current |
//! | [`reactor`], [`schedule`] | reactions to events: commands now and later, process managers, dead letters |
//! | `test` (feature `test-util`) | the test framework and the store conformance suites |
//!
//! Applications depend on the `sourcery` facade crate, which re-exports all
//! of this and adds `#[derive(Aggregate)]` and `#[derive(Projection)]`;
//! store authors and other libraries can depend on this crate alone.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Optimistic;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore, inmemory};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Registered {
//!     email: String,
//! }
//!
//! impl DomainEvent for Registered {
//!     const KIND: &'static str = "user.registered";
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = inmemory::Store::<String, ()>::new();
//! let mut tx = store.begin::<Optimistic>("user", "u-1".to_string(), None);
//! tx.append(Registered { email: "ada@example.com".into() }, ())?;
//! tx.commit().await?;
//!
//! let events = store.load_events(&[EventFilter::for_event(Registered::KIND)]).await?;
//! assert_eq!(events[0].decode::<Registered>(store.codec())?.email, "ada@example.com");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod aggregate;
pub mod checkpoint;
pub mod codec;
pub mod concurrency;
pub mod event;
pub mod id;
pub mod metadata;
mod non_empty;
pub mod projection;
pub mod reactor;
pub mod repository;
pub mod runner;
pub mod schedule;
pub mod snapshot;
pub mod store;
pub mod subscription;
#[cfg(feature = "test-util")]
pub mod test;

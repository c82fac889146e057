//! The core of Sourcery: domain events, the event store contract, concurrency
//! strategies, codecs and the in-memory store.
//!
//! Applications depend on the `sourcery` facade crate; store authors and
//! other libraries can depend on this crate alone. See [`store`] for the
//! contract and an example.

pub mod aggregate;
pub mod checkpoint;
pub mod codec;
pub mod concurrency;
pub mod event;
pub mod metadata;
mod non_empty;
pub mod projection;
pub mod repository;
pub mod runner;
pub mod snapshot;
pub mod store;
pub mod subscription;
#[cfg(feature = "test-util")]
pub mod test;

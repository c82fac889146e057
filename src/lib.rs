#![doc = include_str!("../README.md")]

pub use sourcery_core::{
    aggregate, checkpoint, codec, concurrency, event, id, metadata, projection, reactor, repository, runner,
    schedule, subscription,
};

pub use sourcery_core::aggregate::{Aggregate, Apply, Handle, HandleCreate};
pub use sourcery_core::event::DomainEvent;
pub use sourcery_core::metadata::EventMetadata;
pub use sourcery_core::projection::{ApplyProjection, Projection, ProjectionFor};
pub use sourcery_core::repository::Repository;
pub use sourcery_core::snapshot;
pub use sourcery_macros::{Aggregate, DomainEvent, Projection};

/// The event store contract and the stores that implement it.
///
/// [`inmemory::Store`](store::inmemory::Store) is always here; the
/// PostgreSQL and SQLite stores arrive with the `postgres` and `sqlite`
/// features.
pub mod store {
    pub use sourcery_core::store::*;

    #[cfg(feature = "postgres")]
    #[doc(inline)]
    pub use sourcery_postgres as postgres;

    #[cfg(feature = "sqlite")]
    #[doc(inline)]
    pub use sourcery_sqlite as sqlite;
}

#[cfg(feature = "test-util")]
pub use sourcery_core::test;

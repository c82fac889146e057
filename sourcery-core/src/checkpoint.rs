//! Checkpoints: how far a projection has processed the log, kept so that a
//! restart resumes there.
//!
//! A checkpoint is a position under a name (the projection's
//! [`KIND`](crate::projection::Projection::KIND)). Everything at or below it
//! has been applied; a runner that restarts subscribes after it. Delivery is
//! at least once: events applied after the last saved checkpoint are applied
//! again after a crash, so a projection that writes elsewhere should apply
//! idempotently (an upsert keyed by the event's position or the aggregate
//! id, not an increment).

use std::future::Future;

pub mod inmemory;

/// Keeps the last processed position per projection name.
pub trait CheckpointStore<Pos>: Send + Sync + 'static {
    /// What goes wrong in the store.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint saved under `name`, if any.
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Future<Output = Result<Option<Pos>, Self::Error>> + Send + 'a;

    /// Saves `position` under `name`, replacing the previous checkpoint.
    fn save<'a>(
        &'a self,
        name: &'a str,
        position: Pos,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;
}

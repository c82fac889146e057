//! Repository helpers for integration tests.

use std::future::Future;

use crate::aggregate::{Aggregate, Handle};
use crate::concurrency::{ConcurrencyStrategy, Unchecked};
use crate::metadata::Metadata;
use crate::repository::{CommandError, CommandResult, Repository, commit};
use crate::store::EventStore;

/// Test-only conveniences on [`Repository`] (feature `test-util`).
pub trait RepositoryTestExt<S: EventStore> {
    /// Appends `events` to aggregate `A`'s stream with `id`, without a
    /// version check, to set up history. Returns the stream's new version
    /// (`None` when `events` is empty).
    fn seed<A, E>(
        &self,
        id: &A::Id,
        events: &[E],
        metadata: S::Metadata,
    ) -> impl Future<Output = CommandResult<A, S>> + Send
    where
        A: Aggregate<Id = S::Id>,
        E: Clone + Into<A::Event> + Sync,
        S::Metadata: Metadata;

    /// Executes `command` like [`Repository::execute`], but another writer
    /// appends `concurrent` to the same stream after the aggregate was
    /// loaded and before the command commits: an optimistic repository
    /// reports a conflict, an unchecked one appends after it.
    fn execute_with_concurrent_event<A, C, E>(
        &self,
        id: &A::Id,
        command: &C,
        metadata: S::Metadata,
        concurrent: E,
    ) -> impl Future<Output = CommandResult<A, S>> + Send
    where
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: Sync,
        E: Into<A::Event> + Send,
        S::Metadata: Metadata;
}

impl<S, Strategy> RepositoryTestExt<S> for Repository<S, Strategy>
where
    S: EventStore,
    Strategy: ConcurrencyStrategy,
{
    async fn seed<A, E>(&self, id: &A::Id, events: &[E], metadata: S::Metadata) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id>,
        E: Clone + Into<A::Event> + Sync,
        S::Metadata: Metadata,
    {
        let tx = self.store().begin::<Unchecked>(A::KIND, id.clone(), None);
        let events: Vec<A::Event> = events.iter().cloned().map(Into::into).collect();
        commit::<A, S, Unchecked>(tx, events, metadata, None).await
    }

    async fn execute_with_concurrent_event<A, C, E>(
        &self,
        id: &A::Id,
        command: &C,
        metadata: S::Metadata,
        concurrent: E,
    ) -> CommandResult<A, S>
    where
        A: Aggregate<Id = S::Id> + Handle<C>,
        C: Sync,
        E: Into<A::Event> + Send,
        S::Metadata: Metadata,
    {
        let loaded = self.load_versioned::<A>(id).await?;
        let events = loaded.state.handle(command).map_err(CommandError::Rejected)?;
        let interloper = self.store().begin::<Unchecked>(A::KIND, id.clone(), None);
        commit::<A, S, Unchecked>(interloper, vec![concurrent.into()], metadata.clone(), None).await?;
        let tx = self
            .store()
            .begin::<Strategy>(A::KIND, id.clone(), loaded.version);
        commit::<A, S, Strategy>(tx, events, metadata, None).await
    }
}

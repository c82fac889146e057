//! The in-memory snapshot store, for tests and demos.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use super::{SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore};

/// Snapshots kept in memory: cheap clones share them, safe across tasks.
///
/// `Pos` is the event store's position type (`u64` for
/// [`store::inmemory::Store`](crate::store::inmemory::Store)).
///
/// ```
/// use sourcery_core::snapshot::{inmemory, SaveOutcome, Snapshot, SnapshotKey, SnapshotPolicy, SnapshotStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = inmemory::Store::<u64>::new(SnapshotPolicy::Always);
/// let key = SnapshotKey::projection("totals");
/// let at = |position| Snapshot { position, schema_version: 1, data: b"{}".to_vec() };
/// assert_eq!(store.save(&key, at(5)).await, Ok(SaveOutcome::Saved));
/// assert_eq!(store.save(&key, at(5)).await, Ok(SaveOutcome::Declined));
/// assert_eq!(store.clone().load(&key).await.unwrap().map(|s| s.position), Some(5));
/// # });
/// ```
pub struct Store<Pos = u64> {
    policy: SnapshotPolicy,
    snapshots: Arc<Mutex<HashMap<SnapshotKey, Snapshot<Pos>>>>,
}

impl<Pos> Store<Pos> {
    /// An empty store that takes snapshots per `policy`.
    #[must_use]
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self {
            policy,
            snapshots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A handle on the same snapshots with another policy.
    #[must_use]
    pub fn with_policy(&self, policy: SnapshotPolicy) -> Self {
        Self {
            policy,
            snapshots: Arc::clone(&self.snapshots),
        }
    }

    /// The number of keys with a snapshot.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no snapshot is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every snapshot.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SnapshotKey, Snapshot<Pos>>> {
        // The map is consistent after every statement, so a panic elsewhere
        // while it was held leaves nothing half-written.
        self.snapshots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<Pos> Clone for Store<Pos> {
    fn clone(&self) -> Self {
        self.with_policy(self.policy)
    }
}

impl<Pos> fmt::Debug for Store<Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("policy", &self.policy)
            .field("snapshots", &self.len())
            .finish()
    }
}

impl<Pos> SnapshotStore<Pos> for Store<Pos>
where
    Pos: Copy + Ord + Send + Sync + 'static,
{
    type Error = Infallible;

    fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    fn load<'a>(
        &'a self,
        key: &'a SnapshotKey,
    ) -> impl Future<Output = Result<Option<Snapshot<Pos>>, Infallible>> + Send + 'a {
        std::future::ready(Ok(self.lock().get(key).cloned()))
    }

    fn save<'a>(
        &'a self,
        key: &'a SnapshotKey,
        snapshot: Snapshot<Pos>,
    ) -> impl Future<Output = Result<SaveOutcome, Infallible>> + Send + 'a {
        let mut snapshots = self.lock();
        let outcome = match snapshots.get(key) {
            Some(kept) if kept.position >= snapshot.position => SaveOutcome::Declined,
            _ => {
                snapshots.insert(key.clone(), snapshot);
                SaveOutcome::Saved
            }
        };
        std::future::ready(Ok(outcome))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::snapshot::OfferOutcome;

    fn at(position: u64, data: &[u8]) -> Snapshot<u64> {
        Snapshot {
            position,
            schema_version: 1,
            data: data.to_vec(),
        }
    }

    #[tokio::test]
    async fn save_keeps_the_newest_and_declines_older_or_equal_positions() {
        let store = Store::new(SnapshotPolicy::Always);
        let key = SnapshotKey::aggregate("account", "\"A\"");
        assert_eq!(store.save(&key, at(5, b"five")).await, Ok(SaveOutcome::Saved));
        assert_eq!(store.save(&key, at(3, b"three")).await, Ok(SaveOutcome::Declined));
        assert_eq!(
            store.save(&key, at(5, b"other five")).await,
            Ok(SaveOutcome::Declined)
        );
        assert_eq!(store.load(&key).await, Ok(Some(at(5, b"five"))));
        assert_eq!(store.save(&key, at(6, b"six")).await, Ok(SaveOutcome::Saved));
        assert_eq!(store.load(&key).await, Ok(Some(at(6, b"six"))));
    }

    #[tokio::test]
    async fn clones_share_snapshots_and_keys_stay_apart() {
        let store = Store::new(SnapshotPolicy::Never);
        let other = store.clone();
        let string_one = SnapshotKey::aggregate("k", SnapshotKey::id_text("1").unwrap());
        let number_one = SnapshotKey::aggregate("k", SnapshotKey::id_text(&1).unwrap());
        let unit = SnapshotKey::aggregate("k", SnapshotKey::id_text(&()).unwrap());
        let projection = SnapshotKey::projection("k");
        for (n, key) in [&string_one, &number_one, &unit, &projection]
            .into_iter()
            .enumerate()
        {
            let n = u64::try_from(n).unwrap();
            assert_eq!(
                store.save(key, at(10 + n, &[u8::try_from(n).unwrap()])).await,
                Ok(SaveOutcome::Saved)
            );
        }
        assert_eq!(other.len(), 4);
        for (n, key) in [&string_one, &number_one, &unit, &projection]
            .into_iter()
            .enumerate()
        {
            let n = u64::try_from(n).unwrap();
            assert_eq!(other.load(key).await.unwrap().map(|s| s.position), Some(10 + n));
        }
    }

    #[tokio::test]
    async fn offer_creates_only_when_the_policy_accepts() {
        let calls = AtomicUsize::new(0);
        let key = SnapshotKey::projection("p");
        let create = |position| {
            let calls = &calls;
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(at(position, b"x"))
            }
        };
        let never = Store::new(SnapshotPolicy::Never);
        assert_eq!(
            never.offer(&key, 1_000, create(1)).await.ok(),
            Some(OfferOutcome::NotDue)
        );
        let every_3 = never.with_policy(SnapshotPolicy::EveryNEvents(NonZeroU64::new(3).unwrap()));
        assert_eq!(
            every_3.offer(&key, 2, create(2)).await.ok(),
            Some(OfferOutcome::NotDue)
        );
        assert_eq!(
            every_3.offer(&key, 0, create(2)).await.ok(),
            Some(OfferOutcome::NotDue)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(never.is_empty());
        assert_eq!(
            every_3.offer(&key, 3, create(7)).await.ok(),
            Some(OfferOutcome::Saved)
        );
        assert_eq!(
            every_3.offer(&key, 3, create(7)).await.ok(),
            Some(OfferOutcome::Declined)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let failing = every_3
            .offer(&key, 9, || Err::<Snapshot<u64>, _>(std::fmt::Error))
            .await;
        assert!(matches!(
            failing,
            Err(crate::snapshot::OfferError::Create(std::fmt::Error))
        ));
    }
}

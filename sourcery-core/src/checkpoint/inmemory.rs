//! Checkpoints in memory, for tests and demos.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::checkpoint::{self, Advance, Claim, Fence};

/// An in-memory checkpoint store; clones share their checkpoints. Claims
/// and advances are checked under one lock, so runners in one process are
/// fenced like those sharing a database.
///
/// ```
/// use sourcery_core::checkpoint::{CheckpointStore, inmemory};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let checkpoints = inmemory::CheckpointStore::<u64>::new();
/// checkpoints.save("totals", 42).await?;
/// assert_eq!(checkpoints.load("totals").await?, Some(42));
/// assert_eq!(checkpoints.load("other").await?, None);
/// # Ok::<(), std::convert::Infallible>(())
/// # }).unwrap();
/// ```
pub struct CheckpointStore<Pos> {
    positions: Arc<Mutex<HashMap<String, Saved<Pos>>>>,
}

/// What is kept under a name.
#[derive(Debug)]
struct Saved<Pos> {
    position: Option<Pos>,
    fence: Option<Fence>,
}

impl<Pos> Default for Saved<Pos> {
    fn default() -> Self {
        Self {
            position: None,
            fence: None,
        }
    }
}

impl<Pos> CheckpointStore<Pos> {
    /// An empty checkpoint store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            positions: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<Pos> Default for CheckpointStore<Pos> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Pos> Clone for CheckpointStore<Pos> {
    fn clone(&self) -> Self {
        Self {
            positions: Arc::clone(&self.positions),
        }
    }
}

impl<Pos: fmt::Debug> fmt::Debug for CheckpointStore<Pos> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_map()
            .entries(positions.iter().map(|(name, saved)| (name, &saved.position)))
            .finish()
    }
}

impl<Pos: Copy + Ord + Send + Sync + 'static> checkpoint::CheckpointStore<Pos> for CheckpointStore<Pos> {
    type Error = Infallible;

    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<Pos>, Infallible> {
        let positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(positions.get(name).and_then(|saved| saved.position))
    }

    async fn save<'a>(&'a self, name: &'a str, position: Pos) -> Result<(), Infallible> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        positions.entry(name.to_owned()).or_default().position = Some(position);
        Ok(())
    }

    async fn claim<'a>(&'a self, name: &'a str, fence: Fence) -> Result<Claim<Pos>, Infallible> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = positions.entry(name.to_owned()).or_default();
        Ok(match saved.fence {
            Some(recorded) if recorded > fence => Claim::Fenced(recorded),
            _ => {
                saved.fence = Some(fence);
                Claim::Claimed(saved.position)
            }
        })
    }

    async fn advance<'a>(
        &'a self,
        name: &'a str,
        position: Pos,
        fence: Option<Fence>,
    ) -> Result<Advance<Pos>, Infallible> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = positions.entry(name.to_owned()).or_default();
        let refused = checkpoint::refusal(saved.position, saved.fence, position, fence);
        if refused.is_none() {
            saved.position = Some(position);
            saved.fence = saved.fence.max(fence);
        }
        Ok(refused.unwrap_or(Advance::Saved))
    }
}

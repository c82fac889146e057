//! Checkpoints in memory, for tests and demos.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::checkpoint;

/// An in-memory checkpoint store; clones share their checkpoints.
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
    positions: Arc<Mutex<HashMap<String, Pos>>>,
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
        f.debug_map().entries(positions.iter()).finish()
    }
}

impl<Pos: Copy + Send + Sync + 'static> checkpoint::CheckpointStore<Pos> for CheckpointStore<Pos> {
    type Error = Infallible;

    async fn load<'a>(&'a self, name: &'a str) -> Result<Option<Pos>, Infallible> {
        let positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(positions.get(name).copied())
    }

    async fn save<'a>(&'a self, name: &'a str, position: Pos) -> Result<(), Infallible> {
        let mut positions = self.positions.lock().unwrap_or_else(PoisonError::into_inner);
        positions.insert(name.to_owned(), position);
        Ok(())
    }
}

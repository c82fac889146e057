//! Checkpoints: how far a projection has processed the log, kept so that a
//! restart resumes there.
//!
//! A checkpoint is a position under a name (the projection's
//! [`KIND`](crate::projection::Projection::KIND)). Everything at or below it
//! has been applied; a runner that restarts subscribes after it. For a
//! projection held in memory delivery is at least once: events applied
//! after the last saved checkpoint are applied again after a crash, so a
//! projection that writes elsewhere should apply idempotently (an upsert
//! keyed by the event's position or the aggregate id, not an increment) —
//! or be a transactional projection of the PostgreSQL or SQLite store,
//! whose writes commit with the checkpoint.
//!
//! # Fencing
//!
//! A runner that lost its lease (its process paused, its network split, its
//! thread blocked) may not know it yet. So that it cannot write anyway, the
//! checkpoint store itself refuses it: each lease holder has a [`Fence`], a
//! number higher than every earlier holder's, and
//!
//! - [`claim`](CheckpointStore::claim) records the holder's fence for the
//!   name, atomically with reading the checkpoint; from then on
//! - [`advance`](CheckpointStore::advance) with a lower fence is refused
//!   ([`Advance::Fenced`]), and so is a position below the saved one
//!   ([`Advance::Behind`]): a checkpoint never moves backwards through
//!   `advance`.
//!
//! The [`ProjectionRunner`](crate::runner::ProjectionRunner) claims when it
//! gets its lease and advances after that; only [`save`](CheckpointStore::save)
//! (an operator's reset, a test) replaces a checkpoint unconditionally.
//!
//! ```
//! use sourcery_core::checkpoint::{Advance, CheckpointStore, Claim, Fence, inmemory};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let checkpoints = inmemory::CheckpointStore::<u64>::new();
//! let (old, new) = (Fence::new(1), Fence::new(2));
//! assert_eq!(checkpoints.claim("totals", old).await?, Claim::Claimed(None));
//! assert_eq!(checkpoints.advance("totals", 6, Some(old)).await?, Advance::Saved);
//!
//! // A new holder takes over; the old one does not know yet.
//! assert_eq!(checkpoints.claim("totals", new).await?, Claim::Claimed(Some(6)));
//! assert_eq!(checkpoints.advance("totals", 16, Some(new)).await?, Advance::Saved);
//! assert_eq!(checkpoints.advance("totals", 9, Some(old)).await?, Advance::Fenced(new));
//! assert_eq!(checkpoints.advance("totals", 12, Some(new)).await?, Advance::Behind(16));
//! assert_eq!(checkpoints.load("totals").await?, Some(16));
//! # Ok::<(), std::convert::Infallible>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;

pub mod inmemory;

/// A fencing token: the generation of a lease, higher for each new holder
/// of the lease under the same name (see [fencing](self#fencing)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(u64);

impl Fence {
    /// The fence of generation `generation`.
    #[must_use]
    pub const fn new(generation: u64) -> Self {
        Self(generation)
    }

    /// Its generation.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fence {}", self.0)
    }
}

/// What [`CheckpointStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Claim<Pos> {
    /// The name is claimed for the fence; the checkpoint saved under it.
    Claimed(Option<Pos>),
    /// A higher fence claimed the name: a newer holder of the lease exists.
    Fenced(Fence),
}

/// What [`CheckpointStore::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Advance<Pos> {
    /// The checkpoint is the position now.
    Saved,
    /// Refused: a higher fence claimed the name. Nothing was written.
    Fenced(Fence),
    /// Refused: the saved checkpoint is ahead of the position. Nothing was
    /// written.
    Behind(Pos),
}

/// Keeps the last processed position per projection name.
///
/// `claim` and `advance` are atomic with respect to each other and to
/// `save`: a checkpoint store shared by several processes checks and writes
/// in one transaction (or one conditional statement) of its database.
pub trait CheckpointStore<Pos>: Send + Sync + 'static {
    /// What goes wrong in the store.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint saved under `name`, if any.
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Future<Output = Result<Option<Pos>, Self::Error>> + Send + 'a;

    /// Saves `position` under `name`, replacing the previous checkpoint,
    /// lower or higher, whatever fence claimed the name (which it keeps).
    fn save<'a>(
        &'a self,
        name: &'a str,
        position: Pos,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'a;

    /// Claims `name` for the holder of `fence` and returns its checkpoint,
    /// in one atomic step: unless a higher fence claimed it already
    /// ([`Claim::Fenced`]), `fence` is recorded, and [`advance`](Self::advance)
    /// refuses lower fences from then on. Claiming with the recorded fence
    /// again is allowed.
    fn claim<'a>(
        &'a self,
        name: &'a str,
        fence: Fence,
    ) -> impl Future<Output = Result<Claim<Pos>, Self::Error>> + Send + 'a;

    /// Moves the checkpoint of `name` forward to `position`, in one atomic
    /// step: refused when a fence higher than `fence` claimed the name
    /// ([`Advance::Fenced`]; with `fence` `None` the fence is not checked)
    /// or when the saved checkpoint is above `position`
    /// ([`Advance::Behind`]). Advancing to the saved position is
    /// [`Advance::Saved`].
    fn advance<'a>(
        &'a self,
        name: &'a str,
        position: Pos,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<Advance<Pos>, Self::Error>> + Send + 'a;
}

/// The rule of [`CheckpointStore::advance`], for store authors: why moving
/// the checkpoint saved at `saved` under the fence `recorded` to `position`
/// by the holder of `fence` is refused, or `None` when it is allowed (then
/// save `position` and the higher of the two fences).
#[must_use]
pub fn refusal<Pos: Ord + Copy>(
    saved: Option<Pos>,
    recorded: Option<Fence>,
    position: Pos,
    fence: Option<Fence>,
) -> Option<Advance<Pos>> {
    match (recorded, fence) {
        (Some(recorded), Some(fence)) if recorded > fence => Some(Advance::Fenced(recorded)),
        _ => saved.filter(|saved| *saved > position).map(Advance::Behind),
    }
}

//! What a command may carry beyond its metadata: a command id (an
//! idempotency key), the version it requires, and how it is retried.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::concurrency::ExpectedVersion;
use crate::id::{CommandId, EventId};
use crate::store::EventStore;

/// Options of one command, for
/// [`Repository::execute_with`](super::Repository::execute_with) and
/// [`Repository::create_with`](super::Repository::create_with).
///
/// ```
/// use std::time::Duration;
/// use sourcery_core::concurrency::ExpectedVersion;
/// use sourcery_core::id::CommandId;
/// use sourcery_core::repository::{CommandOptions, RetryPolicy};
///
/// let options = CommandOptions::<u64>::new()
///     .command_id(CommandId::from_key("order-7/pay"))
///     .expected(ExpectedVersion::Exact(12))
///     .retry(RetryPolicy::new().conflicts(3).store_errors(5).backoff(Duration::from_millis(20), Duration::from_secs(2)));
/// assert_eq!(options.id(), Some(CommandId::from_key("order-7/pay")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOptions<Pos> {
    command_id: Option<CommandId>,
    expected: Option<ExpectedVersion<Pos>>,
    retry: RetryPolicy,
    assume_new: bool,
}

impl<Pos> CommandOptions<Pos> {
    /// No command id, the version the repository's strategy requires, no
    /// retries: what [`execute`](super::Repository::execute) and
    /// [`create`](super::Repository::create) use.
    #[must_use]
    pub fn new() -> Self {
        Self {
            command_id: None,
            expected: None,
            retry: RetryPolicy::none(),
            assume_new: false,
        }
    }

    /// Makes the command idempotent: the ids of the events it produces are
    /// derived from `id` ([`EventId::derived`]), so running the same command
    /// id again (a retry, another process, a redelivered message) applies
    /// it once and returns the first outcome, with
    /// [`CommandOutcome::replayed`](super::CommandOutcome::replayed) set.
    #[must_use]
    pub fn command_id(mut self, id: CommandId) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Tells the repository that the command id most likely has not run
    /// yet, so that it decides and commits at once instead of looking for
    /// the command's events first (one read less per command). The
    /// command stays idempotent: a commit of events whose ids are stored
    /// already is a replay (the store's rule), and after any refusal (a
    /// rejection, a conflict, a missing or existing aggregate, ids reused)
    /// the repository looks for the command's events before it answers.
    /// One difference remains: a command that ran before and now decides
    /// to write nothing succeeds with no events instead of the first
    /// outcome. What a [`ReactorRunner`](crate::reactor::ReactorRunner)
    /// uses for the commands of reactions seen for the first time.
    #[must_use]
    pub fn assume_new(mut self) -> Self {
        self.assume_new = true;
        self
    }

    /// Whether the command id is assumed new ([`assume_new`](Self::assume_new)).
    #[must_use]
    pub fn assumes_new(&self) -> bool {
        self.assume_new
    }

    /// What the commit requires of the stream's version, instead of what the
    /// repository's strategy says (for [`execute_with`](super::Repository::execute_with)):
    ///
    /// - [`Exact(v)`](ExpectedVersion::Exact): the aggregate must be at `v`
    ///   (a version the caller read earlier, as an `If-Match` header
    ///   carries it), checked on load and at the commit;
    /// - [`StreamExists`](ExpectedVersion::StreamExists) or
    ///   [`Any`](ExpectedVersion::Any): at any version (an unchecked commit
    ///   on an optimistic repository; the aggregate exists, as it was
    ///   loaded);
    /// - [`NoStream`](ExpectedVersion::NoStream): never met by an existing
    ///   aggregate, so a conflict.
    ///
    /// A creation ([`create_with`](super::Repository::create_with)) always
    /// requires a new stream; any other expectation is a conflict there.
    #[must_use]
    pub fn expected(mut self, expected: ExpectedVersion<Pos>) -> Self {
        self.expected = Some(expected);
        self
    }

    /// How conflicts and store errors are retried.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The command id, if one is set.
    #[must_use]
    pub fn id(&self) -> Option<CommandId> {
        self.command_id
    }

    /// The expected version, if one is set.
    #[must_use]
    pub fn expected_version(&self) -> Option<&ExpectedVersion<Pos>> {
        self.expected.as_ref()
    }

    /// The retry policy.
    #[must_use]
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }
}

impl<Pos> Default for CommandOptions<Pos> {
    fn default() -> Self {
        Self::new()
    }
}

/// How a command is retried: after a conflict (reload and decide again, at
/// once) and after a store error (the same command with the same event ids,
/// after a jittered exponential backoff).
///
/// A store error during a commit may leave its outcome unknown (the
/// connection dropped after the server committed). Retrying it is safe
/// only because the retry sends the same event ids, so the store recognises
/// a batch it already holds (invariant 7 of the [store
/// contract](crate::store)): a command retried after a store error always
/// runs under a command id, one the repository picks for its attempts when
/// the caller set none.
///
/// The backoff before store retry `n` (from 1) is a random duration between
/// zero and `min(max, initial × 2^(n-1))` ("full jitter"), so clients that
/// failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use sourcery_core::repository::RetryPolicy;
///
/// let policy = RetryPolicy::new().store_errors(4).backoff(Duration::from_millis(10), Duration::from_millis(50));
/// assert!(policy.backoff_before(1) <= Duration::from_millis(10));
/// assert!(policy.backoff_before(3) <= Duration::from_millis(40));
/// assert!(policy.backoff_before(9) <= Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    conflicts: u32,
    store_errors: u32,
    initial: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// Three retries after store errors, none after conflicts, backoff from
    /// 10 ms up to 1 s.
    #[must_use]
    pub fn new() -> Self {
        Self {
            conflicts: 0,
            store_errors: 3,
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
        }
    }

    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            store_errors: 0,
            ..Self::new()
        }
    }

    /// At most `retries` retries after conflicts.
    #[must_use]
    pub fn conflicts(mut self, retries: u32) -> Self {
        self.conflicts = retries;
        self
    }

    /// At most `retries` retries after store errors.
    #[must_use]
    pub fn store_errors(mut self, retries: u32) -> Self {
        self.store_errors = retries;
        self
    }

    /// The backoff before the first store retry is at most `initial`; it
    /// doubles with each retry, up to `max`.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// The retries allowed after conflicts.
    #[must_use]
    pub fn conflict_retries(&self) -> u32 {
        self.conflicts
    }

    /// The retries allowed after store errors.
    #[must_use]
    pub fn store_error_retries(&self) -> u32 {
        self.store_errors
    }

    /// A backoff before store retry `retry` (from 1), drawn at random
    /// between zero and its bound.
    #[must_use]
    pub fn backoff_before(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let bound = self.initial.saturating_mul(1 << doublings).min(self.max);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random() % (nanos + 1))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// A random `u64` for the jitter: `RandomState` draws fresh keys from the
/// operating system's randomness, seeded once per thread.
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}

/// How many derived ids one probe asks the store about.
const PROBE: u32 = 16;

/// The events of a command that ran before, found by their derived ids: how
/// many there are and the position of the last.
pub(super) struct Replayed<Pos> {
    pub(super) events: usize,
    pub(super) last_position: Pos,
    pub(super) event_ids: Vec<EventId>,
}

/// Looks for the events of `command` in the stream: `None` when its first
/// derived id is not there (the command never committed).
pub(super) async fn find_replay<S: EventStore>(
    store: &S,
    aggregate_kind: &str,
    aggregate_id: &S::Id,
    command: CommandId,
) -> Result<Option<Replayed<S::Position>>, S::Error> {
    let mut found = Vec::new();
    let mut last = None;
    let mut from = 0_u32;
    loop {
        let ids: Vec<EventId> = (from..from.saturating_add(PROBE))
            .map(|index| command.event_id(index))
            .collect();
        let positions = store.event_positions(aggregate_kind, aggregate_id, &ids).await?;
        let mut complete = positions.len() == ids.len();
        for (id, position) in ids.iter().zip(positions) {
            let Some(position) = position else {
                complete = false;
                break;
            };
            found.push(*id);
            last = Some(position);
        }
        if !complete || from.checked_add(PROBE).is_none() {
            break;
        }
        from += PROBE;
    }
    Ok(last.map(|last_position| Replayed {
        events: found.len(),
        last_position,
        event_ids: found,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_bounds_and_varies() {
        let policy = RetryPolicy::new().backoff(Duration::from_millis(8), Duration::from_millis(100));
        let draws: Vec<Duration> = (0..64).map(|_| policy.backoff_before(4)).collect();
        assert!(draws.iter().all(|draw| *draw <= Duration::from_millis(64)));
        assert!(
            draws.iter().any(|draw| *draw != draws[0]),
            "64 draws of the jitter were all equal: {draws:?}"
        );
        assert!((0..64).all(|_| policy.backoff_before(30) <= Duration::from_millis(100)));
        let zero = RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.backoff_before(3), Duration::ZERO);
    }
}

//! Where reactors keep what must outlive a process: their timers and their
//! dead letters.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::schedule::{NewTimer, Timer, TimerId, TimerOutcome};
use crate::store::StoredEvent;

/// A reaction that failed as many times as its reactor retries, parked so
/// that the reactor could move on: the event, the error and the attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter<Id, Pos, M> {
    /// The reactor whose reaction failed.
    pub reactor: String,
    /// The event it failed on, as stored.
    pub event: StoredEvent<Id, Pos, M>,
    /// The last failure, with its causes (`error: cause: cause`).
    pub error: String,
    /// How many times the reaction was tried.
    pub attempts: u32,
    /// When it was parked (last).
    pub parked_at: DateTime<Utc>,
    /// Whether an operator asked for it to be tried again
    /// ([`ReactorStore::request_retry`]); the reactor's active runner does
    /// so within its `timer_poll` (1 s by default).
    pub retry_requested: bool,
}

impl<Id, Pos, M> DeadLetter<Id, Pos, M> {
    /// A dead letter of `reactor` for `event`.
    pub fn new(
        reactor: impl Into<String>,
        event: StoredEvent<Id, Pos, M>,
        error: impl Into<String>,
        attempts: u32,
        parked_at: DateTime<Utc>,
    ) -> Self {
        Self {
            reactor: reactor.into(),
            event,
            error: error.into(),
            attempts,
            parked_at,
            retry_requested: false,
        }
    }
}

/// Keeps reactors' timers and dead letters, in the store's database.
///
/// Every method is one atomic step of the database: several processes may
/// share a reactor store (one of them runs each reactor, holding its
/// lease; operators list, retry and discard from anywhere).
///
/// Timers are keyed by [`TimerId`]; a timer stays stored after it fired or
/// was cancelled, so that scheduling it again (a redelivered reaction)
/// stores nothing new. Dead letters are keyed by reactor and event
/// position.
pub trait ReactorStore<Id, Pos, M>: Send + Sync + 'static {
    /// What goes wrong in the store.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores `timers` as pending, skipping every timer whose id is stored
    /// already (whatever its state), in one transaction.
    fn schedule(
        &self,
        timers: Vec<NewTimer<Pos>>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;

    /// Cancels the pending timers of `reactor` with `key` scheduled by
    /// the reactions to events before `before` (the position of the event
    /// whose reaction cancels); returns how many.
    fn cancel<'a>(
        &'a self,
        reactor: &'a str,
        key: &'a str,
        before: Pos,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send + 'a;

    /// The pending timers of `reactor` due at `now` or before, earliest
    /// first, at most `limit`.
    fn due<'a>(
        &'a self,
        reactor: &'a str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Timer<Pos>>, Self::Error>> + Send + 'a;

    /// When the earliest pending timer of `reactor` is due, if it has one.
    fn next_due<'a>(
        &'a self,
        reactor: &'a str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, Self::Error>> + Send + 'a;

    /// Records what became of a fired timer ([`Timer::finished`]), if it
    /// is still pending; returns whether it was (`false`: it was
    /// cancelled or finished meanwhile, and nothing changed).
    fn finish(
        &self,
        id: TimerId,
        outcome: TimerOutcome,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send + '_;

    /// Every stored timer of `reactor`, in every state, earliest due first.
    fn timers<'a>(
        &'a self,
        reactor: &'a str,
    ) -> impl Future<Output = Result<Vec<Timer<Pos>>, Self::Error>> + Send + 'a;

    /// Makes a failed timer pending again, due at `now`, with its attempts
    /// reset; returns whether it was failed.
    fn retry_timer(
        &self,
        id: TimerId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send + '_;

    /// Cancels one pending or failed timer; returns whether it was one.
    fn cancel_timer(&self, id: TimerId) -> impl Future<Output = Result<bool, Self::Error>> + Send + '_;

    /// Parks `letter`, replacing a dead letter of the same reactor and
    /// position (a retry that failed again), with its retry request cleared.
    fn park(
        &self,
        letter: DeadLetter<Id, Pos, M>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;

    /// The dead letters of `reactor`, in event position order.
    fn dead_letters<'a>(
        &'a self,
        reactor: &'a str,
    ) -> impl Future<Output = Result<Vec<DeadLetter<Id, Pos, M>>, Self::Error>> + Send + 'a;

    /// The dead letters of `reactor` an operator asked to retry, in event
    /// position order: what the reactor's runner looks for at each poll.
    /// By default [`dead_letters`](Self::dead_letters) filtered; stores
    /// override it with a query that reads only those.
    fn retry_requests<'a>(
        &'a self,
        reactor: &'a str,
    ) -> impl Future<Output = Result<Vec<DeadLetter<Id, Pos, M>>, Self::Error>> + Send + 'a {
        async move {
            let letters = self.dead_letters(reactor).await?;
            Ok(letters
                .into_iter()
                .filter(|letter| letter.retry_requested)
                .collect())
        }
    }

    /// Asks the reactor's active runner to try the reaction parked at
    /// `position` again; returns whether one is parked there.
    fn request_retry<'a>(
        &'a self,
        reactor: &'a str,
        position: Pos,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send + 'a;

    /// Removes the dead letter of `reactor` at `position` (discarded by an
    /// operator, or retried with success); returns whether there was one.
    fn discard<'a>(
        &'a self,
        reactor: &'a str,
        position: Pos,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send + 'a;
}

//! Timers and dead letters in memory, for tests and demos.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::store::{self, DeadLetter};
use crate::schedule::{NewTimer, Timer, TimerId, TimerOutcome, TimerState};

/// An in-memory reactor store; clones share their timers and dead letters.
/// Every method runs under one lock.
///
/// ```
/// use chrono::Utc;
/// use sourcery_core::reactor::{ReactorStore, inmemory};
/// use sourcery_core::schedule::{NewTimer, TimerId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = inmemory::ReactorStore::<String, u64, ()>::new();
/// let id = TimerId::from_uuid(uuid::Uuid::nil());
/// let timer = NewTimer { id, reactor: "reminders".into(), key: "k".into(), due: Utc::now(), command: "invoice/invoice.remind".into(), payload: vec![], cause: 7 };
/// store.schedule(vec![timer.clone()]).await?;
/// store.schedule(vec![timer]).await?; // stored once
/// assert_eq!(store.due("reminders", Utc::now(), 10).await?.len(), 1);
/// assert_eq!(store.cancel("reminders", "k", 7).await?, 0); // only later events cancel it
/// assert_eq!(store.cancel("reminders", "k", 8).await?, 1);
/// assert!(store.due("reminders", Utc::now(), 10).await?.is_empty());
/// # Ok::<(), std::convert::Infallible>(())
/// # }).unwrap();
/// ```
pub struct ReactorStore<Id, Pos, M> {
    inner: Arc<Mutex<Inner<Id, Pos, M>>>,
}

struct Inner<Id, Pos, M> {
    timers: HashMap<TimerId, Timer<Pos>>,
    letters: BTreeMap<(String, Pos), DeadLetter<Id, Pos, M>>,
}

impl<Id, Pos, M> ReactorStore<Id, Pos, M> {
    /// An empty reactor store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                timers: HashMap::new(),
                letters: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<Id, Pos, M>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<Id, Pos, M> Default for ReactorStore<Id, Pos, M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Id, Pos, M> Clone for ReactorStore<Id, Pos, M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<Id, Pos, M> fmt::Debug for ReactorStore<Id, Pos, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("ReactorStore")
            .field("timers", &inner.timers.len())
            .field("dead_letters", &inner.letters.len())
            .finish()
    }
}

/// Timers sorted as the trait lists them: earliest due first, then by id.
fn sorted<Pos>(mut timers: Vec<Timer<Pos>>) -> Vec<Timer<Pos>> {
    timers.sort_by(|a, b| a.due.cmp(&b.due).then(a.id.cmp(&b.id)));
    timers
}

impl<Id, Pos, M> store::ReactorStore<Id, Pos, M> for ReactorStore<Id, Pos, M>
where
    Id: Clone + Send + 'static,
    Pos: Ord + Copy + Send + 'static,
    M: Clone + Send + 'static,
{
    type Error = Infallible;

    async fn schedule(&self, timers: Vec<NewTimer<Pos>>) -> Result<(), Infallible> {
        let mut inner = self.lock();
        for timer in timers {
            inner
                .timers
                .entry(timer.id)
                .or_insert_with(|| Timer::pending(timer));
        }
        Ok(())
    }

    async fn cancel<'a>(&'a self, reactor: &'a str, key: &'a str, before: Pos) -> Result<u64, Infallible> {
        let mut inner = self.lock();
        let mut cancelled = 0;
        for timer in inner.timers.values_mut() {
            if timer.reactor == reactor
                && timer.key == key
                && timer.state == TimerState::Pending
                && timer.cause < before
            {
                timer.state = TimerState::Cancelled;
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    async fn due<'a>(
        &'a self,
        reactor: &'a str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer<Pos>>, Infallible> {
        let inner = self.lock();
        let due = inner
            .timers
            .values()
            .filter(|timer| {
                timer.reactor == reactor && timer.state == TimerState::Pending && timer.due <= now
            })
            .cloned()
            .collect();
        let mut due = sorted(due);
        due.truncate(limit);
        Ok(due)
    }

    async fn next_due<'a>(&'a self, reactor: &'a str) -> Result<Option<DateTime<Utc>>, Infallible> {
        let inner = self.lock();
        Ok(inner
            .timers
            .values()
            .filter(|timer| timer.reactor == reactor && timer.state == TimerState::Pending)
            .map(|timer| timer.due)
            .min())
    }

    async fn finish(&self, id: TimerId, outcome: TimerOutcome) -> Result<bool, Infallible> {
        let mut inner = self.lock();
        match inner.timers.remove(&id) {
            Some(timer) if timer.state == TimerState::Pending => {
                inner.timers.insert(id, timer.finished(&outcome));
                Ok(true)
            }
            Some(timer) => {
                inner.timers.insert(id, timer);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    async fn timers<'a>(&'a self, reactor: &'a str) -> Result<Vec<Timer<Pos>>, Infallible> {
        let inner = self.lock();
        let timers = inner
            .timers
            .values()
            .filter(|timer| timer.reactor == reactor)
            .cloned()
            .collect();
        Ok(sorted(timers))
    }

    async fn retry_timer(&self, id: TimerId, now: DateTime<Utc>) -> Result<bool, Infallible> {
        let mut inner = self.lock();
        match inner.timers.get_mut(&id) {
            Some(timer) if timer.state == TimerState::Failed => {
                timer.state = TimerState::Pending;
                timer.due = now;
                timer.attempts = 0;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn cancel_timer(&self, id: TimerId) -> Result<bool, Infallible> {
        let mut inner = self.lock();
        match inner.timers.get_mut(&id) {
            Some(timer) if matches!(timer.state, TimerState::Pending | TimerState::Failed) => {
                timer.state = TimerState::Cancelled;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn park(&self, mut letter: DeadLetter<Id, Pos, M>) -> Result<(), Infallible> {
        letter.retry_requested = false;
        self.lock()
            .letters
            .insert((letter.reactor.clone(), letter.event.position), letter);
        Ok(())
    }

    async fn dead_letters<'a>(&'a self, reactor: &'a str) -> Result<Vec<DeadLetter<Id, Pos, M>>, Infallible> {
        Ok(self
            .lock()
            .letters
            .values()
            .filter(|letter| letter.reactor == reactor)
            .cloned()
            .collect())
    }

    async fn request_retry<'a>(&'a self, reactor: &'a str, position: Pos) -> Result<bool, Infallible> {
        match self.lock().letters.get_mut(&(reactor.to_owned(), position)) {
            Some(letter) => {
                letter.retry_requested = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn discard<'a>(&'a self, reactor: &'a str, position: Pos) -> Result<bool, Infallible> {
        Ok(self
            .lock()
            .letters
            .remove(&(reactor.to_owned(), position))
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::ReactorStore;
    use crate::id::EventId;
    use crate::store::StoredEvent;

    #[tokio::test]
    async fn keeps_the_rules_of_reactor_stores() {
        let store = ReactorStore::<String, u64, String>::new();
        crate::test::reactor_store::check(&store, "memory-", [3, 7, 12], |position| StoredEvent {
            id: EventId::from_bytes([u8::try_from(position).unwrap_or(0); 16]),
            aggregate_kind: "order".to_owned(),
            aggregate_id: format!("order-{position}"),
            kind: "order.placed".to_owned(),
            position,
            schema_version: 1,
            data: br#"{"sku":"apple"}"#.to_vec(),
            metadata: format!("meta-{position}"),
        })
        .await;
    }
}

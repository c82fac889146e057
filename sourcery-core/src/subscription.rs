//! Following the event log: the history after a position, then live events
//! as they commit, with no gap and no duplicate at the seam.
//!
//! A store that implements [`Subscribe`] hands out a [`CommitSignal`] that
//! changes whenever events may have been committed. A subscription always
//! reads the store by cursor — history and live events come through the same
//! query — and only uses the signal to know when to read again, so a missed
//! or spurious signal costs latency, never an event. Stores whose signal can
//! be missed (PostgreSQL's `LISTEN` across a reconnect) also poll at a
//! bounded interval.
//!
//! ```
//! use futures::StreamExt;
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Unchecked;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore, inmemory};
//! use sourcery_core::subscription::Subscribe;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Pinged { n: u32 }
//! impl DomainEvent for Pinged { const KIND: &'static str = "ping"; }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = inmemory::Store::<String, ()>::new();
//! let mut tx = store.begin::<Unchecked>("pinger", "p".to_string(), None);
//! tx.append(Pinged { n: 1 }, ())?;
//! tx.commit().await?;
//!
//! let mut events = store.subscribe(vec![EventFilter::for_event("ping")], None);
//! let first = events.next().await.expect("history")?;   // from the history
//!
//! let mut tx = store.begin::<Unchecked>("pinger", "p".to_string(), None);
//! tx.append(Pinged { n: 2 }, ())?;
//! tx.commit().await?;
//! let second = events.next().await.expect("live")?;     // live
//! assert!(second.position > first.position);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::store::{EventFilter, EventStore, GloballyOrdered, StoredEvent};

/// The store side of a [`CommitSignal`]: call [`notify`](Self::notify)
/// after every commit.
#[derive(Debug, Clone)]
pub struct CommitNotifier {
    sender: Arc<watch::Sender<u64>>,
}

impl CommitNotifier {
    /// A notifier nobody listens to yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Tells every signal that events may have been committed.
    pub fn notify(&self) {
        self.sender.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A signal that changes on every [`notify`](Self::notify) from now on.
    #[must_use]
    pub fn signal(&self) -> CommitSignal {
        CommitSignal {
            receiver: self.sender.subscribe(),
        }
    }
}

impl Default for CommitNotifier {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscriber's side of a store's commit notifications.
#[derive(Debug, Clone)]
pub struct CommitSignal {
    receiver: watch::Receiver<u64>,
}

impl CommitSignal {
    /// Marks every notification so far as seen. Call it *before* reading the
    /// store, so a commit that lands during the read still wakes
    /// [`changed`](Self::changed).
    pub fn mark_seen(&mut self) {
        self.receiver.mark_unchanged();
    }

    /// Resolves at the first notification not yet marked seen. Returns
    /// `false` when the notifier is gone (nothing will ever notify again).
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}

/// A store that can be followed live. Every store that is
/// [`GloballyOrdered`] can be; this trait adds how it signals commits.
pub trait Subscribe: GloballyOrdered + Clone + 'static {
    /// A signal that changes after events may have been committed.
    fn commit_signal(&self) -> CommitSignal;

    /// How often a waiting subscription reads the store anyway, for stores
    /// whose signal can be missed. `None`: the signal is never missed.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    /// What holds the head back, when the store knows it does: a
    /// transaction left open keeps PostgreSQL's safe frontier, and every
    /// subscriber, from moving. Runners report it in their status. `None`
    /// by default (no store but PostgreSQL's can be held back).
    fn stall(&self) -> Option<Stall> {
        None
    }

    /// The highest position a reader may consider settled: every event at
    /// or below it that will ever be visible is visible now.
    fn head_position(&self) -> impl Future<Output = Result<Option<Self::Position>, Self::Error>> + Send + '_;

    /// Like [`load_events`](EventStore::load_events), but stores may return
    /// only the first `limit` events. The default loads them all.
    #[expect(
        clippy::type_complexity,
        reason = "the same signature as `EventStore::load_events`"
    )]
    fn load_page<'a>(
        &'a self,
        filters: &'a [EventFilter<Self::Id, Self::Position>],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent<Self::Id, Self::Position, Self::Metadata>>, Self::Error>>
    + Send
    + 'a {
        let _ = limit;
        self.load_events(filters)
    }

    /// The events `filters` select after `from` (all of them with `None`),
    /// then each matching event as it commits, in position order, forever.
    ///
    /// On a store error the stream yields it and ends; subscribe again from
    /// the last position received.
    fn subscribe(
        &self,
        filters: Vec<EventFilter<Self::Id, Self::Position>>,
        from: Option<Self::Position>,
    ) -> Subscription<Self> {
        Subscription::new(self.clone(), filters, from)
    }
}

/// What a [`Follower`] reports: an event, or that every matching event up
/// to a position has been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<Id, Pos, M> {
    /// The next matching event.
    Event(StoredEvent<Id, Pos, M>),
    /// Every matching event at or below this position has been delivered:
    /// the follower has read the log up to here.
    CaughtUp(Pos),
}

/// The stream of events of [`Subscribe::subscribe`].
pub struct Subscription<S: EventStore> {
    inner: BoxStream<'static, SubscriptionItem<S>>,
}

/// What a [`Subscription`] yields.
type SubscriptionItem<S> = Result<
    StoredEvent<<S as EventStore>::Id, <S as EventStore>::Position, <S as EventStore>::Metadata>,
    <S as EventStore>::Error,
>;

impl<S: Subscribe> Subscription<S> {
    fn new(store: S, filters: Vec<EventFilter<S::Id, S::Position>>, from: Option<S::Position>) -> Self {
        let follower = Follower::new(store, filters, from);
        let events = futures::stream::unfold(follower, |mut follower| async move {
            loop {
                match follower.next().await? {
                    Ok(Progress::Event(event)) => return Some((Ok(event), follower)),
                    Ok(Progress::CaughtUp(_)) => {}
                    Err(error) => return Some((Err(error), follower)),
                }
            }
        });
        Self {
            inner: Box::pin(events),
        }
    }
}

impl<S: EventStore> Stream for Subscription<S> {
    type Item = SubscriptionItem<S>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl<S: EventStore> fmt::Debug for Subscription<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// The head of the log held back by a transaction (see
/// [`Subscribe::stall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stall {
    /// The process id of the database backend running the oldest
    /// transaction that holds the head back (`None`: not known, or a
    /// prepared transaction).
    pub pid: Option<i32>,
    /// How long that transaction has run, when known.
    pub running_for: Option<Duration>,
}

impl Stall {
    /// A stall caused by backend `pid`, running for `running_for`.
    #[must_use]
    pub fn new(pid: Option<i32>, running_for: Option<Duration>) -> Self {
        Self { pid, running_for }
    }
}

/// How many events a follower reads per query.
const PAGE: usize = 1_000;

/// Follows a store: the engine of [`Subscription`] and of the projection
/// runner. Reports [`Progress`], including how far it has read when no
/// matching event came (so a reader can wait for a position its filters
/// skip).
pub struct Follower<S: EventStore> {
    store: S,
    filters: Vec<EventFilter<S::Id, S::Position>>,
    cursor: Option<S::Position>,
    signal: CommitSignal,
    buffer: VecDeque<StoredEvent<S::Id, S::Position, S::Metadata>>,
    caught_up: Option<S::Position>,
    reported: Option<S::Position>,
    /// Whether the last page was full: more events are waiting, so the
    /// next read skips asking for the head (one query fewer per page while
    /// catching up).
    behind: bool,
    failed: bool,
}

impl<S: Subscribe> Follower<S> {
    /// Follows the events `filters` select after `from`.
    pub fn new(store: S, filters: Vec<EventFilter<S::Id, S::Position>>, from: Option<S::Position>) -> Self {
        let signal = store.commit_signal();
        Self {
            store,
            filters,
            cursor: from,
            signal,
            buffer: VecDeque::new(),
            caught_up: None,
            reported: from,
            behind: false,
            failed: false,
        }
    }

    /// How far the follower has read: every matching event at or below it
    /// has been delivered (or it is where the follower started).
    pub fn position(&self) -> Option<S::Position> {
        self.cursor
    }

    /// The next event already read, if any: it neither waits nor queries.
    /// Lets a reader take a batch of what one page brought.
    pub fn next_buffered(&mut self) -> Option<StoredEvent<S::Id, S::Position, S::Metadata>> {
        let event = self.buffer.pop_front()?;
        self.cursor = Some(event.position);
        Some(event)
    }

    /// Whether events already read wait to be delivered.
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The next event or progress report; waits for commits when there is
    /// nothing to report. `None` only after an error was returned.
    ///
    /// Cancel-safe: dropped before it resolves, it loses nothing (a page
    /// read is only kept once complete), so it can be raced against a
    /// timer.
    pub async fn next(&mut self) -> Option<Result<Progress<S::Id, S::Position, S::Metadata>, S::Error>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.cursor = Some(event.position);
                return Some(Ok(Progress::Event(event)));
            }
            if let Some(head) = self.caught_up.take() {
                // Every matching event up to `head` has been delivered: the
                // next read starts there instead of rescanning events the
                // filters skipped.
                self.cursor = self.cursor.max(Some(head));
                if self.reported.is_none_or(|reported| head > reported) {
                    self.reported = Some(head);
                    return Some(Ok(Progress::CaughtUp(head)));
                }
            }
            match self.read().await {
                Ok(true) => {}
                Ok(false) => self.wait().await,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
    }

    /// Reads the next page; `Ok(false)` when there was nothing new.
    async fn read(&mut self) -> Result<bool, S::Error> {
        self.signal.mark_seen();
        // The head must be read before the page for `CaughtUp` to be true;
        // while pages come back full it is not needed yet.
        let with_head = !self.behind;
        let head = if with_head {
            self.store.head_position().await?
        } else {
            None
        };
        let filters: Vec<EventFilter<S::Id, S::Position>> = match self.cursor {
            Some(cursor) => self
                .filters
                .iter()
                // The filter's own bound stays when it is past the cursor:
                // a subscription delivers what `load_events` would.
                .map(|filter| {
                    let bound = filter.after_position().map_or(cursor, |own| own.max(cursor));
                    filter.clone().after(bound)
                })
                .collect(),
            None => self.filters.clone(),
        };
        let page = if filters.is_empty() {
            Vec::new()
        } else {
            self.store.load_page(&filters, PAGE).await?
        };
        let complete = page.len() < PAGE;
        self.behind = !complete;
        let last = page.last().map(|event| event.position);
        self.buffer.extend(page);
        if !complete {
            return Ok(true);
        }
        if !with_head {
            // The end of a catch-up: read again, with the head, to report
            // how far the log has been read.
            return Ok(true);
        }
        // Everything matching up to the head (and up to the last event read)
        // is in the buffer now.
        self.caught_up = match (head, last) {
            (Some(head), Some(last)) => Some(head.max(last)),
            (head, last) => head.or(last),
        };
        let news = last.is_some()
            || self
                .caught_up
                .is_some_and(|head| self.reported.is_none_or(|r| head > r));
        Ok(news)
    }

    async fn wait(&mut self) {
        match self.store.poll_interval() {
            Some(interval) => {
                let _ = tokio::time::timeout(interval, self.signal.changed()).await;
            }
            None => {
                if !self.signal.changed().await {
                    // The notifier is gone: fall back to polling.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl<S: EventStore> fmt::Debug for Follower<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("cursor", &self.cursor)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

//! Time, and commands scheduled for later.
//!
//! A reaction can schedule a command ("remind in 14 days", "cancel if
//! unpaid by T") with [`Reactions::schedule`](crate::reactor::Reactions::schedule).
//! The schedule is a [`Timer`] row in the store's database (see
//! [`ReactorStore`](crate::reactor::ReactorStore)): it survives restarts,
//! is fired by the reactor's active runner once its time has come, and can
//! be cancelled by key. Its command runs under a command id derived from
//! the timer's id, so a timer fired twice (a crash between the command and
//! the timer's completion, an old lease holder waking up) applies its
//! command once.
//!
//! Time comes from a [`Clock`]: [`SystemClock`] in production, a
//! [`TestClock`] in tests, which only moves when told and wakes the runners
//! that wait on it, so a test of a 14-day timeout runs in milliseconds.
//!
//! ```
//! use std::time::Duration;
//! use sourcery_core::schedule::{Clock, TestClock};
//!
//! let clock = TestClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(14 * 24 * 3600));
//! assert_eq!((clock.now() - start).num_days(), 14);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use uuid::Uuid;

use crate::id::CommandId;

/// Where a runner reads the time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> DateTime<Utc>;

    /// A channel that changes when the clock jumps (a [`TestClock`]
    /// advanced), so that runners waiting for a timer look again; `None`
    /// for a clock that only moves with real time.
    fn jumps(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        None
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for tests of timers. Clones share
/// one time.
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl TestClock {
    /// A test clock at the system's time now.
    #[must_use]
    pub fn new() -> Self {
        Self::at(Utc::now())
    }

    /// A test clock at `now`.
    #[must_use]
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(now)),
        }
    }

    /// Moves the clock forward by `by` and wakes whoever waits on it.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.now
            .send_modify(|now| *now = now.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC));
    }

    /// Sets the clock to `now` (forward or back) and wakes whoever waits
    /// on it.
    pub fn set(&self, now: DateTime<Utc>) {
        self.now.send_replace(now);
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn jumps(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        Some(self.now.subscribe())
    }
}

/// A command that can be scheduled: it is stored (as JSON) until it fires,
/// possibly by another process after a restart, so it has a stable name.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::schedule::ScheduledCommand;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct CancelOrder { reason: String }
///
/// impl ScheduledCommand for CancelOrder {
///     const KIND: &'static str = "order.cancel";
/// }
/// ```
pub trait ScheduledCommand:
    Serialize + DeserializeOwned + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The command's stored name, e.g. `"order.cancel"`; unique among the
    /// commands a reactor schedules. Changing it orphans stored timers.
    const KIND: &'static str;
}

/// The id of a [`Timer`]. A reaction's timers get ids derived from the
/// reactor, the causing event and the timer's index in the reaction, so
/// scheduling again after a redelivery stores nothing new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(Uuid);

impl TimerId {
    /// The id of a timer from its UUID.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The command id a timer's command runs under: the same for every
    /// firing of the timer, so its command applies once.
    #[must_use]
    pub fn command_id(self) -> CommandId {
        CommandId::from_uuid(self.0)
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A timer to store: what [`ReactorStore::schedule`](crate::reactor::ReactorStore::schedule)
/// takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer<Pos> {
    /// The timer's id (a timer whose id is stored already is not stored
    /// again).
    pub id: TimerId,
    /// The reactor whose runner fires it.
    pub reactor: String,
    /// The key it is cancelled by, chosen by the reaction (e.g.
    /// `"payment-deadline/order-7"`).
    pub key: String,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// The stored name of its command: the target aggregate's kind and the
    /// command's [`ScheduledCommand::KIND`], `"<aggregate>/<command>"`.
    pub command: String,
    /// The target aggregate's id, the command and the metadata of its
    /// events, encoded by the library (JSON).
    pub payload: Vec<u8>,
    /// The position of the event whose reaction scheduled it: a
    /// cancellation by a later event's reaction cancels it, one by an
    /// earlier event's (delivered again after a restart) does not.
    pub cause: Pos,
}

/// Where a timer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerState {
    /// Waiting for its time, or due and not fired yet.
    Pending,
    /// Its command ran.
    Fired,
    /// Cancelled before it fired.
    Cancelled,
    /// Its command failed as many times as the reactor retries: it waits
    /// for an operator ([`ReactorStore::retry_timer`](crate::reactor::ReactorStore::retry_timer)
    /// or [`cancel_timer`](crate::reactor::ReactorStore::cancel_timer)).
    Failed,
}

impl TimerState {
    /// The state's stored name: `pending`, `fired`, `cancelled`, `failed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fired => "fired",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// The state of a stored name, if it is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "fired" => Some(Self::Fired),
            "cancelled" => Some(Self::Cancelled),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for TimerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timer<Pos> {
    /// Its id.
    pub id: TimerId,
    /// The reactor whose runner fires it.
    pub reactor: String,
    /// The key it is cancelled by.
    pub key: String,
    /// When it is due (after a failed attempt: when it is tried again).
    pub due: DateTime<Utc>,
    /// The stored name of its command (see [`NewTimer::command`]).
    pub command: String,
    /// The encoded target, command and metadata.
    pub payload: Vec<u8>,
    /// The position of the event whose reaction scheduled it.
    pub cause: Pos,
    /// Where it is in its life.
    pub state: TimerState,
    /// How many times its command failed.
    pub attempts: u32,
    /// The last failure, when one happened.
    pub last_error: Option<String>,
}

impl<Pos> Timer<Pos> {
    /// A pending timer, as [`ReactorStore::schedule`](crate::reactor::ReactorStore::schedule)
    /// stores `new` (for store authors).
    #[must_use]
    pub fn pending(new: NewTimer<Pos>) -> Self {
        Self {
            id: new.id,
            reactor: new.reactor,
            key: new.key,
            due: new.due,
            command: new.command,
            payload: new.payload,
            cause: new.cause,
            state: TimerState::Pending,
            attempts: 0,
            last_error: None,
        }
    }

    /// The timer after `outcome`, as [`ReactorStore::finish`](crate::reactor::ReactorStore::finish)
    /// stores it (for store authors).
    #[must_use]
    pub fn finished(mut self, outcome: &TimerOutcome) -> Self {
        match outcome {
            TimerOutcome::Fired => self.state = TimerState::Fired,
            TimerOutcome::Retry { due, error } => {
                self.due = *due;
                self.attempts = self.attempts.saturating_add(1);
                self.last_error = Some(error.clone());
            }
            TimerOutcome::Failed { error } => {
                self.state = TimerState::Failed;
                self.attempts = self.attempts.saturating_add(1);
                self.last_error = Some(error.clone());
            }
        }
        self
    }
}

/// What became of a fired timer, for [`ReactorStore::finish`](crate::reactor::ReactorStore::finish).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerOutcome {
    /// Its command ran (or had run: a replay).
    Fired,
    /// Its command failed; try again at `due`. Counts an attempt.
    Retry {
        /// When to try again.
        due: DateTime<Utc>,
        /// What failed.
        error: String,
    },
    /// Its command failed for the last time: the timer waits for an
    /// operator. Counts an attempt.
    Failed {
        /// What failed.
        error: String,
    },
}

//! Following the store live: [`Subscribe`] for [`Store`], the shared
//! `LISTEN` connection, the debounced `NOTIFY` after appends, and the
//! warning when a long transaction holds the safe frontier back.
//!
//! `NOTIFY` is a doorbell, never a data path: followers always read the
//! table by cursor, cut at the safe frontier, and poll at a bounded interval
//! in case a notification is missed. See
//! `docs/adr/0005-postgres-subscriptions.md`.

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::store::{EventFilter, StoredEvent, TextId};
use sourcery_core::subscription::{self, CommitNotifier, CommitSignal, Subscribe};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{Notify, watch};

use crate::schema::{Schema, fnv1a};
use crate::{Error, FrontierBlocker, Store};

/// How a [`Store`] wakes its subscribers; set with
/// [`Store::with_subscription_options`].
///
/// ```
/// use std::time::Duration;
/// use sourcery_postgres::SubscriptionOptions;
///
/// let options = SubscriptionOptions::default()
///     .poll_interval(Duration::from_millis(250))
///     .warn_on_stall_after(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    poll_interval: Duration,
    notify: bool,
    listen: bool,
    coalesce: Duration,
    stall_warning: Duration,
}

impl Default for SubscriptionOptions {
    /// Poll every 500 ms, notify other processes with at most one `NOTIFY`
    /// per 2 ms, listen, warn after 5 s of a frontier held back.
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            notify: true,
            listen: true,
            coalesce: Duration::from_millis(2),
            stall_warning: Duration::from_secs(5),
        }
    }
}

impl SubscriptionOptions {
    /// How often a waiting subscriber reads the store even without a
    /// notification: the latency bound when a notification is lost (a
    /// reconnect, a writer that does not notify). Default 500 ms; at least
    /// 1 ms.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Whether the store sends a `NOTIFY` after its own appends, so that
    /// subscribers in other processes wake at once (default `true`).
    /// Subscribers of the same store value (and its clones) are woken in
    /// process either way.
    ///
    /// Even when enabled, no `NOTIFY` is sent while no other store listens
    /// on the schema: every store's `LISTEN` connection holds a shared
    /// advisory lock, which the store looks for before it notifies (at most
    /// every 50 ms while it finds none, every second while it does). A
    /// subscriber that starts in another process may so wait up to 50 ms
    /// for its first wake-up.
    #[must_use]
    pub fn notify_other_processes(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// Whether the store's subscribers `LISTEN` for other processes'
    /// appends (default `true`). Without it they see those after at most
    /// one [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// The shortest time between two `NOTIFY`s of this store: appends in
    /// between share one (default 2 ms). It bounds the notifications per
    /// second whatever the append rate, at the cost of up to this much
    /// latency for subscribers in other processes.
    #[must_use]
    pub fn coalesce_notifications(mut self, window: Duration) -> Self {
        self.coalesce = window;
        self
    }

    /// After how long a subscriber held at the same frontier by a running
    /// transaction logs a warning naming it (default 5 s). Warnings repeat
    /// at most once per this interval per store.
    #[must_use]
    pub fn warn_on_stall_after(mut self, threshold: Duration) -> Self {
        self.stall_warning = threshold.max(Duration::from_millis(1));
        self
    }
}

/// Distinguishes this process's stores in `NOTIFY` payloads.
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

/// What a store and its clones share for subscriptions.
pub(crate) struct Live {
    options: SubscriptionOptions,
    /// `sourcery_<hash of the schema>`: short enough for any schema name.
    channel: String,
    /// This store's `NOTIFY` payload; its own notifications are not
    /// delivered twice.
    token: String,
    notifier: CommitNotifier,
    /// The key of the shared advisory lock every `LISTEN` connection holds.
    listener_lock: i64,
    /// The backend of this store's own `LISTEN` connection (0: none yet),
    /// which needs no `NOTIFY` from this store.
    own_listener: Arc<AtomicI32>,
    listening: OnceLock<()>,
    ringing: OnceLock<()>,
    doorbell: Arc<Notify>,
    /// Dropped with the last clone of the store: the background tasks end.
    shutdown: watch::Sender<()>,
    stall: Mutex<Stall>,
}

/// When the frontier last moved, and when blockers were last looked up.
struct Stall {
    head: Option<i64>,
    since: Instant,
    checked: Option<Instant>,
    /// The oldest transaction found holding the frontier at `head`.
    blocker: Option<subscription::Stall>,
}

impl Live {
    /// The `LISTEN`/`NOTIFY` channel of the store's schema.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn new(schema: &Schema, options: SubscriptionOptions) -> Self {
        Self {
            options,
            channel: channel_name(schema.name()),
            token: format!(
                "{}:{}",
                std::process::id(),
                NEXT_STORE.fetch_add(1, Ordering::Relaxed)
            ),
            notifier: CommitNotifier::new(),
            listener_lock: schema.listener_lock(),
            own_listener: Arc::new(AtomicI32::new(0)),
            listening: OnceLock::new(),
            ringing: OnceLock::new(),
            doorbell: Arc::new(Notify::new()),
            shutdown: watch::Sender::new(()),
            stall: Mutex::new(Stall {
                head: None,
                since: Instant::now(),
                checked: None,
                blocker: None,
            }),
        }
    }

    /// After a successful append: wake this process's subscribers now, and
    /// ring the doorbell for other processes (coalesced, off the append's
    /// path).
    pub(crate) fn appended(&self, pool: &PgPool) {
        self.notifier.notify();
        if !self.options.notify {
            return;
        }
        if self.ringing.get().is_none() && tokio::runtime::Handle::try_current().is_ok() {
            self.ringing.get_or_init(|| {
                let bell = Bell {
                    pool: pool.clone(),
                    channel: self.channel.clone(),
                    token: self.token.clone(),
                    listener_lock: self.listener_lock,
                    own_listener: Arc::clone(&self.own_listener),
                    coalesce: self.options.coalesce,
                };
                tokio::spawn(ring(bell, Arc::clone(&self.doorbell), self.shutdown.subscribe()));
            });
        }
        self.doorbell.notify_one();
    }

    /// A signal for one subscriber; starts the shared `LISTEN` connection
    /// on first use (inside a Tokio runtime; without one, subscribers poll).
    fn signal(&self, pool: &PgPool) -> CommitSignal {
        if self.options.listen
            && self.listening.get().is_none()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.listening.get_or_init(|| {
                let ear = Ear {
                    channel: self.channel.clone(),
                    token: self.token.clone(),
                    listener_lock: self.listener_lock,
                    own_listener: Arc::clone(&self.own_listener),
                    notifier: self.notifier.clone(),
                };
                tokio::spawn(listen(pool.clone(), ear, self.shutdown.subscribe()));
            });
        }
        self.notifier.signal()
    }

    /// Whether to look up the blockers now: the frontier has not moved for
    /// the threshold, and they were not looked up within it.
    fn stall_check_due(&self, head: Option<i64>) -> bool {
        let now = Instant::now();
        let threshold = self.options.stall_warning;
        let mut stall = self.stall.lock().unwrap_or_else(PoisonError::into_inner);
        if stall.head != head {
            *stall = Stall {
                head,
                since: now,
                checked: None,
                blocker: None,
            };
            return false;
        }
        let stalled = now.duration_since(stall.since) >= threshold;
        let due = stall
            .checked
            .is_none_or(|checked| now.duration_since(checked) >= threshold);
        if stalled && due {
            stall.checked = Some(now);
        }
        stalled && due
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("options", &self.options)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// The notification channel of a schema's store.
fn channel_name(schema: &str) -> String {
    format!("sourcery_{:016x}", fnv1a(&["sourcery-postgres/channel", schema]))
}

/// Resolves when every clone of the store is gone.
async fn closed(shutdown: &mut watch::Receiver<()>) {
    while shutdown.changed().await.is_ok() {}
}

/// While no other store listens, the doorbell looks again at most this
/// often: a subscriber that just started elsewhere waits at most this long
/// (plus the coalescing window) for its first `NOTIFY`.
const LOOK_AGAIN_WHILE_NOBODY_LISTENS: Duration = Duration::from_millis(50);

/// While other stores listen, the doorbell checks this often whether they
/// still do; in between it notifies without asking.
const LOOK_AGAIN_WHILE_HEARD: Duration = Duration::from_secs(1);

/// What the doorbell task needs.
struct Bell {
    pool: PgPool,
    channel: String,
    token: String,
    listener_lock: i64,
    own_listener: Arc<AtomicI32>,
    coalesce: Duration,
}

impl Bell {
    /// `NOTIFY`, committed asynchronously: `NOTIFY` assigns the doorbell's
    /// transaction an id, and a synchronous commit would wait for a WAL
    /// flush that competes with the appends' own. Losing a doorbell in a
    /// crash is harmless (subscribers poll; the events it announces were
    /// committed, and flushed, by their appends).
    async fn notify(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2), set_config('synchronous_commit', 'off', true)")
            .bind(&self.channel)
            .bind(&self.token)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// `NOTIFY` (as [`notify`](Self::notify)) if another store's `LISTEN`
    /// connection holds the listeners' lock; returns whether one does. One
    /// round trip; without listeners it writes nothing.
    async fn notify_if_listening(&self) -> Result<bool, sqlx::Error> {
        // A bigint advisory key shows in `pg_locks` as its two 32-bit
        // halves, with `objsubid` 1.
        sqlx::query_scalar(
            "SELECT s.listening, \
                    CASE WHEN s.listening THEN pg_notify($1, $2) IS NULL END AS notified, \
                    CASE WHEN s.listening THEN set_config('synchronous_commit', 'off', true) END AS commit_mode \
             FROM (SELECT EXISTS (SELECT FROM pg_catalog.pg_locks l \
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                     AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d \
                                       WHERE d.datname = current_database()) \
                     AND l.classid = (($3::bigint >> 32) & 4294967295)::oid \
                     AND l.objid = ($3::bigint & 4294967295)::oid \
                     AND l.pid <> $4) AS listening) AS s",
        )
        .bind(&self.channel)
        .bind(&self.token)
        .bind(self.listener_lock)
        .bind(self.own_listener.load(Ordering::Acquire))
        .fetch_one(&self.pool)
        .await
    }
}

/// The doorbell: at most one `NOTIFY` per ring and per `coalesce`, and none
/// while no other store listens.
///
/// Every ring that does not follow a recent sighting of a listener asks the
/// server first (the same round trip notifies when one is there), then
/// rests for [`LOOK_AGAIN_WHILE_NOBODY_LISTENS`] if none was: appends in
/// between share the next look. A listener that takes its lock after a look
/// re-reads the store, so it sees every append committed before; appends
/// committed after are covered by the next look.
async fn ring(bell: Bell, doorbell: Arc<Notify>, mut shutdown: watch::Receiver<()>) {
    let mut last_failure: Option<Instant> = None;
    // When a look last found another store listening.
    let mut heard: Option<Instant> = None;
    loop {
        tokio::select! {
            () = closed(&mut shutdown) => return,
            () = doorbell.notified() => {}
        }
        let outcome = if heard.is_some_and(|at| at.elapsed() < LOOK_AGAIN_WHILE_HEARD) {
            bell.notify().await.map(|()| true)
        } else {
            let looked = bell.notify_if_listening().await;
            heard = matches!(looked, Ok(true)).then(Instant::now);
            looked
        };
        let rest = match outcome {
            Ok(true) => bell.coalesce,
            Ok(false) => bell.coalesce.max(LOOK_AGAIN_WHILE_NOBODY_LISTENS),
            Err(error) => {
                heard = None;
                // Subscribers elsewhere fall back to polling; say so, rarely.
                if last_failure.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    last_failure = Some(Instant::now());
                    tracing::warn!(
                        channel = %bell.channel,
                        error = %error,
                        "sourcery-postgres: a NOTIFY after an append failed; subscribers in other processes \
                         see new events after their poll interval"
                    );
                }
                bell.coalesce
            }
        };
        if !rest.is_zero() {
            tokio::select! {
                () = closed(&mut shutdown) => return,
                () = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// What the `LISTEN` task needs.
struct Ear {
    channel: String,
    token: String,
    listener_lock: i64,
    own_listener: Arc<AtomicI32>,
    notifier: CommitNotifier,
}

/// The shared `LISTEN` connection: one per store, on a connection of its
/// own (not the pool's), reconnecting with backoff. Every notification from
/// another store, and every (re)connect, wakes the subscribers.
async fn listen(pool: PgPool, ear: Ear, mut shutdown: watch::Receiver<()>) {
    // A pool of one, so the listener never takes a connection from the
    // application's pool.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let channel = &ear.channel;
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            () = closed(&mut shutdown) => return,
            connected = connect_listener(&own, &ear) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(
                    %channel,
                    error = %error,
                    retry_in = ?backoff,
                    "sourcery-postgres: cannot LISTEN; subscribers poll meanwhile"
                );
                tokio::select! {
                    () = closed(&mut shutdown) => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // Notifications sent while not listening are lost: read again.
        ear.notifier.notify();
        loop {
            let received = tokio::select! {
                () = closed(&mut shutdown) => return,
                received = listener.try_recv() => received,
            };
            let failed = match received {
                Ok(Some(notification)) => {
                    if notification.payload() != ear.token {
                        ear.notifier.notify();
                    }
                    None
                }
                // The connection dropped; `try_recv` reconnects and listens
                // again, but the new session must take the listeners' lock
                // again. Anything sent meanwhile was lost: read again.
                Ok(None) => {
                    ear.own_listener.store(0, Ordering::Release);
                    let announced = tokio::select! {
                        () = closed(&mut shutdown) => return,
                        announced = announce(&mut listener, &ear) => announced,
                    };
                    ear.notifier.notify();
                    announced.err()
                }
                Err(error) => Some(error),
            };
            if let Some(error) = failed {
                ear.own_listener.store(0, Ordering::Release);
                tracing::warn!(
                    %channel,
                    error = %error,
                    "sourcery-postgres: the LISTEN connection failed; reconnecting"
                );
                ear.notifier.notify();
                break;
            }
        }
    }
}

async fn connect_listener(pool: &PgPool, ear: &Ear) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&ear.channel).await?;
    announce(&mut listener, ear).await?;
    Ok(listener)
}

/// Takes the listeners' shared advisory lock on the listener's session
/// (after `LISTEN`: a writer that sees the lock may count on the
/// notification arriving), so that writers' doorbells know someone listens,
/// and records the session's backend as this store's own.
async fn announce(listener: &mut PgListener, ear: &Ear) -> Result<(), sqlx::Error> {
    // The backend first: by the time a writer of this store can see the
    // lock, it knows the lock is its own.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *listener)
        .await?;
    ear.own_listener.store(pid, Ordering::Release);
    sqlx::query("SELECT pg_advisory_lock_shared($1)")
        .bind(ear.listener_lock)
        .execute(listener)
        .await?;
    Ok(())
}

/// Describes blockers for the warning: `pid 4711 (idle in transaction, 6.2 s)`.
fn describe(blockers: &[&FrontierBlocker]) -> String {
    blockers
        .iter()
        .map(|blocker| {
            let who = match (&blocker.pid, &blocker.prepared_as) {
                (Some(pid), _) => format!("pid {pid}"),
                (None, Some(gid)) => format!("prepared transaction {gid:?}"),
                (None, None) => "a transaction".to_owned(),
            };
            let state = blocker.state.as_deref().unwrap_or("state unknown");
            match blocker.running_for {
                Some(age) => format!("{who} ({state}, running for {:.1} s)", age.as_secs_f64()),
                None => format!("{who} ({state})"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl<Id, M> Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Logs a warning when transactions older than the threshold hold the
    /// frontier at `head`.
    async fn warn_if_held_back(&self, head: Option<i64>) {
        let threshold = self.live().options.stall_warning;
        let blockers = match self.frontier_blockers().await {
            Ok(blockers) => blockers,
            Err(error) => {
                tracing::debug!(error = %error, "sourcery-postgres: cannot look up frontier blockers");
                return;
            }
        };
        let old: Vec<&FrontierBlocker> = blockers
            .iter()
            .filter(|blocker| blocker.running_for.is_none_or(|age| age >= threshold))
            .collect();
        let oldest = old
            .iter()
            .max_by_key(|blocker| blocker.running_for)
            .map(|blocker| subscription::Stall::new(blocker.pid, blocker.running_for));
        {
            let mut stall = self.live().stall.lock().unwrap_or_else(PoisonError::into_inner);
            if stall.head == head {
                stall.blocker = oldest;
            }
        }
        if old.is_empty() {
            return;
        }
        let pids: Vec<i32> = old.iter().filter_map(|blocker| blocker.pid).collect();
        tracing::warn!(
            schema = self.schema(),
            frontier = head,
            ?pids,
            "sourcery-postgres: subscribers are held at the safe frontier by {}; \
             end it (COMMIT, ROLLBACK or pg_terminate_backend) to let them advance",
            describe(&old),
        );
    }
}

impl<Id, M> Subscribe for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Changes after this store's own appends (at once) and after other
    /// processes' (through the shared `LISTEN` connection).
    fn commit_signal(&self) -> CommitSignal {
        self.live().signal(self.pool())
    }

    /// [`SubscriptionOptions::poll_interval`]: notifications can be missed.
    fn poll_interval(&self) -> Option<Duration> {
        Some(self.live().options.poll_interval)
    }

    /// The oldest transaction found holding the safe frontier, once it has
    /// not moved for [`SubscriptionOptions::warn_on_stall_after`] (checked
    /// when subscribers read the head); `None` once it moves.
    fn stall(&self) -> Option<subscription::Stall> {
        self.live()
            .stall
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocker
    }

    /// The safe frontier ([`Store::safe_position`]). Warns (rate-limited)
    /// when it has not moved for the configured threshold while running
    /// transactions hold it back.
    async fn head_position(&self) -> Result<Option<i64>, Error> {
        let head = self.safe_position().await?;
        if self.live().stall_check_due(head) {
            self.warn_if_held_back(head).await;
        }
        Ok(head)
    }

    /// The load, always cut at the safe frontier, at most `limit` events.
    async fn load_page<'a>(
        &'a self,
        filters: &'a [EventFilter<Id, i64>],
        limit: usize,
    ) -> Result<Vec<StoredEvent<Id, i64, M>>, Error> {
        self.load(filters, Some(limit), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_any_schema() {
        let long = "x".repeat(63);
        assert!(channel_name(&long).len() < 63);
        assert_ne!(channel_name("a"), channel_name("b"));
    }

    #[test]
    fn a_stall_is_checked_once_per_threshold() {
        let schema = Schema::new("s".to_owned()).unwrap();
        let live = Live::new(
            &schema,
            SubscriptionOptions::default().warn_on_stall_after(Duration::from_millis(1)),
        );
        assert!(!live.stall_check_due(Some(1)), "the frontier moved");
        std::thread::sleep(Duration::from_millis(3));
        assert!(live.stall_check_due(Some(1)));
        assert!(!live.stall_check_due(Some(1)), "checked just now");
        assert!(!live.stall_check_due(Some(2)), "moved again");
    }
}

//! [`Lease`]: one active projection runner per projection, across
//! processes, with a session advisory lock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sourcery_core::checkpoint::Fence;
use sourcery_core::runner;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{oneshot, watch};

use crate::schema::fnv1a;
use crate::{Error, Store};

/// A lease per projection name, held as a session-level
/// `pg_advisory_lock` on a connection of its own (not one of the pool's):
/// for [`ProjectionRunner::with_lease`](sourcery_core::runner::ProjectionRunner::with_lease),
/// so that of several application servers running the same projection only
/// one applies events.
///
/// - [`acquire`](runner::Lease::acquire) opens a connection and tries the
///   lock every [`retry_interval`](Self::retry_interval) (default 500 ms)
///   until it gets it. Dropping the future closes the connection, which
///   releases anything it took.
/// - While held, a background task pings that connection every
///   [`heartbeat`](Self::heartbeat) (default 500 ms, each ping bounded by
///   the same interval). When a ping fails — the connection died, or
///   `pg_terminate_backend` ended it — the guard's
///   [`lost`](runner::LeaseGuard::lost) resolves and the runner stops. The
///   server released the lock with the session, so a standby takes over
///   within its retry interval.
/// - Dropping the guard unlocks and closes the connection.
/// - Each holder gets a [`Fence`]: the lease's generation for the name,
///   counted in the table `sourcery_leases` (created by
///   [`Store::migrate`]), one more than the previous holder's. The runner
///   claims its checkpoint with it, and the [`CheckpointStore`](crate::CheckpointStore)
///   refuses the saves of any lower fence: an old holder that has not
///   noticed its loss yet (a paused process, a thread blocked in `apply`)
///   cannot move the checkpoint, nor commit a transactional projection.
/// - The connection, its retries and its heartbeat live on a thread of
///   their own (one per lease taken or waited for), so the lease is watched
///   even when every worker of the application's runtime is blocked.
///
/// **What is applied twice.** A projection held in memory resumes from the
/// last saved checkpoint under its new holder, so events the old holder
/// applied after it are applied again (there): apply idempotently, or use
/// a transactional projection, whose writes commit with the checkpoint.
/// An old holder whose connection is killed rather than closed may go on
/// applying events to its own memory for up to one heartbeat before it
/// notices; none of its checkpoints land after the takeover. The lease
/// moves within the retry interval; a transactional read model's standby
/// may then still wait for row locks a paused old holder took in its
/// unfinished batch, until PostgreSQL ends that session (see
/// [`ReadModel::idle_in_transaction_timeout`](crate::ReadModel::idle_in_transaction_timeout)).
///
/// The key is derived from the store's schema and the projection name, so
/// the same projection in two schemas is two leases.
///
/// ```no_run
/// use sourcery_postgres::{Lease, Store};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Store = Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// let lease = Lease::new(&store);
/// // ProjectionRunner::new(store.clone(), checkpoints).with_lease(lease).start(projection)?;
/// println!("held by backend {:?}", lease.holder("revenue").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Lease {
    pool: PgPool,
    options: Arc<PgConnectOptions>,
    schema: Arc<str>,
    retry: Duration,
    heartbeat: Duration,
}

impl Lease {
    /// Leases in `store`'s schema, connecting like its pool.
    #[must_use]
    pub fn new<Id, M>(store: &Store<Id, M>) -> Self {
        Self {
            pool: store.pool().clone(),
            options: store.pool().connect_options(),
            schema: Arc::from(store.schema()),
            retry: Duration::from_millis(500),
            heartbeat: Duration::from_millis(500),
        }
    }

    /// How often a waiting runner tries to take the lease (default 500 ms,
    /// at least 1 ms): the bound on how long a takeover takes after the
    /// holder is gone.
    #[must_use]
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry = interval.max(Duration::from_millis(1));
        self
    }

    /// How often the holder checks its connection (default 500 ms, at least
    /// 1 ms): the bound on how long it goes on after losing the lease.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(1));
        self
    }

    /// The advisory lock key of the lease `name`.
    #[must_use]
    pub fn key(&self, name: &str) -> i64 {
        i64::from_ne_bytes(fnv1a(&["sourcery-postgres/lease", &self.schema, name]).to_ne_bytes())
    }

    /// The process id of the backend holding the lease `name`, if any
    /// (`pg_terminate_backend` it to force a takeover).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database fails.
    pub async fn holder(&self, name: &str) -> Result<Option<i32>, Error> {
        let key = u64::from_ne_bytes(self.key(name).to_ne_bytes());
        let high = i64::from(u32::try_from(key >> 32).unwrap_or(u32::MAX));
        let low = i64::from(u32::try_from(key & 0xffff_ffff).unwrap_or(u32::MAX));
        let pid = sqlx::query_scalar(
            "SELECT pid FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
               AND classid = $1::bigint::oid AND objid = $2::bigint::oid \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(high)
        .bind(low)
        .fetch_optional(&self.pool)
        .await?;
        Ok(pid)
    }

    /// Takes the lease `name` on a thread of its own: the lease's
    /// connection, its retries and its heartbeat run there, on a
    /// current-thread runtime, so they go on whatever the caller's runtime
    /// does (an `apply` that blocks its worker thread included).
    async fn take(&self, name: &str) -> Result<LeaseGuard, Error> {
        let (taken, taking) = oneshot::channel();
        let (lost_sender, lost) = watch::channel(false);
        let (release, released) = oneshot::channel();
        let holder = Holder {
            options: Arc::clone(&self.options),
            generations: format!("\"{}\".sourcery_leases", self.schema),
            schema: Arc::clone(&self.schema),
            key: self.key(name),
            name: name.to_owned(),
            retry: self.retry,
            heartbeat: self.heartbeat,
        };
        std::thread::Builder::new()
            .name("sourcery-lease".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(runtime) => runtime.block_on(holder.hold(taken, lost_sender, released)),
                    Err(error) => drop(taken.send(Err(Error::LeaseThread(error)))),
                }
            })
            .map_err(Error::LeaseThread)?;
        let (pid, fence) = taking.await.map_err(|_| Error::Unexpected {
            detail: "the thread holding a lease ended before taking it",
        })??;
        Ok(LeaseGuard {
            name: name.to_owned(),
            pid,
            fence,
            lost,
            _release: release,
        })
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::Lease")
            .field("schema", &self.schema)
            .field("retry_interval", &self.retry)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl runner::Lease for Lease {
    type Guard = LeaseGuard;
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::Database`] when the connection cannot be opened or fails
    /// while waiting.
    async fn acquire<'a>(&'a self, name: &'a str) -> Result<LeaseGuard, Error> {
        self.take(name).await
    }
}

/// A held [`Lease`]: the lock lives as long as this guard and its
/// connection.
pub struct LeaseGuard {
    name: String,
    pid: i32,
    fence: Fence,
    lost: watch::Receiver<bool>,
    /// Dropped with the guard: the watchdog unlocks and closes.
    _release: oneshot::Sender<()>,
}

impl LeaseGuard {
    /// The process id of the backend that holds the lock.
    #[must_use]
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the lease has been lost: its connection failed a ping, or
    /// its thread is gone.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow() || self.lost.has_changed().is_err()
    }

    /// The fencing token of this holder: the lease's generation, one more
    /// than the previous holder's.
    #[must_use]
    pub fn fence(&self) -> Fence {
        self.fence
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("postgres::LeaseGuard")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("fence", &self.fence)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl runner::LeaseGuard for LeaseGuard {
    /// Resolves once the connection holding the lock failed a ping.
    /// Cancel-safe: it only watches a channel.
    async fn lost(&mut self) {
        // An error means the watchdog is gone: the lease is gone with it.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    fn is_lost(&self) -> bool {
        LeaseGuard::is_lost(self)
    }

    /// The lease's generation, counted in `sourcery_leases`.
    fn fence(&self) -> Option<Fence> {
        Some(self.fence)
    }
}

/// What the lease's thread needs to take and hold it.
struct Holder {
    options: Arc<PgConnectOptions>,
    /// The quoted `sourcery_leases` table.
    generations: String,
    schema: Arc<str>,
    key: i64,
    name: String,
    retry: Duration,
    heartbeat: Duration,
}

impl Holder {
    /// Takes the lock, counts a generation, reports both on `taken`, then
    /// watches the connection until the guard is dropped or a ping fails.
    async fn hold(
        self,
        mut taken: oneshot::Sender<Result<(i32, Fence), Error>>,
        lost: watch::Sender<bool>,
        released: oneshot::Receiver<()>,
    ) {
        let connection = tokio::select! {
            // The caller gave up waiting: dropping the connection releases
            // anything it took.
            () = taken.closed() => return,
            locked = self.lock() => locked,
        };
        match connection {
            Err(error) => drop(taken.send(Err(error))),
            Ok((connection, pid, fence)) => {
                if taken.send(Ok((pid, fence))).is_ok() {
                    self.watch(connection, lost, released).await;
                }
            }
        }
    }

    /// Connects, waits for the advisory lock and counts the new holder's
    /// generation.
    async fn lock(&self) -> Result<(PgConnection, i32, Fence), Error> {
        let mut connection = self.options.connect().await?;
        loop {
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut connection)
                .await?;
            if taken {
                break;
            }
            tokio::time::sleep(self.retry).await;
        }
        let (pid, generation): (i32, i64) = sqlx::query_as(&format!(
            "INSERT INTO {} AS lease (name, generation, holder) VALUES ($1, 1, pg_backend_pid()) \
             ON CONFLICT (name) DO UPDATE \
             SET generation = lease.generation + 1, holder = EXCLUDED.holder, acquired_at = now() \
             RETURNING holder, generation",
            self.generations
        ))
        .bind(&self.name)
        .fetch_one(&mut connection)
        .await
        .map_err(|error| {
            let missing = error
                .as_database_error()
                .and_then(sqlx::error::DatabaseError::code)
                .is_some_and(|code| matches!(code.as_ref(), "42P01" | "3F000"));
            if missing {
                Error::NotMigrated {
                    schema: self.schema.to_string(),
                    source: error,
                }
            } else {
                Error::Database(error)
            }
        })?;
        Ok((connection, pid, Fence::new(generation.cast_unsigned())))
    }

    /// Owns the lease's connection: pings it every `heartbeat`, reports a
    /// failed ping as lost, unlocks and closes when the guard is dropped.
    async fn watch(
        &self,
        mut connection: PgConnection,
        lost: watch::Sender<bool>,
        mut released: oneshot::Receiver<()>,
    ) {
        let heartbeat = self.heartbeat;
        loop {
            tokio::select! {
                _ = &mut released => {
                    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut connection);
                    let _ = tokio::time::timeout(heartbeat, unlock).await;
                    let _ = tokio::time::timeout(heartbeat, connection.close()).await;
                    return;
                }
                () = tokio::time::sleep(heartbeat) => {}
            }
            let alive = tokio::time::timeout(heartbeat, connection.ping()).await;
            if !matches!(alive, Ok(Ok(()))) {
                tracing::warn!(
                    lease = %self.name,
                    "sourcery-postgres: the connection holding the lease failed; the lease is lost"
                );
                lost.send_replace(true);
                return;
            }
        }
    }
}

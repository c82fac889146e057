//! The threads that own the store's SQLite connections.
//!
//! SQLite calls block, so they never run on the async runtime's threads: each
//! connection lives on a thread of its own, and the async methods send it a
//! job and await the reply on a oneshot channel. That keeps the store's
//! futures `Send` and independent of any particular runtime.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc as mpsc_async, oneshot};

use crate::Error;

/// Work for a connection's thread. It gets the connection and the path the
/// store was opened on (for error messages).
type Job = Box<dyn FnOnce(&mut Connection, &Path) + Send>;

/// A queue of jobs served by one or more threads, each with its own
/// connection. Cloning shares the queue; the threads stop when the last clone
/// is dropped (after the jobs already queued).
#[derive(Clone)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts `threads` threads named `name-N`; each opens its connection
    /// with `open`. Returns once every connection is open, or with the first
    /// error (and then the threads that did open stop).
    pub(crate) async fn start<F>(name: &str, threads: usize, path: Arc<Path>, open: F) -> Result<Self, Error>
    where
        F: Fn(&Path) -> Result<Connection, Error> + Send + Sync + 'static,
    {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let open = Arc::new(open);
        let mut opened = Vec::with_capacity(threads);
        for index in 0..threads {
            let (ready, is_ready) = oneshot::channel();
            let queue = Arc::clone(&queue);
            let open = Arc::clone(&open);
            let path = Arc::clone(&path);
            thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || serve(&path, &*open, &queue, ready))
                .map_err(Error::Thread)?;
            opened.push(is_ready);
        }
        for is_ready in opened {
            is_ready.await.map_err(|_| Error::Stopped)??;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on one of the worker's connections and returns its result.
    ///
    /// The job is queued when the future is first polled. Once queued it runs
    /// to its end even if the future is dropped (an append then commits, and
    /// its result is lost).
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move |connection, path| {
                // The caller may have gone; the job's effects stand either way.
                let _ = reply.send(job(connection, path));
            }))
            .map_err(|_| Error::Stopped)?;
        result.await.map_err(|_| Error::Stopped)
    }

    /// Queues `job` for one of the worker's connections, without waiting
    /// for it.
    pub(crate) fn queue<F>(&self, job: F) -> Result<(), Error>
    where
        F: FnOnce(&mut Connection, &Path) + Send + 'static,
    {
        self.jobs.send(Box::new(job)).map_err(|_| Error::Stopped)
    }

    /// Runs `job` on one of the worker's connections; the job sends its
    /// results piece by piece on the channel it is given, and the caller can
    /// use each piece while the job makes the next. The job is queued at
    /// once; it sees the channel closed if the receiver is dropped. A job that
    /// panics drops its sender: the receiver then ends without the job's
    /// last piece.
    pub(crate) fn stream<T, F>(&self, job: F) -> Result<mpsc_async::UnboundedReceiver<T>, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path, &mpsc_async::UnboundedSender<T>) + Send + 'static,
    {
        let (sender, receiver) = mpsc_async::unbounded_channel();
        self.jobs
            .send(Box::new(move |connection, path| job(connection, path, &sender)))
            .map_err(|_| Error::Stopped)?;
        Ok(receiver)
    }
}

/// A connection thread: open, report, then serve jobs until the queue closes.
fn serve(
    path: &Path,
    open: &(dyn Fn(&Path) -> Result<Connection, Error> + Send + Sync),
    queue: &Mutex<mpsc::Receiver<Job>>,
    ready: oneshot::Sender<Result<(), Error>>,
) {
    let mut connection = match open(path) {
        Ok(connection) => connection,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    loop {
        let Some(job) = next_job(queue) else {
            // Every sender is gone: the store was dropped.
            return;
        };
        // A job that panics drops its reply sender, so its caller gets
        // `Error::Stopped`; an open transaction rolls back as it unwinds, and
        // the connection serves the next job.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| job(&mut connection, path)));
    }
}

/// How long a connection's thread keeps looking for its next job before it
/// sleeps.
///
/// Waking a sleeping thread costs about 20-25 µs on our 2-vCPU machines,
/// more than a third of a 10-event append at `synchronous=NORMAL`. A caller
/// appending batch after batch sends the next job within a few
/// microseconds of receiving its reply (plus its own wake-up, ~25 µs): a
/// thread still looking finds it at once. An idle store's threads look for
/// this long after each job, then sleep.
const LOOK_FOR: Duration = Duration::from_micros(150);

/// Takes the next job: looks for one for [`LOOK_FOR`], then sleeps until one
/// comes. `None` once every sender is gone.
///
/// The thread holds the queue's lock while it looks and sleeps, and lets go
/// as soon as it has a job: the other threads of a pool wait for the lock,
/// and the next of them takes the next job while this one runs.
fn next_job(queue: &Mutex<mpsc::Receiver<Job>>) -> Option<Job> {
    let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    let start = Instant::now();
    loop {
        match queue.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= LOOK_FOR {
            return queue.recv().ok();
        }
        std::hint::spin_loop();
    }
}

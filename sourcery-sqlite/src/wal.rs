//! Checkpointing the write-ahead log off the append path.
//!
//! In WAL mode, commits append pages to the `-wal` file and a *checkpoint*
//! copies them back into the database file (flushing both at
//! `synchronous=NORMAL` and `FULL`). SQLite runs one inside the commit that
//! takes the log past 1,000 pages: measured with hand-written rusqlite code,
//! that costs 10-event appends about a third of their time at `NORMAL`
//! (~115 µs a batch with it, ~78 µs without), paid by one caller in ~250.
//! A checkpoint may only start the log over from its beginning once it has
//! copied all of it.
//!
//! At `synchronous=NORMAL`, the store checkpoints on a thread and connection
//! of its own instead, queued after about as much has been committed through
//! it; appends go on meanwhile (a `PASSIVE` checkpoint blocks neither the
//! writer nor readers). The writer keeps SQLite's own checkpoint with a higher
//! threshold ([`WRITER_AUTOCHECKPOINT`]) as a backstop: under appends that
//! never pause, a background checkpoint never finds the log fully copied
//! (the writer has added to it meanwhile), so the log could not start over
//! from its beginning; the writer's checkpoint copies what is left and lets
//! it. Other processes on the file checkpoint as SQLite does by default.
//!
//! At `FULL`, every commit flushes the log already, and a checkpoint
//! flushing the database file meanwhile delays those flushes: appends
//! measured slower with the background checkpoint (0.82-0.83 × the
//! hand-written baseline) than with SQLite's own (0.87-0.93), so the store
//! leaves SQLite's in place there.
//!
//! A checkpoint changes no data and never loses a commit: where it runs
//! changes only when the database file catches up with the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::worker::Worker;

/// The writer's own automatic checkpoint, in pages (SQLite's default is
/// 1,000).
pub(crate) const WRITER_AUTOCHECKPOINT: u32 = 4_000;

/// Queue a checkpoint after about this many pages of log: SQLite's own
/// threshold.
const QUEUE_AFTER: usize = 1_000;

/// Pages a commit adds to the log besides its events' own: the table page
/// and the two indexes' pages it ends on, and their parents now and then
/// (measured: 10 events of ~330 bytes add 4-5 pages, 10 of ~1 KB add 10).
const PER_COMMIT: usize = 4;

/// Bytes of events per page of log: pages are 4 KiB, partly filled.
const BYTES_PER_PAGE: usize = 3_200;

/// The store's checkpointing thread and when to use it.
pub(crate) struct Checkpoints {
    worker: Worker,
    /// A checkpoint is queued or running: don't queue another.
    busy: Arc<AtomicBool>,
    /// Roughly how many pages have been added to the log since the last
    /// checkpoint was queued.
    logged: AtomicUsize,
}

impl Checkpoints {
    pub(crate) fn new(worker: Worker) -> Self {
        Self {
            worker,
            busy: Arc::new(AtomicBool::new(false)),
            logged: AtomicUsize::new(0),
        }
    }

    /// Counts a commit of `bytes` of events; queues a checkpoint when the
    /// log has grown enough and none is queued or running.
    pub(crate) fn committed(&self, bytes: usize) {
        let added = PER_COMMIT.saturating_add(bytes.div_ceil(BYTES_PER_PAGE));
        let logged = self
            .logged
            .fetch_add(added, Ordering::Relaxed)
            .saturating_add(added);
        if logged < QUEUE_AFTER || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.logged.store(0, Ordering::Relaxed);
        let done = Done(Arc::clone(&self.busy));
        // If the thread is gone, the writer's own checkpoint still runs.
        let _ = self.worker.queue(move |connection, _| {
            let _done = done;
            // Failures (a lock held by another process's checkpoint) leave
            // the work to the next checkpoint.
            let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        });
    }
}

/// Clears the busy flag when the checkpoint job ends, even if it panics or
/// is dropped unrun.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

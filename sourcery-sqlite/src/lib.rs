//! The embedded SQLite event store for Sourcery: durable events in one file,
//! no server, nothing to install (SQLite is compiled in).
//!
//! [`Store`] implements the store contract
//! ([`EventStore`](sourcery_core::store::EventStore)) and passes its
//! conformance suite; it is also
//! [`GloballyOrdered`](sourcery_core::store::GloballyOrdered) and can be
//! followed live ([`Subscribe`](sourcery_core::subscription::Subscribe)).
//! The same file keeps projection checkpoints ([`Store::checkpoints`], a
//! [`CheckpointStore`]), snapshots ([`Store::snapshots`], a
//! [`SnapshotStore`]) and reactors' timers and dead letters
//! ([`Store::reactors`], a [`ReactorStore`]).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Optimistic;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore};
//! use sourcery_sqlite::Store;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct FundsDeposited {
//!     amount: u64,
//! }
//!
//! impl DomainEvent for FundsDeposited {
//!     const KIND: &'static str = "account.deposited";
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("events.db");
//!
//! // Created if missing; its schema migrated.
//! let store: Store<String, ()> = Store::open(&path).await?;
//! let mut tx = store.begin::<Optimistic>("account", "ACC-001".to_string(), None);
//! tx.append(FundsDeposited { amount: 100 }, ())?;
//! tx.commit().await?;
//! drop(store);
//!
//! // The events are in the file.
//! let store: Store<String, ()> = Store::open(&path).await?;
//! let filter = EventFilter::for_aggregate("account.deposited", "account", "ACC-001".to_string());
//! let events = store.load_events(&[filter]).await?;
//! let deposit: FundsDeposited = events[0].decode(store.codec())?;
//! assert_eq!(deposit, FundsDeposited { amount: 100 });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Durability
//!
//! The database runs in WAL mode. By default every commit is flushed to disk
//! before it is reported (`synchronous=FULL`): a committed batch survives the
//! process being killed, an operating system crash and a power loss.
//! [`Synchronous::Normal`] (through [`OpenOptions`]) keeps the first
//! guarantee only and makes appends faster. Either way a batch is one SQLite
//! transaction: after a crash it is all there or not there at all, and the
//! file opens cleanly (a test kills a writing process 50 times to check it),
//! and a retry of a batch whose outcome was lost is safe (see "Idempotent
//! appends").
//!
//! # Concurrency and order
//!
//! One connection writes, on a thread of its own; each append takes SQLite's
//! write lock up front (`BEGIN IMMEDIATE`), reads the stream's version and
//! inserts the batch in the same transaction, so the optimistic check and the
//! write are atomic, also against other processes using the same file (they
//! wait up to the [busy timeout](OpenOptions::busy_timeout); so do processes
//! opening the file at the same moment, while one of them switches it to
//! WAL and migrates it). Positions
//! (`i64`, from 1) are assigned under that lock, so they rise in commit order
//! and a reader that has seen position `p` never sees an event at or below
//! `p` appear later: the store is `GloballyOrdered`.
//!
//! A position is the row id SQLite gives the new row: the highest position
//! plus one, found inside the write transaction (the table has no
//! AUTOINCREMENT, which would write a counter row to `sqlite_sequence` in
//! every commit). The store never deletes an event, so that is never a
//! position handed out before. The one way to have a position handed out
//! again is to delete the newest rows of `sourcery_events` by hand: the
//! next append would reuse their positions, which checkpoints and
//! subscriptions may have passed already. Do not.
//!
//! Reads run on a pool of reader connections, each on its own thread; in WAL
//! mode they read a consistent snapshot while the writer writes, so a reader
//! never sees part of a batch. The async methods only send work to these
//! threads and await the reply: they never block the runtime's threads, their
//! futures are `Send`, and they work on any async runtime. A load's rows come
//! back in parts of a few hundred kilobytes, and the caller's task builds the
//! events of one part while the reader thread reads the next.
//!
//! After each job a thread looks for the next one for 150 µs before it
//! sleeps (waking a sleeping thread took ~23 µs on our machines): a store
//! under steady load hands work over without that wake-up, an idle one costs
//! 150 µs of one core after its last job. At `synchronous=NORMAL` a third
//! thread checkpoints the write-ahead log (copies it into the database file)
//! with a connection of its own, so that no append pays for it; at `FULL`
//! SQLite checkpoints as usual, inside the commit that fills the log.
//!
//! # Idempotent appends
//!
//! Every event keeps the id its writer chose
//! ([`PersistableEvent::id`](sourcery_core::store::PersistableEvent::id)),
//! unique in the file. A batch whose ids are all stored already, in its
//! stream and in its order, is a replay: the append writes nothing and
//! returns the first one's last position, with
//! [`replayed`](sourcery_core::store::AppendResult::replayed) set, whatever
//! version it expected. A batch that reuses stored ids otherwise (some but
//! not all, another stream's, another order) is refused with
//! [`AppendError::IdReused`](sourcery_core::store::AppendError::IdReused),
//! nothing written. So an append whose outcome was lost (the process killed,
//! the future dropped, [`Error::Stopped`]) can always be retried with the
//! same ids: a test kills a writing process 30 times and retries the batch
//! it had in flight, which is replayed when it had landed and written when
//! it had not.
//!
//! ```
//! use sourcery_core::store::{EventStore, NonEmpty, PersistableEvent};
//! use sourcery_sqlite::Store;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store: Store<String, ()> = Store::open_in_memory().await?;
//! let account = "ACC-001".to_string();
//! let batch = NonEmpty::new(PersistableEvent::new("account.opened", b"{}".to_vec(), ()));
//!
//! let first = store.append_expecting_new("account", &account, batch.clone()).await?;
//! // Say its acknowledgement was lost: the same batch (the same ids) again
//! // is not a conflict with its own write, but the first outcome.
//! let retry = store.append_expecting_new("account", &account, batch).await?;
//! assert!(retry.replayed);
//! assert_eq!(retry.last_position, first.last_position);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The ids are kept in the column `event_id` (the UUID's 16 bytes) under the
//! unique index `sourcery_events_event_id`. The writer looks a batch's ids
//! up only when they may be stored, under the write lock of the append:
//!
//! - when the stream is not as expected, before reporting the conflict (the
//!   retry of an optimistic append finds the stream moved by its own first
//!   attempt);
//! - when an insert violates a unique index (SQLite's
//!   `SQLITE_CONSTRAINT_UNIQUE`): the transaction rolls back, then the ids
//!   are looked up. If none is stored, the violation was of an index the
//!   application added, and the append fails with that error.
//!
//! An append whose inserts all succeed reused no id, since the index checked
//! each as it went in. Looking every batch's ids up before inserting would
//! have the index do that work twice. In a harness of raw rusqlite
//! (10-event batches of ~250-byte events on 100 streams, WAL,
//! `synchronous=NORMAL`; CPU time of the SQLite work, one process per
//! variant, three to six runs each), a batch cost 74–77 µs without ids, 75–81 µs
//! with the `event_id` column alone, 88–95 µs with its unique index (+18%),
//! and 94–102 µs when one `SELECT ... WHERE event_id IN (...)` for the
//! batch's ids ran before the inserts (+28%; a `SELECT` per id, 96–101 µs).
//! The index is the price of the rule; the lookup would add ~8 µs more, so
//! the store does without it.
//!
//! What the ids cost a whole append: the index adds ~1.9 pages to what a
//! 10-event commit writes to the log, and the position no longer being
//! AUTOINCREMENT (see "Schema") saves the page of its `sqlite_sequence`
//! row, so a commit writes 10.6 pages instead of 9.7 before ids (counted
//! with raw SQLite, the same rows). `benches/paired.rs` built before ids
//! and as it is now, run in turn 16 times (`ROUNDS=15`; 1-minute load
//! average 0.3–2.0 before each run, mostly the benchmark's own threads,
//! nothing else running; in 6 of them the order alternated and the disk was
//! synced before each run): the store's time per append, medians of the
//! runs:
//!
//! | synchronous | append | before ids | now | throughput, now ÷ before |
//! |---|---|---|---|---|
//! | FULL | unchecked | 279.3 µs | 295.6 µs | −5.5% |
//! | FULL | optimistic | 276.5 µs | 295.8 µs | −6.5% |
//! | NORMAL | unchecked | 125.2 µs | 149.2 µs | −16% |
//! | NORMAL | optimistic | 128.8 µs | 142.9 µs | −10% |
//!
//! In 5 of those passes a third build ran between the two, with ids on an
//! AUTOINCREMENT position (the first version of migration 5): 303.1 and
//! 312.0 µs at `FULL`, 161.8 and 155.5 µs at `NORMAL`, where the build
//! before ids took 283.0, 280.6, 109.2 and 127.5 µs. At `FULL` the `fsync`
//! of each commit dominates and the ids cost 5–7%; at `NORMAL` 15–25 µs a
//! batch, 10–16%, though those runs spread widely (111–166 µs for one
//! variant of one build).
//!
//! [`EventStore::event_positions`](sourcery_core::store::EventStore::event_positions)
//! is one statement on a reader connection through the same index, and
//! [`EventStore::append_expecting_existing`](sourcery_core::store::EventStore::append_expecting_existing)
//! checks the whole batch on the caller's task, then reads the version and
//! writes in one trip to the writer and one transaction.
//!
//! # Subscriptions
//!
//! `store.subscribe(filters, from)` yields the history after `from`, then
//! each event as it commits. A commit through the store (any clone of it)
//! wakes its subscriptions at once. Commits by another process on the same
//! file (or by another `Store` opened on it) ring no bell here: waiting
//! subscriptions also read the file every
//! [`poll_interval`](OpenOptions::poll_interval), one second by default, so
//! they see such events within that. Set it to `None` only when nothing else
//! writes the file. Subscriptions read by cursor and positions rise in
//! commit order (above), so a wake-up missed or spurious costs latency,
//! never an event.
//!
//! # Checkpoints and snapshots
//!
//! [`Store::checkpoints`] gives the
//! [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner) its
//! checkpoint store, [`Store::snapshots`] a repository its snapshot store,
//! both in the same file and through the same threads (saves go through the
//! writer, in transactions of their own). A snapshot save is one upsert that
//! only replaces an older position, so racing saves keep the newest.
//!
//! # Read models
//!
//! A [`ReadModel`] is a [`SqlProjection`] whose [`ApplySql`] handlers write
//! tables with plain SQL in the write transaction that also advances its
//! checkpoint (with the lease's fence, when the runner has one), one
//! `IMMEDIATE` transaction per batch of events, on the store's writer
//! thread: every event's effect is applied exactly once, whatever crashes
//! when. Run it with a
//! [`ReadModelRunner`](sourcery_core::runner::ReadModelRunner). Each
//! version of a projection writes its own tables (`<table>_v<n>`); readers
//! query the view `<table>`, switched to a new version in one transaction
//! once it has caught up. In the events' file a batch holds the write lock
//! as an append does; a read model in another file (built from a store
//! opened on it) does not delay appends.
//!
//! # Reactors
//!
//! [`Store::reactors`] gives a
//! [`ReactorRunner`](sourcery_core::reactor::ReactorRunner) (and
//! operators) its
//! [`ReactorStore`](sourcery_core::reactor::ReactorStore): the reactors'
//! scheduled commands (`sourcery_timers`) and the reactions parked after
//! their last failed attempt (`sourcery_dead_letters`, each with a copy of
//! its event), both added by schema version 7, in the same file and
//! through the same threads. Every method is one statement, or one
//! `IMMEDIATE` transaction, so processes sharing the file see each other's
//! changes. Times are kept in whole milliseconds.
//!
//! # Schema
//!
//! Tables are named `sourcery_*` (so the file can hold the application's
//! own tables too) and versioned by the numbered migrations in
//! `migrations/`, applied when the store is opened and recorded in
//! `sourcery_migrations`. A database from a newer version of this crate is
//! refused with [`Error::SchemaTooNew`], a file that is not a database with
//! [`Error::NotADatabase`], a file that cannot be written with
//! [`Error::ReadOnly`]; none of them is touched.
//!
//! Each event is a row of `sourcery_events`: its position (the row id), the
//! stream (`aggregate_kind`, `aggregate_id` as text), `event_kind`,
//! `schema_version` (the version of the event's shape), `data` (BLOB),
//! `metadata` (JSON text) and `event_id` (a 16-byte BLOB). Two indexes serve
//! the load shapes: one stream in position order (a whole stream, or some of
//! its event kinds), and one event kind after a position. Any set of filters
//! loads with one `SELECT`. The unique index `sourcery_events_event_id`
//! keeps event ids unique and finds them (above).
//!
//! Checkpoints are rows of `sourcery_checkpoints` (`name` → `position`),
//! snapshots rows of `sourcery_snapshots` (`subject`, `kind`, `id` →
//! `position`, `schema_version`, `data`), timers rows of `sourcery_timers`
//! (`id` → `reactor`, `key`, `due`, `command`, `payload`, `cause`, `state`,
//! `attempts`, `last_error`) and dead letters rows of
//! `sourcery_dead_letters` (`reactor`, `position` → the event's columns,
//! `error`, `attempts`, `parked_at`, `retry_requested`). A file written at an older schema
//! version (1: events only; 2: with checkpoints; 3: with snapshots; 4: with
//! event schema versions; 5: with event ids; 6: with fences and read
//! models) gets the missing tables and columns when the store
//! opens it, in one transaction. Its events stay as they are: at schema
//! version 1 if they predate 4, and, if they predate 5, each with the id its
//! metadata names when earlier releases' `EventMetadata` recorded one (the
//! top-level key `event_id`, a UUID that no event at a lower position
//! carries too), otherwise with a random version 4 UUID.
//!
//! Migration 5 rebuilds `sourcery_events` (with the `event_id` column,
//! without AUTOINCREMENT): it creates the new table, copies every row to it
//! at its own position, drops the old one, renames the new one and builds
//! the indexes again under their names. Dropping the old table drops
//! whatever an application added on it: its triggers and its indexes.
//! Create them again after the store has opened the file. (Views on the
//! table are kept: they name it, and it has its name again.) A log of a
//! million events (half with such metadata, a 370 MB file) took 11 s here,
//! under the write lock. Another process opening the file meanwhile waits
//! within its [busy timeout](OpenOptions::busy_timeout) (5 s by
//! default) and fails with [`Error::Busy`] after it: give it more, or open
//! an old file once before the others do.
//!
//! # Performance
//!
//! `benches/store.rs` (criterion) measures the store beside hand-written
//! rusqlite code doing the same work on the same schema (one transaction per
//! batch; one cached `SELECT`), at both durability levels.
//! `benches/paired.rs` runs the same workloads in interleaved pairs: a block
//! of 200 store appends (10 loads), then the same block by hand, the order
//! alternating, 21 rounds; the ratio is the median of the rounds' ratios
//! (hand time ÷ store time: 1.00 = as fast as the hand-written code). Pairs
//! see the same machine conditions, which separate criterion runs do not: on
//! this shared 2-vCPU machine an `fsync` drifts by ±20% within a minute, and
//! criterion's FULL ratios spread 0.78–0.93 over three runs. Two paired
//! runs, quiet machine (times are the first run's medians):
//!
//! | workload | synchronous | store | baseline | ratio (2 paired runs) |
//! |---|---|---|---|---|
//! | append a 10-event batch (unchecked) | FULL | 237.7 µs | 207.1 µs | 0.88, 0.92 |
//! | append a 10-event batch (optimistic) | FULL | 222.5 µs | 207.7 µs | 0.92, 0.98 |
//! | append a 10-event batch (unchecked) | NORMAL | 111.1 µs | 94.6 µs | 0.92, 1.13 |
//! | append a 10-event batch (optimistic) | NORMAL | 102.4 µs | 106.6 µs | 1.15, 1.07 |
//! | load one stream of 10,000 events | FULL | 6.72 ms | 7.70 ms | 1.15, 1.15 |
//! | load one stream of 10,000 events | NORMAL | 6.78 ms | 7.64 ms | 1.14, 1.14 |
//!
//! At `NORMAL` the store checkpoints the WAL on a thread of its own, which
//! may run while the hand-written block runs, so the NORMAL append pairs
//! flatter the store a little; criterion's separate runs gave it 0.91–1.06.
//!
//! These figures predate event ids (schema version 4); what the ids cost
//! an append is under "Idempotent appends".
//!
//! Where the time goes (timed in a throwaway harness, interleaving store and
//! baseline): an append does the same SQLite work as the baseline on the
//! writer thread, plus a hand-off there and back. The way there costs ~1 µs
//! when the writer is still looking for work, ~23 µs when it has to be
//! woken; the way back wakes the caller, ~12–27 µs, and stays: the caller
//! awaits, and waiting without sleeping would block its runtime. At `NORMAL`
//! the store wins that back by checkpointing off the append path (SQLite's
//! checkpoint inside the commits cost the baseline ~37 µs a batch on
//! average); at `FULL` the `fsync` of every commit dominates and varies run
//! to run. A load spends ~5.5 ms reading and
//! copying rows on the reader thread and ~2 ms building events on the
//! caller's, now overlapped; the baseline does both on one thread.
//! `docs/adr/0003-sqlite-driver.md` has the driver comparison (sqlx's SQLite
//! driver ran at 0.15–0.22 on loads).
//!
//! `benches/snapshots.rs` loads an aggregate through a repository after 1k,
//! 10k and 100k events (one stream, `synchronous=FULL`), without a snapshot
//! (every event replayed) and with one taken 10 events before the end (the
//! snapshot row and the 10 events after it). Medians of criterion's
//! estimates, same machine and load as above:
//!
//! | events in the stream | without a snapshot | with a snapshot | with ÷ with at 1k |
//! |---|---|---|---|
//! | 1,000 | 797 µs | 65.6 µs | 1.00 |
//! | 10,000 | 10.7 ms | 57.9 µs | 0.88 |
//! | 100,000 | 108 ms | 71.4 µs | 1.09 |
//!
//! With a snapshot the load stays flat (the tail is read through the stream
//! index after the snapshot's position); without, it grows with the history.

mod append;
mod checkpoint;
mod error;
mod event_id;
mod load;
mod options;
mod reactor;
mod read_model;
mod schema;
mod snapshot;
mod store;
mod subscription;
mod wal;
mod worker;

pub use checkpoint::CheckpointStore;
pub use error::{DatabaseError, Error};
pub use options::{OpenOptions, Synchronous};
pub use reactor::ReactorStore;
pub use read_model::{ApplySql, ReadModel, ReadModelError, SqlEvents, SqlProjection};
pub use snapshot::SnapshotStore;
pub use store::Store;

/// The version of the store's schema that this crate writes: the number of
/// the last file in `migrations/`. A database recorded at a higher version
/// is refused with [`Error::SchemaTooNew`].
pub const SCHEMA_VERSION: i64 = schema::LATEST_VERSION;

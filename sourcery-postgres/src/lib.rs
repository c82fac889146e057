//! The PostgreSQL event store for Sourcery.
//!
//! [`Store`] keeps every stream in one table, `sourcery_events`, in a schema
//! of your choice, and implements [`EventStore`](sourcery_core::store::EventStore)
//! and [`GloballyOrdered`](sourcery_core::store::GloballyOrdered):
//!
//! - **Ids** are stored as text through
//!   [`TextId`](sourcery_core::store::TextId) (`String`, `uuid::Uuid`,
//!   integers, your newtypes with `Display` + `FromStr`); **metadata** is any
//!   serde type, stored as JSONB; **data** is the codec's bytes, as BYTEA;
//!   each event's **schema version** is an `integer` (1 to 2³¹ − 1; events
//!   written before migration 0008 are at 1).
//! - **An append is one round trip**: one plain SQL statement with the
//!   batch as arrays, in its own transaction. The batch is all there or not
//!   at all.
//! - **Every event keeps its id** ([`EventId`](sourcery_core::store::EventId),
//!   chosen by the client) in a `uuid` column with a unique constraint, so a
//!   retry after a lost acknowledgement is recognised and answered with the
//!   first append's outcome instead of being written twice (see
//!   [Event ids and idempotent appends](#event-ids-and-idempotent-appends)).
//! - **Conflicts come from the database.** A unique constraint on
//!   `(aggregate_kind, aggregate_id, stream_sequence)` refuses any second
//!   writer that extends a stream from the same version; the statement also
//!   checks the expected version on its own snapshot first, so a stale
//!   command is refused without drawing positions. A refused append is an
//!   [`AppendError::Conflict`](sourcery_core::store::AppendError::Conflict)
//!   carrying the stream's actual version. An unchecked append (or one
//!   expecting only that the stream exists) that loses that race to a concurrent append of the same stream runs again, queued
//!   on a transaction advisory lock keyed by the stream (up to 64 times, then
//!   [`Error::Contended`]), so the stream stays consistent.
//! - **A load is one statement** for any set of filters, grouped so that
//!   each branch is served by an index, streamed from the server row by row.
//!   A whole stream ([`EventFilter::for_stream`](sourcery_core::store::EventFilter::for_stream),
//!   a repository's load) is one branch without an event kind, read in
//!   position order from the stream index.
//!
//! # Example
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::concurrency::Optimistic;
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::store::{EventFilter, EventStore};
//! use sourcery_postgres::Store;
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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Store<String, serde_json::Value> =
//!     Store::connect("postgres://postgres@127.0.0.1:5432/app").await?;
//! store.migrate().await?; // idempotent: run it on every start
//!
//! let id = "ACC-001".to_string();
//! let mut tx = store.begin::<Optimistic>("account", id.clone(), None);
//! tx.append(FundsDeposited { amount: 100 }, serde_json::json!({ "actor": "alice" }))?;
//! let written = tx.commit().await?.expect("one event was buffered");
//!
//! let events = store
//!     .load_events(&[EventFilter::for_aggregate("account.deposited", "account", id)])
//!     .await?;
//! assert_eq!(events[0].position, written.last_position);
//! let deposit: FundsDeposited = events[0].decode(store.codec())?;
//! assert_eq!(deposit.amount, 100);
//! # Ok(())
//! # }
//! ```
//!
//! # Schema and migrations
//!
//! [`Store::migrate`] applies the numbered files of `migrations/`
//! (embedded in the crate) that the schema lacks, in one transaction, under
//! an advisory lock, and records them in `sourcery_migrations`. Tables,
//! constraints and functions are prefixed `sourcery_`, so the store can share
//! a schema with an application; [`Store::with_schema`] puts it in its own.
//!
//! # Event ids and idempotent appends
//!
//! Migration 0009 gives `sourcery_events` the column `event_id uuid NOT
//! NULL`, unique through the constraint **`sourcery_events_event_id_key`**
//! (its index has the same name). Events written before it keep the UUID
//! their metadata held under `event_id` (what `EventMetadata` of earlier
//! releases carried), when it is one and no earlier event took it; the
//! others get a random one. The column has no default: an append of an
//! older release, which sends no ids, fails instead of writing events its
//! caller could not retry safely (its reads keep working).
//!
//! The append stays one statement: the ids travel with the rows, and the
//! store looks for stored ids only when the append wrote nothing, on the
//! append's own connection, in one indexed query (the ids' rows and the
//! stream's version, on one snapshot), and lets
//! [`replay_of`](sourcery_core::store::replay_of) decide:
//!
//! - a unique violation (SQLSTATE 23505) names its constraint: on
//!   `sourcery_events_event_id_key`, ids of the batch are stored; on
//!   `sourcery_events_stream_sequence_key`, a concurrent append took the
//!   stream's next sequence numbers (for an append expecting an exact
//!   version, a conflict unless the ids are found: the retry raced its own
//!   first attempt; the others run again);
//! - a version check that refused the insert (no row written) may be a
//!   retry whose first attempt committed and moved the stream: the ids are
//!   looked up before the conflict is reported.
//!
//! All ids stored in this stream, in the batch's order: a replay,
//! `Ok` with [`AppendResult::replayed`](sourcery_core::store::AppendResult::replayed)
//! set and the first append's last position, whatever the expected version.
//! Some, or elsewhere, or in another order:
//! [`AppendError::IdReused`](sourcery_core::store::AppendError::IdReused).
//! None: the conflict (or, for the index's own refusal, another run).
//!
//! **Under concurrency** two appends of the same ids race on the unique
//! indexes: the second waits there until the first commits, then fails on
//! one of them and finds the first's rows (an append that runs again after
//! losing the sequence race fails on the ids the second time); if the first
//! rolls back, the second writes. So one writes and the other returns the replay with the
//! same last position; never a duplicate, never a spurious conflict. Two
//! appends reusing each other's ids in opposite orders can deadlock in the
//! index; the server aborts one, which runs again and is then refused.
//!
//! **Cost.** On the happy path, 16 bytes per event sent and the unique
//! index's maintenance: no extra round trip. A replay or a refusal costs one
//! more (the lookup), as a conflict did before (which now reads the ids with
//! the version, in the same query). Measured with
//! `benches/append_paired.rs`, the binary of the commit before event ids
//! and the one after run alternately, three passes each of 15 interleaved
//! rounds (2-core box, load average 0.05–2.5), median of the passes' store
//! times per 10-event append:
//!
//! | workload | before event ids | with event ids | throughput |
//! |---|---|---|---|
//! | 1 writer, optimistic | 468 µs (466 / 468 / 485) | 494 µs (497 / 491 / 494) | −5.1% |
//! | 8 writers, distinct streams | 2.01 ms per 80 events (2.04 / 2.00 / 2.01) | 2.12 ms (2.12 / 2.16 / 2.11) | −5.5% |
//!
//! Within the 10% budget set for ids and their index. The hand-written `INSERT` of the
//! benchmark now goes to a table built like the store's (ids and the same
//! index), and paid the same: 408 → 433 µs with one writer. Store speed ÷
//! hand speed stayed where it was: 0.87–0.88 with ids, 0.86–0.87 before.
//!
//! [`event_positions`](sourcery_core::store::EventStore::event_positions)
//! is one query on the index (`aggregate_kind = $1 AND aggregate_id = $2
//! AND event_id = ANY($3)`);
//! [`append_expecting_existing`](sourcery_core::store::EventStore::append_expecting_existing)
//! is the append statement with a check that the stream has events, one
//! round trip. Every read (loads, subscription pages) returns the ids.
//!
//! **Upgrading to migration 0009** rewrites the log once (as `ALTER TABLE`
//! does) and builds the unique index, inside `migrate`'s transaction and
//! under the table's lock: readers and writers wait for it (about 20 s for a
//! million ~250-byte events on the 2-core box), so on a large log plan the
//! pause. Writers of older releases fail from then on (their
//! rows would have no id); deploy the new release's writers as you migrate.
//!
//! # Global order
//!
//! A sequence value is drawn when a row is inserted but becomes visible when
//! its transaction commits, so a reader following positions could pass an
//! event that commits later with a lower position. This store closes that
//! gap (design, proof sketch and alternatives in
//! `docs/adr/0002-postgres-global-order.md`):
//!
//! 1. The append statement draws its transaction id (`pg_current_xact_id()`)
//!    and the batch's positions inside one short critical section (a session
//!    advisory lock taken and released around just those two steps, within
//!    the statement; a connection whose append failed is closed rather than
//!    returned to the pool, so a lock it might still hold dies with it), so
//!    **a larger transaction id means larger positions** among writers, and
//!    a batch's positions are contiguous (`docs/adr/0006-postgres-append-statement.md`).
//!    Before it draws them it takes the schema's *appender lock*, a shared
//!    transaction advisory lock keyed by the schema and its transaction id,
//!    which it keeps until it commits or rolls back.
//! 2. Loads that followers use stop at the **safe frontier**
//!    (`sourcery_frontier()`, computed on the load's own snapshot): rows of
//!    transactions older than every running one are settled; above them, a
//!    hole in the positions belongs to a transaction whose id lies between
//!    the ids of the rows around it, so the frontier stops below a hole only
//!    while such a transaction is still running *and holds this schema's
//!    appender lock* (`pg_locks`). Holes left by rolled-back or refused
//!    appends are passed once their writer is gone.
//!
//! The price is small: writers of different streams never wait for each
//! other's commits (the critical section takes microseconds), and an
//! unrelated long transaction does not stall followers — one in another
//! schema or another database of the server included, hole or no hole: a
//! hole waits only for this schema's own appends in flight. An append in
//! flight holds followers below its positions until it commits or rolls
//! back — milliseconds. [`Store::safe_position`] reports the frontier;
//! [`Store::frontier_blockers`] names the appends holding it (pid, age,
//! state). On a hot standby, where the primary's advisory locks are not
//! visible, a hole waits for every running transaction bracketed by it.
//!
//! **Upgrading to migration 0007**: appends of older releases do not take
//! the appender lock, so 0007 renames the position sequence (to
//! `sourcery_positions`) and their appends fail from then on, instead of
//! writing where the frontier would not wait for them; their reads keep
//! working. Deploy the new release's writers before or as you migrate.
//!
//! Transaction ids do not survive `pg_dump`/restore into another cluster;
//! positions do. After such a restore, before the first append, mark the
//! restored events settled: `UPDATE <schema>.sourcery_events SET tx_id = '0'`.
//!
//! ## Which loads are cut at the frontier
//!
//! A load is cut at the frontier when **any** of its filters is not
//! restricted to one stream ([`EventFilter::for_event`](sourcery_core::store::EventFilter::for_event)),
//! or when its filters cover several streams and one has an `after`: those
//! are the loads of followers, and the whole load is cut so that the highest
//! position it returns is a safe cursor. A load whose filters are all
//! [`for_aggregate`](sourcery_core::store::EventFilter::for_aggregate)
//! or [`for_stream`](sourcery_core::store::EventFilter::for_stream)
//! filters without `after` (the repository's read before a command), a load
//! of **one** stream with or without `after` (the repository's read of the
//! events after a snapshot) and
//! [`stream_version`](sourcery_core::store::EventStore::stream_version) see
//! every committed event: a writer reads its own writes. An append numbers
//! its events after the last event of the stream its snapshot saw, and the
//! unique index lets only one append take each number, so a stream's
//! appends draw their positions one after the other's commit: such a read is
//! always a prefix of the stream.
//!
//! # Snapshots
//!
//! [`SnapshotStore`] keeps snapshots in `sourcery_snapshots`, beside the
//! events (created by [`Store::migrate`]); make it with
//! [`Store::snapshots`] and hand it to
//! [`Repository::with_snapshots`](sourcery_core::repository::Repository::with_snapshots).
//! A save is one upsert that replaces a row only with a later position.
//! Projection snapshots are taken at the safe frontier
//! ([`SnapshotFrontier`](sourcery_core::snapshot::SnapshotFrontier) for
//! [`Store`]), never past an append in flight; the read of an aggregate's
//! tail after its snapshot is one stream, so it is not cut and sees every
//! committed event.
//!
//! `benches/snapshots.rs` loads an aggregate (a constant-size state, ~250-byte
//! events) through the repository after 1k, 10k and 100k events, by full
//! replay and from a snapshot 10 events before the end (median of 15 loads
//! per case; all snapshotted loads first, sizes in rotating order, then the
//! full replays; quiet 2-core machine, two runs):
//!
//! | events | full replay | with snapshot | with snapshot ÷ 1k with snapshot |
//! |---|---|---|---|
//! | 1,000 | 1.87 / 1.97 ms | 0.38 / 0.37 ms | 1.00 / 1.00 |
//! | 10,000 | 15.15 / 15.87 ms | 0.38 / 0.37 ms | 1.00 / 0.99 |
//! | 100,000 | 123.97 / 123.73 ms | 0.37 / 0.37 ms | 0.97 / 1.00 |
//!
//! A snapshotted load is two round trips (the snapshot, then the tail)
//! whatever the history's length. The tail read bounds the stream's own
//! sequence through the unique index (see `load.rs`): judging `position > p`
//! by the whole log's positions, PostgreSQL used to walk the primary key from
//! `p` to the end of the log (15–21 ms for a 10-event tail of a stream in the
//! log's middle). An earlier version of the benchmark ran each snapshotted
//! load right after a full replay of the same stream and reported 0.5 / 0.8 /
//! 1.0 ms: any load that follows a 100k-event replay pays ~0.4 ms more (the
//! client's allocator and the connection are left cold), whatever its size.
//!
//! # Performance
//!
//! `benches/postgres.rs` runs the store and hand-written sqlx on the same
//! rows: a multi-row `INSERT` in autocommit (one round trip) into a table
//! built like the store's, and the same `SELECT` decoded into the same
//! types. `benches/append_paired.rs` runs the two append workloads again in
//! interleaved pairs (a block of store appends, then a block of hand-written
//! inserts, alternating which goes first, 31 rounds, median of the
//! per-round ratios), because on a shared 2-core machine the speed drifts by
//! ±20% within a minute and separate criterion runs of the two sides put
//! that drift into the ratio. Events of ~250 bytes, PostgreSQL 15 on
//! loopback (`synchronous_commit = on` for both, `fdatasync` ≈ 200 µs on
//! this box), test schemas dropped before measuring:
//!
//! | workload | store | hand-written | ratio (store speed ÷ hand speed) |
//! |---|---|---|---|
//! | append 10-event batches, 1 writer (optimistic), paired, six runs | 794.1 / 908.8 / 833.4 / 820.0 / 782.0 / 828.8 µs | 724.2 / 833.5 / 742.4 / 745.2 / 694.0 / 774.1 µs | 0.91 / 0.94 / 0.94 / 0.93 / 0.88 / 0.91 (median 0.92) |
//! | append 10-event batches, 8 writers (distinct streams), paired, six runs | 3.33 / 3.09 / 3.94 / 2.79 / 2.95 / 3.15 ms per 80 events | 2.77 / 2.69 / 3.48 / 2.57 / 2.60 / 2.96 ms | 0.85 / 0.86 / 0.87 / 0.91 / 0.91 / 0.90 (median 0.89) |
//! | load one 10,000-event stream (criterion) | 36.4 ms | 49.8 ms | 1.37 |
//! | load one event kind (27,500 of 110,000 events, criterion) | 131.0 ms | 188.8 ms | 1.44 |
//!
//! The six runs came in two groups of three, 20 minutes apart; both sides
//! ran slower during the first group, whose 8-writer ratios were 0.847,
//! 0.862 and 0.871. The target (0.85) is met. What got the append here from
//! 0.79–0.81 and 0.78 (see `docs/adr/0006-postgres-append-statement.md`):
//!
//! - **No `NOTIFY` while nobody listens.** The coalesced doorbell sent a
//!   `NOTIFY` (a transaction) every few appends even when no other process
//!   listened; now it first asks the server (see
//!   [Subscriptions](#subscriptions-and-projection-runners)).
//! - **A statement the executor sets up cheaply.** The first statement was a
//!   chain of seven `MATERIALIZED` CTEs with an aggregate; each CTE and each
//!   set-returning function in `FROM` allocates a 16 kB tuple store, and
//!   together they made PostgreSQL's heap grow and shrink on every append
//!   (two `brk` calls and the page faults each time). It is now one
//!   `INSERT … SELECT … RETURNING` without CTEs.
//! - **Plain parameters for small batches.** Batches of up to 16 events bind
//!   their parameters (kind, data, metadata; since migration 0008 also the
//!   schema version, since 0009 the event id, both measured before them) in
//!   a multi-row `VALUES` list, as the
//!   hand-written `INSERT` does; decoding and unnesting arrays cost the
//!   server more. Larger batches still go as arrays. Metadata is serialized
//!   once and sent as `jsonb`.
//!
//! What is left with eight writers (CPU-bound on two cores) is the
//! statement's extra plan nodes (the version read, the critical section of
//! ADR 0002), the rows `RETURNING` sends back, and waits for the order lock
//! (about 2.6% of the backends' time in a sample of `pg_stat_activity`; a
//! build without the lock measured the same ratio, 0.86–0.87).
//!
//! Issue 21 added one lock to every append (the appender lock the frontier
//! looks for; see [Global order](#global-order)). The paired benchmark was
//! run with the binary built just before that change and with the one
//! after, alternating, in one hour on the 2-core box while other builds ran
//! beside it (load average 3.1–8.3, so every figure here is noisier than the
//! table above; 17 runs before and 19 after completed, the others collided
//! with another run of the benchmark in the same schema): median of the
//! runs' ratios 0.913 before and 0.985 after with one writer, 0.882 before
//! and 0.872 after with eight; in the first 14 pairs, the store's own time
//! per append, after ÷ before within each pass, had medians of 0.98 (one
//! writer) and 0.96 (eight). Within noise. On the server, taking and
//! releasing a shared advisory lock costs a few µs, against ~800 µs per
//! append with one writer.
//!
//! Loads win because rows are decoded as they stream in instead of being
//! collected first.
//!
//! # Subscriptions and projection runners
//!
//! The store implements [`Subscribe`](sourcery_core::subscription::Subscribe):
//! `store.subscribe(filters, from)` reads the table by cursor, cut at the
//! safe frontier, in pages of 1,000. Subscribers of the same store value and
//! its clones are woken in process by its own appends; other processes'
//! appends wake them through one shared `LISTEN` connection per store (its
//! own connection, not the pool's), and every store sends one coalesced
//! `NOTIFY` (at most one per 2 ms) from a background task after its appends,
//! never inside the append's transaction, and only while another store
//! listens on the schema (each `LISTEN` connection holds a shared advisory
//! lock the doorbell looks for, every 50 ms at most while it finds none). They also poll every 500 ms, so a
//! lost notification costs latency, never an event. A frontier held back
//! longer than 5 s by a running transaction is logged as a `tracing`
//! warning naming its pid and age. All of it is set with
//! [`SubscriptionOptions`] and [`Store::with_subscription_options`]; see
//! `docs/adr/0005-postgres-subscriptions.md`.
//!
//! [`CheckpointStore`] keeps runner checkpoints in `sourcery_checkpoints`;
//! [`Lease`] lets one [`ProjectionRunner`](sourcery_core::runner::ProjectionRunner)
//! per projection run across servers (a session advisory lock on a connection
//! of its own, watched from a thread of its own; a standby takes over when
//! the holder's connection dies).
//!
//! `benches/subscriptions.rs`, two runs on the 2-core box, quiet (nothing
//! else running), PostgreSQL on loopback:
//!
//! | measure | result |
//! |---|---|
//! | append throughput, 8 writers, 1 event per append, with ÷ without the coalesced `NOTIFY` | 1.02 / 0.99 (6.3k–7.0k events/s) |
//! | append call → delivery at 1,000 events/s for 10 s, same store | p50 1.81 / 1.11 ms, p99 10.67 / 11.26 ms |
//! | append call → delivery at 1,000 events/s for 10 s, another store (`LISTEN`) | p50 1.98 / 1.77 ms, p99 12.33 / 10.42 ms |
//! | catch-up of a runner over 1,000,000 events ÷ raw keyset read (pages of 1,000) | 0.73, 0.73 / 0.73, 0.71 (561k–669k vs 790k–912k events/s) |
//!
//! Re-run on 2026-11-26 on a slower box (`fdatasync` ≈ 200 µs, appends
//! about 2.5× slower than above), after the doorbell learned to stay quiet
//! while nobody listens: `NOTIFY` with ÷ without 0.96 (another store
//! listening); p99 19.0 ms in process and 24.1 ms through `LISTEN`; catch-up
//! 0.78 and 0.59, and 1.04 and 0.70 in an earlier run (the runner's own rate
//! moved between 262k and 348k events/s from one round to the next; the
//! read path did not change). The version before this change gave p99
//! 35–87 ms on that box in four runs, so the box, not the change, sets the
//! latency figures.
//!
//! Re-run on 2026-12-04 (load 0.4–1.5), after the projection runner stopped
//! racing each already-read event against its stop and lease futures
//! (two boxed futures and a select per event; it checks both without
//! waiting instead): catch-up 1.00 and 1.00 of the keyset read (656k and
//! 662k against 659k and 665k events/s, two rounds); `NOTIFY` with ÷
//! without 0.99; p99 8.89 ms in process and 11.42 ms through `LISTEN` (10 s
//! runs).
//!
//! Latency is measured from the start of the append call, so it includes the
//! append and every append in flight below it. On the same box under a load
//! average of 7–8 from other builds, the p99 rose to 62–75 ms: the frontier
//! waits for the slowest append in flight. A catch-up reads the head once
//! and then pages without it while pages come back full.
//!
//! # Leases and fencing
//!
//! Each holder of a [`Lease`] gets a fence (the lease's generation, counted
//! in `sourcery_leases`). The runner claims its checkpoint with it and
//! advances it with it; [`CheckpointStore`] refuses a lower fence and a
//! position below the saved one, each in one conditional upsert. A holder
//! that lost its lease without noticing (paused, cut off, blocked in
//! `apply`) cannot move the checkpoint once the new holder has claimed it:
//! its runner stops with
//! [`RunnerError::Fenced`](sourcery_core::runner::RunnerError::Fenced). See
//! `docs/adr/0010-fencing-and-read-models.md`.
//!
//! # Read models
//!
//! A [`ReadModel`] is a [`SqlProjection`] whose [`ApplySql`] handlers write
//! tables with plain SQL in the transaction that advances its checkpoint
//! (with the lease's fence), one transaction per batch of events: every
//! event's effect is applied exactly once, whatever crashes when. Run it
//! with a [`ReadModelRunner`](sourcery_core::runner::ReadModelRunner). Each
//! version of a projection writes its own tables (`<table>_v<n>`); readers
//! query the view `<table>`, switched to a new version in one transaction
//! once it has caught up. The guide's "Read models in your database"
//! chapter has the whole story.
//!
//! A handler registered with [`SqlEvents::batched`] implements
//! [`ApplySqlBatch`] instead: it gets each run of consecutive events of a
//! batch at once, in the same transaction, so that it can write their rows
//! in one statement. It is the fast way to rebuild a read model:
//! `benches/read_model.rs` rebuilds one row per account (10,000 accounts)
//! from 1,000,000 events, each event upserting its account's row
//! (`INSERT … ON CONFLICT (account) DO UPDATE`), against hand-written sqlx
//! in the same process: a keyset read of the same rows (pages of 1,000,
//! the same columns and JSON decoded), then per page one transaction with
//! the page's rows as one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT`
//! and the checkpoint. Every side on an emptied table, in rotating order,
//! three rounds per run, median of the per-round ratios (store speed ÷
//! hand speed); two runs on 2026-12-04, 2-core box, PostgreSQL 15 on
//! loopback, 1-minute load average 0.8 and 1.3 at the start (other builds
//! paused below 1.5) and 1.2–3.3 during the runs, the benchmark's own
//! client and server keeping both cores busy:
//!
//! | rebuild of 1,000,000 events | store | hand-written, batched | ratio per round | median ratio |
//! |---|---|---|---|---|
//! | [`ApplySql`]: one upsert statement per event | 16.3k / 16.6k events/s | 137.0k / 142.7k events/s | 0.157, 0.121, 0.111 / 0.136, 0.092, 0.199 | 0.121 / 0.136 |
//! | [`ApplySqlBatch`]: each run folded by account, one `UNNEST` upsert | 116.6k / 139.6k events/s | (the same rounds) | 0.963, 0.851, 0.930 / 0.976, 0.846, 1.675 | 0.930 / 0.976 |
//!
//! One statement per event is one round trip per event, and the round
//! trips set the speed, not the runner: a hand-written loop sending the
//! same statement once per event (same read, same transactions) ran at
//! 17.2k / 18.3k events/s, 0.132 / 0.123 of the batched baseline, and the
//! store's row-at-a-time rebuild at 0.92 / 0.84 of that loop. A round trip
//! of `SELECT 1` from sqlx measured 22–24 µs and the upsert's own work on
//! the server 7–10 µs (in a PL/pgSQL loop), against about 7 µs per event
//! for the whole batched baseline. sqlx waits for each statement's reply
//! before the next is sent, so the runner cannot pipeline a handler's
//! statements; a read model that must rebuild fast takes its events by
//! runs. The last round of the second run had the hand-written batch
//! disturbed (12.0 s against 6.0–7.0 s in the other rounds), hence its
//! ratios; the median leaves it out.
//!
//! A third run, after the batched handler met the rest of the read model
//! (parked events, replays, the batch's `SET LOCAL
//! idle_in_transaction_session_timeout`, one more statement per batch),
//! on a quieter box (load 0.8–1.2 throughout): batched handler 143.1k
//! events/s against 169.5k, per round 0.787, 0.850, 0.955, median
//! **0.850**; one statement per event 15.5k events/s, median 0.096. The
//! hand-written side ran faster than in the first two runs (149.8k–180.1k
//! against 137.0k–142.7k), the store's batched side about as fast
//! (141.8k–144.1k against 116.6k–139.6k).
//!
//! # Reactors
//!
//! A [`ReactorStore`] keeps what reactors must not lose across restarts,
//! in two tables of the store's schema (migration 0011): their **timers**
//! (`sourcery_timers`: commands scheduled by reactions, pending until their
//! runner fires them, then fired, cancelled or failed, and kept so that a
//! reaction delivered again schedules nothing new) and their **dead
//! letters** (`sourcery_dead_letters`: the event a reaction kept failing
//! on, as the events table stores it, with the error, the attempts and an
//! operator's retry request). Build it from the [`Store`] the reactors
//! follow ([`ReactorStore::new`]); it shares the store's pool. Scheduling a
//! batch of timers is one statement (`INSERT … SELECT FROM UNNEST(…) ON
//! CONFLICT (id) DO NOTHING`), and so is every other call.
//!
//! # Failures
//!
//! A connection lost mid-append returns [`Error::Database`]; the batch is
//! then either fully written or absent (one transaction), and the pool opens
//! a new connection for the next call. If the connection dropped during the
//! commit itself, the caller cannot know which: retry with the same event
//! ids (the same [`PersistableEvent`](sourcery_core::store::PersistableEvent)s,
//! or [`Transaction::event_ids`](sourcery_core::store::Transaction::event_ids)),
//! which writes the batch if it was lost and returns its replay if it was
//! not (see [Event ids and idempotent appends](#event-ids-and-idempotent-appends)).

mod checkpoint;
mod error;
mod lease;
mod load;
mod migrate;
mod reactor;
mod read_model;
mod schema;
mod snapshot;
mod store;
mod subscription;
mod timestamp;

pub use checkpoint::CheckpointStore;
pub use error::Error;
pub use lease::{Lease, LeaseGuard};
pub use reactor::ReactorStore;
pub use read_model::{
    ApplySql, ApplySqlBatch, ReadModel, ReadModelError, ReadModelTransaction, SqlEvents, SqlProjection,
};
pub use snapshot::SnapshotStore;
pub use store::{FrontierBlocker, Store};
pub use subscription::SubscriptionOptions;

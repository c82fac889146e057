//! Loading an aggregate after 1,000, 10,000 and 100,000 events, from a
//! snapshot near the end (10 events of tail) and by full replay, through
//! the repository on the PostgreSQL event and snapshot stores.
//!
//! The target: with a snapshot, the load time at 10k and 100k events stays
//! within 1.5x of the 1k figure. Prints a Markdown table of medians with
//! both ratios. Measurements are interleaved (one load of each case per
//! round, sizes in a rotating order) so that load on the machine hits every
//! size alike; all snapshotted loads run before the full replays.
//!
//! Needs `DATABASE_URL`; without it, says so and measures nothing. Runs in a
//! schema of its own, dropped at the end. `cargo bench --bench snapshots`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle};
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};
use sourcery_core::repository::Repository;
use sourcery_core::snapshot::SnapshotPolicy;
use sourcery_core::store::{EventId, EventStore, NonEmpty, PersistableEvent};
use sourcery_postgres::Store;
use sqlx::postgres::PgPoolOptions;

type PgStore = Store<String, serde_json::Value>;

const SCHEMA: &str = "sourcery_bench_snapshots";
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Events appended after the snapshot: the tail a snapshotted load replays.
const TAIL: usize = 10;
/// Events per append while seeding (one round trip each).
const SEED_BATCH: usize = 5_000;
const ROUNDS: usize = 15;
const WARM_UP: usize = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
    /// ~200 bytes of payload, so rows look like real events.
    memo: String,
}

impl DomainEvent for Deposited {
    const KIND: &'static str = "bench.account.deposited";
}

#[derive(Debug, Clone, PartialEq)]
struct AccountEvent(Deposited);

impl EventPayload for AccountEvent {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn schema_version(&self) -> u32 {
        self.0.schema_version()
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        self.0.encode_with(codec)
    }
}

impl DecodeEvent for AccountEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Deposited::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        Ok(Deposited::decode_with(codec, event)?.map(AccountEvent))
    }
}

/// A state of constant size, whatever the history's length.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: u64,
    deposits: u64,
    digest: u64,
}

impl Aggregate for Account {
    const KIND: &'static str = "bench.account";
    type Id = String;
    type Event = AccountEvent;
    type Error = Infallible;

    fn apply(&mut self, event: &AccountEvent) {
        self.balance = self.balance.wrapping_add(event.0.amount);
        self.deposits += 1;
        self.digest = self.digest.wrapping_mul(1_000_003).wrapping_add(event.0.amount);
    }
}

struct Deposit(u64);

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, Infallible> {
        Ok(vec![AccountEvent(deposit(command.0))])
    }
}

fn deposit(amount: u64) -> Deposited {
    Deposited {
        amount,
        memo: "m".repeat(200),
    }
}

/// Appends `count` deposits to `id`'s stream in batches of [`SEED_BATCH`].
async fn seed(store: &PgStore, id: &String, count: usize) {
    let mut written = 0;
    while written < count {
        let size = SEED_BATCH.min(count - written);
        let events = (written..written + size)
            .map(|n| PersistableEvent {
                id: EventId::new(),
                kind: Deposited::KIND.to_owned(),
                schema_version: 1,
                data: store
                    .codec()
                    .encode(&deposit(u64::try_from(n).unwrap_or(u64::MAX)))
                    .expect("a deposit encodes"),
                metadata: serde_json::json!({ "n": n }),
            })
            .collect();
        store
            .append(
                Account::KIND,
                id,
                None,
                NonEmpty::from_vec(events).expect("size > 0"),
            )
            .await
            .expect("seed append");
        written += size;
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn main() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("PostgreSQL snapshot benchmarks SKIPPED: DATABASE_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&url));
}

/// Each stream: the history, one command through a repository that
/// snapshots (policy `Always`) so a snapshot sits at its end, then a tail of
/// TAIL events without one.
async fn seed_all(store: &PgStore, plain: &Repository<PgStore>, ids: &[String]) {
    let taking = Repository::new(store.clone()).with_snapshots(store.snapshots(SnapshotPolicy::Always));
    let seeding = Instant::now();
    for (id, &size) in ids.iter().zip(&SIZES) {
        seed(store, id, size - 1 - TAIL).await;
        taking
            .execute::<Account, _>(id, &Deposit(1), serde_json::json!({}))
            .await
            .expect("the snapshotting command");
        for n in 0..TAIL {
            plain
                .execute::<Account, _>(id, &Deposit(u64::try_from(n).unwrap_or(0)), serde_json::json!({}))
                .await
                .expect("a tail command");
        }
    }
    sqlx::query(&format!("VACUUM ANALYZE {SCHEMA}.sourcery_events"))
        .execute(store.pool())
        .await
        .expect("vacuum");
    eprintln!(
        "seeded {} events in {:.1?}",
        SIZES.iter().sum::<usize>(),
        seeding.elapsed()
    );
}

async fn run(url: &str) {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("the database accepts connections");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .execute(&pool)
        .await
        .expect("drop");
    let store: PgStore = Store::with_schema(pool.clone(), SCHEMA).expect("a valid schema name");
    store.migrate().await.expect("migrate");
    let plain = Repository::new(store.clone());
    let snapshotting = Repository::new(store.clone()).with_snapshots(store.snapshots(SnapshotPolicy::Never));

    let ids: Vec<String> = SIZES.iter().map(|size| format!("acc-{size}")).collect();
    seed_all(&store, &plain, &ids).await;

    // Check what is measured: same state; snapshot + TAIL events.
    for (id, &size) in ids.iter().zip(&SIZES) {
        let full = plain.load_versioned::<Account>(id).await.expect("full");
        let resumed = snapshotting.load_versioned::<Account>(id).await.expect("resumed");
        assert_eq!(full.state, resumed.state);
        assert_eq!(full.replayed, size);
        assert_eq!(resumed.replayed, TAIL);
        assert!(resumed.snapshot_position.is_some());
    }

    // [size][0 = full replay, 1 = snapshot]. First the snapshotted loads,
    // round after round, the sizes in a rotating order; then the full
    // replays the same way. A load that follows a full replay of 100k
    // events runs ~0.4 ms slower whatever its own size (the client's
    // allocator and the connection are left cold), which is not the load's
    // own cost: mixing the two made the 1k case look fast and the 100k case
    // slow.
    let mut samples = vec![[Vec::new(), Vec::new()]; SIZES.len()];
    let mut versions = vec![None; SIZES.len()];
    // The two repositories differ in type: one pass per repository.
    macro_rules! pass {
        ($case:expr, $repository:expr) => {
            for round in 0..WARM_UP + ROUNDS {
                for step in 0..ids.len() {
                    let index = (round + step) % ids.len();
                    let start = Instant::now();
                    let loaded = $repository
                        .load_versioned::<Account>(&ids[index])
                        .await
                        .expect("load");
                    let elapsed = start.elapsed();
                    let version = *versions[index].get_or_insert(loaded.version);
                    assert_eq!(loaded.version, version);
                    if round >= WARM_UP {
                        samples[index][$case].push(elapsed);
                    }
                }
            }
        };
    }
    pass!(1, snapshotting);
    pass!(0, plain);

    let medians: Vec<[Duration; 2]> = samples
        .iter_mut()
        .map(|[full, snapshot]| [median(full), median(snapshot)])
        .collect();
    let base_snapshot = millis(medians[0][1]);
    let base_full = millis(medians[0][0]);
    println!("median of {ROUNDS} loads each; the snapshotted loads replay {TAIL} events\n");
    println!(
        "| events | full replay | with snapshot | snapshot ÷ full | with snapshot ÷ 1k with snapshot | with snapshot ÷ 1k full replay |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (&size, [full, snapshot]) in SIZES.iter().zip(&medians) {
        let (full, snapshot) = (millis(*full), millis(*snapshot));
        println!(
            "| {size} | {full:.2} ms | {snapshot:.2} ms | {:.3} | {:.2}x | {:.2}x |",
            snapshot / full,
            snapshot / base_snapshot,
            snapshot / base_full,
        );
    }
    let worst = medians
        .iter()
        .map(|[_, snapshot]| millis(*snapshot) / base_snapshot)
        .fold(0.0_f64, f64::max);
    println!(
        "\ntarget (with snapshot, 10k and 100k within 1.5x of 1k): {} (worst {worst:.2}x)",
        if worst <= 1.5 { "met" } else { "MISSED" }
    );

    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .execute(&pool)
        .await
        .expect("drop");
}

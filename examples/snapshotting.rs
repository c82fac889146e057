//! Snapshots: an account with 10,000 events, loaded with and without a
//! snapshot.
//!
//! Run with `cargo run --release --example snapshotting`. The events go to a
//! fresh SQLite file in the system's temp directory (removed at the end);
//! the snapshots to the in-memory snapshot store (the SQLite snapshot store
//! comes with the `sqlite` feature's snapshot table). It prints both load
//! times and how many events each load replayed, and checks that both give
//! the same state.

use std::num::NonZeroU64;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sourcery::snapshot::{self, SnapshotPolicy};
use sourcery::store::sqlite;
use sourcery::{Aggregate, Apply, DomainEvent, EventMetadata, Handle, HandleCreate, Repository};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened {
    owner: String,
}

impl DomainEvent for AccountOpened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FundsDeposited {
    amount: u64,
}

impl DomainEvent for FundsDeposited {
    const KIND: &'static str = "account.deposited";
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

// ANCHOR: aggregate
/// Snapshotted aggregates are serde types; their id (`String`) too.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(id = String, error = Never, events(AccountOpened, FundsDeposited))]
struct Account {
    owner: String,
    balance: u64,
    deposits: u64,
}
// ANCHOR_END: aggregate

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.balance += event.amount;
        self.deposits += 1;
    }
}

struct Open;

/// Deposits `count` times, one event each.
struct DepositMany {
    count: u64,
}

impl HandleCreate<Open> for Account {
    fn handle_create(_: &Open) -> Result<Vec<AccountEvent>, Never> {
        Ok(vec![AccountOpened { owner: "Ada".into() }.into()])
    }
}

impl Handle<DepositMany> for Account {
    fn handle(&self, command: &DepositMany) -> Result<Vec<AccountEvent>, Never> {
        Ok((1..=command.count)
            .map(|amount| FundsDeposited { amount }.into())
            .collect())
    }
}

const EVENTS: u64 = 10_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("sourcery-snapshotting-{}.db", std::process::id()));
    let result = run(&path).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    result
}

async fn run(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = sqlite::Store::<String, EventMetadata>::open(path).await?;
    println!("events: SQLite file {}; snapshots: in memory", path.display());
    // ANCHOR: setup
    let plain = Repository::new(store.clone());
    let every_1000 = SnapshotPolicy::EveryNEvents(NonZeroU64::new(1_000).ok_or("zero")?);
    let snapshotting = Repository::new(store).with_snapshots(snapshot::inmemory::Store::new(every_1000));
    let id = "ACC-LONG".to_string();
    // ANCHOR_END: setup

    // 1 + 9,990 events without snapshots, in batches of 999.
    plain
        .create::<Account, _>(&id, &Open, EventMetadata::new())
        .await?;
    for _ in 0..10 {
        plain
            .execute::<Account, _>(&id, &DepositMany { count: 999 }, EventMetadata::new())
            .await?;
    }
    // ANCHOR: execute
    // The next command goes through the snapshotting repository: a snapshot
    // is due (9,991 events since none), so it is taken at the new version.
    let outcome = snapshotting
        .execute::<Account, _>(&id, &DepositMany { count: 1 }, EventMetadata::new())
        .await?;
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    // ANCHOR_END: execute
    // And a few more events after the snapshot.
    plain
        .execute::<Account, _>(&id, &DepositMany { count: 8 }, EventMetadata::new())
        .await?;

    // ANCHOR: compare
    let started = Instant::now();
    let full = plain.load_versioned::<Account>(&id).await?;
    let full_time = started.elapsed();
    let started = Instant::now();
    let resumed = snapshotting.load_versioned::<Account>(&id).await?;
    let resumed_time = started.elapsed();

    assert_eq!(full.state.deposits + 1, EVENTS);
    println!(
        "without a snapshot: {full_time:>10.2?}, replayed {:>5} events",
        full.replayed
    );
    println!(
        "with a snapshot:    {resumed_time:>10.2?}, replayed {:>5} events (snapshot at position {:?})",
        resumed.replayed,
        resumed.snapshot_position.ok_or("no snapshot was taken")?
    );
    assert_eq!(resumed.state, full.state);
    assert_eq!(resumed.version, full.version);
    assert_eq!(resumed.replayed, 8);
    // ANCHOR_END: compare
    println!(
        "both: {} holds {} after {} deposits, version {:?}",
        full.state.owner,
        full.state.balance,
        full.state.deposits,
        full.version.ok_or("empty")?
    );
    Ok(())
}

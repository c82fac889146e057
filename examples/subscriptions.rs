//! A projection kept live by the projection runner while commands run, then
//! a restart that resumes from its checkpoint.
//!
//! The projection here sends a (pretend) receipt for every deposit: a side
//! effect that must not be repeated for deposits already handled, which is
//! what the checkpoint is for. The events and the checkpoint live in one
//! SQLite file.
//!
//! Run with `cargo run --example subscriptions`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::runner::ProjectionRunner;
use sourcery::store::sqlite;
use sourcery::{
    Aggregate, Apply, ApplyProjection, DomainEvent, Handle, HandleCreate, Projection, Repository,
};

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
#[error("amounts must be positive")]
struct ZeroAmount;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = ZeroAmount, events(AccountOpened, FundsDeposited))]
struct Account {
    balance: u64,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, _: &AccountOpened) {}
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.balance += event.amount;
    }
}

struct Open(&'static str);
struct Deposit(u64);

impl HandleCreate<Open> for Account {
    fn handle_create(command: &Open) -> Result<Vec<AccountEvent>, ZeroAmount> {
        Ok(vec![
            AccountOpened {
                owner: command.0.into(),
            }
            .into(),
        ])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, ZeroAmount> {
        if command.0 == 0 {
            return Err(ZeroAmount);
        }
        Ok(vec![FundsDeposited { amount: command.0 }.into()])
    }
}

// ANCHOR: projection
/// Sends a receipt per deposit (here: remembers what it would have sent).
#[derive(Debug, Default, Projection)]
#[projection(kind = "deposit-receipts", events(FundsDeposited))]
struct DepositReceipts {
    sent: Vec<String>,
}

impl ApplyProjection<FundsDeposited> for DepositReceipts {
    fn apply_projection(&mut self, account: &String, event: &FundsDeposited, (): &()) {
        self.sent
            .push(format!("receipt to {account}: {} deposited", event.amount));
    }
}
// ANCHOR_END: projection

const WAIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = std::env::temp_dir().join(format!("sourcery-subscriptions-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let path = directory.join("events.db");
    let store = sqlite::Store::<String, ()>::open(&path).await?;
    println!("store: SQLite file {}", path.display());
    let repository = Repository::new(store.clone());

    // ANCHOR: live
    // 1. The runner catches up (nothing yet), then follows live.
    let receipts =
        ProjectionRunner::new(store.clone(), store.checkpoints()).start(DepositReceipts::default())?;
    let ada = "ACC-ADA".to_string();
    repository.create::<Account, _>(&ada, &Open("Ada"), ()).await?;
    for amount in [10, 20, 30] {
        let outcome = repository
            .execute::<Account, _>(&ada, &Deposit(amount), ())
            .await?;
        // Read your write: wait until the projection has applied it.
        if let Some(position) = outcome.last_position {
            receipts.wait_for(position, WAIT).await?;
        }
        println!(
            "deposited {amount}; receipts so far: {}",
            receipts.read(|r| r.sent.len())
        );
    }
    let first_run = receipts.stop().await?;
    let checkpoint = store.checkpoints();
    let saved = sourcery::checkpoint::CheckpointStore::load(&checkpoint, "deposit-receipts").await?;
    println!(
        "runner stopped after {} receipts; checkpoint at {saved:?}",
        first_run.sent.len()
    );
    assert_eq!(first_run.sent.len(), 3);
    // ANCHOR_END: live

    // ANCHOR: restart
    // 2. Deposits while no runner is up.
    repository.execute::<Account, _>(&ada, &Deposit(40), ()).await?;
    let last = repository.execute::<Account, _>(&ada, &Deposit(50), ()).await?;
    println!("deposited 40 and 50 while the runner was down");

    // 3. A restarted runner resumes after the checkpoint: it sends only the
    //    two receipts still owed.
    let receipts =
        ProjectionRunner::new(store.clone(), store.checkpoints()).start(DepositReceipts::default())?;
    if let Some(position) = last.last_position {
        receipts.wait_for(position, WAIT).await?;
    }
    let second_run = receipts.stop().await?;
    for receipt in &second_run.sent {
        println!("after the restart: {receipt}");
    }
    assert_eq!(
        second_run.sent,
        [
            "receipt to ACC-ADA: 40 deposited",
            "receipt to ACC-ADA: 50 deposited"
        ]
    );
    // ANCHOR_END: restart

    drop((repository, store));
    std::fs::remove_dir_all(&directory)?;
    Ok(())
}

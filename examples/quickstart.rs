//! Quickstart: a bank account aggregate, its commands and a projection of
//! totals, on the embedded SQLite store.
//!
//! Run with `cargo run --example quickstart`. The events go to a SQLite file
//! in the system's temp directory (its path is printed; pass another path as
//! the first argument): run it twice and the second run finds the accounts
//! the first one opened.

// ANCHOR: imports
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sourcery::repository::CommandError;
use sourcery::store::sqlite;
use sourcery::{
    Aggregate, Apply, ApplyProjection, DomainEvent, EventMetadata, Handle, HandleCreate, Projection,
    Repository,
};
// ANCHOR_END: imports

// ---- Events: plain serde structs, past tense, with a stable stored name.

// ANCHOR: events
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FundsWithdrawn {
    amount: u64,
}

impl DomainEvent for FundsWithdrawn {
    const KIND: &'static str = "account.withdrawn";
}
// ANCHOR_END: events

// ---- The aggregate: state rebuilt from events, decisions on commands.

// ANCHOR: aggregate
#[derive(Debug, thiserror::Error, PartialEq)]
enum AccountError {
    #[error("amounts must be positive")]
    ZeroAmount,
    #[error("insufficient funds: the balance is {balance}, {requested} was requested")]
    InsufficientFunds { balance: u64, requested: u64 },
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = AccountError, events(AccountOpened, FundsDeposited, FundsWithdrawn))]
struct Account {
    owner: String,
    balance: u64,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.balance += event.amount;
    }
}

impl Apply<FundsWithdrawn> for Account {
    fn apply(&mut self, event: &FundsWithdrawn) {
        self.balance -= event.amount;
    }
}
// ANCHOR_END: aggregate

// ---- Commands: plain structs; the aggregate decides what happens.

// ANCHOR: commands
struct OpenAccount {
    owner: String,
}

struct Deposit {
    amount: u64,
}

struct Withdraw {
    amount: u64,
}

impl HandleCreate<OpenAccount> for Account {
    fn handle_create(command: &OpenAccount) -> Result<Vec<AccountEvent>, AccountError> {
        Ok(vec![
            AccountOpened {
                owner: command.owner.clone(),
            }
            .into(),
        ])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, AccountError> {
        if command.amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(vec![
            FundsDeposited {
                amount: command.amount,
            }
            .into(),
        ])
    }
}

impl Handle<Withdraw> for Account {
    fn handle(&self, command: &Withdraw) -> Result<Vec<AccountEvent>, AccountError> {
        if command.amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if command.amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: command.amount,
            });
        }
        Ok(vec![
            FundsWithdrawn {
                amount: command.amount,
            }
            .into(),
        ])
    }
}
// ANCHOR_END: commands

// ---- A projection: a read model across every account.

// ANCHOR: projection
#[derive(Debug, Default, Projection)]
#[projection(metadata = EventMetadata, events(AccountOpened, FundsDeposited, FundsWithdrawn))]
struct BankTotals {
    balances: BTreeMap<String, u64>,
    deposited: u64,
    withdrawn: u64,
}

impl ApplyProjection<AccountOpened> for BankTotals {
    fn apply_projection(&mut self, id: &String, _: &AccountOpened, _: &EventMetadata) {
        self.balances.entry(id.clone()).or_default();
    }
}

impl ApplyProjection<FundsDeposited> for BankTotals {
    fn apply_projection(&mut self, id: &String, event: &FundsDeposited, _: &EventMetadata) {
        *self.balances.entry(id.clone()).or_default() += event.amount;
        self.deposited += event.amount;
    }
}

impl ApplyProjection<FundsWithdrawn> for BankTotals {
    fn apply_projection(&mut self, id: &String, event: &FundsWithdrawn, _: &EventMetadata) {
        *self.balances.entry(id.clone()).or_default() -= event.amount;
        self.withdrawn += event.amount;
    }
}
// ANCHOR_END: projection

// ANCHOR: main
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: open_store
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| std::env::temp_dir().join("sourcery-quickstart.db"), Into::into);
    let store = sqlite::Store::<String, EventMetadata>::open(&path).await?;
    println!("store: SQLite file {}", path.display());
    let repository = Repository::new(store);
    let ada = "ACC-ADA".to_string();
    let bob = "ACC-BOB".to_string();
    // ANCHOR_END: open_store

    // ANCHOR: create
    for (id, owner) in [(&ada, "Ada"), (&bob, "Bob")] {
        let opened = repository
            .create::<Account, _>(id, &OpenAccount { owner: owner.into() }, EventMetadata::new())
            .await;
        match opened {
            Ok(_) => println!("opened {id} for {owner}"),
            Err(CommandError::AlreadyExists { .. }) => println!("{id} already exists (a previous run)"),
            Err(error) => return Err(error.into()),
        }
    }
    // ANCHOR_END: create
    let before = repository.load::<Account>(&ada).await?.balance;

    // ANCHOR: execute
    let request = EventMetadata::new().with_actor("teller-7");
    let deposit = repository
        .execute::<Account, _>(&ada, &Deposit { amount: 100 }, request.clone())
        .await?;
    let caused = EventMetadata::caused_by(deposit.event_ids[0], &request);
    repository
        .execute::<Account, _>(&ada, &Withdraw { amount: 30 }, caused)
        .await?;
    repository
        .execute::<Account, _>(&bob, &Deposit { amount: 25 }, EventMetadata::new())
        .await?;
    println!("deposited 100 and withdrew 30 on {ada}; deposited 25 on {bob}");
    // ANCHOR_END: execute

    // ANCHOR: rejected
    let refused = repository
        .execute::<Account, _>(&bob, &Withdraw { amount: 1_000 }, EventMetadata::new())
        .await;
    match &refused {
        Err(CommandError::Rejected(reason)) => println!("{bob}: withdrawal of 1000 refused: {reason}"),
        other => println!("unexpected outcome: {other:?}"),
    }
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(AccountError::InsufficientFunds { .. }))
    ));
    // ANCHOR_END: rejected

    // ANCHOR: load
    let account = repository.load::<Account>(&ada).await?;
    println!("{ada} belongs to {} and holds {}", account.owner, account.balance);
    assert_eq!(account.balance, before + 70);
    // ANCHOR_END: load

    // ANCHOR: load_projection
    let totals: BankTotals = repository.load_projection().await?;
    println!(
        "bank totals: deposited {}, withdrawn {}, balances {:?}",
        totals.deposited, totals.withdrawn, totals.balances
    );
    assert_eq!(totals.balances.get(&ada), Some(&account.balance));
    assert_eq!(
        totals.deposited - totals.withdrawn,
        totals.balances.values().sum::<u64>()
    );
    // ANCHOR_END: load_projection
    Ok(())
}
// ANCHOR_END: main

/// Golden samples of the quickstart's events (`examples/event-samples/quickstart/`),
/// run by `cargo test --example quickstart`.
#[cfg(test)]
mod tests {
    use sourcery::test::schema::EventSamples;

    use super::*;

    #[test]
    fn golden_samples() {
        EventSamples::new("examples/event-samples/quickstart")
            .aggregate::<Account>()
            .event(AccountOpened { owner: "Ada".into() })
            .event(FundsDeposited { amount: 100 })
            .event(FundsWithdrawn { amount: 30 })
            .assert();
    }
}

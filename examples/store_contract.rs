//! The store contract in a few lines: open a stream, append to it, load it
//! back, and watch optimistic concurrency refuse a stale write.
//!
//! Run with `cargo run --example store_contract`.

use serde::{Deserialize, Serialize};
use sourcery::DomainEvent;
use sourcery::concurrency::Optimistic;
use sourcery::store::{AppendError, EventFilter, EventStore, inmemory};

#[derive(Debug, Serialize, Deserialize)]
struct AccountOpened {
    owner: String,
}

impl DomainEvent for AccountOpened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Serialize, Deserialize)]
struct FundsDeposited {
    amount: u64,
}

impl DomainEvent for FundsDeposited {
    const KIND: &'static str = "account.deposited";
}

// ANCHOR: main
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = inmemory::Store::<String, serde_json::Value>::new();
    let id = "ACC-001".to_string();

    // A new stream: an optimistic transaction with no expected version.
    let mut tx = store.begin::<Optimistic>("account", id.clone(), None);
    tx.append(
        AccountOpened { owner: "Ada".into() },
        serde_json::json!({ "actor": "teller-7" }),
    )?;
    tx.append(
        FundsDeposited { amount: 100 },
        serde_json::json!({ "actor": "teller-7" }),
    )?;
    let written = tx.commit().await?.ok_or("nothing was written")?;
    println!("opened {id}: stream version is now {}", written.last_position);

    // Two writers read the same version; the second to commit loses.
    let version = store.stream_version("account", &id).await?;
    let mut first = store.begin::<Optimistic>("account", id.clone(), version);
    let mut second = store.begin::<Optimistic>("account", id.clone(), version);
    first.append(
        FundsDeposited { amount: 20 },
        serde_json::json!({ "actor": "atm" }),
    )?;
    second.append(
        FundsDeposited { amount: 5 },
        serde_json::json!({ "actor": "web" }),
    )?;
    first.commit().await?;
    match second.commit().await {
        Err(AppendError::Conflict(conflict)) => println!("second writer refused: {conflict}"),
        other => println!("unexpected: {other:?}"),
    }

    // Load the stream back, decoding each event by its kind.
    let filters = [
        EventFilter::for_aggregate(AccountOpened::KIND, "account", id.clone()),
        EventFilter::for_aggregate(FundsDeposited::KIND, "account", id.clone()),
    ];
    for event in store.load_events(&filters).await? {
        let text = match event.kind.as_str() {
            AccountOpened::KIND => format!("{:?}", event.decode::<AccountOpened>(store.codec())?),
            _ => format!("{:?}", event.decode::<FundsDeposited>(store.codec())?),
        };
        println!(
            "#{} {} {text} (metadata {})",
            event.position, event.kind, event.metadata
        );
    }
    Ok(())
}
// ANCHOR_END: main

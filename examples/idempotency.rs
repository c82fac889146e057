//! Idempotent commands: a payment sent twice with the same idempotency key
//! is charged once, and the second request is told the first outcome.
//!
//! Run with `cargo run --example idempotency`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::id::CommandId;
use sourcery::repository::{CommandError, CommandOptions, RetryPolicy};
use sourcery::store::inmemory;
use sourcery::{Aggregate, Apply, DomainEvent, EventMetadata, Handle, HandleCreate, Repository};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InvoiceIssued {
    amount: u64,
}

impl DomainEvent for InvoiceIssued {
    const KIND: &'static str = "invoice.issued";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentReceived {
    amount: u64,
}

impl DomainEvent for PaymentReceived {
    const KIND: &'static str = "invoice.payment-received";
}

#[derive(Debug, thiserror::Error)]
#[error("the payment is more than what is due")]
struct Overpaid;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Overpaid, events(InvoiceIssued, PaymentReceived))]
struct Invoice {
    due: u64,
}

impl Apply<InvoiceIssued> for Invoice {
    fn apply(&mut self, event: &InvoiceIssued) {
        self.due = event.amount;
    }
}

impl Apply<PaymentReceived> for Invoice {
    fn apply(&mut self, event: &PaymentReceived) {
        self.due -= event.amount;
    }
}

struct Issue(u64);
struct Pay(u64);

impl HandleCreate<Issue> for Invoice {
    fn handle_create(command: &Issue) -> Result<Vec<InvoiceEvent>, Overpaid> {
        Ok(vec![InvoiceIssued { amount: command.0 }.into()])
    }
}

impl Handle<Pay> for Invoice {
    fn handle(&self, command: &Pay) -> Result<Vec<InvoiceEvent>, Overpaid> {
        if command.0 > self.due {
            return Err(Overpaid);
        }
        Ok(vec![PaymentReceived { amount: command.0 }.into()])
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repository = Repository::new(inmemory::Store::<String, EventMetadata>::new());
    let invoice = "INV-42".to_string();
    repository
        .create::<Invoice, _>(&invoice, &Issue(100), EventMetadata::new())
        .await?;

    // ANCHOR: replay
    // The client's `Idempotency-Key` header names the request; its retry
    // (the first response was lost) sends the same key.
    let key = CommandId::from_key("pay/INV-42/7f3c");
    let options = || {
        CommandOptions::new().command_id(key).retry(
            RetryPolicy::new()
                .store_errors(3)
                .backoff(Duration::from_millis(10), Duration::from_secs(1)),
        )
    };
    let first = repository
        .execute_with::<Invoice, _>(&invoice, &Pay(100), EventMetadata::for_command(key), options())
        .await?;
    let retry = repository
        .execute_with::<Invoice, _>(&invoice, &Pay(100), EventMetadata::for_command(key), options())
        .await?;
    assert!(!first.replayed && retry.replayed);
    assert_eq!(retry.last_position, first.last_position);
    println!(
        "paid once at position {:?}; the retry was told the same (replayed: {})",
        retry.last_position, retry.replayed
    );
    // ANCHOR_END: replay

    // ANCHOR: fresh
    // Without the key, the second payment is a new command, decided afresh.
    let again = repository
        .execute::<Invoice, _>(&invoice, &Pay(100), EventMetadata::new())
        .await;
    match again {
        Err(CommandError::Rejected(Overpaid)) => {
            println!("a second payment without the key is refused: nothing is due");
        }
        other => return Err(format!("expected a rejection, got {other:?}").into()),
    }
    // ANCHOR_END: fresh
    assert_eq!(repository.load::<Invoice>(&invoice).await?.due, 0);
    Ok(())
}

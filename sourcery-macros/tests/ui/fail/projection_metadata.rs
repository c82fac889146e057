//! A projection whose metadata type is not the store's.

use serde::{Deserialize, Serialize};
use sourcery::store::inmemory;
use sourcery::{ApplyProjection, DomainEvent, Projection, Repository};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    amount: u64,
}
impl DomainEvent for Deposited {
    const KIND: &'static str = "account.deposited";
}

#[derive(Debug, Default, Projection)]
#[projection(events(Deposited))]
struct Totals {
    total: u64,
}

impl ApplyProjection<Deposited> for Totals {
    fn apply_projection(&mut self, _: &String, event: &Deposited, _: &()) {
        self.total += event.amount;
    }
}

async fn totals(repository: &Repository<inmemory::Store<String, serde_json::Value>>) -> u64 {
    match repository.load_projection::<Totals>().await {
        Ok(totals) => totals.total,
        Err(_) => 0,
    }
}

fn main() {
    let _ = totals;
}

//! A projection across two aggregate kinds: warehouses receive stock, orders
//! consume it, and one report follows both, in the order things happened.
//!
//! Run with `cargo run --example inventory_report`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sourcery::store::inmemory;
use sourcery::{
    Aggregate, Apply, ApplyProjection, DomainEvent, Handle, HandleCreate, Projection, Repository,
};

// ANCHOR: events
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReceived {
    sku: String,
    quantity: u32,
}

impl DomainEvent for StockReceived {
    const KIND: &'static str = "warehouse.stock-received";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    sku: String,
    quantity: u32,
}

impl DomainEvent for OrderPlaced {
    const KIND: &'static str = "order.placed";
}
// ANCHOR_END: events

// ANCHOR: aggregates
#[derive(Debug, thiserror::Error)]
enum InventoryError {
    #[error("quantities must be positive")]
    ZeroQuantity,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = InventoryError, events(StockReceived))]
struct Warehouse {
    received: u32,
}

impl Apply<StockReceived> for Warehouse {
    fn apply(&mut self, event: &StockReceived) {
        self.received += event.quantity;
    }
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = InventoryError, events(OrderPlaced))]
struct Order {
    lines: usize,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, _: &OrderPlaced) {
        self.lines += 1;
    }
}
// ANCHOR_END: aggregates

// ANCHOR: commands
struct Receive(&'static str, u32);
struct Place(&'static str, u32);

fn receive(Receive(sku, quantity): &Receive) -> Result<Vec<WarehouseEvent>, InventoryError> {
    if *quantity == 0 {
        return Err(InventoryError::ZeroQuantity);
    }
    Ok(vec![
        StockReceived {
            sku: (*sku).into(),
            quantity: *quantity,
        }
        .into(),
    ])
}

/// The first delivery opens a warehouse's stream...
impl HandleCreate<Receive> for Warehouse {
    fn handle_create(command: &Receive) -> Result<Vec<WarehouseEvent>, InventoryError> {
        receive(command)
    }
}

/// ...and later ones extend it.
impl Handle<Receive> for Warehouse {
    fn handle(&self, command: &Receive) -> Result<Vec<WarehouseEvent>, InventoryError> {
        receive(command)
    }
}

impl HandleCreate<Place> for Order {
    fn handle_create(Place(sku, quantity): &Place) -> Result<Vec<OrderEvent>, InventoryError> {
        if *quantity == 0 {
            return Err(InventoryError::ZeroQuantity);
        }
        Ok(vec![
            OrderPlaced {
                sku: (*sku).into(),
                quantity: *quantity,
            }
            .into(),
        ])
    }
}
// ANCHOR_END: commands

// ANCHOR: projection
/// Stock on hand per SKU, and which orders took it.
#[derive(Debug, Default, Projection)]
#[projection(events(StockReceived, OrderPlaced))]
struct InventoryReport {
    on_hand: BTreeMap<String, i64>,
    orders: BTreeMap<String, Vec<String>>,
}

impl ApplyProjection<StockReceived> for InventoryReport {
    fn apply_projection(&mut self, _warehouse: &String, event: &StockReceived, (): &()) {
        *self.on_hand.entry(event.sku.clone()).or_default() += i64::from(event.quantity);
    }
}

impl ApplyProjection<OrderPlaced> for InventoryReport {
    fn apply_projection(&mut self, order: &String, event: &OrderPlaced, (): &()) {
        *self.on_hand.entry(event.sku.clone()).or_default() -= i64::from(event.quantity);
        self.orders
            .entry(event.sku.clone())
            .or_default()
            .push(order.clone());
    }
}
// ANCHOR_END: projection

// ANCHOR: main
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repository = Repository::new(inmemory::Store::<String, ()>::new());
    let (north, south) = ("WH-NORTH".to_string(), "WH-SOUTH".to_string());
    let (first, second) = ("ORD-1".to_string(), "ORD-2".to_string());

    repository
        .create::<Warehouse, _>(&north, &Receive("bolt", 100), ())
        .await?;
    repository
        .create::<Warehouse, _>(&south, &Receive("nut", 40), ())
        .await?;
    repository
        .create::<Order, _>(&first, &Place("bolt", 30), ())
        .await?;
    repository
        .execute::<Warehouse, _>(&south, &Receive("bolt", 10), ())
        .await?;
    repository
        .create::<Order, _>(&second, &Place("nut", 15), ())
        .await?;
    println!("two warehouses stocked, two orders placed");

    // ANCHOR: load_projection
    let report: InventoryReport = repository.load_projection().await?;
    for (sku, quantity) in &report.on_hand {
        println!(
            "{sku:>5}: {quantity:>4} on hand, taken by {:?}",
            report.orders.get(sku).cloned().unwrap_or_default()
        );
    }
    assert_eq!(report.on_hand.get("bolt"), Some(&80));
    assert_eq!(report.on_hand.get("nut"), Some(&25));
    assert_eq!(report.orders.get("nut"), Some(&vec![second.clone()]));
    assert_eq!(report.orders.get("bolt"), Some(&vec![first.clone()]));
    // ANCHOR_END: load_projection

    let south_state = repository.load::<Warehouse>(&south).await?;
    println!("{south} received {} items in all", south_state.received);
    assert_eq!(south_state.received, 50);
    assert_eq!(repository.load::<Order>(&second).await?.lines, 1);
    Ok(())
}
// ANCHOR_END: main

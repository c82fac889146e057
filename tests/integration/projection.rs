//! Projections: declared events, the load-time builder, several aggregate
//! kinds, position order, once-only application and decode errors.

use serde::{Deserialize, Serialize};
use sourcery::repository::LoadError;
use sourcery::store::{EventStore, NonEmpty, PersistableEvent, inmemory};
use sourcery::test::RepositoryTestExt;
use sourcery::{Aggregate, Apply, ApplyProjection, DomainEvent, Projection, Repository};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stocked {
    sku: String,
    quantity: u32,
}

impl DomainEvent for Stocked {
    const KIND: &'static str = "warehouse.stocked";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ordered {
    sku: String,
    quantity: u32,
}

impl DomainEvent for Ordered {
    const KIND: &'static str = "order.placed";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cancelled;

impl DomainEvent for Cancelled {
    const KIND: &'static str = "order.cancelled";
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Never, events(Stocked))]
struct Warehouse;

impl Apply<Stocked> for Warehouse {
    fn apply(&mut self, _: &Stocked) {}
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Never, events(Ordered, Cancelled))]
struct Order;

impl Apply<Ordered> for Order {
    fn apply(&mut self, _: &Ordered) {}
}

impl Apply<Cancelled> for Order {
    fn apply(&mut self, _: &Cancelled) {}
}

/// Records what it saw, in order, to check order and multiplicity.
#[derive(Debug, Default, Projection)]
#[projection(events(Stocked, Ordered))]
struct Journal {
    seen: Vec<String>,
}

impl ApplyProjection<Stocked> for Journal {
    fn apply_projection(&mut self, id: &String, event: &Stocked, (): &()) {
        self.seen.push(format!("{id}:+{}{}", event.quantity, event.sku));
    }
}

impl ApplyProjection<Ordered> for Journal {
    fn apply_projection(&mut self, id: &String, event: &Ordered, (): &()) {
        self.seen.push(format!("{id}:-{}{}", event.quantity, event.sku));
    }
}

impl ApplyProjection<OrderEvent> for Journal {
    fn apply_projection(&mut self, id: &String, event: &OrderEvent, (): &()) {
        let text = match event {
            OrderEvent::Ordered(o) => format!("{id}:order {}{}", o.quantity, o.sku),
            OrderEvent::Cancelled(_) => format!("{id}:cancel"),
        };
        self.seen.push(text);
    }
}

type Store = inmemory::Store<String, ()>;

// ANCHOR: seed
async fn history() -> Repository<Store> {
    let repository = Repository::new(Store::new());
    let stock = |sku: &str, quantity| Stocked {
        sku: sku.into(),
        quantity,
    };
    let order = |sku: &str, quantity| Ordered {
        sku: sku.into(),
        quantity,
    };
    let seeded = [
        repository
            .seed::<Warehouse, _>(&"w1".into(), &[stock("a", 10)], ())
            .await
            .is_ok(),
        repository
            .seed::<Order, _>(&"o1".into(), &[order("a", 2)], ())
            .await
            .is_ok(),
        repository
            .seed::<Warehouse, _>(&"w2".into(), &[stock("b", 5), stock("a", 1)], ())
            .await
            .is_ok(),
        repository
            .seed::<Order, _>(&"o1".into(), &[Cancelled], ())
            .await
            .is_ok(),
        repository
            .seed::<Order, _>(&"o2".into(), &[order("b", 3)], ())
            .await
            .is_ok(),
    ];
    assert!(seeded.iter().all(|ok| *ok));
    repository
}
// ANCHOR_END: seed

#[tokio::test]
async fn declared_events_arrive_across_aggregate_kinds_in_position_order() {
    let repository = history().await;
    let journal: Journal = repository.load_projection().await.expect("load");
    assert_eq!(journal.seen, ["w1:+10a", "o1:-2a", "w2:+5b", "w2:+1a", "o2:-3b"]);
}

// ANCHOR: builder
#[tokio::test]
async fn the_builder_picks_events_per_kind_per_enum_and_per_stream() {
    let repository = history().await;

    let only_orders: Journal = repository
        .projection()
        .event::<Ordered>()
        .load()
        .await
        .expect("load");
    assert_eq!(only_orders.seen, ["o1:-2a", "o2:-3b"]);

    let enum_events: Journal = repository
        .projection()
        .events::<OrderEvent>()
        .load()
        .await
        .expect("load");
    assert_eq!(enum_events.seen, ["o1:order 2a", "o1:cancel", "o2:order 3b"]);

    let one_stream: Journal = repository
        .projection()
        .event_for::<Warehouse, Stocked>(&"w2".into())
        .load()
        .await
        .expect("load");
    assert_eq!(one_stream.seen, ["w2:+5b", "w2:+1a"]);

    let (one_order, last) = repository
        .projection::<Journal>()
        .events_for::<Order>(&"o1".into())
        .load_with_position()
        .await
        .expect("load");
    assert_eq!(one_order.seen, ["o1:order 2a", "o1:cancel"]);
    assert_eq!(last, Some(5));

    let nothing: Journal = repository.projection().load().await.expect("load");
    assert!(nothing.seen.is_empty());
}
// ANCHOR_END: builder

#[tokio::test]
async fn overlapping_choices_apply_each_event_once() {
    let repository = history().await;
    let journal: Journal = repository
        .projection()
        .event::<Stocked>()
        .event_for::<Warehouse, Stocked>(&"w1".into())
        .with_declared()
        .load()
        .await
        .expect("load");
    assert_eq!(journal.seen, ["w1:+10a", "o1:-2a", "w2:+5b", "w2:+1a", "o2:-3b"]);
}

#[tokio::test]
async fn an_event_that_does_not_decode_fails_the_load_naming_it() {
    let repository = history().await;
    let broken = PersistableEvent::new(Ordered::KIND, b"not json".to_vec(), ());
    let written = repository
        .store()
        .append("order", &"o3".into(), None, NonEmpty::new(broken))
        .await;
    assert!(written.is_ok());
    match repository.load_projection::<Journal>().await {
        Err(LoadError::Decode(error)) => {
            assert_eq!(error.event_kind, "order.placed");
            assert_eq!(error.aggregate_id, "o3");
            assert_eq!(error.position, 7);
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

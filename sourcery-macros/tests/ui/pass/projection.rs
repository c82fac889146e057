//! Projections: no attributes at all, events mixing a single event and an
//! aggregate's event enum, and generics.

use serde::{Deserialize, Serialize};
use sourcery::projection::ProjectionEvents;
use sourcery::store::inmemory;
use sourcery::{Aggregate, Apply, ApplyProjection, DomainEvent, Projection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;
impl DomainEvent for Opened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tagged;
impl DomainEvent for Tagged {
    const KIND: &'static str = "tag.tagged";
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened))]
struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

/// No attributes: `String` ids, `()` metadata, nothing declared.
#[derive(Debug, Default, Projection)]
struct Plain;

/// Declares an aggregate's whole enum and a single event.
#[derive(Debug, Default, Projection)]
#[projection(events(AccountEvent, Tagged))]
struct Activity<T: Default + Send + 'static> {
    seen: Vec<T>,
}

impl<T: Default + Send + 'static> ApplyProjection<AccountEvent> for Activity<T> {
    fn apply_projection(&mut self, _: &String, _: &AccountEvent, (): &()) {
        self.seen.push(T::default());
    }
}
impl<T: Default + Send + 'static> ApplyProjection<Tagged> for Activity<T> {
    fn apply_projection(&mut self, _: &String, _: &Tagged, (): &()) {}
}

/// Explicit id, metadata and kind; a struct generic named `S`, like the
/// store parameter of `declare`.
#[derive(Debug, Default, Projection)]
#[projection(id = u64, metadata = String, kind = "per-id", events(Tagged))]
struct PerId<S: Default + Send + 'static>(S);

impl<S: Default + Send + 'static> ApplyProjection<Tagged> for PerId<S> {
    fn apply_projection(&mut self, _: &u64, _: &Tagged, _: &String) {}
}

fn main() {
    assert_eq!(<Plain as Projection>::KIND, "plain");
    assert!(ProjectionEvents::<inmemory::Store<String, ()>, Plain>::declared().is_empty());

    assert_eq!(<Activity<u8> as Projection>::KIND, "activity");
    let filters = ProjectionEvents::<inmemory::Store<String, ()>, Activity<u8>>::declared().filters();
    let kinds: Vec<&str> = filters.iter().filter_map(|filter| filter.event_kind()).collect();
    assert_eq!(kinds, ["account.opened", "tag.tagged"]);

    assert_eq!(<PerId<u8> as Projection>::KIND, "per-id");
    assert_eq!(ProjectionEvents::<inmemory::Store<u64, String>, PerId<u8>>::declared().filters().len(), 1);
}

//! `#[sourcery(crate = "...")]`: the derives used against `sourcery_core`
//! directly, with no `sourcery` facade in sight.

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Apply};
use sourcery_core::event::DomainEvent;
use sourcery_core::projection::{ApplyProjection, Projection, ProjectionEvents};
use sourcery_core::store::inmemory;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pinged;
impl DomainEvent for Pinged {
    const KIND: &'static str = "ping.pinged";
}

#[derive(Debug, Default, sourcery_macros::Aggregate)]
#[sourcery(crate = "::sourcery_core")]
#[aggregate(id = String, error = std::fmt::Error, events(Pinged))]
struct Ping(u32);

impl Apply<Pinged> for Ping {
    fn apply(&mut self, _: &Pinged) {
        self.0 += 1;
    }
}

#[derive(Debug, Default, sourcery_macros::Projection)]
#[sourcery(crate = "sourcery_core")]
#[projection(events(PingEvent))]
struct Pings(u32);

impl ApplyProjection<PingEvent> for Pings {
    fn apply_projection(&mut self, _: &String, _: &PingEvent, (): &()) {
        self.0 += 1;
    }
}

fn main() {
    let mut ping = Ping::default();
    Aggregate::apply(&mut ping, &Pinged.into());
    assert_eq!(ping.0, 1);
    assert_eq!(<Pings as Projection>::KIND, "pings");
    assert_eq!(ProjectionEvents::<inmemory::Store<String, ()>, Pings>::declared().filters().len(), 1);
}

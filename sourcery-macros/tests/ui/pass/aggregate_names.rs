//! Events that share a final name get distinct variants; `kind` and
//! `event_enum` (string or bare name) override the defaults.

use serde::{Deserialize, Serialize};
use sourcery::event::DecodeEvent;
use sourcery::{Aggregate, Apply, DomainEvent};

mod a {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Created;
    impl sourcery::DomainEvent for Created {
        const KIND: &'static str = "a.created";
    }
}

mod b {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Created(pub u8);
    impl sourcery::DomainEvent for Created {
        const KIND: &'static str = "b.created";
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deleted;
impl DomainEvent for Deleted {
    const KIND: &'static str = "deleted";
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = u64, error = std::fmt::Error, events(a::Created, b::Created, Deleted))]
#[aggregate(kind = "thing.v2", event_enum = "Change", snapshot_version = 3)]
struct Thing {
    log: Vec<&'static str>,
}

impl Apply<a::Created> for Thing {
    fn apply(&mut self, _: &a::Created) {
        self.log.push("a");
    }
}
impl Apply<b::Created> for Thing {
    fn apply(&mut self, _: &b::Created) {
        self.log.push("b");
    }
}
impl Apply<Deleted> for Thing {
    fn apply(&mut self, _: &Deleted) {
        self.log.push("deleted");
    }
}

/// A bare name works for `event_enum` too.
#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Deleted), event_enum = Gone)]
struct HTTPSession;

impl Apply<Deleted> for HTTPSession {
    fn apply(&mut self, _: &Deleted) {}
}

fn main() {
    let mut thing = Thing::default();
    for change in [Change::ACreated(a::Created), Change::BCreated(b::Created(1)), Change::Deleted(Deleted)] {
        Aggregate::apply(&mut thing, &change);
    }
    assert_eq!(thing.log, ["a", "b", "deleted"]);
    assert_eq!(<Thing as Aggregate>::KIND, "thing.v2");
    assert_eq!(<Thing as Aggregate>::SNAPSHOT_VERSION, 3);
    assert_eq!(<HTTPSession as Aggregate>::SNAPSHOT_VERSION, 1);
    assert_eq!(Change::event_kinds(), ["a.created", "b.created", "deleted"]);

    let _: Gone = Gone::Deleted(Deleted);
    assert_eq!(<HTTPSession as Aggregate>::KIND, "http-session");
}

//! The derive's attributes are fine; the types are not. The compiler's
//! errors point at the event in `events(..)`.
use serde::{Deserialize, Serialize};
use sourcery::{Aggregate, Apply, DomainEvent};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;
impl DomainEvent for Opened {
    const KIND: &'static str = "account.opened";
}

// Not a domain event.
#[derive(Debug, Clone, PartialEq)]
struct Closed;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened, Closed))]
struct NotAnEvent;

impl Apply<Opened> for NotAnEvent {
    fn apply(&mut self, _: &Opened) {}
}
impl Apply<Closed> for NotAnEvent {
    fn apply(&mut self, _: &Closed) {}
}

// `Apply<Opened>` is missing.
#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened))]
struct MissingApply;

// Two events under one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reopened;
impl DomainEvent for Reopened {
    const KIND: &'static str = "account.opened";
}

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened, Reopened))]
struct SharedKind;

impl Apply<Opened> for SharedKind {
    fn apply(&mut self, _: &Opened) {}
}
impl Apply<Reopened> for SharedKind {
    fn apply(&mut self, _: &Reopened) {}
}

fn main() {}

// A projection that lists an event it does not apply.
#[derive(Default, sourcery::Projection)]
#[projection(events(Opened))]
struct NoApplyProjection;

// A renamed event whose alias is another event's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.reopened", aliases("account.opened"))]
struct Renamed;

#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened, Renamed))]
struct SharedAlias;

impl Apply<Opened> for SharedAlias {
    fn apply(&mut self, _: &Opened) {}
}
impl Apply<Renamed> for SharedAlias {
    fn apply(&mut self, _: &Renamed) {}
}

// A retired kind that an event still has.
#[derive(Default, Aggregate)]
#[aggregate(id = String, error = std::fmt::Error, events(Opened), retired("account.opened"))]
struct RetiredInUse;

impl Apply<Opened> for RetiredInUse {
    fn apply(&mut self, _: &Opened) {}
}

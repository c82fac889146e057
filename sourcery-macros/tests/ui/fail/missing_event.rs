//! A handler returns an event its aggregate's `events(..)` does not list.

use serde::{Deserialize, Serialize};
use sourcery::{Aggregate, Apply, DomainEvent, Handle};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;
impl DomainEvent for Opened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frozen;
impl DomainEvent for Frozen {
    const KIND: &'static str = "account.frozen";
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::convert::Infallible, events(Opened))]
struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

struct Freeze;

impl Handle<Freeze> for Account {
    fn handle(&self, _: &Freeze) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(vec![Frozen.into()])
    }
}

fn main() {}

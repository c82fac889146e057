//! A generic aggregate in a crate that denies warnings and missing docs:
//! the generated enum and impls must stay quiet.
#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]

use std::fmt::Debug;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use sourcery::{Aggregate, Apply, DomainEvent};

/// Something was counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted;
impl DomainEvent for Counted {
    const KIND: &'static str = "counter.counted";
}

/// The counter was reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reset;
impl DomainEvent for Reset {
    const KIND: &'static str = "counter.reset";
}

/// A counter of anything, keyed by `Id`.
#[derive(Debug, Aggregate)]
#[aggregate(id = Id, error = std::convert::Infallible, events(Counted, Reset))]
pub struct Counter<Id, const STEP: u64 = 1>
where
    Id: Clone + Debug + Send + Sync + 'static,
{
    count: u64,
    id: PhantomData<fn() -> Id>,
}

impl<Id, const STEP: u64> Default for Counter<Id, STEP>
where
    Id: Clone + Debug + Send + Sync + 'static,
{
    fn default() -> Self {
        Self { count: 0, id: PhantomData }
    }
}

impl<Id, const STEP: u64> Apply<Counted> for Counter<Id, STEP>
where
    Id: Clone + Debug + Send + Sync + 'static,
{
    fn apply(&mut self, _: &Counted) {
        self.count += STEP;
    }
}

impl<Id, const STEP: u64> Apply<Reset> for Counter<Id, STEP>
where
    Id: Clone + Debug + Send + Sync + 'static,
{
    fn apply(&mut self, _: &Reset) {
        self.count = 0;
    }
}

fn main() {
    let mut counter = Counter::<u64, 2>::default();
    for event in [CounterEvent::from(Counted), Counted.into(), Reset.into(), Counted.into()] {
        Aggregate::apply(&mut counter, &event);
    }
    assert_eq!(counter.count, 2);
    assert_eq!(<Counter<String> as Aggregate>::KIND, "counter");
    let _: <Counter<String> as Aggregate>::Id = String::new();
}

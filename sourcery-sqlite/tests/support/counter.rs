//! A snapshotted aggregate for the tests and the benchmark, written out by
//! hand (the derive macros live in the facade crate): a counter whose state
//! remembers how many events it folded and the last amount, so a missed or
//! repeated event shows.

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::{Aggregate, Handle, HandleCreate};
use sourcery_core::codec::Codec;
use sourcery_core::event::{DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent};

/// One event of the counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Added {
    pub(crate) amount: u64,
}

impl DomainEvent for Added {
    const KIND: &'static str = "counter.added";
}

/// The counter's event enum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CounterEvent(pub(crate) Added);

impl EventPayload for CounterEvent {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn schema_version(&self) -> u32 {
        self.0.schema_version()
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        self.0.encode_with(codec)
    }
}

impl DecodeEvent for CounterEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Added::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        Ok(Added::decode_with(codec, event)?.map(CounterEvent))
    }
}

/// The counter never rejects a command.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub(crate) struct Never;

/// Adds `amount`, `times` times (one event each).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Add {
    pub(crate) amount: u64,
    pub(crate) times: usize,
}

impl Add {
    fn events(self) -> Vec<CounterEvent> {
        vec![CounterEvent(Added { amount: self.amount }); self.times]
    }
}

/// The aggregate.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counter {
    pub(crate) total: u64,
    pub(crate) events: u64,
    pub(crate) last: u64,
}

impl Aggregate for Counter {
    const KIND: &'static str = "counter";
    type Id = String;
    type Event = CounterEvent;
    type Error = Never;

    fn apply(&mut self, event: &CounterEvent) {
        self.total = self.total.wrapping_add(event.0.amount);
        self.events += 1;
        self.last = event.0.amount;
    }
}

impl HandleCreate<Add> for Counter {
    fn handle_create(command: &Add) -> Result<Vec<CounterEvent>, Never> {
        Ok(command.events())
    }
}

impl Handle<Add> for Counter {
    fn handle(&self, command: &Add) -> Result<Vec<CounterEvent>, Never> {
        Ok(command.events())
    }
}

//! Aggregates and the commands they handle.
//!
//! An aggregate is a `Default` struct whose state is rebuilt by applying its
//! events in order. It decides, from that state, which events a command
//! produces. Applying never fails; deciding may.
//!
//! `#[derive(Aggregate)]` writes the [`Aggregate`] impl and the event enum;
//! you write one [`Apply`] impl per event and one [`Handle`] (or
//! [`HandleCreate`]) impl per command:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::aggregate::{Aggregate, Apply, Handle, HandleCreate};
//! use sourcery_core::event::DomainEvent;
//! # use sourcery_core::codec::Codec;
//! # use sourcery_core::event::{DecodeEvent, DecodeFailure, RawEvent, EventPayload};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Opened { owner: String }
//! impl DomainEvent for Opened { const KIND: &'static str = "account.opened"; }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//! impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
//!
//! #[derive(Debug, Default)]
//! struct Account { balance: u64 }
//!
//! #[derive(Debug, thiserror::Error, PartialEq)]
//! #[error("a deposit must be positive")]
//! struct ZeroDeposit;
//!
//! // What `#[derive(Aggregate)]` writes for
//! // `#[aggregate(id = String, error = ZeroDeposit, events(Opened, Deposited))]`:
//! # #[derive(Debug, Clone, PartialEq)]
//! # enum AccountEvent { Opened(Opened), Deposited(Deposited) }
//! # impl From<Opened> for AccountEvent { fn from(e: Opened) -> Self { Self::Opened(e) } }
//! # impl From<Deposited> for AccountEvent { fn from(e: Deposited) -> Self { Self::Deposited(e) } }
//! # impl EventPayload for AccountEvent {
//! #     fn kind(&self) -> &'static str { match self { Self::Opened(e) => e.kind(), Self::Deposited(e) => e.kind() } }
//! #     fn schema_version(&self) -> u32 { match self { Self::Opened(e) => e.schema_version(), Self::Deposited(e) => e.schema_version() } }
//! #     fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
//! #         match self { Self::Opened(e) => e.encode_with(codec), Self::Deposited(e) => e.encode_with(codec) }
//! #     }
//! # }
//! # impl DecodeEvent for AccountEvent {
//! #     fn event_kinds() -> &'static [&'static str] { &[Opened::KIND, Deposited::KIND] }
//! #     fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
//! #         if let Some(e) = Opened::decode_with(codec, event)? { return Ok(Some(Self::Opened(e))); }
//! #         Ok(Deposited::decode_with(codec, event)?.map(Self::Deposited))
//! #     }
//! # }
//! impl Aggregate for Account {
//!     const KIND: &'static str = "account";
//!     type Id = String;
//!     type Event = AccountEvent;
//!     type Error = ZeroDeposit;
//!
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Opened(e) => Apply::apply(self, e),
//!             AccountEvent::Deposited(e) => Apply::apply(self, e),
//!         }
//!     }
//! }
//!
//! // What you write:
//! impl Apply<Opened> for Account {
//!     fn apply(&mut self, _: &Opened) {}
//! }
//! impl Apply<Deposited> for Account {
//!     fn apply(&mut self, event: &Deposited) { self.balance += event.amount; }
//! }
//!
//! struct Open { owner: String }
//! impl HandleCreate<Open> for Account {
//!     fn handle_create(command: &Open) -> Result<Vec<AccountEvent>, ZeroDeposit> {
//!         Ok(vec![Opened { owner: command.owner.clone() }.into()])
//!     }
//! }
//!
//! struct Deposit { amount: u64 }
//! impl Handle<Deposit> for Account {
//!     fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, ZeroDeposit> {
//!         if command.amount == 0 {
//!             return Err(ZeroDeposit);
//!         }
//!         Ok(vec![Deposited { amount: command.amount }.into()])
//!     }
//! }
//!
//! let mut account = Account::default();
//! for event in account.handle(&Deposit { amount: 5 }).unwrap() {
//!     Aggregate::apply(&mut account, &event);
//! }
//! assert_eq!(account.balance, 5);
//! assert_eq!(account.handle(&Deposit { amount: 0 }), Err(ZeroDeposit));
//! ```

use std::fmt::Debug;

use crate::event::{DecodeEvent, EventPayload};

/// A consistency boundary whose state is the fold of its events.
///
/// Derive it: `#[derive(Aggregate)]` with
/// `#[aggregate(id = T, error = E, events(A, B, ..))]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    note = "derive it: `#[derive(Aggregate)]` with `#[aggregate(id = .., error = .., events(..))]`"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The kind of the aggregate's streams, e.g. `"account"`. Stored with
    /// every event; changing it orphans the stored streams.
    const KIND: &'static str;

    /// The aggregate's id type.
    type Id: Clone + Debug + Send + Sync + 'static;

    /// The sum of the aggregate's events (the derive writes it).
    type Event: EventPayload + DecodeEvent + Debug + Send + Sync + 'static;

    /// Why the aggregate rejects a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The version of the state's shape in snapshots. Bump it when the
    /// state's fields change in a way its serde encoding does not absorb:
    /// snapshots of another version are ignored (the aggregate is replayed
    /// from its events and the next snapshot replaces them). Only used by
    /// repositories with snapshots
    /// ([`Repository::with_snapshots`](crate::repository::Repository::with_snapshots)).
    const SNAPSHOT_VERSION: u32 = 1;

    /// Event kinds the aggregate deliberately ignores: kinds of events it
    /// no longer has (`#[aggregate(retired(".."))]`). Loading skips them;
    /// they still count for the stream's version. Any other kind the event
    /// enum does not decode is an error, never a skip. None by default.
    const RETIRED_KINDS: &'static [&'static str] = &[];

    /// Folds one event into the state. Never fails: an event is a fact.
    fn apply(&mut self, event: &Self::Event);
}

/// How an aggregate's state changes when event `E` happened.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply `{E}`",
    note = "implement `Apply<{E}> for {Self}`: every event listed in `#[aggregate(events(..))]` needs one"
)]
pub trait Apply<E> {
    /// Folds `event` into the state.
    fn apply(&mut self, event: &E);
}

/// How an existing aggregate decides on command `C`.
///
/// Returns the events that happen (none is fine: nothing is written) or
/// the aggregate's error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle the command `{C}`",
    note = "implement `Handle<{C}> for {Self}`; for a command that creates the aggregate, implement `HandleCreate<{C}>` and call `Repository::create`"
)]
pub trait Handle<C>: Aggregate {
    /// Decides which events `command` produces from the current state.
    ///
    /// # Errors
    ///
    /// The aggregate's error when it rejects the command.
    fn handle(&self, command: &C) -> Result<Vec<Self::Event>, Self::Error>;
}

/// How a new aggregate comes into being from command `C`.
///
/// Creation commands only make sense on a stream with no events; the
/// repository writes their events only if the stream is still empty, so two
/// racing creations of the same id cannot both succeed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be created by the command `{C}`",
    note = "implement `HandleCreate<{C}> for {Self}`"
)]
pub trait HandleCreate<C>: Aggregate {
    /// Decides which events create the aggregate.
    ///
    /// # Errors
    ///
    /// The aggregate's error when it rejects the command.
    fn handle_create(command: &C) -> Result<Vec<Self::Event>, Self::Error>;
}

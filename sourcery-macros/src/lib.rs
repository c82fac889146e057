//! Derive macros for [Sourcery](https://docs.rs/sourcery-es): `#[derive(DomainEvent)]`,
//! `#[derive(Aggregate)]` and `#[derive(Projection)]`.
//!
//! Use them through the `sourcery` crate, which re-exports both next to the
//! traits they implement:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery::{Aggregate, Apply, DomainEvent};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Deposited { amount: u64 }
//! impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Withdrawn { amount: u64 }
//! impl DomainEvent for Withdrawn { const KIND: &'static str = "account.withdrawn"; }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("insufficient funds")]
//! struct InsufficientFunds;
//!
//! #[derive(Debug, Default, Aggregate)]
//! #[aggregate(id = String, error = InsufficientFunds, events(Deposited, Withdrawn))]
//! struct BankAccount { balance: u64 }
//!
//! impl Apply<Deposited> for BankAccount {
//!     fn apply(&mut self, event: &Deposited) { self.balance += event.amount; }
//! }
//! impl Apply<Withdrawn> for BankAccount {
//!     fn apply(&mut self, event: &Withdrawn) { self.balance -= event.amount; }
//! }
//!
//! assert_eq!(<BankAccount as Aggregate>::KIND, "bank-account");
//! let mut account = BankAccount::default();
//! let event: BankAccountEvent = Deposited { amount: 5 }.into();
//! Aggregate::apply(&mut account, &event);
//! assert_eq!(account.balance, 5);
//! ```
//!
//! Generated code names the traits by the absolute path `::sourcery::..`.
//! When the crate is known by another name (renamed in `Cargo.toml`, or
//! `sourcery_core` used directly), say so with
//! `#[sourcery(crate = "::other_name")]` on the struct.

mod aggregate;
mod attr;
mod event;
mod naming;
mod projection;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `Aggregate` for a struct and writes its event enum.
///
/// ```text
/// #[derive(Aggregate)]
/// #[aggregate(id = T, error = E, events(A, b::B, ..))]
/// #[aggregate(kind = "bank-account", event_enum = "AccountEvent")] // optional
/// #[aggregate(snapshot_version = 2, retired("account.audited"))]     // optional
/// ```
///
/// - `id = T`: the aggregate's id type (`Aggregate::Id`).
/// - `error = E`: the error its command handlers return (`Aggregate::Error`).
/// - `events(A, b::B, ..)`: the domain events of its streams, each a type
///   that implements `DomainEvent`, listed once.
/// - `kind = "..."`: the stream kind (`Aggregate::KIND`); by default the
///   struct's name in kebab-case (`BankAccount` → `"bank-account"`).
/// - `event_enum = "Name"`: the event enum's name; by default `{Struct}Event`.
/// - `snapshot_version = N`: `Aggregate::SNAPSHOT_VERSION`; by default 1.
///   Bump it when the state's serialized shape changes, so older snapshots
///   are ignored.
/// - `retired("kind", ..)`: `Aggregate::RETIRED_KINDS`, stored kinds of
///   events the aggregate no longer has. Loading skips them (they still
///   count for the stream's version); any other kind the enum does not
///   decode is an error.
///
/// It writes, beside the struct:
///
/// - the event enum (`#[derive(Debug, Clone, PartialEq)]`, with the
///   struct's visibility) with one tuple variant per event. A variant is
///   named after the last segment of the event's path; events whose names
///   clash take as many leading segments as they need to differ, in
///   `UpperCamelCase` (`a::Created`, `b::Created` → `ACreated`, `BCreated`);
/// - `From<A>` for the enum, for each event;
/// - `EventPayload` and `DecodeEvent` for the enum: it stores each variant
///   under its event's `KIND` and `VERSION`, and decodes by dispatching on
///   the stored kind, aliases included, upcasting older versions (an
///   unknown kind decodes to `None`, which loading reports as an error);
/// - a compile-time check that every stored kind (each event's `KIND` and
///   `ALIASES`, the retired kinds) belongs to one event only: the error
///   names both events and the kind;
/// - the `Aggregate` impl, whose `apply` calls `Apply<A>` for each event:
///   implement `Apply<A> for YourStruct` for every listed event.
///
/// Generics on the struct are carried over to the `Aggregate` impl; the
/// event enum is not generic, so the events must be concrete types.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery::{Aggregate, Apply, DomainEvent};
///
/// mod v1 {
///     #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
///     pub struct Created;
///     impl sourcery::DomainEvent for Created { const KIND: &'static str = "doc.created.v1"; }
/// }
/// mod v2 {
///     #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
///     pub struct Created { pub title: String }
///     impl sourcery::DomainEvent for Created { const KIND: &'static str = "doc.created.v2"; }
/// }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(id = u64, error = std::convert::Infallible, events(v1::Created, v2::Created))]
/// #[aggregate(kind = "document", event_enum = "DocumentChange")]
/// struct Document { title: Option<String> }
///
/// impl Apply<v1::Created> for Document {
///     fn apply(&mut self, _: &v1::Created) { self.title = Some(String::new()); }
/// }
/// impl Apply<v2::Created> for Document {
///     fn apply(&mut self, event: &v2::Created) { self.title = Some(event.title.clone()); }
/// }
///
/// let change = DocumentChange::V2Created(v2::Created { title: "Notes".into() });
/// let mut document = Document::default();
/// Aggregate::apply(&mut document, &change);
/// assert_eq!(document.title.as_deref(), Some("Notes"));
/// assert_eq!(<Document as Aggregate>::KIND, "document");
/// ```
///
/// Wrong attributes are compile errors that point at the attribute.
#[proc_macro_derive(Aggregate, attributes(aggregate, sourcery))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `DomainEvent` for a struct (or enum).
///
/// ```text
/// #[derive(DomainEvent)]
/// #[event(kind = "account.funds-deposited")]
/// #[event(aliases("account.deposited"), version = 2, upcast = path)] // optional
/// ```
///
/// - `kind = "..."`: `DomainEvent::KIND`, the stable name new events are
///   stored under.
/// - `aliases("..", ..)`: `DomainEvent::ALIASES`, the kinds it was stored
///   under before a rename. Loads select and decode them as this event.
/// - `version = N`: `DomainEvent::VERSION`, the version of the event's
///   shape (1 by default), stored with every event written.
/// - `upcast = path`: `DomainEvent::upcast`, a function
///   `fn(&mut UpcastStep<'_>) -> Result<(), UpcastError>` that turns a
///   payload stored at `step.from_version()` into the next version.
///   Required with `version` above 1.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery::DomainEvent;
/// use sourcery::event::{UpcastError, UpcastStep};
///
/// /// v1 stored `{"amount": 5}` under "account.deposited"; v2 is in cents.
/// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(kind = "account.funds-deposited", aliases("account.deposited"))]
/// #[event(version = 2, upcast = euros_to_cents)]
/// struct FundsDeposited { cents: u64 }
///
/// fn euros_to_cents(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
///     let value = step.json_mut()?;
///     let euros = value["amount"].as_u64().ok_or_else(|| UpcastError::invalid("no `amount`"))?;
///     *value = serde_json::json!({ "cents": euros * 100 });
///     Ok(())
/// }
///
/// assert_eq!(FundsDeposited::KIND, "account.funds-deposited");
/// assert_eq!(FundsDeposited::ALIASES, ["account.deposited"]);
/// assert_eq!(FundsDeposited::VERSION, 2);
/// ```
#[proc_macro_derive(DomainEvent, attributes(event, sourcery))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `Projection` for a struct.
///
/// ```text
/// #[derive(Projection)]
/// #[projection(id = T, metadata = M, kind = "...", events(A, B, ..))] // all optional
/// ```
///
/// - `id = T`: the aggregate id type of the streams it reads; `String` by
///   default.
/// - `metadata = M`: the metadata type of the store it reads; `()` by
///   default.
/// - `kind = "..."`: its stable name (`Projection::KIND`); by default the
///   struct's name in kebab-case.
/// - `events(A, B, ..)`: what it consumes when loaded without a builder.
///   Each entry is a domain event or an aggregate's event enum (all of that
///   aggregate's events); the projection needs `ApplyProjection<A>` for
///   each. Without `events(..)`, `Projection::declare` keeps its default
///   (nothing declared) and the caller picks events at load time.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sourcery::{ApplyProjection, DomainEvent, Projection};
/// use sourcery::projection::ProjectionEvents;
/// use sourcery::store::inmemory;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct Deposited { amount: u64 }
/// impl DomainEvent for Deposited { const KIND: &'static str = "account.deposited"; }
///
/// #[derive(Debug, Default, Projection)]
/// #[projection(events(Deposited))]
/// struct TotalDeposits { total: u64 }
///
/// impl ApplyProjection<Deposited> for TotalDeposits {
///     fn apply_projection(&mut self, _: &String, event: &Deposited, _: &()) {
///         self.total += event.amount;
///     }
/// }
///
/// assert_eq!(<TotalDeposits as Projection>::KIND, "total-deposits");
/// let declared = ProjectionEvents::<inmemory::Store<String, ()>, TotalDeposits>::declared();
/// assert_eq!(declared.filters().len(), 1);
/// ```
#[proc_macro_derive(Projection, attributes(projection, sourcery))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    projection::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

//! Event versioning: stored events outlive the code that wrote them.
//!
//! Two older releases of a bank account wrote events to a SQLite file; today's
//! code loads them all, from one stream, together with its own:
//!
//! - deposits: release 1 stored whole euros under `account.deposited`;
//!   release 2 renamed the kind to `account.funds-deposited` and stored cents
//!   (schema version 2); today's version 3 nests the cents in `money`, with a
//!   currency. An alias reads the old kind; two upcast steps turn a v1 payload
//!   into v2, then v3.
//! - `account.opened` changed shape in a way serde absorbs
//!   (`#[serde(from = ..)]`), so it kept version 1.
//! - `account.withdrawn` gained an optional field: a serde default.
//! - `account.audited` is no longer used: the aggregate retires the kind.
//! - An aggregate that forgot the alias fails to load with a typed error
//!   naming the event, never skips it.
//!
//! Run with `cargo run --example versioned_events`.

use std::error::Error;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sourcery::concurrency::Unchecked;
use sourcery::event::{DecodeFailure, UpcastError, UpcastStep, upcast};
use sourcery::repository::LoadError;
use sourcery::store::{EventFilter, EventStore, NonEmpty, PersistableEvent, sqlite};
use sourcery::{Aggregate, Apply, DomainEvent, Repository};

// ANCHOR: deposit
/// A deposit. Release 1 stored `{"amount": 5}` (whole euros) under
/// `account.deposited`; release 2 renamed the kind and stored
/// `{"cents": 500}` (version 2); version 3 stores
/// `{"money": {"cents": 500, "currency": "EUR"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.funds-deposited", aliases("account.deposited"))]
#[event(version = 3, upcast = deposit_steps)]
struct FundsDeposited {
    money: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Money {
    cents: u64,
    currency: String,
}

// ANCHOR_END: deposit

// ANCHOR: deposit_steps
/// One step per version, on the stored JSON: a v1 payload goes through
/// `1` then `2`, a v2 payload through `2`, a v3 payload through none.
fn deposit_steps(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
    let from = step.from_version();
    let value = step.json_mut()?;
    match from {
        // v1 → v2: whole euros became cents.
        1 => {
            let euros = value["amount"]
                .as_u64()
                .ok_or_else(|| UpcastError::invalid("`amount` is not a number"))?;
            *value = json!({ "cents": euros * 100 });
        }
        // v2 → v3: the cents moved into `money`; every older deposit was in euros.
        2 => {
            let cents = value["cents"]
                .as_u64()
                .ok_or_else(|| UpcastError::invalid("`cents` is not a number"))?;
            *value = json!({ "money": { "cents": cents, "currency": "EUR" } });
        }
        from => return Err(UpcastError::Missing { from }),
    }
    Ok(())
}
// ANCHOR_END: deposit_steps

// ANCHOR: serde_from
/// Release 1 stored `{"name": "Ada Lovelace"}`; release 2 split the name.
/// Serde reads both shapes, so the event kept schema version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.opened")]
#[serde(from = "AccountOpenedStored")]
struct AccountOpened {
    given_name: String,
    family_name: String,
}

/// Every shape ever stored under `account.opened`, the current one first.
#[derive(Deserialize)]
#[serde(untagged)]
enum AccountOpenedStored {
    Split { given_name: String, family_name: String },
    Whole { name: String },
}

impl From<AccountOpenedStored> for AccountOpened {
    fn from(stored: AccountOpenedStored) -> Self {
        match stored {
            AccountOpenedStored::Split {
                given_name,
                family_name,
            } => Self {
                given_name,
                family_name,
            },
            AccountOpenedStored::Whole { name } => {
                let (given, family) = name.split_once(' ').unwrap_or((name.as_str(), ""));
                Self {
                    given_name: given.to_owned(),
                    family_name: family.to_owned(),
                }
            }
        }
    }
}
// ANCHOR_END: serde_from

// ANCHOR: added_field
/// Release 2 stored `{"cents": 2000}`; today a withdrawal may carry a
/// reference. Older payloads lack it and read as `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.withdrawn")]
struct FundsWithdrawn {
    cents: u64,
    #[serde(default)]
    reference: Option<String>,
}
// ANCHOR_END: added_field

// ANCHOR: aggregate
/// Today's account. Release 1 also wrote `account.audited` events; no
/// event reads them any more, so the kind is retired: loads skip it.
#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::convert::Infallible)]
#[aggregate(
    events(AccountOpened, FundsDeposited, FundsWithdrawn),
    retired("account.audited")
)]
struct Account {
    holder: String,
    balance_cents: u64,
    withdrawals: Vec<(u64, Option<String>)>,
}
// ANCHOR_END: aggregate

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.holder = format!("{}, {}", event.family_name, event.given_name);
    }
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.balance_cents += event.money.cents;
    }
}

impl Apply<FundsWithdrawn> for Account {
    fn apply(&mut self, event: &FundsWithdrawn) {
        self.balance_cents -= event.cents;
        self.withdrawals.push((event.cents, event.reference.clone()));
    }
}

// ANCHOR: forgotten_alias
/// The same deposit with the alias forgotten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.funds-deposited", version = 3, upcast = deposit_steps)]
struct DepositWithoutAlias {
    money: Money,
}

/// The account over it: `account.deposited` is now a kind it does not know.
#[derive(Debug, Default, Aggregate)]
#[aggregate(kind = "account", id = String, error = std::convert::Infallible)]
#[aggregate(
    events(AccountOpened, DepositWithoutAlias, FundsWithdrawn),
    retired("account.audited")
)]
struct AccountWithoutAlias;
// ANCHOR_END: forgotten_alias

impl Apply<AccountOpened> for AccountWithoutAlias {
    fn apply(&mut self, _: &AccountOpened) {}
}
impl Apply<DepositWithoutAlias> for AccountWithoutAlias {
    fn apply(&mut self, _: &DepositWithoutAlias) {}
}
impl Apply<FundsWithdrawn> for AccountWithoutAlias {
    fn apply(&mut self, _: &FundsWithdrawn) {}
}

type Store = sqlite::Store<String, ()>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("events.db")).await?;
    let id = "ACC-1".to_owned();

    write_history(&store, &id).await?;
    print_stream(&store, &id).await?;
    let repository = Repository::new(store);
    load_with_todays_types(&repository, &id).await?;
    forget_the_alias(&repository, &id).await?;
    test_the_upcaster_alone()?;
    Ok(())
}

/// Two older releases, then today's code, write to account `id`.
async fn write_history(store: &Store, id: &String) -> Result<(), Box<dyn Error>> {
    // ANCHOR: old_payloads
    // Release 1, byte for byte: its kinds, its shapes, schema version 1.
    append(
        store,
        id,
        vec![
            PersistableEvent::new("account.opened", br#"{"name":"Ada Lovelace"}"#.to_vec(), ()),
            PersistableEvent::new("account.deposited", br#"{"amount":5}"#.to_vec(), ()),
            PersistableEvent::new("account.audited", br#"{"by":"ops"}"#.to_vec(), ()),
        ],
    )
    .await?;
    // Release 2: the renamed kind, in cents (schema version 2); withdrawals.
    append(
        store,
        id,
        vec![
            PersistableEvent::new("account.funds-deposited", br#"{"cents":3000}"#.to_vec(), ())
                .with_schema_version(2),
            PersistableEvent::new("account.withdrawn", br#"{"cents":2000}"#.to_vec(), ()),
        ],
    )
    .await?;
    // ANCHOR_END: old_payloads

    // ANCHOR: today_writes
    // Today's code writes its own events: current kinds, current versions.
    let mut tx = store.begin::<Unchecked>("account", id.clone(), None);
    tx.append(
        FundsDeposited {
            money: Money {
                cents: 1250,
                currency: "EUR".into(),
            },
        },
        (),
    )?;
    tx.append(
        FundsWithdrawn {
            cents: 700,
            reference: Some("rent".into()),
        },
        (),
    )?;
    tx.commit().await?;
    // ANCHOR_END: today_writes
    Ok(())
}

/// Appends `events` to account `id` unchecked, as an older release did.
async fn append(store: &Store, id: &String, events: Vec<PersistableEvent<()>>) -> Result<(), Box<dyn Error>> {
    let events = NonEmpty::from_vec(events).ok_or("no events to append")?;
    store.append("account", id, None, events).await?;
    Ok(())
}

/// Prints the stream as the store keeps it.
async fn print_stream(store: &Store, id: &str) -> Result<(), Box<dyn Error>> {
    println!("the stream as stored (position, kind, schema version, data):");
    let stored = store
        .load_events(&[EventFilter::for_stream("account", id.to_owned())])
        .await?;
    for event in &stored {
        let data = String::from_utf8_lossy(&event.data);
        println!(
            "  {} {:<24} v{} {data}",
            event.position, event.kind, event.schema_version
        );
    }
    let kinds: Vec<_> = stored
        .iter()
        .map(|event| (event.kind.as_str(), event.schema_version))
        .collect();
    assert_eq!(
        kinds,
        [
            ("account.opened", 1),
            ("account.deposited", 1),
            ("account.audited", 1),
            ("account.funds-deposited", 2),
            ("account.withdrawn", 1),
            ("account.funds-deposited", 3),
            ("account.withdrawn", 1),
        ]
    );
    Ok(())
}

async fn load_with_todays_types(repository: &Repository<Store>, id: &String) -> Result<(), Box<dyn Error>> {
    // ANCHOR: load
    let loaded = repository.load_versioned::<Account>(id).await?;
    let account = loaded.state;
    println!(
        "\nloaded by today's code: holder {:?}, balance {} cents, withdrawals {:?}",
        account.holder, account.balance_cents, account.withdrawals
    );
    assert_eq!(account.holder, "Lovelace, Ada");
    // 5 euros (v1, upcast twice) + 3000 cents (v2, once) + 1250 (v3) - 2000 - 700.
    assert_eq!(account.balance_cents, 500 + 3000 + 1250 - 2000 - 700);
    assert_eq!(
        account.withdrawals,
        [(2000, None), (700, Some("rent".to_owned()))]
    );
    // The retired `account.audited` was skipped, and still counts: the
    // version is the stream's real last position, so commands do not conflict.
    let head = repository.store().stream_version("account", id).await?;
    assert_eq!(loaded.version, head);
    // ANCHOR_END: load
    println!(
        "loaded at version {:?}, the stream's last position",
        loaded.version
    );
    Ok(())
}

async fn forget_the_alias(repository: &Repository<Store>, id: &String) -> Result<(), Box<dyn Error>> {
    // ANCHOR: forgotten_alias_error
    let Err(error) = repository.load::<AccountWithoutAlias>(id).await else {
        return Err("a stream with an unknown kind must not load".into());
    };
    println!("\nwithout the alias:\n{}", chain(&error));
    let LoadError::Decode(decode) = &error else {
        return Err(format!("expected LoadError::Decode, got {error:?}").into());
    };
    // The kind, the stream and the position, typed as the store's.
    assert_eq!(
        (
            decode.event_kind.as_str(),
            decode.aggregate_id.as_str(),
            decode.position
        ),
        ("account.deposited", "ACC-1", 2)
    );
    // The reason: a kind it does not know, and the kinds it does.
    let DecodeFailure::UnknownKind { expected } = &decode.reason else {
        return Err(format!("expected UnknownKind, got {:?}", decode.reason).into());
    };
    assert!(!expected.contains(&"account.deposited"), "{expected:?}");
    // ANCHOR_END: forgotten_alias_error
    Ok(())
}

/// An error and its sources, one per line.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str("\n  caused by: ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn test_the_upcaster_alone() -> Result<(), Box<dyn Error>> {
    // ANCHOR: upcast_alone
    // Upcasters are plain functions of the stored value: test them alone.
    let v3 = upcast::<FundsDeposited, _>("account.deposited", 1, json!({ "amount": 5 }))?;
    assert_eq!(v3, json!({ "money": { "cents": 500, "currency": "EUR" } }));
    // A version newer than the code's is an error, not a guess.
    let newer = upcast::<FundsDeposited, _>("account.funds-deposited", 4, json!({}));
    assert!(matches!(
        newer,
        Err(DecodeFailure::UnsupportedVersion {
            stored: 4,
            current: 3
        })
    ));
    // ANCHOR_END: upcast_alone
    println!("\nupcast alone: v1 {{\"amount\":5}} -> v3 {v3}");
    Ok(())
}

/// Golden samples of this example's events (`examples/event-samples/versioned_events/`), run
/// by `cargo test --example versioned_events`: today's types must keep
/// reading every recorded payload. The folder also holds what release 1
/// wrote under the old kind (`account.deposited/v1.json`, recorded by
/// hand), so the alias and both upcast steps stay tested against old data.
#[cfg(test)]
mod tests {
    use sourcery::test::schema::EventSamples;

    use super::*;

    #[test]
    fn golden_samples() {
        EventSamples::new("examples/event-samples/versioned_events")
            .aggregate::<Account>()
            .event(AccountOpened {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
            })
            .event(FundsDeposited {
                money: Money {
                    cents: 500,
                    currency: "EUR".into(),
                },
            })
            .event(FundsWithdrawn {
                cents: 200,
                reference: Some("rent".into()),
            })
            .assert();
    }
}

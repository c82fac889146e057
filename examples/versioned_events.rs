//! Event versioning: stored events outlive the code that wrote them.
//!
//! - An event that gained a field keeps loading old payloads through a serde
//!   default.
//! - An event whose shape changed is upcast explicitly from its V1 shape.
//!
//! Run with `cargo run --example versioned_events`.

use serde::{Deserialize, Serialize};
use sourcery::store::{EventStore, NonEmpty, PersistableEvent, inmemory};
use sourcery::{Aggregate, Apply, DomainEvent, Repository};

// ANCHOR: added_field
/// V2 added `currency`; V1 payloads (`{"amount": 5}`) get the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FundsDeposited {
    amount: u64,
    #[serde(default = "default_currency")]
    currency: String,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

impl DomainEvent for FundsDeposited {
    const KIND: &'static str = "account.deposited";
}
// ANCHOR_END: added_field

// ANCHOR: upcast
/// V1 stored `{"name": "Ada Lovelace"}`; V2 splits the name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "AccountOpenedStored")]
struct AccountOpened {
    given_name: String,
    family_name: String,
}

impl DomainEvent for AccountOpened {
    const KIND: &'static str = "account.opened";
}

/// Every shape ever stored under `account.opened`.
#[derive(Deserialize)]
#[serde(untagged)]
enum AccountOpenedStored {
    V2 { given_name: String, family_name: String },
    V1 { name: String },
}

/// The upcast: V1 → V2.
impl From<AccountOpenedStored> for AccountOpened {
    fn from(stored: AccountOpenedStored) -> Self {
        match stored {
            AccountOpenedStored::V2 {
                given_name,
                family_name,
            } => Self {
                given_name,
                family_name,
            },
            AccountOpenedStored::V1 { name } => {
                let (given, family) = name.split_once(' ').unwrap_or((name.as_str(), ""));
                Self {
                    given_name: given.to_owned(),
                    family_name: family.to_owned(),
                }
            }
        }
    }
}
// ANCHOR_END: upcast

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = Never, events(AccountOpened, FundsDeposited))]
struct Account {
    holder: String,
    deposits: Vec<(u64, String)>,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.holder = format!("{}, {}", event.family_name, event.given_name);
    }
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.deposits.push((event.amount, event.currency.clone()));
    }
}

fn stored(kind: &str, json: &str) -> PersistableEvent<()> {
    PersistableEvent {
        kind: kind.to_owned(),
        schema_version: 1,
        data: json.as_bytes().to_vec(),
        metadata: (),
    }
}

// ANCHOR: main
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = inmemory::Store::<String, ()>::new();
    let id = "ACC-1".to_string();

    // What the old version of the application wrote, byte for byte.
    let mut history = NonEmpty::new(stored("account.opened", r#"{"name":"Ada Lovelace"}"#));
    history.push(stored("account.deposited", r#"{"amount":5}"#));
    store.append("account", &id, None, history).await?;
    println!(
        "stored by v1: account.opened {{\"name\":\"Ada Lovelace\"}}, account.deposited {{\"amount\":5}}"
    );

    // What the current version writes.
    let repository = Repository::new(store);
    let mut tx = repository
        .store()
        .begin::<sourcery::concurrency::Unchecked>("account", id.clone(), None);
    tx.append(
        FundsDeposited {
            amount: 7,
            currency: "USD".into(),
        },
        (),
    )?;
    tx.commit().await?;

    let account = repository.load::<Account>(&id).await?;
    println!(
        "loaded with v2: holder {:?}, deposits {:?}",
        account.holder, account.deposits
    );
    assert_eq!(account.holder, "Lovelace, Ada");
    assert_eq!(account.deposits, [(5, "EUR".to_owned()), (7, "USD".to_owned())]);
    Ok(())
}
// ANCHOR_END: main

//! `#[derive(DomainEvent)]`: kinds, aliases, versions and upcasters, and an
//! aggregate over derived events that resolves aliases and upcasts.
use serde::{Deserialize, Serialize};
use sourcery::codec::JsonCodec;
use sourcery::event::{DecodeEvent, EventPayload, RawEvent, UpcastError, UpcastStep};
use sourcery::{Aggregate, Apply, DomainEvent};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.opened")]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(kind = "account.funds-deposited", aliases("account.deposited", "account.credited"))]
#[event(version = 3, upcast = deposit_steps)]
struct FundsDeposited {
    cents: u64,
    currency: String,
}

fn deposit_steps(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
    let from = step.from_version();
    let value = step.json_mut()?;
    match from {
        // v1 → v2: whole euros became cents.
        1 => {
            let euros = value["amount"].as_u64().ok_or_else(|| UpcastError::invalid("no `amount`"))?;
            *value = serde_json::json!({ "cents": euros * 100 });
        }
        // v2 → v3: a currency, EUR for every older event.
        2 => {
            let fields = value
                .as_object_mut()
                .ok_or_else(|| UpcastError::invalid("a v2 deposit is a JSON object"))?;
            fields.insert("currency".to_owned(), serde_json::json!("EUR"));
        }
        from => return Err(UpcastError::Missing { from }),
    }
    Ok(())
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = std::convert::Infallible, events(Opened, FundsDeposited))]
#[aggregate(retired("account.audited"))]
struct Account {
    cents: u64,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}
impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, event: &FundsDeposited) {
        self.cents += event.cents;
    }
}

fn main() {
    assert_eq!(Opened::VERSION, 1);
    assert!(Opened::ALIASES.is_empty());
    assert_eq!(Account::RETIRED_KINDS, ["account.audited"]);
    assert_eq!(AccountEvent::event_kinds(), ["account.opened", "account.funds-deposited"]);
    assert_eq!(AccountEvent::alias_kinds(), ["account.deposited", "account.credited"]);

    let event: AccountEvent = FundsDeposited { cents: 5, currency: "EUR".into() }.into();
    assert_eq!(event.kind(), "account.funds-deposited");
    assert_eq!(event.schema_version(), 3);

    // A v1 payload under the old kind: upcast twice, then decoded.
    let old = RawEvent { kind: "account.deposited", schema_version: 1, data: br#"{"amount":2}"# };
    let decoded = AccountEvent::decode_with(&JsonCodec, old).unwrap();
    assert_eq!(
        decoded,
        Some(AccountEvent::FundsDeposited(FundsDeposited { cents: 200, currency: "EUR".into() }))
    );
    let unknown = RawEvent { kind: "account.closed", schema_version: 1, data: b"{}" };
    assert_eq!(AccountEvent::decode_with(&JsonCodec, unknown).unwrap(), None);
}

//! What `#[derive(Aggregate)]` and `#[derive(Projection)]` write, checked by
//! behaviour: kinds and types, conversions, the encode/decode glue, `apply`
//! dispatch, declared projection filters, and a round trip through a store.

use serde::{Deserialize, Serialize};
use sourcery::codec::JsonCodec;
use sourcery::concurrency::Unchecked;
use sourcery::event::{DecodeEvent, EventPayload, RawEvent};
use sourcery::projection::ProjectionEvents;
use sourcery::store::{EventFilter, EventStore, inmemory};
use sourcery::{Aggregate, Apply, ApplyProjection, DomainEvent, Projection};

/// Events of the account aggregate; two share the final name `Renamed`.
mod events {
    use super::{Deserialize, DomainEvent, Serialize};

    /// An account was opened.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct AccountOpened {
        pub(crate) owner: String,
    }
    impl DomainEvent for AccountOpened {
        const KIND: &'static str = "account.opened";
    }

    /// Money came in.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct AccountCredited {
        pub(crate) amount: u64,
    }
    impl DomainEvent for AccountCredited {
        const KIND: &'static str = "account.credited";
    }

    pub(crate) mod owner {
        use super::{Deserialize, DomainEvent, Serialize};

        /// The owner changed their name.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub(crate) struct Renamed {
            pub(crate) owner: String,
        }
        impl DomainEvent for Renamed {
            const KIND: &'static str = "account.owner-renamed";
        }
    }

    pub(crate) mod label {
        use super::{Deserialize, DomainEvent, Serialize};

        /// The account got a new label.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub(crate) struct Renamed {
            pub(crate) label: String,
        }
        impl DomainEvent for Renamed {
            const KIND: &'static str = "account.label-renamed";
        }
    }
}

use events::{AccountCredited, AccountOpened, label, owner};

/// The account's rejection.
#[derive(Debug, PartialEq)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the account is closed")
    }
}
impl std::error::Error for Closed {}

/// A bank account.
#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(id = String, error = Closed)]
#[aggregate(events(AccountOpened, AccountCredited, owner::Renamed, label::Renamed))]
struct BankAccount {
    owner: String,
    label: String,
    balance: u64,
}

impl Apply<AccountOpened> for BankAccount {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}
impl Apply<AccountCredited> for BankAccount {
    fn apply(&mut self, event: &AccountCredited) {
        self.balance += event.amount;
    }
}
impl Apply<owner::Renamed> for BankAccount {
    fn apply(&mut self, event: &owner::Renamed) {
        self.owner.clone_from(&event.owner);
    }
}
impl Apply<label::Renamed> for BankAccount {
    fn apply(&mut self, event: &label::Renamed) {
        self.label.clone_from(&event.label);
    }
}

/// Every variant of the account's event enum, one of each.
fn one_of_each() -> Vec<BankAccountEvent> {
    vec![
        AccountOpened { owner: "ana".into() }.into(),
        AccountCredited { amount: 7 }.into(),
        owner::Renamed {
            owner: "ana b.".into(),
        }
        .into(),
        label::Renamed {
            label: "savings".into(),
        }
        .into(),
    ]
}

/// Balances per account, fed by the whole account enum.
#[derive(Debug, Default, Projection)]
#[projection(events(BankAccountEvent))]
struct Balances {
    per_account: Vec<(String, u64)>,
}

impl ApplyProjection<BankAccountEvent> for Balances {
    fn apply_projection(&mut self, id: &String, event: &BankAccountEvent, (): &()) {
        if let BankAccountEvent::AccountCredited(credited) = event {
            match self.per_account.iter_mut().find(|(account, _)| account == id) {
                Some((_, balance)) => *balance += credited.amount,
                None => self.per_account.push((id.clone(), credited.amount)),
            }
        }
    }
}

/// Owner names, from two single events, under an explicit kind and id type.
#[derive(Debug, Default, Projection)]
#[projection(id = String, metadata = (), kind = "owners-v2", events(AccountOpened, owner::Renamed))]
struct Owners {
    names: Vec<String>,
}

impl ApplyProjection<AccountOpened> for Owners {
    fn apply_projection(&mut self, _: &String, event: &AccountOpened, (): &()) {
        self.names.push(event.owner.clone());
    }
}
impl ApplyProjection<owner::Renamed> for Owners {
    fn apply_projection(&mut self, _: &String, event: &owner::Renamed, (): &()) {
        self.names.push(event.owner.clone());
    }
}

/// A projection that declares nothing: the caller picks its events.
#[derive(Debug, Default, Projection)]
#[projection(id = u64, metadata = String)]
struct Undeclared;

type Memory = inmemory::Store<String, ()>;

#[test]
fn the_aggregate_impl_has_the_declared_types() {
    fn same_type<A: 'static, B: 'static>() -> bool {
        std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
    }
    assert_eq!(<BankAccount as Aggregate>::KIND, "bank-account");
    assert!(same_type::<<BankAccount as Aggregate>::Id, String>());
    assert!(same_type::<<BankAccount as Aggregate>::Error, Closed>());
    assert!(same_type::<<BankAccount as Aggregate>::Event, BankAccountEvent>());
}

#[test]
fn events_convert_into_their_variant() {
    let events = one_of_each();
    assert!(matches!(&events[0], BankAccountEvent::AccountOpened(e) if e.owner == "ana"));
    assert!(matches!(&events[1], BankAccountEvent::AccountCredited(e) if e.amount == 7));
    assert!(matches!(&events[2], BankAccountEvent::OwnerRenamed(e) if e.owner == "ana b."));
    assert!(matches!(&events[3], BankAccountEvent::LabelRenamed(e) if e.label == "savings"));
}

#[test]
fn the_enum_lists_every_kind_and_each_variant_keeps_its_own() {
    assert_eq!(
        BankAccountEvent::event_kinds(),
        [
            "account.opened",
            "account.credited",
            "account.owner-renamed",
            "account.label-renamed"
        ]
    );
    let kinds: Vec<&str> = one_of_each().iter().map(EventPayload::kind).collect();
    assert_eq!(kinds, BankAccountEvent::event_kinds());
}

#[test]
fn every_variant_survives_an_encode_decode_round_trip() {
    for event in one_of_each() {
        let bytes = event.encode_with(&JsonCodec).unwrap();
        // The enum encodes the event's data alone, as the event itself does.
        let raw = RawEvent {
            kind: event.kind(),
            schema_version: event.schema_version(),
            data: &bytes,
        };
        let back = BankAccountEvent::decode_with(&JsonCodec, raw).unwrap();
        assert_eq!(back, Some(event));
    }
    let opened = AccountOpened { owner: "ana".into() };
    assert_eq!(
        BankAccountEvent::from(opened.clone())
            .encode_with(&JsonCodec)
            .unwrap(),
        opened.encode_with(&JsonCodec).unwrap()
    );
}

#[test]
fn an_unknown_kind_decodes_to_none_and_bad_bytes_to_an_error() {
    let raw = |kind| RawEvent {
        kind,
        schema_version: 1,
        data: b"{}",
    };
    let decoded = BankAccountEvent::decode_with(&JsonCodec, raw("account.closed")).unwrap();
    assert_eq!(decoded, None);
    assert!(BankAccountEvent::decode_with(&JsonCodec, raw("account.credited")).is_err());
}

#[test]
fn apply_dispatches_to_each_apply_impl() {
    let mut account = BankAccount::default();
    for event in one_of_each() {
        Aggregate::apply(&mut account, &event);
    }
    Aggregate::apply(&mut account, &AccountCredited { amount: 3 }.into());
    assert_eq!(
        account,
        BankAccount {
            owner: "ana b.".into(),
            label: "savings".into(),
            balance: 10,
        }
    );
}

#[test]
fn projections_declare_the_listed_events() {
    assert_eq!(<Balances as Projection>::KIND, "balances");
    let balances = ProjectionEvents::<Memory, Balances>::declared().filters();
    let expected: Vec<EventFilter<String, u64>> = BankAccountEvent::event_kinds()
        .iter()
        .map(|kind| EventFilter::for_event(*kind))
        .collect();
    assert_eq!(balances, expected);

    assert_eq!(<Owners as Projection>::KIND, "owners-v2");
    assert_eq!(
        ProjectionEvents::<Memory, Owners>::declared().filters(),
        [
            EventFilter::for_event("account.opened"),
            EventFilter::for_event("account.owner-renamed")
        ]
    );
}

#[test]
fn a_projection_without_events_declares_nothing() {
    assert_eq!(<Undeclared as Projection>::KIND, "undeclared");
    assert!(ProjectionEvents::<inmemory::Store<u64, String>, Undeclared>::declared().is_empty());
}

#[tokio::test]
async fn derived_events_go_through_a_store_and_back() {
    let store = Memory::new();
    for (id, events) in [
        ("a-1", one_of_each()),
        ("a-2", vec![AccountCredited { amount: 5 }.into()]),
    ] {
        let mut tx = store.begin::<Unchecked>(BankAccount::KIND, id.to_owned(), None);
        for event in events {
            tx.append(event, ()).unwrap();
        }
        tx.commit().await.unwrap();
    }

    // Rebuild `a-1` from its stream, decoded as the enum.
    let filters: Vec<EventFilter<String, u64>> = BankAccountEvent::event_kinds()
        .iter()
        .map(|kind| EventFilter::for_aggregate(*kind, BankAccount::KIND, "a-1".to_owned()))
        .collect();
    let stored = store.load_events(&filters).await.unwrap();
    let decoded: Vec<BankAccountEvent> = stored
        .iter()
        .map(|event| event.decode(store.codec()).unwrap())
        .collect();
    assert_eq!(decoded, one_of_each());
    let mut account = BankAccount::default();
    for event in &decoded {
        Aggregate::apply(&mut account, event);
    }
    assert_eq!(account.balance, 7);

    // Fold the derived projection over everything it declares.
    let declared = ProjectionEvents::<Memory, Balances>::declared();
    let mut balances = Balances::default();
    for event in store.load_events(&declared.filters()).await.unwrap() {
        assert!(declared.apply(&mut balances, &event, store.codec()).unwrap());
    }
    assert_eq!(
        balances.per_account,
        [("a-1".to_owned(), 7), ("a-2".to_owned(), 5)]
    );
}

/// Variants that all share a prefix (`Order…`) must not trip clippy's
/// `enum_variant_names` in the user's crate: the enum is generated.
mod shared_prefix {
    use serde::{Deserialize, Serialize};
    use sourcery::{Aggregate, Apply, DomainEvent};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct OrderPlaced;
    impl DomainEvent for OrderPlaced {
        const KIND: &'static str = "order.placed";
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct OrderShipped;
    impl DomainEvent for OrderShipped {
        const KIND: &'static str = "order.shipped";
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct OrderCancelled;
    impl DomainEvent for OrderCancelled {
        const KIND: &'static str = "order.cancelled";
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(id = u64, error = std::fmt::Error, events(OrderPlaced, OrderShipped, OrderCancelled))]
    pub(crate) struct Order {
        pub(crate) steps: u8,
    }

    impl Apply<OrderPlaced> for Order {
        fn apply(&mut self, _: &OrderPlaced) {
            self.steps += 1;
        }
    }
    impl Apply<OrderShipped> for Order {
        fn apply(&mut self, _: &OrderShipped) {
            self.steps += 1;
        }
    }
    impl Apply<OrderCancelled> for Order {
        fn apply(&mut self, _: &OrderCancelled) {
            self.steps += 1;
        }
    }
}

#[test]
fn events_sharing_a_prefix_keep_their_names() {
    use shared_prefix::{Order, OrderEvent, OrderPlaced, OrderShipped};
    let mut order = Order::default();
    for event in [OrderEvent::OrderPlaced(OrderPlaced), OrderShipped.into()] {
        Aggregate::apply(&mut order, &event);
    }
    assert_eq!(order.steps, 2);
}

//! The golden-sample helper (`sourcery_core::test::schema`): what it records
//! on a first run, and the changes it catches on later runs, each simulated
//! by a second version of an event type with the same kind.

use serde::{Deserialize, Serialize};
use sourcery_core::aggregate::Aggregate;
use sourcery_core::codec::Codec;
use sourcery_core::event::{
    DecodeEvent, DecodeFailure, DomainEvent, EventPayload, RawEvent, UpcastError, UpcastStep,
};
use sourcery_core::test::schema::{EventSamples, SampleFailure};

/// Yesterday's event.
mod before {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct FundsDeposited {
        pub(crate) amount: u64,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.deposited";
    }
}

/// The field's type changed, nothing else.
mod retyped {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct FundsDeposited {
        pub(crate) amount: String,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.deposited";
    }
}

/// The kind was renamed, without an alias.
mod renamed {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct FundsDeposited {
        pub(crate) amount: u64,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.funds-deposited";
    }
}

/// The kind was renamed, with the old one as an alias.
mod aliased {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct FundsDeposited {
        pub(crate) amount: u64,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.funds-deposited";
        const ALIASES: &'static [&'static str] = &["account.deposited"];
    }
}

/// The field's type changed, with a new version and an upcaster.
mod upcast {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct FundsDeposited {
        pub(crate) amount: String,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.deposited";
        const VERSION: u32 = 2;

        fn upcast(step: &mut UpcastStep<'_>) -> Result<(), UpcastError> {
            match step.from_version() {
                1 => {
                    let value = step.json_mut()?;
                    let amount = value["amount"]
                        .as_u64()
                        .ok_or_else(|| UpcastError::invalid("`amount` is not a number"))?;
                    value["amount"] = serde_json::Value::String(amount.to_string());
                    Ok(())
                }
                from => Err(UpcastError::Missing { from }),
            }
        }
    }
}

fn folder() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let folder = dir.path().join("event-samples");
    (dir, folder)
}

fn record_yesterday(folder: &std::path::Path) {
    let report = EventSamples::new(folder)
        .event(before::FundsDeposited { amount: 5 })
        .verify()
        .expect("a first run records its samples");
    assert_eq!(report.recorded.len(), 1, "one sample recorded: {report:?}");
    assert!(
        folder.join("account.deposited").join("v1.json").is_file(),
        "the sample lives at <folder>/<kind>/v<version>.json"
    );
}

#[test]
fn a_first_run_records_and_a_second_run_checks() {
    let (_dir, folder) = folder();
    record_yesterday(&folder);
    let report = EventSamples::new(&folder)
        .event(before::FundsDeposited { amount: 7 })
        .verify()
        .expect("the same types read their own samples");
    assert!(report.recorded.is_empty(), "nothing new to record: {report:?}");
    assert_eq!(report.checked, 1);
}

#[test]
fn a_changed_field_type_fails_with_a_diff() {
    let (_dir, folder) = folder();
    record_yesterday(&folder);
    let failures = EventSamples::new(&folder)
        .event(retyped::FundsDeposited { amount: "5".into() })
        .verify()
        .expect_err("a sample that no longer decodes fails");
    let [
        SampleFailure::NoLongerDecodes {
            kind, version, diff, ..
        },
    ] = failures.failures.as_slice()
    else {
        panic!("one NoLongerDecodes failure expected, got {failures}");
    };
    assert_eq!((kind.as_str(), *version), ("account.deposited", 1));
    assert!(
        diff.contains("-   \"amount\": 5"),
        "the recorded line is shown: {diff}"
    );
    assert!(
        diff.contains("+   \"amount\": \"5\""),
        "today's line is shown: {diff}"
    );
    let message = failures.to_string();
    assert!(
        message.contains("account.deposited") && message.contains("+   \"amount\": \"5\""),
        "{message}"
    );
}

#[test]
fn a_changed_kind_without_an_alias_fails_and_with_one_passes() {
    let (_dir, folder) = folder();
    record_yesterday(&folder);
    let failures = EventSamples::new(&folder)
        .event(renamed::FundsDeposited { amount: 5 })
        .verify()
        .expect_err("the old kind's sample is decoded by no event");
    assert!(
        failures.failures.iter().any(|failure| matches!(
            failure,
            SampleFailure::UnknownKind { kind, .. } if kind == "account.deposited"
        )),
        "{failures}"
    );

    let report = EventSamples::new(&folder)
        .event(aliased::FundsDeposited { amount: 5 })
        .verify()
        .expect("the alias decodes the old kind's sample");
    assert_eq!(
        report.checked, 2,
        "the old kind's sample and the new kind's: {report:?}"
    );
}

#[test]
fn an_upcaster_covers_a_changed_field_type() {
    let (_dir, folder) = folder();
    record_yesterday(&folder);
    let report = EventSamples::new(&folder)
        .event(upcast::FundsDeposited { amount: "5".into() })
        .verify()
        .expect("the v1 sample is upcast, then decoded");
    assert_eq!(
        report.recorded.len(),
        1,
        "the v2 sample is recorded beside v1: {report:?}"
    );
    assert!(folder.join("account.deposited").join("v2.json").is_file());
    assert_eq!(report.checked, 2);
}

#[test]
fn recording_can_be_required_to_have_happened() {
    let (_dir, folder) = folder();
    let failures = EventSamples::new(&folder)
        .event(before::FundsDeposited { amount: 5 })
        .record_missing(false)
        .verify()
        .expect_err("a missing sample is a failure when recording is off");
    assert!(
        matches!(failures.failures.as_slice(), [SampleFailure::NotRecorded { .. }]),
        "{failures}"
    );
    assert!(!folder.exists(), "nothing was written");
}

// An aggregate whose enum holds `before::FundsDeposited` and an opening
// event, and which retired an audit kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;
impl DomainEvent for Opened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened(Opened),
    Deposited(before::FundsDeposited),
}

impl EventPayload for AccountEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Opened(event) => event.kind(),
            Self::Deposited(event) => event.kind(),
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            Self::Opened(event) => event.schema_version(),
            Self::Deposited(event) => event.schema_version(),
        }
    }

    fn encode_with<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, C::Error> {
        match self {
            Self::Opened(event) => event.encode_with(codec),
            Self::Deposited(event) => event.encode_with(codec),
        }
    }
}

impl DecodeEvent for AccountEvent {
    fn event_kinds() -> &'static [&'static str] {
        &[Opened::KIND, before::FundsDeposited::KIND]
    }

    fn decode_with<C: Codec>(codec: &C, event: RawEvent<'_>) -> Result<Option<Self>, DecodeFailure> {
        if let Some(opened) = Opened::decode_with(codec, event)? {
            return Ok(Some(Self::Opened(opened)));
        }
        Ok(before::FundsDeposited::decode_with(codec, event)?.map(Self::Deposited))
    }
}

#[derive(Debug, Default)]
struct Account;

impl Aggregate for Account {
    const KIND: &'static str = "account";
    const RETIRED_KINDS: &'static [&'static str] = &["account.audited"];
    type Id = String;
    type Event = AccountEvent;
    type Error = std::convert::Infallible;

    fn apply(&mut self, _: &AccountEvent) {}
}

#[test]
fn an_aggregate_needs_a_sample_of_every_event_and_keeps_retired_kinds() {
    let (_dir, folder) = folder();
    let failures = EventSamples::new(&folder)
        .aggregate::<Account>()
        .event(before::FundsDeposited { amount: 5 })
        .verify()
        .expect_err("the opening event has no sample");
    assert!(
        matches!(
            failures.failures.as_slice(),
            [SampleFailure::NoSample { aggregate: "account", kind }] if kind == "account.opened"
        ),
        "{failures}"
    );

    // A sample of a kind the aggregate retired stays valid.
    let audited = folder.join("account.audited");
    std::fs::create_dir_all(&audited).unwrap();
    std::fs::write(
        audited.join("v1.json"),
        r#"{ "kind": "account.audited", "schema_version": 1, "payload": { "by": "ops" } }"#,
    )
    .unwrap();
    let report = EventSamples::new(&folder)
        .aggregate::<Account>()
        .event(Opened)
        .event(before::FundsDeposited { amount: 5 })
        .verify()
        .expect("every event has a sample; the retired kind's file is accepted");
    assert_eq!(report.checked, 3, "{report:?}");
}

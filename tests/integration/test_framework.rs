//! The given–when–then test framework: passing checks, and failing checks
//! that panic with a readable message.

use serde::{Deserialize, Serialize};
use sourcery::test::TestFramework;
use sourcery::{Aggregate, Apply, DomainEvent, Handle, HandleCreate};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened;

impl DomainEvent for Opened {
    const KIND: &'static str = "tab.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added {
    item: String,
}

impl DomainEvent for Added {
    const KIND: &'static str = "tab.added";
}

// ANCHOR: aggregate
#[derive(Debug, thiserror::Error, PartialEq)]
enum TabError {
    #[error("the tab holds at most {0} items")]
    Full(usize),
    #[error("the tab is not open")]
    NotOpen,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = TabError, events(Opened, Added))]
struct Tab {
    open: bool,
    items: Vec<String>,
}

impl Apply<Opened> for Tab {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Added> for Tab {
    fn apply(&mut self, event: &Added) {
        self.items.push(event.item.clone());
    }
}

struct Open;
struct Add(&'static str);
struct AddPair(&'static str, &'static str);
struct Touch;

impl HandleCreate<Open> for Tab {
    fn handle_create(_: &Open) -> Result<Vec<TabEvent>, TabError> {
        Ok(vec![Opened.into()])
    }
}

impl Handle<Add> for Tab {
    fn handle(&self, command: &Add) -> Result<Vec<TabEvent>, TabError> {
        if !self.open {
            return Err(TabError::NotOpen);
        }
        if self.items.len() >= 2 {
            return Err(TabError::Full(2));
        }
        Ok(vec![
            Added {
                item: command.0.into(),
            }
            .into(),
        ])
    }
}

impl Handle<AddPair> for Tab {
    fn handle(&self, command: &AddPair) -> Result<Vec<TabEvent>, TabError> {
        Ok(vec![
            Added {
                item: command.0.into(),
            }
            .into(),
            Added {
                item: command.1.into(),
            }
            .into(),
        ])
    }
}

impl Handle<Touch> for Tab {
    fn handle(&self, _: &Touch) -> Result<Vec<TabEvent>, TabError> {
        Ok(Vec::new())
    }
}

fn added(item: &str) -> Added {
    Added { item: item.into() }
}
// ANCHOR_END: aggregate

// ANCHOR: given_when_then
#[test]
fn given_when_then_passes_on_the_right_outcome() {
    TestFramework::<Tab>::new()
        .given_no_previous_events()
        .when_creating(&Open)
        .then_expect_events(&[Opened]);
    TestFramework::<Tab>::new()
        .given(&[Opened])
        .and(&[added("tea")])
        .when(&Add("cake"))
        .then_expect_events(&[added("cake")]);
    TestFramework::<Tab>::new()
        .given(&[TabEvent::from(Opened), added("a").into(), added("b").into()])
        .when(&Add("c"))
        .then_expect_error_eq(&TabError::Full(2));
    TestFramework::<Tab>::new()
        .given_no_previous_events()
        .when(&Add("c"))
        .then_expect_error_message("the tab is not open");
    TestFramework::<Tab>::new()
        .when(&Add("c"))
        .then_expect_error_message_contains("not open");
    TestFramework::<Tab>::new().when(&Add("c")).then_expect_error();
    TestFramework::<Tab>::new()
        .given(&[Opened])
        .when(&Touch)
        .then_expect_no_events();
    let result = TestFramework::<Tab>::new()
        .given(&[Opened])
        .when(&AddPair("x", "y"))
        .inspect_result();
    assert_eq!(result.map(|events| events.len()), Ok(2));
}
// ANCHOR_END: given_when_then

fn panic_message(check: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(check).expect_err("the check must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(ToString::to_string))
        .unwrap_or_default()
}

#[test]
fn other_events_fail_with_a_per_event_diff() {
    let message = panic_message(|| {
        TestFramework::<Tab>::new()
            .given(&[Opened])
            .when(&AddPair("x", "y"))
            .then_expect_events(&[added("x"), added("z"), added("w")]);
    });
    assert!(message.contains("expected 3 event(s), got 2"), "{message}");
    assert!(
        message.contains(r#"[0]   Added(Added { item: "x" })"#),
        "{message}"
    );
    assert!(
        message.contains(r#"[1] - Added(Added { item: "z" })"#),
        "{message}"
    );
    assert!(
        message.contains(r#"[1] + Added(Added { item: "y" })"#),
        "{message}"
    );
    assert!(
        message.contains(r#"[2] - Added(Added { item: "w" })   (missing)"#),
        "{message}"
    );
}

#[test]
fn wrong_outcomes_fail_with_what_happened() {
    let rejected = panic_message(|| {
        TestFramework::<Tab>::new()
            .when(&Add("x"))
            .then_expect_events(&[added("x")]);
    });
    assert!(
        rejected.contains("the command was rejected: the tab is not open"),
        "{rejected}"
    );

    let succeeded = panic_message(|| {
        TestFramework::<Tab>::new()
            .given(&[Opened])
            .when(&Add("x"))
            .then_expect_error();
    });
    assert!(
        succeeded.contains("expected the command to be rejected"),
        "{succeeded}"
    );

    let other_error = panic_message(|| {
        TestFramework::<Tab>::new()
            .when(&Add("x"))
            .then_expect_error_eq(&TabError::Full(2));
    });
    assert!(other_error.contains("expected: Full(2)"), "{other_error}");
    assert!(other_error.contains("actual: NotOpen"), "{other_error}");

    let other_message = panic_message(|| {
        TestFramework::<Tab>::new()
            .when(&Add("x"))
            .then_expect_error_message("full");
    });
    assert!(
        other_message.contains("actual: the tab is not open"),
        "{other_message}"
    );

    // A part of the message is not the whole message; the part matcher
    // takes it, and fails on a part the message lacks.
    let part_only = panic_message(|| {
        TestFramework::<Tab>::new()
            .when(&Add("x"))
            .then_expect_error_message("not open");
    });
    assert!(part_only.contains("another message"), "{part_only}");
    let missing_part = panic_message(|| {
        TestFramework::<Tab>::new()
            .when(&Add("x"))
            .then_expect_error_message_contains("full");
    });
    assert!(
        missing_part.contains("does not contain") && missing_part.contains("actual: the tab is not open"),
        "{missing_part}"
    );

    let some_events = panic_message(|| {
        TestFramework::<Tab>::new()
            .given(&[Opened])
            .when(&Add("x"))
            .then_expect_no_events();
    });
    assert!(some_events.contains("expected no events"), "{some_events}");
}

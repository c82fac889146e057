//! The rules every [`ReactorStore`] keeps, as one check a store's tests
//! call: timers stored once, due in order, cancelled only by later causes,
//! finished only while pending; dead letters parked, replaced, retried and
//! discarded.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::reactor::{DeadLetter, ReactorStore};
use crate::schedule::{NewTimer, TimerId, TimerOutcome, TimerState};
use crate::store::StoredEvent;

/// Fails with the rule's name and what went wrong.
#[track_caller]
fn expect(rule: &str, holds: bool, what: impl FnOnce() -> String) {
    assert!(holds, "reactor store rule {rule}: {}", what());
}

/// The value of a store call, or a panic naming the failure.
#[track_caller]
fn done<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("reactor store rule: the store failed: {error}"),
    }
}

/// A timer of `reactor` for the checks.
fn timer<Pos>(reactor: &str, n: u128, key: &str, due: DateTime<Utc>, cause: Pos) -> NewTimer<Pos> {
    NewTimer {
        id: TimerId::from_uuid(Uuid::new_v5(&Uuid::from_u128(n), reactor.as_bytes())),
        reactor: reactor.to_owned(),
        key: key.to_owned(),
        due,
        command: "invoice/invoice.remind".to_owned(),
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        cause,
    }
}

/// Runs every rule against `store`, under reactor names that start with
/// `prefix` (give each run its own, or a fresh store). `positions` are
/// three event positions of the store's type, ascending; `event(p)` a
/// stored event at position `p` (any stream) that the store keeps in its
/// dead letters exactly.
///
/// # Panics
///
/// When a rule does not hold: the message names it (`reactor store rule
/// timers.stored_once: ...`), or when the store fails.
#[expect(
    clippy::too_many_lines,
    reason = "one rule after another, each stated where it is checked"
)]
pub async fn check<D, Id, Pos, M>(
    store: &D,
    prefix: &str,
    positions: [Pos; 3],
    event: impl Fn(Pos) -> StoredEvent<Id, Pos, M>,
) where
    D: ReactorStore<Id, Pos, M>,
    Id: Debug + PartialEq + Clone,
    Pos: Debug + PartialEq + Copy,
    M: Debug + PartialEq + Clone,
{
    let [first, second, third] = positions;
    // Whole milliseconds: every store keeps those exactly.
    let now = Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap_or_else(|_| Utc::now());
    let later = |seconds: i64| now + TimeDelta::seconds(seconds);
    let reactor = format!("{prefix}reminders");
    let other = format!("{prefix}others");

    // timers.stored_once
    let timers = vec![
        timer(&reactor, 1, "a", later(-10), first),
        timer(&reactor, 2, "b", later(-5), first),
        timer(&reactor, 3, "a", later(60), second),
        timer(&other, 4, "a", later(-10), first),
    ];
    done(store.schedule(timers.clone()).await);
    let mut moved = timers[0].clone();
    moved.due = later(-100);
    "z".clone_into(&mut moved.key);
    done(store.schedule(vec![moved]).await);
    let stored = done(store.timers(&reactor).await);
    expect("timers.stored_once", stored.len() == 3, || {
        format!(
            "expected the 3 timers of {reactor} (a timer scheduled again is not stored again), got {stored:?}"
        )
    });
    let first_timer = &stored[0];
    expect(
        "timers.round_trip",
        first_timer.id == timers[0].id
            && first_timer.key == "a"
            && first_timer.due == later(-10)
            && first_timer.command == timers[0].command
            && first_timer.payload == timers[0].payload
            && first_timer.cause == first
            && first_timer.state == TimerState::Pending
            && first_timer.attempts == 0
            && first_timer.last_error.is_none(),
        || {
            format!(
                "expected the first timer as scheduled ({:?}), got {first_timer:?}",
                timers[0]
            )
        },
    );

    // timers.due_in_order
    let due = done(store.due(&reactor, now, 10).await);
    let ids: Vec<_> = due.iter().map(|timer| timer.id).collect();
    expect(
        "timers.due_in_order",
        ids == vec![timers[0].id, timers[1].id],
        || format!("expected the two due timers of {reactor}, earliest first, got {due:?}"),
    );
    let limited = done(store.due(&reactor, now, 1).await);
    expect(
        "timers.due_limit",
        limited.len() == 1 && limited[0].id == timers[0].id,
        || format!("expected one due timer with a limit of 1, got {limited:?}"),
    );
    let next = done(store.next_due(&reactor).await);
    expect("timers.next_due", next == Some(later(-10)), || {
        format!(
            "expected the earliest pending due time {:?}, got {next:?}",
            later(-10)
        )
    });

    // timers.cancel_by_later_cause
    let cancelled = done(store.cancel(&reactor, "a", first).await);
    expect("timers.cancel_by_later_cause", cancelled == 0, || {
        format!(
            "expected a cancellation caused at {first:?} to cancel no timer scheduled at {first:?} or later, got {cancelled}"
        )
    });
    let cancelled = done(store.cancel(&reactor, "a", second).await);
    expect("timers.cancel_by_later_cause", cancelled == 1, || {
        format!(
            "expected a cancellation caused at {second:?} to cancel the one earlier timer with key a, got {cancelled}"
        )
    });
    let others = done(store.due(&other, now, 10).await);
    expect("timers.reactors_apart", others.len() == 1, || {
        format!("expected the timer of {other} untouched by {reactor}'s cancellation, got {others:?}")
    });

    // timers.finish_once
    let finished = done(store.finish(timers[1].id, TimerOutcome::Fired).await);
    let again = done(store.finish(timers[1].id, TimerOutcome::Fired).await);
    let on_cancelled = done(store.finish(timers[0].id, TimerOutcome::Fired).await);
    expect("timers.finish_once", finished && !again && !on_cancelled, || {
        format!(
            "expected finish to record a pending timer once and nothing else, got {finished}, {again}, {on_cancelled}"
        )
    });
    let due = done(store.due(&reactor, now, 10).await);
    expect("timers.finish_once", due.is_empty(), || {
        format!("expected no due timer once fired and cancelled, got {due:?}")
    });

    // timers.retry_and_fail
    let retry_at = later(30);
    let retried = done(
        store
            .finish(
                timers[2].id,
                TimerOutcome::Retry {
                    due: retry_at,
                    error: "the stock is locked".to_owned(),
                },
            )
            .await,
    );
    done(
        store
            .finish(
                timers[2].id,
                TimerOutcome::Failed {
                    error: "the stock is gone".to_owned(),
                },
            )
            .await,
    );
    let stored = done(store.timers(&reactor).await);
    let third_timer = stored.iter().find(|timer| timer.id == timers[2].id);
    expect(
        "timers.retry_and_fail",
        retried
            && third_timer.is_some_and(|timer| {
                timer.state == TimerState::Failed
                    && timer.attempts == 2
                    && timer.due == retry_at
                    && timer.last_error.as_deref() == Some("the stock is gone")
            }),
        || {
            format!(
                "expected the third timer failed after 2 attempts, due at {retry_at:?}, with the last error, got {third_timer:?}"
            )
        },
    );
    let next = done(store.next_due(&reactor).await);
    expect("timers.next_due", next.is_none(), || {
        format!("expected no pending timer, got one due at {next:?}")
    });
    let back = done(store.retry_timer(timers[2].id, now).await);
    let not_failed = done(store.retry_timer(timers[1].id, now).await);
    let due = done(store.due(&reactor, now, 10).await);
    expect(
        "timers.retry_timer",
        back && !not_failed && due.len() == 1 && due[0].attempts == 0 && due[0].due == now,
        || {
            format!(
                "expected the failed timer pending again, due now, attempts reset (and a fired one left alone), got {back}, {not_failed}, {due:?}"
            )
        },
    );
    let gone = done(store.cancel_timer(timers[2].id).await);
    let twice = done(store.cancel_timer(timers[2].id).await);
    expect("timers.cancel_timer", gone && !twice, || {
        format!("expected cancel_timer to cancel a pending timer once, got {gone}, {twice}")
    });

    // letters.park_and_list
    let letters = format!("{prefix}letters");
    let parked_at = now;
    done(
        store
            .park(DeadLetter::new(
                &letters,
                event(second),
                "the stock is locked",
                3,
                parked_at,
            ))
            .await,
    );
    done(
        store
            .park(DeadLetter::new(
                &letters,
                event(first),
                "no such product",
                5,
                parked_at,
            ))
            .await,
    );
    done(
        store
            .park(DeadLetter::new(&other, event(third), "elsewhere", 1, parked_at))
            .await,
    );
    let listed = done(store.dead_letters(&letters).await);
    expect(
        "letters.park_and_list",
        listed.len() == 2
            && listed[0].event == event(first)
            && listed[0].error == "no such product"
            && listed[0].attempts == 5
            && listed[0].parked_at == parked_at
            && !listed[0].retry_requested
            && listed[1].event == event(second),
        || format!("expected the two dead letters of {letters} in position order, as parked, got {listed:?}"),
    );

    // letters.retry_request
    let requested = done(store.request_retry(&letters, first).await);
    let nothing = done(store.request_retry(&letters, third).await);
    let listed = done(store.dead_letters(&letters).await);
    expect(
        "letters.retry_request",
        requested && !nothing && listed[0].retry_requested && !listed[1].retry_requested,
        || {
            format!(
                "expected a retry requested for the letter at {first:?} only, got {requested}, {nothing}, {listed:?}"
            )
        },
    );
    let requests = done(store.retry_requests(&letters).await);
    expect(
        "letters.retry_requests",
        requests.len() == 1 && requests[0].event == event(first) && requests[0].retry_requested,
        || format!("expected the one letter at {first:?} among the retry requests, got {requests:?}"),
    );

    // letters.park_replaces
    let reparked_at = now + TimeDelta::from_std(Duration::from_secs(5)).unwrap_or(TimeDelta::zero());
    done(
        store
            .park(DeadLetter::new(
                &letters,
                event(first),
                "still no such product",
                6,
                reparked_at,
            ))
            .await,
    );
    let listed = done(store.dead_letters(&letters).await);
    expect(
        "letters.park_replaces",
        listed.len() == 2
            && listed[0].error == "still no such product"
            && listed[0].attempts == 6
            && listed[0].parked_at == reparked_at
            && !listed[0].retry_requested,
        || format!("expected the letter at {first:?} replaced, its retry request cleared, got {listed:?}"),
    );

    // letters.discard
    let discarded = done(store.discard(&letters, first).await);
    let twice = done(store.discard(&letters, first).await);
    let listed = done(store.dead_letters(&letters).await);
    let others = done(store.dead_letters(&other).await);
    expect(
        "letters.discard",
        discarded && !twice && listed.len() == 1 && listed[0].event == event(second) && others.len() == 1,
        || {
            format!(
                "expected one discard of the letter at {first:?}, the others kept, got {discarded}, {twice}, {listed:?}, {others:?}"
            )
        },
    );
}

//! `subscribe`, for stores that implement [`Subscribe`]: a subscription
//! delivers the history then live events, with no gap or duplicate at the
//! seam, in the one order every subscriber shares; it keeps each filter's
//! own `after`; a follower reports progress past events its filters skip;
//! `head_position` and `load_page` keep their promises.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Filter, Noted, Opened, Stored, everything, id};
use crate::event::DomainEvent as _;
use crate::store::EventFilter;
use crate::subscription::{Follower, Progress, Subscribe, Subscription};

async fn next_event<S: Subscribe>(rule: Check, what: &str, subscription: &mut Subscription<S>) -> Stored<S> {
    match rule.bounded(what, subscription.next()).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => rule.fail(format_args!("{what}"), format_args!("a store failure: {error}")),
        None => rule.fail(format_args!("{what}"), "the end of the subscription"),
    }
}

/// A subscription delivers the history, then events committed after it
/// started, in order, each once, and nothing more. The live events are
/// committed once the subscription has caught up and waits, so only the
/// store's commit signal (or its poll interval) can bring them.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn catch_up_then_live<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.catch_up_then_live");
    let stream = id::<S>("subscribe-1");
    rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    rule.notes(&store, ACCOUNT, &stream, &[3]).await;
    let mut subscription = store.subscribe(everything::<S>(), None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(rule, "the history", &mut subscription).await);
    }
    // Caught up: the subscription reads the store, finds nothing new and
    // waits for a commit. (A `next` dropped by the timeout leaves the
    // subscription where it was.)
    let idle = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
    rule.ensure(
        idle.is_err(),
        "no event between the history and the live commits",
        || match idle {
            Ok(Some(Ok(event))) => format!("an event at {:?}", event.position),
            Ok(other) => format!("{:?}", other.map(|item| item.map(|event| event.position))),
            Err(_) => String::new(),
        },
    );
    let writer = store.clone();
    let live_stream = stream.clone();
    let live = tokio::spawn(async move {
        rule.notes(&writer, ACCOUNT, &live_stream, &[4, 5]).await;
        rule.notes(&writer, ACCOUNT, &live_stream, &[6]).await;
    });
    for _ in 0..3 {
        seen.push(next_event(rule, "the events committed live", &mut subscription).await);
    }
    if let Err(error) = rule.bounded("the live writer", live).await {
        rule.fail("the live writer to commit", format_args!("{error}"));
    }
    rule.same(
        "the history then the live events, in order, once each",
        vec![1, 2, 3, 4, 5, 6],
        rule.numbers(&store, &seen),
    );
    let more = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
    rule.ensure(
        more.is_err(),
        "no event after the last one committed",
        || match more {
            Ok(Some(Ok(event))) => format!("an event at {:?}", event.position),
            Ok(other) => format!("{:?}", other.map(|item| item.map(|event| event.position))),
            Err(_) => String::new(),
        },
    );
}

/// Subscribing from a position in the middle of the log delivers exactly
/// the events after it.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn resumes_after_position<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.resumes_after_position");
    let stream = id::<S>("subscribe-2");
    rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    let from = rule.notes(&store, ACCOUNT, &stream, &[3]).await;
    rule.notes(&store, ACCOUNT, &stream, &[4, 5]).await;
    let mut subscription = store.subscribe(everything::<S>(), Some(from));
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_event(rule, "the events after the position", &mut subscription).await);
    }
    rule.same(
        "the events after the position subscribed from",
        vec![4, 5],
        rule.numbers(&store, &seen),
    );
}

/// A filter's own `after` holds in a subscription as in `load_events`:
/// subscribing with `for_event(k).after(p2)` from `p1 < p2` delivers only
/// the events after `p2`, in the history and live.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn filter_after_is_kept<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.filter_after_is_kept");
    let stream = id::<S>("subscribe-after");
    let p1 = rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    let p2 = rule.notes(&store, ACCOUNT, &stream, &[2]).await;
    rule.notes(&store, ACCOUNT, &stream, &[3]).await;
    let filters = vec![EventFilter::for_event(Noted::KIND).after(p2)];
    let loaded = rule.load(&store, &filters).await;
    rule.same(
        "load_events with for_event(k).after(p2) (the event at p3)",
        vec![3],
        rule.numbers(&store, &loaded),
    );
    let mut subscription = store.subscribe(filters, Some(p1));
    let first = next_event(rule, "the first event", &mut subscription).await;
    rule.same(
        "the first event of a subscription from p1 with a filter after p2 (the filter's own `after` is kept, \
         as in load_events)",
        vec![3],
        rule.numbers(&store, &[first]),
    );
    rule.notes(&store, ACCOUNT, &stream, &[4]).await;
    let live = next_event(rule, "the live event", &mut subscription).await;
    rule.same("the live event after p3", vec![4], rule.numbers(&store, &[live]));
}

/// A follower whose filters skip the newest events still reports that it
/// has read past them, so a reader can wait for any position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn progress_past_filtered_events<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.progress_past_filtered_events");
    let stream = id::<S>("subscribe-3");
    let mut follower = Follower::new(store.clone(), vec![EventFilter::for_event(Opened::KIND)], None);
    // `notes` writes `Noted` events only: none match the `Opened` filter.
    let last = rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    loop {
        match rule
            .bounded(
                "the follower to report progress past the filtered events",
                follower.next(),
            )
            .await
        {
            Some(Ok(Progress::CaughtUp(position))) if position >= last => break,
            Some(Ok(Progress::CaughtUp(_))) => {}
            Some(Ok(Progress::Event(event))) => rule.fail(
                "no event (the filter matches none)",
                format_args!("an event of kind {:?}", event.kind),
            ),
            Some(Err(error)) => rule.fail("progress", format_args!("a store failure: {error}")),
            None => rule.fail("progress", "the end of the follower"),
        }
    }
}

/// Reads `total` events from a subscription in a task.
fn collect<S: Subscribe>(
    mut subscription: Subscription<S>,
    total: usize,
) -> tokio::task::JoinHandle<Result<Vec<Stored<S>>, String>> {
    tokio::spawn(async move {
        let mut seen = Vec::with_capacity(total);
        while seen.len() < total {
            match subscription.next().await {
                Some(Ok(event)) => seen.push(event),
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the subscription ended".to_owned()),
            }
        }
        Ok(seen)
    })
}

/// Four writers commit 50 one-event batches each to their own streams
/// while two subscribers follow: each subscriber receives every event
/// exactly once, in ascending position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn concurrent_writers_and_subscribers<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.concurrent_writers_and_subscribers");
    let (writers, batches) = (4_u64, 50_u64);
    let total = usize::try_from(writers * batches).unwrap_or(usize::MAX);
    let readers: Vec<_> = (0..2)
        .map(|_| collect(store.subscribe(everything::<S>(), None), total))
        .collect();
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let stream = id::<S>(&format!("subscribe-writer-{writer}"));
            for batch in 0..batches {
                rule.notes(&*store, ACCOUNT, &stream, &[writer * 1_000 + batch])
                    .await;
            }
        }));
    }
    for task in tasks {
        if let Err(error) = rule.bounded("a writer", task).await {
            rule.fail("every writer to commit", format_args!("{error}"));
        }
    }
    for reader in readers {
        let seen = match rule.bounded("a subscriber to receive every event", reader).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => rule.fail("every event", error),
            Err(error) => rule.fail("the subscriber to finish", format_args!("{error}")),
        };
        let distinct: HashSet<u64> = rule.numbers(&*store, &seen).into_iter().collect();
        rule.same(
            "the number of distinct events a subscriber received",
            total,
            distinct.len(),
        );
        rule.ascending::<S>("a subscription", &seen);
    }
}

/// Subscribers started at different times — before the writes, in the
/// middle, after — deliver the same events in the same order.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn subscribers_share_one_order<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.subscribers_share_one_order");
    let total = 60;
    let early = collect(store.subscribe(everything::<S>(), None), total);
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..3_u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let stream = id::<S>(&format!("share-{writer}"));
            for batch in 0..10 {
                rule.notes(
                    &*store,
                    ACCOUNT,
                    &stream,
                    &[writer * 100 + batch * 2, writer * 100 + batch * 2 + 1],
                )
                .await;
            }
        }));
    }
    let middle = collect(store.subscribe(everything::<S>(), None), total);
    for task in tasks {
        if let Err(error) = rule.bounded("a writer", task).await {
            rule.fail("every writer to commit", format_args!("{error}"));
        }
    }
    let late = collect(store.subscribe(everything::<S>(), None), total);
    let log = rule.load(&*store, &everything::<S>()).await;
    let log = rule.numbers(&*store, &log);
    for (when, reader) in [
        ("before the writes", early),
        ("during the writes", middle),
        ("after the writes", late),
    ] {
        let seen = match rule.bounded("a subscriber to receive every event", reader).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => rule.fail("every event", error),
            Err(error) => rule.fail("the subscriber to finish", format_args!("{error}")),
        };
        rule.same(
            format_args!("the events of a subscriber started {when}, in the log's order"),
            log.clone(),
            rule.numbers(&*store, &seen),
        );
    }
}

/// `head_position` is `None` on an empty store and the last committed
/// position once commits have returned.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn head_position_is_last_visible<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.head_position_is_last_visible");
    rule.same(
        "the head position of an empty store",
        None,
        rule.ok("head_position", store.head_position()).await,
    );
    for (stream, numbers) in [
        ("head-a", &[1_u64, 2][..]),
        ("head-b", &[3]),
        ("head-a", &[4, 5, 6]),
    ] {
        let last = rule.notes(&store, ACCOUNT, &id::<S>(stream), numbers).await;
        rule.same(
            "the head position after a commit returned (its last position)",
            Some(last),
            rule.ok("head_position", store.head_position()).await,
        );
    }
}

/// `load_page(filters, limit)` returns a prefix of what `load_events`
/// returns, at most `limit` events and at least one when any match.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn load_page_is_a_prefix<S: ConformanceStore + Subscribe>(store: S) {
    let rule = Check("subscribe.load_page_is_a_prefix");
    let a = id::<S>("page-a");
    let b = id::<S>("page-b");
    rule.notes(&store, ACCOUNT, &a, &[1, 2, 3]).await;
    let cut = rule.notes(&store, ACCOUNT, &b, &[4, 5]).await;
    rule.notes(&store, ACCOUNT, &a, &[6, 7, 8, 9]).await;
    let shapes: [(&str, Vec<Filter<S>>); 3] = [
        ("every event", everything::<S>()),
        (
            "a stream and a kind after a position",
            vec![
                EventFilter::for_stream(ACCOUNT, a.clone()),
                EventFilter::for_event(Noted::KIND).after(cut),
            ],
        ),
        (
            "a stream after a position of another",
            vec![EventFilter::for_stream(ACCOUNT, a).after(cut)],
        ),
    ];
    for (case, filters) in shapes {
        let all = rule.numbers(&store, &rule.load(&store, &filters).await);
        for limit in [1, 2, 3, 100] {
            let page = rule.ok("load_page", store.load_page(&filters, limit)).await;
            let page = rule.numbers(&store, &page);
            rule.ensure(
                !page.is_empty() && page.len() <= limit && all.starts_with(&page),
                format_args!(
                    "load_page({case}, limit {limit}) to be a non-empty prefix of at most {limit} of what \
                     load_events gives ({all:?})"
                ),
                || format!("{page:?}"),
            );
        }
    }
}

//! Conformance checks for stores that can be followed live ([`Subscribe`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{ACCOUNT, ConformanceMetadata, Opened, all_filters, bounded, commit_unchecked, id, numbers};
use crate::event::DomainEvent as _;
use crate::store::{EventFilter, StoredEvent};
use crate::subscription::{Follower, Progress, Subscribe, Subscription};

/// Runs every subscription check, each against a fresh store from
/// `make_store`. Run [`run`](super::run) too: these checks assume the basic
/// contract holds.
///
/// # Panics
///
/// When a check fails, with the check's name and what it saw.
pub async fn run_subscriptions<S, F, Fut>(mut make_store: F)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    catch_up_then_live(make_store().await).await;
    resume_after_position(make_store().await).await;
    filter_after_is_kept(make_store().await).await;
    progress_past_filtered_events(make_store().await).await;
    concurrent_writers_and_subscribers(make_store().await, 4, 50, 2).await;
}

async fn next_event<S: Subscribe>(
    what: &str,
    subscription: &mut Subscription<S>,
) -> StoredEvent<S::Id, S::Position, S::Metadata> {
    match bounded(what, subscription.next()).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("conformance ({what}): the subscription failed: {error}"),
        None => panic!("conformance ({what}): the subscription ended"),
    }
}

/// A subscription delivers the history, then events committed after it
/// started, in order, with no gap or duplicate at the seam.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn catch_up_then_live<S>(store: S)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let stream = id::<S>("subscribe-1");
    commit_unchecked(&store, ACCOUNT, &stream, &[1, 2]).await;
    commit_unchecked(&store, ACCOUNT, &stream, &[3]).await;
    let mut subscription = store.subscribe(all_filters::<S>(), None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event("catch_up_then_live: history", &mut subscription).await);
    }
    let writer = store.clone();
    let live_stream = stream.clone();
    let live = tokio::spawn(async move {
        commit_unchecked(&writer, ACCOUNT, &live_stream, &[4, 5]).await;
        commit_unchecked(&writer, ACCOUNT, &live_stream, &[6]).await;
    });
    for _ in 0..3 {
        seen.push(next_event("catch_up_then_live: live", &mut subscription).await);
    }
    assert!(bounded("the live writer", live).await.is_ok());
    assert_eq!(
        numbers(&seen, &store),
        [1, 2, 3, 4, 5, 6],
        "conformance (catch_up_then_live): history then live, in order, once each"
    );
    let nothing_more = tokio::time::timeout(Duration::from_millis(50), subscription.next()).await;
    assert!(
        nothing_more.is_err(),
        "conformance (catch_up_then_live): no event after the last one"
    );
}

/// Subscribing after a position delivers exactly the events after it.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn resume_after_position<S>(store: S)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let stream = id::<S>("subscribe-2");
    commit_unchecked(&store, ACCOUNT, &stream, &[1, 2]).await;
    let checkpoint = commit_unchecked(&store, ACCOUNT, &stream, &[3]).await;
    commit_unchecked(&store, ACCOUNT, &stream, &[4]).await;
    let mut subscription = store.subscribe(all_filters::<S>(), Some(checkpoint));
    let first = next_event("resume_after_position", &mut subscription).await;
    assert_eq!(
        numbers(&[first], &store),
        [4],
        "conformance (resume_after_position)"
    );
}

/// A filter's own `after` holds in a subscription as in `load_events`:
/// subscribing with `for_event(k).after(p2)` from `p1 < p2` delivers only
/// the events after `p2`, in the history and live.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn filter_after_is_kept<S>(store: S)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    use crate::event::DomainEvent as _;
    let stream = id::<S>("subscribe-after");
    let p1 = commit_unchecked(&store, ACCOUNT, &stream, &[1]).await;
    let p2 = commit_unchecked(&store, ACCOUNT, &stream, &[2]).await;
    commit_unchecked(&store, ACCOUNT, &stream, &[3]).await;
    let filters = vec![EventFilter::for_event(super::Noted::KIND).after(p2)];
    let loaded = match bounded("filter_after_is_kept: load", store.load_events(&filters)).await {
        Ok(events) => numbers(&events, &store),
        Err(error) => panic!("conformance rule subscribe.filter_after_is_kept: load_events failed: {error}"),
    };
    assert!(
        loaded == [3],
        "conformance rule subscribe.filter_after_is_kept: load_events after p2 gives the event at p3 only, got {loaded:?}"
    );
    let mut subscription = store.subscribe(filters, Some(p1));
    let first = next_event("filter_after_is_kept: history", &mut subscription).await;
    let first = numbers(&[first], &store);
    assert!(
        first == [3],
        "conformance rule subscribe.filter_after_is_kept: subscribing from p1 with a filter after p2 delivers \
         the event at p3 first (the filter's own `after` is kept, as in load_events), got {first:?}"
    );
    commit_unchecked(&store, ACCOUNT, &stream, &[4]).await;
    let live = next_event("filter_after_is_kept: live", &mut subscription).await;
    let live = numbers(&[live], &store);
    assert!(
        live == [4],
        "conformance rule subscribe.filter_after_is_kept: the live event after p3 comes next, got {live:?}"
    );
}

/// A follower whose filters skip the newest events still reports that it
/// has read past them, so a reader can wait for any position.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn progress_past_filtered_events<S>(store: S)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let stream = id::<S>("subscribe-3");
    let mut follower = Follower::new(store.clone(), vec![EventFilter::for_event(Opened::KIND)], None);
    // `commit_unchecked` writes `Noted` events only: none of them match
    // the follower's `Opened` filter.
    let last = commit_unchecked(&store, ACCOUNT, &stream, &[1, 2]).await;
    loop {
        match bounded("progress_past_filtered_events", follower.next()).await {
            Some(Ok(Progress::CaughtUp(position))) if position >= last => break,
            Some(Ok(Progress::CaughtUp(_))) => {}
            Some(Ok(Progress::Event(event))) => {
                panic!(
                    "conformance (progress_past_filtered_events): unexpected event {:?}",
                    event.kind
                )
            }
            Some(Err(error)) => panic!("conformance (progress_past_filtered_events): {error}"),
            None => panic!("conformance (progress_past_filtered_events): the follower ended"),
        }
    }
}

/// `writers` tasks commit `batches` one-event batches each to distinct
/// streams while `subscribers` follow: each subscriber receives every event
/// exactly once, all in the same ascending order.
///
/// # Panics
///
/// When the store breaks the invariant.
pub async fn concurrent_writers_and_subscribers<S>(store: S, writers: u64, batches: u64, subscribers: usize)
where
    S: Subscribe,
    S::Id: From<String> + PartialEq,
    S::Metadata: ConformanceMetadata,
{
    let total = usize::try_from(writers * batches).unwrap_or(usize::MAX);
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut subscription = store.subscribe(all_filters::<S>(), None);
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                match subscription.next().await {
                    Some(Ok(event)) => seen.push(event),
                    Some(Err(error)) => return Err(error.to_string()),
                    None => return Err("the subscription ended".to_owned()),
                }
            }
            Ok(seen)
        }));
    }
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let stream = id::<S>(&format!("subscribe-writer-{writer}"));
            for batch in 0..batches {
                commit_unchecked(&*store, ACCOUNT, &stream, &[writer * 1_000 + batch]).await;
            }
        }));
    }
    for task in tasks {
        assert!(
            bounded("a writer", task).await.is_ok(),
            "conformance: a writer task failed"
        );
    }
    let mut orders = Vec::new();
    for reader in readers {
        let seen = match bounded("a subscriber to receive every event", reader).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => panic!("conformance (concurrent_writers_and_subscribers): {error}"),
            Err(error) => {
                panic!("conformance (concurrent_writers_and_subscribers): a reader failed: {error}")
            }
        };
        let numbers = numbers(&seen, &*store);
        let distinct: HashSet<u64> = numbers.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            total,
            "conformance (concurrent_writers_and_subscribers): every event once"
        );
        for pair in seen.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "conformance (concurrent_writers_and_subscribers): ascending positions"
            );
        }
        orders.push(numbers);
    }
    assert!(
        orders.windows(2).all(|pair| pair[0] == pair[1]),
        "conformance (concurrent_writers_and_subscribers): every subscriber sees the same order"
    );
}

//! Subscriptions on the SQLite store beyond the conformance suite (which
//! `tests/conformance.rs` runs): events appended by another store on the
//! same file (standing in for another process) arrive through polling.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sourcery_core::concurrency::Unchecked;
use sourcery_core::event::DomainEvent;
use sourcery_core::store::{EventFilter, EventStore};
use sourcery_core::subscription::Subscribe;
use sourcery_sqlite::{OpenOptions, Store};

/// Every wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pinged {
    n: u32,
}

impl DomainEvent for Pinged {
    const KIND: &'static str = "ping";
}

async fn ping(store: &Store<String, ()>, n: u32) -> i64 {
    let mut tx = store.begin::<Unchecked>("pinger", "p".to_owned(), None);
    tx.append(Pinged { n }, ()).expect("the event encodes");
    tx.commit()
        .await
        .expect("the commit succeeds")
        .expect("one event was written")
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_another_store_on_the_file_arrive_by_polling() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("shared.db");
    let here: Store<String, ()> = OpenOptions::new()
        .poll_interval(Some(Duration::from_millis(50)))
        .open(&path)
        .await
        .expect("the first store opens");
    // Another `Store` value: its own threads, connections and notifier, as
    // another process would have.
    let elsewhere: Store<String, ()> = Store::open(&path).await.expect("the second store opens");

    let first = ping(&here, 1).await;
    let mut pings = here.subscribe(vec![EventFilter::for_event(Pinged::KIND)], None);
    let seen = tokio::time::timeout(WAIT, pings.next())
        .await
        .expect("the history arrives in time")
        .expect("the subscription goes on")
        .expect("the store reads");
    assert_eq!(seen.position, first);

    // The subscription is now waiting; nothing rings its notifier.
    let second = ping(&elsewhere, 2).await;
    let third = ping(&elsewhere, 3).await;
    for (want, n) in [(second, 2), (third, 3)] {
        let event = tokio::time::timeout(WAIT, pings.next())
            .await
            .expect("the other store's event arrives by polling")
            .expect("the subscription goes on")
            .expect("the store reads");
        assert_eq!(event.position, want);
        assert_eq!(
            event.decode::<Pinged>(here.codec()).expect("the event decodes"),
            Pinged { n }
        );
    }
    assert_eq!(here.head_position().await.expect("the head reads"), Some(third));

    // And the other way round: the second store's subscriber sees the first
    // store's commits (the default poll interval, one second).
    let mut there = elsewhere.subscribe(vec![EventFilter::for_event(Pinged::KIND)], Some(third));
    let fourth = ping(&here, 4).await;
    let event = tokio::time::timeout(WAIT, there.next())
        .await
        .expect("the first store's event arrives by polling")
        .expect("the subscription goes on")
        .expect("the store reads");
    assert_eq!(event.position, fourth);
}

#[tokio::test]
async fn a_page_holds_at_most_its_limit_in_position_order() {
    let store: Store<String, ()> = Store::open_in_memory().await.expect("the store opens");
    let mut positions = Vec::new();
    for n in 0..10 {
        positions.push(ping(&store, n).await);
    }
    let filters = [
        EventFilter::for_event(Pinged::KIND).after(positions[2]),
        EventFilter::for_aggregate(Pinged::KIND, "pinger", "p".to_owned()),
    ];
    let page = store.load_page(&filters, 4).await.expect("the page loads");
    let got: Vec<i64> = page.iter().map(|event| event.position).collect();
    assert_eq!(got, positions[..4]);
    assert!(
        store
            .load_page(&filters, 0)
            .await
            .expect("the page loads")
            .is_empty()
    );
    assert_eq!(
        store.head_position().await.expect("the head reads"),
        positions.last().copied()
    );
    let empty: Store<String, ()> = Store::open_in_memory().await.expect("the store opens");
    assert_eq!(empty.head_position().await.expect("the head reads"), None);
}

//! Writers racing on one stream: optimistic writers get exactly one winner
//! per round; unchecked writers all land, and the stream stays consistent.

use crate::support;

use std::collections::HashSet;
use std::sync::Arc;

use sourcery_core::concurrency::ExpectedVersion;
use sourcery_core::store::{AppendError, EventFilter, EventId, EventStore, NonEmpty, PersistableEvent};

use tokio::sync::Barrier;

const KIND: &str = "race.noted";

fn batch(writer: u64, round: u64, size: u64) -> NonEmpty<PersistableEvent<serde_json::Value>> {
    let events = (0..size)
        .map(|part| PersistableEvent {
            id: EventId::new(),
            kind: KIND.to_owned(),
            schema_version: 1,
            data: format!("{writer}/{round}/{part}").into_bytes(),
            metadata: serde_json::json!({ "writer": writer, "round": round, "part": part }),
        })
        .collect();
    NonEmpty::from_vec(events).expect("size is at least 1")
}

/// 32 tasks commit on the same expected version, 200 rounds: exactly one
/// wins each round, the others get a conflict naming the winner's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_optimistic_writers_exactly_one_wins_each_round() {
    const WRITERS: u64 = 32;
    const ROUNDS: u64 = 200;
    let Some(store) = support::store_with::<String, serde_json::Value>(33).await else {
        return;
    };
    let store = Arc::new(store);
    let stream = "contended".to_owned();
    let mut version = store
        .append_expecting_new("race", &stream, batch(0, 0, 1))
        .await
        .expect("create")
        .last_position;
    let barrier = Arc::new(Barrier::new(usize::try_from(WRITERS).unwrap()));
    for round in 1..=ROUNDS {
        let mut tasks = Vec::new();
        for writer in 1..=WRITERS {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            let stream = stream.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append("race", &stream, Some(version), batch(writer, round, 2))
                    .await
            }));
        }
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        for task in tasks {
            match support::bounded("a racing append", 30, task).await.unwrap() {
                Ok(written) => winners.push(written.last_position),
                Err(AppendError::Conflict(conflict)) => conflicts.push(conflict),
                Err(other) => panic!("round {round}: a writer failed: {other}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner, got {winners:?}"
        );
        let winner = winners[0];
        for conflict in &conflicts {
            assert_eq!(conflict.expected, ExpectedVersion::Exact(version));
            assert_eq!(
                conflict.actual,
                Some(winner),
                "round {round}: the actual version is the winner's"
            );
        }
        version = winner;
    }
    let events = store
        .load_events(&[EventFilter::for_aggregate(KIND, "race", stream.clone())])
        .await
        .unwrap();
    assert_eq!(events.len(), usize::try_from(1 + 2 * ROUNDS).unwrap());
    assert_eq!(
        store.stream_version("race", &stream).await.unwrap(),
        Some(version)
    );
}

/// 8 tasks append 500 events each, unchecked, to one stream: every event is
/// there once, the stream's order is the positions' order, each batch is
/// contiguous, and an optimistic append afterwards succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unchecked_writers_on_one_stream_keep_it_consistent() {
    const WRITERS: u64 = 8;
    const EVENTS: u64 = 500;
    let Some(store) = support::store_with::<String, serde_json::Value>(16).await else {
        return;
    };
    let store = Arc::new(store);
    let stream = "shared".to_owned();
    let barrier = Arc::new(Barrier::new(usize::try_from(WRITERS).unwrap()));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut round = 0;
            let mut written = 0;
            while written < EVENTS {
                // Batches of 1 to 5 events.
                let size = (1 + (writer + round) % 5).min(EVENTS - written);
                store
                    .append("shared", &stream, None, batch(writer, round, size))
                    .await
                    .expect("an unchecked append never conflicts");
                written += size;
                round += 1;
            }
        }));
    }
    for task in tasks {
        support::bounded("an unchecked writer", 60, task).await.unwrap();
    }

    let events = store
        .load_events(&[EventFilter::for_aggregate(KIND, "shared", stream.clone())])
        .await
        .unwrap();
    assert_eq!(events.len(), usize::try_from(WRITERS * EVENTS).unwrap());
    let distinct: HashSet<&[u8]> = events.iter().map(|event| event.data.as_slice()).collect();
    assert_eq!(distinct.len(), events.len(), "every event once");
    assert!(events.windows(2).all(|pair| pair[0].position < pair[1].position));
    // Each batch is contiguous in the stream: parts 0..size follow each other.
    for (index, event) in events.iter().enumerate() {
        let part = event.metadata["part"].as_u64().unwrap();
        if part > 0 {
            let previous = &events[index - 1].metadata;
            assert_eq!(previous["writer"], event.metadata["writer"]);
            assert_eq!(previous["round"], event.metadata["round"]);
            assert_eq!(previous["part"].as_u64(), Some(part - 1));
        }
    }
    let last = events.last().unwrap().position;
    assert_eq!(store.stream_version("shared", &stream).await.unwrap(), Some(last));
    let after = store
        .append("shared", &stream, Some(last), batch(99, 0, 1))
        .await
        .expect("an optimistic append at the current version succeeds");
    assert!(after.last_position > last);
}

/// A failed version check writes nothing, draws no position and leaves no
/// lock behind: the next append, from any connection, takes the next
/// position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_draws_no_position_and_holds_no_lock() {
    let Some(store) = support::store_with::<String, serde_json::Value>(2).await else {
        return;
    };
    let stream = "checked".to_owned();
    let version = store
        .append_expecting_new("race", &stream, batch(0, 0, 3))
        .await
        .expect("a new stream")
        .last_position;
    for expected in [None, Some(version - 1), Some(version + 1)] {
        let attempt = async {
            match expected {
                None => store.append_expecting_new("race", &stream, batch(0, 1, 2)).await,
                Some(_) => store.append("race", &stream, expected, batch(0, 1, 2)).await,
            }
        };
        match support::bounded("a refused append", 30, attempt).await {
            Err(AppendError::Conflict(conflict)) => {
                assert_eq!(conflict.expected, ExpectedVersion::from(expected));
                assert_eq!(conflict.actual, Some(version));
            }
            other => panic!("expected a conflict for {expected:?}, got {other:?}"),
        }
    }
    // Both connections of the pool append in turn: neither waits for a lock
    // a refused append kept, and no position was drawn in between.
    let mut last = version;
    for round in 0..4 {
        let written = support::bounded(
            "an append after the refusals",
            30,
            store.append("race", &format!("other-{round}"), None, batch(1, round, 1)),
        )
        .await
        .expect("an append")
        .last_position;
        assert_eq!(written, last + 1, "positions stay dense");
        last = written;
    }
    let events = store
        .load_events(&[EventFilter::for_aggregate(KIND, "race", stream)])
        .await
        .expect("a load");
    assert_eq!(events.len(), 3, "the refused batches wrote nothing");
}

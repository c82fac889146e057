//! Writers and readers at once: 4 writer tasks commit 5,000 events in
//! batches of 5 to 8 shared streams with optimistic concurrency (retrying on
//! conflicts) while 4 reader tasks load the whole log and follow it by
//! position. Nothing is lost or duplicated, and no reader ever sees part of
//! a batch.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery_core::concurrency::Optimistic;
use sourcery_core::event::DomainEvent;
use sourcery_core::store::{AppendError, EventFilter, EventStore, StoredEvent};
use sourcery_sqlite::Store;
use tokio::sync::Barrier;

const WRITERS: u32 = 4;
const READERS: usize = 4;
const BATCH: u32 = 5;
const EVENTS: u32 = 5_000;
const BATCHES_PER_WRITER: u32 = EVENTS / BATCH / WRITERS;
const STREAMS: u32 = 8;
const KIND: &str = "stream";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Noted {
    writer: u32,
    batch: u32,
    index: u32,
}

impl DomainEvent for Noted {
    const KIND: &'static str = "concurrency.noted";
}

type TestStore = Store<String, serde_json::Value>;
type Event = StoredEvent<String, i64, serde_json::Value>;

fn decode(event: &Event, store: &TestStore) -> Noted {
    event.decode(store.codec()).expect("a test event decodes")
}

/// Checks that `events` (one read) hold whole batches only, each on
/// consecutive positions, in ascending order. Returns the batches seen.
fn whole_batches(events: &[Event], store: &TestStore) -> BTreeMap<(u32, u32), Vec<(i64, u32)>> {
    let mut batches: BTreeMap<(u32, u32), Vec<(i64, u32)>> = BTreeMap::new();
    for pair in events.windows(2) {
        assert!(pair[0].position < pair[1].position, "positions ascend");
    }
    for event in events {
        let noted = decode(event, store);
        batches
            .entry((noted.writer, noted.batch))
            .or_default()
            .push((event.position, noted.index));
    }
    for (batch, members) in &batches {
        assert_eq!(
            members.len(),
            BATCH as usize,
            "a reader saw part of batch {batch:?}: {members:?}"
        );
        let first = members[0].0;
        for (offset, &(position, index)) in (0..).zip(members) {
            assert_eq!(
                index,
                u32::try_from(offset).expect("small"),
                "batch {batch:?} in order"
            );
            assert_eq!(
                position,
                first + offset,
                "batch {batch:?} on consecutive positions"
            );
        }
    }
    batches
}

async fn write(store: TestStore, writer: u32, start: Arc<Barrier>, conflicts: Arc<AtomicU64>) {
    start.wait().await;
    for batch in 0..BATCHES_PER_WRITER {
        let stream = format!("stream-{}", (writer + batch) % STREAMS);
        loop {
            let version = store
                .stream_version(KIND, &stream)
                .await
                .expect("the version reads");
            let mut tx = store.begin::<Optimistic>(KIND, stream.clone(), version);
            for index in 0..BATCH {
                tx.append(
                    Noted { writer, batch, index },
                    serde_json::json!({ "writer": writer }),
                )
                .expect("the event encodes");
            }
            match tx.commit().await {
                Ok(Some(_)) => break,
                Err(AppendError::Conflict(_)) => {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
                other => panic!("writer {writer}: the commit failed: {other:?}"),
            }
        }
    }
}

/// Reads the whole log and follows it by position until the writers are
/// done; returns the positions the follower collected.
async fn read(store: TestStore, start: Arc<Barrier>, done: Arc<AtomicBool>) -> (Vec<i64>, usize) {
    start.wait().await;
    let all = [EventFilter::for_event(Noted::KIND)];
    let mut cursor = None;
    let mut followed = Vec::new();
    let mut reads = 0;
    loop {
        // Read the flag first: a read that starts after the writers finished
        // sees everything.
        let finished = done.load(Ordering::Acquire);
        let whole = store.load_events(&all).await.expect("the log loads");
        whole_batches(&whole, &store);
        let tail_filter = match cursor {
            Some(position) => EventFilter::for_event(Noted::KIND).after(position),
            None => EventFilter::for_event(Noted::KIND),
        };
        let tail = store.load_events(&[tail_filter]).await.expect("the tail loads");
        whole_batches(&tail, &store);
        if let Some(last) = tail.last() {
            cursor = Some(last.position);
        }
        followed.extend(tail.iter().map(|event| event.position));
        reads += 1;
        if finished {
            return (followed, reads);
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_writers_and_four_readers_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = TestStore::open(dir.path().join("concurrency.db"))
        .await
        .expect("the store opens");
    let start = Arc::new(Barrier::new(WRITERS as usize + READERS));
    let done = Arc::new(AtomicBool::new(false));
    let conflicts = Arc::new(AtomicU64::new(0));

    let run = async {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(write(
                    store.clone(),
                    writer,
                    Arc::clone(&start),
                    Arc::clone(&conflicts),
                ))
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|_| tokio::spawn(read(store.clone(), Arc::clone(&start), Arc::clone(&done))))
            .collect();
        for writer in writers {
            writer.await.expect("a writer finishes");
        }
        done.store(true, Ordering::Release);
        let mut followed = Vec::new();
        for reader in readers {
            followed.push(reader.await.expect("a reader finishes"));
        }
        followed
    };
    let followed = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("writers and readers finish in time");

    let all = store
        .load_events(&[EventFilter::for_event(Noted::KIND)])
        .await
        .expect("the log loads");
    assert_eq!(all.len(), EVENTS as usize, "every event is there once");
    let batches = whole_batches(&all, &store);
    assert_eq!(batches.len(), (EVENTS / BATCH) as usize, "every batch is there");
    let positions: Vec<i64> = all.iter().map(|event| event.position).collect();
    for (reader, reads) in &followed {
        assert_eq!(
            reader, &positions,
            "a follower by position saw every event once, in order (after {reads} reads)"
        );
    }

    // Each stream: its batches in commit order, its version its last position.
    for stream in 0..STREAMS {
        let id = format!("stream-{stream}");
        let events = store
            .load_events(&[EventFilter::for_aggregate(Noted::KIND, KIND, id.clone())])
            .await
            .expect("the stream loads");
        let version = store.stream_version(KIND, &id).await.expect("the version reads");
        assert_eq!(version, events.last().map(|event| event.position));
        let distinct: HashSet<(u32, u32)> = events
            .iter()
            .map(|event| {
                let noted = decode(event, &store);
                (noted.writer, noted.batch)
            })
            .collect();
        assert_eq!(distinct.len() * BATCH as usize, events.len());
    }
    let reads: Vec<usize> = followed.iter().map(|(_, reads)| *reads).collect();
    eprintln!(
        "{} optimistic conflicts retried; reads per reader while writing: {reads:?}",
        conflicts.load(Ordering::Relaxed)
    );
}

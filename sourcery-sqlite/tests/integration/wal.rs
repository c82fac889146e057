//! At `synchronous=NORMAL`, the write-ahead log is checkpointed off the
//! append path: the database file catches up with the log while appends go
//! on, the log stays bounded, and nothing committed is lost.

use std::time::{Duration, Instant};

use sourcery_core::store::{EventFilter, EventStore, NonEmpty, PersistableEvent};
use sourcery_sqlite::{OpenOptions, Store, Synchronous};

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

#[tokio::test]
async fn the_database_file_catches_up_with_the_log_and_the_log_stays_bounded() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("wal.db");
    let wal = dir.path().join("wal.db-wal");
    let store: Store<String, ()> = OpenOptions::new()
        .synchronous(Synchronous::Normal)
        .open(&path)
        .await
        .expect("the store opens");
    let before = file_len(&path);
    let mut largest_log = 0;
    let mut last = 0;
    // 2.5 MB of events (~2,500 pages of log): past what queues a background
    // checkpoint (~1,000 pages), short of what makes the writer checkpoint
    // (4,000 pages).
    for n in 0..250 {
        let batch: Vec<PersistableEvent<()>> = (0..10)
            .map(|_| PersistableEvent::new("noted", vec![b'x'; 1_000], ()))
            .collect();
        let batch = NonEmpty::from_vec(batch).expect("ten events");
        last = store
            .append("log", &format!("s-{}", n % 7), None, batch)
            .await
            .expect("the append")
            .last_position;
        largest_log = largest_log.max(file_len(&wal));
    }
    // The checkpoints run on the store's own thread: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&path) < before + 1_000_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        file_len(&path) >= before + 1_000_000,
        "the database file holds most events: {} bytes",
        file_len(&path)
    );
    assert!(
        largest_log < 24 * 1_024 * 1_024,
        "the log stays bounded: {largest_log} bytes"
    );
    let events = store
        .load_events(&[EventFilter::for_event("noted")])
        .await
        .expect("the events load");
    assert_eq!(events.len(), 2_500);
    assert_eq!(events.last().map(|event| event.position), Some(last));
}

//! The follower across several pages: every event once, in order, then a
//! progress report at the head.

use std::time::Duration;

use sourcery_core::store::{EventFilter, EventStore, NonEmpty, PersistableEvent, inmemory};
use sourcery_core::subscription::{Follower, Progress};

#[tokio::test]
async fn a_catch_up_over_several_pages_delivers_everything_then_reports_the_head() {
    let store = inmemory::Store::<String, ()>::new();
    let mut last = 0;
    for batch in 0..25_u32 {
        let mut events = NonEmpty::new(PersistableEvent::new("wanted", batch.to_le_bytes().to_vec(), ()));
        for _ in 1..100 {
            events.push(PersistableEvent::new("wanted", batch.to_le_bytes().to_vec(), ()));
        }
        store
            .append("stream", &format!("s{batch}"), None, events)
            .await
            .expect("append");
        // An event the follower skips, after each batch.
        let skipped = PersistableEvent::new("other", Vec::new(), ());
        let written = store
            .append("stream", &"noise".to_owned(), None, NonEmpty::new(skipped))
            .await;
        last = written.expect("append").last_position;
    }

    let mut follower = Follower::new(store.clone(), vec![EventFilter::for_event("wanted")], None);
    let mut positions = Vec::new();
    let head = loop {
        let next = tokio::time::timeout(Duration::from_secs(5), follower.next())
            .await
            .expect("the follower answers")
            .expect("the follower runs")
            .expect("the in-memory store does not fail");
        match next {
            Progress::Event(event) => positions.push(event.position),
            Progress::CaughtUp(head) => break head,
        }
    };
    assert_eq!(positions.len(), 2_500, "every matching event once");
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "in position order"
    );
    assert_eq!(head, last, "then the head, past the skipped events");
    assert_eq!(follower.position(), Some(last));
}

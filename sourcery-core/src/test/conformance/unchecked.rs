//! `unchecked`: an append without an expected version writes whatever the
//! stream holds.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, id};
use crate::event::DomainEvent as _;
use crate::store::EventFilter;

/// Appends without a version add to a stream with events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn appends_whatever_the_stream_holds<S: ConformanceStore>(store: S) {
    let rule = Check("unchecked.appends_whatever_the_stream_holds");
    let stream = id::<S>("unchecked-existing");
    rule.notes(&store, ACCOUNT, &stream, &[1]).await;
    rule.notes(&store, ACCOUNT, &stream, &[2, 3]).await;
    let last = rule.notes(&store, ACCOUNT, &stream, &[4]).await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the stream after three unchecked appends",
        vec![1, 2, 3, 4],
        rule.numbers(&store, &loaded),
    );
    rule.same(
        "the stream's version",
        Some(last),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// An append without a version creates a stream that has no events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn creates_a_new_stream<S: ConformanceStore>(store: S) {
    let rule = Check("unchecked.creates_a_new_stream");
    let stream = id::<S>("unchecked-new");
    let batch = rule.batch(
        &store,
        &[
            (super::support::Opened::KIND, 1),
            (super::support::Noted::KIND, 2),
        ],
    );
    let written = rule
        .ok(
            "an unchecked append to a new stream",
            store.append(ACCOUNT, &stream, None, batch),
        )
        .await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the new stream's events",
        vec![1, 2],
        rule.numbers(&store, &loaded),
    );
    rule.same(
        "the new stream's version",
        Some(written.last_position),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

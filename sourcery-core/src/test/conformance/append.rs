//! `append`: what goes in comes back — kinds, streams, bytes, metadata — at
//! ascending positions, and `append_expecting_new` creates streams only.

use super::support::{ACCOUNT, Check, LEDGER, Noted, Opened, id, labelled};
use super::{ConformanceMetadata, ConformanceStore};
use crate::concurrency::ExpectedVersion;
use crate::event::DomainEvent as _;
use crate::store::{AppendError, EventFilter, NonEmpty, PersistableEvent};

/// Appended events load back with their kind, aggregate kind, aggregate id
/// and payload, in append order.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn round_trip<S: ConformanceStore>(store: S) {
    let rule = Check("append.round_trip");
    let stream = id::<S>("append-1");
    let events = [(Opened::KIND, 1), (Noted::KIND, 2), (Opened::KIND, 3)];
    rule.append(&store, ACCOUNT, &stream, &events).await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the appended events (kind, number), in order",
        labelled(&events),
        rule.labels(&store, &loaded),
    );
    for event in &loaded {
        rule.ensure(
            event.aggregate_kind == ACCOUNT && event.aggregate_id == stream,
            format_args!("every event of the stream to carry aggregate kind {ACCOUNT:?} and id {stream:?}"),
            || format!("{:?} and {:?}", event.aggregate_kind, event.aggregate_id),
        );
    }
    let expected = store.codec();
    let encoded = crate::codec::Codec::encode(
        expected,
        &Noted {
            n: 2,
            text: format!("{} 2", Noted::KIND),
        },
    )
    .ok();
    rule.same(
        "the stored bytes of the second event (the codec's encoding)",
        encoded.as_ref(),
        loaded.get(1).map(|event| &event.data),
    );
}

/// Each event's metadata comes back as it was given, event by event.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn metadata_round_trip<S: ConformanceStore>(store: S) {
    let rule = Check("append.metadata_round_trip");
    let stream = id::<S>("append-metadata");
    rule.append(&store, ACCOUNT, &stream, &[(Opened::KIND, 11), (Noted::KIND, 12)])
        .await;
    rule.append(&store, ACCOUNT, &stream, &[(Noted::KIND, 13)]).await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream)])
        .await;
    let metadata: Vec<S::Metadata> = loaded.iter().map(|event| event.metadata.clone()).collect();
    rule.same(
        "each event's own metadata, in order",
        vec![
            S::Metadata::sample(11),
            S::Metadata::sample(12),
            S::Metadata::sample(13),
        ],
        metadata,
    );
}

/// Data is bytes: every byte value, bytes that are not UTF-8, NUL bytes and
/// empty data round-trip exactly.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn bytes_exact<S: ConformanceStore>(store: S) {
    let rule = Check("append.bytes_exact");
    let stream = id::<S>("append-bytes");
    let every_byte: Vec<u8> = (0..=255).collect();
    let payloads: [&[u8]; 4] = [&every_byte, b"\0", b"", b"\xff\xfe not utf-8 \xc3"];
    let batch: Vec<_> = payloads
        .iter()
        .zip(1..)
        .map(|(data, n)| PersistableEvent::new("append.bytes", data.to_vec(), S::Metadata::sample(n)))
        .collect();
    let Some(batch) = NonEmpty::from_vec(batch) else {
        rule.fail("a non-empty test batch", "an empty one");
    };
    rule.ok("append", store.append(LEDGER, &stream, None, batch))
        .await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(LEDGER, stream)])
        .await;
    let data: Vec<&[u8]> = loaded.iter().map(|event| event.data.as_slice()).collect();
    rule.same(
        "the stored bytes, exactly (all 256 byte values, a NUL byte, nothing, bytes that are not UTF-8)",
        payloads.to_vec(),
        data,
    );
}

/// Positions strictly ascend within a batch and across commits.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn positions_strictly_ascend<S: ConformanceStore>(store: S) {
    let rule = Check("append.positions_strictly_ascend");
    let a = id::<S>("ascend-a");
    let b = id::<S>("ascend-b");
    rule.notes(&store, ACCOUNT, &a, &[1, 2, 3]).await;
    rule.notes(&store, ACCOUNT, &b, &[4, 5]).await;
    rule.notes(&store, ACCOUNT, &a, &[6]).await;
    let all = rule.load(&store, &[EventFilter::for_event(Noted::KIND)]).await;
    rule.same(
        "the six events in commit order",
        vec![1, 2, 3, 4, 5, 6],
        rule.numbers(&store, &all),
    );
    rule.ascending::<S>("the log", &all);
}

/// A commit reports the position of its batch's last event.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn reports_last_position<S: ConformanceStore>(store: S) {
    let rule = Check("append.reports_last_position");
    let stream = id::<S>("append-reported");
    for numbers in [&[1_u64, 2, 3][..], &[4]] {
        let reported = rule.notes(&store, ACCOUNT, &stream, numbers).await;
        let loaded = rule
            .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
            .await;
        rule.same(
            "the position a commit reports (its last event's)",
            loaded.last().map(|event| event.position),
            Some(reported),
        );
    }
}

/// `append_expecting_new` writes to a stream without events.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn expecting_new_creates<S: ConformanceStore>(store: S) {
    let rule = Check("append.expecting_new_creates");
    rule.notes(&store, ACCOUNT, &id::<S>("new-other"), &[1]).await;
    let stream = id::<S>("new-stream");
    let batch = rule.batch(&store, &[(Opened::KIND, 2), (Noted::KIND, 3)]);
    let written = rule
        .ok(
            "append_expecting_new on a stream without events",
            store.append_expecting_new(ACCOUNT, &stream, batch),
        )
        .await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream.clone())])
        .await;
    rule.same(
        "the created stream's events",
        vec![2, 3],
        rule.numbers(&store, &loaded),
    );
    rule.same(
        "the created stream's version",
        Some(written.last_position),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

/// `append_expecting_new` on a stream with events is a conflict that
/// reports the stream's version and writes nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn expecting_new_on_existing_conflicts<S: ConformanceStore>(store: S) {
    let rule = Check("append.expecting_new_on_existing_conflicts");
    let stream = id::<S>("new-existing");
    let version = rule.notes(&store, ACCOUNT, &stream, &[1, 2]).await;
    let batch = rule.batch(&store, &[(Opened::KIND, 3)]);
    let outcome = rule
        .bounded(
            "append_expecting_new",
            store.append_expecting_new(ACCOUNT, &stream, batch),
        )
        .await;
    match outcome {
        Err(AppendError::Conflict(conflict)) => rule.same(
            "the conflict's expected and actual versions",
            (ExpectedVersion::NoStream, Some(version)),
            (conflict.expected, conflict.actual),
        ),
        other => rule.fail(
            "append_expecting_new on a stream with events to conflict",
            format_args!("{other:?}"),
        ),
    }
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream)])
        .await;
    rule.same(
        "the stream's events after the refused create (nothing added)",
        vec![1, 2],
        rule.numbers(&store, &loaded),
    );
}

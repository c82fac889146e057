//! `size`: large payloads and large batches are stored whole.

use super::support::{ACCOUNT, Check, Noted, id};
use super::{ConformanceMetadata, ConformanceStore};
use crate::event::DomainEvent as _;
use crate::store::{EventFilter, NonEmpty, PersistableEvent};

/// A 16 MiB payload round-trips byte for byte.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn payload_of_16_mib<S: ConformanceStore>(store: S) {
    let rule = Check("size.payload_of_16_mib");
    let stream = id::<S>("size-large");
    // Deterministic bytes that do not compress.
    let mut state: u32 = 0x9E37_79B9;
    let bytes: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    let event = PersistableEvent::new("size.blob", bytes.clone(), S::Metadata::sample(1));
    rule.ok(
        "an append of a 16 MiB payload",
        store.append(ACCOUNT, &stream, None, NonEmpty::new(event)),
    )
    .await;
    let loaded = rule
        .load(&store, &[EventFilter::for_stream(ACCOUNT, stream)])
        .await;
    let data = loaded.first().map(|event| &event.data);
    rule.ensure(
        loaded.len() == 1 && data == Some(&bytes),
        "the 16 MiB payload back, byte for byte",
        || match data {
            Some(data) => format!(
                "{} event(s), the first of {} bytes{}",
                loaded.len(),
                data.len(),
                if data.len() == bytes.len() {
                    ", changed"
                } else {
                    ""
                }
            ),
            None => "no event".to_owned(),
        },
    );
}

/// A batch of 10,000 events is stored whole, in order, and the commit
/// reports its last event's position.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn batch_of_10000<S: ConformanceStore>(store: S) {
    let rule = Check("size.batch_of_10000");
    let stream = id::<S>("size-batch");
    let numbers: Vec<u64> = (1..=10_000).collect();
    let last = rule.notes(&store, ACCOUNT, &stream, &numbers).await;
    let loaded = rule
        .load(
            &store,
            &[EventFilter::for_aggregate(Noted::KIND, ACCOUNT, stream.clone())],
        )
        .await;
    let got = rule.numbers(&store, &loaded);
    rule.ensure(got == numbers, "the 10,000 events of the batch, in order", || {
        format!("{} events, starting {:?}", got.len(), &got[..got.len().min(5)])
    });
    rule.same(
        "the position the commit reported (the batch's last event's)",
        loaded.last().map(|event| event.position),
        Some(last),
    );
    rule.same(
        "the stream's version",
        Some(last),
        rule.version(&store, ACCOUNT, &stream).await,
    );
}

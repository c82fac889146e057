//! `schema`: every event loads with the schema version it was written at.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, Noted, Opened, id};
use crate::event::DomainEvent as _;
use crate::store::{EventFilter, NonEmpty};

/// (number, schema version) of each event `filters` select.
async fn versions<S: ConformanceStore>(
    rule: Check,
    store: &S,
    filters: &[EventFilter<S::Id, S::Position>],
) -> Vec<(u64, u32)> {
    let loaded = rule.load(store, filters).await;
    rule.numbers(store, &loaded)
        .into_iter()
        .zip(&loaded)
        .map(|(n, event)| (n, event.schema_version))
        .collect()
}

/// Events written one per commit at schema versions 1, 2, 7 and 3 load
/// with those versions through every filter shape.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn versions_round_trip<S: ConformanceStore>(store: S) {
    let rule = Check("schema.versions_round_trip");
    let stream = id::<S>("schema-single");
    let other = id::<S>("schema-other");
    for (target, kind, n, version) in [
        (&stream, Opened::KIND, 1, 1),
        (&stream, Noted::KIND, 2, 2),
        (&stream, Opened::KIND, 3, 7),
        (&other, Opened::KIND, 4, 3),
    ] {
        let event = rule.event(&store, kind, n, version);
        rule.ok(
            "append",
            store.append(ACCOUNT, target, None, NonEmpty::new(event)),
        )
        .await;
    }
    let cases = [
        (
            "for_stream",
            vec![EventFilter::for_stream(ACCOUNT, stream.clone())],
            vec![(1, 1), (2, 2), (3, 7)],
        ),
        (
            "for_aggregate of Opened",
            vec![EventFilter::for_aggregate(Opened::KIND, ACCOUNT, stream.clone())],
            vec![(1, 1), (3, 7)],
        ),
        (
            "for_event of both kinds",
            vec![
                EventFilter::for_event(Opened::KIND),
                EventFilter::for_event(Noted::KIND),
            ],
            vec![(1, 1), (2, 2), (3, 7), (4, 3)],
        ),
    ];
    for (case, filters, expected) in cases {
        rule.same(
            format_args!("(number, schema version) of each event through {case}"),
            expected,
            versions(rule, &store, &filters).await,
        );
    }
}

/// In one batch, each event keeps its own schema version.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn mixed_batch<S: ConformanceStore>(store: S) {
    let rule = Check("schema.mixed_batch");
    let stream = id::<S>("schema-batch");
    let batch = vec![
        rule.event(&store, Opened::KIND, 1, 4),
        rule.event(&store, Noted::KIND, 2, 1),
        rule.event(&store, Opened::KIND, 3, 2),
    ];
    let Some(batch) = NonEmpty::from_vec(batch) else {
        rule.fail("a non-empty test batch", "an empty one");
    };
    rule.ok(
        "append_expecting_new",
        store.append_expecting_new(ACCOUNT, &stream, batch),
    )
    .await;
    rule.same(
        "(number, schema version) of each event of a batch written at versions 4, 1 and 2",
        vec![(1, 4), (2, 1), (3, 2)],
        versions(rule, &store, &[EventFilter::for_stream(ACCOUNT, stream)]).await,
    );
}

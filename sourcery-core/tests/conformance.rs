//! The in-memory store passes the store conformance suite.

use sourcery_core::store::inmemory;
use sourcery_core::test::conformance;

// ANCHOR: conformance
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inmemory_store_with_json_metadata_conforms() {
    conformance::run(|| async { inmemory::Store::<String, serde_json::Value>::new() }).await;
}
// ANCHOR_END: conformance

#[tokio::test]
async fn inmemory_store_with_unit_metadata_conforms() {
    conformance::run(|| async { inmemory::Store::<String, ()>::new() }).await;
}

// ANCHOR: subscriptions
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inmemory_store_subscriptions_conform() {
    conformance::run_subscriptions(|| async { inmemory::Store::<String, serde_json::Value>::new() }).await;
}
// ANCHOR_END: subscriptions

/// A store that forgets to check versions: the suite must catch it.
#[derive(Debug, Clone, Default)]
struct Lax(inmemory::Store<String, ()>);

impl sourcery_core::store::EventStore for Lax {
    type Id = String;
    type Position = u64;
    type Error = std::convert::Infallible;
    type Codec = sourcery_core::codec::JsonCodec;
    type Metadata = ();

    fn codec(&self) -> &Self::Codec {
        self.0.codec()
    }

    async fn stream_version<'a>(&'a self, kind: &'a str, id: &'a String) -> Result<Option<u64>, Self::Error> {
        self.0.stream_version(kind, id).await
    }

    async fn append<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        _expected: Option<u64>,
        events: sourcery_core::store::NonEmpty<sourcery_core::store::PersistableEvent<()>>,
    ) -> sourcery_core::store::AppendOutcome<u64, Self::Error> {
        self.0.append(kind, id, None, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        events: sourcery_core::store::NonEmpty<sourcery_core::store::PersistableEvent<()>>,
    ) -> sourcery_core::store::AppendOutcome<u64, Self::Error> {
        self.0.append(kind, id, None, events).await
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [sourcery_core::store::EventFilter<String, u64>],
    ) -> Result<Vec<sourcery_core::store::StoredEvent<String, u64, ()>>, Self::Error> {
        self.0.load_events(filters).await
    }
}

#[tokio::test]
#[should_panic(expected = "conformance (optimistic_commits)")]
async fn a_store_that_skips_version_checks_fails_the_suite() {
    conformance::optimistic_commits(Lax::default()).await;
}

/// A store that serves a whole-stream filter as the kinds it has heard of
/// and forgets schema versions: the suite must catch both.
#[derive(Debug, Clone, Default)]
struct Forgetful(inmemory::Store<String, ()>);

impl sourcery_core::store::EventStore for Forgetful {
    type Id = String;
    type Position = u64;
    type Error = std::convert::Infallible;
    type Codec = sourcery_core::codec::JsonCodec;
    type Metadata = ();

    fn codec(&self) -> &Self::Codec {
        self.0.codec()
    }

    async fn stream_version<'a>(&'a self, kind: &'a str, id: &'a String) -> Result<Option<u64>, Self::Error> {
        self.0.stream_version(kind, id).await
    }

    async fn append<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        expected: Option<u64>,
        events: sourcery_core::store::NonEmpty<sourcery_core::store::PersistableEvent<()>>,
    ) -> sourcery_core::store::AppendOutcome<u64, Self::Error> {
        self.0.append(kind, id, expected, events).await
    }

    async fn append_expecting_new<'a>(
        &'a self,
        kind: &'a str,
        id: &'a String,
        events: sourcery_core::store::NonEmpty<sourcery_core::store::PersistableEvent<()>>,
    ) -> sourcery_core::store::AppendOutcome<u64, Self::Error> {
        self.0.append_expecting_new(kind, id, events).await
    }

    async fn load_events<'a>(
        &'a self,
        filters: &'a [sourcery_core::store::EventFilter<String, u64>],
    ) -> Result<Vec<sourcery_core::store::StoredEvent<String, u64, ()>>, Self::Error> {
        use sourcery_core::store::EventFilter;
        // A whole stream read as the two kinds of the suite's test events.
        let known: Vec<EventFilter<String, u64>> = filters
            .iter()
            .flat_map(|filter| match (filter.event_kind(), filter.aggregate()) {
                (None, Some((kind, id))) => ["conformance.opened", "conformance.noted"]
                    .map(|event_kind| {
                        let narrowed = EventFilter::for_aggregate(event_kind, kind, id.clone());
                        match filter.after_position() {
                            Some(after) => narrowed.after(after),
                            None => narrowed,
                        }
                    })
                    .to_vec(),
                _ => vec![filter.clone()],
            })
            .collect();
        let mut events = self.0.load_events(&known).await?;
        for event in &mut events {
            event.schema_version = 1;
        }
        Ok(events)
    }
}

#[tokio::test]
#[should_panic(
    expected = "conformance (whole_stream): for_stream must return every event of the stream whatever its kind"
)]
async fn a_store_that_reads_a_whole_stream_by_known_kinds_fails_the_suite() {
    conformance::whole_stream(Forgetful::default()).await;
}

#[tokio::test]
#[should_panic(
    expected = "conformance (schema_versions): each event must load with the schema version it was written at"
)]
async fn a_store_that_forgets_schema_versions_fails_the_suite() {
    conformance::schema_versions(Forgetful::default()).await;
}

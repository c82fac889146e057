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

//! Guards the store contract's names and shapes: the code blocks of the store
//! authors' guide (`docs/src/advanced/custom-stores.md`) compile here as
//! written, `todo!()` bodies included, and its "Testing Your Store" pattern
//! passes against `inmemory::Store`.

#![allow(
    dead_code,
    unused_variables,
    unreachable_pub,
    clippy::unused_async,
    clippy::manual_async_fn,
    clippy::type_complexity,
    reason = "the guide's skeleton has todo!() bodies that use nothing"
)]

/// "Implementation Skeleton", as written.
#[rustfmt::skip]
mod skeleton {
    use sourcery::concurrency::ConcurrencyStrategy;
    use sourcery::store::{
        AppendOutcome, EventFilter, EventStore, JsonCodec, NonEmpty, PersistableEvent, StoredEvent,
        Transaction,
    };
    use std::future::Future;

    pub struct PostgresEventStore {
        pool: sqlx::PgPool,
        codec: JsonCodec,
    }

    impl EventStore for PostgresEventStore {
        type Id = String;
        type Position = i64;
        type Error = sqlx::Error;
        type Codec = JsonCodec;
        type Metadata = serde_json::Value;

        fn codec(&self) -> &Self::Codec { &self.codec }

        fn stream_version<'a>(&'a self, aggregate_kind: &'a str, aggregate_id: &'a Self::Id)
            -> impl Future<Output = Result<Option<Self::Position>, Self::Error>> + Send + 'a
        {
            async move { todo!("SELECT MAX(position) WHERE aggregate_kind = $1 AND aggregate_id = $2") }
        }

        fn begin<C: ConcurrencyStrategy>(&self, aggregate_kind: &str, aggregate_id: Self::Id, expected_version: Option<Self::Position>)
            -> Transaction<'_, Self, C>
        {
            Transaction::new(self, aggregate_kind.to_string(), aggregate_id, expected_version)
        }

        fn append<'a>(&'a self, aggregate_kind: &'a str, aggregate_id: &'a Self::Id, expected_version: Option<Self::Position>, events: NonEmpty<PersistableEvent<Self::Metadata>>)
            -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a
        {
            async move { todo!("INSERT with version check") }
        }

        fn append_expecting_new<'a>(&'a self, aggregate_kind: &'a str, aggregate_id: &'a Self::Id, events: NonEmpty<PersistableEvent<Self::Metadata>>)
            -> impl Future<Output = AppendOutcome<Self::Position, Self::Error>> + Send + 'a
        {
            async move { todo!("INSERT only if stream empty") }
        }

        fn load_events<'a>(&'a self, filters: &'a [EventFilter<Self::Id, Self::Position>])
            -> impl Future<Output = Result<Vec<StoredEvent<Self::Id, Self::Position, Self::Metadata>>, Self::Error>> + Send + 'a
        {
            async move { todo!("SELECT with filters") }
        }
    }

    /// "Implementing Transactions", as written.
    mod transactions {
        use super::PostgresEventStore;
        use sourcery::store::{NonEmpty, PersistableEvent};

        impl PostgresEventStore {
            pub async fn append_batch(
                &self,
                aggregate_kind: &str,
                aggregate_id: &str,
                events: NonEmpty<PersistableEvent<serde_json::Value>>,
            ) -> Result<(), sqlx::Error> {
                let mut tx = self.pool.begin().await?;

                for event in events {
                    sqlx::query(
                        "INSERT INTO events (aggregate_kind, aggregate_id, event_kind, data, metadata)
                         VALUES ($1, $2, $3, $4, $5)"
                    )
                    .bind(aggregate_kind)
                    .bind(aggregate_id)
                    .bind(&event.kind)
                    .bind(&event.data)
                    .bind(&event.metadata)
                    .execute(&mut *tx)
                    .await?;
                }

                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// "Loading Events", as written (the guide shows it as a method body).
    mod loading {
        use super::PostgresEventStore;
        use sourcery::store::{EventFilter, StoredEvent};

        impl PostgresEventStore {
            fn load_events(&self, filters: &[EventFilter<String, i64>])
                -> Result<Vec<StoredEvent<String, i64, serde_json::Value>>, sqlx::Error>
            {
                // Deduplicate overlapping filters
                // Build WHERE clause:
                //   (event_kind = 'x' AND position > N)
                //   OR (event_kind = 'y' AND aggregate_kind = 'a' AND aggregate_id = 'b')
                // ORDER BY position ASC
                // Map rows to StoredEvent
                todo!()
            }
        }
    }
}

/// "Testing Your Store": the same pattern, against `inmemory::Store`.
#[rustfmt::skip]
mod testing_your_store {
    use serde::{Deserialize, Serialize};
    use sourcery::DomainEvent;
    use sourcery::concurrency::Unchecked;
    use sourcery::store::{EventFilter, EventStore, inmemory};

    #[derive(Debug, Serialize, Deserialize)]
    struct FundsDeposited {
        amount: u64,
    }

    impl DomainEvent for FundsDeposited {
        const KIND: &'static str = "account.deposited";
    }

    #[tokio::test]
    async fn test_append_and_load() -> Result<(), Box<dyn std::error::Error>> {
        let store = inmemory::Store::<String, serde_json::Value>::new();
        let event = FundsDeposited { amount: 25 };
        let metadata = serde_json::json!({ "actor": "teller" });

        // Append events
        let mut tx = store.begin::<Unchecked>("account", "ACC-001".to_string(), None);
        tx.append(event, metadata)?;
        tx.commit().await?;

        // Load and verify
        let events = store
            .load_events(&[
            EventFilter::for_aggregate("account.deposited", "account", "ACC-001".to_string())
        ])
            .await?;

        assert_eq!(events.len(), 1);
        assert_eq!(events[0].decode::<FundsDeposited>(store.codec())?.amount, 25);
        Ok(())
    }
}

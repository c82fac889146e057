//! Following the store live: [`Subscribe`] for [`Store`].
//!
//! Commits through a store (any of its clones) ring its [`CommitNotifier`]
//! after they return from the writer thread, so its subscriptions read again
//! at once. Another process (or another `Store` opened on the same file)
//! commits without ringing it: subscriptions also read every
//! [`poll_interval`](crate::OpenOptions::poll_interval) (one second by
//! default), which bounds how late they see such events.
//!
//! Subscriptions read by cursor (`position > p ... ORDER BY position LIMIT
//! n`), as every load does. Positions are assigned under SQLite's write
//! lock, so they rise in commit order and a reader's snapshot holds a prefix
//! of the log: what a subscription has passed never grows.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sourcery_core::store::{EventFilter, StoredEvent, TextId};
use sourcery_core::subscription::{CommitSignal, Subscribe};

use crate::load::{self, Query};
use crate::schema::At;
use crate::{Error, Store};

/// The last position committed: SQLite reads the largest row id from the end
/// of the table's B-tree, without a scan.
const HEAD: &str = "SELECT max(position) FROM sourcery_events";

/// Subscriptions see this store's commits at once and other processes'
/// within the [poll interval](crate::OpenOptions::poll_interval).
///
/// ```
/// use futures::StreamExt;
/// use serde::{Deserialize, Serialize};
/// use sourcery_core::concurrency::Unchecked;
/// use sourcery_core::event::DomainEvent;
/// use sourcery_core::store::{EventFilter, EventStore};
/// use sourcery_core::subscription::Subscribe;
/// use sourcery_sqlite::Store;
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Pinged { n: u32 }
/// impl DomainEvent for Pinged { const KIND: &'static str = "ping"; }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let dir = tempfile::tempdir()?;
/// let store: Store<String, ()> = Store::open(dir.path().join("events.db")).await?;
/// let mut pings = store.subscribe(vec![EventFilter::for_event("ping")], None);
///
/// let mut tx = store.begin::<Unchecked>("pinger", "p".to_string(), None);
/// tx.append(Pinged { n: 1 }, ())?;
/// tx.commit().await?;
///
/// let ping = pings.next().await.expect("a live event")?;
/// assert_eq!(ping.decode::<Pinged>(store.codec())?.n, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<Id, M> Subscribe for Store<Id, M>
where
    Id: TextId + Clone + fmt::Debug + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn commit_signal(&self) -> CommitSignal {
        self.inner().commits.signal()
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.inner().poll_interval
    }

    async fn head_position(&self) -> Result<Option<i64>, Error> {
        self.inner()
            .readers
            .run(|connection, path| {
                connection
                    .prepare_cached(HEAD)
                    .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                    .at(path)
            })
            .await?
    }

    async fn load_page<'a>(
        &'a self,
        filters: &'a [EventFilter<Id, i64>],
        limit: usize,
    ) -> Result<Vec<StoredEvent<Id, i64, M>>, Error> {
        let query = Query::page(filters, limit);
        if query.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        load::load(&self.inner().readers, self.inner().error_path(), query).await
    }
}

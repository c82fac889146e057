//! A worked custom event store for Sourcery: an append-only JSON-lines
//! file. It is the running example of the user guide's chapter on custom
//! stores, small enough to read in one sitting, and it passes the store
//! conformance suite.
//!
//! - [`Store`]: the event store. One line per committed batch, `fsync`ed
//!   before the commit returns; the whole log is read into memory on open,
//!   and a partial last line left by a crash is removed then. Each event
//!   keeps its id, so a retry of a batch that was written is a replay. It
//!   implements `EventStore`, `GloballyOrdered` and `Subscribe`.
//! - [`CheckpointStore`]: projection checkpoints, one small file per
//!   projection, replaced atomically.
//!
//! It is teaching code, not a production store: every load scans the log
//! in memory, the whole log must fit in memory, and only one `Store` may
//! have a file open at a time.
//!
//! ```
//! use sourcery::concurrency::Optimistic;
//! use sourcery::store::{EventFilter, EventStore};
//! use sourcery::DomainEvent;
//! use sourcery_example_jsonl::Store;
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Deposited {
//!     amount: u64,
//! }
//!
//! impl DomainEvent for Deposited {
//!     const KIND: &'static str = "account.deposited";
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let directory = tempfile::tempdir()?;
//! let path = directory.path().join("events.jsonl");
//!
//! let store: Store = Store::open(&path).await?;
//! let mut tx = store.begin::<Optimistic>("account", "ACC-1".to_string(), None);
//! tx.append(Deposited { amount: 5 }, serde_json::json!({ "actor": "teller" }))?;
//! tx.commit().await?;
//! drop(store);
//!
//! // Reopened, the store reads the file back.
//! let store: Store = Store::open(&path).await?;
//! let events = store
//!     .load_events(&[EventFilter::for_stream("account", "ACC-1".to_string())])
//!     .await?;
//! assert_eq!(events[0].decode::<Deposited>(store.codec())?, Deposited { amount: 5 });
//! assert_eq!(store.stream_version("account", &"ACC-1".to_string()).await?, Some(1));
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod error;
mod line;
mod store;

use std::path::Path;

pub use checkpoint::CheckpointStore;
pub use error::{Corruption, Error};
pub use store::Store;

/// Makes a new or renamed file's directory entry durable: `fsync` on the
/// file covers its contents, not its name. (On Unix; elsewhere directories
/// cannot be opened to sync them, and this does nothing.)
fn sync_directory(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(Error::io("sync the directory of", path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

//! What a crash leaves behind, and what opening the store does with it: a
//! partial last line (a batch whose write was cut short, never
//! acknowledged) is removed; anything else wrong with the file is a typed
//! error, and the file is left as it is.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};
use sourcery::store::{EventFilter, EventStore, NonEmpty, PersistableEvent};
use sourcery_example_jsonl::{Corruption, Error, Store};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn event(n: u64) -> PersistableEvent<Value> {
    PersistableEvent::new("test.noted", format!("event {n}").into_bytes(), json!({ "n": n }))
}

/// Appends one batch of the events `numbers` to stream `id`.
async fn commit(store: &Store, id: &str, numbers: &[u64]) -> Result<u64> {
    let mut events = numbers.iter().map(|&n| event(n));
    let mut batch = NonEmpty::new(events.next().ok_or("an empty batch")?);
    for event in events {
        batch.push(event);
    }
    Ok(store
        .append("test", &id.to_owned(), None, batch)
        .await?
        .last_position)
}

/// The numbers in the metadata of every event, in position order, with
/// their positions.
async fn contents(store: &Store) -> Result<Vec<(u64, u64)>> {
    let events = store.load_events(&[EventFilter::for_event("test.noted")]).await?;
    events
        .iter()
        .map(|event| {
            let n = event.metadata["n"].as_u64().ok_or("metadata without n")?;
            Ok((event.position, n))
        })
        .collect()
}

/// Where each line of the file ends (after its newline).
fn line_ends(path: &Path) -> Result<Vec<u64>> {
    let bytes = fs::read(path)?;
    (1..)
        .zip(bytes)
        .filter(|&(_, byte)| byte == b'\n')
        .map(|(end, _)| Ok(end))
        .collect()
}

fn cut(path: &Path, length: u64) -> Result {
    fs::OpenOptions::new().write(true).open(path)?.set_len(length)?;
    Ok(())
}

/// Three batches: `[1]`, `[2, 3]` in another stream, `[4, 5, 6]`.
async fn three_batches(path: &Path) -> Result<Vec<u64>> {
    let store = Store::open(path).await?;
    commit(&store, "a", &[1]).await?;
    commit(&store, "b", &[2, 3]).await?;
    commit(&store, "a", &[4, 5, 6]).await?;
    drop(store);
    let ends = line_ends(path)?;
    assert_eq!(ends.len(), 3, "one line per batch");
    Ok(ends)
}

#[tokio::test]
async fn a_batch_cut_short_is_removed_and_the_log_goes_on() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;

    // The crash: the last batch's line is half written.
    cut(&path, ends[1] + (ends[2] - ends[1]) / 2)?;

    let store = Store::open(&path).await?;
    assert_eq!(
        contents(&store).await?,
        [(1, 1), (2, 2), (3, 3)],
        "the fully written batches are there; no event of the cut batch is"
    );
    assert_eq!(
        fs::metadata(&path)?.len(),
        ends[1],
        "the partial line is gone from the file"
    );
    assert_eq!(store.stream_version("test", &"a".to_owned()).await?, Some(1));
    assert_eq!(store.stream_version("test", &"b".to_owned()).await?, Some(3));

    // The log goes on where the complete lines end.
    assert_eq!(commit(&store, "a", &[7, 8]).await?, 5);
    drop(store);
    let store = Store::open(&path).await?;
    assert_eq!(contents(&store).await?, [(1, 1), (2, 2), (3, 3), (4, 7), (5, 8)]);
    assert_eq!(line_ends(&path)?.len(), 3, "the new batch is a line of its own");
    Ok(())
}

/// The caller of an append a crash interrupted does not know whether it
/// committed; retrying with the same event ids tells it, whichever it was.
#[tokio::test]
async fn a_retry_after_a_crash_writes_the_batch_once() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;
    let store = Store::open(&path).await?;
    let id = "a".to_owned();
    let mut batch = NonEmpty::new(event(7));
    batch.push(event(8));
    assert_eq!(
        store
            .append("test", &id, Some(6), batch.clone())
            .await?
            .last_position,
        8
    );
    drop(store);
    let whole = fs::read(&path)?;

    // The batch reached the disk: the retry (expecting the version the first
    // attempt read, stale now) is a replay, and nothing is written again.
    let store = Store::open(&path).await?;
    let retry = store.append("test", &id, Some(6), batch.clone()).await?;
    assert!(retry.replayed, "a replay: {retry:?}");
    assert_eq!(retry.last_position, 8);
    drop(store);
    assert_eq!(fs::read(&path)?, whole, "nothing more reached the file");

    // The batch's line was cut short: the same retry writes it now.
    cut(&path, ends[2] + 5)?;
    let store = Store::open(&path).await?;
    let retry = store.append("test", &id, Some(6), batch).await?;
    assert!(!retry.replayed, "a fresh write: {retry:?}");
    assert_eq!(retry.last_position, 8);
    assert_eq!(
        contents(&store).await?,
        [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)]
    );
    Ok(())
}

#[tokio::test]
async fn a_line_without_its_newline_is_a_batch_cut_short() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;
    // Everything of the last line but its newline: the write did not finish.
    cut(&path, ends[2] - 1)?;

    let store = Store::open(&path).await?;
    assert_eq!(contents(&store).await?, [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(fs::metadata(&path)?.len(), ends[1]);
    Ok(())
}

#[tokio::test]
async fn a_cut_at_a_line_end_loses_nothing_else() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;
    cut(&path, ends[0])?;

    let store = Store::open(&path).await?;
    assert_eq!(contents(&store).await?, [(1, 1)]);
    assert_eq!(fs::metadata(&path)?.len(), ends[0]);
    Ok(())
}

#[tokio::test]
async fn a_corrupt_line_before_the_end_is_an_error_and_the_file_stays() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;
    let mut bytes = fs::read(&path)?;
    // A damaged byte in the second line's JSON.
    let second = usize::try_from(ends[0])?;
    bytes[second] = b'x';
    fs::write(&path, &bytes)?;

    let error = Store::<Value>::open(&path)
        .await
        .err()
        .ok_or("the store opened")?;
    assert!(
        matches!(
            error,
            Error::Corrupt {
                line: 2,
                reason: Corruption::Json(_),
                ..
            }
        ),
        "got {error:?}"
    );
    assert_eq!(fs::read(&path)?, bytes, "nothing is removed from a corrupt file");
    Ok(())
}

#[tokio::test]
async fn a_missing_line_is_an_error() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    let ends = three_batches(&path).await?;
    let bytes = fs::read(&path)?;
    let (first, second) = (usize::try_from(ends[0])?, usize::try_from(ends[1])?);
    // The second batch (positions 2 and 3) is gone.
    fs::write(&path, [&bytes[..first], &bytes[second..]].concat())?;

    let error = Store::<Value>::open(&path)
        .await
        .err()
        .ok_or("the store opened")?;
    assert!(
        matches!(
            error,
            Error::Corrupt {
                line: 2,
                reason: Corruption::Position {
                    found: 4,
                    expected: 2
                },
                ..
            }
        ),
        "got {error:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_complete_last_line_that_is_not_a_batch_is_an_error() -> Result {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.jsonl");
    three_batches(&path).await?;
    // Not a torn write: the line is complete, so it is not removed.
    let mut bytes = fs::read(&path)?;
    bytes.extend_from_slice(b"{\"position\":7}\n");
    fs::write(&path, &bytes)?;

    let error = Store::<Value>::open(&path)
        .await
        .err()
        .ok_or("the store opened")?;
    assert!(
        matches!(
            error,
            Error::Corrupt {
                line: 4,
                reason: Corruption::Json(_),
                ..
            }
        ),
        "got {error:?}"
    );
    assert_eq!(fs::read(&path)?, bytes);
    Ok(())
}

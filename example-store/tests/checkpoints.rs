//! The checkpoint store: one file per name, replaced atomically, kept
//! across a reopen; and a projection runner that resumes from it after the
//! process "restarts" (both stores reopened from their files).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::checkpoint::{Advance, CheckpointStore as _, Claim, Fence};
use sourcery::concurrency::Unchecked;
use sourcery::runner::ProjectionRunner;
use sourcery::store::EventStore;
use sourcery::{ApplyProjection, DomainEvent, Projection};
use sourcery_example_jsonl::{CheckpointStore, Error, Store};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn saves_replace_and_survive_a_reopen() -> Result {
    let directory = tempfile::tempdir()?;
    let checkpoints = CheckpointStore::open(directory.path().join("checkpoints")).await?;
    assert_eq!(checkpoints.load("totals").await?, None);
    checkpoints.save("totals", 41).await?;
    checkpoints.save("totals", 42).await?;
    assert_eq!(checkpoints.load("totals").await?, Some(42));
    // A save replaces whatever is there, a lower position too.
    checkpoints.save("totals", 7).await?;
    assert_eq!(checkpoints.load("totals").await?, Some(7));

    let reopened = CheckpointStore::open(directory.path().join("checkpoints")).await?;
    assert_eq!(reopened.load("totals").await?, Some(7));
    let files: Vec<_> = std::fs::read_dir(directory.path().join("checkpoints"))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(files, ["totals.checkpoint"], "no temporary file is left behind");
    Ok(())
}

#[tokio::test]
async fn names_that_look_alike_keep_their_own_checkpoints() -> Result {
    let directory = tempfile::tempdir()?;
    let checkpoints = CheckpointStore::open(directory.path()).await?;
    let names = [
        "totals",
        "Totals",
        "%54otals",
        "",
        ".",
        "..",
        "../totals",
        "a/b",
        "a%2Fb",
        "клиент",
    ];
    for (position, name) in (1..).zip(names) {
        checkpoints.save(name, position).await?;
    }
    for (position, name) in (1..).zip(names) {
        assert_eq!(
            checkpoints.load(name).await?,
            Some(position),
            "checkpoint {name:?}"
        );
        assert!(checkpoints.file(name).starts_with(directory.path()));
    }
    assert_eq!(std::fs::read_dir(directory.path())?.count(), names.len());
    Ok(())
}

#[tokio::test]
async fn a_file_without_a_position_is_an_error() -> Result {
    let directory = tempfile::tempdir()?;
    let checkpoints = CheckpointStore::open(directory.path()).await?;
    std::fs::write(checkpoints.file("totals"), "forty-two\n")?;
    let error = checkpoints
        .load("totals")
        .await
        .err()
        .ok_or("the load succeeded")?;
    assert!(matches!(error, Error::CorruptCheckpoint { .. }), "got {error:?}");
    Ok(())
}

#[tokio::test]
async fn a_file_of_an_older_version_is_claimed_and_the_fence_survives_a_reopen() -> Result {
    let directory = tempfile::tempdir()?;
    let checkpoints = CheckpointStore::open(directory.path()).await?;
    // Older versions wrote the bare position.
    std::fs::write(checkpoints.file("totals"), "42\n")?;
    assert_eq!(checkpoints.load("totals").await?, Some(42));
    assert_eq!(
        checkpoints.claim("totals", Fence::new(7)).await?,
        Claim::Claimed(Some(42))
    );
    assert_eq!(
        std::fs::read_to_string(checkpoints.file("totals"))?,
        "position 42\nfence 7\n"
    );
    // A claimed name without a position holds the fence alone.
    assert_eq!(
        checkpoints.claim("fresh", Fence::new(3)).await?,
        Claim::Claimed(None)
    );
    assert_eq!(std::fs::read_to_string(checkpoints.file("fresh"))?, "fence 3\n");
    assert_eq!(checkpoints.load("fresh").await?, None);

    let reopened = CheckpointStore::open(directory.path()).await?;
    assert_eq!(
        reopened.advance("totals", 50, Some(Fence::new(6))).await?,
        Advance::Fenced(Fence::new(7))
    );
    assert_eq!(
        reopened.claim("fresh", Fence::new(2)).await?,
        Claim::Fenced(Fence::new(3))
    );
    assert_eq!(
        reopened.advance("totals", 50, Some(Fence::new(7))).await?,
        Advance::Saved
    );
    assert_eq!(reopened.load("totals").await?, Some(50));
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Sold {
    amount: u64,
}

impl DomainEvent for Sold {
    const KIND: &'static str = "shop.sold";
}

#[derive(Debug, Default, Projection)]
#[projection(events(Sold))]
struct Revenue {
    total: u64,
    applied: usize,
}

impl ApplyProjection<Sold> for Revenue {
    fn apply_projection(&mut self, _: &String, event: &Sold, (): &()) {
        self.total += event.amount;
        self.applied += 1;
    }
}

async fn sell(store: &Store<()>, amount: u64) -> Result<u64> {
    let mut tx = store.begin::<Unchecked>("shop", "s1".to_owned(), None);
    tx.append(Sold { amount }, ())?;
    Ok(tx.commit().await?.ok_or("nothing committed")?.last_position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_resumes_after_its_checkpoint_when_both_files_are_reopened() -> Result {
    let directory = tempfile::tempdir()?;
    let events = directory.path().join("events.jsonl");
    let checkpoint_directory = directory.path().join("checkpoints");

    let store = Store::<()>::open(&events).await?;
    let checkpoints = CheckpointStore::open(&checkpoint_directory).await?;
    sell(&store, 1).await?;
    let runner = ProjectionRunner::new(store.clone(), checkpoints.clone()).start(Revenue::default())?;
    let last = sell(&store, 2).await?;
    runner.wait_for(last, WAIT).await?;
    let before = runner.stop().await?;
    assert_eq!((before.applied, before.total), (2, 3));
    assert_eq!(checkpoints.load("revenue").await?, Some(last));
    sell(&store, 100).await?;
    drop((store, checkpoints));

    // The restart: both from their files, and an empty read model.
    let store = Store::<()>::open(&events).await?;
    let checkpoints = CheckpointStore::open(&checkpoint_directory).await?;
    let runner = ProjectionRunner::new(store.clone(), checkpoints).start(Revenue::default())?;
    let latest = sell(&store, 200).await?;
    runner.wait_for(latest, WAIT).await?;
    let after = runner.stop().await?;
    assert_eq!(
        (after.applied, after.total),
        (2, 300),
        "exactly the events after the checkpoint"
    );
    Ok(())
}

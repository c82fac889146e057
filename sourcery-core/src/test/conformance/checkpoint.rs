//! `checkpoint`, for a [`CheckpointStore`]: a saved position loads back
//! under its name, replaces the previous one, and names are kept apart
//! exactly; a claim returns the checkpoint and fences off lower fences,
//! and an advance is refused to a lower fence and never moves the
//! checkpoint backwards (see [fencing](crate::checkpoint#fencing)).

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, id};
use crate::checkpoint::{Advance, CheckpointStore, Claim, Fence};

/// Three positions of the event store, ascending.
async fn positions<S: ConformanceStore>(rule: Check, store: &S) -> [S::Position; 3] {
    let stream = id::<S>("checkpoint-positions");
    [
        rule.notes(store, ACCOUNT, &stream, &[1]).await,
        rule.notes(store, ACCOUNT, &stream, &[2, 3]).await,
        rule.notes(store, ACCOUNT, &stream, &[4]).await,
    ]
}

async fn load<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    rule: Check,
    checkpoints: &K,
    name: &str,
) -> Option<S::Position> {
    rule.ok("loading a checkpoint", checkpoints.load(name)).await
}

async fn save<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    rule: Check,
    checkpoints: &K,
    name: &str,
    position: S::Position,
) {
    rule.ok("saving a checkpoint", checkpoints.save(name, position))
        .await;
}

async fn claim<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    rule: Check,
    checkpoints: &K,
    name: &str,
    fence: u64,
) -> Claim<S::Position> {
    rule.ok(
        "claiming a checkpoint",
        checkpoints.claim(name, Fence::new(fence)),
    )
    .await
}

async fn advance<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    rule: Check,
    checkpoints: &K,
    name: &str,
    position: S::Position,
    fence: Option<u64>,
) -> Advance<S::Position> {
    rule.ok(
        "advancing a checkpoint",
        checkpoints.advance(name, position, fence.map(Fence::new)),
    )
    .await
}

/// A name nothing was saved under has no checkpoint, also once others have.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn missing_is_none<S: ConformanceStore, K: CheckpointStore<S::Position>>(store: S, checkpoints: K) {
    let rule = Check("checkpoint.missing_is_none");
    let [first, ..] = positions(rule, &store).await;
    rule.same(
        "the checkpoint of a name in an empty checkpoint store",
        None,
        load::<S, K>(rule, &checkpoints, "conformance.missing").await,
    );
    save::<S, K>(rule, &checkpoints, "conformance.saved", first).await;
    rule.same(
        "the checkpoint of a name nothing was saved under, while another name has one",
        None,
        load::<S, K>(rule, &checkpoints, "conformance.missing").await,
    );
}

/// A saved position loads back.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn round_trip<S: ConformanceStore, K: CheckpointStore<S::Position>>(store: S, checkpoints: K) {
    let rule = Check("checkpoint.round_trip");
    let [_, second, _] = positions(rule, &store).await;
    save::<S, K>(rule, &checkpoints, "conformance.projection", second).await;
    rule.same(
        "the checkpoint saved",
        Some(second),
        load::<S, K>(rule, &checkpoints, "conformance.projection").await,
    );
}

/// Each save replaces the previous checkpoint: a later position, and a
/// lower one too (a projection rebuilt from the start saves lower
/// positions).
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn replaces_the_previous<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.replaces_the_previous");
    let [first, second, third] = positions(rule, &store).await;
    for (what, position) in [("first", first), ("a later", third), ("a lower", second)] {
        save::<S, K>(rule, &checkpoints, "conformance.replaced", position).await;
        rule.same(
            format_args!("the checkpoint after saving {what} position"),
            Some(position),
            load::<S, K>(rule, &checkpoints, "conformance.replaced").await,
        );
    }
}

/// Checkpoints under different names are independent.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn names_apart<S: ConformanceStore, K: CheckpointStore<S::Position>>(store: S, checkpoints: K) {
    let rule = Check("checkpoint.names_apart");
    let [first, second, third] = positions(rule, &store).await;
    let names = [("orders", first), ("orders.v2", second), ("Orders", third)];
    for (name, position) in names {
        save::<S, K>(rule, &checkpoints, name, position).await;
    }
    for (name, position) in names {
        rule.same(
            format_args!("the checkpoint of {name:?}"),
            Some(position),
            load::<S, K>(rule, &checkpoints, name).await,
        );
    }
}

/// Names are data: quotes, SQL, unicode, spaces and the empty string.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn awkward_names<S: ConformanceStore, K: CheckpointStore<S::Position>>(store: S, checkpoints: K) {
    let rule = Check("checkpoint.awkward_names");
    let [first, second, third] = positions(rule, &store).await;
    let names = [
        ("it's", first),
        ("x'; DELETE FROM checkpoints; --", second),
        ("проекция-🦀", third),
        (" spaced ", first),
        ("spaced", second),
        ("", third),
        ("100%", first),
        ("1000", second),
    ];
    for (name, position) in names {
        save::<S, K>(rule, &checkpoints, name, position).await;
    }
    for (name, position) in names {
        rule.same(
            format_args!("the checkpoint of {name:?}"),
            Some(position),
            load::<S, K>(rule, &checkpoints, name).await,
        );
    }
}

/// A claim returns the checkpoint saved under the name, `None` when there
/// is none; a claimed name without a position has no checkpoint; the
/// recorded fence may claim again.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn claim_returns_checkpoint<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.claim_returns_checkpoint");
    let [_, second, _] = positions(rule, &store).await;
    let name = "conformance.claimed";
    rule.same(
        "a claim (fence 1) of a name nothing was saved under",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 1).await,
    );
    rule.same(
        "the checkpoint of a name claimed but never saved",
        None,
        load::<S, K>(rule, &checkpoints, name).await,
    );
    save::<S, K>(rule, &checkpoints, name, second).await;
    rule.same(
        "a claim (fence 2) after a save",
        Claim::Claimed(Some(second)),
        claim::<S, K>(rule, &checkpoints, name, 2).await,
    );
    rule.same(
        "a second claim with the recorded fence (2)",
        Claim::Claimed(Some(second)),
        claim::<S, K>(rule, &checkpoints, name, 2).await,
    );
}

/// A claim with a fence lower than the recorded one is refused with the
/// recorded fence, and records nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn claim_refuses_lower_fence<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.claim_refuses_lower_fence");
    let [first, ..] = positions(rule, &store).await;
    let name = "conformance.fenced-claim";
    rule.same(
        "a claim (fence 5) of a new name",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 5).await,
    );
    rule.same(
        "a claim with fence 3 after fence 5 claimed the name",
        Claim::Fenced(Fence::new(5)),
        claim::<S, K>(rule, &checkpoints, name, 3).await,
    );
    rule.same(
        "an advance with fence 4 after fence 5 claimed the name and fence 3 was refused",
        Advance::Fenced(Fence::new(5)),
        advance::<S, K>(rule, &checkpoints, name, first, Some(4)).await,
    );
}

/// Once a higher fence claimed the name, an advance with a lower fence is
/// refused with the higher one and writes nothing; the higher fence
/// advances.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn advance_refuses_lower_fence<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.advance_refuses_lower_fence");
    let [first, second, third] = positions(rule, &store).await;
    let name = "conformance.fenced-advance";
    rule.same(
        "a claim (fence 2) of a new name",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 2).await,
    );
    rule.same(
        "an advance with the fence that claimed the name (2)",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, first, Some(2)).await,
    );
    rule.same(
        "a claim by a newer holder (fence 3)",
        Claim::Claimed(Some(first)),
        claim::<S, K>(rule, &checkpoints, name, 3).await,
    );
    rule.same(
        "an advance by the old holder (fence 2) after fence 3 claimed the name",
        Advance::Fenced(Fence::new(3)),
        advance::<S, K>(rule, &checkpoints, name, third, Some(2)).await,
    );
    rule.same(
        "the checkpoint after the refused advance",
        Some(first),
        load::<S, K>(rule, &checkpoints, name).await,
    );
    rule.same(
        "an advance by the newer holder (fence 3)",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, second, Some(3)).await,
    );
    rule.same(
        "the checkpoint after the newer holder's advance",
        Some(second),
        load::<S, K>(rule, &checkpoints, name).await,
    );
}

/// An advance saves a name nothing was saved under, and records its fence
/// when it is higher than the recorded one: lower claims are refused after
/// it.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn advance_records_higher_fence<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.advance_records_higher_fence");
    let [first, second, _] = positions(rule, &store).await;
    let name = "conformance.advance-fence";
    rule.same(
        "an advance (fence 4) of a name never claimed nor saved",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, first, Some(4)).await,
    );
    rule.same(
        "the checkpoint after advancing a new name",
        Some(first),
        load::<S, K>(rule, &checkpoints, name).await,
    );
    rule.same(
        "a claim with fence 3 after an advance with fence 4",
        Claim::Fenced(Fence::new(4)),
        claim::<S, K>(rule, &checkpoints, name, 3).await,
    );
    rule.same(
        "an advance with fence 6 after fence 4",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, second, Some(6)).await,
    );
    rule.same(
        "a claim with fence 5 after an advance with fence 6",
        Claim::Fenced(Fence::new(6)),
        claim::<S, K>(rule, &checkpoints, name, 5).await,
    );
}

/// An advance to a position below the saved one is refused with the saved
/// position and writes nothing; an advance to the saved position itself
/// is allowed.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn advance_never_backwards<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.advance_never_backwards");
    let [_, second, third] = positions(rule, &store).await;
    let name = "conformance.forward";
    rule.same(
        "a claim (fence 1) of a new name",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 1).await,
    );
    rule.same(
        "an advance to the third position",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, third, Some(1)).await,
    );
    rule.same(
        "an advance back to the second position",
        Advance::Behind(third),
        advance::<S, K>(rule, &checkpoints, name, second, Some(1)).await,
    );
    rule.same(
        "the checkpoint after the refused advance",
        Some(third),
        load::<S, K>(rule, &checkpoints, name).await,
    );
    rule.same(
        "an advance to the saved position itself",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, third, Some(1)).await,
    );
}

/// An advance without a fence is not checked against the recorded fence,
/// only against the saved position, and leaves the recorded fence as it
/// was.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn advance_unfenced_checks_only_order<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.advance_unfenced_checks_only_order");
    let [first, second, _] = positions(rule, &store).await;
    let name = "conformance.unfenced";
    rule.same(
        "a claim (fence 5) of a new name",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 5).await,
    );
    rule.same(
        "an advance without a fence after fence 5 claimed the name",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, second, None).await,
    );
    rule.same(
        "an advance without a fence to a lower position",
        Advance::Behind(second),
        advance::<S, K>(rule, &checkpoints, name, first, None).await,
    );
    rule.same(
        "the checkpoint after the unfenced advances",
        Some(second),
        load::<S, K>(rule, &checkpoints, name).await,
    );
    rule.same(
        "a claim with fence 4 after fence 5 claimed the name and unfenced advances",
        Claim::Fenced(Fence::new(5)),
        claim::<S, K>(rule, &checkpoints, name, 4).await,
    );
}

/// A save replaces the position and keeps the fence that claimed the name:
/// lower fences are refused after it as before.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn save_keeps_fence<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.save_keeps_fence");
    let [first, second, third] = positions(rule, &store).await;
    let name = "conformance.saved-fence";
    rule.same(
        "a claim (fence 5) of a new name",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, name, 5).await,
    );
    rule.same(
        "an advance with the fence that claimed the name (5)",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, name, third, Some(5)).await,
    );
    save::<S, K>(rule, &checkpoints, name, first).await;
    rule.same(
        "the checkpoint after saving a lower position",
        Some(first),
        load::<S, K>(rule, &checkpoints, name).await,
    );
    rule.same(
        "an advance with fence 4 after fence 5 claimed the name and a save",
        Advance::Fenced(Fence::new(5)),
        advance::<S, K>(rule, &checkpoints, name, second, Some(4)).await,
    );
    rule.same(
        "a claim with fence 4 after fence 5 claimed the name and a save",
        Claim::Fenced(Fence::new(5)),
        claim::<S, K>(rule, &checkpoints, name, 4).await,
    );
}

/// Fences are recorded per name: a fence claiming one name does not fence
/// off another.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn fences_names_apart<S: ConformanceStore, K: CheckpointStore<S::Position>>(
    store: S,
    checkpoints: K,
) {
    let rule = Check("checkpoint.fences_names_apart");
    let [first, second, _] = positions(rule, &store).await;
    rule.same(
        "a claim (fence 5) of \"orders\"",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, "orders", 5).await,
    );
    rule.same(
        "a claim (fence 1) of \"orders.v2\" while fence 5 claims \"orders\"",
        Claim::Claimed(None),
        claim::<S, K>(rule, &checkpoints, "orders.v2", 1).await,
    );
    rule.same(
        "an advance (fence 1) of \"orders.v2\"",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, "orders.v2", first, Some(1)).await,
    );
    rule.same(
        "an advance (fence 2) of \"Orders\", never claimed",
        Advance::Saved,
        advance::<S, K>(rule, &checkpoints, "Orders", second, Some(2)).await,
    );
    rule.same(
        "a claim with fence 4 of \"orders\", after fences 1 and 2 on other names",
        Claim::Fenced(Fence::new(5)),
        claim::<S, K>(rule, &checkpoints, "orders", 4).await,
    );
}

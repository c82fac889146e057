//! `checkpoint`, for a [`CheckpointStore`]: a saved position loads back
//! under its name, replaces the previous one, and names are kept apart
//! exactly.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, id};
use crate::checkpoint::CheckpointStore;

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

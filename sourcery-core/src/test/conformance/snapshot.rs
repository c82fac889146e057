//! `snapshot`, for a [`SnapshotStore`]: the newest snapshot per key wins,
//! an older or equal position is declined and changes nothing, keys never
//! see each other's snapshots, bytes and schema versions round-trip.

use super::ConformanceStore;
use super::support::{ACCOUNT, Check, id};
use crate::snapshot::{SaveOutcome, Snapshot, SnapshotKey, SnapshotStore};

/// `count` ascending positions of the event store, one commit each.
async fn positions<S: ConformanceStore>(rule: Check, store: &S, count: u64) -> Vec<S::Position> {
    let stream = id::<S>("snapshot-positions");
    let mut positions = Vec::new();
    for n in 0..count {
        positions.push(rule.notes(store, ACCOUNT, &stream, &[n]).await);
    }
    positions
}

fn snapshot<Pos>(position: Pos, schema_version: u32, data: &[u8]) -> Snapshot<Pos> {
    Snapshot {
        position,
        schema_version,
        data: data.to_vec(),
    }
}

async fn save<Pos, T: SnapshotStore<Pos>>(
    rule: Check,
    store: &T,
    key: &SnapshotKey,
    snapshot: Snapshot<Pos>,
) -> SaveOutcome {
    rule.ok("saving a snapshot", store.save(key, snapshot)).await
}

async fn load<Pos, T: SnapshotStore<Pos>>(
    rule: Check,
    store: &T,
    key: &SnapshotKey,
) -> Option<Snapshot<Pos>> {
    rule.ok("loading a snapshot", store.load(key)).await
}

/// A later position replaces the snapshot of a key, whatever the schema
/// versions; an unknown key loads nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn keeps_the_newest<S, T>(store: S, snapshots: T)
where
    S: ConformanceStore,
    T: SnapshotStore<S::Position>,
{
    let rule = Check("snapshot.keeps_the_newest");
    let at = positions(rule, &store, 3).await;
    let key = SnapshotKey::aggregate("conformance.newest", "\"a\"");
    rule.same(
        "the snapshot of an unknown key",
        None,
        load(rule, &snapshots, &key).await,
    );
    for (position, version, data) in [
        (at[0], 1, &b"first"[..]),
        (at[1], 1, b"second"),
        (at[2], 3, b"third"),
    ] {
        rule.same(
            format_args!("the outcome of saving at a later position ({position:?})"),
            SaveOutcome::Saved,
            save(rule, &snapshots, &key, snapshot(position, version, data)).await,
        );
        rule.same(
            "the snapshot after a later one was saved",
            Some(snapshot(position, version, data)),
            load(rule, &snapshots, &key).await,
        );
    }
}

/// Saving at an older or equal position is declined and changes nothing.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn declines_older_or_equal<S, T>(store: S, snapshots: T)
where
    S: ConformanceStore,
    T: SnapshotStore<S::Position>,
{
    let rule = Check("snapshot.declines_older_or_equal");
    let at = positions(rule, &store, 3).await;
    let key = SnapshotKey::aggregate("conformance.declines", "\"a\"");
    save(rule, &snapshots, &key, snapshot(at[1], 1, b"kept")).await;
    for (what, position) in [("an older", at[0]), ("an equal", at[1])] {
        rule.same(
            format_args!("the outcome of saving at {what} position"),
            SaveOutcome::Declined,
            save(rule, &snapshots, &key, snapshot(position, 2, b"declined")).await,
        );
        rule.same(
            format_args!("the snapshot after a save at {what} position was declined"),
            Some(snapshot(at[1], 1, b"kept")),
            load(rule, &snapshots, &key).await,
        );
    }
}

/// Keys that differ in subject, kind or id text never see each other's
/// snapshots: `"1"` (a `String` id) and `1` (an integer), `()`, a `Uuid`,
/// the empty string, a projection of the same kind, awkward text.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn keys_stay_apart<S, T>(store: S, snapshots: T)
where
    S: ConformanceStore,
    T: SnapshotStore<S::Position>,
{
    let rule = Check("snapshot.keys_stay_apart");
    let text = |id: Result<String, crate::snapshot::SnapshotKeyError>| match id {
        Ok(text) => text,
        Err(error) => rule.fail("a snapshot key's id text", format_args!("{error}")),
    };
    let kind = "conformance.keys";
    let keys = [
        SnapshotKey::aggregate(kind, text(SnapshotKey::id_text("1"))),
        SnapshotKey::aggregate(kind, text(SnapshotKey::id_text(&1_i64))),
        SnapshotKey::aggregate(kind, text(SnapshotKey::id_text(&()))),
        SnapshotKey::aggregate(kind, text(SnapshotKey::id_text(&uuid::Uuid::nil()))),
        SnapshotKey::aggregate(kind, text(SnapshotKey::id_text(""))),
        SnapshotKey::aggregate(kind, ""),
        SnapshotKey::projection(kind),
        SnapshotKey::projection_instance(kind, "1"),
        SnapshotKey::aggregate("conformance.keys.other", text(SnapshotKey::id_text("1"))),
        SnapshotKey::aggregate("it's \"quoted\" ü 🦀", text(SnapshotKey::id_text("клиент-🦀"))),
    ];
    let at = positions(rule, &store, 10).await;
    for ((n, key), position) in (0_u8..).zip(&keys).zip(&at) {
        rule.same(
            format_args!("the outcome of the first save under {key} (no other key's snapshot counts)"),
            SaveOutcome::Saved,
            save(rule, &snapshots, key, snapshot(*position, u32::from(n), &[n])).await,
        );
    }
    for ((n, key), position) in (0_u8..).zip(&keys).zip(&at) {
        rule.same(
            format_args!("the snapshot under {key}"),
            Some(snapshot(*position, u32::from(n), &[n])),
            load(rule, &snapshots, key).await,
        );
    }
}

/// Bytes (empty, all byte values, 1 MiB) and schema versions (0,
/// `u32::MAX`) come back as saved.
///
/// # Panics
///
/// When the store breaks the rule.
pub async fn round_trip<S, T>(store: S, snapshots: T)
where
    S: ConformanceStore,
    T: SnapshotStore<S::Position>,
{
    let rule = Check("snapshot.round_trip");
    let at = positions(rule, &store, 1).await;
    let all_bytes: Vec<u8> = (0..=u8::MAX).collect();
    let large: Vec<u8> = (0..1_048_576_u32)
        .map(|n| u8::try_from(n % 251).unwrap_or(0))
        .collect();
    let cases = [(0, Vec::new()), (u32::MAX, all_bytes), (7, large)];
    for (n, (version, data)) in cases.into_iter().enumerate() {
        let key = SnapshotKey::projection_instance("conformance.round_trip", n.to_string());
        let saved = snapshot(at[0], version, &data);
        save(rule, &snapshots, &key, saved.clone()).await;
        let loaded = load(rule, &snapshots, &key).await;
        rule.ensure(
            loaded.as_ref() == Some(&saved),
            format_args!(
                "the snapshot at schema version {version} with {} bytes back as saved",
                data.len()
            ),
            || match &loaded {
                Some(loaded) => format!(
                    "schema version {} with {} bytes{}",
                    loaded.schema_version,
                    loaded.data.len(),
                    if loaded.data.len() == data.len() {
                        ", changed"
                    } else {
                        ""
                    }
                ),
                None => "no snapshot".to_owned(),
            },
        );
    }
}

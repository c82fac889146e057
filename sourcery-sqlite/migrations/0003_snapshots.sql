-- Snapshots: the newest state of each aggregate (or projection) at a
-- position. One row per key; a save replaces it only with a later position.
-- A rowid table (not WITHOUT ROWID): states can be large, and SQLite keeps
-- large rows best out of the key's B-tree.
CREATE TABLE sourcery_snapshots (
    subject        TEXT NOT NULL,
    kind           TEXT NOT NULL,
    id             TEXT NOT NULL,
    position       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    data           BLOB NOT NULL,
    taken_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (subject, kind, id)
) STRICT;

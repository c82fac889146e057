-- Fencing of projection runners: a runner claims its checkpoint with its
-- lease's fencing token (`fence`) and advances it with the same token; a
-- checkpoint claimed by a higher token refuses lower ones. A claimed
-- checkpoint may hold no position yet, so `position` becomes nullable:
-- SQLite cannot drop a NOT NULL, so the table is rebuilt (rows written
-- before have no fence, which every token may claim).
CREATE TABLE sourcery_checkpoints_fenced (
    name       TEXT PRIMARY KEY,
    position   INTEGER,
    fence      INTEGER,
    -- The head of the log when a read model's version was first claimed:
    -- events at or below it are history replayed into it.
    replay_until INTEGER,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
INSERT INTO sourcery_checkpoints_fenced (name, position, updated_at)
    SELECT name, position, updated_at FROM sourcery_checkpoints;
DROP TABLE sourcery_checkpoints;
ALTER TABLE sourcery_checkpoints_fenced RENAME TO sourcery_checkpoints;

-- Versioned read models (`ReadModel`): which version of each projection
-- readers see. A version's tables are `<table>_v<version>`; the view
-- `<table>` selects from the live version's, and switching the view and
-- this row is one transaction.
CREATE TABLE sourcery_read_models (
    name         TEXT PRIMARY KEY,
    live_version INTEGER NOT NULL,
    switched_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- Events a read model's version skips: parked by an operator
-- (`ReadModel::park`) after its handler failed on them, with the reason.
CREATE TABLE sourcery_parked_events (
    name      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    parked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (name, position)
) STRICT;

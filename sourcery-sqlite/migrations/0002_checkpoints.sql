-- Checkpoints: how far each projection has processed the log. One row per
-- projection name; saving replaces it.
CREATE TABLE sourcery_checkpoints (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

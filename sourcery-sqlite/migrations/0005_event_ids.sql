-- Event ids (`PersistableEvent::id`): chosen by the client before the
-- append, unique in the store. A batch whose ids are all stored already is a
-- replay of an earlier append (the crate docs, "Idempotent appends"): the
-- unique index `sourcery_events_event_id` is what finds one.
--
-- The table is rebuilt, for two changes at once:
--
-- - the column `event_id`, the UUID's 16 bytes, `NOT NULL` without a
--   default (the store always writes one);
-- - the position becomes a plain `INTEGER PRIMARY KEY`, without
--   AUTOINCREMENT. AUTOINCREMENT updates the table's row in
--   `sqlite_sequence` on every commit, one page more written to the log;
--   without it, a 10-event commit writes 10.6 pages with the id index
--   instead of 9.7 before ids (11.6 with both). SQLite then gives a new row
--   `max(position) + 1`, inside the write transaction, and admits one
--   writer at a time, so positions still rise in commit order. Since the
--   store never deletes events, that is exactly the position AUTOINCREMENT
--   gave. The one difference: a position could be handed out again only if
--   someone deleted the newest rows by hand.
--
-- The rebuild drops what an application may have added on
-- `sourcery_events` itself: its triggers and indexes (create them again
-- after opening the store). Views on the table are kept: they name it, and
-- the rename below leaves them as they are.

CREATE TABLE sourcery_events_rebuilt (
    position       INTEGER PRIMARY KEY,
    aggregate_kind TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    event_kind     TEXT NOT NULL,
    data           BLOB NOT NULL,
    metadata       TEXT NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1 CHECK (schema_version > 0),
    event_id       BLOB NOT NULL CHECK (length(event_id) = 16)
) STRICT;

-- The events written before this migration keep the id their metadata
-- carries, where earlier releases' `EventMetadata` kept it: the text of the
-- top-level key `event_id`, when it is a UUID (hyphenated, or 32 hex digits)
-- and no event at a lower position carries the same one. So `causation_id`s
-- that name those events still do.
CREATE TEMP TABLE sourcery_migration_event_ids (
    position INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL
);

INSERT INTO temp.sourcery_migration_event_ids (position, event_id)
SELECT position, event_id
FROM (
    SELECT position, event_id,
           row_number() OVER (PARTITION BY event_id ORDER BY position) AS nth
    FROM (
        SELECT position,
               unhex(CASE
                   -- A JSON string only (`json_extract` gives numbers as
                   -- numbers, objects and arrays as their JSON text).
                   WHEN typeof(text) <> 'text' THEN NULL
                   WHEN length(text) = 36
                        AND substr(text, 9, 1) = '-' AND substr(text, 14, 1) = '-'
                        AND substr(text, 19, 1) = '-' AND substr(text, 24, 1) = '-'
                       THEN replace(text, '-', '')
                   WHEN length(text) = 32 THEN text
               END) AS event_id
        FROM (
            SELECT position,
                   -- `CASE` evaluates lazily: metadata without the key is
                   -- not parsed, and metadata that is not JSON (written by
                   -- something else than the store) is skipped, not an
                   -- error.
                   CASE WHEN instr(metadata, '"event_id"') > 0 AND json_valid(metadata)
                       THEN json_extract(metadata, '$.event_id')
                   END AS text
            FROM sourcery_events
        )
    )
    -- `unhex` gives NULL for a digit that is not hex, fewer bytes for a
    -- hyphen out of place.
    WHERE length(event_id) = 16
)
WHERE nth = 1;

-- Every row, at its own position. Every other event gets a random version 4
-- UUID: 122 random bits, the version nibble 4, the variant bits 10.
INSERT INTO sourcery_events_rebuilt
    (position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version, event_id)
SELECT events.position, events.aggregate_kind, events.aggregate_id, events.event_kind,
       events.data, events.metadata, events.schema_version,
       coalesce(
           found.event_id,
           unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
                 || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))
       )
FROM sourcery_events AS events
LEFT JOIN temp.sourcery_migration_event_ids AS found ON found.position = events.position
ORDER BY events.position;

DROP TABLE temp.sourcery_migration_event_ids;

-- Dropping the table drops its indexes, its triggers and its row in
-- `sqlite_sequence`. The legacy rename does not check or rewrite the
-- schema's views and triggers: a view that names `sourcery_events` would
-- otherwise fail the rename (the name is missing until the rename ends), and
-- the view is meant to find the new table under the old name.
DROP TABLE sourcery_events;
PRAGMA legacy_alter_table = ON;
ALTER TABLE sourcery_events_rebuilt RENAME TO sourcery_events;
PRAGMA legacy_alter_table = OFF;

-- The indexes of migration 1, under their names.
CREATE INDEX sourcery_events_stream ON sourcery_events (aggregate_kind, aggregate_id);
CREATE INDEX sourcery_events_kind ON sourcery_events (event_kind);

-- Ids are unique in the store. The index also finds a batch's ids (a replay,
-- `EventStore::event_positions`): one probe per id.
CREATE UNIQUE INDEX sourcery_events_event_id ON sourcery_events (event_id);

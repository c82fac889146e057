-- Event ids (`PersistableEvent::id`): chosen by the client before the
-- append, unique in the store. A batch whose ids are all stored already is a
-- replay of an earlier append (the crate docs, "Idempotent appends"): the
-- unique index `sourcery_events_event_id` is what finds one.
--
-- The id is the UUID's 16 bytes. `ADD COLUMN` keeps the table as it is (and
-- whatever triggers or views the application has on it); SQLite requires a
-- constant default for a `NOT NULL` column added this way. The default is
-- the nil UUID: every row gets its own id below, the store always writes
-- one, and the unique index would refuse a second row without one.
ALTER TABLE sourcery_events ADD COLUMN event_id BLOB NOT NULL
    DEFAULT x'00000000000000000000000000000000' CHECK (length(event_id) = 16);

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

-- Every other event gets a random version 4 UUID: 122 random bits, the
-- version nibble 4, the variant bits 10.
UPDATE sourcery_events
SET event_id = coalesce(
    (SELECT found.event_id FROM temp.sourcery_migration_event_ids AS found
     WHERE found.position = sourcery_events.position),
    unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
          || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(8)), 2))
);

DROP TABLE temp.sourcery_migration_event_ids;

-- Ids are unique in the store. The index also finds a batch's ids (a replay,
-- `EventStore::event_positions`): one probe per id.
CREATE UNIQUE INDEX sourcery_events_event_id ON sourcery_events (event_id);

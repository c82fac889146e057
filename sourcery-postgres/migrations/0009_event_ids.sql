-- Every event has an id chosen by the client (`PersistableEvent::id`),
-- unique in the store: a retry of an append whose outcome was lost sends
-- the same ids, and the store recognises the batch as stored (a replay)
-- instead of writing it twice. See the crate docs, "Event ids and
-- idempotent appends".
--
-- The unique constraint's name is fixed: the store tells a violation of it
-- ("these ids are stored already") from one of
-- `sourcery_events_stream_sequence_key` (a concurrency conflict) by name.
--
-- Events written before this migration get an id: the `event_id` key of
-- their metadata when it holds a UUID no earlier event's metadata holds
-- (the `EventMetadata` of earlier releases carried one), a random one
-- otherwise. The metadata itself is left as it was.
--
-- No default: an append of an older release (which does not send ids)
-- fails on the NOT NULL instead of writing events without the id its
-- caller would retry with. Its `migrate()` reports the schema as too new;
-- its reads keep working.
ALTER TABLE __SCHEMA__.sourcery_events ADD COLUMN event_id uuid;

-- Filled by rewriting the table once (`ALTER COLUMN ... USING` may read the
-- row's other columns), which rebuilds the indexes in bulk: on a million
-- events, about 2.5 times faster than an `UPDATE` of every row, which adds
-- an entry to every index per row. `CASE` keeps the cast away from texts
-- that are not UUIDs (it would fail the migration): the hyphenated form
-- serde and `Uuid::to_string` write, in either case, with or without
-- braces, and the 32 digits without hyphens.
ALTER TABLE __SCHEMA__.sourcery_events ALTER COLUMN event_id SET DATA TYPE uuid USING
    CASE WHEN jsonb_typeof(metadata -> 'event_id') = 'string'
              AND (metadata ->> 'event_id') ~
                  '^(\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32})$'
         THEN (metadata ->> 'event_id')::uuid
         ELSE gen_random_uuid()
    END;

-- Of several events whose metadata holds the same id, the earliest keeps
-- it; the others get a random one.
UPDATE __SCHEMA__.sourcery_events AS e
SET event_id = gen_random_uuid()
FROM (
    SELECT position, row_number() OVER (PARTITION BY event_id ORDER BY position) AS nth
    FROM __SCHEMA__.sourcery_events
) AS taken
WHERE e.position = taken.position AND taken.nth > 1;

ALTER TABLE __SCHEMA__.sourcery_events
    ALTER COLUMN event_id SET NOT NULL,
    ADD CONSTRAINT sourcery_events_event_id_key UNIQUE (event_id);

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

-- One pass over the log. `CASE` keeps the cast away from texts that are
-- not UUIDs (it would fail the migration): the hyphenated form serde and
-- `Uuid::to_string` write, in either case, with or without braces, and the
-- 32 digits without hyphens. Of several events whose metadata holds the
-- same id, the earliest keeps it.
UPDATE __SCHEMA__.sourcery_events AS e
SET event_id = coalesce(ids.event_id, gen_random_uuid())
FROM (
    SELECT candidates.position,
           CASE WHEN candidates.event_id IS NOT NULL
                     AND row_number() OVER (PARTITION BY candidates.event_id ORDER BY candidates.position) = 1
                THEN candidates.event_id
           END AS event_id
    FROM (
        SELECT old.position,
               CASE WHEN jsonb_typeof(old.metadata -> 'event_id') = 'string'
                         AND (old.metadata ->> 'event_id') ~
                             '^(\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32})$'
                    THEN (old.metadata ->> 'event_id')::uuid
               END AS event_id
        FROM __SCHEMA__.sourcery_events AS old
    ) AS candidates
) AS ids
WHERE e.position = ids.position;

ALTER TABLE __SCHEMA__.sourcery_events
    ALTER COLUMN event_id SET NOT NULL,
    ADD CONSTRAINT sourcery_events_event_id_key UNIQUE (event_id);

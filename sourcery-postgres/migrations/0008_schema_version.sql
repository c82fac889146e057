-- The version of each event's shape (`PersistableEvent::schema_version`):
-- loading upcasts an event written in an older shape before decoding it.
-- Every event written before this migration is at version 1.
--
-- A constant default is stored in the catalog, not in each row: adding the
-- column does not rewrite the log. The check is added `NOT VALID`: it holds
-- for every row written from now on, and the rows already there are all 1,
-- so validating them would only scan the whole log under the migration's
-- lock.
ALTER TABLE __SCHEMA__.sourcery_events
    ADD COLUMN schema_version integer NOT NULL DEFAULT 1,
    ADD CONSTRAINT sourcery_events_schema_version_check CHECK (schema_version > 0) NOT VALID;

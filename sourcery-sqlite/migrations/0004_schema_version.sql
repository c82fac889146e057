-- The version of each event's shape (`PersistableEvent::schema_version`):
-- loading upcasts an event written in an older shape before decoding it.
-- Every event written before this migration is at version 1. SQLite adds
-- the column without rewriting the table (it checks the existing rows
-- against the new constraint, which they pass).
ALTER TABLE sourcery_events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1 CHECK (schema_version > 0);

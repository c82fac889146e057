-- The event log. One row per event; a stream is the rows of one
-- (aggregate_kind, aggregate_id). The position is the row id: assigned inside
-- the write transaction, and SQLite admits one writer at a time, so positions
-- rise in commit order. AUTOINCREMENT: a position is never handed out twice,
-- even if rows were ever removed from the end of the log. (Migration 5
-- rebuilds the table without AUTOINCREMENT; see there.)
CREATE TABLE sourcery_events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_kind TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    event_kind     TEXT NOT NULL,
    data           BLOB NOT NULL,
    metadata       TEXT NOT NULL
) STRICT;

-- One stream in position order (loading an aggregate, its version). Every
-- index of a rowid table ends with the row id, so entries of one stream are
-- in position order.
CREATE INDEX sourcery_events_stream ON sourcery_events (aggregate_kind, aggregate_id);

-- One event kind after a position (projections, subscriptions).
CREATE INDEX sourcery_events_kind ON sourcery_events (event_kind);

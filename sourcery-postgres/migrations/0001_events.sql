-- The event log. `__SCHEMA__` is replaced by the store's (quoted) schema.
--
-- `position` is the global order. It is drawn from the sequence inside
-- `sourcery_append` only (never by a column default), together with the
-- transaction id `tx_id`, so that position order equals transaction id order
-- among appenders: see docs/adr/0002-postgres-global-order.md.
CREATE SEQUENCE __SCHEMA__.sourcery_events_position_seq AS bigint START WITH 1 CACHE 1;

CREATE TABLE __SCHEMA__.sourcery_events (
    position        bigint      NOT NULL,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    aggregate_kind  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    -- 1, 2, 3, ... within the stream; the unique constraint below is the
    -- database's guarantee that two writers cannot both extend a stream from
    -- the same version.
    stream_sequence bigint      NOT NULL,
    event_kind      text        NOT NULL,
    data            bytea       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_events_pkey PRIMARY KEY (position),
    CONSTRAINT sourcery_events_stream_sequence_key UNIQUE (aggregate_kind, aggregate_id, stream_sequence),
    CONSTRAINT sourcery_events_stream_sequence_check CHECK (stream_sequence > 0)
);

ALTER SEQUENCE __SCHEMA__.sourcery_events_position_seq OWNED BY __SCHEMA__.sourcery_events.position;

-- One stream, in order, optionally after a position (the repository's load).
CREATE INDEX sourcery_events_stream_idx
    ON __SCHEMA__.sourcery_events (aggregate_kind, aggregate_id, position);

-- One event kind across all streams after a position (projections).
CREATE INDEX sourcery_events_kind_idx
    ON __SCHEMA__.sourcery_events (event_kind, position);

-- Reactors' timers and dead letters (`ReactorStore`).
--
-- A timer is a command scheduled by a reaction, fired by the reactor's
-- active runner once it is due. It stays stored after it fired or was
-- cancelled, so that scheduling it again (a redelivered reaction) stores
-- nothing new. Times are whole milliseconds since 1970-01-01 UTC. `state`
-- is `pending`, `fired`, `cancelled` or `failed`; it has no CHECK, so that
-- a later migration can add a state without rebuilding the table (the
-- store refuses a name it does not know with `Error::DecodeTimer`).
CREATE TABLE sourcery_timers (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    reactor    TEXT NOT NULL,
    key        TEXT NOT NULL,
    due        INTEGER NOT NULL,
    command    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    -- The position of the event whose reaction scheduled the timer.
    cause      INTEGER NOT NULL,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) STRICT;

-- A reactor's timers of one state by due time (ties by id): the pending
-- ones due now (`due`), the earliest (`next_due`), and every timer of a
-- reactor, state by state.
CREATE INDEX sourcery_timers_due ON sourcery_timers (reactor, state, due, id);

-- A reactor's pending timers of one key (`cancel`).
CREATE INDEX sourcery_timers_key ON sourcery_timers (reactor, key) WHERE state = 'pending';

-- Reactions that failed as many times as their reactor retries: a copy of
-- the event (its columns as `sourcery_events` keeps them), the last error,
-- the attempts, when it was parked (milliseconds since 1970-01-01 UTC) and
-- whether an operator asked for a retry (0 or 1). One per reactor and event
-- position; parking again replaces it.
CREATE TABLE sourcery_dead_letters (
    reactor         TEXT NOT NULL,
    position        INTEGER NOT NULL,
    event_id        BLOB NOT NULL,
    aggregate_kind  TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    event_kind      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            BLOB NOT NULL,
    metadata        TEXT NOT NULL,
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    parked_at       INTEGER NOT NULL,
    retry_requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reactor, position)
) STRICT;

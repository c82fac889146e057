-- Reactors' timers and dead letters (`postgres::ReactorStore`; see the
-- crate docs, "Reactors").
--
-- A timer is a command scheduled by a reaction. Its id is derived from the
-- reactor, the causing event and the timer's index in the reaction, so a
-- reaction delivered again schedules nothing new (`ON CONFLICT (id) DO
-- NOTHING`). A timer stays stored after it fired or was cancelled. `cause`
-- is the position of the event whose reaction scheduled it: a cancellation
-- caused by a later event cancels it, one by an earlier event does not.
-- `due` (and `parked_at` below) keep microseconds: a time in whole
-- milliseconds or microseconds comes back exactly; nanoseconds are dropped.
CREATE TABLE __SCHEMA__.sourcery_timers (
    id         uuid        NOT NULL,
    reactor    text        NOT NULL,
    key        text        NOT NULL,
    due        timestamptz NOT NULL,
    command    text        NOT NULL,
    payload    bytea       NOT NULL,
    cause      bigint      NOT NULL,
    state      text        NOT NULL DEFAULT 'pending',
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    CONSTRAINT sourcery_timers_pkey PRIMARY KEY (id),
    CONSTRAINT sourcery_timers_state_check CHECK (state IN ('pending', 'fired', 'cancelled', 'failed')),
    CONSTRAINT sourcery_timers_attempts_check CHECK (attempts >= 0)
);

-- The pending timers of a reactor, earliest due first (`due`, `next_due`):
-- fired and cancelled timers stay in the table but not in the index.
CREATE INDEX sourcery_timers_due_idx
    ON __SCHEMA__.sourcery_timers (reactor, due, id) WHERE state = 'pending';

-- The pending timers of a reactor with a key (`cancel`).
CREATE INDEX sourcery_timers_key_idx
    ON __SCHEMA__.sourcery_timers (reactor, key) WHERE state = 'pending';

-- Reactions that failed as many times as their reactor retries, parked so
-- that the reactor could move on: the event as stored (its columns as in
-- `sourcery_events`), the last error and the attempts. One per reactor and
-- event position: parking again (a retry that failed again) replaces it
-- and clears `retry_requested`, which an operator sets to have the
-- reactor's active runner try again.
CREATE TABLE __SCHEMA__.sourcery_dead_letters (
    reactor         text        NOT NULL,
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    aggregate_kind  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    event_kind      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            bytea       NOT NULL,
    metadata        jsonb       NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL,
    parked_at       timestamptz NOT NULL,
    retry_requested boolean     NOT NULL DEFAULT false,
    CONSTRAINT sourcery_dead_letters_pkey PRIMARY KEY (reactor, position),
    CONSTRAINT sourcery_dead_letters_attempts_check CHECK (attempts >= 0)
);

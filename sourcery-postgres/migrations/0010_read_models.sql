-- Fencing of projection runners and versioned read models (see the crate
-- docs, "Leases and fencing" and "Read models").
--
-- Each time a process takes the lease of a name, the lease's generation
-- for that name goes up by one, in `sourcery_leases`: the holder's fencing
-- token. A runner claims its projection's checkpoint with its token
-- (`fence`) and advances it with the same token; a checkpoint claimed by a
-- higher token refuses the lower one, so a runner that lost its lease
-- without knowing it cannot move the checkpoint, nor commit a
-- transactional projection's writes.
--
-- A claimed checkpoint may hold no position yet: `position` becomes
-- nullable. Rows written before have no fence (NULL), which every token
-- may claim.
--
-- `replay_until` is the head of the log when a read model's version was
-- first claimed: the events at or below it are history replayed into it
-- (`Delivery::is_replay`), those above it happened while it was live.
ALTER TABLE __SCHEMA__.sourcery_checkpoints
    ALTER COLUMN position DROP NOT NULL,
    ADD COLUMN fence bigint,
    ADD COLUMN replay_until bigint;

CREATE TABLE __SCHEMA__.sourcery_leases (
    name        text        NOT NULL,
    generation  bigint      NOT NULL,
    holder      integer     NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_leases_pkey PRIMARY KEY (name)
);

-- Versioned read models (`ReadModel`): which version of each projection
-- readers see. A version's tables are `<table>_v<version>`; the view
-- `<table>` selects from the live version's, and switching the view and
-- this row is one transaction.
CREATE TABLE __SCHEMA__.sourcery_read_models (
    name         text        NOT NULL,
    live_version integer     NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_read_models_pkey PRIMARY KEY (name)
);

-- Events a read model's version skips: parked by an operator
-- (`ReadModel::park`) after its handler failed on them, with the reason.
CREATE TABLE __SCHEMA__.sourcery_parked_events (
    name      text        NOT NULL,
    position  bigint      NOT NULL,
    reason    text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_parked_events_pkey PRIMARY KEY (name, position)
);

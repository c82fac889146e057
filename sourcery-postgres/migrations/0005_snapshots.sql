-- Snapshots: one row per key, the newest state of an aggregate or a
-- projection. `__SCHEMA__` is replaced by the store's (quoted) schema.
--
-- The key is (subject, kind, id): `subject` is 'aggregate' or 'projection',
-- `kind` the aggregate's or projection's KIND, `id` the aggregate id's JSON
-- text (or a projection's selection fingerprint). `position` is the global
-- position of the last event folded into `data`; a save replaces a row only
-- with a strictly later position (see `sourcery-postgres/src/snapshot.rs`).
--
-- `schema_version` holds a Rust `u32` (0 to 4294967295): a bigint with a
-- check, since `integer` stops at 2147483647.
CREATE TABLE __SCHEMA__.sourcery_snapshots (
    subject        text        NOT NULL,
    kind           text        NOT NULL,
    id             text        NOT NULL,
    position       bigint      NOT NULL,
    schema_version bigint      NOT NULL,
    data           bytea       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_snapshots_pkey PRIMARY KEY (subject, kind, id),
    CONSTRAINT sourcery_snapshots_schema_version_check CHECK (schema_version BETWEEN 0 AND 4294967295)
);

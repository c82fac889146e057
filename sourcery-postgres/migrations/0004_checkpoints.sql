-- Checkpoints of projection runners: the last position a projection has
-- applied, under its name. `__SCHEMA__` is replaced by the store's (quoted)
-- schema. Written by `sourcery_postgres::CheckpointStore`.
CREATE TABLE __SCHEMA__.sourcery_checkpoints (
    name       text        NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sourcery_checkpoints_pkey PRIMARY KEY (name)
);

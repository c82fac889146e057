-- Appends one batch to one stream in a single call (one round trip).
--
-- `__SCHEMA__` is replaced by the store's (quoted) schema, `__ORDER_LOCK__`
-- and `__STREAM_LOCK_SEED__` by numbers derived from the schema name, so
-- stores in different schemas never wait for each other.
--
-- p_check = false: unconditional. p_check = true and p_expected = NULL: only
-- onto an empty stream. p_check = true and p_expected = v: only if the
-- stream's last event is at position v.
--
-- Returns (written, version): written = true and version = the batch's last
-- position, or written = false and version = the stream's actual version
-- (NULL for an empty stream) when the check failed.
CREATE FUNCTION __SCHEMA__.sourcery_append(
    p_aggregate_kind text,
    p_aggregate_id   text,
    p_check          boolean,
    p_expected       bigint,
    p_kinds          text[],
    p_data           bytea[],
    p_metadata       jsonb[],
    OUT written      boolean,
    OUT version      bigint
)
LANGUAGE plpgsql
AS $function$
DECLARE
    v_count     integer := cardinality(p_kinds);
    v_version   bigint;
    v_sequence  bigint;
    v_tx_id     xid8;
    v_positions bigint[];
BEGIN
    IF v_count IS NULL OR v_count = 0
        OR cardinality(p_data) IS DISTINCT FROM v_count
        OR cardinality(p_metadata) IS DISTINCT FROM v_count THEN
        RAISE EXCEPTION 'sourcery_append: the batch arrays must be non-empty and of equal length'
            USING ERRCODE = '22023';
    END IF;
    -- The global order argument needs this transaction's id to be drawn in
    -- the critical section below: refuse a transaction that already wrote.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'sourcery_append must run in a transaction that has not written yet'
            USING ERRCODE = '25000';
    END IF;

    -- Writers of one stream queue here until the holder commits or rolls
    -- back, so every writer reads the version it checks after the previous
    -- writer's outcome is known. Writers of other streams do not wait.
    PERFORM pg_advisory_xact_lock(
        hashtextextended(p_aggregate_kind || E'\x1f' || p_aggregate_id, __STREAM_LOCK_SEED__));

    SELECT e.position, e.stream_sequence INTO v_version, v_sequence
    FROM __SCHEMA__.sourcery_events e
    WHERE e.aggregate_kind = p_aggregate_kind AND e.aggregate_id = p_aggregate_id
    ORDER BY e.stream_sequence DESC
    LIMIT 1;

    IF p_check AND v_version IS DISTINCT FROM p_expected THEN
        written := false;
        version := v_version;
        RETURN;
    END IF;

    -- The critical section: the transaction id and the batch's positions are
    -- drawn under one short session lock, so position order equals
    -- transaction id order. The lock is released before the insert and on
    -- every error (cancellation included); a terminated backend releases it
    -- with its session.
    BEGIN
        PERFORM pg_advisory_lock(__ORDER_LOCK__);
        v_tx_id := pg_current_xact_id();
        v_positions := ARRAY(
            SELECT nextval('__SCHEMA__.sourcery_events_position_seq'::regclass)
            FROM generate_series(1, v_count)
            ORDER BY 1);
        PERFORM pg_advisory_unlock(__ORDER_LOCK__);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        IF EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
              AND l.objsubid = 1
              AND l.classid = ((__ORDER_LOCK__ >> 32) & 4294967295)::oid
              AND l.objid = (__ORDER_LOCK__ & 4294967295)::oid
        ) THEN
            PERFORM pg_advisory_unlock(__ORDER_LOCK__);
        END IF;
        RAISE;
    END;

    INSERT INTO __SCHEMA__.sourcery_events
        (position, tx_id, aggregate_kind, aggregate_id, stream_sequence, event_kind, data, metadata)
    SELECT v_positions[b.ordinal], v_tx_id, p_aggregate_kind, p_aggregate_id,
           coalesce(v_sequence, 0) + b.ordinal, b.kind, b.data, b.metadata
    FROM unnest(p_kinds, p_data, p_metadata) WITH ORDINALITY AS b(kind, data, metadata, ordinal);

    written := true;
    version := v_positions[v_count];
END;
$function$;

-- The safe frontier: the highest position below which nothing more will
-- ever commit. Loads that followers use stop there. See
-- docs/adr/0002-postgres-global-order.md for the argument.
--
-- STABLE, so it runs on the snapshot of the statement that calls it: the
-- frontier and the rows a load returns agree.
--
-- `sourcery_append` draws transaction ids and positions in one critical
-- section, so tx_id rises with position. Then:
-- - rows written by transactions older than every running one (tx_id < the
--   snapshot's xmin) are settled;
-- - above them, positions are dense except where a batch is in flight or was
--   rolled back. A hole between rows written by transactions a and b belongs
--   to a transaction between a and b: if the snapshot lists one such
--   transaction as running, the hole may still fill, and the frontier stops
--   below it; otherwise the hole is permanent and the walk goes on.
--
-- Each connection remembers the last frontier it computed (a settled
-- position stays settled) in a session setting, so the walk only covers rows
-- appended since.
CREATE FUNCTION __SCHEMA__.sourcery_frontier()
RETURNS bigint
LANGUAGE plpgsql
STABLE
AS $function$
DECLARE
    v_snapshot pg_snapshot := pg_current_snapshot();
    v_cached   text := current_setting('sourcery.frontier___ORDER_LOCK__', true);
    v_position bigint := 0;
    v_tx_id    xid8 := '0';
    v_row      record;
BEGIN
    IF v_cached IS NOT NULL AND v_cached <> '' THEN
        v_position := split_part(v_cached, ':', 1)::bigint;
        v_tx_id := split_part(v_cached, ':', 2)::xid8;
        -- A cache from before the table was recreated is worthless.
        IF NOT EXISTS (
            SELECT 1 FROM __SCHEMA__.sourcery_events e
            WHERE e.position = v_position AND e.tx_id = v_tx_id
        ) THEN
            v_position := 0;
            v_tx_id := '0';
        END IF;
    END IF;

    SELECT e.position, e.tx_id INTO v_row
    FROM __SCHEMA__.sourcery_events e
    WHERE e.position > v_position AND e.tx_id < pg_snapshot_xmin(v_snapshot)
    ORDER BY e.position DESC
    LIMIT 1;
    IF FOUND THEN
        v_position := v_row.position;
        v_tx_id := v_row.tx_id;
    END IF;

    FOR v_row IN
        SELECT e.position, e.tx_id
        FROM __SCHEMA__.sourcery_events e
        WHERE e.position > v_position
        ORDER BY e.position
    LOOP
        IF v_row.position <> v_position + 1 AND EXISTS (
            SELECT 1 FROM pg_snapshot_xip(v_snapshot) AS running(tx_id)
            WHERE running.tx_id > v_tx_id AND running.tx_id < v_row.tx_id
        ) THEN
            EXIT;
        END IF;
        v_position := v_row.position;
        v_tx_id := v_row.tx_id;
    END LOOP;

    PERFORM set_config('sourcery.frontier___ORDER_LOCK__', v_position || ':' || v_tx_id, false);
    RETURN v_position;
END;
$function$;

-- The safe frontier waits only for this schema's own appends (issue 21).
-- See docs/adr/0002-postgres-global-order.md.
--
-- Until now a hole in the positions was held while *any* transaction whose
-- id lay between the ids of the rows around it was running, and
-- pg_current_snapshot() lists the running transactions of every schema and
-- every database of the cluster: an application's unrelated transaction
-- stalled followers. Since this migration the append statement takes a
-- shared transaction advisory lock keyed by the schema and its own
-- transaction id, `(__APPENDER_LOCK_CLASS__ << 32) | xid`, before it draws
-- positions, and holds it until its transaction ends (`pg_locks` shows it in
-- the store's database, classid = the class, objid = the xid, objsubid = 1).
--
-- At a hole the frontier takes the running transactions bracketed by the
-- rows around it, as before, and then:
-- - stops if one of them holds the lock now: an append of this schema in
--   flight;
-- - otherwise, after the lock table was read, stops if the hole is no
--   longer empty in a fresh snapshot (`sourcery_frontier_hole_filled`): a
--   bracketed append may have committed into it after the load's snapshot
--   and released its lock before the lock table was read; the next load
--   sees its rows. (Under REPEATABLE READ or SERIALIZABLE no fresh snapshot
--   is to be had: there it stops if a bracketed transaction is no longer
--   running.)
-- - otherwise passes: a bracketed transaction that had not ended when the
--   fresh snapshot was taken was running when the lock table was read
--   (transactions leave the running set before they release their locks),
--   so if it had drawn a position here it held the lock (an append takes it
--   before it draws and keeps it until its transaction ends); and it never
--   will draw one (an append is refused in a transaction that already has
--   an id).
-- On a standby, where the primary's advisory locks are not visible, every
-- bracketed running transaction holds the hole, as before.
--
-- Appends of older releases do not take the lock, so the frontier would not
-- wait for them: the position sequence is renamed, so that their statement
-- (prepared or not) fails on the name it knows instead of appending, and
-- their `migrate()` then reports the schema as too new. Readers of older
-- releases keep working (they call this function).
ALTER SEQUENCE __SCHEMA__.sourcery_events_position_seq RENAME TO sourcery_positions;

-- Whether a row lies strictly between two positions, on a snapshot of its
-- own: VOLATILE, so under READ COMMITTED it reads what has committed by now,
-- not what the calling load's snapshot saw.
CREATE FUNCTION __SCHEMA__.sourcery_frontier_hole_filled(p_after bigint, p_before bigint)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
AS $function$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM __SCHEMA__.sourcery_events e
        WHERE e.position > p_after AND e.position < p_before
    );
END;
$function$;

CREATE OR REPLACE FUNCTION __SCHEMA__.sourcery_frontier()
RETURNS bigint
LANGUAGE plpgsql
STABLE
AS $function$
DECLARE
    v_snapshot   pg_snapshot := pg_current_snapshot();
    v_cached     text := current_setting('sourcery.frontier___ORDER_LOCK__', true);
    v_position   bigint := 0;
    v_tx_id      xid8 := '0';
    v_row        record;
    v_candidates xid8[];
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
        IF v_row.position <> v_position + 1 THEN
            SELECT array_agg(running.tx_id) INTO v_candidates
            FROM pg_snapshot_xip(v_snapshot) AS running(tx_id)
            WHERE running.tx_id > v_tx_id AND running.tx_id < v_row.tx_id;
            IF v_candidates IS NOT NULL THEN
                IF pg_is_in_recovery() OR EXISTS (
                    SELECT 1 FROM pg_locks l
                    WHERE l.locktype = 'advisory'
                      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                      AND l.classid = __APPENDER_LOCK_CLASS__::oid
                      AND l.objsubid = 1
                      AND l.objid = ANY (ARRAY(SELECT xid(c)::text::oid FROM unnest(v_candidates) AS c))
                ) THEN
                    EXIT;
                END IF;
                -- After the lock table was read: did one of them commit into
                -- the hole since the snapshot?
                IF current_setting('transaction_isolation') = 'read committed' THEN
                    IF __SCHEMA__.sourcery_frontier_hole_filled(v_position, v_row.position) THEN
                        EXIT;
                    END IF;
                ELSIF EXISTS (
                    SELECT 1 FROM unnest(v_candidates) AS c
                    WHERE pg_xact_status(c) IS DISTINCT FROM 'in progress'
                ) THEN
                    EXIT;
                END IF;
            END IF;
        END IF;
        v_position := v_row.position;
        v_tx_id := v_row.tx_id;
    END LOOP;

    PERFORM set_config('sourcery.frontier___ORDER_LOCK__', v_position || ':' || v_tx_id, false);
    RETURN v_position;
END;
$function$;

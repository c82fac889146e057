-- Appends are one plain statement sent by the store (see
-- docs/adr/0006-postgres-append-statement.md); the PL/pgSQL function of
-- 0002 is gone. What stays on the server is the statement's guard: an append
-- must draw its transaction id inside the critical section, so a transaction
-- that already has one is refused with this function (SQLSTATE 25000,
-- invalid_transaction_state). It is only called when the guard fails.
DROP FUNCTION __SCHEMA__.sourcery_append(text, text, boolean, bigint, text[], bytea[], jsonb[]);

CREATE FUNCTION __SCHEMA__.sourcery_refuse_written_transaction()
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
AS $function$
BEGIN
    RAISE EXCEPTION 'a sourcery append must run in a transaction that has not written yet'
        USING ERRCODE = '25000',
              HINT = 'the store appends in autocommit; an append inside your own transaction must be its first write';
END;
$function$;

-- Token refresh. qbo_sync.token_refresh() refreshes one connection (one refresh per connection at
-- a time, the outcome written and returned, never raised: see plpython/qbo_sync_db/tokens.py).
-- pg_cron's 'qbo-check-token-expiry' runs qbo_sync.refresh_expiring_tokens(), a procedure that
-- commits after each connection, so a rotated refresh token is stored before anything else can
-- fail and one connection's trouble never undoes another's refresh.

DROP FUNCTION IF EXISTS qbo_sync.check_token_expiry();

CREATE OR REPLACE FUNCTION qbo_sync.token_refresh(organization_id uuid, force boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'  -- a concurrent refresh of the same connection is waited for this long
SET statement_timeout = 0  -- a timeout between Intuit's answer and storing it would lose the pair
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
import json
from qbo_sync_db import tokens
plpy.execute("SELECT qbo_sync.lock_own_relations()")
margin = float(plpy.execute("SELECT qbo_sync.setting_numeric('token.refresh_margin_seconds') AS m")[0]["m"])
return json.dumps(tokens.refresh(plpy, organization_id, margin, force))
$$;

-- The guide's name: refresh an organization's tokens now.
CREATE OR REPLACE FUNCTION public.qbo_token_refresh(organization_id uuid)
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbo_sync.token_refresh(organization_id, true) $$;

-- Active connections whose access token expires within token.refresh_margin_seconds (or has
-- expired, or was never stored), or whose refresh token expires within
-- token.refresh_token_renew_days.
CREATE OR REPLACE FUNCTION qbo_sync.connections_to_refresh()
RETURNS SETOF uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.organization_id
      FROM public.qbo_connection AS c
     WHERE c.is_active
       AND (c.qbo_token_expires_at IS NULL
            OR c.qbo_token_expires_at < now() + make_interval(
                   secs => qbo_sync.setting_numeric('token.refresh_margin_seconds')::double precision)
            -- a refresh token not renewed for long (its rolling expiry comes near)
            OR c.qbo_refresh_token_expires_at < now() + make_interval(
                   days => qbo_sync.setting_numeric('token.refresh_token_renew_days')::integer))
     ORDER BY c.qbo_token_expires_at NULLS FIRST
$$;

-- Whether the connection's refresh token itself needs renewing (so a refresh is forced even if the
-- access token is still good).
CREATE OR REPLACE FUNCTION qbo_sync.refresh_token_due(organization_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(c.qbo_refresh_token_expires_at < now() + make_interval(
                        days => qbo_sync.setting_numeric('token.refresh_token_renew_days')::integer), false)
      FROM public.qbo_connection AS c
     WHERE c.organization_id = refresh_token_due.organization_id
$$;

-- A history row per connection and day while its refresh token nears its hard expiry (the
-- warning qbo_sync_status shows too). Returns how many were written.
CREATE OR REPLACE FUNCTION qbo_sync.record_token_warnings()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    INSERT INTO public.qbo_sync_history
        (organization_id, sync_type, status, completed_at, error_summary, summary)
    SELECT c.organization_id, 'token', 'completed', now(), w.warning,
           jsonb_build_object('warning', 'reconnect', 'reconnect_by', c.qbo_refresh_token_hard_expires_at)
      FROM public.qbo_connection AS c
     CROSS JOIN LATERAL (SELECT qbo_sync.token_warning(c.is_active, c.qbo_refresh_token_hard_expires_at)) AS w(warning)
     WHERE w.warning IS NOT NULL
       AND NOT EXISTS (SELECT FROM public.qbo_sync_history AS h
                        WHERE h.organization_id = c.organization_id AND h.sync_type = 'token'
                          AND h.completed_at > now() - interval '1 day');
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- Report a refresh that failed as a whole (a lock held past its timeout, an unexpected error).
CREATE OR REPLACE FUNCTION qbo_sync.token_refresh_failed(organization_id uuid, error_state text, error_message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'qbo-sync: refreshing the tokens of organization % failed: % (SQLSTATE %)',
                  organization_id, error_message, error_state;
END
$$;

-- pg_cron 'qbo-check-token-expiry'. No SET search_path (it commits): qualified calls only, as in
-- qbo_sync.worker.
CREATE OR REPLACE PROCEDURE qbo_sync.refresh_expiring_tokens()
LANGUAGE plpgsql
AS $$
DECLARE
    organization pg_catalog.uuid;
BEGIN
    FOR organization IN SELECT t.o FROM qbo_sync.connections_to_refresh() AS t(o) LOOP
        BEGIN
            PERFORM qbo_sync.token_refresh(organization, qbo_sync.refresh_token_due(organization));
        EXCEPTION WHEN OTHERS THEN
            PERFORM qbo_sync.token_refresh_failed(organization, SQLSTATE, SQLERRM);
        END;
        COMMIT;
    END LOOP;
    PERFORM qbo_sync.record_token_warnings();
    COMMIT;
END
$$;

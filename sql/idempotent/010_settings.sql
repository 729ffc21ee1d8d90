-- Settings (not secrets) with their defaults, and the functions that read them.
-- Re-running keeps values an operator changed and refreshes the descriptions.

INSERT INTO qbo_sync.settings (key, value, description) VALUES
    ('queue.lease_seconds', '300', 'how long a claimed job is leased before it is reclaimed'),
    ('queue.backoff_base_seconds', '10', 'delay after the first failed attempt; doubles per attempt'),
    ('queue.backoff_max_seconds', '3600', 'longest delay between attempts'),
    ('queue.backoff_jitter', '0.25', 'random extra delay, as a fraction of the delay'),
    ('queue.default_max_attempts', '5', 'attempts before a job is marked failed'),
    ('queue.busy_retry_seconds', '2', 'delay when another backend is working the same organization'),
    ('worker.drain_seconds', '50', 'how long one qbo_sync_worker() call drains the queue'),
    ('worker.idle_sleep_seconds', '0.5', 'pause between polls when the queue is empty'),
    ('token.refresh_margin_seconds', '900', 'refresh access tokens that expire within this many seconds'),
    ('token.expiring_soon_seconds', '600', 'qbo_sync_status shows expiring_soon within this many seconds'),
    ('retention.webhook_log_days', '30', 'processed or rejected webhook log rows kept this long'),
    ('retention.webhook_processed_days', '30', 'webhook idempotency keys kept this long'),
    ('retention.sync_jobs_days', '7', 'completed and cancelled queue jobs kept this long'),
    ('retention.failed_jobs_days', '30', 'failed queue jobs kept this long'),
    ('retention.sync_history_days', '90', 'sync history kept this long')
ON CONFLICT (key) DO UPDATE SET description = EXCLUDED.description;

CREATE OR REPLACE FUNCTION qbo_sync.setting(setting_key text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_value text;
BEGIN
    SELECT s.value INTO found_value FROM qbo_sync.settings AS s WHERE s.key = setting_key;
    IF found_value IS NULL THEN
        RAISE EXCEPTION 'qbo-sync setting "%" does not exist', setting_key
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT key FROM qbo_sync.settings lists the settings';
    END IF;
    RETURN found_value;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.setting_numeric(setting_key text)
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbo_sync.setting(setting_key)::numeric $$;

-- The organization an application session works for (row-level security reads it).
CREATE OR REPLACE FUNCTION qbo_sync.current_organization_id()
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT nullif(current_setting('qbo_sync.organization_id', true), '')::uuid $$;

-- True while the sync itself writes application rows (pulled changes, push bookkeeping):
-- change tracking ignores those writes, so nothing echoes back to QBO.
CREATE OR REPLACE FUNCTION qbo_sync.applying_remote()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(current_setting('qbo_sync.applying_remote', true), '') = 'on' $$;

CREATE OR REPLACE FUNCTION qbo_sync.version()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT version FROM qbo_sync.installation $$;

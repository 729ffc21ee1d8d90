-- Settings (not secrets) with their defaults, and the functions that read them.
-- Re-running keeps values an operator changed and refreshes the descriptions.

INSERT INTO qbo_sync.settings (key, value, description) VALUES
    ('queue.lease_seconds', '300', 'how long a claimed job is leased before it is reclaimed'),
    ('queue.backoff_base_seconds', '10', 'delay after the first failed attempt; doubles per attempt'),
    ('queue.backoff_max_seconds', '3600', 'longest delay between attempts'),
    ('queue.backoff_jitter', '0.25', 'random extra delay, as a fraction of the delay'),
    ('queue.default_max_attempts', '5', 'attempts before a job is marked failed'),
    ('queue.aging_seconds', '120', 'a job due for longer than this is claimed before younger work of any priority (no organization starves another)'),
    ('queue.busy_retry_seconds', '2', 'delay when another backend is working the same organization'),
    ('queue.api_lock_timeout_ms', '2000', 'longest wait of trigger_qbo_sync for a concurrent enqueue of the same job (then it queues its own)'),
    ('worker.drain_seconds', '50', 'how long one qbo_sync_worker() call drains the queue'),
    ('worker.idle_sleep_seconds', '0.5', 'pause between polls when the queue is empty'),
    ('worker.lock_timeout_ms', '5000', 'longest lock wait inside a job before it fails and is retried'),
    ('worker.job_slice_seconds', '60', 'a job that has run this long hands itself back to the queue at its next consistent point (a pulled page), so other organizations'' jobs go between'),
    ('worker.webhook_lock_timeout_ms', '50', 'longest lock wait while turning one organization''s webhooks into work'),
    ('token.refresh_margin_seconds', '900', 'refresh access tokens that expire within this many seconds'),
    ('token.expiring_soon_seconds', '600', 'qbo_sync_status shows expiring_soon within this many seconds'),
    ('token.refresh_retry_seconds', '60', 'a job whose access token ran out while the token endpoint cannot refresh it waits this long (its attempt not counted)'),
    ('token.refresh_token_renew_days', '30', 'refresh a connection whose refresh token expires within this many days'),
    ('token.hard_expiry_warning_days', '30', 'warn this many days before a refresh token expires for good (reconnect)'),
    ('pacing.limits', '{}', 'QBO rate limits per realm and app, a JSON object for qbo_sync_db.pacing.Limits ({}: Intuit''s 500 requests/min, 10/s, 10 at once, 40 batches/min, 2 % headroom)'),
    ('pacing.max_wait_seconds', '30', 'longest a job waits for its realm''s budget; a longer wait (a 429 backoff) hands the job back to the queue as QB429'),
    ('pacing.lock_timeout_ms', '200', 'longest wait for the realm''s pacing row (held for a few microseconds per decision); then the decision is tried again'),
    ('pull.page_size', '1000', 'objects per query page of a full pull (QBO''s maximum is 1000)'),
    ('pull.page_overlap', '20', 'a full pull''s next page starts this many positions early, so an object that moved up a page (one before it was deleted) is not skipped'),
    ('pull.cdc_max_days', '29', 'incremental pulls (CDC) reach back this far; an older point means a full pull (QBO''s limit is 30 days)'),
    ('pull.cdc_max_objects', '1000', 'the most objects QBO puts in one CDC answer: an answer this full is followed by another, and a full pull next'),
    ('pull.cdc_overlap_seconds', '300', 'incremental pulls ask for changes since this long before the last one''s point, so changes at its edge are never missed'),
    ('retention.webhook_log_days', '30', 'processed or rejected webhook log rows kept this long'),
    ('retention.webhook_processed_days', '30', 'webhook idempotency keys kept this long'),
    ('retention.sync_jobs_days', '7', 'completed and cancelled queue jobs kept this long'),
    ('retention.failed_jobs_days', '30', 'failed queue jobs kept this long'),
    ('retention.sync_history_days', '90', 'sync history kept this long'),
    ('retention.oauth_state_days', '1', 'OAuth states kept this long after they expire')
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

-- The role a call really comes from. Inside a SECURITY DEFINER function current_user is the
-- owner; the session's role setting still names the role it SET ROLE to (or 'none').
CREATE OR REPLACE FUNCTION qbo_sync.calling_role()
RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
                  ELSE current_setting('role')::name END $$;

-- True when the calling role may act for every organization: the owner of qbo-sync's objects,
-- a member of it, or a superuser (pg_cron's jobs, operators, the installer).
CREATE OR REPLACE FUNCTION qbo_sync.caller_is_operator()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_has_role(qbo_sync.calling_role(), n.nspowner, 'USAGE')
        FROM pg_namespace AS n WHERE n.nspname = 'qbo_sync' $$;

-- The organization the session's login role is confined to (ALTER ROLE ... [IN DATABASE ...] SET
-- qbo_sync.organization_id: the database's setting, else the role's), NULL when none. The setting
-- itself is only a session default the session may change; may_act_for holds the login to it
-- (session_user: SET ROLE to a role it is a member of does not escape it), so SQL run with a
-- confined login (the status page's, docs/dashboard.md) acts for that organization only.
CREATE OR REPLACE FUNCTION qbo_sync.pinned_organization_id()
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT nullif(substr(c.setting, length('qbo_sync.organization_id=') + 1), '')::uuid
        FROM pg_catalog.pg_db_role_setting AS s
             CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
       WHERE s.setrole = (SELECT r.oid FROM pg_catalog.pg_roles AS r
                           WHERE r.rolname = session_user)
         AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database AS d
                                    WHERE d.datname = pg_catalog.current_database()))
         AND left(c.setting, length('qbo_sync.organization_id=')) = 'qbo_sync.organization_id='
       ORDER BY s.setdatabase DESC
       LIMIT 1 $$;

-- The SECURITY DEFINER entry points the application calls (trigger_qbo_sync, requeue, cancel)
-- act for an organization only when the session works for it: the same rule as the row-level
-- security policies (the setting qbo_sync.organization_id), or an operator.
CREATE OR REPLACE FUNCTION qbo_sync.may_act_for(organization_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbo_sync.caller_is_operator()
             OR (coalesce(organization_id = qbo_sync.current_organization_id(), false)
                 AND coalesce(organization_id = qbo_sync.pinned_organization_id(), true)) $$;

CREATE OR REPLACE FUNCTION qbo_sync.version()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT version FROM qbo_sync.installation $$;

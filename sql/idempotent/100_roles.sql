-- Roles, privileges and row-level security.
-- * qbo_sync_listener: may only insert webhooks (and, once installed, complete an OAuth redirect).
-- * qbo_sync_monitor: reads everything but token columns, across organizations.
-- * qbo_sync_app: the application; sees and changes only the rows of the organization named by
--   the setting qbo_sync.organization_id (SET qbo_sync.organization_id = '<uuid>').
-- The installing role owns every object (and so bypasses row-level security, as the pg_cron jobs
-- need). The roles are NOLOGIN: grant them to login roles.

-- (The roles themselves are created by 005_roles.sql, before any file grants to them.)

-- Nothing of ours is open to PUBLIC: functions default to EXECUTE for PUBLIC, and PL/Python ones
-- run with the server's operating-system rights.
REVOKE ALL ON SCHEMA qbo_sync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA qbo_sync FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbo_sync FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA qbo_sync FROM PUBLIC;
-- Each role gets exactly what is granted below (an upgrade takes back what an older version gave).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbo_sync FROM qbo_sync_listener, qbo_sync_monitor, qbo_sync_app;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA qbo_sync FROM qbo_sync_listener, qbo_sync_monitor, qbo_sync_app;
REVOKE ALL ON TABLE public.qbo_connection, public.qbo_oauth_state, public.qbo_sync_queue,
                    public.qbo_sync_history, public.qbo_webhook_log, public.qbo_webhook_processed,
                    public.qbo_sync_cursor, public.qbo_sync_conflict, public.qbo_sync_status,
                    public.qbo_sync_drift
    FROM PUBLIC;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc AS p
         WHERE p.pronamespace = 'public'::regnamespace
           AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')
    LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC',
                       CASE WHEN (SELECT prokind FROM pg_proc WHERE oid = f) = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f);
    END LOOP;
END
$$;

-- Listener
GRANT INSERT (body, payload, signature, signature_valid, content_type, remote_addr,
              payload_format, status, error)
    ON public.qbo_webhook_log TO qbo_sync_listener;

-- Monitor
GRANT USAGE ON SCHEMA qbo_sync TO qbo_sync_monitor;
GRANT EXECUTE ON FUNCTION qbo_sync.setting(text), qbo_sync.setting_numeric(text),
                          qbo_sync.version(),
                          qbo_sync.token_warning(boolean, timestamptz)  -- qbo_sync_status calls it
    TO qbo_sync_monitor;
GRANT SELECT ON qbo_sync.settings, qbo_sync.installation, qbo_sync.migration, qbo_sync.migrations,
                qbo_sync.entity, qbo_sync.error_code
    TO qbo_sync_monitor;
GRANT SELECT ON public.organizations, public.qbo_sync_queue, public.qbo_sync_history,
                public.qbo_webhook_log, public.qbo_webhook_processed, public.qbo_sync_cursor,
                public.qbo_sync_conflict, public.qbo_sync_status, public.qbo_sync_drift
    TO qbo_sync_monitor;
GRANT SELECT (organization_id, realm_id, environment, api_base_url, company_name,
              qbo_token_expires_at, qbo_refresh_token_expires_at, qbo_refresh_token_hard_expires_at,
              is_active, inactive_reason, connected_at, last_refreshed_at, last_refresh_error,
              refresh_failure_count, created_at, updated_at)
    ON public.qbo_connection TO qbo_sync_monitor, qbo_sync_app;
DO $$
BEGIN
    IF obj_description('public.migrations'::regclass, 'pg_class') = 'qbo-sync migrations' THEN
        GRANT SELECT ON public.migrations TO qbo_sync_monitor;
    END IF;
EXCEPTION WHEN undefined_table THEN
    NULL;
END
$$;

-- Application
GRANT USAGE ON SCHEMA qbo_sync TO qbo_sync_app;
-- What the change-tracking triggers (which run with the application's rights) and the status
-- view call. Queue work goes through the SECURITY DEFINER entry points below, never through
-- qbo_sync.enqueue or a direct write: the application has no INSERT, UPDATE or DELETE on the queue.
GRANT EXECUTE ON FUNCTION qbo_sync.setting(text), qbo_sync.setting_numeric(text),
                          qbo_sync.current_organization_id(),
                          qbo_sync.applying_remote(),
                          qbo_sync.fields_changed(jsonb, jsonb, text[]),
                          qbo_sync.version(),
                          qbo_sync.token_warning(boolean, timestamptz)
    TO qbo_sync_app;
GRANT SELECT ON qbo_sync.settings, qbo_sync.installation TO qbo_sync_app;  -- settings, version()
REVOKE ALL ON qbo_sync.local_deletion FROM qbo_sync_app;
GRANT EXECUTE ON FUNCTION public.trigger_qbo_sync(uuid, text, text, text),
                          public.qbo_sync_orchestrator(uuid, text, text[], text),
                          public.qbo_sync_requeue(uuid), public.qbo_sync_cancel(uuid),
                          public.qbo_oauth_initiate(uuid, text, text, text),
                          qbo_sync.disconnect(uuid, text)
    TO qbo_sync_app;
-- The listener completes the OAuth redirect it receives.
GRANT EXECUTE ON FUNCTION public.qbo_oauth_callback(text, text, text) TO qbo_sync_listener;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.organizations, public.customer_profile,
      public.item_record, public.invoice_record, public.invoice_line_item, public.invoice_payment
    TO qbo_sync_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.qbo_sync_queue
    FROM qbo_sync_app, qbo_sync_monitor, qbo_sync_listener;
GRANT SELECT ON public.qbo_sync_queue, public.qbo_sync_history, public.qbo_sync_status,
                public.qbo_sync_conflict, public.qbo_sync_drift
    TO qbo_sync_app;

-- Row-level security. On application tables only when qbo-sync created them: an application that
-- brought its own tables keeps its own security.
DO $$
DECLARE
    t text;
    org_column text;
BEGIN
    FOR t IN
        SELECT unnest(ARRAY['qbo_connection', 'qbo_oauth_state', 'qbo_sync_queue', 'qbo_sync_history',
                            'qbo_webhook_processed', 'qbo_sync_cursor', 'qbo_sync_conflict',
                            'qbo_sync_drift'])
        UNION ALL
        SELECT a.table_name FROM qbo_sync.app_table AS a WHERE a.created_by_qbo_sync
    LOOP
        org_column := CASE WHEN t = 'organizations' THEN 'id' ELSE 'organization_id' END;
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS qbo_app_own_organization ON public.%I', t);
        EXECUTE format('CREATE POLICY qbo_app_own_organization ON public.%I TO qbo_sync_app '
                       'USING (%I = qbo_sync.current_organization_id()) '
                       'WITH CHECK (%I = qbo_sync.current_organization_id())', t, org_column, org_column);
        EXECUTE format('DROP POLICY IF EXISTS qbo_monitor_reads_all ON public.%I', t);
        EXECUTE format('CREATE POLICY qbo_monitor_reads_all ON public.%I FOR SELECT TO qbo_sync_monitor '
                       'USING (true)', t);
    END LOOP;
END
$$;

ALTER TABLE public.qbo_webhook_log ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS qbo_listener_inserts ON public.qbo_webhook_log;
CREATE POLICY qbo_listener_inserts ON public.qbo_webhook_log FOR INSERT TO qbo_sync_listener
    WITH CHECK (status IN ('received', 'rejected'));
DROP POLICY IF EXISTS qbo_monitor_reads_all ON public.qbo_webhook_log;
CREATE POLICY qbo_monitor_reads_all ON public.qbo_webhook_log FOR SELECT TO qbo_sync_monitor USING (true);

-- SECURITY DEFINER functions read secrets on the owner's behalf, and the secrets file is named by
-- a setting any session could SET (or pass as a connection option): pin each such function to
-- the value the server is configured with when installing, so no caller chooses the file the
-- owner reads its secrets from (nor learns which files exist). Re-run qbo-sync install after
-- moving the secrets file.
DO $$
DECLARE
    configured text := coalesce(current_setting('qbo_sync.secrets_file', true), '');
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc AS p
         WHERE p.prosecdef
           AND (p.pronamespace = 'qbo_sync'::regnamespace
                OR (p.pronamespace = 'public'::regnamespace
                    AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET qbo_sync.secrets_file = %L', f, configured);
    END LOOP;
END
$$;

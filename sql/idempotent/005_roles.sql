-- The roles qbo-sync grants to, created first, so that any later file may grant to them (what each
-- role may do is in 100_roles.sql and next to the entry points it may call).
-- * qbo_sync_listener: may only insert webhooks (and complete an OAuth redirect).
-- * qbo_sync_monitor: reads everything but token columns, across organizations.
-- * qbo_sync_app: the application, confined to its organization's rows.
-- * qbo_sync_dashboard: the status page's actions, through the SQL API only (120_dashboard.sql).
-- NOLOGIN: grant them to login roles.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app',
                             'qbo_sync_dashboard'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

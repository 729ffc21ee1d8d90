-- The status page's actions (`qbo-sync dashboard`, docs/dashboard.md). Its pages read through
-- qbo_sync_monitor; what it changes goes through the role qbo_sync_dashboard (created by
-- 005_roles.sql, NOLOGIN: grant it to the dashboard's login role), which may call exactly the
-- SQL API entry points below and read or write nothing else. Each entry point checks the
-- caller's right to the organization (qbo_sync.may_act_for): the dashboard names the
-- organization of each action in its transaction (SET LOCAL qbo_sync.organization_id), unless
-- its login role is confined to one organization (ALTER ROLE ... SET qbo_sync.organization_id),
-- and then it acts for that one only.
-- Runs after 100_roles.sql, which revokes from the three other roles only: an upgrade takes back
-- here what an older version gave this one.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbo_sync FROM qbo_sync_dashboard;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA qbo_sync FROM qbo_sync_dashboard;
REVOKE ALL ON ALL TABLES IN SCHEMA qbo_sync FROM qbo_sync_dashboard;
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
        EXECUTE format('REVOKE ALL ON %s %s FROM qbo_sync_dashboard',
                       CASE WHEN (SELECT prokind FROM pg_proc WHERE oid = f) = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f);
    END LOOP;
END
$$;

-- Sync (Pull, Push, Both), requeue and cancel a job, resolve a conflict, retry or skip a record,
-- connect (the authorization URL the person opens) and disconnect.
GRANT EXECUTE ON FUNCTION public.trigger_qbo_sync(uuid, text, text, text),
                          public.qbo_sync_requeue(uuid),
                          public.qbo_sync_cancel(uuid),
                          public.qbo_sync_resolve_conflict(uuid, text, jsonb),
                          public.qbo_sync_retry_record(text, uuid),
                          public.qbo_sync_skip_record(text, uuid, text),
                          public.qbo_oauth_initiate(uuid, text, text, text)
    TO qbo_sync_dashboard;
-- Disconnecting lives in schema qbo_sync (as for the application, 100_roles.sql): usage of the
-- schema and that one function, nothing else in it.
GRANT USAGE ON SCHEMA qbo_sync TO qbo_sync_dashboard;
GRANT EXECUTE ON FUNCTION qbo_sync.disconnect(uuid, text) TO qbo_sync_dashboard;

-- Cleanup functions for the daily pg_cron jobs; retention comes from qbo_sync.settings.
-- Each returns the number of rows removed. They live in qbo_sync (pg_cron's owner calls them, so
-- they are not in a schema other roles may create in), check that the tables they delete from
-- are still qbo-sync's (qbo_sync.lock_own_relations), and wait for a lock at most 5 s.

DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_logs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_processed();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_jobs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_history();

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_logs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    DELETE FROM public.qbo_webhook_log
     WHERE status <> 'received'   -- never drop a webhook that was not turned into work
       AND received_at < now() - make_interval(
               days => qbo_sync.setting_numeric('retention.webhook_log_days')::integer);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_processed()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    DELETE FROM public.qbo_webhook_processed
     WHERE processed_at < now() - make_interval(
               days => qbo_sync.setting_numeric('retention.webhook_processed_days')::integer);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- Finished queue jobs, plus expired or consumed OAuth states (not counted).
CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    DELETE FROM public.qbo_sync_queue
     WHERE (status IN ('completed', 'cancelled')
            AND completed_at < now() - make_interval(
                    days => qbo_sync.setting_numeric('retention.sync_jobs_days')::integer))
        OR (status = 'failed'
            AND completed_at < now() - make_interval(
                    days => qbo_sync.setting_numeric('retention.failed_jobs_days')::integer));
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM public.qbo_oauth_state WHERE expires_at < now() - interval '1 day';
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_history()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    DELETE FROM public.qbo_sync_history
     WHERE completed_at < now() - make_interval(
               days => qbo_sync.setting_numeric('retention.sync_history_days')::integer);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- Cleanup functions for the daily pg_cron jobs; retention comes from qbo_sync.settings.
-- Each returns the number of rows removed. They live in qbo_sync (pg_cron's owner calls them, so
-- they are not in a schema other roles may create in).

DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_logs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_processed();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_jobs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_history();

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_logs()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH removed AS (
        DELETE FROM public.qbo_webhook_log
         WHERE status <> 'received'   -- never drop a webhook that was not turned into work
           AND received_at < now() - make_interval(
                   days => qbo_sync.setting_numeric('retention.webhook_log_days')::integer)
        RETURNING 1)
    SELECT count(*)::integer FROM removed
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_processed()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH removed AS (
        DELETE FROM public.qbo_webhook_processed
         WHERE processed_at < now() - make_interval(
                   days => qbo_sync.setting_numeric('retention.webhook_processed_days')::integer)
        RETURNING 1)
    SELECT count(*)::integer FROM removed
$$;

-- Finished queue jobs, plus expired or consumed OAuth states.
CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_jobs()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH removed AS (
        DELETE FROM public.qbo_sync_queue
         WHERE (status IN ('completed', 'cancelled')
                AND completed_at < now() - make_interval(
                        days => qbo_sync.setting_numeric('retention.sync_jobs_days')::integer))
            OR (status = 'failed'
                AND completed_at < now() - make_interval(
                        days => qbo_sync.setting_numeric('retention.failed_jobs_days')::integer))
        RETURNING 1
    ), states AS (
        DELETE FROM public.qbo_oauth_state
         WHERE expires_at < now() - interval '1 day'
        RETURNING 1)
    SELECT (SELECT count(*) FROM removed)::integer
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_history()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH removed AS (
        DELETE FROM public.qbo_sync_history
         WHERE completed_at < now() - make_interval(
                   days => qbo_sync.setting_numeric('retention.sync_history_days')::integer)
        RETURNING 1)
    SELECT count(*)::integer FROM removed
$$;

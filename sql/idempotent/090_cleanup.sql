-- Cleanup functions for the daily pg_cron jobs; retention comes from qbo_sync.settings.
-- Each returns the number of rows removed. They live in qbo_sync (pg_cron's owner calls them, so
-- they are not in a schema other roles may create in), check that the tables they delete from
-- are still qbo-sync's (qbo_sync.lock_own_relations), and wait for a lock at most 5 s.

DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_logs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_webhook_processed();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_jobs();
DROP FUNCTION IF EXISTS public.qbo_cleanup_sync_history();

-- Delete the rows of qbo-sync's table `relation` whose `age_column` is older than the retention
-- setting (days), except those matching `keep` (an SQL condition on the row `t`, written in this
-- file, never taken from a caller).
CREATE OR REPLACE FUNCTION qbo_sync.delete_expired(
    relation text, age_column text, retention_setting text, keep text DEFAULT 'false'
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    EXECUTE format('DELETE FROM public.%I AS t WHERE t.%I < now() - make_interval(days => $1) AND NOT (%s)',
                   relation, age_column, keep)
      USING qbo_sync.setting_numeric(retention_setting)::integer;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_logs()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$  -- never drop a webhook that was not turned into work
    SELECT qbo_sync.delete_expired('qbo_webhook_log', 'received_at', 'retention.webhook_log_days',
                                   $k$t.status = 'received'$k$)
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_webhook_processed()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbo_sync.delete_expired('qbo_webhook_processed', 'processed_at', 'retention.webhook_processed_days')
$$;

-- Finished queue jobs (failed ones are kept longer), plus expired OAuth states (not counted).
CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbo_sync.delete_expired('qbo_oauth_state', 'expires_at', 'retention.oauth_state_days');
    RETURN qbo_sync.delete_expired('qbo_sync_queue', 'completed_at', 'retention.sync_jobs_days',
                                   $k$t.status NOT IN ('completed', 'cancelled')$k$)
         + qbo_sync.delete_expired('qbo_sync_queue', 'completed_at', 'retention.failed_jobs_days',
                                   $k$t.status <> 'failed'$k$);
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.cleanup_sync_history()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbo_sync.delete_expired('qbo_sync_history', 'completed_at', 'retention.sync_history_days')
$$;

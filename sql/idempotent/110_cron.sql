-- The nine pg_cron jobs of the deployment guide, the daily drift audit and the extra workers,
-- calling SQL directly: functions of the qbo_sync
-- schema, by qualified name, so that nothing pg_cron runs as the owner resolves through a schema
-- another role can create in. cron.schedule() updates a
-- job of the same name, so re-running re-schedules in place. pg_cron lives in one database per
-- cluster (cron.database_name); in any other database the jobs are not scheduled (the installer
-- reports it) and qbo_cron_job_runs is not created.

-- Several workers: worker.processes queue processors run at once, each a pg_cron job calling
-- CALL qbo_sync.worker() every minute: 'process-qbo-sync-queue' and, beyond the first,
-- 'process-qbo-sync-queue-2' ... '-N'. The claim leaves an organization whose job another worker
-- holds to it, so each worker takes a different organization (and the organization lease keeps
-- one job per organization whatever happens). Each realm's calls stay within QBO's limits, as
-- they go through the realm's shared pacer.
INSERT INTO qbo_sync.settings (key, value, description) VALUES
    ('worker.processes', '1', 'how many queue processors pg_cron runs at once (process-qbo-sync-queue, -2 ... -N), each on a different organization; apply a change with SELECT qbo_sync.schedule_workers() (install does)')
ON CONFLICT (key) DO UPDATE SET description = EXCLUDED.description;

-- Schedule the extra workers of worker.processes (1 to 32) and unschedule those beyond it;
-- returns how many workers are scheduled. pg_cron must be in this database.
CREATE OR REPLACE FUNCTION qbo_sync.schedule_workers()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted integer := qbo_sync.setting_numeric('worker.processes')::integer;
    extra record;
BEGIN
    IF wanted IS NULL OR wanted < 1 OR wanted > 32 THEN
        RAISE EXCEPTION 'worker.processes must be between 1 and 32, not %', wanted
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF to_regclass('cron.job') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'the workers run where cron.database_name points';
    END IF;
    FOR n IN 2..wanted LOOP
        PERFORM cron.schedule(format('process-qbo-sync-queue-%s', n), '* * * * *', 'CALL qbo_sync.worker()');
    END LOOP;
    FOR extra IN SELECT j.jobname FROM cron.job AS j
                  WHERE j.jobname ~ '^process-qbo-sync-queue-[0-9]+$'
                    AND substring(j.jobname FROM '[0-9]+$')::integer NOT BETWEEN 2 AND wanted LOOP
        PERFORM cron.unschedule(extra.jobname);
    END LOOP;
    RETURN wanted;
END
$$;
REVOKE ALL ON FUNCTION qbo_sync.schedule_workers() FROM PUBLIC;

DO $$
BEGIN
    IF current_setting('cron.database_name', true) IS DISTINCT FROM current_database() THEN
        RAISE NOTICE 'qbo-sync: pg_cron is not available in database % (cron.database_name is %): jobs not scheduled',
                     current_database(), coalesce(current_setting('cron.database_name', true), 'unset');
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS pg_cron SCHEMA pg_catalog;

    PERFORM cron.schedule('process-qbo-sync-queue', '* * * * *', 'CALL qbo_sync.worker()');
    PERFORM cron.schedule('qbo-check-token-expiry', '*/5 * * * *', 'CALL qbo_sync.refresh_expiring_tokens()');
    PERFORM cron.schedule('qbo-push-local-changes', '*/30 * * * *', 'SELECT qbo_sync.push_local_changes()');
    PERFORM cron.schedule('qbo-sync-invoices-payments', '0 * * * *',
                          $c$SELECT qbo_sync.schedule_sync(ARRAY['invoices', 'payments'], 'both')$c$);
    PERFORM cron.schedule('qbo-sync-items-customers-pull', '0 */6 * * *',
                          $c$SELECT qbo_sync.schedule_sync(ARRAY['items', 'customers'], 'pull')$c$);
    PERFORM cron.schedule('cleanup-old-webhook-logs', '0 2 * * *', 'SELECT qbo_sync.cleanup_webhook_logs()');
    PERFORM cron.schedule('cleanup-old-webhook-processed', '5 2 * * *', 'SELECT qbo_sync.cleanup_webhook_processed()');
    PERFORM cron.schedule('cleanup-old-sync-jobs', '10 2 * * *', 'SELECT qbo_sync.cleanup_sync_jobs()');
    PERFORM cron.schedule('cleanup-old-sync-history', '15 2 * * *', 'SELECT qbo_sync.cleanup_sync_history()');
    PERFORM cron.schedule('qbo-drift-audit', '30 3 * * *', 'SELECT qbo_sync.drift_audit_all()');
    PERFORM qbo_sync.schedule_workers();

    -- The guide's troubleshooting query filters cron.job_run_details by jobname, a column pg_cron
    -- 1.4 lacks (it has jobid); this view answers the same question.
    CREATE OR REPLACE VIEW public.qbo_cron_job_runs AS
    SELECT j.jobname, d.jobid, d.runid, d.status, d.return_message, d.start_time, d.end_time,
           d.command, d.database, d.username
      FROM cron.job_run_details AS d
      JOIN cron.job AS j ON j.jobid = d.jobid
     WHERE j.jobname IN ('process-qbo-sync-queue', 'qbo-check-token-expiry', 'qbo-push-local-changes',
                         'qbo-sync-invoices-payments', 'qbo-sync-items-customers-pull',
                         'cleanup-old-webhook-logs', 'cleanup-old-webhook-processed',
                         'cleanup-old-sync-jobs', 'cleanup-old-sync-history', 'qbo-drift-audit')
        OR j.jobname ~ '^process-qbo-sync-queue-[0-9]+$';
    REVOKE ALL ON public.qbo_cron_job_runs FROM PUBLIC;
    GRANT SELECT ON public.qbo_cron_job_runs TO qbo_sync_monitor;
END
$$;

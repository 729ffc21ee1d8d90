-- The nine pg_cron jobs of the deployment guide, calling SQL directly: functions of the qbo_sync
-- schema, by qualified name, so that nothing pg_cron runs as the owner resolves through a schema
-- another role can create in. cron.schedule() updates a
-- job of the same name, so re-running re-schedules in place. pg_cron lives in one database per
-- cluster (cron.database_name); in any other database the jobs are not scheduled (the installer
-- reports it) and qbo_cron_job_runs is not created.

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
                         'cleanup-old-sync-jobs', 'cleanup-old-sync-history');
    REVOKE ALL ON public.qbo_cron_job_runs FROM PUBLIC;
    GRANT SELECT ON public.qbo_cron_job_runs TO qbo_sync_monitor;
END
$$;

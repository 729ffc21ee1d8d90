-- The queue processor. pg_cron starts `CALL qbo_sync_worker()` every minute (its finest
-- schedule); each call drains the queue for worker.drain_seconds, committing after every job and
-- pausing briefly when idle, so that work waits about a second, not a minute.

-- Run one claimed job: call its handler public.qbo_sync_<endpoint>(organization_id, direction,
-- entity_ids) and return the handler's summary.
CREATE OR REPLACE FUNCTION qbo_sync.run_job(job public.qbo_sync_queue)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    handler text := 'qbo_sync_' || job.sync_endpoint;
    summary jsonb;
BEGIN
    IF to_regprocedure(format('public.%I(uuid,text,text[])', handler)) IS NULL THEN
        RAISE EXCEPTION 'no handler for sync_endpoint "%": public.%(uuid, text, text[]) is not installed',
                        job.sync_endpoint, handler
            USING ERRCODE = 'undefined_function';
    END IF;
    EXECUTE format('SELECT public.%I($1, $2, $3)', handler)
       INTO summary
      USING job.organization_id, job.direction, job.entity_ids;
    RETURN coalesce(summary, '{}');
END
$$;

-- Whether an error may go away on its own (retry) or will not (fail now): decided by SQLSTATE
-- class. Data errors, constraint violations and programming errors do not fix themselves.
CREATE OR REPLACE FUNCTION qbo_sync.error_is_retryable(sqlstate text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT left(sqlstate, 2) NOT IN ('22', '23', '42', '44') $$;

CREATE OR REPLACE FUNCTION qbo_sync.record_history(
    job public.qbo_sync_queue, outcome text, summary jsonb, error_message text
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.qbo_sync_history
        (organization_id, queue_job_id, sync_type, direction, entity_types, status,
         entity_count, success_count, failure_count, started_at, completed_at, error_summary, summary)
    VALUES
        (job.organization_id, job.id, job.source, job.direction, ARRAY[job.sync_endpoint],
         CASE WHEN outcome = 'failed' THEN 'failed'
              WHEN coalesce((summary ->> 'failure_count')::integer, 0) > 0 THEN 'partial'
              ELSE 'completed' END,
         coalesce((summary ->> 'entity_count')::integer, 0),
         coalesce((summary ->> 'success_count')::integer, 0),
         coalesce((summary ->> 'failure_count')::integer, 0),
         coalesce(job.started_at, now()), clock_timestamp(), error_message, coalesce(summary, '{}'))
$$;

-- Process claimed jobs until the queue is empty or `max_seconds` (default worker.drain_seconds)
-- have passed; `max_jobs` stops earlier. One organization is worked by one backend at a time.
CREATE OR REPLACE PROCEDURE public.qbo_sync_worker(
    max_seconds numeric DEFAULT NULL,
    max_jobs integer DEFAULT NULL,
    stop_when_idle boolean DEFAULT false
)
LANGUAGE plpgsql
-- No SET search_path here: a procedure with a SET clause may not COMMIT. Every name is qualified.
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => coalesce(
        max_seconds, qbo_sync.setting_numeric('worker.drain_seconds'))::double precision);
    idle_sleep double precision := qbo_sync.setting_numeric('worker.idle_sleep_seconds');
    job public.qbo_sync_queue;
    summary jsonb;
    error_message text;
    error_state text;
    new_status text;
    done integer := 0;
BEGIN
    LOOP
        EXIT WHEN clock_timestamp() >= deadline OR (max_jobs IS NOT NULL AND done >= max_jobs);
        PERFORM qbo_sync.reclaim_expired();
        PERFORM public.qbo_process_webhooks(500);
        job := NULL;
        SELECT * INTO job FROM qbo_sync.claim(1, 'qbo_sync_worker pid ' || pg_backend_pid());
        COMMIT;
        IF job.id IS NULL THEN
            EXIT WHEN stop_when_idle;
            PERFORM pg_sleep(least(idle_sleep, greatest(extract(epoch FROM deadline - clock_timestamp()), 0)));
            CONTINUE;
        END IF;

        IF NOT pg_try_advisory_xact_lock(hashtextextended('qbo_sync.organization/' || job.organization_id, 0)) THEN
            PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('queue.busy_retry_seconds'));
            COMMIT;
            CONTINUE;
        END IF;

        BEGIN
            summary := qbo_sync.run_job(job);
            PERFORM qbo_sync.complete(job.id, job.lease_id, summary);
            PERFORM qbo_sync.record_history(job, 'completed', summary, NULL);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error_message = MESSAGE_TEXT, error_state = RETURNED_SQLSTATE;
            new_status := qbo_sync.fail(job.id, job.lease_id, format('%s (SQLSTATE %s)', error_message, error_state),
                                        qbo_sync.error_is_retryable(error_state));
            PERFORM qbo_sync.record_history(job, 'failed', NULL,
                                            format('%s (SQLSTATE %s); job is now %s', error_message, error_state, new_status));
        END;
        COMMIT;
        done := done + 1;
    END LOOP;
END
$$;

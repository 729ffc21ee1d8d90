-- A running job's progress on its queue row (public.qbo_sync_queue.progress, migration 007):
-- qbo_sync_db.progress publishes it after each page a pull applies and each request a push
-- answers, in that page's or request's transaction (one UPDATE of one row, no commit of its own:
-- it is committed with the work it counts and rolled back with it). Only the run holding the
-- job's lease writes it. Readers go through the queue's own privileges and row-level security
-- (the application sees its organization's jobs only, the monitor all).
CREATE OR REPLACE FUNCTION qbo_sync.publish_progress(job_id uuid, lease_id uuid, progress jsonb)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.qbo_sync_queue AS q
       SET progress = publish_progress.progress
                      || jsonb_build_object('at', date_trunc('milliseconds', clock_timestamp()))
     WHERE q.id = publish_progress.job_id AND q.lease_id = publish_progress.lease_id
       AND q.status = 'processing'
    RETURNING true
$$;
COMMENT ON FUNCTION qbo_sync.publish_progress(uuid, uuid, jsonb) IS
    'Store the running counts of the job run holding lease `lease_id` (false: the lease is gone)';

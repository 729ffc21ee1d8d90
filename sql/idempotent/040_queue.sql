-- The sync queue: enqueue (folding identical pending jobs), claim with FOR UPDATE SKIP LOCKED and
-- a lease, complete, fail with exponential backoff and jitter, reclaim expired leases, requeue.
-- A job is done under a lease_id handed out at claim: a worker whose lease was reclaimed can no
-- longer complete or fail the job, and extend_lease() keeps a long job's lease alive.
-- Only these functions write the queue: no other role has INSERT, UPDATE or DELETE on it. No
-- function here waits unboundedly for a lock another session holds: candidates are taken with
-- SKIP LOCKED, enqueue only tries its lock (or waits a bounded time), and the functions the
-- application calls run under lock_timeout.

-- Before 0.2 enqueue and fail had fewer parameters; before 0.3 release had no reason.
DROP FUNCTION IF EXISTS qbo_sync.release(uuid, uuid, numeric);
DROP FUNCTION IF EXISTS qbo_sync.enqueue(uuid, text, text, public.qbo_sync_priority, text[], text, jsonb);
DROP FUNCTION IF EXISTS qbo_sync.fail(uuid, uuid, text, boolean);

-- Queue a job, or fold it into an identical pending job that has not run yet (the ids merge,
-- the priority rises, the payloads merge; a drift audit or a refetch folds only into its kind). Enqueues of the same kind are serialized by an advisory lock, which this
-- function only tries (or, with wait_for_lock, waits for at most queue.api_lock_timeout_ms): when
-- another session holds it, the job is queued unfolded rather than waited for. A duplicate pending
-- job costs one idle sync; a wait here would let one session stall every caller.
CREATE OR REPLACE FUNCTION qbo_sync.enqueue(
    p_organization_id uuid,
    p_sync_endpoint text,
    p_direction text DEFAULT 'both',
    p_priority public.qbo_sync_priority DEFAULT 'normal',
    p_entity_ids text[] DEFAULT NULL,
    p_source text DEFAULT 'manual',
    p_payload jsonb DEFAULT '{}',
    wait_for_lock boolean DEFAULT false
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_id uuid;
    lock_key bigint := hashtextextended(
        'qbo_sync.enqueue/' || p_organization_id || '/' || p_sync_endpoint || '/' || p_direction, 0);
    locked boolean := pg_try_advisory_xact_lock(lock_key);
    saved_timeout text;
BEGIN
    IF NOT locked AND wait_for_lock THEN
        saved_timeout := current_setting('lock_timeout');
        BEGIN
            PERFORM set_config('lock_timeout',
                               qbo_sync.setting_numeric('queue.api_lock_timeout_ms')::bigint || 'ms', true);
            PERFORM pg_advisory_xact_lock(lock_key);
            locked := true;
        EXCEPTION WHEN lock_not_available THEN
            locked := false;
        END;
        PERFORM set_config('lock_timeout', saved_timeout, true);
    END IF;

    IF locked THEN
        UPDATE public.qbo_sync_queue AS q
           SET priority   = greatest(q.priority, p_priority),
               entity_ids = CASE WHEN q.entity_ids IS NULL OR p_entity_ids IS NULL THEN NULL
                                 ELSE ARRAY(SELECT DISTINCT x FROM unnest(q.entity_ids || p_entity_ids) AS x
                                            ORDER BY x) END,
               payload    = q.payload || coalesce(p_payload, '{}'),
               run_at     = least(q.run_at, now()),
               updated_at = now()
         WHERE q.id = (SELECT f.id
                         FROM public.qbo_sync_queue AS f
                        WHERE f.organization_id = p_organization_id
                          AND f.sync_endpoint = p_sync_endpoint
                          AND f.direction = p_direction
                          AND f.status = 'pending'
                          AND f.attempts = 0
                          -- jobs of another kind (a drift audit, a refetch of given Ids) do
                          -- not fold into each other
                          AND (f.payload -> 'audit') IS NOT DISTINCT FROM (p_payload -> 'audit')
                          AND (f.payload -> 'refetch') IS NOT DISTINCT FROM (p_payload -> 'refetch')
                        ORDER BY f.created_at
                        LIMIT 1
                          FOR UPDATE SKIP LOCKED)
        RETURNING q.id INTO job_id;
    END IF;

    IF job_id IS NULL THEN
        INSERT INTO public.qbo_sync_queue
            (organization_id, sync_endpoint, direction, priority, entity_ids, source, payload,
             max_attempts)
        VALUES
            (p_organization_id, p_sync_endpoint, p_direction, p_priority,
             CASE WHEN p_entity_ids IS NULL THEN NULL
                  ELSE ARRAY(SELECT DISTINCT x FROM unnest(p_entity_ids) AS x ORDER BY x) END,
             p_source, coalesce(p_payload, '{}'),
             qbo_sync.setting_numeric('queue.default_max_attempts')::integer)
        RETURNING id INTO job_id;
    END IF;
    RETURN job_id;
END
$$;

-- The job ids of a JSON array (what is not a job id is left out).
CREATE OR REPLACE FUNCTION qbo_sync.job_ids(ids jsonb)
RETURNS uuid[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(x::uuid), '{}')
      FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(ids) = 'array' THEN ids ELSE '[]' END) AS x
     WHERE x ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
$$;

-- The claim is one statement. The candidates come from the claim index with FOR UPDATE SKIP
-- LOCKED and are handed to the UPDATE as an array of ids, found through the primary key: a join
-- to a CTE here is planned for an unknown LIMIT (10% of the table) and hashes the whole queue on
-- every call, so claims slow down as the backlog grows (bench/bench_queue.py measured 48 ms vs
-- 0.6 ms at 200,000 pending).
-- Whether a pending job may run now: a job the orchestrator queued after others (payload
-- "after": job ids) waits while one of them is pending or processing (dependency order), and an
-- organization another worker's job holds is left to it (with several workers each takes a
-- different organization).
CREATE OR REPLACE FUNCTION qbo_sync.job_may_run(payload jsonb, organization_id uuid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT (job_may_run.payload ? 'after' AND EXISTS (
                   SELECT FROM public.qbo_sync_queue AS b
                    WHERE b.id = ANY (qbo_sync.job_ids(job_may_run.payload -> 'after'))
                      AND b.status IN ('pending', 'processing')))
       AND NOT EXISTS (SELECT FROM qbo_sync.organization_lock AS l
                        WHERE l.organization_id = job_may_run.organization_id
                          AND l.lease_id IS NOT NULL AND l.held_until > now())
$$;

DROP FUNCTION IF EXISTS qbo_sync.claim(integer, text, numeric);
CREATE OR REPLACE FUNCTION qbo_sync.claim(
    max_jobs integer DEFAULT 1,
    worker text DEFAULT NULL,
    lease_seconds numeric DEFAULT NULL,
    passed_over uuid[] DEFAULT '{}'  -- organizations whose jobs are not wanted now
)
RETURNS SETOF public.qbo_sync_queue
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH aged AS (
        -- work due for longer than queue.aging_seconds goes first, oldest first, whatever its
        -- priority: no organization's urgent jobs keep another's scheduled work waiting forever
        SELECT j.id, j.run_at, j.created_at
          FROM public.qbo_sync_queue AS j
         WHERE j.status = 'pending'
           AND j.run_at <= now() - make_interval(
                   secs => qbo_sync.setting_numeric('queue.aging_seconds')::double precision)
           AND qbo_sync.job_may_run(j.payload, j.organization_id)
           AND j.organization_id <> ALL (passed_over)
         ORDER BY j.run_at, j.created_at
         LIMIT max_jobs
           FOR UPDATE SKIP LOCKED
    ), due AS (
        SELECT j.id
          FROM public.qbo_sync_queue AS j
         WHERE j.status = 'pending'
           AND j.run_at <= now()
           AND qbo_sync.job_may_run(j.payload, j.organization_id)
           AND j.organization_id <> ALL (passed_over)
           AND NOT EXISTS (SELECT FROM aged AS a WHERE a.id = j.id)
         ORDER BY j.priority DESC, j.run_at, j.created_at
         LIMIT greatest(max_jobs - (SELECT count(*) FROM aged), 0)
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
    UPDATE public.qbo_sync_queue AS q
       SET status       = 'processing',
           attempts     = q.attempts + 1,
           lease_id     = gen_random_uuid(),
           locked_by    = coalesce(worker, 'pid ' || pg_backend_pid()),
           locked_until = now() + make_interval(secs => coalesce(
                              lease_seconds, qbo_sync.setting_numeric('queue.lease_seconds'))::double precision),
           started_at   = now(),
           updated_at   = now()
     WHERE q.id IN (SELECT a.id FROM aged AS a UNION ALL SELECT d.id FROM due AS d)
    RETURNING q.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, run_at, created_at  -- the claim order, for batches
$$;

CREATE OR REPLACE FUNCTION qbo_sync.complete(job_id uuid, job_lease uuid, job_result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE public.qbo_sync_queue AS q
           SET status = 'completed', result = job_result, completed_at = now(), updated_at = now(),
               lease_id = NULL, locked_by = NULL, locked_until = NULL
         WHERE q.id = job_id AND q.lease_id = job_lease AND q.status = 'processing'
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM done)
$$;

-- The delay before attempt `attempts + 1`: base * 2^(attempts - 1), capped, plus jitter.
CREATE OR REPLACE FUNCTION qbo_sync.backoff_seconds(attempts integer)
RETURNS double precision
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d * (1 + random() * qbo_sync.setting_numeric('queue.backoff_jitter')::double precision)
      FROM (SELECT least(qbo_sync.setting_numeric('queue.backoff_max_seconds')::double precision,
                         qbo_sync.setting_numeric('queue.backoff_base_seconds')::double precision
                             * power(2, greatest(attempts, 1) - 1)) AS d) AS delay
$$;

-- Record a failed attempt. Returns the job's new status: pending (retried later) or failed; NULL
-- when the lease was lost (the job was reclaimed, requeued or cancelled meanwhile).
CREATE OR REPLACE FUNCTION qbo_sync.fail(
    job_id uuid, job_lease uuid, error_message text, retryable boolean DEFAULT true,
    error_code text DEFAULT NULL
)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.qbo_sync_queue AS q
       SET status       = CASE WHEN retryable AND q.attempts < q.max_attempts THEN 'pending' ELSE 'failed' END,
           run_at       = CASE WHEN retryable AND q.attempts < q.max_attempts
                               THEN now() + make_interval(secs => qbo_sync.backoff_seconds(q.attempts))
                               ELSE q.run_at END,
           completed_at = CASE WHEN retryable AND q.attempts < q.max_attempts THEN NULL ELSE now() END,
           last_error   = left(error_message, 4000),
           last_error_code = error_code,
           lease_id     = NULL, locked_by = NULL, locked_until = NULL,
           updated_at   = now()
     WHERE q.id = job_id AND q.lease_id = job_lease AND q.status = 'processing'
    RETURNING q.status
$$;

-- Keep a running job's lease for `lease_seconds` more (pgmq's set_vt): a long pull calls it as it
-- goes. Returns the new end of the lease, or NULL when the lease was already lost.
CREATE OR REPLACE FUNCTION qbo_sync.extend_lease(job_id uuid, job_lease uuid, lease_seconds numeric DEFAULT NULL)
RETURNS timestamptz
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH extended AS (
        UPDATE public.qbo_sync_queue AS q
           SET locked_until = greatest(q.locked_until, clock_timestamp() + make_interval(secs => coalesce(
                                  lease_seconds, qbo_sync.setting_numeric('queue.lease_seconds'))::double precision)),
               updated_at = now()
         WHERE q.id = job_id AND q.lease_id = job_lease AND q.status = 'processing'
        RETURNING q.organization_id, q.locked_until
    ), organization AS (
        -- the job's hold on its organization lasts as long as its lease
        UPDATE qbo_sync.organization_lock AS l
           SET held_until = e.locked_until
          FROM extended AS e
         WHERE l.organization_id = e.organization_id AND l.lease_id = extend_lease.job_lease
    )
    SELECT e.locked_until FROM extended AS e
$$;

-- Give a claimed job back without counting the attempt (its organization was busy), due again
-- after `delay_seconds`, or in its place in the queue when that is NULL. The organization its
-- lease held is free again.
CREATE OR REPLACE FUNCTION qbo_sync.release(
    job_id uuid, job_lease uuid, delay_seconds numeric DEFAULT 0, reason text DEFAULT NULL
)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH released AS (
        UPDATE public.qbo_sync_queue AS q
           SET status = 'pending', attempts = greatest(q.attempts - 1, 0),
               run_at = CASE WHEN delay_seconds IS NULL THEN q.run_at
                             ELSE now() + make_interval(secs => delay_seconds::double precision) END,
               last_error = coalesce(reason, q.last_error),
               lease_id = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
         WHERE q.id = job_id AND q.lease_id = job_lease AND q.status = 'processing'
        RETURNING q.organization_id
    ), organization AS (
        UPDATE qbo_sync.organization_lock AS l
           SET job_id = NULL, lease_id = NULL, held_until = NULL
          FROM released AS r
         WHERE l.organization_id = r.organization_id AND l.lease_id = release.job_lease
    )
    SELECT EXISTS (SELECT FROM released)
$$;

-- Jobs whose lease passed (their worker died or hung) become claimable again, or fail when
-- they have used all their attempts. Returns how many were reclaimed.
CREATE OR REPLACE FUNCTION qbo_sync.reclaim_expired()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        SELECT q.id
          FROM public.qbo_sync_queue AS q
         WHERE q.status = 'processing' AND q.locked_until < now()
           FOR UPDATE SKIP LOCKED
    ), reclaimed AS (
        UPDATE public.qbo_sync_queue AS q
           SET status       = CASE WHEN q.attempts < q.max_attempts THEN 'pending' ELSE 'failed' END,
               run_at       = now(),
               completed_at = CASE WHEN q.attempts < q.max_attempts THEN NULL ELSE now() END,
               last_error   = format('lease expired at %s while held by %s', q.locked_until, q.locked_by),
               lease_id = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
          FROM expired
         WHERE q.id = expired.id
        RETURNING 1
    )
    SELECT count(*)::integer FROM reclaimed
$$;

-- The job `job_id`, locked for a change by hand, when the calling session may see it (NULL
-- otherwise). The lock wait is bounded: a worker holds a job's row only while a long job extends
-- its lease, and then the caller is told so.
CREATE OR REPLACE FUNCTION qbo_sync.lock_job_for_caller(job_id uuid)
RETURNS public.qbo_sync_queue
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    job public.qbo_sync_queue;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    SELECT q.* INTO job FROM public.qbo_sync_queue AS q WHERE q.id = job_id;
    IF job.id IS NULL OR NOT qbo_sync.may_act_for(job.organization_id) THEN
        RETURN NULL;
    END IF;
    SELECT q.* INTO job FROM public.qbo_sync_queue AS q WHERE q.id = job_id FOR UPDATE;
    RETURN job;
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'queue job % is busy: another session holds it (a worker extending its lease)', job_id
        USING ERRCODE = 'lock_not_available',
              HINT = 'try again in a moment: the worker lets go when the job''s current step commits';
END
$$;

-- Put a job back in the queue by hand, whatever its state: a failed, cancelled or completed job
-- runs again from its first attempt; a pending one runs now; a processing one is taken back from
-- its worker (whose lease is revoked, so its outcome is recorded as a lost lease) and runs again.
-- SECURITY DEFINER: the application has no write access to the queue; it may requeue the jobs of
-- the organization its session works for.
CREATE OR REPLACE FUNCTION public.qbo_sync_requeue(job_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job public.qbo_sync_queue := qbo_sync.lock_job_for_caller(job_id);
BEGIN
    IF job.id IS NULL THEN
        RAISE EXCEPTION 'queue job % does not exist', job_id USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE public.qbo_sync_queue AS q
       SET status = 'pending',
           attempts = CASE WHEN job.status IN ('pending', 'processing') THEN q.attempts ELSE 0 END,
           run_at = now(), completed_at = NULL, result = NULL,
           last_error = CASE WHEN job.status = 'processing'
                             THEN format('requeued by %s while processing (lease of %s revoked)',
                                         qbo_sync.calling_role(), q.locked_by)
                             ELSE q.last_error END,
           lease_id = NULL, locked_by = NULL, locked_until = NULL,
           updated_at = now()
     WHERE q.id = job_id;
    RETURN job_id;
END
$$;

-- Cancel a pending or processing job (a processing one loses its lease; its worker records that).
-- Returns false when there is nothing to cancel: the job finished already, or is not this
-- session's to see.
CREATE OR REPLACE FUNCTION public.qbo_sync_cancel(job_id uuid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job public.qbo_sync_queue := qbo_sync.lock_job_for_caller(job_id);
BEGIN
    IF job.id IS NULL OR job.status NOT IN ('pending', 'processing') THEN
        RETURN false;
    END IF;
    UPDATE public.qbo_sync_queue AS q
       SET status = 'cancelled', completed_at = now(), updated_at = now(),
           last_error = CASE WHEN job.status = 'processing'
                             THEN format('cancelled by %s while processing (lease of %s revoked)',
                                         qbo_sync.calling_role(), q.locked_by)
                             ELSE q.last_error END,
           lease_id = NULL, locked_by = NULL, locked_until = NULL
     WHERE q.id = job_id;
    RETURN true;
END
$$;

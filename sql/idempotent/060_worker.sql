-- The queue processor. pg_cron starts `CALL qbo_sync.worker()` every minute (its finest
-- schedule); each call drains the queue for worker.drain_seconds, committing after every job and
-- pausing briefly when idle, so that work waits about a second, not a minute.
--
-- Runs as the owner, so nothing it runs may resolve a name or an operator through a schema
-- another role can write. A procedure that COMMITs may not carry SET search_path, so the
-- procedure body holds no expression of its own: each step is a qualified call of a function
-- with a pinned search_path, and the loop state is a jsonb value only those functions read.
--
-- No lock wait in here is unbounded: jobs and webhooks are taken with SKIP LOCKED, the
-- organization lock is tried (a busy organization's job is given back, never waited for), and
-- each step runs under worker.lock_timeout_ms.

-- Before 0.2 the worker found handlers as public.qbo_sync_<entity>() (a schema other roles may
-- create in) and the procedure held its own loop.
DROP FUNCTION IF EXISTS qbo_sync.run_job(public.qbo_sync_queue);
DROP FUNCTION IF EXISTS qbo_sync.record_history(public.qbo_sync_queue, text, jsonb, text);

-- Run one claimed job: its handler is qbo_sync.sync_<entity>(job), a fixed name in the
-- installer's schema, called only when the owner of that schema owns it.
-- The SQL handler of an entity: qbo_sync.sync_<entity>(job) when the owner of schema qbo_sync
-- owns it, else NULL.
CREATE OR REPLACE FUNCTION qbo_sync.sql_handler(entity text)
RETURNS regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.oid::regprocedure
      FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
     WHERE p.oid = to_regprocedure(format('qbo_sync.%I(public.qbo_sync_queue)', 'sync_' || entity))
       AND p.proowner = n.nspowner
$$;

CREATE OR REPLACE FUNCTION qbo_sync.run_job(job public.qbo_sync_queue)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    handler regprocedure := qbo_sync.sql_handler(job.sync_endpoint);
    summary jsonb;
BEGIN
    IF handler IS NULL THEN
        RAISE EXCEPTION 'no handler for sync_endpoint "%": qbo_sync.%(qbo_sync_queue) is not installed',
                        job.sync_endpoint, 'sync_' || job.sync_endpoint
            USING ERRCODE = 'undefined_function';
    END IF;
    EXECUTE format('SELECT %s($1)', handler::oid::regproc) INTO summary USING job;
    RETURN coalesce(summary, '{}');
END
$$;

-- The project's own SQLSTATEs; plpython/qbo_sync_db/errors.py raises them (a test keeps the two
-- in agreement).
INSERT INTO qbo_sync.error_code AS c (sqlstate, name, retryable, description) VALUES
    ('QB429', 'qbo_throttled', true, 'QBO answered 429: a rate limit of the realm or app was reached'),
    ('QB500', 'qbo_server_error', true, 'QBO answered 5xx'),
    ('QB504', 'qbo_unreachable', true, 'QBO did not answer in time, or the connection failed'),
    ('QB400', 'qbo_request_rejected', false, 'QBO rejected the request (a validation or business fault)'),
    ('QB401', 'qbo_unauthorized', false, 'QBO refused the access token, also after one refresh'),
    ('QB403', 'qbo_forbidden', false, 'QBO refused access to the company or the operation'),
    ('QB410', 'qbo_reconnect_needed', false, 'the refresh token is no longer valid (invalid_grant): a person must reconnect'),
    ('QS001', 'installation_mismatch', false, 'the in-database code does not match the installed schema'),
    ('QS002', 'configuration_error', false, 'a secret or setting qbo-sync needs is missing or unreadable'),
    ('QS003', 'lease_lost', false, 'the job was reclaimed, requeued or cancelled while it ran; its worker stopped'),
    ('QS004', 'relations_replaced', false, 'a table qbo-sync''s owner works on is no longer qbo-sync''s (replaced in public)')
ON CONFLICT (sqlstate) DO UPDATE
   SET name = EXCLUDED.name, retryable = EXCLUDED.retryable, description = EXCLUDED.description;

-- Whether an error may go away on its own (retry later) or will not (fail now). An explicit
-- list: lost connections (08), serialization failures and deadlocks (40001, 40P01), lock and
-- statement timeouts (55P03, 57014), insufficient resources (53), and the codes of
-- qbo_sync.error_code marked retryable (QBO throttling, 5xx, timeouts). Everything else, bugs
-- (XX000, 38000) and data errors included, fails at once with the error kept.
CREATE OR REPLACE FUNCTION qbo_sync.error_is_retryable(sqlstate text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT left(sqlstate, 2) IN ('08', '53')
           OR sqlstate IN ('40001', '40P01', '55P03', '57014')
           OR coalesce((SELECT c.retryable FROM qbo_sync.error_code AS c WHERE c.sqlstate = error_is_retryable.sqlstate), false)
$$;

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
         CASE WHEN outcome IN ('failed', 'lease_lost', 'unconfirmed') THEN outcome
              WHEN coalesce((summary ->> 'failure_count')::integer, 0) > 0 THEN 'partial'
              ELSE 'completed' END,
         coalesce((summary ->> 'entity_count')::integer, 0),
         coalesce((summary ->> 'success_count')::integer, 0),
         coalesce((summary ->> 'failure_count')::integer, 0),
         coalesce(job.started_at, now()), clock_timestamp(), error_message, coalesce(summary, '{}'))
$$;

-- Why a job's lease is gone, for the history (reclaimed, requeued, cancelled or finished).
CREATE OR REPLACE FUNCTION qbo_sync.lost_lease_reason(job_id uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'lease lost: the job is now ' || coalesce(q.status, 'gone')
           || coalesce(' (' || q.last_error || ')', '')
      FROM (SELECT) AS one
      LEFT JOIN public.qbo_sync_queue AS q ON q.id = job_id
$$;

CREATE OR REPLACE FUNCTION qbo_sync.worker_begin(max_seconds numeric, max_jobs integer, stop_when_idle boolean)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'deadline', clock_timestamp() + make_interval(secs => coalesce(
                        max_seconds, qbo_sync.setting_numeric('worker.drain_seconds'))::double precision),
        'max_jobs', max_jobs,
        'stop_when_idle', coalesce(stop_when_idle, false),
        'done', 0,
        'job', NULL,
        'stop', false)
$$;

CREATE OR REPLACE FUNCTION qbo_sync.worker_should_stop(state jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (state ->> 'stop')::boolean $$;

-- A claimed job takes its organization: one job per organization at a time. The hold is a lease
-- (the job's own, kept by qbo_sync.extend_lease), not a row lock, since the job commits while it
-- runs; the row is locked only by this short transaction, with SKIP LOCKED, so a busy
-- organization is never waited for. False when another run holds it (another job, or an earlier
-- run of this one that was requeued or reclaimed and may still be working, until its lease
-- ends) or is taking it at this moment.
CREATE OR REPLACE FUNCTION qbo_sync.take_organization(job public.qbo_sync_queue)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder record;
BEGIN
    -- (inserting a row that exists would wait for a run that is updating it)
    IF NOT EXISTS (SELECT FROM qbo_sync.organization_lock AS l WHERE l.organization_id = job.organization_id) THEN
        INSERT INTO qbo_sync.organization_lock (organization_id) VALUES (job.organization_id)
        ON CONFLICT DO NOTHING;
    END IF;
    SELECT l.lease_id, l.held_until INTO holder
      FROM qbo_sync.organization_lock AS l
     WHERE l.organization_id = job.organization_id
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR (holder.lease_id IS DISTINCT FROM job.lease_id
                     AND holder.held_until > clock_timestamp()) THEN
        RETURN false;
    END IF;
    UPDATE qbo_sync.organization_lock AS l
       SET job_id = job.id, lease_id = job.lease_id,
           held_until = greatest(job.locked_until, clock_timestamp() + make_interval(
                            secs => qbo_sync.setting_numeric('queue.lease_seconds')::double precision))
     WHERE l.organization_id = job.organization_id;
    RETURN true;
END
$$;

-- The job's run gives its organization back (its hold ends; a hold that is no longer the job's
-- is left alone).
CREATE OR REPLACE FUNCTION qbo_sync.free_organization(job public.qbo_sync_queue)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbo_sync.organization_lock AS l
       SET job_id = NULL, lease_id = NULL, held_until = NULL
     WHERE l.organization_id = job.organization_id AND l.lease_id = job.lease_id
$$;

-- Step 1, its own transaction: give back expired leases, turn new webhooks into work, claim one
-- job. With nothing to do, pause (or stop, with stop_when_idle). Webhook processing cannot keep
-- jobs from being claimed: its failure is reported as a warning and the claim goes on.
CREATE OR REPLACE FUNCTION qbo_sync.worker_claim(state jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'  -- also while this body is first compiled; then worker.lock_timeout_ms
AS $$
DECLARE
    deadline timestamptz := (state ->> 'deadline')::timestamptz;
    job public.qbo_sync_queue;
    passed_over uuid[] := '{}';
BEGIN
    IF clock_timestamp() >= deadline
       OR (state ->> 'done')::integer >= (state ->> 'max_jobs')::integer THEN
        RETURN state || '{"stop": true, "job": null}';
    END IF;
    PERFORM set_config('lock_timeout', qbo_sync.setting_numeric('worker.lock_timeout_ms')::bigint || 'ms', true);
    PERFORM qbo_sync.lock_own_relations();
    PERFORM qbo_sync.reclaim_expired();
    BEGIN
        PERFORM qbo_sync.process_webhooks(500);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'qbo-sync: webhook processing failed, jobs are claimed anyway: % (SQLSTATE %)',
                      SQLERRM, SQLSTATE;
    END;
    -- The claim skips organizations another job holds; two claims at the same moment may still
    -- pick jobs of one organization, and the organization goes to whichever takes it first here,
    -- in the claim's own transaction. The other gives its job back in its place (it runs when
    -- the organization is free, still in order) and claims another organization's job.
    FOR attempt IN 1 .. 3 LOOP
        SELECT * INTO job
          FROM qbo_sync.claim(1, 'qbo_sync_worker pid ' || pg_backend_pid(), NULL, passed_over);
        EXIT WHEN job.id IS NULL;
        IF qbo_sync.take_organization(job) THEN
            RETURN state || jsonb_build_object('job', to_jsonb(job), 'failed_steps', 0);
        END IF;
        PERFORM qbo_sync.release(job.id, job.lease_id, NULL);
        passed_over := passed_over || job.organization_id;
    END LOOP;
    IF (state ->> 'stop_when_idle')::boolean THEN
        RETURN state || '{"stop": true, "job": null}';
    END IF;
    PERFORM pg_sleep(least(qbo_sync.setting_numeric('worker.idle_sleep_seconds')::double precision,
                           greatest(extract(epoch FROM deadline - clock_timestamp()), 0)));
    RETURN state || '{"job": null, "failed_steps": 0}';
END
$$;

-- Between the steps, its own transaction: refresh the job's tokens when they expire within
-- token.refresh_margin_seconds, and commit that before the job runs, so a job that then fails
-- can never roll back a rotated refresh token. A job whose connection is not active (or stops
-- being active here: invalid_grant) fails at once with the reason, never retried. A job whose
-- token has run out and cannot be refreshed now waits (token.refresh_retry_seconds), its attempt
-- not counted.
CREATE OR REPLACE FUNCTION qbo_sync.worker_prepare(state jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
    job public.qbo_sync_queue;
    connection record;
    refreshed jsonb;
    message text;
BEGIN
    IF state -> 'job' IS NULL OR jsonb_typeof(state -> 'job') = 'null' THEN
        RETURN state;
    END IF;
    PERFORM qbo_sync.lock_own_relations();
    job := jsonb_populate_record(NULL::public.qbo_sync_queue, state -> 'job');
    SELECT c.is_active, c.inactive_reason,
           c.qbo_token_expires_at IS NULL
           OR c.qbo_token_expires_at < now() + make_interval(
                  secs => qbo_sync.setting_numeric('token.refresh_margin_seconds')::double precision) AS due,
           coalesce(c.qbo_token_expires_at < now() + interval '60 seconds', true) AS unusable,
           c.last_refresh_error,
           c.last_refresh_error IS NOT NULL
           AND c.updated_at > now() - make_interval(
                  secs => qbo_sync.setting_numeric('token.refresh_retry_seconds')::double precision) AS failed_lately
      INTO connection
      FROM public.qbo_connection AS c
     WHERE c.organization_id = job.organization_id;
    IF connection.is_active AND connection.due AND connection.unusable AND connection.failed_lately THEN
        -- a refresh failed moments ago: wait, rather than have every job knock on a token
        -- endpoint that is down (each knock can take a minute of retries)
        PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('token.refresh_retry_seconds'),
                                 'waiting for the token endpoint: ' || connection.last_refresh_error
                                 || ' (moments ago; not tried again yet)');
        RETURN state || '{"job": null}';
    END IF;
    IF connection.is_active AND connection.due THEN
        BEGIN
            refreshed := qbo_sync.token_refresh(job.organization_id, false);
        EXCEPTION WHEN lock_not_available THEN
            -- another session is refreshing this connection (the token job, a slow endpoint)
            PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('queue.busy_retry_seconds'),
                                     'waiting: another session is refreshing the token');
            RETURN state || '{"job": null}';
        END;
        SELECT c.is_active, c.inactive_reason,
               coalesce(c.qbo_token_expires_at < now() + interval '60 seconds', true) AS unusable
          INTO connection
          FROM public.qbo_connection AS c WHERE c.organization_id = job.organization_id;
        -- The token cannot be used and could not be refreshed (the token endpoint is down or
        -- unreachable): the job waits for it without spending an attempt, so an outage of any
        -- length ends with the queued work done, not failed.
        IF connection.is_active AND connection.unusable AND refreshed ->> 'error' IS NOT NULL
           AND qbo_sync.error_is_retryable(coalesce(refreshed ->> 'sqlstate', 'XX000')) THEN
            PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('token.refresh_retry_seconds'),
                                     'waiting for the token endpoint: ' || (refreshed ->> 'error'));
            RETURN state || '{"job": null}';
        END IF;
    END IF;
    IF connection.is_active IS DISTINCT FROM true THEN
        message := format('the QuickBooks connection is not active: %s (SQLSTATE QB410)',
                          coalesce(connection.inactive_reason, 'the organization has no connection'));
        IF qbo_sync.fail(job.id, job.lease_id, message, false, 'QB410') IS NOT NULL THEN
            PERFORM qbo_sync.record_history(job, 'failed', NULL, message || '; not retryable, job is now failed');
        END IF;
        PERFORM qbo_sync.free_organization(job);
        RETURN state || '{"job": null}';
    END IF;
    RETURN state;
END
$$;

-- Step 2 runs the claimed job: qbo_sync.worker_run_job, a procedure (in Python: the job commits
-- as it goes, before every call to QBO, see plpython/qbo_sync_db/worker.py). Its SQL parts:
-- worker_start takes the organization, worker_finish records the outcome.
DROP FUNCTION IF EXISTS qbo_sync.worker_run(jsonb);

-- The claimed job of the loop's state, once the step's lock_timeout (worker.lock_timeout_ms) is
-- set and qbo-sync's tables in public are checked: the record is built only then.
CREATE OR REPLACE FUNCTION qbo_sync.worker_job(state jsonb)
RETURNS public.qbo_sync_queue
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('lock_timeout', qbo_sync.setting_numeric('worker.lock_timeout_ms')::bigint || 'ms', true);
    PERFORM qbo_sync.lock_own_relations();
    RETURN jsonb_populate_record(NULL::public.qbo_sync_queue, state -> 'job');
END
$$;

-- The run starts: the job still holds the organization its claim took (another run could only
-- have taken it had the job's lease run out meanwhile: the job is then given back), and the
-- handler is chosen.
CREATE OR REPLACE FUNCTION qbo_sync.worker_start(state jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    job public.qbo_sync_queue;
BEGIN
    IF state -> 'job' IS NULL OR jsonb_typeof(state -> 'job') = 'null' THEN
        RETURN state;
    END IF;
    job := qbo_sync.worker_job(state);
    -- (waits, briefly, for a claim that is looking at the row: it will leave it alone)
    UPDATE qbo_sync.organization_lock AS l
       SET held_until = greatest(l.held_until, job.locked_until)
     WHERE l.organization_id = job.organization_id AND l.lease_id = job.lease_id;
    IF NOT FOUND THEN
        PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('queue.busy_retry_seconds'));
        RETURN state || '{"job": null}';
    END IF;
    -- A SQL handler the owner installed (qbo_sync.sync_<entity>) runs instead of the built-in one
    RETURN state || jsonb_build_object(
        'handler', CASE WHEN qbo_sync.sql_handler(job.sync_endpoint) IS NULL
                        THEN (SELECT e.handler FROM qbo_sync.entity AS e WHERE e.entity = job.sync_endpoint)
                   END,
        'lock_timeout_ms', qbo_sync.setting_numeric('worker.lock_timeout_ms'));
END
$$;

-- Record a job's outcome truthfully, with its history, and give its organization back:
-- * completed (or partial) — the handler succeeded (error_state NULL) and the job is marked done;
-- * failed — the handler failed; retried later when the error is transient;
-- * lease_lost — the job was reclaimed, requeued or cancelled while it ran (its committed work is
--   kept: it records what QBO now holds);
-- * unconfirmed — another session held the job's queue row past the lock timeout, so the outcome
--   could not be written; the job runs again when its lease ends.
CREATE OR REPLACE FUNCTION qbo_sync.worker_finish(
    state jsonb, summary jsonb, error_state text, error_message text, intuit_tid text
)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    job public.qbo_sync_queue;
    recorded boolean;
    retryable boolean;
    new_status text;
    message text;
BEGIN
    job := qbo_sync.worker_job(state);
    IF error_state IS NULL THEN
        BEGIN
            IF coalesce(summary ->> 'continues', '') = 'true' THEN
                -- the job used its slice (worker.job_slice_seconds) and saved where it is: it
                -- goes back to the queue, behind the work already due, its attempt not counted
                recorded := qbo_sync.release(job.id, job.lease_id, 0, 'continues where it stopped');
            ELSE
                recorded := qbo_sync.complete(job.id, job.lease_id, summary);
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            recorded := NULL;
        END;
        IF recorded THEN
            PERFORM qbo_sync.record_history(job, 'completed', summary, NULL);
        ELSIF recorded IS NULL THEN
            PERFORM qbo_sync.record_history(job, 'unconfirmed', summary,
                'the job ran, but another session held its queue row: it runs again when its lease ends');
        ELSE
            PERFORM qbo_sync.record_history(job, 'lease_lost', summary, qbo_sync.lost_lease_reason(job.id));
        END IF;
    ELSE
        message := format('%s (SQLSTATE %s)', left(error_message, 3800), error_state);
        retryable := qbo_sync.error_is_retryable(error_state);
        BEGIN
            IF error_state = 'QB429' THEN
                -- QBO throttles the realm for longer than a job may wait: the job waits in the
                -- queue instead, its attempt not counted (a long 429 storm must not use up the
                -- attempts of work that will succeed once the storm ends)
                recorded := qbo_sync.release(job.id, job.lease_id,
                                             qbo_sync.setting_numeric('pacing.max_wait_seconds'),
                                             message);
                new_status := CASE WHEN recorded THEN 'pending (throttled: the attempt is not counted)' END;
            ELSE
                new_status := qbo_sync.fail(job.id, job.lease_id, message, retryable, error_state);
                recorded := true;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            recorded := false;
        END;
        IF NOT recorded THEN
            PERFORM qbo_sync.record_history(job, 'unconfirmed', summary,
                message || '; another session held the queue row: the job runs again when its lease ends');
        ELSIF new_status IS NULL THEN
            PERFORM qbo_sync.record_history(job, 'lease_lost', summary,
                                            message || '; ' || qbo_sync.lost_lease_reason(job.id));
        ELSE
            PERFORM qbo_sync.record_history(job, 'failed', summary,
                                            format('%s; %s, job is now %s', message,
                                                   CASE WHEN retryable THEN 'retryable' ELSE 'not retryable' END,
                                                   new_status));
        END IF;
        IF intuit_tid IS NOT NULL THEN
            UPDATE public.qbo_sync_history AS h SET intuit_tid = worker_finish.intuit_tid
             WHERE h.id = (SELECT h2.id FROM public.qbo_sync_history AS h2
                            WHERE h2.queue_job_id = job.id ORDER BY h2.completed_at DESC LIMIT 1);
        END IF;
    END IF;
    PERFORM qbo_sync.free_organization(job);
    RETURN jsonb_set(state - 'handler', '{done}', to_jsonb((state ->> 'done')::integer + 1))
           || '{"job": null, "failed_steps": 0}';
END
$$;

-- Runs the claimed job (see plpython/qbo_sync_db/worker.py): a procedure, so the job can commit
-- before each call to QBO; no SET clause (it commits), so it pins its own search_path and
-- lock_timeout in every transaction it starts. Errors are caught there, never escape.
CREATE OR REPLACE PROCEDURE qbo_sync.worker_run_job(INOUT state jsonb)
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
try:
    plpy.execute("SELECT qbo_sync.python_loader()")
    GD["qbo_sync_load"](plpy)
    from qbo_sync_db import worker
except Exception as exc:  # the package cannot be loaded (QS001): give the job back, say why
    failed = plpy.execute(plpy.prepare("SELECT qbo_sync.worker_abandon($1, $2, $3) AS state",
                                       ["jsonb", "text", "text"]),
                          [state, getattr(exc, "sqlstate", None) or "XX000", str(exc)])
    return (failed[0]["state"],)
return (worker.run(plpy, state),)
$$;

-- The run step failed outside the job's handler (the package could not be loaded, a bug in the
-- step itself): the job is given back with the reason, its attempt not counted, and the failed
-- step reported (three in a row stop the worker until pg_cron's next minute).
CREATE OR REPLACE FUNCTION qbo_sync.worker_abandon(state jsonb, error_state text, error_message text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    job public.qbo_sync_queue;
BEGIN
    IF state -> 'job' IS NOT NULL AND jsonb_typeof(state -> 'job') = 'object' THEN
        BEGIN
            PERFORM qbo_sync.lock_own_relations();
            job := jsonb_populate_record(NULL::public.qbo_sync_queue, state -> 'job');
            PERFORM qbo_sync.release(job.id, job.lease_id, qbo_sync.setting_numeric('queue.busy_retry_seconds'),
                                     format('the worker could not run the job: %s (SQLSTATE %s)',
                                            left(error_message, 3800), error_state));
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the job keeps its lease and comes back when it ends
        END;
    END IF;
    RETURN qbo_sync.worker_step_failed(state - 'handler' - 'lock_timeout_ms', 'run', error_state, error_message);
END
$$;

-- A step that failed as a whole (a lock held past its timeout, a replaced table): reported, and
-- the worker goes on after a pause; after three failed steps in a row it stops (pg_cron starts
-- it again within the minute). The job of a failed run step keeps its lease and comes back.
CREATE OR REPLACE FUNCTION qbo_sync.worker_step_failed(state jsonb, step text, error_state text, error_message text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failures integer := coalesce((state ->> 'failed_steps')::integer, 0) + 1;
BEGIN
    RAISE WARNING 'qbo-sync worker: the % step failed: % (SQLSTATE %)', step, error_message, error_state;
    IF failures >= 3 THEN
        RETURN state || jsonb_build_object('stop', true, 'failed_steps', failures, 'job', NULL);
    END IF;
    PERFORM pg_sleep(qbo_sync.setting_numeric('worker.idle_sleep_seconds')::double precision);
    RETURN state || jsonb_build_object('failed_steps', failures, 'job', NULL);
END
$$;

-- Before 0.3 the run step's success was noted by its own function.
DROP FUNCTION IF EXISTS qbo_sync.worker_step_succeeded(jsonb);

-- The loop. No expression of its own (see the top of this file): qualified calls only. A step
-- that fails is rolled back and reported, and the loop goes on with the next job.
CREATE OR REPLACE PROCEDURE qbo_sync.worker(
    max_seconds numeric DEFAULT NULL,
    max_jobs integer DEFAULT NULL,
    stop_when_idle boolean DEFAULT false
)
LANGUAGE plpgsql
AS $$
DECLARE
    state pg_catalog.jsonb := qbo_sync.worker_begin(max_seconds, max_jobs, stop_when_idle);
    -- The worker's commits do not wait for the disk: each one's loss in a crash is redone (a job
    -- runs again, a pull re-reads, a push finds its create in QBO) except two, which make their
    -- own transaction wait: a rotated token pair (qbo_sync_db.tokens) and a create's requestid
    -- (qbo_sync.prepare_creates). Fewer WAL flush waits lets more workers share the disk.
    saved_commit pg_catalog.text := pg_catalog.current_setting('synchronous_commit');
BEGIN
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', false);
    LOOP
        BEGIN
            state := qbo_sync.worker_claim(state);
        EXCEPTION WHEN OTHERS THEN
            state := qbo_sync.worker_step_failed(state, 'claim', SQLSTATE, SQLERRM);
        END;
        COMMIT;
        EXIT WHEN qbo_sync.worker_should_stop(state);
        BEGIN
            state := qbo_sync.worker_prepare(state);
        EXCEPTION WHEN OTHERS THEN
            state := qbo_sync.worker_step_failed(state, 'prepare', SQLSTATE, SQLERRM);
        END;
        COMMIT;
        -- no exception block here: the step commits inside, and catches its own errors
        CALL qbo_sync.worker_run_job(state);
        COMMIT;
        EXIT WHEN qbo_sync.worker_should_stop(state);
    END LOOP;
    PERFORM pg_catalog.set_config('synchronous_commit', saved_commit, false);
END
$$;

-- The guide's name for the queue processor.
CREATE OR REPLACE PROCEDURE public.qbo_sync_worker(
    max_seconds numeric DEFAULT NULL,
    max_jobs integer DEFAULT NULL,
    stop_when_idle boolean DEFAULT false
)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL qbo_sync.worker(max_seconds, max_jobs, stop_when_idle);
END
$$;

-- Pending pull jobs of `organization_id` for `entities`, queued before `requested_at`, that the
-- CDC request sent then already covered (job `by_job` brought those entities up to date): they
-- are completed now, with a history row saying so, rather than each claimed, run and finished
-- only to find nothing to do. Pulls only (a push half still has work), and not a refetch or an
-- audit (those read something else). Jobs another session holds are left alone. Returns how many.
CREATE OR REPLACE FUNCTION qbo_sync.complete_covered_pulls(
    organization_id uuid, entities text[], requested_at timestamptz, by_job uuid
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job public.qbo_sync_queue;
    done integer := 0;
    summary jsonb := jsonb_build_object('mode', 'up to date', 'covered_by', by_job,
                                        'entity_count', 0, 'success_count', 0);
BEGIN
    FOR job IN
        UPDATE public.qbo_sync_queue AS q
           SET status = 'completed', result = summary, completed_at = now(), updated_at = now(),
               started_at = coalesce(q.started_at, now())
         WHERE q.id IN (SELECT c.id FROM public.qbo_sync_queue AS c
                         WHERE c.organization_id = complete_covered_pulls.organization_id
                           AND c.status = 'pending' AND c.direction = 'pull'
                           AND c.sync_endpoint = ANY (entities)
                           AND c.created_at <= requested_at
                           AND c.id <> by_job
                           AND NOT (c.payload ? 'refetch' OR c.payload ? 'audit')
                           FOR UPDATE SKIP LOCKED)
        RETURNING q.*
    LOOP
        PERFORM qbo_sync.record_history(job, 'completed', summary, NULL);
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;

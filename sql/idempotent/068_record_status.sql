-- Per-record status: every synced row's state, joined to nothing but its own table, and the
-- functions that retry or skip one record.
--
-- * public.qbo_sync_record_status (security_invoker: the application sees its organization's
--   rows only, through the row-level security of the application tables): one row per row of
--   customer_profile, item_record, invoice_record and invoice_payment. `record_id` is the
--   business row's id (join on it). `state` is the row's qbo_sync_status (synced, pending, held,
--   error, conflict), or 'deleted' for a row QBO deleted (qbo_deleted_at).
-- * public.qbo_sync_record_counts: how many rows of each organization and entity are pending,
--   held, in error or in conflict. It reads the partial indexes of migration 007
--   (WHERE qbo_sync_status <> 'synced'), never the synced rows.
-- * public.qbo_sync_retry_record(entity, record_id): an error, held or conflict record (or a
--   pending one) goes back to pending, its attempts and error cleared, and a push of its
--   entity is queued. A record waiting on a held conflict (qbo_sync_conflict, status 'held') is
--   refused, for retry and skip alike: a person decides it with qbo_sync_resolve_conflict (every
--   pull would put it back on hold anyway).
-- * public.qbo_sync_skip_record(entity, record_id, reason): the record's pending change is not
--   sent. Exactly:
--     - a record QBO has (qbo_id set): the local change is given up. The row is marked synced at
--       its current version without sending anything, its stored SyncToken forgotten, and a
--       refetch of the QBO object is queued (a pull of that Id): the row takes QBO's values
--       back, so both sides agree again;
--     - a record QBO never had (a create QBO refused, or held): it stays local only. It is
--       marked 'error' with code 'skipped' and the reason, and is not pushed until the
--       application changes it again (change tracking then marks it pending, as for any error).
--   Either way the skip is written to qbo_sync_history (sync_type 'skip', with the record, its
--   former state and error, the reason and who skipped it). Retries are recorded there too.
-- Both functions are SECURITY DEFINER (the application may not write qbo-sync's columns or the
-- queue itself) and act only on a record of an organization the caller may act for.

CREATE OR REPLACE VIEW public.qbo_sync_record_status WITH (security_invoker = true) AS
SELECT r.organization_id, r.entity, r.record_id, r.qbo_id,
       CASE WHEN r.qbo_deleted_at IS NOT NULL THEN 'deleted' ELSE r.qbo_sync_status END AS state,
       r.qbo_sync_error_class AS error_class,
       r.qbo_sync_error_code AS error_code,
       r.qbo_sync_error AS error_message,
       r.qbo_intuit_tid AS intuit_tid,
       r.qbo_sync_attempts AS attempts,
       r.qbo_last_synced_at AS last_synced_at,
       r.qbo_local_version AS local_version,
       r.qbo_synced_version AS synced_version,
       (SELECT c.id
          FROM public.qbo_sync_conflict AS c
         WHERE c.organization_id = r.organization_id AND c.entity = r.entity
           AND c.local_id = r.record_id AND c.status = 'held'
         ORDER BY c.detected_at DESC
         LIMIT 1) AS conflict_id
  FROM (SELECT t.organization_id, 'customers'::text AS entity, t.id AS record_id, t.qbo_id,
               t.qbo_sync_status, t.qbo_deleted_at, t.qbo_sync_error_class, t.qbo_sync_error_code,
               t.qbo_sync_error, t.qbo_intuit_tid, t.qbo_sync_attempts, t.qbo_last_synced_at,
               t.qbo_local_version, t.qbo_synced_version
          FROM public.customer_profile AS t
        UNION ALL
        SELECT t.organization_id, 'items', t.id, t.qbo_id, t.qbo_sync_status, t.qbo_deleted_at,
               t.qbo_sync_error_class, t.qbo_sync_error_code, t.qbo_sync_error, t.qbo_intuit_tid,
               t.qbo_sync_attempts, t.qbo_last_synced_at, t.qbo_local_version, t.qbo_synced_version
          FROM public.item_record AS t
        UNION ALL
        SELECT t.organization_id, 'invoices', t.id, t.qbo_id, t.qbo_sync_status, t.qbo_deleted_at,
               t.qbo_sync_error_class, t.qbo_sync_error_code, t.qbo_sync_error, t.qbo_intuit_tid,
               t.qbo_sync_attempts, t.qbo_last_synced_at, t.qbo_local_version, t.qbo_synced_version
          FROM public.invoice_record AS t
        UNION ALL
        SELECT t.organization_id, 'payments', t.id, t.qbo_id, t.qbo_sync_status, t.qbo_deleted_at,
               t.qbo_sync_error_class, t.qbo_sync_error_code, t.qbo_sync_error, t.qbo_intuit_tid,
               t.qbo_sync_attempts, t.qbo_last_synced_at, t.qbo_local_version, t.qbo_synced_version
          FROM public.invoice_payment AS t) AS r;

COMMENT ON VIEW public.qbo_sync_record_status IS
    'Per synced row: its state (synced, pending, held, conflict, error, deleted), the last error''s '
    'class, QBO code, message and intuit_tid, attempts, last sync, versions and the open conflict; '
    'join record_id to the business row';

-- The counts of rows that are not synced, per organization, entity and state: each branch's
-- WHERE is the partial index's predicate, so they are counted from the index.
CREATE OR REPLACE VIEW public.qbo_sync_record_counts WITH (security_invoker = true) AS
SELECT t.organization_id, 'customers'::text AS entity, t.qbo_sync_status AS state, count(*) AS records
  FROM public.customer_profile AS t WHERE t.qbo_sync_status <> 'synced'
 GROUP BY t.organization_id, t.qbo_sync_status
UNION ALL
SELECT t.organization_id, 'items', t.qbo_sync_status, count(*)
  FROM public.item_record AS t WHERE t.qbo_sync_status <> 'synced'
 GROUP BY t.organization_id, t.qbo_sync_status
UNION ALL
SELECT t.organization_id, 'invoices', t.qbo_sync_status, count(*)
  FROM public.invoice_record AS t WHERE t.qbo_sync_status <> 'synced'
 GROUP BY t.organization_id, t.qbo_sync_status
UNION ALL
SELECT t.organization_id, 'payments', t.qbo_sync_status, count(*)
  FROM public.invoice_payment AS t WHERE t.qbo_sync_status <> 'synced'
 GROUP BY t.organization_id, t.qbo_sync_status;

COMMENT ON VIEW public.qbo_sync_record_counts IS
    'How many rows of each organization and entity are pending, held, in error or in conflict '
    '(read from the partial indexes on qbo_sync_status <> ''synced'')';

-- The record `record_id` of `entity`, locked, with what the retry and skip functions need; a
-- clear error when the arguments are bad or the record is not one the caller may act for (the
-- same answer as for a record that does not exist: another organization's ids are not revealed).
CREATE OR REPLACE FUNCTION qbo_sync.lock_record_for_caller(entity text, record_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target qbo_sync.entity;
    located jsonb;
BEGIN
    IF entity IS NULL OR NOT EXISTS (SELECT FROM qbo_sync.entity AS e WHERE e.entity = lock_record_for_caller.entity) THEN
        RAISE EXCEPTION 'unknown entity %', qbo_sync.quote_for_message(entity)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'entity must be one of: ' || array_to_string(qbo_sync.entity_names(), ', ');
    END IF;
    IF record_id IS NULL THEN
        RAISE EXCEPTION 'record_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    target := qbo_sync.entity_row(entity);
    PERFORM qbo_sync.lock_own_relations(ARRAY[target.app_table]);
    EXECUTE format(
        'SELECT jsonb_build_object(''organization_id'', t.organization_id, ''qbo_id'', t.qbo_id,
                                   ''status'', t.qbo_sync_status, ''error'', t.qbo_sync_error,
                                   ''error_class'', t.qbo_sync_error_class,
                                   ''error_code'', t.qbo_sync_error_code,
                                   ''deleted'', t.qbo_deleted_at IS NOT NULL,
                                   ''attempts'', t.qbo_sync_attempts,
                                   ''local_version'', t.qbo_local_version,
                                   ''synced_version'', t.qbo_synced_version,
                                   ''open_conflict'', (SELECT c.id FROM public.qbo_sync_conflict AS c
                                                      WHERE c.organization_id = t.organization_id
                                                        AND c.entity = $2 AND c.local_id = t.id
                                                        AND c.status = ''held''
                                                      ORDER BY c.detected_at DESC LIMIT 1))
           FROM public.%I AS t WHERE t.id = $1', target.app_table)
       INTO located USING record_id, entity;
    IF located IS NULL OR NOT qbo_sync.may_act_for((located ->> 'organization_id')::uuid) THEN
        RAISE EXCEPTION '% record % does not exist', entity, record_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'qbo_sync_record_status lists the records this session may see';
    END IF;
    EXECUTE format('SELECT FROM public.%I AS t WHERE t.id = $1 FOR UPDATE', target.app_table) USING record_id;
    RETURN located;
END
$$;

-- A record waiting for a person on a held conflict is theirs to decide: a retry or a skip would
-- be undone (every pull puts such a record back on hold, qbo_sync.keep_conflicts_held).
CREATE OR REPLACE FUNCTION qbo_sync.refuse_open_conflict(entity text, record_id uuid, located jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF located ->> 'open_conflict' IS NOT NULL THEN
        RAISE EXCEPTION '% record % waits for a person on conflict %', entity, record_id, located ->> 'open_conflict'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('decide it: SELECT qbo_sync_resolve_conflict(%L, ''qbo'' | ''local'' | ''custom'')',
                                located ->> 'open_conflict');
    END IF;
END
$$;

-- A retry or skip in the history: one row per call, with the record and what was done.
CREATE OR REPLACE FUNCTION qbo_sync.record_manual_action(
    action text, entity text, record_id uuid, located jsonb, job_id uuid, reason text
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.qbo_sync_history
        (organization_id, queue_job_id, sync_type, direction, entity_types, status,
         entity_count, success_count, failure_count, started_at, completed_at, error_summary, summary)
    VALUES
        ((located ->> 'organization_id')::uuid, job_id, action,
         CASE action WHEN 'retry' THEN 'push' ELSE 'pull' END, ARRAY[entity], 'completed',
         1, 1, 0, now(), clock_timestamp(), NULL,
         jsonb_build_object('record_id', record_id, 'qbo_id', located -> 'qbo_id',
                            'former_state', CASE WHEN (located ->> 'deleted')::boolean THEN 'deleted'
                                                 ELSE located ->> 'status' END,
                            'former_error', located -> 'error',
                            'former_error_code', located -> 'error_code',
                            'former_attempts', located -> 'attempts',
                            'reason', reason, 'by', qbo_sync.calling_role()))
$$;

CREATE OR REPLACE FUNCTION public.qbo_sync_retry_record(entity text, record_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    target_row jsonb;
    job_id uuid;
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    target_row := qbo_sync.lock_record_for_caller(entity, record_id);
    IF (target_row ->> 'deleted')::boolean OR target_row ->> 'status' NOT IN ('error', 'held', 'conflict', 'pending') THEN
        RAISE EXCEPTION '% record % is %: only an error, held or conflict record can be retried', entity, record_id,
                        CASE WHEN (target_row ->> 'deleted')::boolean THEN 'deleted in QBO' ELSE target_row ->> 'status' END
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'a synced record has nothing to send; qbo_sync_record_status shows each record''s state';
    END IF;
    PERFORM qbo_sync.refuse_open_conflict(entity, record_id, target_row);
    PERFORM qbo_sync.begin_applying_remote();
    -- pending again, with a version to push (a record QBO refused has one already; the bump
    -- covers one whose change was recorded as sent)
    EXECUTE format(
        'UPDATE public.%I AS t
            SET qbo_sync_status = ''pending'', qbo_sync_attempts = 0, qbo_sync_error = NULL,
                qbo_sync_error_class = NULL, qbo_sync_error_code = NULL, qbo_intuit_tid = NULL,
                qbo_local_version = greatest(t.qbo_local_version, t.qbo_synced_version + 1)
          WHERE t.id = $1', (qbo_sync.entity_row(entity)).app_table)
       USING record_id;
    job_id := qbo_sync.enqueue((target_row ->> 'organization_id')::uuid, entity, 'push', 'high', NULL,
                               'retry', '{}', true);
    PERFORM qbo_sync.record_manual_action('retry', entity, record_id, target_row, job_id, NULL);
    RETURN job_id;
END
$$;

COMMENT ON FUNCTION public.qbo_sync_retry_record(text, uuid) IS
    'Send a record again: an error, held or conflict record goes back to pending with its attempts '
    'reset, and a push of its entity is queued; returns the push job id';

CREATE OR REPLACE FUNCTION public.qbo_sync_skip_record(entity text, record_id uuid, reason text)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    target_row jsonb;
    app_table text;
    job_id uuid;
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'reason must say why the change is not sent' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    target_row := qbo_sync.lock_record_for_caller(entity, record_id);
    IF (target_row ->> 'deleted')::boolean OR target_row ->> 'status' = 'synced' THEN
        RAISE EXCEPTION '% record % is %: it has no change waiting to be sent', entity, record_id,
                        CASE WHEN (target_row ->> 'deleted')::boolean THEN 'deleted in QBO' ELSE 'synced' END
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM qbo_sync.refuse_open_conflict(entity, record_id, target_row);
    app_table := (qbo_sync.entity_row(entity)).app_table;
    PERFORM qbo_sync.begin_applying_remote();
    IF target_row ->> 'qbo_id' IS NOT NULL THEN
        -- the change is given up: synced at this version, and QBO's object fetched back (its
        -- SyncToken is forgotten so that the refetch applies even when QBO's is unchanged)
        EXECUTE format(
            'UPDATE public.%I AS t
                SET qbo_sync_status = ''synced'', qbo_synced_version = t.qbo_local_version,
                    qbo_sync_token = NULL, qbo_sync_attempts = 0, qbo_sync_error = NULL,
                    qbo_sync_error_class = NULL, qbo_sync_error_code = NULL, qbo_intuit_tid = NULL
              WHERE t.id = $1', app_table)
           USING record_id;
        job_id := qbo_sync.enqueue((target_row ->> 'organization_id')::uuid, entity, 'pull', 'high',
                                   ARRAY[target_row ->> 'qbo_id'], 'skip', '{"refetch": true}', true);
    ELSE
        -- never in QBO: it stays here only, not pushed until the application changes it again
        EXECUTE format(
            'UPDATE public.%I AS t
                SET qbo_sync_status = ''error'', qbo_synced_version = t.qbo_local_version,
                    qbo_sync_error = $2, qbo_sync_error_class = NULL, qbo_sync_error_code = ''skipped'',
                    qbo_intuit_tid = NULL
              WHERE t.id = $1', app_table)
           USING record_id, left(format('skipped by %s: %s', qbo_sync.calling_role(), reason), 2000);
    END IF;
    PERFORM qbo_sync.record_manual_action('skip', entity, record_id, target_row, job_id, left(reason, 2000));
    RETURN job_id;
END
$$;

COMMENT ON FUNCTION public.qbo_sync_skip_record(text, uuid, text) IS
    'Do not send a record''s pending change: a record QBO has takes QBO''s values back (a refetch '
    'is queued, its job id returned); one QBO never had stays local, marked error ''skipped'', '
    'until it changes again. Recorded in qbo_sync_history';

REVOKE ALL ON FUNCTION public.qbo_sync_retry_record(text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.qbo_sync_skip_record(text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.qbo_sync_retry_record(text, uuid),
                          public.qbo_sync_skip_record(text, uuid, text)
    TO qbo_sync_app;
REVOKE ALL ON public.qbo_sync_record_status, public.qbo_sync_record_counts FROM PUBLIC;
GRANT SELECT ON public.qbo_sync_record_status, public.qbo_sync_record_counts
    TO qbo_sync_app, qbo_sync_monitor;
-- The views run with the caller's rights: the monitor reads the status columns of every
-- organization's rows (not their business values).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment'] LOOP
        EXECUTE format(
            'GRANT SELECT (id, organization_id, qbo_id, qbo_sync_status, qbo_deleted_at,
                           qbo_sync_error_class, qbo_sync_error_code, qbo_sync_error, qbo_intuit_tid,
                           qbo_sync_attempts, qbo_last_synced_at, qbo_local_version, qbo_synced_version)
                ON public.%I TO qbo_sync_monitor', t);
    END LOOP;
END
$$;

-- For a job's summary: the records of `entity` left in error, held or in conflict, with QBO's
-- code, message and intuit_tid (at most `max_rows`, the latest tries first), and how many there are.
CREATE OR REPLACE FUNCTION qbo_sync.record_errors(organization_id uuid, entity text, max_rows integer DEFAULT 20)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    listed jsonb;
BEGIN
    EXECUTE format(
        'SELECT jsonb_build_object(
                    ''count'', (SELECT count(*) FROM public.%1$I AS t
                                 WHERE t.organization_id = $1
                                   AND t.qbo_sync_status IN (''error'', ''held'', ''conflict'')),
                    ''records'', coalesce((
                        SELECT jsonb_agg(jsonb_build_object(
                                   ''record_id'', t.id, ''qbo_id'', t.qbo_id, ''state'', t.qbo_sync_status,
                                   ''error_class'', t.qbo_sync_error_class, ''error_code'', t.qbo_sync_error_code,
                                   ''message'', left(t.qbo_sync_error, 500), ''intuit_tid'', t.qbo_intuit_tid,
                                   ''attempts'', t.qbo_sync_attempts))
                          FROM (SELECT * FROM public.%1$I AS u
                                 WHERE u.organization_id = $1
                                   AND u.qbo_sync_status IN (''error'', ''held'', ''conflict'')
                                 ORDER BY u.updated_at DESC, u.id
                                 LIMIT $2) AS t), ''[]''))',
        (qbo_sync.entity_row(entity)).app_table)
       INTO listed USING organization_id, max_rows;
    RETURN listed;
END
$$;

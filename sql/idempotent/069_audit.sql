-- The drift audit (plpython/qbo_sync_db/audit.py does the QBO side): per organization and entity,
-- QBO's counts (COUNT queries) against the local rows linked to QBO and not deleted there; when
-- they differ, the Ids and SyncTokens are compared and a targeted pull repairs what is missing
-- here or newer in QBO. Every audit is a row of public.qbo_sync_drift.
--
-- * public.qbo_sync_drift_audit(organization_id): queues an audit job (a pull with payload
--   {"audit": true}) per entity for one organization, or, for an operator passing NULL, for every
--   organization with an active connection. Returns how many jobs were queued.
-- * pg_cron's daily `qbo-drift-audit` runs qbo_sync.drift_audit_all() (110_cron.sql).

-- The local side of the counts, in the slices audit.py counts in QBO (and the total of the
-- amounts for invoices and payments): rows linked to QBO (qbo_id) and not deleted there. Rows the
-- application deleted whose deletion is not pushed yet count as here ("pending_deletions"): QBO
-- still has them, rightly, until the push.
CREATE OR REPLACE FUNCTION qbo_sync.audit_local_counts(organization_id uuid, entity text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counts jsonb;
BEGIN
    IF entity = 'invoices' THEN
        SELECT jsonb_build_object('all', count(*),
                                  'open', count(*) FILTER (WHERE t.balance_due > 0),
                                  'zero_total', count(*) FILTER (WHERE t.total_amount = 0),
                                  'total', coalesce(sum(t.total_amount), 0))
          INTO counts
          FROM public.invoice_record AS t
         WHERE t.organization_id = audit_local_counts.organization_id
           AND t.qbo_id IS NOT NULL AND t.qbo_deleted_at IS NULL;
    ELSIF entity = 'payments' THEN
        SELECT jsonb_build_object('all', count(*),
                                  'zero_total', count(*) FILTER (WHERE t.amount = 0),
                                  'total', coalesce(sum(t.amount), 0))
          INTO counts
          FROM public.invoice_payment AS t
         WHERE t.organization_id = audit_local_counts.organization_id
           AND t.qbo_id IS NOT NULL AND t.qbo_deleted_at IS NULL;
    ELSE
        EXECUTE format('SELECT jsonb_build_object(''all'', count(*))
                          FROM public.%I AS t
                         WHERE t.organization_id = $1 AND t.qbo_id IS NOT NULL AND t.qbo_deleted_at IS NULL',
                       (qbo_sync.entity_row(entity)).app_table)
           INTO counts USING organization_id;
    END IF;
    RETURN counts || jsonb_build_object('pending_deletions', (
        SELECT count(*) FROM qbo_sync.local_deletion AS d
         WHERE d.organization_id = audit_local_counts.organization_id
           AND d.entity = audit_local_counts.entity AND d.pushed_at IS NULL));
END
$$;

-- QBO Id → stored SyncToken of the same rows, and of the deletions not pushed yet (never
-- "missing here": a refetch would bring back a row the application deleted).
CREATE OR REPLACE FUNCTION qbo_sync.audit_local_tokens(organization_id uuid, entity text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tokens jsonb;
BEGIN
    EXECUTE format('SELECT coalesce(jsonb_object_agg(t.qbo_id, t.qbo_sync_token), ''{}'')
                      FROM public.%I AS t
                     WHERE t.organization_id = $1 AND t.qbo_id IS NOT NULL AND t.qbo_deleted_at IS NULL',
                   (qbo_sync.entity_row(entity)).app_table)
       INTO tokens USING organization_id;
    RETURN (SELECT coalesce(jsonb_object_agg(d.qbo_id, d.qbo_sync_token), '{}')
              FROM qbo_sync.local_deletion AS d
             WHERE d.organization_id = audit_local_tokens.organization_id
               AND d.entity = audit_local_tokens.entity AND d.pushed_at IS NULL) || tokens;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.record_drift(
    organization_id uuid, entity text, qbo_count bigint, local_count bigint, qbo_total numeric,
    local_total numeric, missing_here text[], drifted boolean, repair_job_id uuid, detail jsonb
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.qbo_sync_drift
        (organization_id, entity, checked_at, qbo_count, local_count, qbo_total, local_total,
         missing_here, drifted, repair_job_id, detail)
    VALUES
        (organization_id, entity, clock_timestamp(), qbo_count, local_count, qbo_total, local_total,
         coalesce(missing_here, '{}'), drifted, repair_job_id, coalesce(detail, '{}'))
$$;

-- Queue the audit of every entity for one organization; returns how many jobs were queued.
CREATE OR REPLACE FUNCTION qbo_sync.queue_drift_audit(organization_id uuid)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entity text;
BEGIN
    FOREACH entity IN ARRAY qbo_sync.entity_names() LOOP
        PERFORM qbo_sync.enqueue(organization_id, entity, 'pull', 'low', NULL, 'audit', '{"audit": true}');
    END LOOP;
    RETURN cardinality(qbo_sync.entity_names());
END
$$;

-- pg_cron 'qbo-drift-audit': every organization with an active connection.
CREATE OR REPLACE FUNCTION qbo_sync.drift_audit_all()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    connection record;
    queued integer := 0;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    FOR connection IN SELECT c.organization_id FROM public.qbo_connection AS c WHERE c.is_active
                       ORDER BY c.organization_id LOOP
        queued := queued + qbo_sync.queue_drift_audit(connection.organization_id);
    END LOOP;
    RETURN queued;
END
$$;

-- SECURITY DEFINER: the application may audit the organization its session works for (NULL:
-- that one); an operator any, or with NULL every active one.
CREATE OR REPLACE FUNCTION public.qbo_sync_drift_audit(organization_id uuid DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    entity text;
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    IF organization_id IS NULL AND qbo_sync.caller_is_operator() THEN
        RETURN qbo_sync.drift_audit_all();
    END IF;
    organization_id := coalesce(organization_id, qbo_sync.current_organization_id());
    IF organization_id IS NULL THEN
        RAISE EXCEPTION 'organization_id must not be null' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'this session works for no organization (the setting qbo_sync.organization_id)';
    END IF;
    FOREACH entity IN ARRAY qbo_sync.entity_names() LOOP
        -- the caller's right to the organization and an active connection
        PERFORM qbo_sync.validate_sync_request(organization_id, entity, 'pull', 'low');
    END LOOP;
    RETURN qbo_sync.queue_drift_audit(organization_id);
END
$$;

COMMENT ON FUNCTION public.qbo_sync_drift_audit(uuid) IS
    'Queue a drift audit of every entity (QBO''s counts against the local rows, repaired by a '
    'targeted pull) for an organization, or for every active one; results in qbo_sync_drift';

REVOKE ALL ON FUNCTION public.qbo_sync_drift_audit(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.qbo_sync_drift_audit(uuid) TO qbo_sync_app;

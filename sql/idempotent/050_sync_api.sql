-- The SQL entry points users call: trigger_qbo_sync, qbo_sync_orchestrator, and the
-- scheduled enqueuers the pg_cron jobs run.

-- Checks a sync request and raises a clear error (with the allowed values as a hint).
CREATE OR REPLACE FUNCTION qbo_sync.validate_sync_request(
    organization_id uuid, entity text, direction text, priority text
)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    connection_active boolean;
    connection_reason text;
BEGIN
    IF organization_id IS NULL THEN
        RAISE EXCEPTION 'organization_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF entity IS NULL OR entity NOT IN ('items', 'customers', 'invoices', 'payments') THEN
        RAISE EXCEPTION 'unknown entity %', coalesce(quote_literal(entity), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'entity must be one of: items, customers, invoices, payments';
    END IF;
    IF direction IS NULL OR direction NOT IN ('pull', 'push', 'both') THEN
        RAISE EXCEPTION 'unknown direction %', coalesce(quote_literal(direction), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'direction must be one of: pull, push, both';
    END IF;
    IF priority IS NULL OR priority NOT IN ('low', 'normal', 'high', 'urgent') THEN
        RAISE EXCEPTION 'unknown priority %', coalesce(quote_literal(priority), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'priority must be one of: low, normal, high, urgent';
    END IF;
    IF NOT EXISTS (SELECT FROM public.organizations AS o WHERE o.id = validate_sync_request.organization_id) THEN
        RAISE EXCEPTION 'organization % does not exist', organization_id
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT c.is_active, c.inactive_reason INTO connection_active, connection_reason
      FROM public.qbo_connection AS c
     WHERE c.organization_id = validate_sync_request.organization_id;
    IF connection_active IS NULL THEN
        RAISE EXCEPTION 'organization % has no QuickBooks connection', organization_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'connect it first: SELECT qbo_oauth_initiate(organization_id, redirect_uri)';
    ELSIF NOT connection_active THEN
        RAISE EXCEPTION 'the QuickBooks connection of organization % is not active: %',
                        organization_id, connection_reason
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'reconnect the organization to QuickBooks';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION public.trigger_qbo_sync(
    organization_id uuid,
    entity text,
    direction text DEFAULT 'both',
    priority text DEFAULT 'urgent'
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbo_sync.validate_sync_request(organization_id, entity, direction, priority);
    RETURN qbo_sync.enqueue(organization_id, entity, direction,
                            priority::public.qbo_sync_priority, NULL, 'manual');
END
$$;

COMMENT ON FUNCTION public.trigger_qbo_sync(uuid, text, text, text) IS
    'Queue a sync of one entity (items, customers, invoices, payments) for an organization; returns the queue job id';

-- Queue a sync of several entities in dependency order (items and customers before invoices,
-- invoices before payments). Returns the job ids in that order.
CREATE OR REPLACE FUNCTION public.qbo_sync_orchestrator(
    organization_id uuid,
    direction text DEFAULT 'both',
    entities text[] DEFAULT ARRAY['items', 'customers', 'invoices', 'payments'],
    priority text DEFAULT 'high'
)
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entity text;
    job_ids uuid[] := '{}';
BEGIN
    IF entities IS NULL OR cardinality(entities) = 0 THEN
        RAISE EXCEPTION 'entities must name at least one entity'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'entities is an array of: items, customers, invoices, payments';
    END IF;
    FOREACH entity IN ARRAY entities LOOP
        PERFORM qbo_sync.validate_sync_request(organization_id, entity, direction, priority);
    END LOOP;
    FOREACH entity IN ARRAY ARRAY['items', 'customers', 'invoices', 'payments'] LOOP
        IF entity = ANY (entities) THEN
            job_ids := job_ids || qbo_sync.enqueue(organization_id, entity, direction,
                                                   priority::public.qbo_sync_priority, NULL, 'orchestrator');
        END IF;
    END LOOP;
    RETURN job_ids;
END
$$;

-- Scheduled syncs (pg_cron): queue `entities` for every organization with an active connection.
CREATE OR REPLACE FUNCTION qbo_sync.schedule_sync(
    entities text[], direction text, priority public.qbo_sync_priority DEFAULT 'normal'
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    connection record;
    entity text;
    queued integer := 0;
BEGIN
    FOR connection IN SELECT c.organization_id FROM public.qbo_connection AS c WHERE c.is_active LOOP
        FOREACH entity IN ARRAY entities LOOP
            PERFORM qbo_sync.enqueue(connection.organization_id, entity, direction, priority, NULL, 'schedule');
            queued := queued + 1;
        END LOOP;
    END LOOP;
    RETURN queued;
END
$$;

-- pg_cron 'qbo-push-local-changes': queue a push for every entity with rows changed locally
-- (or deleted locally after reaching QBO) in organizations with an active connection.
CREATE OR REPLACE FUNCTION public.qbo_push_local_changes()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pending record;
    queued integer := 0;
BEGIN
    FOR pending IN
        WITH dirty AS (
            SELECT organization_id, 'customers' AS entity FROM public.customer_profile
             WHERE qbo_local_version > qbo_synced_version
            UNION SELECT organization_id, 'items' FROM public.item_record
             WHERE qbo_local_version > qbo_synced_version
            UNION SELECT organization_id, 'invoices' FROM public.invoice_record
             WHERE qbo_local_version > qbo_synced_version
            UNION SELECT organization_id, 'payments' FROM public.invoice_payment
             WHERE qbo_local_version > qbo_synced_version
            UNION SELECT organization_id, entity_type FROM qbo_sync.local_deletion
             WHERE pushed_at IS NULL
        )
        SELECT d.organization_id, d.entity
          FROM dirty AS d
          JOIN public.qbo_connection AS c ON c.organization_id = d.organization_id AND c.is_active
         ORDER BY d.organization_id,
                  array_position(ARRAY['items', 'customers', 'invoices', 'payments'], d.entity)
    LOOP
        PERFORM qbo_sync.enqueue(pending.organization_id, pending.entity, 'push', 'normal', NULL, 'schedule');
        queued := queued + 1;
    END LOOP;
    RETURN queued;
END
$$;

-- pg_cron 'qbo-check-token-expiry': refresh every active connection whose access token expires
-- within token.refresh_margin_seconds. Returns how many were refreshed.
CREATE OR REPLACE FUNCTION public.qbo_check_token_expiry()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    connection record;
    refreshed integer := 0;
BEGIN
    FOR connection IN
        SELECT c.organization_id
          FROM public.qbo_connection AS c
         WHERE c.is_active
           AND (c.qbo_token_expires_at IS NULL
                OR c.qbo_token_expires_at < now() + make_interval(
                       secs => qbo_sync.setting_numeric('token.refresh_margin_seconds')::double precision))
    LOOP
        IF to_regprocedure('public.qbo_token_refresh(uuid)') IS NULL THEN
            RAISE EXCEPTION 'qbo_token_refresh(uuid) is not installed: tokens cannot be refreshed yet'
                USING ERRCODE = 'undefined_function';
        END IF;
        EXECUTE 'SELECT public.qbo_token_refresh($1)' USING connection.organization_id;
        refreshed := refreshed + 1;
    END LOOP;
    RETURN refreshed;
END
$$;

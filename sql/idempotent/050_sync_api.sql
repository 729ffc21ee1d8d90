-- The SQL entry points users call: trigger_qbo_sync, qbo_sync_orchestrator, the per-entity
-- functions (qbo_sync_customers, _items, _invoices, _payments), and the scheduled enqueuers the
-- pg_cron jobs run.

-- Before 0.2 the scheduled functions lived in public, where a role with CREATE there could plant
-- overloads that pg_cron's owner would then call. They live in qbo_sync now.
DROP FUNCTION IF EXISTS public.qbo_push_local_changes();
DROP FUNCTION IF EXISTS public.qbo_check_token_expiry();
DROP FUNCTION IF EXISTS public.qbo_sync_orchestrator(uuid, text, text[], text);

-- Checks a sync request and raises a clear error (with the allowed values as a hint). Values
-- are quoted short in messages: a huge argument is not echoed back or logged in full.
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
    IF entity IS NULL OR NOT EXISTS (SELECT FROM qbo_sync.entity AS e WHERE e.entity = validate_sync_request.entity) THEN
        RAISE EXCEPTION 'unknown entity %', qbo_sync.quote_for_message(entity)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'entity must be one of: ' || array_to_string(qbo_sync.entity_names(), ', ');
    END IF;
    IF direction IS NULL OR direction NOT IN ('pull', 'push', 'both') THEN
        RAISE EXCEPTION 'unknown direction %', qbo_sync.quote_for_message(direction)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'direction must be one of: pull, push, both';
    END IF;
    IF priority IS NULL OR priority NOT IN ('low', 'normal', 'high', 'urgent') THEN
        RAISE EXCEPTION 'unknown priority %', qbo_sync.quote_for_message(priority)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'priority must be one of: low, normal, high, urgent';
    END IF;
    IF NOT qbo_sync.may_act_for(organization_id)
       OR NOT EXISTS (SELECT FROM public.organizations AS o WHERE o.id = validate_sync_request.organization_id) THEN
        RAISE EXCEPTION 'organization % does not exist', organization_id
            USING ERRCODE = 'no_data_found',
                  HINT = CASE WHEN qbo_sync.caller_is_operator()
                              THEN 'SELECT id, name FROM organizations lists them'
                              ELSE 'this session works for the organization named by the setting '
                                   'qbo_sync.organization_id' END;
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
                        organization_id, left(connection_reason, 200)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'reconnect the organization to QuickBooks';
    END IF;
END
$$;

-- SECURITY DEFINER: the application has no write access to the queue. It may queue work for the
-- organization its session works for (qbo_sync.may_act_for); operators for any.
CREATE OR REPLACE FUNCTION public.trigger_qbo_sync(
    organization_id uuid,
    entity text,
    direction text DEFAULT 'both',
    priority text DEFAULT 'urgent'
)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    PERFORM qbo_sync.validate_sync_request(organization_id, entity, direction, priority);
    RETURN qbo_sync.enqueue(organization_id, entity, direction,
                            priority::public.qbo_sync_priority, NULL, 'manual', '{}', true);
END
$$;

COMMENT ON FUNCTION public.trigger_qbo_sync(uuid, text, text, text) IS
    'Queue a sync of one entity (items, customers, invoices, payments) for an organization; returns the queue job id';

-- Queue a sync of several entities (default: all) in dependency order: items and customers,
-- then invoices, then payments (qbo_sync.entity.dependency_order). A SQL function cannot wait for
-- the worker, so it queues the jobs and returns at once, with a summary:
--   {"organization_id", "direction", "priority", "order": [entities],
--    "jobs": [{"entity", "job_id", "folded", "after": [job ids]}]}
-- `folded` says the job joined one queued earlier that had not run yet (the ids merge, the
-- priority rises). Each job's payload names the jobs of the entities before it ("after"), and
-- qbo_sync.claim takes no job while one it comes after is pending or processing: an
-- organization's jobs run in dependency order whatever their priorities and ages (a folded older
-- invoices job does not run before the customers job of the same call), with any number of
-- workers. Each run writes qbo_sync_history, as every job does.
-- Before 0.4 it returned the job ids (uuid[]).
DROP FUNCTION IF EXISTS public.qbo_sync_orchestrator(uuid, text, text[], text);
CREATE OR REPLACE FUNCTION public.qbo_sync_orchestrator(
    organization_id uuid,
    direction text DEFAULT 'both',
    entities text[] DEFAULT NULL,
    priority text DEFAULT 'high'
)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    e record;
    checked text;
    job_id uuid;
    before_level uuid[] := '{}';
    level_jobs uuid[] := '{}';
    current_level integer;
    jobs jsonb := '[]';
    entity_order text[] := '{}';
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    IF entities IS NOT NULL AND cardinality(entities) = 0 THEN
        RAISE EXCEPTION 'entities must name at least one entity'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'entities is NULL (all) or an array of: ' || array_to_string(qbo_sync.entity_names(), ', ');
    END IF;
    -- every entity is checked before anything is queued
    FOREACH checked IN ARRAY coalesce(entities, qbo_sync.entity_names()) LOOP
        PERFORM qbo_sync.validate_sync_request(organization_id, checked, direction, priority);
    END LOOP;
    FOR e IN SELECT r.entity, r.dependency_order
               FROM qbo_sync.entity AS r
              WHERE entities IS NULL OR r.entity = ANY (entities)
              ORDER BY r.dependency_order, r.entity LOOP
        -- entities of one level (items, customers) are independent of each other; each level
        -- waits for the levels before it
        IF current_level IS DISTINCT FROM e.dependency_order THEN
            before_level := before_level || level_jobs;
            level_jobs := '{}';
            current_level := e.dependency_order;
        END IF;
        job_id := qbo_sync.enqueue(organization_id, e.entity, direction,
                                   priority::public.qbo_sync_priority, NULL, 'orchestrator',
                                   jsonb_build_object('after', to_jsonb(before_level)), true);
        level_jobs := level_jobs || job_id;
        entity_order := entity_order || e.entity::text;
        jobs := jobs || jsonb_build_array(jsonb_build_object(
            'entity', e.entity, 'job_id', job_id,
            'folded', (SELECT q.created_at < now() FROM public.qbo_sync_queue AS q WHERE q.id = job_id),
            'after', to_jsonb(before_level)));
    END LOOP;
    RETURN jsonb_build_object('organization_id', organization_id, 'direction', direction,
                              'priority', priority, 'order', to_jsonb(entity_order), 'jobs', jobs);
END
$$;

COMMENT ON FUNCTION public.qbo_sync_orchestrator(uuid, text, text[], text) IS
    'Queue the syncs of several entities (default: all) in dependency order; returns a summary '
    'with the order and each entity''s job id (the worker runs them in that order)';

-- One entity's sync, queued (the orchestrator's parts, usable alone): returns the job id.
CREATE OR REPLACE FUNCTION qbo_sync.queue_entity_sync(
    organization_id uuid, entity text, direction text, priority text
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['organizations']);
    PERFORM qbo_sync.validate_sync_request(organization_id, entity, direction, priority);
    RETURN qbo_sync.enqueue(organization_id, entity, direction,
                            priority::public.qbo_sync_priority, NULL, 'manual', '{}', true);
END
$$;

CREATE OR REPLACE FUNCTION public.qbo_sync_customers(
    organization_id uuid, direction text DEFAULT 'both', priority text DEFAULT 'high'
)
RETURNS uuid
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$ SELECT qbo_sync.queue_entity_sync(organization_id, 'customers', direction, priority) $$;

CREATE OR REPLACE FUNCTION public.qbo_sync_items(
    organization_id uuid, direction text DEFAULT 'both', priority text DEFAULT 'high'
)
RETURNS uuid
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$ SELECT qbo_sync.queue_entity_sync(organization_id, 'items', direction, priority) $$;

CREATE OR REPLACE FUNCTION public.qbo_sync_invoices(
    organization_id uuid, direction text DEFAULT 'both', priority text DEFAULT 'high'
)
RETURNS uuid
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$ SELECT qbo_sync.queue_entity_sync(organization_id, 'invoices', direction, priority) $$;

CREATE OR REPLACE FUNCTION public.qbo_sync_payments(
    organization_id uuid, direction text DEFAULT 'both', priority text DEFAULT 'high'
)
RETURNS uuid
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$ SELECT qbo_sync.queue_entity_sync(organization_id, 'payments', direction, priority) $$;

-- Scheduled syncs (pg_cron): queue `entities` for every organization with an active connection.
CREATE OR REPLACE FUNCTION qbo_sync.schedule_sync(
    entities text[], direction text, priority public.qbo_sync_priority DEFAULT 'normal'
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    connection record;
    entity text;
    queued integer := 0;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
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
-- (or deleted locally after reaching QBO) in organizations with an active connection, in
-- dependency order. The tables come from the registry. An application table another session
-- holds locked is skipped this time (with a warning), never waited for.
CREATE OR REPLACE FUNCTION qbo_sync.push_local_changes()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    e qbo_sync.entity;
    pending record;
    queued integer := 0;
    saved_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    FOR e IN SELECT * FROM qbo_sync.entity ORDER BY dependency_order, entity LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '200ms', true);
            PERFORM qbo_sync.lock_own_relations(ARRAY[e.app_table]);
            PERFORM set_config('lock_timeout', saved_timeout, true);
            FOR pending IN EXECUTE format(
                'SELECT c.organization_id
                   FROM public.qbo_connection AS c
                  WHERE c.is_active
                    AND (EXISTS (SELECT FROM public.%I AS t
                                  WHERE t.organization_id = c.organization_id
                                    AND t.qbo_local_version > t.qbo_synced_version)
                         OR EXISTS (SELECT FROM qbo_sync.local_deletion AS d
                                     WHERE d.organization_id = c.organization_id
                                       AND d.entity = $1 AND d.pushed_at IS NULL))
                  ORDER BY c.organization_id', e.app_table) USING e.entity
            LOOP
                PERFORM qbo_sync.enqueue(pending.organization_id, e.entity, 'push', 'normal', NULL, 'schedule');
                queued := queued + 1;
            END LOOP;
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'qbo-sync: public.% is locked by another session: its pushes wait for the next run',
                          e.app_table;
        END;
    END LOOP;
    RETURN queued;
END
$$;

-- The application may queue its organization's entity syncs (100_roles.sql re-grants the
-- orchestrator, whose signature it lists).
REVOKE ALL ON FUNCTION public.qbo_sync_customers(uuid, text, text), public.qbo_sync_items(uuid, text, text),
                       public.qbo_sync_invoices(uuid, text, text), public.qbo_sync_payments(uuid, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.qbo_sync_customers(uuid, text, text), public.qbo_sync_items(uuid, text, text),
                          public.qbo_sync_invoices(uuid, text, text), public.qbo_sync_payments(uuid, text, text)
    TO qbo_sync_app;

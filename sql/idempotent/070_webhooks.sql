-- The in-database half of the webhook listener: logged webhooks become queue work.
-- The listener stores each POST with its signature verdict; qbo_sync.process_webhooks() (run by
-- the worker on every loop) parses both payload formats, skips events already seen
-- (qbo_webhook_processed), and queues one high-priority pull per organization and entity with
-- the changed ids. Only rows whose signature verified are ever read (a constraint keeps unsigned
-- rows 'rejected', and the query asks for signature_valid as well).

DROP FUNCTION IF EXISTS public.qbo_process_webhooks(integer);
-- Before 0.2 webhook_events named its QBO entity column entity_name.
DO $$
BEGIN
    IF 'entity_name' = ANY (SELECT unnest(p.proargnames) FROM pg_proc AS p
                             WHERE p.oid = to_regprocedure('qbo_sync.webhook_events(jsonb)')) THEN
        DROP FUNCTION qbo_sync.webhook_events(jsonb);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.try_timestamptz(value text)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The events in a webhook payload, legacy (`eventNotifications`) or CloudEvents (a JSON array).
CREATE OR REPLACE FUNCTION qbo_sync.webhook_events(payload jsonb)
RETURNS TABLE (event_key text, realm_id text, qbo_entity text, entity_id text,
               operation text, occurred_at timestamptz, deleted_id text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'legacy:' || md5(concat_ws('|', n ->> 'realmId', e ->> 'name', e ->> 'id',
                                      e ->> 'operation', e ->> 'lastUpdated')),
           n ->> 'realmId', e ->> 'name', e ->> 'id', e ->> 'operation',
           qbo_sync.try_timestamptz(e ->> 'lastUpdated'),
           coalesce(e ->> 'deletedId', e ->> 'deletedID')
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(payload -> 'eventNotifications') = 'array'
                                     THEN payload -> 'eventNotifications' ELSE '[]' END) AS n,
           jsonb_array_elements(CASE WHEN jsonb_typeof(n -> 'dataChangeEvent' -> 'entities') = 'array'
                                     THEN n -> 'dataChangeEvent' -> 'entities' ELSE '[]' END) AS e
     WHERE jsonb_typeof(payload) = 'object'
    UNION ALL
    SELECT 'cloudevent:' || CASE WHEN length(ev ->> 'id') <= 200 THEN ev ->> 'id'
                                 ELSE 'md5:' || md5(ev ->> 'id') END,  -- a key fits its index
           ev ->> 'intuitaccountid',
           split_part(ev ->> 'type', '.', 2),
           ev ->> 'intuitentityid',
           CASE split_part(ev ->> 'type', '.', 3)
               WHEN 'created' THEN 'Create' WHEN 'updated' THEN 'Update'
               WHEN 'deleted' THEN 'Delete' WHEN 'merged' THEN 'Merge'
               WHEN 'voided' THEN 'Void' WHEN 'emailed' THEN 'Emailed'
               ELSE split_part(ev ->> 'type', '.', 3) END,
           qbo_sync.try_timestamptz(ev ->> 'time'),
           ev -> 'data' ->> 'deletedid'
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(payload) = 'array' THEN payload ELSE '[]' END) AS ev
     WHERE jsonb_typeof(ev) = 'object' AND ev ? 'id'
$$;

CREATE OR REPLACE FUNCTION qbo_sync.webhook_format(payload jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN jsonb_typeof(payload) = 'object' AND jsonb_typeof(payload -> 'eventNotifications') = 'array' THEN 'legacy'
        WHEN jsonb_typeof(payload) = 'array' AND jsonb_typeof(payload -> 0) = 'object'
             AND payload -> 0 ? 'specversion' THEN 'cloudevents'
        ELSE 'unknown' END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.webhook_event_rows(events jsonb)
RETURNS TABLE (log_id bigint, organization_id uuid, event_key text, realm_id text, entity text,
               entity_id text, operation text, occurred_at timestamptz, deleted_id text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM jsonb_to_recordset(events) AS ev(
        log_id bigint, organization_id uuid, event_key text, realm_id text, entity text,
        entity_id text, operation text, occurred_at timestamptz, deleted_id text)
$$;

-- Turn the webhook log rows `log_ids` into queue work; returns how many were handled (the
-- others wait: their organization was busy). Each organization's events are queued in a
-- subtransaction under a short lock timeout: when a session holds a lock that organization's
-- enqueue needs, its rows wait queue.busy_retry_seconds (next_attempt_at) and every other
-- organization's events go through at once.
CREATE OR REPLACE FUNCTION qbo_sync.process_webhook_rows(log_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    org uuid;
    deferred uuid[] := '{}';
    item record;
    saved_timeout text := current_setting('lock_timeout');
    events jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'log_id', l.id, 'organization_id', c.organization_id, 'event_key', e.event_key,
               'realm_id', e.realm_id, 'entity', r.entity, 'entity_id', e.entity_id,
               'operation', coalesce(e.operation, 'Unknown'), 'occurred_at', e.occurred_at,
               'deleted_id', e.deleted_id)), '[]')
      INTO events
      FROM public.qbo_webhook_log AS l
     CROSS JOIN LATERAL qbo_sync.webhook_events(l.payload) AS e
      JOIN public.qbo_connection AS c ON c.realm_id = e.realm_id
      JOIN qbo_sync.entity AS r ON lower(r.qbo_entity) = lower(e.qbo_entity)  -- CloudEvents spell it in lower case
     WHERE l.id = ANY (log_ids) AND e.entity_id IS NOT NULL;

    PERFORM set_config('lock_timeout',
                       qbo_sync.setting_numeric('worker.webhook_lock_timeout_ms')::bigint || 'ms', true);
    FOR org IN SELECT DISTINCT ev.organization_id FROM qbo_sync.webhook_event_rows(events) AS ev LOOP
        BEGIN
            FOR item IN
                WITH fresh AS (
                    INSERT INTO public.qbo_webhook_processed AS p
                        (organization_id, event_key, realm_id, entity, entity_id, operation,
                         occurred_at, deleted_id, webhook_log_id)
                    SELECT DISTINCT ON (ev.event_key)
                           ev.organization_id, ev.event_key, ev.realm_id, ev.entity, ev.entity_id,
                           ev.operation, ev.occurred_at, ev.deleted_id, ev.log_id
                      FROM qbo_sync.webhook_event_rows(events) AS ev
                     WHERE ev.organization_id = org
                    ON CONFLICT (organization_id, event_key) DO NOTHING
                    RETURNING p.entity, p.entity_id, p.deleted_id
                )
                SELECT f.entity, array_agg(DISTINCT i.id ORDER BY i.id) AS ids
                  FROM fresh AS f
                 CROSS JOIN LATERAL unnest(ARRAY[f.entity_id, f.deleted_id]) AS i(id)
                 WHERE i.id IS NOT NULL
                 GROUP BY f.entity
                 ORDER BY min((SELECT e.dependency_order FROM qbo_sync.entity AS e WHERE e.entity = f.entity))
            LOOP
                PERFORM qbo_sync.enqueue(org, item.entity, 'pull', 'high', item.ids, 'webhook');
            END LOOP;
        EXCEPTION WHEN lock_not_available THEN
            deferred := deferred || org;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', saved_timeout, true);

    UPDATE public.qbo_webhook_log AS l
       SET next_attempt_at = now() + make_interval(
               secs => qbo_sync.setting_numeric('queue.busy_retry_seconds')::double precision)
     WHERE l.id = ANY (log_ids)
       AND EXISTS (SELECT FROM qbo_sync.webhook_event_rows(events) AS ev
                    WHERE ev.log_id = l.id AND ev.organization_id = ANY (deferred));

    UPDATE public.qbo_webhook_log AS l
       SET status = CASE WHEN qbo_sync.webhook_format(l.payload) = 'unknown' THEN 'error' ELSE 'processed' END,
           error = CASE WHEN l.payload IS NULL THEN 'body is not JSON'
                        WHEN qbo_sync.webhook_format(l.payload) = 'unknown' THEN 'payload is neither legacy nor CloudEvents'
                        WHEN unknown.realms IS NOT NULL THEN left('no connection for realm ' || unknown.realms, 1000)
                        END,
           payload_format = qbo_sync.webhook_format(l.payload),
           event_count = (SELECT count(*) FROM qbo_sync.webhook_events(l.payload)),
           processed_at = now()
      FROM (SELECT l2.id,
                   (SELECT string_agg(DISTINCT e.realm_id, ', ')
                      FROM qbo_sync.webhook_events(l2.payload) AS e
                     WHERE NOT EXISTS (SELECT FROM public.qbo_connection AS c WHERE c.realm_id = e.realm_id)
                   ) AS realms
              FROM public.qbo_webhook_log AS l2
             WHERE l2.id = ANY (log_ids)) AS unknown
     WHERE l.id = unknown.id
       AND NOT EXISTS (SELECT FROM qbo_sync.webhook_event_rows(events) AS ev
                        WHERE ev.log_id = l.id AND ev.organization_id = ANY (deferred));

    RETURN cardinality(log_ids) - (SELECT count(DISTINCT ev.log_id)::integer
                                     FROM qbo_sync.webhook_event_rows(events) AS ev
                                    WHERE ev.organization_id = ANY (deferred));
END
$$;

-- Turn up to `max_rows` received, signed webhook log rows that are due into queue work. Returns
-- the rows handled. A row that cannot be processed (a payload no code expected) is marked
-- 'error' with the reason, alone: the batch is retried row by row, so one bad row never holds up
-- the others.
CREATE OR REPLACE FUNCTION qbo_sync.process_webhooks(max_rows integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    log_ids bigint[];
    log_id bigint;
    handled integer := 0;
    error_message text;
    error_state text;
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    SELECT array_agg(l.id ORDER BY l.id) INTO log_ids
      FROM (SELECT w.id FROM public.qbo_webhook_log AS w
             WHERE w.status = 'received' AND w.signature_valid
               AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= now())
             ORDER BY w.id
             LIMIT max_rows
               FOR UPDATE SKIP LOCKED) AS l;
    IF log_ids IS NULL THEN
        RETURN 0;
    END IF;
    BEGIN
        RETURN qbo_sync.process_webhook_rows(log_ids);
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- one row is bad: find it below
    END;
    FOREACH log_id IN ARRAY log_ids LOOP
        BEGIN
            handled := handled + qbo_sync.process_webhook_rows(ARRAY[log_id]);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS error_message = MESSAGE_TEXT, error_state = RETURNED_SQLSTATE;
            UPDATE public.qbo_webhook_log AS l
               SET status = 'error', processed_at = now(),
                   error = left(format('could not be processed: %s (SQLSTATE %s)', error_message, error_state), 1000)
             WHERE l.id = log_id;
            handled := handled + 1;
        END;
    END LOOP;
    RETURN handled;
END
$$;

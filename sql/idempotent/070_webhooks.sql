-- The in-database half of the webhook listener: logged webhooks become queue work.
-- The listener stores each POST with its signature verdict; qbo_process_webhooks() (run by the
-- worker on every loop) parses both payload formats, skips events already seen
-- (qbo_webhook_processed), and queues one high-priority pull per organization and entity with
-- the changed ids.

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
RETURNS TABLE (event_key text, realm_id text, entity_name text, entity_id text,
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
    SELECT 'cloudevent:' || (ev ->> 'id'),
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

-- Turn up to `max_rows` received webhook log rows into queue work. Returns the rows handled.
CREATE OR REPLACE FUNCTION public.qbo_process_webhooks(max_rows integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    log_ids bigint[];
    work jsonb;
    item jsonb;
BEGIN
    SELECT array_agg(l.id ORDER BY l.id) INTO log_ids
      FROM (SELECT id FROM public.qbo_webhook_log
             WHERE status = 'received'
             ORDER BY id
             LIMIT max_rows
               FOR UPDATE SKIP LOCKED) AS l;
    IF log_ids IS NULL THEN
        RETURN 0;
    END IF;

    WITH events AS (
        SELECT l.id AS log_id, e.*, lower(e.entity_name) || 's' AS sync_endpoint
          FROM public.qbo_webhook_log AS l
          CROSS JOIN LATERAL qbo_sync.webhook_events(l.payload) AS e
         WHERE l.id = ANY (log_ids)
    ), fresh AS (
        INSERT INTO public.qbo_webhook_processed AS p
            (organization_id, event_key, realm_id, entity_type, entity_id, operation, occurred_at,
             deleted_id, webhook_log_id)
        SELECT DISTINCT ON (c.organization_id, e.event_key)
               c.organization_id, e.event_key, e.realm_id, e.sync_endpoint, e.entity_id, e.operation,
               e.occurred_at, e.deleted_id, e.log_id
          FROM events AS e
          JOIN public.qbo_connection AS c ON c.realm_id = e.realm_id
         WHERE e.sync_endpoint IN ('items', 'customers', 'invoices', 'payments')
           AND e.entity_id IS NOT NULL
        ON CONFLICT (organization_id, event_key) DO NOTHING
        RETURNING p.organization_id, p.entity_type, p.entity_id, p.deleted_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('organization_id', g.organization_id,
                                                 'entity', g.entity_type, 'ids', g.ids)), '[]')
      INTO work
      FROM (SELECT f.organization_id, f.entity_type,
                   array_agg(DISTINCT i.id ORDER BY i.id) AS ids
              FROM fresh AS f
             CROSS JOIN LATERAL unnest(ARRAY[f.entity_id, f.deleted_id]) AS i(id)
             WHERE i.id IS NOT NULL
             GROUP BY f.organization_id, f.entity_type) AS g;

    FOR item IN SELECT * FROM jsonb_array_elements(work) LOOP
        PERFORM qbo_sync.enqueue((item ->> 'organization_id')::uuid, item ->> 'entity', 'pull', 'high',
                                 ARRAY(SELECT jsonb_array_elements_text(item -> 'ids')), 'webhook');
    END LOOP;

    UPDATE public.qbo_webhook_log AS l
       SET status = CASE WHEN qbo_sync.webhook_format(l.payload) = 'unknown' THEN 'error' ELSE 'processed' END,
           error = CASE WHEN l.payload IS NULL THEN 'body is not JSON'
                        WHEN qbo_sync.webhook_format(l.payload) = 'unknown' THEN 'payload is neither legacy nor CloudEvents'
                        WHEN unknown.realms IS NOT NULL THEN 'no connection for realm ' || unknown.realms
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
     WHERE l.id = unknown.id;

    RETURN cardinality(log_ids);
END
$$;

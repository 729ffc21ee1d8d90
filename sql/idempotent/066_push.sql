-- Pushing local changes to QBO (plpython/qbo_sync_db/push.py sends; these functions read and
-- record). A row needs a push when qbo_local_version > qbo_synced_version (change tracking,
-- 030). A create's requestid is stored with the row before the request is sent and reused on
-- every retry, so QBO can answer a resent create with the object it already made.

-- Up to `max_rows` rows of `entity` waiting to be pushed (oldest change first), as JSON objects
-- of every column, with "<column>_qbo_id" for each reference and the version read (so what is
-- recorded as pushed is what was sent), leaving out the rows in `skip` (held this time). Rows
-- QBO refused ('error') or that wait for a person ('conflict') are skipped until they change
-- again; 'held' rows (waiting for what they reference) are returned and tried again.
CREATE OR REPLACE FUNCTION qbo_sync.rows_to_push(
    organization_id uuid, entity text, max_rows integer, skip uuid[] DEFAULT '{}'
)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
BEGIN
    IF entity = 'payments' THEN
        -- with the customer's and the paid invoice's QBO Ids
        RETURN QUERY
        SELECT to_jsonb(t) || jsonb_build_object('customer_id_qbo_id', c.qbo_id,
                                                 'invoice_id_qbo_id', i.qbo_id)
          FROM public.invoice_payment AS t
          LEFT JOIN public.customer_profile AS c ON c.id = t.customer_id
          LEFT JOIN public.invoice_record AS i ON i.id = t.invoice_id
         WHERE t.organization_id = rows_to_push.organization_id
           AND t.qbo_local_version > t.qbo_synced_version
           AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status NOT IN ('error', 'conflict')
           AND NOT (t.id = ANY (skip))
         ORDER BY t.updated_at, t.id
         LIMIT max_rows;
        RETURN;
    END IF;
    IF entity = 'invoices' THEN
        -- with the customer's QBO Id and the lines (each with its item's QBO Id), in order
        RETURN QUERY
        SELECT to_jsonb(t) || jsonb_build_object(
                   'customer_id_qbo_id', c.qbo_id,
                   'lines', coalesce((
                       SELECT jsonb_agg(to_jsonb(l) || jsonb_build_object('item_id_qbo_id', it.qbo_id,
                                                                          'item_known', l.item_id IS NULL OR it.qbo_id IS NOT NULL)
                                        ORDER BY l.line_number, l.id)
                         FROM public.invoice_line_item AS l
                         LEFT JOIN public.item_record AS it ON it.id = l.item_id
                        WHERE l.invoice_id = t.id), '[]'))
          FROM public.invoice_record AS t
          LEFT JOIN public.customer_profile AS c ON c.id = t.customer_id
         WHERE t.organization_id = rows_to_push.organization_id
           AND t.qbo_local_version > t.qbo_synced_version
           AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status NOT IN ('error', 'conflict')
           AND NOT (t.id = ANY (skip))
         ORDER BY t.updated_at, t.id
         LIMIT max_rows;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT to_jsonb(t) FROM public.%I AS t
          WHERE t.organization_id = $1 AND t.qbo_local_version > t.qbo_synced_version
            AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status NOT IN (''error'', ''conflict'')
            AND NOT (t.id = ANY ($3))
          ORDER BY t.updated_at, t.id
          LIMIT $2', target.app_table)
    USING organization_id, max_rows, skip;
END
$$;

-- The requestids of creates about to be sent (`row_ids`): the stored one, or a new one stored
-- now, and the time the create was first sent (qbo_create_sent_at, kept from the first send: a
-- create whose outcome is unknown is looked up in QBO from then on before it is sent again). The
-- caller commits before sending.
DROP FUNCTION IF EXISTS qbo_sync.create_requestid(uuid, text, uuid);
CREATE OR REPLACE FUNCTION qbo_sync.prepare_creates(organization_id uuid, entity text, row_ids uuid[])
RETURNS TABLE (row_id uuid, requestid uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- durable before any request can leave, whatever the session's synchronous_commit (the
    -- worker's is off): a lost requestid would let a retried create make a second object
    PERFORM set_config('synchronous_commit', 'on', true);
    PERFORM qbo_sync.begin_applying_remote();
    RETURN QUERY EXECUTE format(
        'UPDATE public.%I AS t
            SET qbo_request_id = coalesce(t.qbo_request_id, gen_random_uuid()),
                qbo_create_sent_at = coalesce(t.qbo_create_sent_at, now())
          WHERE t.organization_id = $1 AND t.id = ANY ($2) AND t.qbo_id IS NULL
         RETURNING t.id, t.qbo_request_id', (qbo_sync.entity_row(entity)).app_table)
    USING organization_id, row_ids;
END
$$;

-- What QBO answered to a push of a row (its version `version` as it was read): QBO's Id,
-- SyncToken, timestamps and the object, and the row is synced up to that version. The business
-- `columns` are written only when the row is still at that version: a change made while the push
-- was in flight stays, pending; what QBO computes (`always_columns`: totals, balances) is written
-- either way. Called with the row's synced version, it links the row to a QBO object without
-- taking QBO's values (the row's own are then pushed). The problem bookkeeping is cleared.
DROP FUNCTION IF EXISTS qbo_sync.record_pushed(uuid, text, uuid, bigint, jsonb, text[]);
CREATE OR REPLACE FUNCTION qbo_sync.record_pushed(
    organization_id uuid, entity text, row_id uuid, version bigint, pushed jsonb, columns text[],
    always_columns text[] DEFAULT '{}'
)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
    sets text;
    done boolean;
BEGIN
    PERFORM qbo_sync.check_business_columns(target.app_table, columns || always_columns);
    PERFORM qbo_sync.begin_applying_remote();
    SELECT coalesce(string_agg(format(
               ', %1$I = CASE WHEN t.qbo_local_version <= $3 THEN p.%1$I ELSE t.%1$I END', c), ''), '')
      INTO sets FROM unnest(columns) AS c WHERE c <> ALL (always_columns);
    SELECT sets || coalesce(string_agg(format(', %1$I = p.%1$I', c), ''), '')
      INTO sets FROM unnest(always_columns) AS c;
    EXECUTE format(
        'UPDATE public.%1$I AS t
            SET qbo_id = p.qbo_id, qbo_sync_token = p.qbo_sync_token,
                qbo_created_at = p.qbo_created_at, qbo_updated_at = p.qbo_updated_at,
                qbo_raw = $4 -> ''qbo_raw'', qbo_last_synced_at = now(), qbo_request_id = NULL,
                qbo_create_sent_at = NULL,
                qbo_synced_version = greatest(t.qbo_synced_version, $3),
                qbo_sync_status = CASE WHEN t.qbo_local_version > $3 THEN ''pending'' ELSE ''synced'' END,
                qbo_sync_error = NULL, qbo_sync_error_class = NULL, qbo_sync_error_code = NULL,
                qbo_intuit_tid = NULL, qbo_sync_attempts = 0 %2$s
           FROM jsonb_populate_record(NULL::public.%1$I, $4) AS p
          WHERE t.organization_id = $1 AND t.id = $2
         RETURNING true', target.app_table, sets)
       INTO done USING organization_id, row_id, version, pushed;
    RETURN coalesce(done, false);
END
$$;

-- A row the push did not send through, with what went wrong: the message, its class
-- (validation: QBO refused it; dependency: what it references is not in QBO yet; conflict: a
-- person decides; throttle, transient, auth: the job failed and is retried), QBO's code and
-- intuit_tid; the attempts are counted. `status` is the row's new status ('error': skipped until
-- it changes again; 'held': tried again on the next push; 'conflict'), or NULL to keep it (a job
-- that failed: the row is pushed again when the job is retried). Either way the other rows go on.
-- A create QBO refused ('error', 'conflict') made nothing: its requestid is dropped, since QBO
-- answers a requestid it has seen with its first answer, the fault too, and the corrected row
-- must go as a new request. So is one QBO answered 600 (RequestId already exists: QBO saw it, and
-- the lookup did not find what it would have made, so QBO refused it).
DROP FUNCTION IF EXISTS qbo_sync.record_push_problem(uuid, text, uuid, text, boolean);
CREATE OR REPLACE FUNCTION qbo_sync.record_push_problem(
    organization_id uuid, entity text, row_id uuid, message text, status text, error_class text,
    error_code text DEFAULT NULL, intuit_tid text DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format('UPDATE public.%I AS t
                       SET qbo_sync_status = coalesce($4, t.qbo_sync_status),
                           qbo_sync_error = $3, qbo_sync_error_class = $5,
                           qbo_sync_error_code = $6, qbo_intuit_tid = $7,
                           qbo_sync_attempts = t.qbo_sync_attempts + 1,
                           qbo_request_id = CASE WHEN $4 IN (''error'', ''conflict'') OR $6 = ''600''
                                                 THEN NULL ELSE t.qbo_request_id END,
                           qbo_create_sent_at = CASE WHEN $4 IN (''error'', ''conflict'') OR $6 = ''600''
                                                     THEN NULL ELSE t.qbo_create_sent_at END
                     WHERE t.organization_id = $1 AND t.id = $2',
                   (qbo_sync.entity_row(entity)).app_table)
       USING organization_id, row_id, left(message, 2000), status, error_class, error_code,
             intuit_tid;
END
$$;

-- The local row other than `row_id` that is linked to QBO object `qbo_id`, if any (a QBO object
-- found by name or by what was sent is linked only when no other row has it).
CREATE OR REPLACE FUNCTION qbo_sync.row_linked_to(
    organization_id uuid, entity text, qbo_id text, row_id uuid
)
RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    other uuid;
BEGIN
    EXECUTE format('SELECT t.id FROM public.%I AS t
                     WHERE t.organization_id = $1 AND t.qbo_id = $2 AND t.id <> $3 LIMIT 1',
                   (qbo_sync.entity_row(entity)).app_table)
       INTO other USING organization_id, qbo_id, row_id;
    RETURN other;
END
$$;

-- A create QBO refused because the name is taken (6240) by an object another local row is
-- linked to (or that cannot be linked): a conflict for a person, with both sides' values; the
-- row waits ('conflict') until it is resolved or changes.
CREATE OR REPLACE FUNCTION qbo_sync.record_push_conflict(
    organization_id uuid, entity text, row_id uuid, qbo_id text, local_values jsonb,
    remote_values jsonb, fields text[], message text, error_code text, intuit_tid text
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conflict uuid;
BEGIN
    INSERT INTO public.qbo_sync_conflict AS c
           (organization_id, entity, local_id, qbo_id, local_values, remote_values, fields,
            resolution, policy, status, detected_by)
    VALUES (organization_id, entity, row_id, qbo_id, local_values, remote_values, fields,
            'held', 'hold', 'held', 'push')
    RETURNING c.id INTO conflict;
    PERFORM qbo_sync.record_push_problem(organization_id, entity, row_id, message, 'conflict',
                                         'conflict', error_code, intuit_tid);
    RETURN conflict;
END
$$;

-- Local deletions of `entity` not pushed yet (oldest first): what the push removes in QBO.
CREATE OR REPLACE FUNCTION qbo_sync.deletions_to_push(organization_id uuid, entity text, max_rows integer)
RETURNS TABLE (qbo_id text, qbo_sync_token text, attempts integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.qbo_id, d.qbo_sync_token, d.attempts
      FROM qbo_sync.local_deletion AS d
     WHERE d.organization_id = deletions_to_push.organization_id
       AND d.entity = deletions_to_push.entity AND d.pushed_at IS NULL
     ORDER BY d.deleted_at, d.qbo_id
     LIMIT max_rows
$$;

-- The outcome of pushing a local deletion: done (`error` NULL: QBO deleted or deactivated it, or
-- had already deleted it), or failed with the reason (kept, with its attempts, for the next push).
CREATE OR REPLACE FUNCTION qbo_sync.record_deletion_pushed(
    organization_id uuid, entity text, qbo_id text, error text
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbo_sync.local_deletion AS d
       SET pushed_at = CASE WHEN error IS NULL THEN now() END,
           attempts = d.attempts + 1,
           last_error = left(error, 2000)
     WHERE d.organization_id = record_deletion_pushed.organization_id
       AND d.entity = record_deletion_pushed.entity AND d.qbo_id = record_deletion_pushed.qbo_id
$$;

-- A pushed invoice's lines get the Ids QBO gave them: QBO answers with the sales lines in the
-- order they were sent (`line_ids`, one per local line in line_number order). Only while the
-- invoice is still at the version pushed (`version`): lines changed meanwhile no longer match
-- QBO's by position (they go with the next push, which sends every line).
DROP FUNCTION IF EXISTS qbo_sync.record_pushed_lines(uuid, uuid, text[]);
CREATE OR REPLACE FUNCTION qbo_sync.record_pushed_lines(
    organization_id uuid, invoice_id uuid, line_ids text[], version bigint
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    IF NOT EXISTS (SELECT FROM public.invoice_record AS i
                    WHERE i.organization_id = record_pushed_lines.organization_id
                      AND i.id = record_pushed_lines.invoice_id
                      AND i.qbo_local_version <= version) THEN
        RETURN 0;
    END IF;
    WITH ordered AS (
        SELECT l.id, row_number() OVER (ORDER BY l.line_number, l.id) AS n
          FROM public.invoice_line_item AS l
         WHERE l.organization_id = record_pushed_lines.organization_id
           AND l.invoice_id = record_pushed_lines.invoice_id
    )
    UPDATE public.invoice_line_item AS l
       SET qbo_line_id = line_ids[o.n], updated_at = now()
      FROM ordered AS o
     WHERE l.id = o.id AND o.n <= cardinality(line_ids)
       AND l.qbo_line_id IS DISTINCT FROM line_ids[o.n];
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- Pushing local changes to QBO (plpython/qbo_sync_db/push.py sends; these functions read and
-- record). A row needs a push when qbo_local_version > qbo_synced_version (change tracking,
-- 030). A create's requestid is stored with the row before the request is sent and reused on
-- every retry, so QBO can answer a resent create with the object it already made.

-- Up to `max_rows` rows of `entity` waiting to be pushed (oldest change first), as JSON objects
-- of every column, with "<column>_qbo_id" for each reference and the version read (so what is
-- recorded as pushed is what was sent), leaving out the rows in `skip` (held this time). Rows
-- with a recorded push error are skipped until they change again or are retried.
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
           AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status <> 'error'
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
           AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status <> 'error'
           AND NOT (t.id = ANY (skip))
         ORDER BY t.updated_at, t.id
         LIMIT max_rows;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT to_jsonb(t) FROM public.%I AS t
          WHERE t.organization_id = $1 AND t.qbo_local_version > t.qbo_synced_version
            AND t.qbo_deleted_at IS NULL AND t.qbo_sync_status <> ''error''
            AND NOT (t.id = ANY ($3))
          ORDER BY t.updated_at, t.id
          LIMIT $2', target.app_table)
    USING organization_id, max_rows, skip;
END
$$;

-- The requestid of a row's create: the stored one, or a new one stored now (the caller commits
-- before sending).
CREATE OR REPLACE FUNCTION qbo_sync.create_requestid(organization_id uuid, entity text, row_id uuid)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    requestid uuid;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format('UPDATE public.%I AS t SET qbo_request_id = coalesce(t.qbo_request_id, gen_random_uuid())
                     WHERE t.organization_id = $1 AND t.id = $2 RETURNING t.qbo_request_id',
                   (qbo_sync.entity_row(entity)).app_table)
       INTO requestid USING organization_id, row_id;
    RETURN requestid;
END
$$;

-- What QBO answered to a push of a row (its version `version` as it was read): QBO's Id,
-- SyncToken, timestamps and the object; the row is synced up to that version (a change made
-- while it was being pushed stays pending). QBO's read-only values (balances) are taken too.
CREATE OR REPLACE FUNCTION qbo_sync.record_pushed(
    organization_id uuid, entity text, row_id uuid, version bigint, pushed jsonb, columns text[]
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
    PERFORM qbo_sync.check_business_columns(target.app_table, columns);
    PERFORM qbo_sync.begin_applying_remote();
    SELECT coalesce(string_agg(format(', %1$I = p.%1$I', c), ''), '') INTO sets FROM unnest(columns) AS c;
    EXECUTE format(
        'UPDATE public.%1$I AS t
            SET qbo_id = p.qbo_id, qbo_sync_token = p.qbo_sync_token,
                qbo_created_at = p.qbo_created_at, qbo_updated_at = p.qbo_updated_at,
                qbo_raw = $4 -> ''qbo_raw'', qbo_last_synced_at = now(), qbo_request_id = NULL,
                qbo_synced_version = greatest(t.qbo_synced_version, $3),
                qbo_sync_status = CASE WHEN t.qbo_local_version > $3 THEN ''pending'' ELSE ''synced'' END,
                qbo_sync_error = NULL %2$s
           FROM jsonb_populate_record(NULL::public.%1$I, $4) AS p
          WHERE t.organization_id = $1 AND t.id = $2
         RETURNING true', target.app_table, sets)
       INTO done USING organization_id, row_id, version, pushed;
    RETURN coalesce(done, false);
END
$$;

-- A row the push did not send through: refused by QBO (a validation or business fault,
-- `refused`), it is marked 'error' with QBO's message and skipped by later pushes until it changes
-- again; held (what it references is not in QBO yet), it stays pending with the reason and is
-- tried again on the next push. Either way the other rows go on.
CREATE OR REPLACE FUNCTION qbo_sync.record_push_problem(
    organization_id uuid, entity text, row_id uuid, message text, refused boolean
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format('UPDATE public.%I AS t
                       SET qbo_sync_status = CASE WHEN $4 THEN ''error'' ELSE t.qbo_sync_status END,
                           qbo_sync_error = $3
                     WHERE t.organization_id = $1 AND t.id = $2',
                   (qbo_sync.entity_row(entity)).app_table)
       USING organization_id, row_id, left(message, 2000), refused;
END
$$;

-- A pushed invoice's lines get the Ids QBO gave them: QBO answers with the sales lines in the
-- order they were sent (`line_ids`, one per local line in line_number order).
CREATE OR REPLACE FUNCTION qbo_sync.record_pushed_lines(organization_id uuid, invoice_id uuid, line_ids text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
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

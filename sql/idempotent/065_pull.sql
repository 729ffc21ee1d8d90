-- Applying what a pull read from QBO to the application's tables (plpython/qbo_sync_db/pull.py
-- reads and maps; these functions write). Set-based: one statement per table per page, whatever
-- the page's size. Every write here is the sync's own (qbo_sync.begin_applying_remote), so change
-- tracking marks nothing for push: no echo.
--
-- Rules for a pulled object:
-- * new here → inserted, synced;
-- * here, unchanged locally, and QBO's SyncToken is newer than the stored one → updated;
-- * the same SyncToken (an echo of our own write, or a page read twice) or an older one (an
--   event that arrived late) → left alone: older data never overwrites newer; but what QBO
--   computes (a customer's balance, an invoice's) may move without a new SyncToken, so with the
--   same SyncToken those columns (not the entity's synced columns) are refreshed when they differ;
-- * here with a local change not pushed yet → left alone, counted as held and reported in
--   held_ids: the pull merges it field by field (067_conflicts.sql, qbo_sync_db.conflicts); a
--   pulled change never overwrites a local one without that merge;
-- * here and waiting for a person's decision on a conflict (status 'conflict') → left alone,
--   counted as held and reported in conflict_ids (the held conflict records QBO's newer values).
-- Owner-only, like everything in schema qbo_sync.

-- Whether SyncToken a is newer than b (both decimal strings; QBO counts them up).
CREATE OR REPLACE FUNCTION qbo_sync.sync_token_newer(a text, b text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN b IS NULL OR b !~ '^[0-9]{1,18}$' THEN true
                WHEN a IS NULL OR a !~ '^[0-9]{1,18}$' THEN false
                ELSE a::bigint > b::bigint END
$$;

-- The registry row of an entity, or a clear error.
CREATE OR REPLACE FUNCTION qbo_sync.entity_row(entity_name text)
RETURNS qbo_sync.entity
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    registered qbo_sync.entity;
BEGIN
    SELECT * INTO registered FROM qbo_sync.entity AS e WHERE e.entity = entity_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown entity "%"', entity_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'one of: ' || array_to_string(qbo_sync.entity_names(), ', ');
    END IF;
    RETURN registered;
END
$$;

-- The engine writes only business columns: each must be a column of the application table, and
-- none of qbo-sync's bookkeeping (id, organization_id, qbo_*), which it sets itself.
CREATE OR REPLACE FUNCTION qbo_sync.check_business_columns(app_table text, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad text;
BEGIN
    SELECT c INTO bad
      FROM unnest(columns) AS c
     WHERE c IN ('id', 'organization_id') OR c LIKE 'qbo\_%'
        OR NOT EXISTS (SELECT FROM pg_attribute AS a
                        WHERE a.attrelid = format('public.%I', app_table)::regclass
                          AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION '"%" is not a business column of %', bad, app_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Upsert one page of pulled objects of `entity` for an organization. `objects` is a JSON array of
-- rows as qbo_sync_db.mapping.from_qbo makes them (column → value, qbo_id, qbo_sync_token,
-- qbo_created_at, qbo_updated_at, qbo_raw); `columns` the business columns to write (each must be
-- a column of the table, and none of qbo-sync's bookkeeping); `refs` maps a reference column to
-- the entity it points at ({"customer_id": "customers"}): its value is looked up from the
-- object's "<column>_qbo_id". `raw`, when given, is the array of QBO's objects themselves, in
-- the same order as `objects` (a full pull passes the list out of QBO's answer as it came, so
-- the rows need not carry a re-encoded copy); each object's is its row's qbo_raw. The written
-- invoices' lines are applied from those objects (qbo_sync.apply_pulled_lines). Returns counts
-- and the QBO ids written.
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled(uuid, text, jsonb, text[], jsonb);
-- d2b0b07 mapped full pulls' pages in SQL; measured, it was not worth a second copy of the
-- mapping (docs/benchmarks.md, "Pages mapped in SQL"), and a database that installed it loses it
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled(uuid, text, jsonb, text[], jsonb, jsonb, boolean);
DROP FUNCTION IF EXISTS qbo_sync.pulled_customers(jsonb);
DROP FUNCTION IF EXISTS qbo_sync.pulled_items(jsonb);
DROP FUNCTION IF EXISTS qbo_sync.pulled_invoices(jsonb);
DROP FUNCTION IF EXISTS qbo_sync.pulled_payments(jsonb);
CREATE OR REPLACE FUNCTION qbo_sync.apply_pulled(
    organization_id uuid, entity text, objects jsonb, columns text[], refs jsonb DEFAULT '{}',
    raw jsonb DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'  -- a page of 1000 objects with their raw JSON is sorted in memory, not on disk
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
    ref_column text;
    ref_entity text;
    insert_columns text := '';
    select_values text := '';
    update_sets text := '';
    computed_sets text;
    computed_old text;
    computed_new text;
    refresh text := '';
    result jsonb;
BEGIN
    IF jsonb_typeof(objects) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'apply_pulled needs a JSON array of objects' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF raw IS NOT NULL AND (jsonb_typeof(raw) IS DISTINCT FROM 'array'
                            OR jsonb_array_length(raw) <> jsonb_array_length(objects)) THEN
        RAISE EXCEPTION 'apply_pulled''s raw objects must be an array as long as its rows'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM qbo_sync.check_business_columns(target.app_table,
                                            columns || ARRAY(SELECT jsonb_object_keys(refs)));
    PERFORM qbo_sync.begin_applying_remote();

    SELECT string_agg(format('%I', c), ', '), string_agg(format('i.%I', c), ', '),
           string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ')
      INTO insert_columns, select_values, update_sets
      FROM unnest(columns) AS c;
    FOR ref_column, ref_entity IN SELECT key, value FROM jsonb_each_text(refs) LOOP
        insert_columns := insert_columns || format(', %I', ref_column);
        select_values := select_values || format(
            ', (SELECT r.id FROM public.%I AS r WHERE r.organization_id = $1 AND r.qbo_id = i.doc ->> %L)',
            (qbo_sync.entity_row(ref_entity)).app_table, ref_column || '_qbo_id');
        update_sets := update_sets || format(', %1$I = EXCLUDED.%1$I', ref_column);
    END LOOP;
    -- what QBO computes: the columns written that are not synced ones (balances, totals)
    SELECT string_agg(format('%1$I = i.%1$I', c), ', '), string_agg(format('t.%I', c), ', '),
           string_agg(format('i.%I', c), ', ')
      INTO computed_sets, computed_old, computed_new
      FROM unnest(columns) AS c
     WHERE NOT (c = ANY (target.synced_columns));
    IF computed_sets IS NOT NULL THEN
        refresh := format($r$, refreshed AS (
            UPDATE public.%1$I AS t
               SET %2$s, qbo_raw = i.raw_object, qbo_last_synced_at = now(), updated_at = now()
              FROM incoming AS i
             WHERE t.organization_id = $1 AND t.qbo_id = i.qbo_id
               AND t.qbo_sync_token IS NOT DISTINCT FROM i.qbo_sync_token
               AND ROW(%3$s) IS DISTINCT FROM ROW(%4$s)
            RETURNING t.qbo_id)$r$, target.app_table, computed_sets, computed_old, computed_new);
    ELSE
        refresh := ', refreshed AS (SELECT NULL::text AS qbo_id WHERE false)';
    END IF;

    EXECUTE format($sql$
        WITH incoming AS (
            SELECT DISTINCT ON (r.qbo_id) e.doc, r.*, coalesce(w.object, r.qbo_raw) AS raw_object
              FROM jsonb_array_elements($2) WITH ORDINALITY AS e(doc, n)
             CROSS JOIN LATERAL jsonb_populate_record(NULL::public.%1$I, e.doc) AS r
              LEFT JOIN jsonb_array_elements($3) WITH ORDINALITY AS w(object, n) ON w.n = e.n
             WHERE r.qbo_id IS NOT NULL
             ORDER BY r.qbo_id, length(e.doc ->> 'qbo_sync_token') DESC, e.doc ->> 'qbo_sync_token' DESC
        ), written AS (
            INSERT INTO public.%1$I AS t
                (organization_id, %2$s, qbo_id, qbo_sync_token, qbo_created_at, qbo_updated_at,
                 qbo_raw, qbo_last_synced_at, qbo_sync_status, qbo_sync_error, qbo_deleted_at,
                 qbo_local_version, qbo_synced_version)
            SELECT $1, %3$s, i.qbo_id, i.qbo_sync_token, i.qbo_created_at, i.qbo_updated_at,
                   i.raw_object, now(), 'synced', NULL, NULL, 1, 1
              FROM incoming AS i
            ON CONFLICT (organization_id, qbo_id) DO UPDATE
               SET %4$s, qbo_sync_token = EXCLUDED.qbo_sync_token,
                   qbo_created_at = EXCLUDED.qbo_created_at, qbo_updated_at = EXCLUDED.qbo_updated_at,
                   qbo_raw = EXCLUDED.qbo_raw, qbo_last_synced_at = now(), qbo_sync_status = 'synced',
                   qbo_sync_error = NULL, qbo_deleted_at = NULL, qbo_synced_version = t.qbo_local_version,
                   updated_at = now()
             WHERE t.qbo_local_version <= t.qbo_synced_version AND t.qbo_sync_status <> 'conflict'
               AND qbo_sync.sync_token_newer(EXCLUDED.qbo_sync_token, t.qbo_sync_token)
            RETURNING t.qbo_id, (t.xmax = 0) AS inserted
        ), held AS (
            SELECT i.qbo_id, t.qbo_local_version > t.qbo_synced_version AS changed_here
              FROM incoming AS i
              JOIN public.%1$I AS t ON t.organization_id = $1 AND t.qbo_id = i.qbo_id
             WHERE (t.qbo_local_version > t.qbo_synced_version OR t.qbo_sync_status = 'conflict')
               AND qbo_sync.sync_token_newer(i.qbo_sync_token, t.qbo_sync_token)
        ) %5$s
        SELECT jsonb_build_object(
                   'received', (SELECT count(*) FROM incoming),
                   'inserted', (SELECT count(*) FROM written WHERE inserted),
                   'updated', (SELECT count(*) FROM written WHERE NOT inserted)
                              + (SELECT count(*) FROM refreshed),
                   'held', (SELECT count(*) FROM held),
                   'held_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM held WHERE changed_here),
                   'conflict_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM held WHERE NOT changed_here),
                   'written_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM written))
    $sql$, target.app_table, insert_columns, select_values, update_sets, refresh)
    INTO result USING organization_id, objects, raw;
    IF entity = 'invoices' AND jsonb_array_length(result -> 'written_ids') > 0 THEN
        -- the written invoices' lines, read from the invoice objects themselves
        result := result || jsonb_build_object('lines_written', qbo_sync.apply_pulled_lines(
            organization_id, ARRAY(SELECT jsonb_array_elements_text(result -> 'written_ids')), NULL,
            coalesce(raw, (SELECT jsonb_agg(e.doc -> 'qbo_raw' ORDER BY e.n)
                             FROM jsonb_array_elements(objects) WITH ORDINALITY AS e(doc, n)))));
    END IF;
    RETURN result || jsonb_build_object(
        'unchanged', (result ->> 'received')::integer - (result ->> 'inserted')::integer
                     - (result ->> 'updated')::integer - (result ->> 'held')::integer);
END
$$;

-- The sales lines of QBO invoice objects (`invoices`, a JSON array) as line rows: what
-- qbo_sync_db.mapping.invoice_lines makes of them in Python, here so a pull's lines are read from
-- the invoices' JSON the pull already parsed instead of being mapped and sent again (a test
-- compares the two on every seeded invoice and on edge cases). Subtotal, discount and
-- description-only lines are not the application's lines; the position counts sales lines only.
CREATE OR REPLACE FUNCTION qbo_sync.invoice_lines_of(invoices jsonb)
RETURNS TABLE (invoice_qbo_id text, qbo_line_id text, line_number integer, item_qbo_id text,
               description text, quantity numeric, unit_price numeric, amount numeric,
               tax_code_ref text, service_date date, detail_type text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT inv.doc ->> 'Id',
           s.line ->> 'Id',
           CASE WHEN s.line -> 'LineNum' IS NULL OR s.line -> 'LineNum' IN ('null', '0', '""', 'false')
                THEN (SELECT count(*)::integer  -- the position among sales lines (QBO sends LineNum)
                        FROM jsonb_array_elements(inv.doc -> 'Line') WITH ORDINALITY AS p(line, n)
                       WHERE p.n <= s.n AND p.line ->> 'DetailType' = 'SalesItemLineDetail')
                ELSE trunc((s.line ->> 'LineNum')::numeric)::integer END,
           s.line #>> '{SalesItemLineDetail,ItemRef,value}',
           s.line ->> 'Description',
           coalesce(nullif(s.line #>> '{SalesItemLineDetail,Qty}', '')::numeric, 1),
           coalesce(nullif(s.line #>> '{SalesItemLineDetail,UnitPrice}', '')::numeric,
                    nullif(s.line ->> 'Amount', '')::numeric, 0),
           coalesce(nullif(s.line ->> 'Amount', '')::numeric, 0),
           s.line #>> '{SalesItemLineDetail,TaxCodeRef,value}',
           (s.line #>> '{SalesItemLineDetail,ServiceDate}')::date,
           'SalesItemLineDetail'
      FROM jsonb_array_elements(invoices) AS inv(doc)
     CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(inv.doc -> 'Line')
                                             WHEN 'array' THEN inv.doc -> 'Line' ELSE '[]' END)
           WITH ORDINALITY AS s(line, n)
     WHERE s.line ->> 'DetailType' = 'SalesItemLineDetail'
$$;

-- The lines of pulled invoices whose rows were just written (`invoice_qbo_ids`): each line is
-- matched by its QBO line Id (updated in place), new ones are inserted, and lines QBO no longer
-- has are deleted. The lines come from `lines`, a JSON array of line rows
-- (qbo_sync_db.mapping.invoice_lines) with "invoice_qbo_id" and "item_id_qbo_id", or from
-- `invoices`, QBO's invoice objects (qbo_sync.invoice_lines_of). Returns how many lines were
-- written.
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled_lines(uuid, text[], jsonb);
CREATE OR REPLACE FUNCTION qbo_sync.apply_pulled_lines(
    organization_id uuid, invoice_qbo_ids text[], lines jsonb, invoices jsonb DEFAULT NULL
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    -- An invoice with no lines here yet (the common case of a first pull) has nothing to match
    -- or remove: its lines are inserted plainly, without ON CONFLICT's speculative insertion.
    WITH invoices AS (
        SELECT inv.id, inv.qbo_id,
               NOT EXISTS (SELECT FROM public.invoice_line_item AS l WHERE l.invoice_id = inv.id) AS fresh
          FROM public.invoice_record AS inv
         WHERE inv.organization_id = apply_pulled_lines.organization_id
           AND inv.qbo_id = ANY (invoice_qbo_ids)
    ), incoming AS (
        SELECT inv.id AS invoice_id, inv.fresh, r.qbo_line_id, r.line_number, it.id AS item_record_id,
               r.description, r.quantity, r.unit_price, r.amount, r.tax_code_ref, r.service_date,
               r.detail_type
          FROM (SELECT e.doc ->> 'invoice_qbo_id' AS invoice_qbo_id,
                       e.doc ->> 'item_id_qbo_id' AS item_qbo_id, p.qbo_line_id, p.line_number,
                       p.description, p.quantity, p.unit_price, p.amount, p.tax_code_ref,
                       p.service_date, p.detail_type
                  FROM jsonb_array_elements(lines) AS e(doc)
                 CROSS JOIN LATERAL jsonb_populate_record(NULL::public.invoice_line_item, e.doc) AS p
                UNION ALL
                SELECT o.invoice_qbo_id, o.item_qbo_id, o.qbo_line_id, o.line_number, o.description,
                       o.quantity, o.unit_price, o.amount, o.tax_code_ref, o.service_date,
                       o.detail_type
                  FROM qbo_sync.invoice_lines_of(invoices) AS o) AS r
          JOIN invoices AS inv ON inv.qbo_id = r.invoice_qbo_id
          LEFT JOIN public.item_record AS it
            ON it.organization_id = apply_pulled_lines.organization_id
           AND it.qbo_id = r.item_qbo_id
         WHERE r.qbo_line_id IS NOT NULL
    ), removed AS (
        -- by the line table's invoice index (a join here was planned as a scan of every
        -- organization's lines, once a page)
        DELETE FROM public.invoice_line_item AS l
         WHERE l.invoice_id = ANY (ARRAY(SELECT inv.id FROM invoices AS inv WHERE NOT inv.fresh))
           AND NOT EXISTS (SELECT FROM incoming AS i
                            WHERE i.invoice_id = l.invoice_id AND i.qbo_line_id = l.qbo_line_id)
        RETURNING l.id
    ), added AS (
        INSERT INTO public.invoice_line_item
            (organization_id, invoice_id, qbo_line_id, line_number, item_id, description, quantity,
             unit_price, amount, tax_code_ref, service_date, detail_type)
        SELECT apply_pulled_lines.organization_id, i.invoice_id, i.qbo_line_id, i.line_number,
               i.item_record_id, i.description, i.quantity, i.unit_price, i.amount, i.tax_code_ref,
               i.service_date, i.detail_type
          FROM incoming AS i
         WHERE i.fresh
        RETURNING 1
    ), matched AS (
        INSERT INTO public.invoice_line_item AS l
            (organization_id, invoice_id, qbo_line_id, line_number, item_id, description, quantity,
             unit_price, amount, tax_code_ref, service_date, detail_type)
        SELECT apply_pulled_lines.organization_id, i.invoice_id, i.qbo_line_id, i.line_number,
               i.item_record_id, i.description, i.quantity, i.unit_price, i.amount, i.tax_code_ref,
               i.service_date, i.detail_type
          FROM incoming AS i
         WHERE NOT i.fresh
        ON CONFLICT (invoice_id, qbo_line_id) DO UPDATE
           SET line_number = EXCLUDED.line_number, item_id = EXCLUDED.item_id,
               description = EXCLUDED.description, quantity = EXCLUDED.quantity,
               unit_price = EXCLUDED.unit_price, amount = EXCLUDED.amount,
               tax_code_ref = EXCLUDED.tax_code_ref, service_date = EXCLUDED.service_date,
               detail_type = EXCLUDED.detail_type, updated_at = now()
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM added) + (SELECT count(*) FROM matched) INTO written;
    RETURN written;
END
$$;

-- Which of these QBO ids of `entity` the organization already has (a pull fetches the others
-- first, so the objects that reference them can be linked).
CREATE OR REPLACE FUNCTION qbo_sync.known_qbo_ids(organization_id uuid, entity text, qbo_ids text[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known text[];
BEGIN
    EXECUTE format('SELECT coalesce(array_agg(t.qbo_id), ''{}'') FROM public.%I AS t
                     WHERE t.organization_id = $1 AND t.qbo_id = ANY ($2)',
                   (qbo_sync.entity_row(entity)).app_table)
       INTO known USING organization_id, qbo_ids;
    RETURN known;
END
$$;

-- Objects QBO deleted (CDC's tombstones): the rows stay, marked (qbo_deleted_at), unless a local
-- change waits to be pushed or a person's decision on a conflict (then they are held, like a held
-- update). Returns how many were marked.
CREATE OR REPLACE FUNCTION qbo_sync.apply_pulled_deletions(organization_id uuid, entity text, qbo_ids text[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    marked integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format('UPDATE public.%I AS t
                       SET qbo_deleted_at = now(), qbo_last_synced_at = now(), qbo_sync_status = ''synced''
                     WHERE t.organization_id = $1 AND t.qbo_id = ANY ($2) AND t.qbo_deleted_at IS NULL
                       AND t.qbo_local_version <= t.qbo_synced_version AND t.qbo_sync_status <> ''conflict''',
                   (qbo_sync.entity_row(entity)).app_table)
       USING organization_id, qbo_ids;
    GET DIAGNOSTICS marked = ROW_COUNT;
    RETURN marked;
END
$$;

-- Before 0.4's release a full pull judged deletions page by page, by Id ranges; that relied on
-- QBO ordering Ids as numbers, which Intuit does not document.
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled_absent(uuid, text, text[], text, text);

-- The QBO Ids a page of a full pass read (`starts`: the pass's first page, which forgets what an
-- abandoned earlier pass had read).
CREATE OR REPLACE FUNCTION qbo_sync.record_pass_seen(
    organization_id uuid, entity text, qbo_ids text[], starts boolean
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF starts THEN
        DELETE FROM qbo_sync.pull_pass_seen AS s
         WHERE s.organization_id = record_pass_seen.organization_id AND s.entity = record_pass_seen.entity;
    END IF;
    -- A row this transaction synced (qbo_last_synced_at >= now(), and the pass started at or
    -- before now()) is never judged by finish_pass_absent: only the others need remembering,
    -- which on a first pull is none of them.
    EXECUTE format($sql$
        INSERT INTO qbo_sync.pull_pass_seen (organization_id, entity, qbo_id)
        SELECT $1, $2, i
          FROM unnest($3) AS i
         WHERE i IS NOT NULL
           AND NOT EXISTS (SELECT FROM public.%I AS t
                            WHERE t.organization_id = $1 AND t.qbo_id = i
                              AND t.qbo_last_synced_at >= now())
        ON CONFLICT DO NOTHING$sql$, (qbo_sync.entity_row(entity)).app_table)
    USING organization_id, entity, qbo_ids;
END
$$;

-- The end of a full pass: every object QBO had when the pass started was read by one of its
-- pages (STARTPOSITION paging with an overlap, so nothing is skipped), so a row linked to a QBO
-- Id the pass never read was deleted in QBO: marked, like CDC's deletions. Not marked: a row the
-- sync wrote since the pass started (created in QBO by a push meanwhile, say), one with a local
-- change waiting, one waiting for a person. Returns how many were marked.
CREATE OR REPLACE FUNCTION qbo_sync.finish_pass_absent(
    organization_id uuid, entity text, started_at timestamptz
)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    marked integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format('UPDATE public.%I AS t
                       SET qbo_deleted_at = now(), qbo_last_synced_at = now(), qbo_sync_status = ''synced''
                     WHERE t.organization_id = $1 AND t.qbo_deleted_at IS NULL AND t.qbo_id IS NOT NULL
                       AND t.qbo_last_synced_at < $3
                       AND t.qbo_local_version <= t.qbo_synced_version AND t.qbo_sync_status <> ''conflict''
                       AND NOT EXISTS (SELECT FROM qbo_sync.pull_pass_seen AS s
                                        WHERE s.organization_id = $1 AND s.entity = $2
                                          AND s.qbo_id = t.qbo_id)',
                   (qbo_sync.entity_row(entity)).app_table)
       USING organization_id, entity, started_at;
    GET DIAGNOSTICS marked = ROW_COUNT;
    DELETE FROM qbo_sync.pull_pass_seen AS s
     WHERE s.organization_id = finish_pass_absent.organization_id AND s.entity = finish_pass_absent.entity;
    RETURN marked;
END
$$;

-- Where an organization's pulls of an entity stand: a full pass under way (its start and the
-- STARTPOSITION of its next page), the point incremental pulls continue from (as seconds since
-- the epoch), NULL when a full pass is needed: never pulled, a pass under way, the point older
-- than CDC reaches back (pull.cdc_max_days), or a full pass asked for; and when the CDC request
-- that last brought it up to date was sent (a pull job queued before then has nothing to do).
DROP FUNCTION IF EXISTS qbo_sync.pull_cursor(uuid, text);
CREATE OR REPLACE FUNCTION qbo_sync.pull_cursor(organization_id uuid, entity text)
RETURNS TABLE (started_at text, next_position integer, changed_since double precision,
               requested_at text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.full_pass_started_at::text, c.full_pass_position,
           CASE WHEN c.full_pass_position IS NULL AND NOT coalesce(c.full_pass_needed, false)
                     AND c.last_changed_since > now() - make_interval(
                             days => qbo_sync.setting_numeric('pull.cdc_max_days')::integer)
                THEN extract(epoch FROM c.last_changed_since)::double precision END,
           c.incremental_requested_at::text
      FROM (SELECT) AS one
      LEFT JOIN public.qbo_sync_cursor AS c
        ON c.organization_id = pull_cursor.organization_id AND c.entity = pull_cursor.entity
$$;

-- The other entities of an organization that an incremental pull may bring up to date in the
-- same CDC call: those whose own cursor allows CDC (pull_cursor's changed_since), with it.
CREATE OR REPLACE FUNCTION qbo_sync.cdc_companions(organization_id uuid, entity text)
RETURNS TABLE (entity text, changed_since double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.entity, c.changed_since
      FROM qbo_sync.entity AS e
     CROSS JOIN LATERAL qbo_sync.pull_cursor(cdc_companions.organization_id, e.entity) AS c
     WHERE e.entity <> cdc_companions.entity AND c.changed_since IS NOT NULL
     ORDER BY e.dependency_order, e.entity
$$;

-- Record where an incremental pull got to (in the transaction that applied its changes), whether
-- a full pass is needed next (CDC capped its answer, so deletions may be missing), and when its
-- request was sent (NULL: leave it).
DROP FUNCTION IF EXISTS qbo_sync.save_incremental_pull(uuid, text, timestamptz, boolean);
CREATE OR REPLACE FUNCTION qbo_sync.save_incremental_pull(
    organization_id uuid, entity text, changed_since timestamptz, full_pass_needed boolean,
    requested_at timestamptz DEFAULT NULL
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.qbo_sync_cursor AS c
        (organization_id, entity, last_changed_since, last_pull_at, full_pass_needed,
         incremental_requested_at)
    VALUES (organization_id, entity, changed_since, now(), full_pass_needed, requested_at)
    ON CONFLICT ON CONSTRAINT qbo_sync_cursor_pkey DO UPDATE
       SET last_changed_since = greatest(c.last_changed_since, EXCLUDED.last_changed_since),
           last_pull_at = now(),
           full_pass_needed = coalesce(c.full_pass_needed, false) OR EXCLUDED.full_pass_needed,
           incremental_requested_at = greatest(c.incremental_requested_at,
                                               EXCLUDED.incremental_requested_at)
$$;

-- Record a full pull's progress (in the transaction that applied the page), or its end
-- (next_position NULL): then the pass's start is the time CDC continues from.
CREATE OR REPLACE FUNCTION qbo_sync.save_full_pull(
    organization_id uuid, entity text, started_at timestamptz, next_position integer
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.qbo_sync_cursor AS c
        (organization_id, entity, full_pass_started_at, full_pass_position, last_pull_at,
         last_full_sync_at, last_changed_since, incremental_requested_at)
    VALUES (organization_id, entity, started_at, next_position, now(),
            CASE WHEN next_position IS NULL THEN started_at END,
            CASE WHEN next_position IS NULL THEN started_at END,
            CASE WHEN next_position IS NULL THEN started_at END)
    ON CONFLICT ON CONSTRAINT qbo_sync_cursor_pkey DO UPDATE
       SET full_pass_started_at = CASE WHEN EXCLUDED.full_pass_position IS NULL THEN NULL
                                       ELSE EXCLUDED.full_pass_started_at END,
           full_pass_position = EXCLUDED.full_pass_position,
           last_pull_at = now(),
           last_full_sync_at = coalesce(EXCLUDED.last_full_sync_at, c.last_full_sync_at),
           last_changed_since = coalesce(EXCLUDED.last_changed_since, c.last_changed_since),
           -- a finished pass read everything changed before it started
           incremental_requested_at = CASE WHEN EXCLUDED.full_pass_position IS NULL
                                           THEN greatest(c.incremental_requested_at, EXCLUDED.last_changed_since)
                                           ELSE c.incremental_requested_at END,
           full_pass_needed = c.full_pass_needed AND EXCLUDED.full_pass_position IS NOT NULL
$$;

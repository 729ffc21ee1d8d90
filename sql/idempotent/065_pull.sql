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

-- A full pull's page mapped in SQL: QBO's objects of one entity (a JSON array, as the query
-- answered) as the rows qbo_sync.apply_pulled writes, one per element and in order, each with its
-- object (`raw_object`, the row's qbo_raw) and the QBO Ids it references (`<column>_qbo_id`).
-- They make of each object what qbo_sync_db.mapping.from_qbo makes of it in Python, here so a
-- page is mapped from the answer the database parses anyway instead of being decoded, mapped and
-- encoded again in Python; tests/db/test_pull.py compares the two on every seeded object and on
-- edge cases. The kinds of value, as mapping.py converts them: a text is the JSON value's text;
-- an amount is numeric, '' none; a boolean is the decoded value's truth in Python (an empty
-- string, zero, {} and [] are false); an address keeps mapping.ADDRESS_KEYS' non-empty parts,
-- and is none when it has none. An element that is not an object gives a row without qbo_id,
-- which apply_pulled skips. The address and boolean expressions are written out where they are
-- used, not called: a helper function (which must pin its search_path) is never inlined, and the
-- call costs about 7 µs an address, twice what mapping it inline does (measured).
DROP FUNCTION IF EXISTS qbo_sync.pulled_rows(text, jsonb);
DROP FUNCTION IF EXISTS qbo_sync.qbo_decimal(jsonb);
DROP FUNCTION IF EXISTS qbo_sync.qbo_bool(jsonb);
DROP FUNCTION IF EXISTS qbo_sync.qbo_address(jsonb);

CREATE OR REPLACE FUNCTION qbo_sync.pulled_customers(objects jsonb)
RETURNS TABLE (display_name text, company_name text, given_name text, family_name text,
               email text, phone text, mobile text, billing_address jsonb,
               shipping_address jsonb, notes text, taxable boolean, currency_code text,
               is_active boolean, balance numeric, qbo_id text, qbo_sync_token text,
               qbo_created_at timestamptz, qbo_updated_at timestamptz, raw_object jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o ->> 'DisplayName', o ->> 'CompanyName', o ->> 'GivenName', o ->> 'FamilyName',
           o #>> '{PrimaryEmailAddr,Address}', o #>> '{PrimaryPhone,FreeFormNumber}',
           o #>> '{Mobile,FreeFormNumber}',
           nullif(jsonb_strip_nulls(jsonb_build_object(
               'Line1', nullif(b ->> 'Line1', ''), 'Line2', nullif(b ->> 'Line2', ''),
               'Line3', nullif(b ->> 'Line3', ''), 'Line4', nullif(b ->> 'Line4', ''),
               'Line5', nullif(b ->> 'Line5', ''), 'City', nullif(b ->> 'City', ''),
               'CountrySubDivisionCode', nullif(b ->> 'CountrySubDivisionCode', ''),
               'PostalCode', nullif(b ->> 'PostalCode', ''), 'Country', nullif(b ->> 'Country', ''))),
               '{}'),
           nullif(jsonb_strip_nulls(jsonb_build_object(
               'Line1', nullif(s ->> 'Line1', ''), 'Line2', nullif(s ->> 'Line2', ''),
               'Line3', nullif(s ->> 'Line3', ''), 'Line4', nullif(s ->> 'Line4', ''),
               'Line5', nullif(s ->> 'Line5', ''), 'City', nullif(s ->> 'City', ''),
               'CountrySubDivisionCode', nullif(s ->> 'CountrySubDivisionCode', ''),
               'PostalCode', nullif(s ->> 'PostalCode', ''), 'Country', nullif(s ->> 'Country', ''))),
               '{}'),
           o ->> 'Notes',
           coalesce(CASE jsonb_typeof(o -> 'Taxable')
                        WHEN 'boolean' THEN (o -> 'Taxable')::boolean
                        WHEN 'string' THEN o ->> 'Taxable' <> ''
                        WHEN 'number' THEN (o -> 'Taxable')::numeric <> 0
                        WHEN 'object' THEN o -> 'Taxable' <> '{}'
                        WHEN 'array' THEN o -> 'Taxable' <> '[]' END, false),
           o #>> '{CurrencyRef,value}',
           coalesce(CASE jsonb_typeof(o -> 'Active')
                        WHEN 'boolean' THEN (o -> 'Active')::boolean
                        WHEN 'string' THEN o ->> 'Active' <> ''
                        WHEN 'number' THEN (o -> 'Active')::numeric <> 0
                        WHEN 'object' THEN o -> 'Active' <> '{}'
                        WHEN 'array' THEN o -> 'Active' <> '[]' END, true),
           coalesce(nullif(o ->> 'Balance', '')::numeric, 0),
           o ->> 'Id', o ->> 'SyncToken', (o #>> '{MetaData,CreateTime}')::timestamptz,
           (o #>> '{MetaData,LastUpdatedTime}')::timestamptz, o
      FROM jsonb_array_elements(objects) AS e(o)
     CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(o -> 'BillAddr') WHEN 'object' THEN o -> 'BillAddr' END AS b,
                                CASE jsonb_typeof(o -> 'ShipAddr') WHEN 'object' THEN o -> 'ShipAddr' END AS s) AS a
$$;

CREATE OR REPLACE FUNCTION qbo_sync.pulled_items(objects jsonb)
RETURNS TABLE (name text, sku text, description text, item_type text, unit_price numeric,
               purchase_cost numeric, income_account_ref text, expense_account_ref text,
               taxable boolean, is_active boolean, qty_on_hand numeric, qbo_id text,
               qbo_sync_token text, qbo_created_at timestamptz, qbo_updated_at timestamptz,
               raw_object jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o ->> 'Name', o ->> 'Sku', o ->> 'Description', coalesce(o ->> 'Type', 'Service'),
           nullif(o ->> 'UnitPrice', '')::numeric, nullif(o ->> 'PurchaseCost', '')::numeric,
           o #>> '{IncomeAccountRef,value}', o #>> '{ExpenseAccountRef,value}',
           coalesce(CASE jsonb_typeof(o -> 'Taxable')
                        WHEN 'boolean' THEN (o -> 'Taxable')::boolean
                        WHEN 'string' THEN o ->> 'Taxable' <> ''
                        WHEN 'number' THEN (o -> 'Taxable')::numeric <> 0
                        WHEN 'object' THEN o -> 'Taxable' <> '{}'
                        WHEN 'array' THEN o -> 'Taxable' <> '[]' END, false),
           coalesce(CASE jsonb_typeof(o -> 'Active')
                        WHEN 'boolean' THEN (o -> 'Active')::boolean
                        WHEN 'string' THEN o ->> 'Active' <> ''
                        WHEN 'number' THEN (o -> 'Active')::numeric <> 0
                        WHEN 'object' THEN o -> 'Active' <> '{}'
                        WHEN 'array' THEN o -> 'Active' <> '[]' END, true),
           nullif(o ->> 'QtyOnHand', '')::numeric,
           o ->> 'Id', o ->> 'SyncToken', (o #>> '{MetaData,CreateTime}')::timestamptz,
           (o #>> '{MetaData,LastUpdatedTime}')::timestamptz, o
      FROM jsonb_array_elements(objects) AS e(o)
$$;

CREATE OR REPLACE FUNCTION qbo_sync.pulled_invoices(objects jsonb)
RETURNS TABLE (invoice_number text, txn_date date, due_date date, currency_code text,
               customer_memo text, private_note text, billing_email text, billing_address jsonb,
               shipping_address jsonb, sales_term_ref text, email_status text, print_status text,
               tax_total numeric, total_amount numeric, balance_due numeric, is_voided boolean,
               amount_paid numeric, status text, subtotal numeric, customer_id_qbo_id text,
               qbo_id text, qbo_sync_token text, qbo_created_at timestamptz,
               qbo_updated_at timestamptz, raw_object jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o ->> 'DocNumber', (o ->> 'TxnDate')::date, (o ->> 'DueDate')::date,
           o #>> '{CurrencyRef,value}', o #>> '{CustomerMemo,value}', o ->> 'PrivateNote',
           o #>> '{BillEmail,Address}',
           nullif(jsonb_strip_nulls(jsonb_build_object(
               'Line1', nullif(b ->> 'Line1', ''), 'Line2', nullif(b ->> 'Line2', ''),
               'Line3', nullif(b ->> 'Line3', ''), 'Line4', nullif(b ->> 'Line4', ''),
               'Line5', nullif(b ->> 'Line5', ''), 'City', nullif(b ->> 'City', ''),
               'CountrySubDivisionCode', nullif(b ->> 'CountrySubDivisionCode', ''),
               'PostalCode', nullif(b ->> 'PostalCode', ''), 'Country', nullif(b ->> 'Country', ''))),
               '{}'),
           nullif(jsonb_strip_nulls(jsonb_build_object(
               'Line1', nullif(s ->> 'Line1', ''), 'Line2', nullif(s ->> 'Line2', ''),
               'Line3', nullif(s ->> 'Line3', ''), 'Line4', nullif(s ->> 'Line4', ''),
               'Line5', nullif(s ->> 'Line5', ''), 'City', nullif(s ->> 'City', ''),
               'CountrySubDivisionCode', nullif(s ->> 'CountrySubDivisionCode', ''),
               'PostalCode', nullif(s ->> 'PostalCode', ''), 'Country', nullif(s ->> 'Country', ''))),
               '{}'),
           o #>> '{SalesTermRef,value}', o ->> 'EmailStatus', o ->> 'PrintStatus',
           coalesce(nullif(o #>> '{TxnTaxDetail,TotalTax}', '')::numeric, 0),
           v.total, nullif(o ->> 'Balance', '')::numeric, v.voided,
           -- mapping._invoice_derived: what was paid, a status, and the subtotal (the first
           -- SubTotalLine's amount, else the sales lines' sum)
           v.total - v.balance,
           CASE WHEN v.voided THEN 'voided'
                WHEN v.total > 0 AND v.balance = 0 THEN 'paid'
                WHEN 0 < v.balance AND v.balance < v.total THEN 'partially_paid'
                ELSE 'open' END,
           coalesce(
               (SELECT nullif(l.line ->> 'Amount', '')::numeric
                  FROM jsonb_array_elements(v.lines) WITH ORDINALITY AS l(line, n)
                 WHERE l.line ->> 'DetailType' = 'SubTotalLineDetail'
                 ORDER BY l.n LIMIT 1),
               (SELECT coalesce(sum(coalesce(nullif(l.line ->> 'Amount', '')::numeric, 0)), 0)
                  FROM jsonb_array_elements(v.lines) AS l(line)
                 WHERE l.line ->> 'DetailType' = 'SalesItemLineDetail')),
           o #>> '{CustomerRef,value}',
           o ->> 'Id', o ->> 'SyncToken', (o #>> '{MetaData,CreateTime}')::timestamptz,
           (o #>> '{MetaData,LastUpdatedTime}')::timestamptz, o
      FROM jsonb_array_elements(objects) AS e(o)
     CROSS JOIN LATERAL (
           SELECT CASE jsonb_typeof(o -> 'BillAddr') WHEN 'object' THEN o -> 'BillAddr' END AS b,
                  CASE jsonb_typeof(o -> 'ShipAddr') WHEN 'object' THEN o -> 'ShipAddr' END AS s,
                  CASE jsonb_typeof(o -> 'Line') WHEN 'array' THEN o -> 'Line' ELSE '[]' END AS lines,
                  t.total,
                  coalesce(nullif(o ->> 'Balance', '')::numeric, t.total) AS balance,
                  -- mapping.is_voided: QBO zeroes a voided transaction and notes "Voided"
                  t.total = 0 AND coalesce(o ->> 'PrivateNote', '') LIKE 'Voided%' AS voided
             FROM (SELECT coalesce(nullif(o ->> 'TotalAmt', '')::numeric, 0) AS total) AS t
         ) AS v
$$;

CREATE OR REPLACE FUNCTION qbo_sync.pulled_payments(objects jsonb)
RETURNS TABLE (amount numeric, payment_date date, payment_method_ref text, reference_number text,
               deposit_account_ref text, currency_code text, private_note text,
               unapplied_amount numeric, is_voided boolean, customer_id_qbo_id text,
               invoice_id_qbo_id text, qbo_id text, qbo_sync_token text,
               qbo_created_at timestamptz, qbo_updated_at timestamptz, raw_object jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(nullif(o ->> 'TotalAmt', '')::numeric, 0), (o ->> 'TxnDate')::date,
           o #>> '{PaymentMethodRef,value}', o ->> 'PaymentRefNum',
           o #>> '{DepositToAccountRef,value}', o #>> '{CurrencyRef,value}', o ->> 'PrivateNote',
           coalesce(nullif(o ->> 'UnappliedAmt', '')::numeric, 0),
           -- mapping.is_voided
           coalesce(nullif(o ->> 'TotalAmt', '')::numeric, 0) = 0
               AND coalesce(o ->> 'PrivateNote', '') LIKE 'Voided%',
           o #>> '{CustomerRef,value}',
           -- mapping.paid_invoice: the first line's first link to an Invoice
           (SELECT t.link ->> 'TxnId'
              FROM jsonb_array_elements(CASE jsonb_typeof(o -> 'Line')
                                            WHEN 'array' THEN o -> 'Line' ELSE '[]' END)
                   WITH ORDINALITY AS l(line, n)
             CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(l.line -> 'LinkedTxn')
                                                         WHEN 'array' THEN l.line -> 'LinkedTxn'
                                                         ELSE '[]' END)
                   WITH ORDINALITY AS t(link, m)
             WHERE t.link ->> 'TxnType' = 'Invoice' AND t.link ->> 'TxnId' IS NOT NULL
             ORDER BY l.n, t.m LIMIT 1),
           o ->> 'Id', o ->> 'SyncToken', (o #>> '{MetaData,CreateTime}')::timestamptz,
           (o #>> '{MetaData,LastUpdatedTime}')::timestamptz, o
      FROM jsonb_array_elements(objects) AS e(o)
$$;

-- Upsert one page of pulled objects of `entity` for an organization, in one of two forms:
-- * `objects`, a JSON array of rows as qbo_sync_db.mapping.from_qbo makes them (column → value,
--   qbo_id, qbo_sync_token, qbo_created_at, qbo_updated_at, qbo_raw, and "<column>_qbo_id" for
--   each reference), with `raw` (optional) the array of QBO's objects themselves in the same
--   order, each then its row's qbo_raw (objects fetched by Id, read from CDC, merged);
-- * `objects` null and `raw` QBO's objects: mapped here (qbo_sync.pulled_<entity>), as a full
--   pull's page is; the answer then also lists every object's QBO Id in order (`listed_ids`).
-- `columns` are the business columns to write (each a column of the table, none of qbo-sync's
-- bookkeeping); `refs` maps a reference column to the entity it points at
-- ({"customer_id": "customers"}), looked up by the row's "<column>_qbo_id". With
-- `check_references`, nothing is written when an object references one the organization does
-- not have yet (an invoice's lines their items too): the answer is then only those (`missing`:
-- entity → QBO ids), to be fetched first. The written invoices' lines are applied from their
-- objects (qbo_sync.apply_pulled_lines). Returns counts and the QBO ids written.
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled(uuid, text, jsonb, text[], jsonb);
DROP FUNCTION IF EXISTS qbo_sync.apply_pulled(uuid, text, jsonb, text[], jsonb, jsonb);
DROP FUNCTION IF EXISTS qbo_sync.missing_references(uuid, text, jsonb, jsonb, jsonb);
CREATE OR REPLACE FUNCTION qbo_sync.apply_pulled(
    organization_id uuid, entity text, objects jsonb, columns text[], refs jsonb DEFAULT '{}',
    raw jsonb DEFAULT NULL, check_references boolean DEFAULT false
)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'  -- a page of 1000 objects with their raw JSON is sorted in memory, not on disk
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
    mapped_here boolean := objects IS NULL;
    ref_column text;
    ref_entity text;
    source text;
    missing_rows text := 'SELECT NULL::text AS entity, NULL::text AS qbo_id WHERE false';
    insert_columns text := '';
    select_values text := '';
    update_sets text := '';
    computed_sets text;
    computed_old text;
    computed_new text;
    refresh text := '';
    result jsonb;
BEGIN
    IF mapped_here AND jsonb_typeof(raw) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'apply_pulled needs a JSON array of rows, or of QBO objects to map'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT mapped_here AND jsonb_typeof(objects) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'apply_pulled needs a JSON array of objects' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT mapped_here AND raw IS NOT NULL AND (jsonb_typeof(raw) IS DISTINCT FROM 'array'
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
    IF mapped_here THEN
        source := format('SELECT r.* FROM qbo_sync.%I($3) WITH ORDINALITY AS r', 'pulled_' || entity);
    ELSE
        source := format($s$
            SELECT r.*, coalesce(w.object, r.qbo_raw) AS raw_object %2$s
              FROM jsonb_array_elements($2) WITH ORDINALITY AS e(doc, n)
             CROSS JOIN LATERAL jsonb_populate_record(NULL::public.%1$I, e.doc) AS r
              LEFT JOIN jsonb_array_elements($3) WITH ORDINALITY AS w(object, n) ON w.n = e.n$s$,
            target.app_table,
            (SELECT string_agg(format(', e.doc ->> %L AS %I', k || '_qbo_id', k || '_qbo_id'), '')
               FROM jsonb_object_keys(refs) AS k));
    END IF;
    FOR ref_column, ref_entity IN SELECT key, value FROM jsonb_each_text(refs) LOOP
        insert_columns := insert_columns || format(', %I', ref_column);
        select_values := select_values || format(
            ', (SELECT r.id FROM public.%I AS r WHERE r.organization_id = $1 AND r.qbo_id = i.%I)',
            (qbo_sync.entity_row(ref_entity)).app_table, ref_column || '_qbo_id');
        update_sets := update_sets || format(', %1$I = EXCLUDED.%1$I', ref_column);
        missing_rows := missing_rows || format($m$
            UNION ALL
            SELECT %1$L, i.%2$I FROM incoming AS i
             WHERE i.%2$I IS NOT NULL
               AND NOT EXISTS (SELECT FROM public.%3$I AS t WHERE t.organization_id = $1 AND t.qbo_id = i.%2$I)$m$,
            ref_entity, ref_column || '_qbo_id', (qbo_sync.entity_row(ref_entity)).app_table);
    END LOOP;
    IF entity = 'invoices' THEN  -- the items its sales lines name (mapping.line_item_ids)
        missing_rows := missing_rows || $m$
            UNION ALL
            SELECT 'items', x.item
              FROM (SELECT DISTINCT l.line #>> '{SalesItemLineDetail,ItemRef,value}' AS item
                      FROM incoming AS i
                     CROSS JOIN LATERAL jsonb_array_elements(
                               CASE jsonb_typeof(i.raw_object -> 'Line')
                                   WHEN 'array' THEN i.raw_object -> 'Line' ELSE '[]' END) AS l(line)
                     WHERE l.line ->> 'DetailType' = 'SalesItemLineDetail') AS x
             WHERE x.item IS NOT NULL
               AND NOT EXISTS (SELECT FROM public.item_record AS t WHERE t.organization_id = $1 AND t.qbo_id = x.item)$m$;
    END IF;
    IF NOT check_references THEN
        missing_rows := 'SELECT NULL::text AS entity, NULL::text AS qbo_id WHERE false';
    END IF;
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
               AND NOT EXISTS (SELECT FROM missing)
            RETURNING t.qbo_id)$r$, target.app_table, computed_sets, computed_old, computed_new);
    ELSE
        refresh := ', refreshed AS (SELECT NULL::text AS qbo_id WHERE false)';
    END IF;

    EXECUTE format($sql$
        WITH mapped AS (%6$s
        ), incoming AS (
            SELECT DISTINCT ON (m.qbo_id) m.*
              FROM mapped AS m
             WHERE m.qbo_id IS NOT NULL
             ORDER BY m.qbo_id, length(m.qbo_sync_token) DESC, m.qbo_sync_token DESC
        ), missing AS (%7$s
        ), written AS (
            INSERT INTO public.%1$I AS t
                (organization_id, %2$s, qbo_id, qbo_sync_token, qbo_created_at, qbo_updated_at,
                 qbo_raw, qbo_last_synced_at, qbo_sync_status, qbo_sync_error, qbo_deleted_at,
                 qbo_local_version, qbo_synced_version)
            SELECT $1, %3$s, i.qbo_id, i.qbo_sync_token, i.qbo_created_at, i.qbo_updated_at,
                   i.raw_object, now(), 'synced', NULL, NULL, 1, 1
              FROM incoming AS i
             WHERE NOT EXISTS (SELECT FROM missing)
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
        SELECT CASE WHEN EXISTS (SELECT FROM missing) THEN
                   jsonb_build_object('missing', (SELECT jsonb_object_agg(m.entity, m.ids)
                                                    FROM (SELECT entity, jsonb_agg(DISTINCT qbo_id) AS ids
                                                            FROM missing GROUP BY entity) AS m))
               ELSE jsonb_build_object(
                   'received', (SELECT count(*) FROM incoming),
                   'inserted', (SELECT count(*) FROM written WHERE inserted),
                   'updated', (SELECT count(*) FROM written WHERE NOT inserted)
                              + (SELECT count(*) FROM refreshed),
                   'held', (SELECT count(*) FROM held),
                   'held_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM held WHERE changed_here),
                   'conflict_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM held WHERE NOT changed_here),
                   'written_ids', (SELECT coalesce(jsonb_agg(qbo_id), '[]') FROM written))
                   || %8$s
               END
    $sql$, target.app_table, insert_columns, select_values, update_sets, refresh, source,
           missing_rows,
           -- one per element (null for one without an Id): the page's length, for paging
           CASE WHEN mapped_here
                THEN $l$jsonb_build_object('listed_ids', (SELECT coalesce(jsonb_agg(m.qbo_id ORDER BY m.ordinality), '[]') FROM mapped AS m))$l$
                ELSE $l$'{}'::jsonb$l$ END)
    INTO result USING organization_id, objects, raw;
    IF result ? 'missing' THEN
        RETURN result;
    END IF;
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

-- The registry of synced entities (qbo_sync.entity): the one place that says which application
-- table holds an entity, its QBO name, the order pushes go in, and which columns are synced.
-- Change tracking (030), trigger_qbo_sync and the schedulers (050), webhook processing (070) and
-- the engine all read it. Re-applied by every install, so an upgrade can change the columns.

INSERT INTO qbo_sync.entity AS e
    (entity, app_table, qbo_entity, dependency_order, synced_columns,
     line_table, line_parent_column, line_synced_columns, delete_operation, handler)
VALUES
    ('items', 'item_record', 'Item', 1,
     ARRAY['name', 'sku', 'description', 'item_type', 'unit_price', 'purchase_cost',
           'income_account_ref', 'expense_account_ref', 'taxable', 'is_active'],
     NULL, NULL, NULL, 'deactivate', 'qbo_sync_db.engine:run'),
    ('customers', 'customer_profile', 'Customer', 2,
     ARRAY['display_name', 'company_name', 'given_name', 'family_name', 'email', 'phone', 'mobile',
           'billing_address', 'shipping_address', 'notes', 'taxable', 'currency_code', 'is_active'],
     NULL, NULL, NULL, 'deactivate', 'qbo_sync_db.engine:run'),
    ('invoices', 'invoice_record', 'Invoice', 3,
     ARRAY['customer_id', 'invoice_number', 'txn_date', 'due_date', 'currency_code', 'customer_memo',
           'private_note', 'billing_email', 'billing_address', 'shipping_address', 'sales_term_ref',
           'is_voided'],
     'invoice_line_item', 'invoice_id',
     ARRAY['invoice_id', 'line_number', 'item_id', 'description', 'quantity', 'unit_price', 'amount',
           'tax_code_ref', 'service_date', 'detail_type'],
     'delete', 'qbo_sync_db.engine:run'),
    ('payments', 'invoice_payment', 'Payment', 4,
     ARRAY['customer_id', 'invoice_id', 'amount', 'payment_date', 'payment_method_ref',
           'reference_number', 'deposit_account_ref', 'currency_code', 'private_note', 'is_voided'],
     NULL, NULL, NULL, 'delete', 'qbo_sync_db.engine:run')
ON CONFLICT (entity) DO UPDATE
   SET app_table = EXCLUDED.app_table, qbo_entity = EXCLUDED.qbo_entity,
       handler = EXCLUDED.handler,
       dependency_order = EXCLUDED.dependency_order, synced_columns = EXCLUDED.synced_columns,
       line_table = EXCLUDED.line_table, line_parent_column = EXCLUDED.line_parent_column,
       line_synced_columns = EXCLUDED.line_synced_columns,
       delete_operation = EXCLUDED.delete_operation;

-- The entities in push order (parents before the objects that reference them; items and
-- customers are independent, and go in that order).
CREATE OR REPLACE FUNCTION qbo_sync.entity_names()
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT array_agg(e.entity ORDER BY e.dependency_order, e.entity) FROM qbo_sync.entity AS e $$;

-- A value quoted for an error message, cut short so that a huge argument is not echoed back
-- (or written to the server log) in full.
CREATE OR REPLACE FUNCTION qbo_sync.quote_for_message(value text, max_chars integer DEFAULT 40)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN value IS NULL THEN 'NULL'
        WHEN length(value) <= max_chars THEN quote_literal(value)
        ELSE quote_literal(left(value, max_chars)) || format('... (%s characters)', length(value))
    END
$$;

-- Code that runs as the owner (pg_cron's jobs, the worker, the SECURITY DEFINER entry points)
-- reaches qbo-sync's tables in `public`, a schema another role may own (on PostgreSQL 15 the
-- database owner owns it) and so may DROP them and put a view or a table with its own triggers in
-- their place. Before such code touches them, it locks them (a replacement then has to wait for it)
-- and checks that each is still a table owned by qbo-sync's owner; `read_only` relations the
-- owner's code only reads (the application's tables, which the application may own) must be
-- tables, which run no code when read. Raises QS004, and changes nothing, when one is not.
CREATE OR REPLACE FUNCTION qbo_sync.lock_own_relations(read_only text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owned constant text[] := ARRAY['qbo_sync_queue', 'qbo_sync_history', 'qbo_webhook_log',
                                   'qbo_webhook_processed', 'qbo_connection', 'qbo_oauth_state',
                                   'qbo_sync_cursor', 'qbo_sync_conflict', 'qbo_sync_drift'];
    relation text;
    problems text;
BEGIN
    -- one statement, planned once per backend (the list is `owned`)
    LOCK TABLE public.qbo_sync_queue, public.qbo_sync_history, public.qbo_webhook_log,
               public.qbo_webhook_processed, public.qbo_connection, public.qbo_oauth_state,
               public.qbo_sync_cursor, public.qbo_sync_conflict, public.qbo_sync_drift
        IN ACCESS SHARE MODE;
    FOREACH relation IN ARRAY read_only LOOP
        IF to_regclass(format('public.%I', relation)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE public.%I IN ACCESS SHARE MODE', relation);
        END IF;
    END LOOP;
    -- the usual answer, quickly: every one is a table and the owned ones are ours (the regclass
    -- constants are resolved when this statement is planned, and a dropped table re-plans it)
    IF (SELECT count(*)
          FROM pg_class AS c
         WHERE c.oid IN ('public.qbo_sync_queue'::regclass, 'public.qbo_sync_history'::regclass,
                         'public.qbo_webhook_log'::regclass, 'public.qbo_webhook_processed'::regclass,
                         'public.qbo_connection'::regclass, 'public.qbo_oauth_state'::regclass,
                         'public.qbo_sync_cursor'::regclass, 'public.qbo_sync_conflict'::regclass,
                         'public.qbo_sync_drift'::regclass)
           AND c.relkind = 'r'
           AND c.relowner = (SELECT n.nspowner FROM pg_namespace AS n WHERE n.oid = 'qbo_sync'::regnamespace))
           = cardinality(owned)
       AND (cardinality(read_only) = 0 OR NOT EXISTS (
               SELECT FROM unnest(read_only) AS r
                LEFT JOIN pg_class AS c ON c.oid = to_regclass(format('public.%I', r))
                WHERE c.relkind IS NULL OR c.relkind NOT IN ('r', 'p')))
       AND (SELECT t.typowner = n.nspowner FROM pg_type AS t, pg_namespace AS n
             WHERE t.oid = 'public.qbo_sync_priority'::regtype AND n.oid = 'qbo_sync'::regnamespace) THEN
        RETURN;
    END IF;
    -- otherwise say exactly what is wrong
    SELECT string_agg(format('public.%s %s', r.name, r.problem), '; ')
      INTO problems
      FROM (SELECT x.name,
                   CASE WHEN c.oid IS NULL THEN 'is missing'
                        WHEN c.relkind NOT IN ('r', 'p') THEN 'is no longer a table'
                        WHEN x.must_own AND c.relowner <> n.nspowner
                            THEN format('is owned by %s, not by %s', c.relowner::regrole, n.nspowner::regrole)
                   END AS problem
              FROM (SELECT o, true FROM unnest(owned) AS o
                    UNION ALL SELECT r, false FROM unnest(read_only) AS r) AS x(name, must_own)
              CROSS JOIN pg_namespace AS n
              LEFT JOIN pg_class AS c
                     ON c.relname = x.name AND c.relnamespace = 'public'::regnamespace
             WHERE n.nspname = 'qbo_sync') AS r
     WHERE r.problem IS NOT NULL;
    IF problems IS NULL AND EXISTS (
        SELECT FROM pg_type AS t JOIN pg_namespace AS n ON n.nspname = 'qbo_sync'
         WHERE t.oid = to_regtype('public.qbo_sync_priority') AND t.typowner <> n.nspowner) THEN
        problems := 'public.qbo_sync_priority changed hands';
    END IF;
    IF problems IS NOT NULL THEN
        RAISE EXCEPTION 'qbo-sync will not run as its owner on relations it does not own: %', problems
            USING ERRCODE = 'QS004',
                  HINT = 'someone who owns schema public (on PostgreSQL 15: the database owner) or can '
                         'create there replaced them; restore them, make the installing role own '
                         'schema public, and run qbo-sync install';
    END IF;
END
$$;

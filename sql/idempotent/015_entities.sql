-- The registry of synced entities (qbo_sync.entity): the one place that says which application
-- table holds an entity, its QBO name, the order pushes go in, and which columns are synced.
-- Change tracking (030), trigger_qbo_sync and the schedulers (050), webhook processing (070) and
-- the engine all read it. Re-applied by every install, so an upgrade can change the columns.

INSERT INTO qbo_sync.entity AS e
    (entity, app_table, qbo_entity, dependency_order, synced_columns,
     line_table, line_parent_column, line_synced_columns, delete_operation)
VALUES
    ('items', 'item_record', 'Item', 1,
     ARRAY['name', 'sku', 'description', 'item_type', 'unit_price', 'purchase_cost',
           'income_account_ref', 'expense_account_ref', 'taxable', 'is_active'],
     NULL, NULL, NULL, 'deactivate'),
    ('customers', 'customer_profile', 'Customer', 2,
     ARRAY['display_name', 'company_name', 'given_name', 'family_name', 'email', 'phone', 'mobile',
           'billing_address', 'shipping_address', 'notes', 'taxable', 'currency_code', 'is_active'],
     NULL, NULL, NULL, 'deactivate'),
    ('invoices', 'invoice_record', 'Invoice', 3,
     ARRAY['customer_id', 'invoice_number', 'txn_date', 'due_date', 'currency_code', 'customer_memo',
           'private_note', 'billing_email', 'billing_address', 'shipping_address', 'sales_term_ref',
           'is_voided'],
     'invoice_line_item', 'invoice_id',
     ARRAY['invoice_id', 'line_number', 'item_id', 'description', 'quantity', 'unit_price', 'amount',
           'tax_code_ref', 'service_date', 'detail_type'],
     'delete'),
    ('payments', 'invoice_payment', 'Payment', 4,
     ARRAY['customer_id', 'invoice_id', 'amount', 'payment_date', 'payment_method_ref',
           'reference_number', 'deposit_account_ref', 'currency_code', 'private_note', 'is_voided'],
     NULL, NULL, NULL, 'delete')
ON CONFLICT (entity) DO UPDATE
   SET app_table = EXCLUDED.app_table, qbo_entity = EXCLUDED.qbo_entity,
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

-- Catalog of the three migrations: schemas, extensions, tables, key columns and types, keys,
-- the queue priority enum and the queue's indexes.
SET search_path = tap, public, qbo_sync;

BEGIN;
SELECT plan(183);

-- Schemas and extensions
SELECT has_schema('qbo_sync');
SELECT has_schema('public');
SELECT has_extension('pgcrypto');
SELECT has_extension('plpython3u');

-- Tables
SELECT has_table('qbo_sync', 'settings', 'qbo_sync.settings exists');
SELECT has_table('qbo_sync', 'app_table', 'qbo_sync.app_table exists');
SELECT has_table('qbo_sync', 'local_deletion', 'qbo_sync.local_deletion exists');
SELECT has_table('qbo_sync', 'organization_settings', 'qbo_sync.organization_settings exists');
SELECT has_table('qbo_sync', 'migration', 'qbo_sync.migration (installer) exists');
SELECT has_table('qbo_sync', 'installation', 'qbo_sync.installation (installer) exists');
SELECT has_table('qbo_sync', 'python_module', 'qbo_sync.python_module (installer) exists');
SELECT has_table('public', t, 'public.' || t || ' exists')
  FROM unnest(ARRAY['organizations', 'customer_profile', 'item_record', 'invoice_record',
                    'invoice_line_item', 'invoice_payment', 'qbo_webhook_log',
                    'qbo_webhook_processed', 'qbo_sync_queue', 'qbo_sync_history',
                    'qbo_connection', 'qbo_oauth_state', 'qbo_sync_cursor',
                    'qbo_sync_conflict']) AS t;                                      -- 14

-- Primary keys
SELECT col_is_pk('qbo_sync', 'settings', 'key', 'qbo_sync.settings PK (key)');
SELECT col_is_pk('qbo_sync', 'app_table', 'table_name', 'qbo_sync.app_table PK (table_name)');
SELECT col_is_pk('qbo_sync', 'local_deletion', ARRAY['organization_id', 'entity', 'qbo_id']::name[], 'local_deletion PK (organization_id, entity, qbo_id)');
SELECT col_is_pk('qbo_sync', 'organization_settings', 'organization_id', 'organization_settings PK (organization_id)');
SELECT col_is_pk('public', t, 'id', t || ' PK (id)')
  FROM unnest(ARRAY['organizations', 'customer_profile', 'item_record', 'invoice_record',
                    'invoice_line_item', 'invoice_payment', 'qbo_webhook_log',
                    'qbo_sync_queue', 'qbo_sync_history']) AS t;                    -- 9
SELECT col_is_pk('public', 'qbo_webhook_processed', ARRAY['organization_id', 'event_key']::name[], 'qbo_webhook_processed PK (organization_id, event_key)');
SELECT col_is_pk('public', 'qbo_connection', 'organization_id', 'qbo_connection PK (organization_id)');
SELECT col_is_pk('public', 'qbo_oauth_state', 'state_hash', 'qbo_oauth_state PK (state_hash: the state is never stored)');
SELECT col_is_pk('public', 'qbo_sync_cursor', ARRAY['organization_id', 'entity']::name[], 'qbo_sync_cursor PK (organization_id, entity)');
SELECT col_is_pk('public', 'qbo_sync_conflict', ARRAY['organization_id', 'id']::name[], 'qbo_sync_conflict PK (organization_id, id)');

-- Unique keys: one local row per QBO object and organization; one line per QBO line of an invoice
SELECT col_is_unique('public', t, ARRAY['organization_id', 'qbo_id']::name[],
                     t || ' has UNIQUE (organization_id, qbo_id)')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t; -- 4
SELECT col_is_unique('public', 'invoice_line_item', ARRAY['invoice_id', 'qbo_line_id']::name[],
                     'invoice_line_item has UNIQUE (invoice_id, qbo_line_id)');
SELECT col_is_unique('public', 'qbo_connection', ARRAY['realm_id']::name[], 'one connection per realm');

-- Foreign keys to organizations (ON DELETE CASCADE)
SELECT fk_ok('public', t, 'organization_id', 'public', 'organizations', 'id', t || '.organization_id references organizations')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_line_item',
                    'invoice_payment', 'qbo_connection', 'qbo_oauth_state']) AS t;  -- 7
-- The tables the worker writes on every job do not (a foreign-key check locks the organization's
-- row, which its application may hold); a trigger removes their rows with the organization.
SELECT is_empty(format($$SELECT conname FROM pg_constraint
                          WHERE contype = 'f' AND confrelid = 'public.organizations'::regclass
                            AND conrelid = %L::regclass$$, 'public.' || t),
                t || ' does not reference organizations (it never waits for an organization row)')
  FROM unnest(ARRAY['qbo_webhook_processed', 'qbo_sync_queue', 'qbo_sync_history',
                    'qbo_sync_cursor', 'qbo_sync_conflict']) AS t;                  -- 5
SELECT has_trigger('public', 'organizations', 'qbo_forget_organization',
                   'deleting an organization removes its qbo-sync rows');
SELECT fk_ok('public', 'invoice_line_item', 'invoice_id', 'public', 'invoice_record', 'id', 'line -> invoice');
SELECT fk_ok('public', 'invoice_line_item', 'item_id', 'public', 'item_record', 'id', 'line -> item');
SELECT fk_ok('public', 'invoice_record', 'customer_id', 'public', 'customer_profile', 'id', 'invoice -> customer');

-- QBO bookkeeping columns on the four synced entity tables (4 tables x 11 columns checked)
SELECT col_type_is('public', t, c, ty, t || '.' || c || ' is ' || ty)
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t,
       (VALUES ('qbo_id', 'text'), ('qbo_sync_token', 'text'),
               ('qbo_created_at', 'timestamp with time zone'),
               ('qbo_updated_at', 'timestamp with time zone'),
               ('qbo_last_synced_at', 'timestamp with time zone'),
               ('qbo_sync_status', 'text'), ('qbo_sync_error', 'text'),
               ('qbo_request_id', 'uuid'), ('qbo_local_version', 'bigint'),
               ('qbo_synced_version', 'bigint'), ('qbo_raw', 'jsonb')) AS col(c, ty);  -- 44
SELECT col_not_null('public', t, c, t || '.' || c || ' is NOT NULL')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t,
       unnest(ARRAY['organization_id', 'qbo_sync_status', 'qbo_local_version',
                    'qbo_synced_version']) AS c;                                    -- 16
SELECT col_has_check('public', t, 'qbo_sync_status', t || '.qbo_sync_status has a CHECK')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t; -- 4
SELECT col_type_is('public', 'invoice_line_item', 'qbo_line_id', 'text', 'invoice_line_item.qbo_line_id col_type_is text');
SELECT col_type_is('public', 'invoice_record', 'total_amount', 'numeric(15,2)', 'invoice_record.total_amount col_type_is numeric(15,2)');
SELECT col_type_is('public', 'customer_profile', 'billing_address', 'jsonb', 'customer_profile.billing_address col_type_is jsonb');

-- Priority enum, declared ascending so ORDER BY priority DESC puts urgent first
SELECT has_enum('public', 'qbo_sync_priority', 'enum public.qbo_sync_priority exists');
SELECT enum_has_labels('public', 'qbo_sync_priority', ARRAY['low', 'normal', 'high', 'urgent']::name[], 'qbo_sync_priority labels in order low, normal, high, urgent');
SELECT ok('urgent'::qbo_sync_priority > 'high' AND 'high'::qbo_sync_priority > 'normal'
          AND 'normal'::qbo_sync_priority > 'low', 'qbo_sync_priority orders low < normal < high < urgent');

-- Webhook log
SELECT col_type_is('public', 'qbo_webhook_log', 'id', 'bigint', 'qbo_webhook_log.id col_type_is bigint');
SELECT col_type_is('public', 'qbo_webhook_log', 'body', 'text', 'qbo_webhook_log.body col_type_is text');
SELECT col_not_null('public', 'qbo_webhook_log', 'body', 'qbo_webhook_log.body col_not_null');
SELECT col_type_is('public', 'qbo_webhook_log', 'payload', 'jsonb', 'qbo_webhook_log.payload col_type_is jsonb');
SELECT col_type_is('public', 'qbo_webhook_log', 'signature_valid', 'boolean', 'qbo_webhook_log.signature_valid col_type_is boolean');
SELECT col_not_null('public', 'qbo_webhook_log', 'signature_valid', 'qbo_webhook_log.signature_valid col_not_null');
SELECT col_default_is('public', 'qbo_webhook_log', 'status', 'received', 'qbo_webhook_log.status col_default_is received');
SELECT col_has_check('public', 'qbo_webhook_log', 'status', 'qbo_webhook_log.status col_has_check');
SELECT is((SELECT attidentity::text FROM pg_attribute
            WHERE attrelid = 'public.qbo_webhook_log'::regclass AND attname = 'id'), 'a',
          'qbo_webhook_log.id is GENERATED ALWAYS AS IDENTITY');

-- Queue
SELECT col_type_is('public', 'qbo_sync_queue', 'priority', 'qbo_sync_priority', 'qbo_sync_queue.priority col_type_is qbo_sync_priority');
SELECT col_default_is('public', 'qbo_sync_queue', 'priority', 'normal', 'qbo_sync_queue.priority col_default_is normal');
SELECT col_type_is('public', 'qbo_sync_queue', 'entity_ids', 'text[]', 'qbo_sync_queue.entity_ids col_type_is text[]');
SELECT col_type_is('public', 'qbo_sync_queue', 'run_at', 'timestamp with time zone', 'qbo_sync_queue.run_at col_type_is timestamp with time zone');
SELECT col_type_is('public', 'qbo_sync_queue', 'lease_id', 'uuid', 'qbo_sync_queue.lease_id col_type_is uuid');
SELECT col_type_is('public', 'qbo_sync_queue', 'locked_until', 'timestamp with time zone', 'qbo_sync_queue.locked_until col_type_is timestamp with time zone');
SELECT col_default_is('public', 'qbo_sync_queue', 'created_at', 'clock_timestamp()', 'qbo_sync_queue.created_at col_default_is clock_timestamp()');
SELECT col_not_null('public', 'qbo_sync_queue', c, 'qbo_sync_queue.' || c || ' is NOT NULL')
  FROM unnest(ARRAY['organization_id', 'sync_endpoint', 'direction', 'priority', 'status',
                    'attempts', 'max_attempts', 'run_at']) AS c;                     -- 8
SELECT col_has_check('public', 'qbo_sync_queue', c, 'qbo_sync_queue.' || c || ' has a CHECK')
  FROM unnest(ARRAY['direction', 'status']) AS c;                                    -- 2
-- Entity names are checked against the registry, not repeated in CHECK constraints.
SELECT fk_ok('public', 'qbo_sync_queue', 'sync_endpoint', 'qbo_sync', 'entity', 'entity',
             'qbo_sync_queue.sync_endpoint references the entity registry');
SELECT fk_ok('qbo_sync', 'local_deletion', 'entity', 'qbo_sync', 'entity', 'entity',
             'local_deletion.entity references the entity registry');
SELECT fk_ok('public', 'qbo_sync_cursor', 'entity', 'qbo_sync', 'entity', 'entity',
             'qbo_sync_cursor.entity references the entity registry');
SELECT is_empty($$
    SELECT conrelid::regclass::text || ': ' || conname
      FROM pg_constraint
     WHERE contype = 'c' AND connamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
       AND pg_get_constraintdef(oid) ~ '''(items|customers|invoices|payments)'''$$,
    'no CHECK constraint spells out the entity names');
SELECT col_has_check('public', 'qbo_webhook_log', ARRAY['signature_valid', 'status']::name[],
                     'qbo_webhook_log: an unsigned webhook can only be rejected');

-- Queue indexes: claim (priority DESC, created_at) over pending jobs; fold over pending jobs not
-- yet attempted; lease over processing jobs.
SELECT has_index('public', 'qbo_sync_queue', 'qbo_sync_queue_claim_idx', ARRAY['priority', 'run_at', 'created_at']::name[], 'index qbo_sync_queue_claim_idx exists on its columns');
SELECT has_index('public', 'qbo_sync_queue', 'qbo_sync_queue_fold_idx',
                 ARRAY['organization_id', 'sync_endpoint', 'direction']::name[], 'index qbo_sync_queue_fold_idx exists on its columns');
SELECT has_index('public', 'qbo_sync_queue', 'qbo_sync_queue_lease_idx', ARRAY['locked_until']::name[], 'index qbo_sync_queue_lease_idx exists on its columns');
SELECT is(pg_get_expr(i.indpred, i.indrelid), $$(status = 'pending'::text)$$,
          'claim index is partial on pending jobs')
  FROM pg_index AS i WHERE i.indexrelid = 'public.qbo_sync_queue_claim_idx'::regclass;
SELECT is(i.indoption::text, '3 0 0', 'claim index orders priority DESC, run_at ASC, created_at ASC')
  FROM pg_index AS i WHERE i.indexrelid = 'public.qbo_sync_queue_claim_idx'::regclass;
SELECT is(pg_get_expr(i.indpred, i.indrelid), $$((status = 'pending'::text) AND (attempts = 0))$$,
          'fold index is partial on pending, unattempted jobs')
  FROM pg_index AS i WHERE i.indexrelid = 'public.qbo_sync_queue_fold_idx'::regclass;
SELECT is(pg_get_expr(i.indpred, i.indrelid), $$(status = 'processing'::text)$$,
          'lease index is partial on processing jobs')
  FROM pg_index AS i WHERE i.indexrelid = 'public.qbo_sync_queue_lease_idx'::regclass;
SELECT has_index('public', 'qbo_webhook_log', 'qbo_webhook_log_received_idx', ARRAY['id']::name[], 'index qbo_webhook_log_received_idx exists on its columns');
-- A job's history rows by the job (the failure path writes intuit_tid on the latest one).
SELECT has_index('public', 'qbo_sync_history', 'qbo_sync_history_queue_job_idx',
                 ARRAY['queue_job_id', 'completed_at']::name[], 'index qbo_sync_history_queue_job_idx exists on its columns');

-- Connection: tokens only in encrypted bytea columns
SELECT col_type_is('public', 'qbo_connection', 'qbo_access_token_encrypted', 'bytea', 'qbo_connection.qbo_access_token_encrypted col_type_is bytea');
SELECT col_type_is('public', 'qbo_connection', 'qbo_refresh_token_encrypted', 'bytea', 'qbo_connection.qbo_refresh_token_encrypted col_type_is bytea');
SELECT hasnt_column('public', 'qbo_connection', 'qbo_access_token');
SELECT hasnt_column('public', 'qbo_connection', 'qbo_refresh_token');
SELECT col_not_null('public', 'qbo_connection', 'realm_id', 'qbo_connection.realm_id col_not_null');
SELECT col_has_check('public', 'qbo_connection', 'environment', 'qbo_connection.environment col_has_check');
SELECT is_empty($$SELECT a.attname FROM pg_attribute AS a
                   WHERE a.attrelid = 'public.qbo_connection'::regclass AND a.attnum > 0
                     AND NOT a.attisdropped AND a.attname ~ 'token' AND a.attname !~ '_encrypted$'
                     AND a.atttypid <> 'timestamptz'::regtype$$,
                'qbo_connection has no plain-text token column');

-- Every table keyed by organization leads its primary key with organization_id
SELECT is_empty($$
    SELECT c.relname
      FROM pg_class AS c
      JOIN pg_constraint AS k ON k.conrelid = c.oid AND k.contype = 'p'
     WHERE c.relnamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
       AND c.relkind = 'r'
       AND c.relname IN ('qbo_webhook_processed', 'qbo_sync_cursor', 'qbo_sync_conflict',
                         'qbo_connection', 'local_deletion', 'organization_settings')
       AND (SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = k.conkey[1])
           <> 'organization_id'$$,
    'organization-keyed tables lead their primary key with organization_id');

SELECT * FROM finish();
ROLLBACK;

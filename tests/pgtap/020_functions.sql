-- Catalog of the idempotent SQL: every function and procedure with its signature, the views
-- (qbo_sync_status runs with the caller's rights), and the change-tracking triggers.
SET search_path = tap, public, qbo_sync;

BEGIN;
SELECT plan(92);

-- qbo_sync schema: exactly these functions (a new or renamed one must be added here)
SELECT functions_are('qbo_sync', ARRAY[
    'setting', 'setting_numeric', 'current_organization_id', 'applying_remote', 'version',
    'python_setup', 'secret', 'encrypt_token', 'decrypt_token',
    'fields_changed', 'track_local_change', 'track_invoice_line_change', 'track_local_deletion',
    'begin_applying_remote',
    'enqueue', 'claim', 'complete', 'backoff_seconds', 'fail', 'release', 'reclaim_expired',
    'validate_sync_request', 'schedule_sync',
    'run_job', 'error_is_retryable', 'record_history',
    'try_timestamptz', 'webhook_events', 'webhook_format'
]::name[], 'qbo_sync has exactly the expected functions');

-- Signatures: qbo_sync
SELECT has_function('qbo_sync', f, args::name[], 'qbo_sync.' || f || '(' || array_to_string(args, ', ') || ') exists')
  FROM (VALUES
    ('setting', ARRAY['text']),
    ('setting_numeric', ARRAY['text']),
    ('current_organization_id', ARRAY[]::text[]),
    ('applying_remote', ARRAY[]::text[]),
    ('version', ARRAY[]::text[]),
    ('python_setup', ARRAY[]::text[]),
    ('secret', ARRAY['text']),
    ('encrypt_token', ARRAY['text']),
    ('decrypt_token', ARRAY['bytea']),
    ('fields_changed', ARRAY['jsonb', 'jsonb', 'text[]']),
    ('track_local_change', ARRAY[]::text[]),
    ('track_invoice_line_change', ARRAY[]::text[]),
    ('track_local_deletion', ARRAY[]::text[]),
    ('begin_applying_remote', ARRAY[]::text[]),
    ('enqueue', ARRAY['uuid', 'text', 'text', 'qbo_sync_priority', 'text[]', 'text', 'jsonb']),
    ('claim', ARRAY['integer', 'text', 'numeric']),
    ('complete', ARRAY['uuid', 'uuid', 'jsonb']),
    ('backoff_seconds', ARRAY['integer']),
    ('fail', ARRAY['uuid', 'uuid', 'text', 'boolean']),
    ('release', ARRAY['uuid', 'uuid', 'numeric']),
    ('reclaim_expired', ARRAY[]::text[]),
    ('validate_sync_request', ARRAY['uuid', 'text', 'text', 'text']),
    ('schedule_sync', ARRAY['text[]', 'text', 'qbo_sync_priority']),
    ('run_job', ARRAY['qbo_sync_queue']),
    ('error_is_retryable', ARRAY['text']),
    ('record_history', ARRAY['qbo_sync_queue', 'text', 'jsonb', 'text']),
    ('try_timestamptz', ARRAY['text']),
    ('webhook_events', ARRAY['jsonb']),
    ('webhook_format', ARRAY['jsonb'])
  ) AS f(f, args);                                                                    -- 29

-- Signatures: public entry points
SELECT has_function('public', f, args::name[], 'public.' || f || '(' || array_to_string(args, ', ') || ') exists')
  FROM (VALUES
    ('trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']),
    ('qbo_sync_orchestrator', ARRAY['uuid', 'text', 'text[]', 'text']),
    ('qbo_sync_requeue', ARRAY['uuid']),
    ('qbo_sync_cancel', ARRAY['uuid']),
    ('qbo_push_local_changes', ARRAY[]::text[]),
    ('qbo_check_token_expiry', ARRAY[]::text[]),
    ('qbo_process_webhooks', ARRAY['integer']),
    ('qbo_cleanup_webhook_logs', ARRAY[]::text[]),
    ('qbo_cleanup_webhook_processed', ARRAY[]::text[]),
    ('qbo_cleanup_sync_jobs', ARRAY[]::text[]),
    ('qbo_cleanup_sync_history', ARRAY[]::text[]),
    ('qbo_sync_worker', ARRAY['numeric', 'integer', 'boolean'])
  ) AS f(f, args);                                                                    -- 12
SELECT is_procedure('public', 'qbo_sync_worker', ARRAY['numeric', 'integer', 'boolean']::name[],
                    'qbo_sync_worker is a procedure (it commits between jobs)');
SELECT isnt_procedure('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']::name[],
                      'trigger_qbo_sync is a function');

-- Return types of the entry points
SELECT function_returns('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']::name[], 'uuid',
                        'trigger_qbo_sync returns the job id');
SELECT function_returns('public', 'qbo_sync_orchestrator', ARRAY['uuid', 'text', 'text[]', 'text']::name[], 'uuid[]',
                        'qbo_sync_orchestrator returns the job ids');
SELECT function_returns('qbo_sync', 'claim', ARRAY['integer', 'text', 'numeric']::name[], 'setof qbo_sync_queue',
                        'claim returns queue rows');
SELECT function_returns('qbo_sync', 'enqueue',
                        ARRAY['uuid', 'text', 'text', 'qbo_sync_priority', 'text[]', 'text', 'jsonb']::name[],
                        'uuid', 'enqueue returns the job id');
SELECT function_returns('qbo_sync', 'encrypt_token', ARRAY['text']::name[], 'bytea', 'encrypt_token returns bytea');
SELECT function_returns('qbo_sync', 'fail', ARRAY['uuid', 'uuid', 'text', 'boolean']::name[], 'text',
                        'fail returns the new status');
SELECT function_lang_is('qbo_sync', 'secret', ARRAY['text']::name[], 'plpython3u', 'secret is PL/Python');
SELECT function_lang_is('qbo_sync', 'python_setup', ARRAY[]::name[], 'plpython3u', 'python_setup is PL/Python');

-- Hardening: every function pins search_path (the worker procedure cannot, as it commits, and
-- qualifies every name instead); nothing runs with its owner's rights without a pinned path.
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc AS p
     WHERE (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND p.prokind <> 'p'
       AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\_path=%')$$,
    'every qbo-sync function sets search_path');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc AS p
     WHERE p.prosecdef
       AND (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\_path=pg\_catalog%')$$,
    'every SECURITY DEFINER function pins search_path to pg_catalog first');

-- Views
SELECT has_view('public', 'qbo_sync_status', 'view qbo_sync_status exists');
SELECT has_view('qbo_sync', 'migrations', 'view qbo_sync.migrations exists');
SELECT has_view('public', 'migrations', 'view public.migrations exists (the guide''s Check 1)');
SELECT ok((SELECT 'security_invoker=true' = ANY (c.reloptions) FROM pg_class AS c
            WHERE c.oid = 'public.qbo_sync_status'::regclass),
          'qbo_sync_status is security_invoker (row-level security applies to its readers)');
SELECT columns_are('public', 'qbo_sync_status', ARRAY[
    'organization_id', 'organization_name', 'realm_id', 'company_name', 'environment', 'is_active',
    'inactive_reason', 'qbo_token_expires_at', 'qbo_refresh_token_expires_at', 'token_status',
    'last_refreshed_at', 'pending_jobs', 'processing_jobs', 'failed_jobs',
    'last_successful_sync_at', 'last_sync_at', 'last_sync_status']::name[],
    'qbo_sync_status has the documented columns and no token column');

-- Triggers on the application tables
SELECT has_trigger('public', t, 'qbo_track_local_change', t || ' has qbo_track_local_change')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t;   -- 4
SELECT trigger_is('public', t, 'qbo_track_local_change', 'qbo_sync', 'track_local_change',
                  t || '.qbo_track_local_change calls qbo_sync.track_local_change')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t;   -- 4
SELECT has_trigger('public', t, 'qbo_track_local_deletion', t || ' has qbo_track_local_deletion')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t;   -- 4
SELECT trigger_is('public', t, 'qbo_track_local_deletion', 'qbo_sync', 'track_local_deletion',
                  t || '.qbo_track_local_deletion calls qbo_sync.track_local_deletion')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t;   -- 4
SELECT has_trigger('public', 'invoice_line_item', 'qbo_track_invoice_line_change',
                   'invoice_line_item has qbo_track_invoice_line_change');
SELECT trigger_is('public', 'invoice_line_item', 'qbo_track_invoice_line_change', 'qbo_sync',
                  'track_invoice_line_change', 'the line trigger calls track_invoice_line_change');
SELECT triggers_are('public', 'invoice_line_item', ARRAY['qbo_track_invoice_line_change']::name[],
                    'invoice_line_item has only the line-change trigger');
SELECT triggers_are('public', t, ARRAY['qbo_track_local_change', 'qbo_track_local_deletion']::name[],
                    t || ' has exactly the two tracking triggers')
  FROM unnest(ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment']) AS t;   -- 4

-- Timing and events (pg_trigger.tgtype bits: 1 ROW, 2 BEFORE, 4 INSERT, 8 DELETE, 16 UPDATE)
SELECT is(t.tgtype::integer, 1 + 2 + 4 + 16,
          c.relname || '.qbo_track_local_change is BEFORE INSERT OR UPDATE FOR EACH ROW')
  FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
 WHERE t.tgname = 'qbo_track_local_change'
   AND c.relname IN ('customer_profile', 'item_record', 'invoice_record', 'invoice_payment')
 ORDER BY c.relname;                                                                 -- 4
SELECT is(t.tgtype::integer, 1 + 8,
          c.relname || '.qbo_track_local_deletion is AFTER DELETE FOR EACH ROW')
  FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
 WHERE t.tgname = 'qbo_track_local_deletion'
   AND c.relname IN ('customer_profile', 'item_record', 'invoice_record', 'invoice_payment')
 ORDER BY c.relname;                                                                 -- 4
SELECT is(t.tgtype::integer, 1 + 4 + 8 + 16,
          'qbo_track_invoice_line_change is AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW')
  FROM pg_trigger AS t
 WHERE t.tgname = 'qbo_track_invoice_line_change' AND t.tgrelid = 'public.invoice_line_item'::regclass;
SELECT is((SELECT t.tgnargs FROM pg_trigger AS t
            WHERE t.tgname = 'qbo_track_local_change' AND t.tgrelid = 'public.customer_profile'::regclass),
          13::smallint, 'customer_profile tracks its 13 synced fields');

SELECT * FROM finish();
ROLLBACK;

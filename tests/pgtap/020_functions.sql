-- Catalog of the idempotent SQL: every function and procedure with its signature, the views
-- (qbo_sync_status runs with the caller's rights), and the change-tracking triggers.
SET search_path = tap, public, qbo_sync;

BEGIN;
SELECT plan(113);

-- qbo_sync schema: exactly these functions (a new or renamed one must be added here)
SELECT functions_are('qbo_sync', ARRAY[
    'setting', 'setting_numeric', 'current_organization_id', 'applying_remote', 'version',
    'calling_role', 'caller_is_operator', 'pinned_organization_id', 'may_act_for',
    'entity_names', 'quote_for_message', 'lock_own_relations', 'forget_organization',
    'python_loader', 'python_setup', 'secret', 'encrypt_token', 'decrypt_token', 'refresh_code_hash',
    'fields_changed', 'track_local_change', 'track_line_change', 'track_local_deletion',
    'begin_applying_remote',
    'enqueue', 'job_may_run', 'claim', 'complete', 'backoff_seconds', 'fail', 'extend_lease', 'release',
    'reclaim_expired', 'lock_job_for_caller',
    'validate_sync_request', 'schedule_sync', 'push_local_changes',
    'token_refresh', 'connections_to_refresh', 'token_refresh_failed', 'refresh_expiring_tokens',
    'disconnect', 'create_connected_organization', 'token_warning', 'refresh_token_due',
    'record_token_warnings',
    'run_job', 'sql_handler', 'error_is_retryable', 'record_history', 'lost_lease_reason',
    'worker_begin', 'worker_should_stop', 'take_organization', 'free_organization', 'worker_claim', 'worker_prepare', 'worker_job', 'worker_start', 'worker_run_job', 'worker_finish', 'worker_abandon', 'worker',
    'worker_step_failed', 'complete_covered_pulls', 'publish_progress', 'process_webhook_rows',
    'try_timestamptz', 'webhook_events', 'webhook_format', 'webhook_event_rows', 'process_webhooks',
    'cleanup_webhook_logs', 'cleanup_webhook_processed', 'cleanup_sync_jobs', 'cleanup_sync_history',
    'delete_expired',
    'sync_token_newer', 'entity_row', 'check_business_columns', 'apply_pulled', 'apply_pulled_lines', 'invoice_lines_of', 'known_qbo_ids',
    'apply_pulled_deletions', 'record_pass_seen', 'finish_pass_absent', 'pull_cursor', 'cdc_companions', 'save_incremental_pull', 'save_full_pull',
    'rows_to_push', 'prepare_creates', 'record_pushed', 'record_push_problem', 'record_pushed_lines',
    'row_linked_to', 'record_push_conflict', 'deletions_to_push', 'record_deletion_pushed',
    'conflict_settings', 'conflict_rows', 'apply_merges', 'record_held_remote', 'keep_conflicts_held',
    'conflict_for_resolution', 'mark_conflict_resolved', 'resolve_conflict_values',
    'lock_record_for_caller', 'refuse_open_conflict', 'record_manual_action', 'record_errors', 'job_ids', 'queue_entity_sync',
    'audit_local_counts', 'audit_local_tokens', 'record_drift', 'queue_drift_audit', 'drift_audit_all', 'schedule_workers'
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
    ('track_line_change', ARRAY[]::text[]),
    ('track_local_deletion', ARRAY[]::text[]),
    ('begin_applying_remote', ARRAY[]::text[]),
    ('enqueue', ARRAY['uuid', 'text', 'text', 'qbo_sync_priority', 'text[]', 'text', 'jsonb', 'boolean']),
    ('claim', ARRAY['integer', 'text', 'numeric', 'uuid[]']),
    ('complete', ARRAY['uuid', 'uuid', 'jsonb']),
    ('backoff_seconds', ARRAY['integer']),
    ('fail', ARRAY['uuid', 'uuid', 'text', 'boolean', 'text']),
    ('extend_lease', ARRAY['uuid', 'uuid', 'numeric']),
    ('push_local_changes', ARRAY[]::text[]),
    ('token_refresh', ARRAY['uuid', 'boolean']),
    ('process_webhooks', ARRAY['integer']),
    ('cleanup_webhook_logs', ARRAY[]::text[]),
    ('cleanup_webhook_processed', ARRAY[]::text[]),
    ('cleanup_sync_jobs', ARRAY[]::text[]),
    ('cleanup_sync_history', ARRAY[]::text[]),
    ('worker', ARRAY['numeric', 'integer', 'boolean']),
    ('release', ARRAY['uuid', 'uuid', 'numeric', 'text']),
    ('reclaim_expired', ARRAY[]::text[]),
    ('validate_sync_request', ARRAY['uuid', 'text', 'text', 'text']),
    ('schedule_sync', ARRAY['text[]', 'text', 'qbo_sync_priority']),
    ('run_job', ARRAY['qbo_sync_queue']),
    ('error_is_retryable', ARRAY['text']),
    ('record_history', ARRAY['qbo_sync_queue', 'text', 'jsonb', 'text']),
    ('try_timestamptz', ARRAY['text']),
    ('webhook_events', ARRAY['jsonb']),
    ('webhook_format', ARRAY['jsonb']),
    ('publish_progress', ARRAY['uuid', 'uuid', 'jsonb'])
  ) AS f(f, args);                                                                    -- 39

-- Signatures: public entry points
SELECT has_function('public', f, args::name[], 'public.' || f || '(' || array_to_string(args, ', ') || ') exists')
  FROM (VALUES
    ('trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']),
    ('qbo_sync_orchestrator', ARRAY['uuid', 'text', 'text[]', 'text']),
    ('qbo_sync_requeue', ARRAY['uuid']),
    ('qbo_sync_cancel', ARRAY['uuid']),
    ('qbo_sync_worker', ARRAY['numeric', 'integer', 'boolean']),
    ('qbo_sync_resolve_conflict', ARRAY['uuid', 'text', 'jsonb']),
    ('qbo_sync_retry_record', ARRAY['text', 'uuid']),
    ('qbo_sync_skip_record', ARRAY['text', 'uuid', 'text']),
    ('qbo_sync_customers', ARRAY['uuid', 'text', 'text']),
    ('qbo_sync_items', ARRAY['uuid', 'text', 'text']),
    ('qbo_sync_invoices', ARRAY['uuid', 'text', 'text']),
    ('qbo_sync_payments', ARRAY['uuid', 'text', 'text']),
    ('qbo_sync_drift_audit', ARRAY['uuid'])
  ) AS f(f, args);                                                                    -- 13
-- public holds the guide's entry points only: what pg_cron runs lives in qbo_sync, a schema no
-- other role can create in (a role with CREATE on public could plant an overload there).
SELECT set_eq($$SELECT p.proname::text FROM pg_proc AS p
                  WHERE p.pronamespace = 'public'::regnamespace
                    AND NOT EXISTS (SELECT FROM pg_depend AS d
                                     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                       AND d.deptype = 'e')$$,
              ARRAY['trigger_qbo_sync', 'qbo_sync_orchestrator', 'qbo_sync_requeue',
                    'qbo_sync_cancel', 'qbo_sync_worker', 'qbo_token_refresh',
                    'qbo_oauth_initiate', 'qbo_oauth_callback', 'qbo_sync_resolve_conflict',
                    'qbo_sync_retry_record', 'qbo_sync_skip_record', 'qbo_sync_customers',
                    'qbo_sync_items', 'qbo_sync_invoices', 'qbo_sync_payments', 'qbo_sync_drift_audit'],
              'public has exactly the guide''s qbo-sync entry points (besides extensions'' functions)');
SELECT is_procedure('qbo_sync', 'worker', ARRAY['numeric', 'integer', 'boolean']::name[],
                    'qbo_sync.worker is a procedure (it commits between jobs)');
SELECT is_procedure('public', 'qbo_sync_worker', ARRAY['numeric', 'integer', 'boolean']::name[],
                    'qbo_sync_worker is a procedure (it commits between jobs)');
SELECT isnt_procedure('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']::name[],
                      'trigger_qbo_sync is a function');

-- Return types of the entry points
SELECT function_returns('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']::name[], 'uuid',
                        'trigger_qbo_sync returns the job id');
SELECT function_returns('public', 'qbo_sync_orchestrator', ARRAY['uuid', 'text', 'text[]', 'text']::name[], 'jsonb',
                        'qbo_sync_orchestrator returns a summary (the order and each entity''s job)');
SELECT function_returns('public', 'qbo_sync_' || e, ARRAY['uuid', 'text', 'text']::name[], 'uuid',
                        'qbo_sync_' || e || ' returns the job id')
  FROM unnest(ARRAY['customers', 'items', 'invoices', 'payments']) AS e;              -- 4
SELECT function_returns('qbo_sync', 'claim', ARRAY['integer', 'text', 'numeric', 'uuid[]']::name[], 'setof qbo_sync_queue',
                        'claim returns queue rows');
SELECT function_returns('qbo_sync', 'enqueue',
                        ARRAY['uuid', 'text', 'text', 'qbo_sync_priority', 'text[]', 'text', 'jsonb', 'boolean']::name[],
                        'uuid', 'enqueue returns the job id');
SELECT function_returns('qbo_sync', 'encrypt_token', ARRAY['text']::name[], 'bytea', 'encrypt_token returns bytea');
SELECT function_returns('qbo_sync', 'fail', ARRAY['uuid', 'uuid', 'text', 'boolean', 'text']::name[], 'text',
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
SELECT ok((SELECT bool_and('security_invoker=true' = ANY (c.reloptions)) FROM pg_class AS c
            WHERE c.oid IN ('public.qbo_sync_record_status'::regclass, 'public.qbo_sync_record_counts'::regclass)),
          'qbo_sync_record_status and qbo_sync_record_counts are security_invoker');
SELECT columns_are('public', 'qbo_sync_record_status', ARRAY[
    'organization_id', 'entity', 'record_id', 'qbo_id', 'state', 'error_class', 'error_code',
    'error_message', 'intuit_tid', 'attempts', 'last_synced_at', 'local_version', 'synced_version',
    'conflict_id']::name[],
    'qbo_sync_record_status has the documented columns');
SELECT columns_are('public', 'qbo_sync_status', ARRAY[
    'organization_id', 'organization_name', 'realm_id', 'company_name', 'environment', 'is_active',
    'inactive_reason', 'qbo_token_expires_at', 'qbo_refresh_token_expires_at', 'token_status',
    'last_refreshed_at', 'pending_jobs', 'processing_jobs', 'failed_jobs',
    'last_successful_sync_at', 'last_sync_at', 'last_sync_status', 'reconnect_by',
    'token_warning']::name[],
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
SELECT has_trigger('public', 'invoice_line_item', 'qbo_track_line_change',
                   'invoice_line_item has qbo_track_line_change');
SELECT trigger_is('public', 'invoice_line_item', 'qbo_track_line_change', 'qbo_sync',
                  'track_line_change', 'the line trigger calls track_line_change');
SELECT triggers_are('public', 'invoice_line_item', ARRAY['qbo_track_line_change']::name[],
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
          'qbo_track_line_change is AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW')
  FROM pg_trigger AS t
 WHERE t.tgname = 'qbo_track_line_change' AND t.tgrelid = 'public.invoice_line_item'::regclass;
SELECT is((SELECT t.tgnargs FROM pg_trigger AS t
            WHERE t.tgname = 'qbo_track_local_change' AND t.tgrelid = 'public.customer_profile'::regclass),
          13::smallint, 'customer_profile tracks its 13 synced fields');
-- The triggers watch exactly the registry's columns (one source for the entities).
SELECT is_empty($$
    SELECT e.entity
      FROM qbo_sync.entity AS e
      JOIN pg_trigger AS t ON t.tgrelid = ('public.' || e.app_table)::regclass
                          AND t.tgname = 'qbo_track_local_change'
     WHERE t.tgnargs <> cardinality(e.synced_columns)
        OR encode(t.tgargs, 'escape') <> array_to_string(e.synced_columns, '\000') || '\000'$$,
    'each tracking trigger watches its registry row''s synced_columns');
SELECT results_eq($$SELECT entity FROM qbo_sync.entity ORDER BY dependency_order$$,
                  $$VALUES ('items'), ('customers'), ('invoices'), ('payments')$$,
                  'the registry holds the four entities in push order');

SELECT * FROM finish();
ROLLBACK;

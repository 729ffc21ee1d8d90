-- Security catalog: the three roles, row-level security and its policies, and the privileges
-- of PUBLIC, the listener, the monitor and the application on functions, schemas, tables and
-- columns. (Behaviour under SET ROLE is exercised in tests/db/test_roles.py.)
SET search_path = tap, public, qbo_sync;

BEGIN;
SELECT plan(158);

-- ---------------------------------------------------------------- roles
SELECT has_role(r, 'role ' || r || ' exists')
  FROM unnest(ARRAY['qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app']) AS r;     -- 3
SELECT is(r.rolcanlogin, false, r.rolname || ' cannot log in')
  FROM pg_roles AS r
 WHERE r.rolname IN ('qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app')
 ORDER BY r.rolname;                                                                   -- 3
SELECT is_empty($$SELECT rolname FROM pg_roles
                   WHERE rolname IN ('qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app')
                     AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication)$$,
                'no qbo-sync role is superuser, bypasses RLS or creates roles/databases');
SELECT is_empty($$SELECT m.roleid::regrole::text || ' -> ' || m.member::regrole::text
                     FROM pg_auth_members AS m
                    WHERE m.roleid::regrole::text IN ('qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app')
                      AND m.member::regrole::text IN ('qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app')$$,
                'the qbo-sync roles are not members of one another');

-- ---------------------------------------------------------------- row-level security
SELECT ok(c.relrowsecurity, 'row-level security is enabled on ' || c.relname)
  FROM pg_class AS c
 WHERE c.relnamespace = 'public'::regnamespace
   AND c.relname IN ('qbo_connection', 'qbo_oauth_state', 'qbo_sync_queue', 'qbo_sync_history',
                     'qbo_webhook_processed', 'qbo_sync_cursor', 'qbo_sync_conflict', 'qbo_webhook_log')
 ORDER BY c.relname;                                                                    -- 8
SELECT is((SELECT count(*)::integer FROM qbo_sync.app_table WHERE created_by_qbo_sync), 6,
          'in the test database qbo-sync created all six application tables');
SELECT ok(c.relrowsecurity, 'row-level security is enabled on ' || c.relname || ' (created by qbo-sync)')
  FROM pg_class AS c JOIN qbo_sync.app_table AS a ON a.table_name = c.relname AND a.created_by_qbo_sync
 WHERE c.relnamespace = 'public'::regnamespace
 ORDER BY c.relname;                                                                    -- 6

SELECT policies_are('public', t, ARRAY['qbo_app_own_organization', 'qbo_monitor_reads_all']::name[],
                    t || ' has the application and monitor policies')
  FROM unnest(ARRAY['qbo_connection', 'qbo_oauth_state', 'qbo_sync_queue', 'qbo_sync_history',
                    'qbo_webhook_processed', 'qbo_sync_cursor', 'qbo_sync_conflict',
                    'organizations', 'customer_profile', 'item_record', 'invoice_record',
                    'invoice_line_item', 'invoice_payment']) AS t;                       -- 13
SELECT policies_are('public', 'qbo_webhook_log',
                    ARRAY['qbo_listener_inserts', 'qbo_monitor_reads_all']::name[],
                    'qbo_webhook_log has the listener and monitor policies');
SELECT policy_roles_are('public', t, 'qbo_app_own_organization', ARRAY['qbo_sync_app']::name[],
                        t || '.qbo_app_own_organization applies to qbo_sync_app only')
  FROM unnest(ARRAY['qbo_connection', 'qbo_sync_queue', 'qbo_sync_history', 'organizations',
                    'customer_profile', 'invoice_line_item']) AS t;                      -- 6
SELECT policy_cmd_is('public', t, 'qbo_monitor_reads_all', 'SELECT',
                     t || '.qbo_monitor_reads_all is SELECT only')
  FROM unnest(ARRAY['qbo_connection', 'qbo_sync_queue', 'qbo_webhook_log', 'organizations']) AS t; -- 4
SELECT policy_roles_are('public', 'qbo_webhook_log', 'qbo_listener_inserts', ARRAY['qbo_sync_listener']::name[],
                        'qbo_listener_inserts applies to the listener');
SELECT policy_cmd_is('public', 'qbo_webhook_log', 'qbo_listener_inserts', 'INSERT',
                     'qbo_listener_inserts is INSERT only');
SELECT is((SELECT with_check FROM pg_policies
            WHERE schemaname = 'public' AND tablename = 'qbo_webhook_log' AND policyname = 'qbo_listener_inserts'),
          $$(status = ANY (ARRAY['received'::text, 'rejected'::text]))$$,
          'the listener may only insert received or rejected webhooks');
SELECT is_empty($$
    SELECT tablename FROM pg_policies
     WHERE schemaname = 'public' AND policyname = 'qbo_app_own_organization'
       AND (cmd <> 'ALL' OR qual !~ '^\((organization_)?id = (qbo_sync\.)?current_organization_id\(\)\)$'
            OR with_check !~ '^\((organization_)?id = (qbo_sync\.)?current_organization_id\(\)\)$')$$,
    'every application policy covers all commands and checks both USING and WITH CHECK against current_organization_id()');
SELECT matches((SELECT qual FROM pg_policies
                  WHERE schemaname = 'public' AND tablename = 'organizations' AND policyname = 'qbo_app_own_organization'),
               '^\(id = (qbo_sync\.)?current_organization_id\(\)\)$', 'organizations is filtered on its id');

-- ---------------------------------------------------------------- function privileges
-- PUBLIC executes nothing of ours (functions default to EXECUTE for PUBLIC; PL/Python ones run
-- with the server's operating-system rights).
SELECT function_privs_are(s, f, args::name[], 'public', ARRAY[]::text[],
                          'PUBLIC cannot execute ' || s || '.' || f)
  FROM (VALUES ('qbo_sync', 'secret', ARRAY['text']),
               ('qbo_sync', 'encrypt_token', ARRAY['text']),
               ('qbo_sync', 'decrypt_token', ARRAY['bytea']),
               ('qbo_sync', 'python_setup', ARRAY[]::text[]),
               ('qbo_sync', 'enqueue', ARRAY['uuid', 'text', 'text', 'qbo_sync_priority', 'text[]', 'text', 'jsonb', 'boolean']),
               ('qbo_sync', 'claim', ARRAY['integer', 'text', 'numeric', 'uuid[]']),
               ('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']),
               ('qbo_sync', 'process_webhooks', ARRAY['integer']),
               ('public', 'qbo_sync_worker', ARRAY['numeric', 'integer', 'boolean'])
       ) AS x(s, f, args);                                                               -- 9
SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc AS p
     WHERE (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'PUBLIC can execute no qbo-sync function or procedure');
SELECT schema_privs_are('qbo_sync', 'public', ARRAY[]::text[], 'PUBLIC has no privilege on schema qbo_sync');

-- Each role executes exactly what it needs.
SELECT set_eq($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc AS p
     WHERE (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND has_function_privilege('qbo_sync_listener', p.oid, 'EXECUTE')$$,
    ARRAY['qbo_oauth_callback(text,text,text)'],
    'the listener executes only qbo_oauth_callback (it completes the OAuth redirect)');
SELECT set_eq($$
    SELECT p.pronamespace::regnamespace || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
      FROM pg_proc AS p
     WHERE (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND has_function_privilege('qbo_sync_monitor', p.oid, 'EXECUTE')$$,
    ARRAY['qbo_sync.setting(text)', 'qbo_sync.setting_numeric(text)', 'qbo_sync.version()',
          'qbo_sync.token_warning(boolean, timestamp with time zone)'],
    'the monitor executes only setting, setting_numeric, version and token_warning');
SELECT set_eq($$
    SELECT p.pronamespace::regnamespace || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
      FROM pg_proc AS p
     WHERE (p.pronamespace = 'qbo_sync'::regnamespace
            OR (p.pronamespace = 'public'::regnamespace
                AND (p.proname LIKE 'qbo\_%' OR p.proname = 'trigger_qbo_sync')))
       AND has_function_privilege('qbo_sync_app', p.oid, 'EXECUTE')$$,
    ARRAY['qbo_sync.setting(text)', 'qbo_sync.setting_numeric(text)', 'qbo_sync.current_organization_id()',
          'qbo_sync.applying_remote()', 'qbo_sync.fields_changed(jsonb, jsonb, text[])',
          'qbo_sync.version()', 'qbo_sync.token_warning(boolean, timestamp with time zone)',
          'public.trigger_qbo_sync(uuid, text, text, text)',
          'public.qbo_sync_orchestrator(uuid, text, text[], text)',
          'public.qbo_sync_requeue(uuid)', 'public.qbo_sync_cancel(uuid)',
          'public.qbo_sync_retry_record(text, uuid)', 'public.qbo_sync_skip_record(text, uuid, text)',
          'public.qbo_sync_customers(uuid, text, text)', 'public.qbo_sync_items(uuid, text, text)',
          'public.qbo_sync_invoices(uuid, text, text)', 'public.qbo_sync_payments(uuid, text, text)',
          'public.qbo_sync_drift_audit(uuid)',
          'public.qbo_oauth_initiate(uuid, text, text, text)', 'qbo_sync.disconnect(uuid, text)',
          'public.qbo_sync_resolve_conflict(uuid, text, jsonb)'],
    'the application executes only the sync API and what it calls');
SELECT function_privs_are('qbo_sync', f, args::name[], r, ARRAY[]::text[], r || ' cannot execute qbo_sync.' || f)
  FROM unnest(ARRAY['qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app']) AS r,
       (VALUES ('secret', ARRAY['text']), ('encrypt_token', ARRAY['text']),
               ('decrypt_token', ARRAY['bytea']), ('python_setup', ARRAY[]::text[])) AS x(f, args); -- 12
SELECT function_privs_are('public', 'trigger_qbo_sync', ARRAY['uuid', 'text', 'text', 'text']::name[],
                          'qbo_sync_app', ARRAY['EXECUTE'], 'the application can execute trigger_qbo_sync');

-- A role created now (so a member of PUBLIC only) gets nothing either.
CREATE ROLE qbo_tap_nobody NOLOGIN;
SELECT ok(NOT has_function_privilege('qbo_tap_nobody', 'qbo_sync.secret(text)', 'EXECUTE'),
          'a fresh role cannot execute qbo_sync.secret');
SELECT ok(NOT has_schema_privilege('qbo_tap_nobody', 'qbo_sync', 'USAGE'),
          'a fresh role has no usage on schema qbo_sync');
SELECT ok(NOT has_table_privilege('qbo_tap_nobody', 'qbo_sync.settings', 'SELECT'),
          'a fresh role cannot read qbo_sync.settings');
SELECT is_empty($$
    SELECT c.oid::regclass::text
      FROM pg_class AS c
     WHERE c.relnamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
       AND c.relkind IN ('r', 'v', 'p')
       AND c.oid::regclass::text NOT LIKE 'tap.%'
       AND (has_table_privilege('qbo_tap_nobody', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
            OR has_any_column_privilege('qbo_tap_nobody', c.oid, 'SELECT, INSERT, UPDATE'))$$,
    'a fresh role can read or write no table or view of public or qbo_sync');

-- ---------------------------------------------------------------- schema privileges
SELECT schema_privs_are('qbo_sync', 'qbo_sync_listener', ARRAY[]::text[], 'the listener has no usage on qbo_sync');
SELECT schema_privs_are('qbo_sync', 'qbo_sync_monitor', ARRAY['USAGE'], 'the monitor has usage on qbo_sync');
SELECT schema_privs_are('qbo_sync', 'qbo_sync_app', ARRAY['USAGE'], 'the application has usage on qbo_sync');

-- ---------------------------------------------------------------- table privileges
SELECT table_privs_are(s, t, r, privs, r || ' on ' || s || '.' || t || ': ' || coalesce(nullif(array_to_string(privs, ', '), ''), 'nothing'))
  FROM (VALUES
    -- listener: table-level nothing anywhere (its INSERT on qbo_webhook_log is per column)
    ('public', 'qbo_webhook_log',       'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_webhook_processed', 'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_connection',        'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_oauth_state',       'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_queue',        'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_history',      'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_cursor',       'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_conflict',     'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_status',       'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'organizations',         'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'customer_profile',      'qbo_sync_listener', ARRAY[]::text[]),
    ('qbo_sync', 'settings',            'qbo_sync_listener', ARRAY[]::text[]),
    -- monitor: reads, never writes; no table-level SELECT on qbo_connection (columns only)
    ('public', 'organizations',         'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_queue',        'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_history',      'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_webhook_log',       'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_webhook_processed', 'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_cursor',       'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_conflict',     'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_status',       'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_connection',        'qbo_sync_monitor', ARRAY[]::text[]),
    ('public', 'qbo_oauth_state',       'qbo_sync_monitor', ARRAY[]::text[]),
    ('qbo_sync', 'settings',            'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'installation',        'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'migration',           'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'migrations',          'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'python_module',       'qbo_sync_monitor', ARRAY[]::text[]),
    ('qbo_sync', 'local_deletion',      'qbo_sync_monitor', ARRAY[]::text[]),
    ('qbo_sync', 'entity',              'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'error_code',          'qbo_sync_monitor', ARRAY['SELECT']),
    ('qbo_sync', 'organization_lock',   'qbo_sync_monitor', ARRAY[]::text[]),
    -- application: its organization's data; queue work; reads history, status, conflicts
    ('public', 'organizations',         'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'customer_profile',      'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'item_record',           'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'invoice_record',        'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'invoice_line_item',     'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'invoice_payment',       'qbo_sync_app', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
    ('public', 'qbo_sync_queue',        'qbo_sync_app', ARRAY['SELECT']),
    ('public', 'qbo_sync_history',      'qbo_sync_app', ARRAY['SELECT']),
    ('public', 'qbo_sync_status',       'qbo_sync_app', ARRAY['SELECT']),
    ('public', 'qbo_sync_conflict',     'qbo_sync_app', ARRAY['SELECT']),
    ('public', 'qbo_connection',        'qbo_sync_app', ARRAY[]::text[]),
    ('public', 'qbo_webhook_log',       'qbo_sync_app', ARRAY[]::text[]),
    ('public', 'qbo_webhook_processed', 'qbo_sync_app', ARRAY[]::text[]),
    ('public', 'qbo_oauth_state',       'qbo_sync_app', ARRAY[]::text[]),
    ('public', 'qbo_sync_cursor',       'qbo_sync_app', ARRAY[]::text[]),
    ('qbo_sync', 'settings',            'qbo_sync_app', ARRAY['SELECT']),
    ('qbo_sync', 'python_module',       'qbo_sync_app', ARRAY[]::text[]),
    ('qbo_sync', 'entity',              'qbo_sync_app', ARRAY[]::text[]),
    ('qbo_sync', 'organization_lock',   'qbo_sync_app', ARRAY[]::text[]),
    -- per-record status: read by the application (its organization) and the monitor
    ('public', 'qbo_sync_record_status', 'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_record_counts', 'qbo_sync_listener', ARRAY[]::text[]),
    ('public', 'qbo_sync_record_status', 'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_record_counts', 'qbo_sync_monitor', ARRAY['SELECT']),
    ('public', 'qbo_sync_record_status', 'qbo_sync_app', ARRAY['SELECT']),
    ('public', 'qbo_sync_record_counts', 'qbo_sync_app', ARRAY['SELECT'])
  ) AS x(s, t, r, privs);                                                                -- 56
-- the monitor reads the status columns of the synced tables (for qbo_sync_record_status), not
-- their business values
SELECT set_eq($$SELECT a.attname::text FROM pg_attribute AS a
                 WHERE a.attrelid = 'public.customer_profile'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   AND has_column_privilege('qbo_sync_monitor', a.attrelid, a.attnum, 'SELECT')$$,
              ARRAY['id', 'organization_id', 'qbo_id', 'qbo_sync_status', 'qbo_deleted_at',
                    'qbo_sync_error_class', 'qbo_sync_error_code', 'qbo_sync_error', 'qbo_intuit_tid',
                    'qbo_sync_attempts', 'qbo_last_synced_at', 'qbo_local_version', 'qbo_synced_version'],
              'the monitor reads exactly the status columns of customer_profile');

-- ---------------------------------------------------------------- column privileges
SELECT set_eq($$SELECT a.attname::text FROM pg_attribute AS a
                 WHERE a.attrelid = 'public.qbo_webhook_log'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   AND has_column_privilege('qbo_sync_listener', a.attrelid, a.attnum, 'INSERT')$$,
              ARRAY['body', 'payload', 'signature', 'signature_valid', 'content_type', 'remote_addr',
                    'payload_format', 'status', 'error'],
              'the listener inserts exactly the webhook columns (not id, received_at, processed_at, event_count)');
SELECT ok(NOT has_any_column_privilege('qbo_sync_listener', 'public.qbo_webhook_log', 'SELECT, UPDATE'),
          'the listener can neither read nor update any column of qbo_webhook_log');
SELECT set_eq(format($$SELECT a.attname::text FROM pg_attribute AS a
                        WHERE a.attrelid = 'public.qbo_connection'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                          AND has_column_privilege(%L, a.attrelid, a.attnum, 'SELECT')$$, r),
              ARRAY['organization_id', 'realm_id', 'environment', 'api_base_url', 'company_name',
                    'qbo_token_expires_at', 'qbo_refresh_token_expires_at', 'qbo_refresh_token_hard_expires_at',
                    'is_active', 'inactive_reason', 'connected_at', 'last_refreshed_at', 'last_refresh_error',
                    'refresh_failure_count', 'created_at', 'updated_at'],
              r || ' reads every qbo_connection column except the encrypted tokens')
  FROM unnest(ARRAY['qbo_sync_monitor', 'qbo_sync_app']) AS r;                            -- 2
SELECT column_privs_are('public', 'qbo_connection', c, r, ARRAY[]::text[], r || ' has no privilege on qbo_connection.' || c)
  FROM unnest(ARRAY['qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app']) AS r,
       unnest(ARRAY['qbo_access_token_encrypted', 'qbo_refresh_token_encrypted']) AS c;     -- 6
SELECT is_empty($$SELECT r || ' ' || a.attname
                    FROM pg_attribute AS a,
                         unnest(ARRAY['qbo_sync_listener', 'qbo_sync_monitor', 'qbo_sync_app']) AS r
                   WHERE a.attrelid = 'public.qbo_connection'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND has_column_privilege(r, a.attrelid, a.attnum, 'INSERT, UPDATE, REFERENCES')$$,
                'no role can write any column of qbo_connection');

-- ---------------------------------------------------------------- the status page's role
SELECT has_role('qbo_sync_dashboard', 'role qbo_sync_dashboard exists');
SELECT is((SELECT rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb
             FROM pg_roles WHERE rolname = 'qbo_sync_dashboard'), false,
          'qbo_sync_dashboard cannot log in, is no superuser, bypasses no RLS, creates nothing');
SELECT set_eq($$SELECT p.oid::regprocedure::text FROM pg_proc AS p
                 WHERE p.pronamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
                   AND has_function_privilege('qbo_sync_dashboard', p.oid, 'EXECUTE')
                   AND (p.pronamespace = 'qbo_sync'::regnamespace OR p.proname LIKE 'qbo\_%'
                        OR p.proname = 'trigger_qbo_sync')$$,
              ARRAY['trigger_qbo_sync(uuid,text,text,text)', 'qbo_sync_requeue(uuid)',
                    'qbo_sync_cancel(uuid)', 'qbo_sync_resolve_conflict(uuid,text,jsonb)',
                    'qbo_sync_retry_record(text,uuid)', 'qbo_sync_skip_record(text,uuid,text)',
                    'qbo_oauth_initiate(uuid,text,text,text)', 'disconnect(uuid,text)'],
              'qbo_sync_dashboard may execute exactly the status page''s actions');
SELECT is_empty($$SELECT c.oid::regclass::text FROM pg_class AS c
                   WHERE c.relnamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
                     AND has_any_column_privilege('qbo_sync_dashboard', c.oid,
                                                  'SELECT, INSERT, UPDATE, REFERENCES')$$,
                'qbo_sync_dashboard reads and writes no table');

SELECT * FROM finish();
ROLLBACK;

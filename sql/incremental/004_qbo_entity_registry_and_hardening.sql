-- Migration 004: one registry of the synced entities, and the table-level guarantees the
-- hardening of the queue, the worker and the webhook log rests on.
--
-- Names: an *entity* is what users pass to trigger_qbo_sync ('customers', 'items', 'invoices',
-- 'payments'); the guide's column names for it (qbo_sync_queue.sync_endpoint,
-- qbo_sync_history.entity_types) are kept for compatibility, every other table calls it `entity`.
-- QBO's own name for it ('Customer') is its `qbo_entity`.

-- The registry. Its rows are written by the idempotent layer (sql/idempotent/015_entities.sql),
-- so an upgrade can change synced columns without a migration.
CREATE TABLE qbo_sync.entity (
    entity              text PRIMARY KEY CHECK (entity ~ '^[a-z_]+$'),
    app_table           text NOT NULL UNIQUE,
    qbo_entity          text NOT NULL UNIQUE,
    dependency_order    integer NOT NULL CHECK (dependency_order > 0),
    synced_columns      text[] NOT NULL,
    line_table          text,
    line_parent_column  text,
    line_synced_columns text[],
    delete_operation    text NOT NULL CHECK (delete_operation IN ('deactivate', 'delete')),
    CHECK ((line_table IS NULL) = (line_parent_column IS NULL)
           AND (line_table IS NULL) = (line_synced_columns IS NULL))
);
COMMENT ON TABLE qbo_sync.entity IS
    'The synced entities: application table, QBO name, push order, watched columns. Read by the '
    'change-tracking triggers, trigger_qbo_sync, webhook processing, the scheduler and the engine.';

INSERT INTO qbo_sync.entity (entity, app_table, qbo_entity, dependency_order, synced_columns,
                             delete_operation)
VALUES ('items', 'item_record', 'Item', 1, '{}', 'deactivate'),
       ('customers', 'customer_profile', 'Customer', 1, '{}', 'deactivate'),
       ('invoices', 'invoice_record', 'Invoice', 2, '{}', 'delete'),
       ('payments', 'invoice_payment', 'Payment', 3, '{}', 'delete');

-- Entity names are checked against the registry, not repeated in CHECK constraints.
ALTER TABLE public.qbo_sync_queue DROP CONSTRAINT qbo_sync_queue_sync_endpoint_check,
    ADD CONSTRAINT qbo_sync_queue_sync_endpoint_fkey
        FOREIGN KEY (sync_endpoint) REFERENCES qbo_sync.entity (entity);

ALTER TABLE qbo_sync.local_deletion RENAME COLUMN entity_type TO entity;
ALTER TABLE qbo_sync.local_deletion DROP CONSTRAINT local_deletion_entity_type_check,
    ADD CONSTRAINT local_deletion_entity_fkey FOREIGN KEY (entity) REFERENCES qbo_sync.entity (entity);

ALTER TABLE public.qbo_sync_cursor RENAME COLUMN entity_type TO entity;
ALTER TABLE public.qbo_sync_cursor DROP CONSTRAINT qbo_sync_cursor_entity_type_check,
    ADD CONSTRAINT qbo_sync_cursor_entity_fkey FOREIGN KEY (entity) REFERENCES qbo_sync.entity (entity);

ALTER TABLE public.qbo_sync_conflict RENAME COLUMN entity_type TO entity;
ALTER TABLE public.qbo_webhook_processed RENAME COLUMN entity_type TO entity;

-- A webhook whose signature did not verify can only ever be 'rejected': never processed.
UPDATE public.qbo_webhook_log
   SET status = 'rejected', error = coalesce(error, 'signature did not verify'), processed_at = now()
 WHERE NOT signature_valid AND status <> 'rejected';
ALTER TABLE public.qbo_webhook_log
    ADD CONSTRAINT qbo_webhook_log_unsigned_is_rejected CHECK (signature_valid OR status = 'rejected');

-- The history says so when a worker lost a job's lease (reclaimed, requeued or cancelled under it),
-- and when a job ran but its outcome could not be recorded (another session held its queue row).
ALTER TABLE public.qbo_sync_history DROP CONSTRAINT qbo_sync_history_status_check,
    ADD CONSTRAINT qbo_sync_history_status_check
        CHECK (status IN ('running', 'completed', 'partial', 'failed', 'lease_lost', 'unconfirmed'));

-- A webhook row whose organization was busy waits until this time before it is tried again, so
-- rows of one busy organization never sit at the head of every pass.
ALTER TABLE public.qbo_webhook_log ADD COLUMN next_attempt_at timestamptz;

-- The tables the worker writes on every job no longer reference organizations: a foreign-key
-- check takes a KEY SHARE lock on the organization's row, so an application holding its own
-- organization row FOR UPDATE made the worker wait, and every other organization's jobs with it.
-- Deleting an organization still removes its rows (qbo_sync.forget_organization, a trigger).
ALTER TABLE public.qbo_sync_queue DROP CONSTRAINT qbo_sync_queue_organization_id_fkey;
ALTER TABLE public.qbo_sync_history DROP CONSTRAINT qbo_sync_history_organization_id_fkey;
ALTER TABLE public.qbo_webhook_processed DROP CONSTRAINT qbo_webhook_processed_organization_id_fkey;
ALTER TABLE public.qbo_sync_cursor DROP CONSTRAINT qbo_sync_cursor_organization_id_fkey;
ALTER TABLE public.qbo_sync_conflict DROP CONSTRAINT qbo_sync_conflict_organization_id_fkey;

-- The SQLSTATE a job failed with, so retry decisions and monitoring can be checked afterwards.
ALTER TABLE public.qbo_sync_queue ADD COLUMN last_error_code text;

-- One worker at a time per organization: a row lock on this table, which only the owner can take
-- (advisory locks can be taken by any role, so a role could hold another organization's work).
CREATE TABLE qbo_sync.organization_lock (
    organization_id uuid PRIMARY KEY
);

-- The in-database Python is identified by a hash of its sources (kept current by a trigger), so
-- a backend notices re-installed code even when the version did not change. The same trigger
-- touches every PL/Python function of the schema: PL/Python recompiles a function whose catalog
-- row changed, which empties its SD, and an empty SD is what sends a call to the hash check (the
-- fast path of every other call is a dictionary lookup).
ALTER TABLE qbo_sync.installation ADD COLUMN code_hash text;

CREATE FUNCTION qbo_sync.refresh_code_hash()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f regprocedure;
BEGIN
    UPDATE qbo_sync.installation
       SET code_hash = (SELECT md5(string_agg(m.name || ':' || m.version || ':' || md5(m.source), ','
                                              ORDER BY m.name))
                          FROM qbo_sync.python_module AS m);
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc AS p
          JOIN pg_language AS l ON l.oid = p.prolang
         WHERE p.pronamespace = 'qbo_sync'::regnamespace AND l.lanname = 'plpython3u'
    LOOP
        EXECUTE format('ALTER FUNCTION %s COST %s', f, (SELECT p.procost FROM pg_proc AS p WHERE p.oid = f));
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER python_module_code_hash
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON qbo_sync.python_module
    FOR EACH STATEMENT EXECUTE FUNCTION qbo_sync.refresh_code_hash();

-- Installations that kept their modules get their hash now.
UPDATE qbo_sync.installation
   SET code_hash = (SELECT md5(string_agg(m.name || ':' || m.version || ':' || md5(m.source), ','
                                          ORDER BY m.name))
                      FROM qbo_sync.python_module AS m);

-- The SQLSTATEs qbo-sync raises (class QB: QuickBooks; class QS: qbo-sync itself), and whether a
-- job that failed with one is retried. Rows are written by the idempotent layer (060_worker.sql).
CREATE TABLE qbo_sync.error_code (
    sqlstate    text PRIMARY KEY CHECK (sqlstate ~ '^[0-9A-Z]{5}$'),
    name        text NOT NULL UNIQUE,
    retryable   boolean NOT NULL,
    description text NOT NULL
);

-- Migration 007: the two-way engine's bookkeeping: per-record status, conflicts, local deletions
-- pushed with their outcome, and the drift audit.
--
-- * On the synced tables: the error's class and QBO's code and intuit_tid, the attempts made, and
--   when a create was first sent (a create whose outcome is unknown is looked up in QBO by what
--   was sent, from that time on, before it is sent again). A row's status may now be 'held' (it
--   waits for what it references, or for a person: then it is 'conflict').
-- * The base of the three-way merge is the row's qbo_raw: the QBO object as it was when both sides
--   last agreed (stored by every pull that applies it and every push QBO answered).
-- * qbo_sync_conflict keeps the base and the fields that conflicted, the policy applied, and who
--   resolved it how; organization_settings gains the 'hold' policy and per-field ownership.
-- * qbo_sync.local_deletion records its attempts and last error.
-- * public.qbo_sync_drift: what the drift audit found (counts and totals in QBO and here).
-- * qbo_sync_cursor.incremental_requested_at: when (the database's clock) the CDC request that
--   brought the entity up to date was sent; a pull job queued before then has nothing left to
--   do (one CDC call serves every entity of an organization that is due).

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment'] LOOP
        EXECUTE format($f$
            ALTER TABLE public.%I
                ADD COLUMN IF NOT EXISTS qbo_sync_error_class text,
                ADD COLUMN IF NOT EXISTS qbo_sync_error_code  text,
                ADD COLUMN IF NOT EXISTS qbo_intuit_tid       text,
                ADD COLUMN IF NOT EXISTS qbo_sync_attempts    integer NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS qbo_create_sent_at   timestamptz
        $f$, t);
        EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT IF EXISTS %I', t, t || '_qbo_sync_status_check');
        EXECUTE format(
            'ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (qbo_sync_status IN '
            '(''pending'', ''synced'', ''held'', ''error'', ''conflict''))',
            t, t || '_qbo_sync_status_check');
        EXECUTE format(
            'ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (qbo_sync_error_class IN '
            '(''auth'', ''validation'', ''conflict'', ''throttle'', ''transient'', ''dependency''))',
            t, t || '_qbo_sync_error_class_check');
        -- the stored QBO object (the merge's base) is written by every pull: lz4 compresses it
        -- several times faster than the default pglz, where the server is built with it
        BEGIN
            EXECUTE format('ALTER TABLE public.%I ALTER COLUMN qbo_raw SET COMPRESSION lz4', t);
        EXCEPTION WHEN feature_not_supported THEN
            NULL;
        END;
        -- per-record status counts (pending, held, error, conflict) without reading synced rows
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (organization_id, qbo_sync_status) '
                       'WHERE qbo_sync_status <> ''synced''', t || '_unsynced_idx', t);
    END LOOP;
END
$$;
COMMENT ON COLUMN public.invoice_record.qbo_sync_error_class IS
    'what kind of problem the last sync of the row hit: auth, validation, conflict, throttle, transient or dependency';

ALTER TABLE public.qbo_sync_conflict
    ADD COLUMN base_values jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN fields text[] NOT NULL DEFAULT '{}',
    ADD COLUMN policy text NOT NULL DEFAULT 'qbo_wins',
    ADD COLUMN status text NOT NULL DEFAULT 'resolved'
        CHECK (status IN ('resolved', 'held')),
    ADD COLUMN resolved_values jsonb,
    ADD COLUMN resolved_by text,
    ADD COLUMN detected_by text NOT NULL DEFAULT 'pull';
COMMENT ON TABLE public.qbo_sync_conflict IS
    'A row changed on both sides in the same field: both values, the base (the last synced value), '
    'the policy applied and the outcome; held ones wait for qbo_sync_resolve_conflict';
CREATE INDEX qbo_sync_conflict_held_idx ON public.qbo_sync_conflict (organization_id, entity)
    WHERE status = 'held';

ALTER TABLE qbo_sync.organization_settings
    DROP CONSTRAINT IF EXISTS organization_settings_conflict_policy_check,
    ADD CONSTRAINT organization_settings_conflict_policy_check
        CHECK (conflict_policy IN ('qbo_wins', 'local_wins', 'hold')),
    ADD COLUMN field_owners jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(field_owners) = 'object');
COMMENT ON COLUMN qbo_sync.organization_settings.field_owners IS
    'per-field ownership, {"<entity>.<column>": "qbo" | "local"}: that side wins a conflict on the '
    'field whatever the policy (what QBO computes, such as balances, is always QBO''s)';

ALTER TABLE qbo_sync.local_deletion
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN local_id uuid;

CREATE TABLE public.qbo_sync_drift (
    organization_id uuid NOT NULL,
    entity          text NOT NULL REFERENCES qbo_sync.entity (entity),
    checked_at      timestamptz NOT NULL DEFAULT now(),
    qbo_count       bigint,
    local_count     bigint,
    qbo_total       numeric(18, 2),
    local_total     numeric(18, 2),
    missing_here    text[] NOT NULL DEFAULT '{}',
    drifted         boolean NOT NULL,
    repair_job_id   uuid,
    detail          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, entity, checked_at)
);
COMMENT ON TABLE public.qbo_sync_drift IS
    'What the drift audit found per organization and entity: counts (and totals for invoices and '
    'payments) in QBO and here, and the targeted pull queued to repair a difference';

ALTER TABLE public.qbo_sync_cursor ADD COLUMN incremental_requested_at timestamptz;
COMMENT ON COLUMN public.qbo_sync_cursor.incremental_requested_at IS
    'when the CDC request that last brought this entity up to date was sent (database clock): '
    'a pull job queued before then finds nothing to do';

-- The claim takes work due for longer than queue.aging_seconds first, oldest first.
CREATE INDEX qbo_sync_queue_due_idx ON public.qbo_sync_queue (run_at, created_at)
    WHERE status = 'pending';

-- The QBO Ids a full pull has read so far in its pass: when the pass ends, a row linked to an Id
-- it never read was deleted in QBO (whatever order QBO pages in). Emptied when a pass starts and
-- when it ends.
CREATE TABLE qbo_sync.pull_pass_seen (
    organization_id uuid NOT NULL,
    entity          text NOT NULL REFERENCES qbo_sync.entity (entity),
    qbo_id          text NOT NULL,
    PRIMARY KEY (organization_id, entity, qbo_id)
);

-- A running job's progress (qbo_sync_db.progress), for `qbo-sync sync --wait` and anyone watching
-- the queue: objects read from QBO (and how many QBO has, when a full pull counted them), rows
-- written here, operations pushed, accepted and failed, counted over the job's runs. Written by
-- qbo_sync.publish_progress in the transaction of the page or batch it counts (no commit of its
-- own). A handful of keys: bounded here, so no code path can make the row grow.
ALTER TABLE public.qbo_sync_queue
    ADD COLUMN progress jsonb
        CHECK (jsonb_typeof(progress) = 'object' AND octet_length(progress::text) <= 1000);
COMMENT ON COLUMN public.qbo_sync_queue.progress IS
    'the job''s running counts while it runs (and as it left them): phase, mode, read, total, '
    'written, sent, pushed, failed, held, at; NULL before its first page';

-- Migration 006: jobs that commit as they go, and QBO's rate limits shared by every backend.
--
-- * qbo_sync.pacer: one row per realm and app holding the pacing state (see docs/pacing.md); every
--   backend that calls a company reserves its requests here, in short transactions of their own.
-- * qbo_sync.organization_lock becomes a lease: a job now commits between its QBO calls (so a
--   row lock would end at the first commit); the organization is held by the job until it ends
--   or its lease runs out, like the queue row itself.
-- * qbo_sync.entity.handler: the in-database Python that runs an entity's jobs
--   ("qbo_sync_db.module:function"), or NULL for a SQL handler qbo_sync.sync_<entity>(job).
-- * qbo_sync_history.intuit_tid: the transaction id QBO gave a failed call, for Intuit's support.
-- * qbo_deleted_at on the synced tables and the position of a full pull in qbo_sync_cursor.

CREATE TABLE qbo_sync.pacer (
    realm_id   text NOT NULL,
    app        text NOT NULL,
    state      jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, app)
);
COMMENT ON TABLE qbo_sync.pacer IS
    'QBO rate-limit state per realm and app (the OAuth client id), shared by every backend; '
    'written by qbo_sync_db.shared_pacer, read by qbo_sync_db.pacing. Rows may be deleted at any '
    'time (a fresh state is allowed to start at once).';

ALTER TABLE qbo_sync.organization_lock
    ADD COLUMN job_id uuid,
    ADD COLUMN lease_id uuid,
    ADD COLUMN held_until timestamptz;
COMMENT ON TABLE qbo_sync.organization_lock IS
    'One row per organization: the run that holds it (the job and its lease) until held_until, '
    'extended with the lease. Taken with FOR UPDATE SKIP LOCKED in a short transaction, never '
    'waited for.';

ALTER TABLE qbo_sync.entity
    ADD COLUMN handler text
        CHECK (handler ~ '^qbo_sync_db(\.[a-z_][a-z0-9_]*)+:[a-z_][a-z0-9_]*$');
COMMENT ON COLUMN qbo_sync.entity.handler IS
    'module:function of the in-database Python that runs this entity''s jobs; NULL: the SQL '
    'function qbo_sync.sync_<entity>(job) when the owner installed one';

ALTER TABLE public.qbo_sync_history ADD COLUMN intuit_tid text;
COMMENT ON COLUMN public.qbo_sync_history.intuit_tid IS
    'intuit_tid of the QBO answer that made the job fail (quote it to Intuit''s support)';

-- Pulling (the sync engine): a row QBO deleted is kept and marked (qbo_deleted_at), and a full
-- pass records where it is, so a pull that stops half-way resumes at its page.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment'] LOOP
        EXECUTE format('ALTER TABLE public.%I ADD COLUMN IF NOT EXISTS qbo_deleted_at timestamptz', t);
    END LOOP;
END
$$;
ALTER TABLE public.qbo_sync_cursor
    ADD COLUMN full_pass_started_at timestamptz,
    ADD COLUMN full_pass_position integer,
    ADD COLUMN full_pass_needed boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN public.qbo_sync_cursor.full_pass_needed IS
    'the next pull reads everything (CDC capped an answer, so deletions may have been missed)';
COMMENT ON COLUMN public.qbo_sync_cursor.full_pass_position IS
    'STARTPOSITION of the next page of a full pull under way (NULL: none under way)';

-- Claim order: priority, then when a job became due (run_at), then age. A job handed back (a
-- long pull between its pages, a busy organization's job) goes behind the work due before it.
DROP INDEX public.qbo_sync_queue_claim_idx;
CREATE INDEX qbo_sync_queue_claim_idx ON public.qbo_sync_queue (priority DESC, run_at, created_at)
    WHERE status = 'pending';

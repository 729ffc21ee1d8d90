-- Migration 002: webhook log and idempotency keys, the sync queue, and sync history.

CREATE TYPE public.qbo_sync_priority AS ENUM ('low', 'normal', 'high', 'urgent');
COMMENT ON TYPE public.qbo_sync_priority IS
    'Queue priority; declared in ascending order so ORDER BY priority DESC puts urgent first';

-- Every POST the listener receives, with its verdict, stored in the same statement that answers it.
CREATE TABLE public.qbo_webhook_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT now(),
    body             text NOT NULL,
    payload          jsonb,
    signature        text,
    signature_valid  boolean NOT NULL,
    content_type     text,
    remote_addr      text,
    payload_format   text CHECK (payload_format IN ('legacy', 'cloudevents', 'unknown')),
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'rejected', 'processed', 'error')),
    error            text,
    event_count      integer,
    processed_at     timestamptz
);
CREATE INDEX qbo_webhook_log_received_idx ON public.qbo_webhook_log (id) WHERE status = 'received';
CREATE INDEX qbo_webhook_log_received_at_idx ON public.qbo_webhook_log (received_at);

-- One row per webhook event already turned into queue work (redeliveries are skipped).
CREATE TABLE public.qbo_webhook_processed (
    organization_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    event_key       text NOT NULL,
    realm_id        text NOT NULL,
    entity_type     text NOT NULL,
    entity_id       text NOT NULL,
    operation       text NOT NULL,
    occurred_at     timestamptz,
    deleted_id      text,
    webhook_log_id  bigint,
    queue_job_id    uuid,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, event_key)
);
CREATE INDEX qbo_webhook_processed_processed_at_idx ON public.qbo_webhook_processed (processed_at);

CREATE TABLE public.qbo_sync_queue (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    sync_endpoint   text NOT NULL
                    CHECK (sync_endpoint IN ('items', 'customers', 'invoices', 'payments')),
    direction       text NOT NULL DEFAULT 'both' CHECK (direction IN ('pull', 'push', 'both')),
    priority        public.qbo_sync_priority NOT NULL DEFAULT 'normal',
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    entity_ids      text[],
    source          text NOT NULL DEFAULT 'manual',
    payload         jsonb NOT NULL DEFAULT '{}',
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_at          timestamptz NOT NULL DEFAULT now(),
    lease_id        uuid,
    locked_by       text,
    locked_until    timestamptz,
    last_error      text,
    result          jsonb,
    -- clock_timestamp, not now(): jobs enqueued in one transaction keep their order
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz
);
COMMENT ON COLUMN public.qbo_sync_queue.run_at IS 'not claimed before this time (backoff after a failure)';
COMMENT ON COLUMN public.qbo_sync_queue.locked_until IS 'lease: a processing job whose lease passed is reclaimed';
COMMENT ON COLUMN public.qbo_sync_queue.entity_ids IS 'QBO ids to sync; NULL means every changed object';

-- Claim order: priority, then age. Partial, so it holds only the claimable backlog.
CREATE INDEX qbo_sync_queue_claim_idx ON public.qbo_sync_queue (priority DESC, created_at)
    WHERE status = 'pending';
-- Enqueue folds a new job into an identical pending one found through this index.
CREATE INDEX qbo_sync_queue_fold_idx ON public.qbo_sync_queue (organization_id, sync_endpoint, direction)
    WHERE status = 'pending' AND attempts = 0;
CREATE INDEX qbo_sync_queue_lease_idx ON public.qbo_sync_queue (locked_until)
    WHERE status = 'processing';
CREATE INDEX qbo_sync_queue_org_status_idx ON public.qbo_sync_queue (organization_id, status);
CREATE INDEX qbo_sync_queue_finished_idx ON public.qbo_sync_queue (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

CREATE TABLE public.qbo_sync_history (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    queue_job_id    uuid,
    sync_type       text NOT NULL,
    direction       text,
    entity_types    text[] NOT NULL DEFAULT '{}',
    status          text NOT NULL CHECK (status IN ('running', 'completed', 'partial', 'failed')),
    entity_count    integer NOT NULL DEFAULT 0,
    success_count   integer NOT NULL DEFAULT 0,
    failure_count   integer NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    error_summary   text,
    summary         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX qbo_sync_history_org_completed_idx ON public.qbo_sync_history (organization_id, completed_at DESC);
CREATE INDEX qbo_sync_history_completed_idx ON public.qbo_sync_history (completed_at);

-- Migration 008: a job's history rows found by the job.
--
-- A failed job's intuit_tid is written on its latest history row (qbo_sync.worker_finish), and
-- "what happened to job X" is the natural monitoring question; both looked the rows up by
-- queue_job_id, which no index covered, so each read every row the history keeps (its retention
-- is retention.sync_history_days: hundreds of thousands of rows for many organizations), once a
-- failed job. Jobs written by other paths (token warnings, skips) have no queue_job_id.
CREATE INDEX IF NOT EXISTS qbo_sync_history_queue_job_idx
    ON public.qbo_sync_history (queue_job_id, completed_at DESC)
    WHERE queue_job_id IS NOT NULL;

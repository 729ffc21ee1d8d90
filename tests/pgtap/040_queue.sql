-- Queue behaviour in brief (the full queue suite is in pytest): enqueue folds identical pending
-- jobs and raises their priority; claim takes urgent first, then the oldest, under a lease.
SET search_path = tap, public, qbo_sync;

BEGIN;
SELECT plan(11);

-- Start from an empty queue (rolled back with everything else): claim looks at every organization.
DELETE FROM public.qbo_sync_queue;
INSERT INTO public.organizations (id, name) VALUES
    ('00000000-0000-4000-8000-0000000000a1', 'pgTAP org');
INSERT INTO public.qbo_connection (organization_id, realm_id)
VALUES ('00000000-0000-4000-8000-0000000000a1', 'pgtap-realm-a1');

-- Folding
CREATE TEMP TABLE job AS
SELECT qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'items', 'pull', 'low', ARRAY['2', '1']) AS first,
       NULL::uuid AS second;
UPDATE job SET second = qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'items', 'pull', 'high', ARRAY['3', '1']);

SELECT is((SELECT second FROM job), (SELECT first FROM job), 'an identical pending job is folded into the first');
SELECT is((SELECT count(*)::integer FROM public.qbo_sync_queue), 1, 'folding leaves one job');
SELECT is((SELECT priority FROM public.qbo_sync_queue), 'high'::qbo_sync_priority, 'folding keeps the higher priority');
SELECT is((SELECT entity_ids FROM public.qbo_sync_queue), ARRAY['1', '2', '3'], 'folding merges the ids, sorted and distinct');
SELECT isnt(qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'items', 'push'), (SELECT first FROM job),
            'another direction is another job');
SELECT is(qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'items', 'pull', 'low', NULL),
          (SELECT first FROM job), 'a job for every id folds too');
SELECT is((SELECT entity_ids FROM public.qbo_sync_queue WHERE id = (SELECT first FROM job)), NULL::text[],
          '...and widens the folded job to every changed object');

-- Claim order: urgent before high before normal; same priority oldest first
DO $$
BEGIN
    PERFORM qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'customers', 'pull', 'urgent');
    PERFORM qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'invoices', 'pull', 'normal');
    PERFORM qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'payments', 'pull', 'normal');
END
$$;
-- queue now: items/pull high, items/push normal (older), customers urgent, invoices normal, payments normal

SELECT results_eq(
    $$SELECT sync_endpoint || '/' || direction FROM qbo_sync.claim(5, 'pgtap', 60)$$,
    $$VALUES ('customers/pull'), ('items/pull'), ('items/push'), ('invoices/pull'), ('payments/pull')$$,
    'claim returns urgent first, then high, then normal by age');
SELECT is_empty($$SELECT * FROM qbo_sync.claim(1, 'pgtap', 60)$$, 'a claimed job is not claimed twice');
SELECT is((SELECT count(*)::integer FROM public.qbo_sync_queue
            WHERE status = 'processing' AND attempts = 1 AND lease_id IS NOT NULL
              AND locked_by = 'pgtap' AND locked_until > now()), 5,
          'every claimed job is processing under a lease with its attempt counted');
SELECT isnt(qbo_sync.enqueue('00000000-0000-4000-8000-0000000000a1', 'customers', 'pull', 'urgent'),
            (SELECT id FROM public.qbo_sync_queue WHERE sync_endpoint = 'customers'
              ORDER BY created_at LIMIT 1),
            'a job being processed is not folded into');

SELECT * FROM finish();
ROLLBACK;

"""Adversarial review of the queue's claim: what one organization's application can do to the
others' work. Reproductions of problems not fixed yet are marked xfail(strict)."""

from __future__ import annotations

import pytest

from tests.conftest import make_org
from tests.db.test_worker import make_handler


@pytest.mark.xfail(
    strict=True,
    reason="qbo_sync.claim orders by priority first: an application that keeps an urgent job "
    "of its own queued (trigger_qbo_sync's default priority) is served before every other "
    "organization's scheduled (normal) work, for as long as it likes",
)
def test_one_organizations_urgent_jobs_do_not_starve_the_others(conn, connect):
    org_a, org_b = make_org(conn, "Greedy A"), make_org(conn, "Patient B")
    make_handler(conn, "customers", "BEGIN RETURN jsonb_build_object('success_count', 1); END")
    try:
        # B's scheduled pull, as pg_cron's schedule_sync queues it
        job_b = conn.execute(
            "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', NULL, 'schedule')",
            (org_b,),
        ).fetchone()[0]
        app_a = connect(user="qbo_sync_app")
        app_a.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org_a),))
        for _ in range(10):
            app_a.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org_a,))
            conn.execute("CALL qbo_sync_worker(20, 1, true)")  # the worker takes one job
        status = conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job_b,))
        # ten jobs ran; B's, queued first, was never one of them
        assert status.fetchone()[0] == "completed"
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_customers(qbo_sync_queue)")

"""Adversarial review of the queue's claim: what one organization's application can do to the
others' work."""

from __future__ import annotations

from tests.conftest import make_org
from tests.db.test_worker import make_handler


def test_one_organizations_urgent_jobs_do_not_starve_the_others(conn, connect):
    """Priority orders the work due, but a job due for longer than queue.aging_seconds (120)
    goes first: B's scheduled job, due for three minutes, runs before A's urgent ones; a job of
    B's due for less than that waits behind them, as its priority says."""
    org_a, org_b = make_org(conn, "Greedy A"), make_org(conn, "Patient B")
    make_handler(conn, "customers", "BEGIN RETURN jsonb_build_object('success_count', 1); END")
    try:
        # B's scheduled pull, as pg_cron's schedule_sync queues it
        job_b = conn.execute(
            "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', NULL, 'schedule')",
            (org_b,),
        ).fetchone()[0]
        recent_b = conn.execute(
            "SELECT qbo_sync.enqueue(%s, 'customers', 'push', 'normal', NULL, 'schedule')",
            (org_b,),
        ).fetchone()[0]
        conn.execute(
            "UPDATE qbo_sync_queue SET run_at = now() - interval '3 minutes' WHERE id = %s",
            (job_b,),
        )
        app_a = connect(user="qbo_sync_app")
        app_a.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org_a),))
        app_a.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org_a,))
        conn.execute("CALL qbo_sync_worker(20, 1, true)")  # the worker takes one job: B's
        status = "SELECT status FROM qbo_sync_queue WHERE id = %s"
        assert conn.execute(status, (job_b,)).fetchone()[0] == "completed"
        for _ in range(3):
            app_a.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org_a,))
            conn.execute("CALL qbo_sync_worker(20, 1, true)")
        # B's job due for seconds only: A's urgent ones go first
        assert conn.execute(status, (recent_b,)).fetchone()[0] == "pending"
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_customers(qbo_sync_queue)")

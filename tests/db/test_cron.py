"""The nine pg_cron jobs, and a real pg_cron run of the queue processor."""

from __future__ import annotations

import time

import psycopg
import pytest

EXPECTED_JOBS = {
    "process-qbo-sync-queue": ("* * * * *", "CALL qbo_sync.worker()"),
    "qbo-check-token-expiry": ("*/5 * * * *", "SELECT qbo_sync.check_token_expiry()"),
    "qbo-push-local-changes": ("*/30 * * * *", "SELECT qbo_sync.push_local_changes()"),
    "qbo-sync-invoices-payments": (
        "0 * * * *",
        "SELECT qbo_sync.schedule_sync(ARRAY['invoices', 'payments'], 'both')",
    ),
    "qbo-sync-items-customers-pull": (
        "0 */6 * * *",
        "SELECT qbo_sync.schedule_sync(ARRAY['items', 'customers'], 'pull')",
    ),
    "cleanup-old-webhook-logs": ("0 2 * * *", "SELECT qbo_sync.cleanup_webhook_logs()"),
    "cleanup-old-webhook-processed": ("5 2 * * *", "SELECT qbo_sync.cleanup_webhook_processed()"),
    "cleanup-old-sync-jobs": ("10 2 * * *", "SELECT qbo_sync.cleanup_sync_jobs()"),
    "cleanup-old-sync-history": ("15 2 * * *", "SELECT qbo_sync.cleanup_sync_history()"),
}


def test_the_nine_jobs_exist_with_their_schedules(cron_dsn):
    with psycopg.connect(cron_dsn) as conn:
        rows = conn.execute(
            "SELECT jobname, schedule, command, active, database FROM cron.job"
        ).fetchall()
    jobs = {name: (schedule, command) for name, schedule, command, active, database in rows}
    assert jobs == EXPECTED_JOBS
    assert all(active and database == "qbo_cron" for _, _, _, active, database in rows)


def test_every_scheduled_command_runs(cron_dsn):
    """Each job's SQL runs as is (the token check has no expiring connection to refresh here)."""
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        conn.execute("UPDATE qbo_sync.settings SET value = '0' WHERE key = 'worker.drain_seconds'")
        try:
            for _schedule, command in EXPECTED_JOBS.values():
                conn.execute(command)
        finally:
            conn.execute(
                "UPDATE qbo_sync.settings SET value = '50' WHERE key = 'worker.drain_seconds'"
            )


def test_token_check_fails_clearly_while_no_refresh_is_installed(cron_dsn):
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('Expiring') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
            " VALUES (%s, 'realm-expiring', now() + interval '1 minute')",
            (org,),
        )
        try:
            with pytest.raises(
                psycopg.errors.UndefinedFunction,
                match=r"qbo_sync.token_refresh\(uuid\) is not installed",
            ):
                conn.execute("SELECT qbo_sync.check_token_expiry()")
        finally:
            conn.execute("DELETE FROM organizations WHERE id = %s", (org,))


def test_pg_cron_runs_the_queue_processor_which_processes_a_job(cron_dsn):
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        conn.execute(
            """CREATE OR REPLACE FUNCTION qbo_sync.sync_items(job qbo_sync_queue)
               RETURNS jsonb LANGUAGE sql AS $$
                   SELECT jsonb_build_object('entity_count', 1, 'success_count', 1,
                                             'ran_as', current_user, 'pid', pg_backend_pid()) $$"""
        )
        conn.execute("UPDATE qbo_sync.settings SET value = '5' WHERE key = 'worker.drain_seconds'")
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('Cron Co') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
            " VALUES (%s, 'realm-cron', now() + interval '1 hour')",
            (org,),
        )
        try:
            job_id = conn.execute(
                "SELECT trigger_qbo_sync(%s, 'items', 'pull')", (org,)
            ).fetchone()[0]
            my_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            deadline = time.monotonic() + 75  # pg_cron 1.4 starts jobs on the minute
            status = None
            while time.monotonic() < deadline:
                status, result = conn.execute(
                    "SELECT status, result FROM qbo_sync_queue WHERE id = %s", (job_id,)
                ).fetchone()
                if status == "completed":
                    break
                time.sleep(0.5)
            assert status == "completed", "pg_cron did not process the job within a minute"
            assert result["pid"] != my_pid  # another backend (pg_cron's) ran it
            history = conn.execute(
                "SELECT status, success_count FROM qbo_sync_history WHERE queue_job_id = %s",
                (job_id,),
            ).fetchone()
            assert history == ("completed", 1)
            # the run is recorded by pg_cron, and the view the troubleshooting guide needs shows it
            deadline = time.monotonic() + 15
            runs: list = []
            while time.monotonic() < deadline and not runs:
                runs = conn.execute(
                    "SELECT status FROM qbo_cron_job_runs WHERE jobname = 'process-qbo-sync-queue'"
                    " AND status = 'succeeded'"
                ).fetchall()
                time.sleep(0.5)
            assert runs, "pg_cron did not record a successful run of process-qbo-sync-queue"
        finally:
            conn.execute("DELETE FROM organizations WHERE id = %s", (org,))
            conn.execute("DROP FUNCTION qbo_sync.sync_items(qbo_sync_queue)")
            conn.execute(
                "UPDATE qbo_sync.settings SET value = '50' WHERE key = 'worker.drain_seconds'"
            )

"""The nine pg_cron jobs of the guide and the daily drift audit, the extra workers of
worker.processes, and a real pg_cron run of the queue processor."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
import pytest

EXPECTED_JOBS = {
    "process-qbo-sync-queue": ("* * * * *", "CALL qbo_sync.worker()"),
    "qbo-check-token-expiry": ("*/5 * * * *", "CALL qbo_sync.refresh_expiring_tokens()"),
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
    "qbo-drift-audit": ("30 3 * * *", "SELECT qbo_sync.drift_audit_all()"),
}


def test_the_nine_jobs_and_the_drift_audit_exist_with_their_schedules(cron_dsn):
    with psycopg.connect(cron_dsn) as conn:
        rows = conn.execute(
            "SELECT jobname, schedule, command, active, database FROM cron.job"
        ).fetchall()
    jobs = {name: (schedule, command) for name, schedule, command, active, database in rows}
    assert jobs == EXPECTED_JOBS
    assert all(active and database == "qbo_cron" for _, _, _, active, database in rows)


def test_every_scheduled_command_runs_and_does_its_work(cron_dsn):
    """Each job's SQL, run as pg_cron runs it, has its effect (the token check has no expiring
    connection to refresh here, so it refreshes none)."""
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('Jobs') RETURNING id"
        ).fetchone()[0]
        try:
            conn.execute(
                "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
                " VALUES (%s, 'realm-jobs', now() + interval '1 day')",
                (org,),
            )
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Dirty')",
                (org,),
            )
            old = "now() - interval '400 days'"
            conn.execute(
                f"INSERT INTO qbo_webhook_log (body, signature_valid, status, received_at)"
                f" VALUES ('old', true, 'processed', {old})"
            )
            conn.execute(
                "INSERT INTO qbo_webhook_processed (organization_id, event_key, realm_id, entity,"
                f" entity_id, operation, processed_at) VALUES (%s, 'k', 'r', 'items', '1', 'Update', {old})",
                (org,),
            )
            conn.execute(
                "INSERT INTO qbo_sync_history (organization_id, sync_type, status, completed_at)"
                f" VALUES (%s, 'manual', 'completed', {old})",
                (org,),
            )
            conn.execute(
                "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint, status, completed_at)"
                f" VALUES (%s, 'items', 'completed', {old})",
                (org,),
            )
            results = {}
            for name, (_schedule, command) in EXPECTED_JOBS.items():
                if command.startswith("CALL"):
                    continue  # the worker has a test of its own, below
                results[name] = conn.execute(command).fetchone()[0]
            assert results == {
                "qbo-push-local-changes": 1,  # the dirty customer
                "qbo-sync-invoices-payments": 2,
                "qbo-sync-items-customers-pull": 2,
                "cleanup-old-webhook-logs": 1,
                "cleanup-old-webhook-processed": 1,
                "cleanup-old-sync-jobs": 1,
                "cleanup-old-sync-history": 1,
                "qbo-drift-audit": 4,  # an audit per entity of the one active connection
            }
            audits = conn.execute(
                "SELECT sync_endpoint FROM qbo_sync_queue WHERE organization_id = %s"
                " AND payload ? 'audit' AND direction = 'pull' ORDER BY 1",
                (org,),
            ).fetchall()
            assert [a[0] for a in audits] == ["customers", "invoices", "items", "payments"]
            queued = conn.execute(
                "SELECT sync_endpoint, direction FROM qbo_sync_queue WHERE organization_id = %s"
                " AND NOT payload ? 'audit' ORDER BY 1, 2",
                (org,),
            ).fetchall()
            assert queued == [
                ("customers", "pull"),
                ("customers", "push"),
                ("invoices", "both"),
                ("items", "pull"),
                ("payments", "both"),
            ]
        finally:
            conn.execute("DELETE FROM organizations WHERE id = %s", (org,))
            conn.execute("DELETE FROM qbo_webhook_log WHERE body = 'old'")


def worker_jobs(conn: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT jobname, schedule, command FROM cron.job"
        " WHERE jobname LIKE 'process-qbo-sync-queue%' ORDER BY jobname"
    ).fetchall()
    return {name: (schedule, command) for name, schedule, command in rows}


def test_worker_processes_schedules_that_many_workers(cron_dsn):
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        worker = ("* * * * *", "CALL qbo_sync.worker()")
        try:
            assert worker_jobs(conn) == {"process-qbo-sync-queue": worker}  # the default, 1
            conn.execute("UPDATE qbo_sync.settings SET value = '3' WHERE key = 'worker.processes'")
            assert conn.execute("SELECT qbo_sync.schedule_workers()").fetchone()[0] == 3
            assert worker_jobs(conn) == {
                "process-qbo-sync-queue": worker,
                "process-qbo-sync-queue-2": worker,
                "process-qbo-sync-queue-3": worker,
            }
            runs_view = conn.execute(
                "SELECT pg_get_viewdef('qbo_cron_job_runs'::regclass)"
            ).fetchone()[0]
            assert "process-qbo-sync-queue-" in runs_view
            conn.execute("UPDATE qbo_sync.settings SET value = '2' WHERE key = 'worker.processes'")
            conn.execute("SELECT qbo_sync.schedule_workers()")
            assert sorted(worker_jobs(conn)) == [
                "process-qbo-sync-queue",
                "process-qbo-sync-queue-2",
            ]
            conn.execute("UPDATE qbo_sync.settings SET value = '0' WHERE key = 'worker.processes'")
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="between 1 and 32"):
                conn.execute("SELECT qbo_sync.schedule_workers()")
        finally:
            conn.execute("UPDATE qbo_sync.settings SET value = '1' WHERE key = 'worker.processes'")
            conn.execute("SELECT qbo_sync.schedule_workers()")
        # back to one: exactly the guide's nine jobs and the audit, names unchanged
        names = {r[0] for r in conn.execute("SELECT jobname FROM cron.job")}
        assert names == set(EXPECTED_JOBS)


@pytest.mark.slow  # pg_cron 1.4 starts jobs on the minute: this waits up to a minute by nature
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


@pytest.mark.slow  # pg_cron 1.4 starts jobs on the minute: this waits up to a minute by nature
def test_two_cron_workers_run_two_organizations_at_the_same_time(cron_dsn):
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        conn.execute(
            """CREATE OR REPLACE FUNCTION qbo_sync.sync_items(job qbo_sync_queue)
               RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
               DECLARE began timestamptz := clock_timestamp();
               BEGIN
                   PERFORM pg_sleep(3);
                   RETURN jsonb_build_object('began', began, 'ended', clock_timestamp(),
                                             'pid', pg_backend_pid());
               END $$"""
        )
        conn.execute("UPDATE qbo_sync.settings SET value = '8' WHERE key = 'worker.drain_seconds'")
        conn.execute("UPDATE qbo_sync.settings SET value = '2' WHERE key = 'worker.processes'")
        conn.execute("SELECT qbo_sync.schedule_workers()")
        orgs = []
        try:
            for name in ("Cron A", "Cron B"):
                org = conn.execute(
                    "INSERT INTO organizations (name) VALUES (%s) RETURNING id", (name,)
                ).fetchone()[0]
                orgs.append(org)
                conn.execute(
                    "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
                    " VALUES (%s, %s, now() + interval '1 hour')",
                    (org, f"realm-{name}"),
                )
            jobs = [
                conn.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (org,)).fetchone()[0]
                for org in orgs
            ]
            deadline = time.monotonic() + 80
            results: list = []
            while time.monotonic() < deadline:
                results = conn.execute(
                    "SELECT result FROM qbo_sync_queue WHERE id = ANY (%s) AND status = 'completed'",
                    (jobs,),
                ).fetchall()
                if len(results) == 2:
                    break
                time.sleep(0.5)
            assert len(results) == 2, "pg_cron's two workers did not process both jobs in time"
            first, second = (r[0] for r in results)
            assert first["pid"] != second["pid"]
            at = {
                (n, k): dt.datetime.fromisoformat(run[k])
                for n, run in enumerate((first, second))
                for k in ("began", "ended")
            }
            assert at[0, "began"] < at[1, "ended"] and at[1, "began"] < at[0, "ended"]
        finally:
            for org in orgs:
                conn.execute("DELETE FROM organizations WHERE id = %s", (org,))
            conn.execute("DROP FUNCTION qbo_sync.sync_items(qbo_sync_queue)")
            conn.execute(
                "UPDATE qbo_sync.settings SET value = '50' WHERE key = 'worker.drain_seconds'"
            )
            conn.execute("UPDATE qbo_sync.settings SET value = '1' WHERE key = 'worker.processes'")
            conn.execute("SELECT qbo_sync.schedule_workers()")

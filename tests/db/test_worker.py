"""The queue processor qbo_sync_worker(): dispatch to handlers, completion, failure, history."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

HANDLER = """
CREATE OR REPLACE FUNCTION public.qbo_sync_customers(org uuid, direction text, ids text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.handler_calls (organization_id, direction, ids) VALUES (org, direction, ids);
    IF direction = 'push' THEN
        RAISE EXCEPTION 'QBO answered 503' USING ERRCODE = 'connection_failure';
    END IF;
    RETURN jsonb_build_object('entity_count', 3, 'success_count', 2, 'failure_count', 1);
END $$;
"""


@pytest.fixture
def handler(conn):
    conn.execute(
        "CREATE TABLE handler_calls (organization_id uuid, direction text, ids text[], at timestamptz DEFAULT clock_timestamp())"
    )
    conn.execute(HANDLER)
    yield
    conn.execute("DROP FUNCTION public.qbo_sync_customers(uuid, text, text[])")
    conn.execute("DROP TABLE handler_calls")


def run_worker(conn, max_seconds=5, max_jobs=None):
    conn.execute("CALL qbo_sync_worker(%s, %s, true)", (max_seconds, max_jobs))


def test_worker_runs_the_handler_completes_the_job_and_records_history(conn, org, handler):
    job_id = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull', 'urgent')", (org,)
    ).fetchone()[0]
    run_worker(conn)
    status, result = conn.execute(
        "SELECT status, result FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert status == "completed" and result["success_count"] == 2
    assert conn.execute("SELECT organization_id, direction FROM handler_calls").fetchall() == [
        (org, "pull")
    ]
    history = conn.execute(
        "SELECT sync_type, entity_types, status, entity_count, success_count, failure_count, queue_job_id"
        " FROM qbo_sync_history"
    ).fetchall()
    assert history == [("manual", ["customers"], "partial", 3, 2, 1, job_id)]


def test_a_missing_handler_fails_the_job_at_once_with_a_clear_error(conn, org):
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'payments')", (org,)).fetchone()[0]
    run_worker(conn)
    status, attempts, error = conn.execute(
        "SELECT status, attempts, last_error FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert status == "failed" and attempts == 1
    assert 'no handler for sync_endpoint "payments"' in error and "qbo_sync_payments" in error
    assert conn.execute("SELECT status FROM qbo_sync_history").fetchone()[0] == "failed"


def test_a_transient_handler_error_is_retried_later(conn, org, handler):
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'push')", (org,)).fetchone()[0]
    run_worker(conn)
    status, attempts, error, wait = conn.execute(
        "SELECT status, attempts, last_error, run_at > now() FROM qbo_sync_queue WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert (status, attempts, wait) == ("pending", 1, True)
    assert "QBO answered 503" in error and "08006" in error
    # the failed attempt left no half-done work behind: the handler's insert was rolled back
    assert conn.execute("SELECT count(*) FROM handler_calls").fetchone()[0] == 0


def test_worker_commits_after_each_job(conn, db_dsn, org, handler):
    """Completed jobs are visible to other sessions while the worker still runs."""
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,))
    done = threading.Event()

    def work() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as worker:
            worker.execute("CALL qbo_sync_worker(3)")  # keeps polling for 3 s
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 2.5
    completed = 0
    while time.monotonic() < deadline and not completed:
        completed = conn.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed'"
        ).fetchone()[0]
        time.sleep(0.05)
    assert completed == 1 and not done.is_set()
    # a job queued while the worker idles is picked up within about a second
    queued_at = time.monotonic()
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'both')", (org,))
    while time.monotonic() - queued_at < 2:
        if (
            conn.execute(
                "SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed'"
            ).fetchone()[0]
            == 2
        ):
            break
        time.sleep(0.05)
    assert time.monotonic() - queued_at < 2
    thread.join(10)


def test_one_organization_is_worked_by_one_backend_at_a_time(conn, db_dsn, org, handler):
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,))
    with psycopg.connect(db_dsn, autocommit=False) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('qbo_sync.organization/' || %s, 0))",
            (str(org),),
        )
        run_worker(conn, max_seconds=1, max_jobs=1)
        status, attempts = conn.execute("SELECT status, attempts FROM qbo_sync_queue").fetchone()
        assert (status, attempts) == ("pending", 0)  # given back, attempt not counted
    conn.execute("UPDATE qbo_sync_queue SET run_at = now()")
    run_worker(conn)
    assert conn.execute("SELECT status FROM qbo_sync_queue").fetchone()[0] == "completed"


def test_worker_reclaims_expired_leases(conn, org, handler):
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,)).fetchone()[0]
    conn.execute("SELECT * FROM qbo_sync.claim(1, 'crashed', 0.01)")
    time.sleep(0.05)
    run_worker(conn)
    status, attempts = conn.execute(
        "SELECT status, attempts FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert (status, attempts) == ("completed", 2)

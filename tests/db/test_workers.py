"""Several workers (worker.processes): two queue processors at once run two organizations' jobs
at the same time, and never two jobs of one organization at once (one does the work, the other
leaves that organization to it). The jobs' handlers are SQL handlers that take a while and say
when they began and ended, in which backend."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.conftest import make_org

HANDLER = """
CREATE OR REPLACE FUNCTION qbo_sync.{name}(job qbo_sync_queue)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    began timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_sleep(1.5);
    RETURN jsonb_build_object('began', began, 'ended', clock_timestamp(),
                              'pid', pg_backend_pid(), 'entity_count', 1, 'success_count', 1);
END
$$"""


@pytest.fixture
def slow_handlers(conn: psycopg.Connection) -> Iterator[None]:
    """Items and customers jobs run a SQL handler of 1.5 s (dropped afterwards)."""
    for name in ("sync_items", "sync_customers"):
        conn.execute(HANDLER.format(name=name))
    try:
        yield
    finally:
        for name in ("sync_items", "sync_customers"):
            conn.execute(f"DROP FUNCTION IF EXISTS qbo_sync.{name}(qbo_sync_queue)")


def run_workers(connect: Callable[..., psycopg.Connection], count: int, seconds: float) -> None:
    """`count` workers at once, each in its own backend, for `seconds` (not stopping when idle:
    a job given back because its organization is busy comes back seconds later)."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            connect().execute("CALL qbo_sync.worker(%s, NULL, false)", (seconds,))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    assert not errors, errors


def runs(conn: psycopg.Connection, jobs: list[uuid.UUID]) -> list[dict]:
    rows = conn.execute(
        "SELECT id, organization_id, status, result FROM qbo_sync_queue WHERE id = ANY (%s)",
        (jobs,),
    ).fetchall()
    found = []
    for job_id, org, status, result in rows:
        assert status == "completed", (job_id, status)
        found.append(
            {
                "job": job_id,
                "org": org,
                "pid": result["pid"],
                "began": dt.datetime.fromisoformat(result["began"]),
                "ended": dt.datetime.fromisoformat(result["ended"]),
            }
        )
    assert len(found) == len(jobs)
    return found


def overlap(a: dict, b: dict) -> bool:
    return a["began"] < b["ended"] and b["began"] < a["ended"]


def test_two_workers_run_two_organizations_at_the_same_time(conn, connect, slow_handlers):
    org_a, org_b = make_org(conn, "Worker A"), make_org(conn, "Worker B")
    jobs = [
        conn.execute("SELECT qbo_sync.enqueue(%s, 'items', 'pull')", (org,)).fetchone()[0]
        for org in (org_a, org_b)
    ]
    run_workers(connect, 2, 5)
    first, second = runs(conn, jobs)
    assert first["org"] != second["org"]
    assert first["pid"] != second["pid"]
    assert overlap(first, second), (first, second)


def test_two_workers_on_one_organization_never_run_its_jobs_at_once(conn, connect, slow_handlers):
    org = make_org(conn, "One Org")
    jobs = [
        conn.execute("SELECT qbo_sync.enqueue(%s, %s, 'pull')", (org, entity)).fetchone()[0]
        for entity in ("items", "customers")
    ]
    run_workers(connect, 2, 8)
    first, second = runs(conn, jobs)
    assert not overlap(first, second), (first, second)
    # and one job's run was never cut short by the other: each handler ran its full time
    for run in (first, second):
        assert (run["ended"] - run["began"]).total_seconds() >= 1.5
    history = conn.execute(
        "SELECT count(*) FROM qbo_sync_history WHERE organization_id = %s AND status = 'completed'",
        (org,),
    ).fetchone()[0]
    assert history == 2

"""A worker killed in the middle of a full pull, and two workers on one organization, end to end
(the real worker procedure on its own connections, the simulator over HTTP).

* The backend running a full pull is terminated (pg_terminate_backend) after some pages were
  applied; once its lease has run out, another worker reclaims the job and the pull goes on from
  the page it had saved (fewer query calls than starting over), ending with every object exactly
  once.
* Two `CALL qbo_sync_worker(...)` at once with several jobs of one organization: never two of
  its jobs at the same time (no two of its calls to QBO in flight at once, each taking longer
  than the pacer's spacing), and every job completes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from aiohttp import web

from tests.db.engine_tools import APP_TABLE, ORDER, assert_row_matches_qbo, local_rows, qbo_objects
from tests.db.qbo_jobs import LoggedServer, connect_realm, setting  # noqa: F401 - fixture
from tests.db.test_pull import pages_from
from tests.db.test_qbo_calls import outcome, run_worker
from tests.simulator.simtools import REALM


class TimedServer(LoggedServer):
    """A LoggedServer that also keeps when each API call started and ended (monotonic)."""

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.spans: list[tuple[float, float, str]] = []
        spans, lock = self.spans, threading.Lock()

        @web.middleware
        async def timed(request: web.Request, handler: Callable) -> web.StreamResponse:
            began = time.monotonic()
            try:
                return await handler(request)
            finally:
                if request.path.startswith("/v3/company/"):
                    with lock:
                        spans.append((began, time.monotonic(), request.path_qs))

        self.app.middlewares.insert(0, timed)


def started(**overrides) -> Iterator[TimedServer]:
    server = TimedServer(**overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def big_company() -> Iterator[TimedServer]:
    """Enough customers for many small pages, each call slowed a little."""
    yield from started(limits_enabled=False, seed_customers=60, latency_ms=40)


@pytest.fixture
def slow_company() -> Iterator[TimedServer]:
    """A small company whose every call takes longer than the pacer's spacing (122 ms at 500 a
    minute): two jobs of the realm at once would have calls in flight together."""
    yield from started(
        limits_enabled=False,
        seed_customers=12,
        seed_items=5,
        seed_invoices=10,
        seed_payments=5,
        latency_ms=250,
    )


def position(conn: psycopg.Connection, org: uuid.UUID) -> int | None:
    row = conn.execute(
        "SELECT full_pass_position FROM qbo_sync_cursor"
        " WHERE organization_id = %s AND entity = 'customers'",
        (org,),
    ).fetchone()
    return row[0] if row else None


def queries(sim: LoggedServer) -> int:
    return sum(1 for a in sim.log.api() if a.path.endswith("/query") and a.status == 200)


def test_a_worker_killed_mid_pull_is_reclaimed_and_resumes_at_its_saved_page(
    conn,
    db_dsn,
    big_company,
    setting,  # noqa: F811
):
    setting("pull.page_size", "5")
    setting("pull.page_overlap", "1")
    setting("queue.lease_seconds", "2")
    connected = connect_realm(conn, big_company)
    total = len(big_company.state.realms[REALM].objects["Customer"])
    job = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (connected.org,)
    ).fetchone()[0]

    worker = psycopg.connect(db_dsn, autocommit=True)
    pid = worker.execute("SELECT pg_backend_pid()").fetchone()[0]
    failure: list[BaseException] = []

    def work() -> None:
        try:
            worker.execute("CALL qbo_sync_worker(60, 1, true)")
        except BaseException as exc:  # the backend is terminated: expected
            failure.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 30
    while (position(conn, connected.org) or 0) < 17:  # pages at 1, 5, 9, 13 applied
        assert time.monotonic() < deadline and thread.is_alive(), "the pull never got going"
        time.sleep(0.01)
    assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
    thread.join(10)
    worker.close()
    assert failure and isinstance(failure[0], psycopg.OperationalError), failure
    killed_at = position(conn, connected.org)  # what the killed backend had committed
    assert queries(big_company) >= 4
    assert killed_at is not None and 17 <= killed_at < total
    assert conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)).fetchone() == (
        "processing",
    )
    kept = len(local_rows(conn, "customers", connected.org))
    assert kept >= killed_at - 1  # the pages applied before the kill are kept

    # the killed run's lease (and its hold on the organization) runs out; then a worker
    # reclaims the job and runs it again
    while conn.execute(
        "SELECT (SELECT locked_until FROM qbo_sync_queue WHERE id = %(job)s) > now()"
        " OR coalesce((SELECT held_until FROM qbo_sync.organization_lock"
        "              WHERE organization_id = %(org)s) > now(), false)",
        {"job": job, "org": connected.org},
    ).fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    big_company.log.answers.clear()
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["attempts"]) == ("completed", 2), result
    # it read on from the saved page, not from the start
    resumed = queries(big_company)
    assert resumed == pages_from(killed_at, total, 5, 1), (killed_at, resumed)
    assert resumed < pages_from(1, total, 5, 1)
    assert position(conn, connected.org) is None  # the pass is over
    objects = qbo_objects(big_company, connected.access, "customers")
    rows = local_rows(conn, "customers", connected.org)
    assert len(objects) == total and set(rows) == {o["Id"] for o in objects}
    count = conn.execute(
        "SELECT count(*) FROM customer_profile WHERE organization_id = %s", (connected.org,)
    ).fetchone()[0]
    assert count == total  # every customer exactly once
    for obj in objects:
        assert_row_matches_qbo(conn, "customers", rows[obj["Id"]], obj)


def test_two_workers_on_one_organization_never_run_its_jobs_at_once(
    conn,
    db_dsn,
    slow_company,
    setting,  # noqa: F811
):
    setting("queue.busy_retry_seconds", "0.05")
    connected = connect_realm(conn, slow_company)
    jobs = [
        conn.execute("SELECT trigger_qbo_sync(%s, %s, 'pull')", (connected.org, e)).fetchone()[0]
        for e in ORDER
    ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def all_done(worker: psycopg.Connection) -> bool:
        return worker.execute(
            "SELECT bool_and(status = 'completed') FROM qbo_sync_queue WHERE id = ANY(%s)",
            (jobs,),
        ).fetchone()[0]

    def work() -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as worker:
                barrier.wait(10)
                deadline = time.monotonic() + 60
                while not all_done(worker) and time.monotonic() < deadline:
                    worker.execute("CALL qbo_sync_worker(20, NULL, true)")
                    time.sleep(0.02)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == [] and not any(t.is_alive() for t in threads)

    for job in jobs:
        assert outcome(conn, job)["status"] == "completed", outcome(conn, job)
    # one run per job, none lost or unconfirmed
    runs = conn.execute(
        "SELECT queue_job_id, status FROM qbo_sync_history WHERE queue_job_id = ANY(%s)", (jobs,)
    ).fetchall()
    assert sorted(str(r[0]) for r in runs) == sorted(str(j) for j in jobs)
    assert {r[1] for r in runs} == {"completed"}
    # never two calls of the organization in flight at once
    spans = sorted(slow_company.spans)
    assert len(spans) >= len(ORDER)
    overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    assert overlaps == []
    for entity in ORDER:
        objects = qbo_objects(slow_company, connected.access, entity)
        count = conn.execute(
            f"SELECT count(*) FROM {APP_TABLE[entity]} WHERE organization_id = %s",
            (connected.org,),
        ).fetchone()[0]
        assert count == len(objects), entity

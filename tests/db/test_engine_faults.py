"""Faults while pulling, end to end: QBO answering 5xx, timing out and throttling (429) during
full pulls of every entity, through the worker against the simulator over HTTP. Calls are
retried, a job that runs out of retries goes back to the queue and resumes, and in the end
every object of QBO is exactly one local row, equal to QBO's, with every invoice's lines
exactly once."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from tests.db.engine_tools import ORDER, assert_row_matches_qbo, local_rows, qbo_objects
from tests.db.qbo_jobs import LoggedServer, connect_realm, realm_counters, setting  # noqa: F401
from tests.db.test_qbo_calls import outcome, run_worker, sim_control

SEEDED = {"customers": 24, "items": 8, "invoices": 24, "payments": 10}


@pytest.fixture
def company() -> LoggedServer:
    server = LoggedServer(
        limits_enabled=True,
        seed_customers=SEEDED["customers"],
        seed_items=SEEDED["items"],
        seed_invoices=SEEDED["invoices"],
        seed_payments=SEEDED["payments"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pull_until_done(conn: psycopg.Connection, org: uuid.UUID, rounds: int = 12) -> dict:
    """Queue a full pull of every entity and run the worker until every job is completed;
    a job that failed for a retryable reason is made due at once (its backoff skipped). Returns
    {entity: job id}."""
    jobs = {
        e: conn.execute("SELECT trigger_qbo_sync(%s, %s, 'pull')", (org, e)).fetchone()[0]
        for e in ORDER
    }
    for _ in range(rounds):
        run_worker(conn)
        states = {e: outcome(conn, j) for e, j in jobs.items()}
        assert all(s["status"] in ("pending", "completed") for s in states.values()), states
        if all(s["status"] == "completed" for s in states.values()):
            return jobs
        conn.execute(
            "UPDATE qbo_sync_queue SET run_at = now() WHERE status = 'pending' AND id = ANY(%s)",
            (list(jobs.values()),),
        )
    raise AssertionError(f"not done after {rounds} rounds: {states}")


def assert_every_object_exactly_once(conn, sim: LoggedServer, token: str, org: uuid.UUID) -> None:
    sim_control(sim, "PATCH", "config", {"limits_enabled": False})  # the test's own reads
    for entity in ORDER:
        objects = qbo_objects(sim, token, entity)
        assert len(objects) >= SEEDED[entity]
        rows = local_rows(conn, entity, org)
        count = conn.execute(
            f"SELECT count(*), count(DISTINCT qbo_id) FROM {table(entity)}"
            " WHERE organization_id = %s",
            (org,),
        ).fetchone()
        assert count == (len(objects), len(objects)), entity
        assert set(rows) == {o["Id"] for o in objects}, entity
        for obj in objects:
            assert_row_matches_qbo(conn, entity, rows[obj["Id"]], obj)  # lines included
            assert rows[obj["Id"]]["qbo_local_version"] == rows[obj["Id"]]["qbo_synced_version"]


def table(entity: str) -> str:
    from tests.db.engine_tools import APP_TABLE

    return APP_TABLE[entity]


def test_5xx_and_timeouts_during_a_full_pull_lose_and_double_nothing(
    conn,
    company,
    setting,  # noqa: F811
):
    setting("pull.page_size", "5")
    setting("pull.page_overlap", "1")
    connected = connect_realm(conn, company)
    # server errors and dropped calls on the pages of every entity and on the fetches of
    # referenced objects, and one page whose every attempt fails (the job runs out of retries,
    # goes back to the queue and resumes there)
    sim_control(company, "PATCH", "config", {"timeout_s": 0.2})
    faults = [
        {"kind": "500", "path_contains": "STARTPOSITION%209%20", "times": 4},
        {"kind": "500", "path_contains": "FROM%20Customer", "times": 2},
        {"kind": "timeout", "path_contains": "FROM%20Customer"},
        {"kind": "503", "path_contains": "FROM%20Item"},
        {"kind": "504", "path_contains": "FROM%20Item"},
        {"kind": "timeout", "path_contains": "FROM%20Invoice"},
        {"kind": "500", "path_contains": "FROM%20Invoice", "times": 2},
        {"kind": "503", "path_contains": "FROM%20Payment"},
        {"kind": "timeout", "path_contains": "FROM%20Payment"},
    ]
    sim_control(company, "POST", "faults", {"next": faults})
    jobs = pull_until_done(conn, connected.org)
    counters = realm_counters(company)
    assert counters.get("fault.500") == 8 and counters.get("fault.timeout") == 3, counters
    assert (counters.get("fault.503"), counters.get("fault.504")) == (2, 1), counters
    assert company.state.next_faults == []  # every fault struck
    # at least one job ran out of retries and was run again
    runs = conn.execute(
        "SELECT count(*) FROM qbo_sync_history WHERE queue_job_id = ANY(%s) AND status = 'failed'",
        (list(jobs.values()),),
    ).fetchone()[0]
    assert runs >= 1
    assert_every_object_exactly_once(conn, company, connected.access, connected.org)


def test_a_429_storm_during_a_full_pull_loses_and_doubles_nothing(
    conn,
    company,
    setting,  # noqa: F811
):
    setting("pull.page_size", "6")
    setting("pull.page_overlap", "1")
    # the shared pacer's backoff after a 429 kept short, so the storm costs seconds, not minutes
    setting("pacing.limits", {"backoff_base_seconds": 0.5, "backoff_max_seconds": 2})
    connected = connect_realm(conn, company)
    # for three seconds QBO allows one call a second (another app is hammering the company);
    # qbo-sync paces itself for Intuit's ten: its calls are throttled until the storm ends
    sim_control(company, "PATCH", "config", {"per_second": 1})
    calm = threading.Timer(3.0, sim_control, (company, "PATCH", "config", {"per_second": 10}))
    calm.start()
    try:
        pull_until_done(conn, connected.org)
    finally:
        calm.cancel()
        sim_control(company, "PATCH", "config", {"per_second": 10})
    counters = realm_counters(company)
    assert counters.get("throttled", 0) >= 2, counters
    throttled = [a for a in company.log.api() if a.status == 429]
    assert len(throttled) == counters["throttled"]
    assert_every_object_exactly_once(conn, company, connected.access, connected.org)

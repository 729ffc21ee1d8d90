# ruff: noqa: F811 - the fixtures are imported from test_qbo_calls and used as parameters
"""How a job that calls QBO ends when something outside it goes wrong: its lease taken away
while it runs, the token endpoint down just when QBO refuses the access token, or functions and
operators planted in a schema another role can write."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.db.test_qbo_calls import (  # noqa: F401 - fixtures
    REALM,
    connected,
    outcome,
    probe,
    queue_probe,
    run_worker,
    sim_control,
    simulator,
    stored,
)
from tests.db.test_security_boundaries import (  # noqa: F401
    attacker,
    owned_database,
    ran_as_someone_else,
)


def test_a_python_handler_that_lost_its_lease_stops_and_says_so(conn, probe, connected):
    job = queue_probe(conn, connected.org, calls=1, lose_lease=True)
    run_worker(conn)
    result = outcome(conn, job)
    assert result["history"] == "lease_lost", result
    assert "lease lost" in result["error_summary"]
    # the run that lost its lease recorded nothing on the job (it is someone else's now)
    assert result["status"] == "processing" and result["last_error_code"] is None
    # and the organization is free for the job's next run
    assert conn.execute(
        "SELECT job_id FROM qbo_sync.organization_lock WHERE organization_id = %s",
        (connected.org,),
    ).fetchone() == (None,)


def test_a_401_while_the_token_endpoint_is_down_fails_retryably_and_keeps_the_connection(
    conn, probe, connected
):
    sim_control(connected.sim, "POST", "tokens/expire", {"realm_id": REALM, "kind": "access"})
    sim_control(
        connected.sim,
        "POST",
        "faults",
        {"next": [{"kind": "503", "path_contains": "/oauth2/v1/tokens/bearer", "times": 20}]},
    )
    job = queue_probe(conn, connected.org, calls=1)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"]) == ("pending", "QB500"), result
    row = stored(conn, connected.org)
    assert row["is_active"] and row["last_refresh_error"] and row["access"] == connected.access

    sim_control(connected.sim, "DELETE", "faults")
    conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job,))
    run_worker(conn)
    assert outcome(conn, job)["status"] == "completed"


def test_a_python_job_calling_qbo_resolves_nothing_through_public(conn, probe, connected, attacker):
    """The run step is a procedure without SET search_path (it commits): it pins the path in
    every transaction it starts. With public searched first and operators and functions planted
    there, a job that refreshes its token and calls QBO through the shared pacer runs none."""
    sim_control(connected.sim, "POST", "tokens/expire", {"realm_id": REALM, "kind": "access"})
    job = queue_probe(conn, connected.org, calls=3)
    conn.execute("SET search_path = public, pg_catalog")
    assert conn.execute("SELECT 'x' || 1").fetchone()[0] == "x1"
    assert ran_as_someone_else(conn) == [("postgres", "operator ||")]  # the trap is live
    conn.execute("TRUNCATE public.attacker_log")
    try:
        run_worker(conn)
    finally:
        conn.execute("RESET search_path")
    assert ran_as_someone_else(conn) == []
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["token_refreshes"] == 1 and result["summary"]["qbo_calls"] == 3


def test_every_transaction_of_a_job_checks_that_public_tables_are_still_qbo_syncs(owned_database):
    """A job commits before every QBO call, and a commit releases the locks that kept qbo-sync's
    tables in public from being replaced. The database owner (who owns public on PostgreSQL 15)
    drops one and puts its own in its place between two commits: the next transaction the job
    starts refuses with QS004 before it touches anything."""
    dsn, owner = owned_database
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute(
            """DO $$
               plpy.execute("SELECT qbo_sync.python_loader()")
               GD["qbo_sync_load"](plpy)
               from qbo_sync_db.txn import Transaction
               Transaction(plpy).commit()  # with qbo-sync's own tables: no complaint
               $$ LANGUAGE plpython3u"""
        )
    with psycopg.connect(dsn, autocommit=True, user=owner) as attacker_session:
        attacker_session.execute("DROP TABLE public.qbo_sync_cursor CASCADE")
        attacker_session.execute(
            "CREATE TABLE public.qbo_sync_cursor (organization_id uuid, entity text)"
        )
    with psycopg.connect(dsn, autocommit=True) as su:
        with pytest.raises(psycopg.Error) as refused:
            su.execute(
                """DO $$
                   plpy.execute("SELECT qbo_sync.python_loader()")
                   GD["qbo_sync_load"](plpy)
                   from qbo_sync_db.txn import Transaction
                   Transaction(plpy).commit()
                   $$ LANGUAGE plpython3u"""
            )
        assert refused.value.sqlstate == "QS004"
        assert f"public.qbo_sync_cursor is owned by {owner}" in str(refused.value)


def test_a_requeued_job_never_runs_twice_at_once_for_its_organization(
    conn, connect, probe, connected
):
    """The organization is held by a run's lease, not by its job: while run 1 is between two
    calls the job is requeued and a second worker claims it (a new lease). The organization is
    still held by run 1, so the second worker gives the job back; run 1 then finds its lease gone
    and stops, and the job's next run does the work."""
    job = queue_probe(conn, connected.org, calls=2, pause=3, write_marker=True)
    first = connect()
    worker_one = threading.Thread(target=run_worker, args=(first,), kwargs={"max_seconds": 8})
    worker_one.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # run 1 has made its first call and is pausing
        if conn.execute("SELECT count(*) FROM probe_marks").fetchone()[0]:
            break
        time.sleep(0.05)
    try:
        conn.execute("SELECT qbo_sync_requeue(%s)", (job,))
        attempts = outcome(conn, job)["attempts"]
        second = connect()
        run_worker(second, max_seconds=2)
        # the second worker claimed the job and gave it back, its attempt not counted: the
        # organization was still held by run 1
        held = conn.execute(
            "SELECT l.lease_id IS NOT NULL, q.status, q.attempts, q.last_error"
            " FROM qbo_sync.organization_lock AS l, qbo_sync_queue AS q"
            " WHERE l.organization_id = %s AND q.id = %s",
            (connected.org, job),
        ).fetchone()
        assert held[:3] == (True, "pending", attempts), held
    finally:
        worker_one.join(timeout=30)
    if outcome(conn, job)["status"] != "completed":  # worker one may have run it again itself
        conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job,))
        run_worker(conn)
    runs = conn.execute(
        "SELECT status FROM qbo_sync_history WHERE queue_job_id = %s ORDER BY completed_at", (job,)
    ).fetchall()
    assert [r[0] for r in runs] == ["lease_lost", "completed"]
    # never two runs at once: run 1 wrote its marks, run 2 only after run 1 had stopped
    marks = conn.execute("SELECT job_id, n FROM probe_marks ORDER BY at").fetchall()
    assert [n for _, n in marks] == [0, 1, 0, 1]

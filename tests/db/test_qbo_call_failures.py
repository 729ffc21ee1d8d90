# ruff: noqa: F811 - the fixtures are imported from test_qbo_calls and used as parameters
"""How a job that calls QBO ends when something outside it goes wrong: its lease taken away
while it runs, the token endpoint down just when QBO refuses the access token, or functions and
operators planted in a schema another role can write."""

from __future__ import annotations

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
from tests.db.test_security_boundaries import attacker, ran_as_someone_else  # noqa: F401


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

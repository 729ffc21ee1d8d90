# ruff: noqa: F811 - the fixtures are imported from test_qbo_calls and used as parameters
"""How a job that calls QBO ends when something outside it goes wrong: its lease taken away
while it runs, or the token endpoint down just when QBO refuses the access token."""

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

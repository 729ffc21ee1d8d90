"""Jobs that call QBO, through the worker's real path, against the simulator over HTTP.

The worker's run step is a procedure that commits before every call (qbo_sync_db.txn): each
request is reserved in the realm's shared pacer (qbo_sync.pacer) in a transaction of its own, an
access token near its end is refreshed and committed first, a 401 refreshes once and retries
once, and a failure keeps its SQLSTATE and intuit_tid in the history. The handler is a test
module (tests/db/probe_handler.py) installed as the entity's Python handler.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from tests.db.test_tokens import CLIENT, Connected, stored, works
from tests.simulator.simtools import REALM, ThreadedServer, base_config

PROBE_SOURCE = (Path(__file__).parent / "probe_handler.py").read_text()


@pytest.fixture
def probe(conn: psycopg.Connection) -> Iterator[None]:
    """The probe handler installed for 'customers' jobs (removed afterwards)."""
    conn.execute(
        """INSERT INTO qbo_sync.python_module (name, source, is_package, version)
           VALUES ('qbo_sync_db.testing_probe', %s, false, qbo_sync.version())""",
        (PROBE_SOURCE,),
    )
    built_in = conn.execute(
        "SELECT handler FROM qbo_sync.entity WHERE entity = 'customers'"
    ).fetchone()[0]
    conn.execute(
        "UPDATE qbo_sync.entity SET handler = 'qbo_sync_db.testing_probe:run'"
        " WHERE entity = 'customers'"
    )
    conn.execute(
        "CREATE TABLE public.probe_marks (job_id uuid, n integer,"
        " at timestamptz DEFAULT clock_timestamp())"
    )
    yield
    conn.execute("DROP TABLE public.probe_marks")
    conn.execute("UPDATE qbo_sync.entity SET handler = %s WHERE entity = 'customers'", (built_in,))
    conn.execute("DELETE FROM qbo_sync.python_module WHERE name = 'qbo_sync_db.testing_probe'")


def make_simulator(**overrides) -> ThreadedServer:
    return ThreadedServer(base_config(apps=[CLIENT], **overrides))


@pytest.fixture
def simulator() -> Iterator[ThreadedServer]:
    server = make_simulator()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect_org(conn: psycopg.Connection, sim: ThreadedServer) -> Connected:
    pair = sim.state.oauth.issue_for(REALM, CLIENT["client_id"])
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Calls')", (org,))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                       qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                                       qbo_token_expires_at, qbo_refresh_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s),
                   qbo_sync.encrypt_token(%s), now() + interval '1 hour', now() + interval '100 days')""",
        (org, REALM, sim.base_url, pair["access_token"], pair["refresh_token"]),
    )
    return Connected(org, sim, pair["access_token"], pair["refresh_token"])


@pytest.fixture
def connected(conn: psycopg.Connection, simulator: ThreadedServer) -> Connected:
    return connect_org(conn, simulator)


def queue_probe(conn: psycopg.Connection, org: uuid.UUID, **payload) -> uuid.UUID:
    return conn.execute(
        "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', NULL, 'manual', %s)",
        (org, json.dumps(payload)),
    ).fetchone()[0]


def run_worker(conn: psycopg.Connection, max_seconds: float = 60) -> None:
    conn.execute("CALL qbo_sync.worker(%s, NULL, true)", (max_seconds,))


def outcome(conn: psycopg.Connection, job_id: uuid.UUID) -> dict:
    cur = conn.execute(
        """SELECT q.status, q.last_error_code, q.last_error, q.attempts,
                  h.status AS history, h.summary, h.error_summary, h.intuit_tid
             FROM qbo_sync_queue AS q
             LEFT JOIN LATERAL (SELECT * FROM qbo_sync_history AS h WHERE h.queue_job_id = q.id
                                 ORDER BY h.completed_at DESC LIMIT 1) AS h ON true
            WHERE q.id = %s""",
        (job_id,),
    )
    names = [c.name for c in cur.description or []]
    return dict(zip(names, cur.fetchone(), strict=True))


def counters(sim: ThreadedServer) -> dict:
    answer = requests.get(f"{sim.base_url}/_sim/realms/{REALM}/counters", timeout=10)
    return answer.json()["counters"]


def sim_control(sim: ThreadedServer, method: str, path: str, body=None) -> dict:
    answer = requests.request(method, f"{sim.base_url}/_sim/{path}", json=body, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else {}


def reads(sim: ThreadedServer) -> int:
    return counters(sim).get("read.companyinfo", 0)


def test_a_job_calls_qbo_through_the_realms_shared_pacer(conn, probe, connected):
    job = queue_probe(conn, connected.org, calls=5)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["history"]) == ("completed", "completed"), result
    assert result["summary"]["qbo_calls"] == 5
    pacer = result["summary"]["pacer"]
    # a reservation and a release per call, and a wait whenever the next call came sooner than
    # the realm's spacing (122.9 ms at 500 a minute): the simulator answers in a few ms
    assert pacer["waits"] >= 3 and pacer["decisions"] == 2 * 5 + pacer["waits"]
    assert pacer["throttled"] == 0 and counters(connected.sim).get("throttled", 0) == 0
    assert reads(connected.sim) == 5
    state = conn.execute(
        "SELECT state FROM qbo_sync.pacer WHERE realm_id = %s AND app = %s",
        (REALM, CLIENT["client_id"]),
    ).fetchone()[0]
    # five reservations were charged and every slot was given back
    assert state["tat"] and state["slots"] == []
    # the organization is free again
    assert conn.execute(
        "SELECT job_id FROM qbo_sync.organization_lock WHERE organization_id = %s",
        (connected.org,),
    ).fetchone() == (None,)


def test_the_job_commits_before_each_call(conn, connect, probe, connected):
    """Work before a call is committed with the call's reservation; a job failing afterwards
    keeps it (the handler decides where its consistent points are)."""
    job = queue_probe(conn, connected.org, calls=3, write_marker=True, fail_after=True)
    run_worker(conn)
    result = outcome(conn, job)
    assert result["history"] == "failed" and result["last_error_code"] == "XX000"
    assert "the probe failed after its calls" in result["last_error"]
    marks = conn.execute("SELECT n FROM probe_marks ORDER BY n").fetchall()
    assert marks == [(0,), (1,), (2,)]
    assert result["summary"]["qbo_calls"] == 3


def test_an_access_token_qbo_refuses_is_refreshed_once_and_the_call_retried(conn, probe, connected):
    sim_control(connected.sim, "POST", "tokens/expire", {"realm_id": REALM, "kind": "access"})
    job = queue_probe(conn, connected.org, calls=2)
    run_worker(conn)
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["token_refreshes"] == 1 and result["summary"]["qbo_calls"] == 2
    row = stored(conn, connected.org)
    assert row["access"] != connected.access and works(connected.sim, row["access"])
    assert reads(connected.sim) == 3  # the refused one, then the retried one and the second


def test_a_job_that_fails_after_a_refresh_keeps_the_rotated_refresh_token(conn, probe, connected):
    connected.sim.state.clock.advance(2 * 86400)  # past the rotation window: a refresh rotates
    conn.execute(
        "UPDATE qbo_connection SET qbo_token_expires_at = now() + interval '1 hour'"
    )  # the database believes its token is good; QBO says it expired long ago
    job = queue_probe(conn, connected.org, calls=1, fail_after=True)
    run_worker(conn)
    assert outcome(conn, job)["history"] == "failed"
    row = stored(conn, connected.org)
    assert row["refresh"] != connected.refresh  # rotated, and kept despite the failure
    # the stored refresh token is the one QBO now honours: refreshing with it works
    assert conn.execute("SELECT qbo_sync.token_refresh(%s, true)", (connected.org,)).fetchone()[0][
        "refreshed"
    ]


def test_a_second_401_fails_the_job_not_retryable(conn, probe, connected):
    # the connecting user lost admin rights: QBO answers 401 (code 120) whatever the token
    sim_control(connected.sim, "PATCH", f"realms/{REALM}/status", {"admin_access": False})
    job = queue_probe(conn, connected.org, calls=1)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"]) == ("failed", "QB401")
    assert result["summary"]["token_refreshes"] == 1
    assert result["intuit_tid"] and re.fullmatch(
        r"1-[0-9a-f]{8}-[0-9a-f]{24}", result["intuit_tid"]
    )
    assert stored(conn, connected.org)["is_active"]  # a 401 alone never ends the connection


def test_a_revoked_grant_ends_the_connection_and_fails_the_job_with_the_reason(
    conn, probe, connected
):
    sim_control(connected.sim, "POST", "tokens/revoke", {"realm_id": REALM})
    job = queue_probe(conn, connected.org, calls=1)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"]) == ("failed", "QB410")
    assert "invalid_grant" in result["last_error"]
    row = stored(conn, connected.org)
    assert not row["is_active"] and "invalid_grant" in row["inactive_reason"]


def test_5xx_bursts_are_retried_and_a_lasting_one_is_kept_with_its_intuit_tid(
    conn, probe, connected
):
    sim_control(connected.sim, "POST", "faults", {"next": [{"kind": "503", "times": 2}]})
    job = queue_probe(conn, connected.org, calls=2)
    run_worker(conn)
    result = outcome(conn, job)
    assert result["status"] == "completed"
    assert counters(connected.sim).get("fault.503") == 2
    # the retried failures are in the history too, each with its intuit_tid
    retried = result["summary"]["retried"]
    assert [(r["attempt"], r["http_status"]) for r in retried] == [(1, 503), (2, 503)]
    assert all(re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", r["intuit_tid"]) for r in retried)

    sim_control(connected.sim, "POST", "faults", {"next": [{"kind": "500", "times": 50}]})
    job = queue_probe(conn, connected.org, calls=1)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"]) == ("pending", "QB500")  # retried later
    assert result["history"] == "failed" and "retryable" in result["error_summary"]
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", result["intuit_tid"])

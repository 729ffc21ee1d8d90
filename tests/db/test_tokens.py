"""Token refresh inside the database, against the QBO simulator over HTTP: the rotated pair is
stored, concurrent refreshes of one connection make one call, invalid_grant ends the connection,
an unreachable token endpoint never does, and no token reaches a log or an error."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import requests

from tests.simulator.simtools import REALM, ThreadedServer, base_config

#: the app tests/conftest.py's secrets name, as the simulator knows it
CLIENT = {
    "client_id": "test-client-id",
    "client_secret": "test-client-secret",
    "redirect_uris": ["http://localhost/oauth/callback"],
}


@dataclass
class Connected:
    org: uuid.UUID
    sim: ThreadedServer
    access: str
    refresh: str


@pytest.fixture
def simulator() -> Iterator[ThreadedServer]:
    server = ThreadedServer(base_config(apps=[CLIENT]))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connected(conn: psycopg.Connection, simulator: ThreadedServer) -> Connected:
    """An organization connected to the simulator's company, with a fresh token pair."""
    pair = simulator.state.oauth.issue_for(REALM, CLIENT["client_id"])
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Tokens')", (org,))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                       qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                                       qbo_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s),
                   qbo_sync.encrypt_token(%s), now() + interval '1 hour')""",
        (org, REALM, simulator.base_url, pair["access_token"], pair["refresh_token"]),
    )
    return Connected(org, simulator, pair["access_token"], pair["refresh_token"])


def stored(conn: psycopg.Connection, org: uuid.UUID) -> dict:
    cur = conn.execute(
        """SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) AS access,
                  qbo_sync.decrypt_token(qbo_refresh_token_encrypted) AS refresh,
                  qbo_token_expires_at > now() + interval '50 minutes' AS fresh,
                  qbo_refresh_token_expires_at IS NOT NULL AS refresh_expiry,
                  qbo_refresh_token_hard_expires_at IS NOT NULL AS hard_expiry,
                  is_active, inactive_reason, last_refresh_error, refresh_failure_count
             FROM qbo_connection WHERE organization_id = %s""",
        (org,),
    )
    names = [c.name for c in cur.description or []]
    return dict(zip(names, cur.fetchone(), strict=True))


def works(sim: ThreadedServer, access_token: str) -> bool:
    answer = requests.get(
        f"{sim.base_url}/v3/company/{REALM}/companyinfo/{REALM}",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=10,
    )
    return answer.status_code == 200


def refresh(conn: psycopg.Connection, org: uuid.UUID, force: bool = False) -> dict:
    return conn.execute("SELECT qbo_sync.token_refresh(%s, %s)", (org, force)).fetchone()[0]


def test_a_refresh_stores_the_new_pair_encrypted_with_its_expiries(conn, connected):
    conn.execute("UPDATE qbo_connection SET qbo_token_expires_at = now() + interval '1 minute'")
    assert refresh(conn, connected.org) == {
        "refreshed": True,
        "active": True,
        "error": None,
        "sqlstate": None,
    }
    row = stored(conn, connected.org)
    assert row["access"] != connected.access and works(connected.sim, row["access"])
    assert row["fresh"] and row["refresh_expiry"] and row["hard_expiry"]
    assert (row["last_refresh_error"], row["refresh_failure_count"]) == (None, 0)
    # the columns hold ciphertext, never the token
    raw = conn.execute(
        "SELECT qbo_access_token_encrypted, qbo_refresh_token_encrypted FROM qbo_connection"
    ).fetchone()
    assert row["access"].encode() not in bytes(raw[0]) and row["refresh"].encode() not in bytes(
        raw[1]
    )


def test_a_fresh_token_is_left_alone_unless_forced(conn, connected):
    assert refresh(conn, connected.org)["refreshed"] is False
    assert stored(conn, connected.org)["access"] == connected.access
    assert conn.execute("SELECT qbo_token_refresh(%s)", (connected.org,)).fetchone()[0]["refreshed"]
    assert stored(conn, connected.org)["access"] != connected.access


def test_the_rotated_refresh_token_replaces_the_old_one(conn, connected):
    connected.sim.state.clock.advance(2 * 86400)  # past the rotation window
    assert refresh(conn, connected.org, force=True)["refreshed"]
    row = stored(conn, connected.org)
    assert row["refresh"] != connected.refresh  # rotated, and the new value is the one kept
    # the old value is dead at QBO; the stored one still refreshes
    assert refresh(conn, connected.org, force=True)["refreshed"]
    assert works(connected.sim, stored(conn, connected.org)["access"])


def test_concurrent_refreshes_of_one_connection_make_one_call(conn, connect, connected):
    conn.execute("UPDATE qbo_connection SET qbo_token_expires_at = now() - interval '1 second'")
    first = connect(autocommit=False)
    first.execute("SELECT qbo_sync.token_refresh(%s)", (connected.org,))  # holds the row
    results: list[dict] = []
    waiter = threading.Thread(target=lambda: results.append(refresh(connect(), connected.org)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # waiting for the first refresh, not refreshing on its own
    first.commit()
    waiter.join(15)
    assert results == [{"refreshed": False, "active": True, "error": None, "sqlstate": None}]
    assert works(connected.sim, stored(conn, connected.org)["access"])


def test_invalid_grant_ends_the_connection_with_the_reason(conn, connected):
    connected.sim.state.oauth.revoke_realm(REALM)
    result = refresh(conn, connected.org, force=True)
    assert (result["refreshed"], result["active"], result["sqlstate"]) == (False, False, "QB410")
    row = stored(conn, connected.org)
    assert row["is_active"] is False and row["inactive_reason"].startswith("invalid_grant")
    assert "reconnect" in row["inactive_reason"]
    with pytest.raises(
        psycopg.errors.ObjectNotInPrerequisiteState, match="not active: invalid_grant"
    ):
        conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (connected.org,))


def test_an_unreachable_token_endpoint_never_ends_the_connection(conn, connected):
    conn.execute("UPDATE qbo_connection SET api_base_url = 'http://127.0.0.1:9'")  # nothing there
    result = refresh(conn, connected.org, force=True)
    assert (result["refreshed"], result["active"], result["sqlstate"]) == (False, True, "QB504")
    row = stored(conn, connected.org)
    assert row["is_active"] and row["refresh_failure_count"] == 1
    assert row["refresh"] == connected.refresh  # nothing lost
    conn.execute("UPDATE qbo_connection SET api_base_url = %s", (connected.sim.base_url,))
    assert refresh(conn, connected.org, force=True)["refreshed"]  # recovers by itself
    assert stored(conn, connected.org)["refresh_failure_count"] == 0


def test_the_token_job_commits_each_connection_on_its_own(conn, connect, connected, simulator):
    """A connection whose refresh fails as a whole (its row held past the lock timeout) does not
    undo the refresh of another connection in the same run."""
    other = uuid.uuid4()
    pair = simulator.state.oauth.issue_for(REALM + "1", CLIENT["client_id"])
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Held')", (other,))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                       qbo_refresh_token_encrypted, qbo_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s), now() - interval '1 hour')""",
        (other, REALM + "1", simulator.base_url, pair["refresh_token"]),
    )
    conn.execute(
        "UPDATE qbo_connection SET qbo_token_expires_at = now() WHERE organization_id = %s",
        (connected.org,),
    )
    holder = connect(autocommit=False)
    holder.execute("SELECT FROM qbo_connection WHERE organization_id = %s FOR UPDATE", (other,))
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("SET lock_timeout = '300ms'")
    try:
        conn.execute("CALL qbo_sync.refresh_expiring_tokens()")
    finally:
        conn.execute("RESET lock_timeout")
    holder.rollback()
    assert stored(conn, connected.org)["fresh"]  # refreshed and committed
    assert any(f"organization {other} failed" in n and "55P03" in n for n in notices), notices


def test_no_token_reaches_the_server_log_or_an_error(conn, connected, pg_server):
    tokens = [connected.access, connected.refresh]
    conn.execute("UPDATE qbo_connection SET api_base_url = 'http://127.0.0.1:9'")
    result = refresh(conn, connected.org, force=True)
    connected.sim.state.oauth.revoke_realm(REALM)
    conn.execute("UPDATE qbo_connection SET api_base_url = %s", (connected.sim.base_url,))
    ended = refresh(conn, connected.org, force=True)
    texts = [str(result), str(ended), str(stored(conn, connected.org))]
    log = (pg_server.base_dir / "postgresql.log").read_text(errors="replace")
    for token in tokens:
        assert all(token not in text for text in texts[:2]) and token not in log
        assert token[:12] not in log


def test_a_job_that_fails_after_a_refresh_leaves_a_working_refresh_token(conn, connected):
    """The worker refreshes an expiring token in a step of its own, committed before the job
    runs: the job's failure cannot roll back the rotated refresh token QBO already replaced."""
    connected.sim.state.clock.advance(2 * 86400)  # the next refresh rotates the refresh token
    conn.execute("UPDATE qbo_connection SET qbo_token_expires_at = now() + interval '1 minute'")
    conn.execute(
        "CREATE FUNCTION qbo_sync.sync_items(job qbo_sync_queue) RETURNS jsonb LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'the job fails right after the refresh'; END $$"
    )
    try:
        job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (connected.org,)).fetchone()[
            0
        ]
        conn.execute("CALL qbo_sync_worker(10, 1, true)")
    finally:
        conn.execute("DROP FUNCTION qbo_sync.sync_items(qbo_sync_queue)")
    status, error = conn.execute(
        "SELECT status, last_error FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone()
    assert status == "failed" and "fails right after the refresh" in error
    row = stored(conn, connected.org)
    assert row["refresh"] != connected.refresh and row["fresh"]  # rotated, and kept
    assert works(connected.sim, row["access"])
    assert refresh(conn, connected.org, force=True)["refreshed"]  # the kept one still works


def test_a_job_of_a_connection_that_ended_fails_at_once_with_the_reason(conn, connected):
    connected.sim.state.oauth.revoke_realm(REALM)
    conn.execute("UPDATE qbo_connection SET qbo_token_expires_at = now() + interval '1 minute'")
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (connected.org,)).fetchone()[0]
    conn.execute("CALL qbo_sync_worker(10, 1, true)")
    status, attempts, code, error = conn.execute(
        "SELECT status, attempts, last_error_code, last_error FROM qbo_sync_queue WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert (status, attempts, code) == ("failed", 1, "QB410")
    assert "not active: invalid_grant" in error
    assert stored(conn, connected.org)["is_active"] is False


def test_a_refresh_token_near_its_rolling_expiry_is_renewed_by_the_token_job(conn, connected):
    conn.execute(
        "UPDATE qbo_connection SET qbo_refresh_token_expires_at = now() + interval '5 days'"
    )  # the access token is still good: only the refresh token's expiry calls for a refresh
    conn.execute("CALL qbo_sync.refresh_expiring_tokens()")
    assert conn.execute(
        "SELECT qbo_refresh_token_expires_at > now() + interval '90 days',"
        " qbo_sync.decrypt_token(qbo_access_token_encrypted) <> %s FROM qbo_connection",
        (connected.access,),
    ).fetchone() == (True, True)


def test_the_hard_expiry_is_warned_in_the_status_and_once_a_day_in_history(conn, connected):
    conn.execute(
        "UPDATE qbo_connection SET qbo_refresh_token_hard_expires_at = now() + interval '10 days'"
    )
    warning = conn.execute("SELECT token_warning FROM qbo_sync_status").fetchone()[0]
    assert "expires for good" in warning and "reconnect" in warning
    conn.execute("CALL qbo_sync.refresh_expiring_tokens()")
    conn.execute("CALL qbo_sync.refresh_expiring_tokens()")
    rows = conn.execute(
        "SELECT status, error_summary FROM qbo_sync_history WHERE sync_type = 'token'"
    ).fetchall()
    assert rows == [("completed", warning)]
    conn.execute(
        "UPDATE qbo_connection SET qbo_refresh_token_hard_expires_at = now() + interval '4 years'"
    )
    assert conn.execute("SELECT token_warning FROM qbo_sync_status").fetchone()[0] is None

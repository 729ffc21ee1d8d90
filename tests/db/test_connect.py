"""The OAuth connect flow from SQL against the QBO simulator over HTTP: initiate, the person's
consent, the callback; every bad state refused with nothing stored; disconnect; the one-call
connect for scripts; and who may do which."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from psycopg import errors

from tests.db.test_tokens import CLIENT, simulator, works  # noqa: F401  (fixture)
from tests.simulator.simtools import REALM

REDIRECT = "http://localhost/oauth/callback"


def new_org(conn: psycopg.Connection, name: str = "Connecting") -> uuid.UUID:
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, %s)", (org, name))
    return org


def initiate(conn, org, base_url: str) -> str:
    return conn.execute(
        "SELECT qbo_oauth_initiate(%s, %s, 'simulator', %s)", (org, REDIRECT, base_url)
    ).fetchone()[0]


def consent(url: str) -> tuple[str, str, str]:
    """What the person's browser does: the simulator consents at once and redirects back."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    return query["code"][0], query["state"][0], query["realmId"][0]


def connection(conn, org) -> dict | None:
    cur = conn.execute(
        """SELECT realm_id, environment, is_active, inactive_reason,
                  qbo_sync.decrypt_token(qbo_access_token_encrypted) AS access,
                  qbo_token_expires_at > now() + interval '50 minutes' AS fresh,
                  qbo_refresh_token_expires_at > now() + interval '90 days' AS refresh_lives
             FROM qbo_connection WHERE organization_id = %s""",
        (org,),
    )
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description or []], row, strict=True)) if row else None


def test_the_whole_connect_flow(conn, simulator):  # noqa: F811
    org = new_org(conn)
    url = initiate(conn, org, simulator.base_url)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(simulator.base_url + "/connect/oauth2?")
    assert query["client_id"] == [CLIENT["client_id"]] and query["redirect_uri"] == [REDIRECT]
    assert query["scope"] == ["com.intuit.quickbooks.accounting"]
    state = query["state"][0]
    stored = conn.execute("SELECT state_hash FROM qbo_oauth_state").fetchall()
    assert stored == [(hashlib.sha256(state.encode()).hexdigest(),)]  # hashed, never in clear
    code, returned_state, realm = consent(url)
    assert returned_state == state and realm == REALM
    assert (
        conn.execute("SELECT qbo_oauth_callback(%s, %s, %s)", (code, state, realm)).fetchone()[0]
        == org
    )
    row = connection(conn, org)
    assert (row["realm_id"], row["environment"], row["is_active"]) == (REALM, "simulator", True)
    assert row["fresh"] and row["refresh_lives"] and works(simulator, row["access"])
    assert conn.execute("SELECT consumed_at IS NOT NULL FROM qbo_oauth_state").fetchone()[0]
    # the company's name, as QBO's CompanyInfo gives it, for the status views and the page
    info = requests.get(
        f"{simulator.base_url}/v3/company/{REALM}/companyinfo/{REALM}",
        headers={"Authorization": f"Bearer {row['access']}", "Accept": "application/json"},
        timeout=10,
    ).json()["CompanyInfo"]
    assert info["CompanyName"] and conn.execute(
        "SELECT company_name FROM qbo_sync_status WHERE organization_id = %s", (org,)
    ).fetchone() == (info["CompanyName"],)
    # the organization can now sync
    assert conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]


def test_every_bad_state_is_refused_and_nothing_is_stored(conn, simulator):  # noqa: F811
    org = new_org(conn)
    url = initiate(conn, org, simulator.base_url)
    code, state, realm = consent(url)
    callback = "SELECT qbo_oauth_callback(%s, %s, %s)"
    with pytest.raises(errors.InvalidParameterValue, match="unknown OAuth state"):
        conn.execute(callback, (code, "not-a-state-we-gave", realm))
    conn.execute("UPDATE qbo_oauth_state SET expires_at = now() - interval '1 second'")
    with pytest.raises(errors.InvalidParameterValue, match="expired"):
        conn.execute(callback, (code, state, realm))
    assert connection(conn, org) is None
    conn.execute("UPDATE qbo_oauth_state SET expires_at = now() + interval '10 minutes'")
    conn.execute(callback, (code, state, realm))
    with pytest.raises(errors.InvalidParameterValue, match="used already"):
        conn.execute(callback, (code, state, realm))
    # the company is connected: another organization may not take it
    other = new_org(conn, "Other")
    code2, state2, realm2 = consent(initiate(conn, other, simulator.base_url))
    with pytest.raises(errors.UniqueViolation, match=f"company {realm2} is already connected"):
        conn.execute(callback, (code2, state2, realm2))
    assert connection(conn, other) is None


def test_a_refused_code_exchange_stores_nothing(conn, simulator):  # noqa: F811
    org = new_org(conn)
    url = initiate(conn, org, simulator.base_url)
    _code, state, realm = consent(url)
    with pytest.raises(psycopg.Error) as failure:
        conn.execute("SELECT qbo_oauth_callback(%s, %s, %s)", ("forged-code", state, realm))
    assert failure.value.sqlstate == "QB410" and "invalid_grant" in str(failure.value)
    assert connection(conn, org) is None


def test_disconnect_revokes_at_intuit_and_deactivates(conn, simulator):  # noqa: F811
    org = conn.execute(
        "SELECT qbo_sync.create_connected_organization('One call', %s)", (simulator.base_url,)
    ).fetchone()[0]
    access = connection(conn, org)["access"]
    assert works(simulator, access)
    result = conn.execute(
        "SELECT qbo_sync.disconnect(%s, 'moving to another app')", (org,)
    ).fetchone()[0]
    assert result == {"revoked": True, "reason": "moving to another app"}
    row = connection(conn, org)
    assert (row["is_active"], row["inactive_reason"], row["access"]) == (
        False,
        "moving to another app",
        None,
    )
    assert not works(simulator, access)  # revoked at the simulator too


def test_who_may_connect_and_disconnect(conn, connect, simulator):  # noqa: F811
    org, other = new_org(conn), new_org(conn, "Other")
    app = connect(user="qbo_sync_app")
    app.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))
    url = app.execute("SELECT qbo_oauth_initiate(%s, 'https://app.example/cb')", (org,)).fetchone()[
        0
    ]
    assert url.startswith("https://appcenter.intuit.com/connect/oauth2?")
    with pytest.raises(errors.NoDataFound):
        app.execute("SELECT qbo_oauth_initiate(%s, 'https://app.example/cb')", (other,))
    with pytest.raises(errors.InsufficientPrivilege, match="only qbo-sync's owner"):
        app.execute(
            "SELECT qbo_oauth_initiate(%s, %s, 'simulator', %s)",
            (org, REDIRECT, simulator.base_url),
        )
    with pytest.raises(errors.InvalidParameterValue, match="https"):
        app.execute("SELECT qbo_oauth_initiate(%s, 'http://app.example/cb')", (org,))
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute("SELECT qbo_sync.create_connected_organization('x', 'http://127.0.0.1:1')")
    listener = connect(user="qbo_sync_listener")
    with pytest.raises(errors.InvalidParameterValue, match="unknown OAuth state"):
        listener.execute("SELECT qbo_oauth_callback('c', 's', '1')")
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute("SELECT qbo_oauth_initiate(%s, 'https://x/cb')", (org,))


def test_the_callback_proves_the_company_the_tokens_are_for(conn, simulator):  # noqa: F811
    """The realmId comes in the redirect's query string, which whoever holds the state can
    change: claiming another company's realm is refused and nothing is stored."""
    org = new_org(conn)
    code, state, realm = consent(initiate(conn, org, simulator.base_url))
    other_realm = "9130350000000001"
    assert other_realm != realm
    with pytest.raises(psycopg.Error) as failure:
        conn.execute("SELECT qbo_oauth_callback(%s, %s, %s)", (code, state, other_realm))
    assert failure.value.sqlstate in ("QB401", "QB403")
    assert connection(conn, org) is None


def test_a_session_cannot_choose_the_secrets_file_the_owner_reads(conn, connect, tmp_path):
    """The review's finding: an application session SET qbo_sync.secrets_file to a file of its
    own, and qbo_oauth_initiate (running as the owner) used the client id it found there. The
    SECURITY DEFINER functions are pinned to the server's configured file."""
    org = new_org(conn)
    planted = tmp_path / "planted.env"
    planted.write_text("QBO_CLIENT_ID=attacker-client-id\n")
    planted.chmod(0o644)
    app = connect(user="qbo_sync_app")
    app.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))
    for path in (str(planted), "/nonexistent"):
        app.execute("SELECT set_config('qbo_sync.secrets_file', %s, false)", (path,))
        url = app.execute(
            "SELECT qbo_oauth_initiate(%s, 'https://app.example/cb')", (org,)
        ).fetchone()[0]
        assert "client_id=test-client-id" in url and "attacker" not in url

"""The status page (`qbo-sync dashboard`) against the real database, synced from the simulator:
every page and every action through aiohttp's test client, the live parts, and the refusals (no
login when bound elsewhere, another organization for a dashboard confined to one, forged
cross-site POSTs); the dashboard role's grants; the counts read from the partial indexes.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql

from qbo_sync.dashboard import app as dashboard
from qbo_sync.dashboard import queries, security
from qbo_sync.pgserver import free_port
from tests.conftest import make_org
from tests.db.qbo_jobs import connect_realm
from tests.db.test_conflicts import held_invoice
from tests.db.test_pull import pull, seeded  # noqa: F401 - fixture
from tests.db.test_push import add_invoice
from tests.db.test_qbo_calls import outcome, run_worker

SECRET = "a-long-enough-dashboard-secret"
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def config(dsn: str, **more: Any) -> dashboard.DashboardConfig:
    return dashboard.prepare(dashboard.DashboardConfig(monitor_dsn=dsn, action_dsn=dsn, **more))


@pytest.fixture
async def client(aiohttp_client, db_dsn):
    return await aiohttp_client(dashboard.make_app(config(db_dsn)))


@pytest.fixture
def synced(conn, seeded):  # noqa: F811
    """An organization connected to the simulator with its customers and items pulled."""
    connected = connect_realm(conn, seeded, name="Synced Co")
    for entity in ("customers", "items"):
        assert outcome(conn, pull(conn, connected.org, entity))["status"] == "completed"
    return connected


def origin(client) -> str:
    return str(client.make_url("/")).rstrip("/")


async def page(client, path: str, status: int = 200) -> str:
    answer = await client.get(path, allow_redirects=False)
    text = await answer.text()
    assert answer.status == status, text
    return text


async def post(client, path: str, data: dict, *, token: str | None = "page", **headers):
    """A form POST as the page sends it: the session's token and this site's Origin."""
    if token == "page":
        answer = await client.get("/")  # the overview, an organization's page or the login
        token = CSRF.search(await answer.text()).group(1)
    if token is not None:
        data = {**data, "csrf_token": token}
    headers.setdefault("Origin", origin(client))
    headers = {k: v for k, v in headers.items() if v is not None}
    return await client.post(path, data=data, headers=headers, allow_redirects=False)


def scalar(conn: psycopg.Connection, query: str, params: Any = ()) -> Any:
    return conn.execute(query, params).fetchone()[0]


def pending(conn: psycopg.Connection) -> int:
    return scalar(conn, "SELECT count(*) FROM qbo_sync_queue WHERE status = 'pending'")


def entity_row(text: str, entity: str) -> dict[str, int]:
    row = re.search(rf'<tr id="entity-{entity}">(.*?)</tr>', text, re.S).group(1)
    cells = dict(re.findall(r'<td class="num (\w+)[^"]*">(\d+)</td>', row))
    return {k: int(v) for k, v in cells.items()}


# ----------------------------------------------------------------------------- pages


async def test_overview_shows_every_organization_with_connection_backlog_and_errors(
    client, conn, synced
):
    other = make_org(conn, "Broken Co", active=False)
    conn.execute("SELECT trigger_qbo_sync(%s, 'invoices', 'pull')", (synced.org,))
    text = await page(client, "/")
    assert "Synced Co" in text and "Broken Co" in text
    assert f'href="/org/{synced.org}"' in text and f'href="/org/{other}"' in text
    assert "connected" in text and "inactive: invalid_grant" in text
    assert "1 jobs, 0 records" in text  # the queued pull is the backlog
    part = await page(client, "/part/overview")
    assert "Synced Co" in part and "<html" not in part  # a fragment, for the live refresh


async def test_organization_page_shows_tokens_counts_history_and_the_chart(client, conn, synced):
    text = await page(client, f"/org/{synced.org}")
    assert "Synced Co" in text and "connected" in text
    # the refresh token's remaining life, from the connection's expiry
    days = scalar(
        conn,
        "SELECT floor(extract(epoch FROM qbo_refresh_token_expires_at - now()) / 86400)::int"
        " FROM qbo_connection WHERE organization_id = %s",
        (synced.org,),
    )
    assert f"{days} days left" in text
    for entity, table in queries.APP_TABLE.items():
        total = scalar(
            conn, f"SELECT count(*) FROM {table} WHERE organization_id = %s", (synced.org,)
        )
        counts = entity_row(text, entity)
        assert counts["total"] == total and counts["synced"] == total, (entity, counts)
        assert entity in ("invoices", "payments") or total > 0
    # the history has both pulls, with their QBO calls; the chart sums them for this hour
    history = await page(client, f"/part/org/{synced.org}/history")
    assert history.count('<tr class="run completed">') == 2
    calls = scalar(
        conn,
        "SELECT sum((summary ->> 'qbo_calls')::int) FROM qbo_sync_history"
        " WHERE organization_id = %s",
        (synced.org,),
    )
    assert calls > 0
    chart = await page(client, f"/part/org/{synced.org}/chart")
    assert f"QBO API calls per hour ({calls} in 24 h; busiest hour {calls} =" in chart
    assert "of QBO's 30,000 an hour" in chart and "Sync jobs per hour (2 in 24 h;" in chart
    assert chart.count("<rect") == 24 * 3  # 24 hours: two job bars and one call bar each
    for part in dashboard.PARTS:
        fragment = await page(client, f"/part/org/{synced.org}/{part}")
        assert "<html" not in fragment
    await page(client, f"/part/org/{synced.org}/nothing", 404)
    await page(client, f"/org/{uuid.uuid4()}", 404)
    await page(client, "/org/not-an-id", 404)


async def test_answers_carry_the_security_headers(client, synced):
    answer = await client.get(f"/org/{synced.org}")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    script = await client.get("/static/refresh.js")
    assert script.status == 200 and "data-refresh" in await script.text()


# ----------------------------------------------------------------------------- actions


async def test_pull_queues_a_job_the_queue_shows_until_it_has_run(client, conn, synced):
    answer = await post(
        client, f"/org/{synced.org}/sync", {"entity": "customers", "direction": "pull"}
    )
    assert answer.status == 303 and answer.headers["Location"] == f"/org/{synced.org}#queue"
    job, source, priority = conn.execute(
        "SELECT id, source, priority::text FROM qbo_sync_queue"
        " WHERE organization_id = %s AND status = 'pending'",
        (synced.org,),
    ).fetchone()
    assert (source, priority) == ("manual", "urgent")
    text = await page(client, f"/org/{synced.org}")
    assert f"queued: pull customers (job {job})" in text  # the flash, once
    assert "queued: pull" not in await page(client, f"/org/{synced.org}")
    queue = await page(client, f"/part/org/{synced.org}/queue")
    assert f'<tr class="job pending" data-job="{job}">' in queue
    run_worker(conn)
    queue = await page(client, f"/part/org/{synced.org}/queue")
    assert f'<tr class="job completed" data-job="{job}">' in queue
    history = await page(client, f"/part/org/{synced.org}/history")
    assert history.count('<tr class="run completed">') == 3


async def test_cancel_and_requeue_a_job(client, conn, synced):
    job = scalar(conn, "SELECT trigger_qbo_sync(%s, 'items', 'push')", (synced.org,))
    answer = await post(client, f"/org/{synced.org}/cancel", {"job": str(job)})
    assert answer.status == 303
    assert scalar(conn, "SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)) == "cancelled"
    answer = await post(client, f"/org/{synced.org}/requeue", {"job": str(job)})
    assert answer.status == 303
    assert scalar(conn, "SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)) == "pending"
    # another organization's job, from this one's page: the SQL does not find it
    other = make_org(conn, "Other Co")
    theirs = scalar(conn, "SELECT trigger_qbo_sync(%s, 'items', 'pull')", (other,))
    await post(client, f"/org/{synced.org}/cancel", {"job": str(theirs)})
    assert scalar(conn, "SELECT status FROM qbo_sync_queue WHERE id = %s", (theirs,)) == "pending"
    assert "had already finished" in await page(client, f"/org/{synced.org}")


async def test_a_held_conflict_is_shown_side_by_side_and_resolved(client, conn, synced):
    row, conflict = held_invoice(conn, synced.sim, synced)
    text = await page(client, f"/part/org/{synced.org}/conflicts")
    assert f'data-conflict="{conflict["id"]}"' in text
    sides = re.search(r"<td>private_note</td>(.*?)</tr>", text, re.S).group(1)
    assert '<td class="local">noted here</td>' in sides
    assert '<td class="qbo">noted in QBO</td>' in sides
    answer = await post(
        client, f"/org/{synced.org}/resolve", {"conflict": str(conflict["id"]), "choice": "local"}
    )
    assert answer.status == 303
    status, resolution, by = conn.execute(
        "SELECT status, resolution, resolved_by FROM qbo_sync_conflict WHERE id = %s",
        (conflict["id"],),
    ).fetchone()
    assert (status, resolution, by) == ("resolved", "local_wins", "qbo_sync_dashboard")
    assert (
        scalar(conn, "SELECT qbo_sync_status FROM invoice_record WHERE id = %s", (row["id"],))
        == "pending"
    )
    assert "No conflict waits" in await page(client, f"/part/org/{synced.org}/conflicts")
    # a second decision is refused by the SQL, and said on the page
    await post(
        client, f"/org/{synced.org}/resolve", {"conflict": str(conflict["id"]), "choice": "qbo"}
    )
    assert "is not waiting for a decision" in html.unescape(
        await page(client, f"/org/{synced.org}")
    )


def refused_invoice(conn: psycopg.Connection, org: uuid.UUID) -> uuid.UUID:
    """An invoice QBO refused (a negative total: validation fault 6000), with its intuit_tid."""
    customer = scalar(
        conn, "SELECT id FROM customer_profile WHERE organization_id = %s LIMIT 1", (org,)
    )
    item = scalar(
        conn,
        "SELECT id FROM item_record WHERE organization_id = %s AND is_active LIMIT 1",
        (org,),
    )
    bad = add_invoice(conn, org, customer, [(item, Decimal(1), Decimal(-50))])
    job = scalar(conn, "SELECT trigger_qbo_sync(%s, 'invoices', 'push')", (org,))
    run_worker(conn)
    assert outcome(conn, job)["history"] == "partial"
    return bad


async def test_a_failed_record_is_listed_with_its_error_and_retried(client, conn, synced):
    bad = refused_invoice(conn, synced.org)
    tid = scalar(conn, "SELECT qbo_intuit_tid FROM invoice_record WHERE id = %s", (bad,))
    text = await page(client, f"/org/{synced.org}")
    assert entity_row(text, "invoices")["error"] == 1
    failed = await page(client, f"/part/org/{synced.org}/failed")
    assert f'data-record="{bad}"' in failed and "validation 6000" in failed and tid in failed
    answer = await post(
        client, f"/org/{synced.org}/retry", {"entity": "invoices", "record": str(bad)}
    )
    assert answer.status == 303
    assert (
        scalar(conn, "SELECT qbo_sync_status FROM invoice_record WHERE id = %s", (bad,))
        == "pending"
    )
    # corrected, the queued push sends it
    conn.execute(
        "UPDATE invoice_line_item SET unit_price = 50, amount = 50 WHERE invoice_id = %s", (bad,)
    )
    run_worker(conn)
    assert (
        scalar(conn, "SELECT qbo_sync_status FROM invoice_record WHERE id = %s", (bad,)) == "synced"
    )
    assert "No record needs a person" in await page(client, f"/part/org/{synced.org}/failed")


async def test_a_failed_record_is_skipped_with_a_reason(client, conn, synced):
    bad = refused_invoice(conn, synced.org)
    answer = await post(
        client,
        f"/org/{synced.org}/skip",
        {"entity": "invoices", "record": str(bad), "reason": "test data"},
    )
    assert answer.status == 303
    status, code, error = conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error_code, qbo_sync_error FROM invoice_record"
        " WHERE id = %s",
        (bad,),
    ).fetchone()
    assert (status, code) == ("error", "skipped") and "test data" in error
    assert "qbo_sync_dashboard" in error  # who skipped it
    summary = scalar(
        conn,
        "SELECT summary FROM qbo_sync_history WHERE organization_id = %s AND sync_type = 'skip'",
        (synced.org,),
    )
    assert summary["by"] == "qbo_sync_dashboard" and summary["reason"] == "test data"


async def test_connect_gives_the_authorization_address_and_disconnect_deactivates(
    client, conn, synced
):
    bare = make_org(conn, "Not Yet")
    conn.execute("DELETE FROM qbo_connection WHERE organization_id = %s", (bare,))
    assert "not connected" in await page(client, f"/org/{bare}")
    answer = await post(client, f"/org/{bare}/connect", {"environment": "sandbox"})
    assert answer.status == 303
    state_hash, environment = conn.execute(
        "SELECT state_hash, environment FROM qbo_oauth_state WHERE organization_id = %s", (bare,)
    ).fetchone()
    assert environment == "sandbox"
    text = html.unescape(await page(client, f"/org/{bare}"))
    link = re.search(r'<a href="([^"]+)" rel="noreferrer">', text).group(1)
    state = re.search(r"[?&]state=([^&]+)", link).group(1)
    assert hashlib.sha256(state.encode()).hexdigest() == state_hash
    assert "redirect_uri=http" in link

    answer = await post(client, f"/org/{synced.org}/disconnect", {})
    assert answer.status == 303
    active, reason = conn.execute(
        "SELECT is_active, inactive_reason FROM qbo_connection WHERE organization_id = %s",
        (synced.org,),
    ).fetchone()
    assert not active and reason
    assert "inactive:" in await page(client, f"/part/org/{synced.org}/connection")


async def test_bad_arguments_are_refused_before_the_database(client, conn, synced):
    for data in (
        {"entity": "vendors", "direction": "pull"},
        {"entity": "items", "direction": "sideways"},
    ):
        answer = await post(client, f"/org/{synced.org}/sync", data)
        assert answer.status == 400
    answer = await post(client, f"/org/{synced.org}/requeue", {"job": "not-an-id"})
    assert answer.status == 400
    answer = await post(client, f"/org/{synced.org}/explode", {})
    assert answer.status == 404
    assert pending(conn) == 0


# ----------------------------------------------------------------------------- refusals


async def test_forged_cross_site_posts_are_refused(client, conn, synced):
    path, data = f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"}
    assert (await post(client, path, data, token=None)).status == 403  # no token
    assert (await post(client, path, data, token="guessed")).status == 403  # wrong token
    # the right token, from another site
    assert (await post(client, path, data, Origin="https://evil.example")).status == 403
    assert (await post(client, path, data, Origin="null")).status == 403
    # neither Origin nor Referer: refused; a Referer of this site: accepted
    assert (await post(client, path, data, Origin=None)).status == 403
    assert pending(conn) == 0
    answer = await post(client, path, data, Origin=None, Referer=origin(client) + "/org/x")
    assert answer.status == 303
    assert pending(conn) == 1


async def test_a_host_name_other_than_the_loopbacks_is_refused(client, conn, synced):
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 is its own origin; its
    requests name its host, and are refused."""
    answer = await client.get("/", headers={"Host": "evil.example:8090"})
    assert answer.status == 421
    path, data = f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"}
    answer = await post(
        client, path, data, Host="evil.example:8090", Origin="http://evil.example:8090"
    )
    assert answer.status == 421
    assert pending(conn) == 0
    for host in ("localhost", "127.0.0.1"):
        assert (await client.get("/", headers={"Host": f"{host}:8090"})).status == 200


async def test_a_token_belongs_to_its_session(aiohttp_client, db_dsn, client, conn, synced):
    other = await aiohttp_client(dashboard.make_app(config(db_dsn)))
    theirs = CSRF.search(await page(other, "/")).group(1)
    answer = await post(
        client, f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"}, token=theirs
    )
    assert answer.status == 403
    assert pending(conn) == 0


def test_bound_elsewhere_it_does_not_start_without_a_login_secret(monkeypatch):
    monkeypatch.delenv(dashboard.SECRET_NAME, raising=False)
    monkeypatch.delenv("QBO_SYNC_SECRETS_FILE", raising=False)
    args = dashboard.build_parser().parse_args(["--host", "0.0.0.0", "--dsn", "postgresql://x@y/z"])
    with pytest.raises(dashboard.ConfigError, match="needs a login"):
        dashboard.config_from(args, {})
    with pytest.raises(dashboard.ConfigError, match="too short"):
        dashboard.config_from(args, {dashboard.SECRET_NAME: "short"})
    assert dashboard.config_from(args, {dashboard.SECRET_NAME: SECRET}).secret == SECRET
    loopback = dashboard.build_parser().parse_args(["--dsn", "postgresql://x@y/z"])
    assert dashboard.config_from(loopback, {}).secret == ""


def test_the_secret_is_read_from_the_secrets_file(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text(f"QBO_CLIENT_ID=x\n{dashboard.SECRET_NAME}={SECRET}\n")
    args = dashboard.build_parser().parse_args(
        ["--host", "0.0.0.0", "--dsn", "postgresql://x@y/z", "--secrets-file", str(path)]
    )
    found = dashboard.config_from(args, {})
    assert found.secret == SECRET and SECRET not in repr(found)


async def test_with_a_secret_every_page_and_action_needs_the_login(
    aiohttp_client, db_dsn, conn, synced
):
    client = await aiohttp_client(dashboard.make_app(config(db_dsn, secret=SECRET)))
    answer = await client.get("/", allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/login")
    await page(client, f"/org/{synced.org}", 303)
    await page(client, f"/part/org/{synced.org}/queue", 401)
    login_form = await page(client, "/login")
    token = CSRF.search(login_form).group(1)
    answer = await post(
        client, f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"}, token=token
    )
    assert answer.status == 401
    assert pending(conn) == 0
    # a wrong secret, then a login without the form's token: still out
    answer = await post(client, "/login", {"secret": "not-the-secret-at-all"}, token=token)
    assert answer.headers["Location"] == "/login"
    assert "wrong secret" in await page(client, "/login")
    answer = await post(client, "/login", {"secret": SECRET}, token=None)
    assert answer.status == 403
    await page(client, "/", 303)
    # the secret: a new session (new cookie and token), and the pages open
    answer = await post(client, "/login", {"secret": SECRET}, token=token)
    assert (answer.status, answer.headers["Location"]) == (303, "/")
    text = await page(client, "/")
    assert "Synced Co" in text and CSRF.search(text).group(1) != token
    answer = await post(client, f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"})
    assert answer.status == 303
    assert pending(conn) == 1
    await post(client, "/logout", {})
    await page(client, "/", 303)


@pytest.fixture
def confined_login(conn, db_dsn, synced):
    """A login role granted qbo_sync_dashboard and confined to the synced organization."""
    role = "qbo_test_dashboard_" + uuid.uuid4().hex[:8]
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT qbo_sync_dashboard TO {}").format(sql.Identifier(role)))
    database = conn.info.dbname
    conn.execute(
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET qbo_sync.organization_id = {}").format(
            sql.Identifier(role), sql.Identifier(database), sql.Literal(str(synced.org))
        )
    )
    params = psycopg.conninfo.conninfo_to_dict(db_dsn)
    params["user"] = role
    try:
        yield psycopg.conninfo.make_conninfo(**params)
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_a_dashboard_confined_to_one_organization_acts_for_no_other(
    aiohttp_client, db_dsn, conn, synced, confined_login
):
    other = make_org(conn, "Other Co")
    settings = dashboard.prepare(
        dashboard.DashboardConfig(monitor_dsn=db_dsn, action_dsn=confined_login)
    )
    assert settings.confined_to == synced.org
    client = await aiohttp_client(dashboard.make_app(settings))
    answer = await client.get("/", allow_redirects=False)
    assert answer.headers["Location"] == f"/org/{synced.org}"
    part = await page(client, "/part/overview")
    assert "Synced Co" in part and "Other Co" not in part
    await page(client, f"/org/{other}", 404)
    await page(client, f"/part/org/{other}/queue", 404)
    answer = await post(client, f"/org/{other}/sync", {"entity": "items", "direction": "pull"})
    assert answer.status == 404
    answer = await post(client, f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"})
    assert answer.status == 303
    assert pending(conn) == 1
    # the database refuses the other organization to this login too, whatever the page does
    with psycopg.connect(confined_login, autocommit=True) as login:
        with pytest.raises(psycopg.Error, match="does not exist|may not"):
            login.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (other,))
    assert (
        scalar(conn, "SELECT count(*) FROM qbo_sync_queue WHERE organization_id = %s", (other,))
        == 0
    )


def test_a_login_that_is_not_a_member_of_the_roles_does_not_start(conn, db_dsn):
    role = "qbo_test_dashboard_" + uuid.uuid4().hex[:8]
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        params = psycopg.conninfo.conninfo_to_dict(db_dsn)
        params["user"] = role
        dsn = psycopg.conninfo.make_conninfo(**params)
        with pytest.raises(dashboard.ConfigError, match="not a member of qbo_sync_monitor"):
            dashboard.prepare(dashboard.DashboardConfig(monitor_dsn=dsn, action_dsn=db_dsn))
        with pytest.raises(dashboard.ConfigError, match="not a member of qbo_sync_dashboard"):
            dashboard.prepare(dashboard.DashboardConfig(monitor_dsn=db_dsn, action_dsn=dsn))
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# ----------------------------------------------------------------------------- roles and indexes

DASHBOARD_MAY_EXECUTE = {
    "trigger_qbo_sync(uuid,text,text,text)",
    "qbo_sync_requeue(uuid)",
    "qbo_sync_cancel(uuid)",
    "qbo_sync_resolve_conflict(uuid,text,jsonb)",
    "qbo_sync_retry_record(text,uuid)",
    "qbo_sync_skip_record(text,uuid,text)",
    "qbo_oauth_initiate(uuid,text,text,text)",
    "qbo_sync.disconnect(uuid,text)",
}


def test_the_dashboard_role_may_call_exactly_the_actions_and_read_nothing(conn):
    allowed = {
        row[0]
        for row in conn.execute(
            """SELECT p.oid::regprocedure::text
                 FROM pg_proc AS p
                WHERE (p.pronamespace = 'qbo_sync'::regnamespace
                       OR (p.pronamespace = 'public'::regnamespace
                           AND (p.proname LIKE 'qbo\\_%' OR p.proname = 'trigger_qbo_sync')))
                  AND has_function_privilege('qbo_sync_dashboard', p.oid, 'EXECUTE')"""
        )
    }
    assert {a.replace(" ", "") for a in allowed} == DASHBOARD_MAY_EXECUTE
    readable = conn.execute(
        """SELECT c.oid::regclass::text FROM pg_class AS c
            WHERE c.relnamespace IN ('public'::regnamespace, 'qbo_sync'::regnamespace)
              AND c.relkind IN ('r', 'v', 'p')
              AND (has_table_privilege('qbo_sync_dashboard', c.oid, 'SELECT')
                   OR has_table_privilege('qbo_sync_dashboard', c.oid, 'INSERT')
                   OR has_table_privilege('qbo_sync_dashboard', c.oid, 'UPDATE')
                   OR has_table_privilege('qbo_sync_dashboard', c.oid, 'DELETE')
                   OR has_any_column_privilege('qbo_sync_dashboard', c.oid, 'SELECT'))"""
    ).fetchall()
    assert readable == []
    assert not scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'qbo_sync_dashboard'")


def test_the_pages_read_only_as_the_monitor(connect, conn, synced):
    monitor = connect(user="qbo_sync_monitor")
    monitor.execute("SET default_transaction_read_only = on")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        monitor.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (synced.org,))


def test_the_counts_are_read_from_the_indexes(conn, synced):
    """Per-entity counts of rows not synced come from the *_unsynced_idx partial indexes, the
    totals from an index-only scan, never from the table's rows. (The tables here are small, so
    sequential scans are switched off to see which index the planner can use.)"""
    conn.execute("SET ROLE qbo_sync_monitor")
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN ") + sql.SQL(queries.UNSYNCED_COUNTS), (synced.org,)
            )
        )
        for table in queries.APP_TABLE.values():
            assert f"{table}_unsynced_idx" in plan, plan
        for entity in queries.ENTITIES:
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    sql.SQL("EXPLAIN ") + queries.total_query(entity), (synced.org,)
                )
            )
            assert "Index Only Scan" in plan, plan
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    sql.SQL("EXPLAIN ") + queries.failed_records_query(entity),
                    {"org": synced.org, "limit": 50},
                )
            )
            assert f"{queries.APP_TABLE[entity]}_unsynced_idx" in plan, plan
    finally:
        conn.execute("RESET enable_seqscan")
        conn.execute("RESET ROLE")


# ----------------------------------------------------------------------------- the command


def test_qbo_sync_dashboard_serves_the_pages(db_dsn, conn, synced):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != dashboard.SECRET_NAME}
    process = subprocess.Popen(
        [sys.executable, "-m", "qbo_sync.cli", "dashboard", "--dsn", db_dsn, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert answer.status_code == 200 and "Synced Co" in answer.text
    finally:
        process.terminate()
        process.wait(timeout=10)
    refused = subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", "dashboard", "--dsn", db_dsn, "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "needs a login" in refused.stderr


async def test_behind_a_proxy_forms_from_the_public_url_are_accepted(
    aiohttp_client, db_dsn, conn, synced
):
    proxied = config(db_dsn, public_origin="https://sync.example.com")
    client = await aiohttp_client(dashboard.make_app(proxied))
    first = await client.get("/")
    # the cookie is Secure (the browser reaches it over https): sent here by hand, over http
    assert "Secure" in first.headers["Set-Cookie"]
    cookie = f"{security.COOKIE}={first.cookies[security.COOKIE].value}"
    token = CSRF.search(await first.text()).group(1)
    path, data = f"/org/{synced.org}/sync", {"entity": "items", "direction": "pull"}
    for where, status in (
        ("https://evil.example", 403),
        ("http://sync.example.com", 403),
        ("https://sync.example.com", 303),
    ):
        answer = await post(client, path, data, token=token, Origin=where, Cookie=cookie)
        assert answer.status == status, where
    assert pending(conn) == 1


async def test_the_queue_shows_a_running_jobs_counts(client, conn, synced):
    pull = scalar(conn, "SELECT trigger_qbo_sync(%s, 'invoices', 'pull')", (synced.org,))
    push = scalar(conn, "SELECT trigger_qbo_sync(%s, 'customers', 'push')", (synced.org,))
    # what the worker publishes after each page or request (qbo_sync.publish_progress)
    conn.execute(
        "UPDATE qbo_sync_queue SET progress = %s::jsonb WHERE id = %s",
        ('{"phase": "pull", "mode": "full", "read": 2000, "total": 20000, "written": 1980}', pull),
    )
    conn.execute(
        "UPDATE qbo_sync_queue SET progress = %s::jsonb WHERE id = %s",
        ('{"phase": "push", "sent": 31, "pushed": 30, "failed": 1, "held": 2}', push),
    )
    queue = await page(client, f"/part/org/{synced.org}/queue")
    assert '<td class="progress">2000 of 20000 read, 1980 written</td>' in queue
    assert '<td class="progress">31 sent, 30 accepted, 1 failed, 2 held</td>' in queue

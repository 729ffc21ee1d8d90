"""`qbo-sync connect`, `sync --wait`, `status`, `conflicts` and `records` run as a user runs them
(child processes, output piped), against the test database and a seeded simulator over HTTP."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from qbo_sync.cli import EXIT_ERROR, EXIT_OK
from tests.clitools import assert_one_line_error, run_qbo_sync
from tests.db.qbo_jobs import LoggedServer
from tests.db.test_tokens import CLIENT

REDIRECT = CLIENT["redirect_uris"][0]


@pytest.fixture
def sim() -> Iterator[LoggedServer]:
    server = LoggedServer(seed_customers=6, seed_items=3, seed_invoices=5, seed_payments=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker(db_dsn: str) -> Iterator[None]:
    """The queue processor running beside the command, as pg_cron runs it."""
    pid: list[int] = []

    def work() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            pid.append(conn.info.backend_pid)
            try:
                conn.execute("CALL qbo_sync.worker(120, NULL, false)")
            except psycopg.errors.QueryCanceled:
                pass

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
    thread.join(30)


def connect(db_dsn: str, sim: LoggedServer, name: str = "CLI Bakery") -> uuid.UUID:
    result = run_qbo_sync(
        "connect",
        "--org",
        name,
        "--create",
        "--simulator",
        sim.base_url,
        "--redirect-uri",
        REDIRECT,
        "--dsn",
        db_dsn,
    )
    assert result.returncode == EXIT_OK, result.stderr
    line = result.stdout.strip()
    assert line.startswith("connected: organization ") and line.endswith("(simulator)"), line
    return uuid.UUID(line.split()[2])


def test_connect_against_the_simulator_completes_by_itself(db_dsn, conn, sim):
    org = connect(db_dsn, sim)
    assert conn.execute(
        "SELECT o.name, c.realm_id, c.is_active FROM qbo_connection AS c"
        " JOIN organizations AS o ON o.id = c.organization_id"
    ).fetchall() == [("CLI Bakery", sim.state.realms and next(iter(sim.state.realms)), True)]
    # the same name again connects the same organization (no second one is made)
    assert connect(db_dsn, sim) == org
    assert conn.execute("SELECT count(*) FROM organizations").fetchone() == (1,)


def test_connect_to_real_quickbooks_prints_the_address_to_open(db_dsn, conn):
    result = run_qbo_sync(
        "connect",
        "--org",
        "Real Co",
        "--create",
        "--environment",
        "sandbox",
        "--redirect-uri",
        "https://app.example/oauth/callback",
        "--dsn",
        db_dsn,
    )
    assert result.returncode == EXIT_OK, result.stderr
    url = result.stdout.splitlines()[1].strip()
    assert url.startswith("https://appcenter.intuit.com/connect/oauth2?")
    assert "client_id=test-client-id" in url and "state=" in url
    assert "qbo-sync listen" in result.stdout
    # nothing is connected until the person approves
    assert conn.execute("SELECT count(*) FROM qbo_connection").fetchone() == (0,)
    waited = run_qbo_sync(
        "connect",
        "--org",
        "Real Co",
        "--redirect-uri",
        "https://app.example/oauth/callback",
        "--wait",
        "1",
        "--dsn",
        db_dsn,
    )
    assert_one_line_error(waited, EXIT_ERROR, "not connected within 1 s", "qbo-sync listen")


def test_connect_mistakes_are_one_line(db_dsn, sim):
    result = run_qbo_sync("connect", "--org", "Ghost", "--simulator", sim.base_url, "--dsn", db_dsn)
    assert_one_line_error(result, EXIT_ERROR, "no organization is named 'Ghost'", "--create")
    result = run_qbo_sync(
        "connect",
        "--org",
        "Ghost",
        "--create",
        "--simulator",
        "http://127.0.0.1:1",
        "--redirect-uri",
        REDIRECT,
        "--dsn",
        db_dsn,
    )
    assert_one_line_error(result, EXIT_ERROR, "does not answer", "qbo-sync simulator")


def test_sync_wait_follows_the_jobs_to_the_end(db_dsn, conn, sim, worker):
    org = connect(db_dsn, sim)
    result = run_qbo_sync(
        "sync",
        "--org",
        "CLI Bakery",
        "--direction",
        "pull",
        "--wait",
        "--timeout",
        "120",
        "--dsn",
        db_dsn,
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    finals = {
        line.split(":")[0]: line for line in result.stdout.splitlines() if "completed" in line
    }
    assert set(finals) == {"customers", "items", "invoices", "payments"}
    counted = conn.execute(
        "SELECT (SELECT count(*) FROM customer_profile WHERE organization_id = %s),"
        " (SELECT count(*) FROM invoice_record WHERE organization_id = %s)",
        (org, org),
    ).fetchone()
    assert f"completed, {counted[0]} objects" in finals["customers"]
    assert f"completed, {counted[1]} objects" in finals["invoices"]
    assert counted[0] >= 6


def test_sync_wait_without_a_worker_says_what_to_check(db_dsn, sim):
    connect(db_dsn, sim)
    result = run_qbo_sync(
        "sync",
        "--org",
        "CLI Bakery",
        "--entities",
        "items",
        "--wait",
        "--timeout",
        "1",
        "--dsn",
        db_dsn,
    )
    assert result.returncode == EXIT_ERROR
    last = result.stderr.strip().splitlines()[-1]
    assert "not done within 1 s" in last and "is the worker running?" in last


def test_status_shows_tokens_history_and_what_needs_a_person(db_dsn, conn, sim, worker):
    org = connect(db_dsn, sim)
    run_qbo_sync(
        "sync",
        "--org",
        str(org),
        "--entities",
        "customers",
        "--direction",
        "pull",
        "--wait",
        "--dsn",
        db_dsn,
    )
    # a record QBO refused, and a failed job: both need a person
    conn.execute(
        "UPDATE customer_profile SET qbo_sync_status = 'error', qbo_sync_error_class ="
        " 'validation', qbo_sync_error_code = '6000', qbo_sync_error = 'refused'"
        " WHERE id = (SELECT id FROM customer_profile ORDER BY id LIMIT 1)"
    )
    result = run_qbo_sync("status", "--org", "CLI Bakery", "--dsn", db_dsn)
    assert result.returncode == EXIT_OK, result.stderr
    out = result.stdout
    org_line = next(line for line in out.splitlines() if line.startswith("CLI Bakery "))
    assert " valid " in org_line and " min " in org_line  # the access token's remaining life
    assert any(" customers " in line and "completed" in line for line in out.splitlines())
    need = out[out.index("Needs a person") :]
    assert "error records" in need and "1 customers" in need
    assert "qbo-sync records --failed" in need


def test_records_lists_retries_and_skips(db_dsn, conn, sim, worker):
    org = connect(db_dsn, sim)
    run_qbo_sync(
        "sync",
        "--org",
        str(org),
        "--entities",
        "customers",
        "--direction",
        "pull",
        "--wait",
        "--dsn",
        db_dsn,
    )
    record, qbo_id = conn.execute(
        "UPDATE customer_profile SET qbo_sync_status = 'error', qbo_sync_error = 'bad email',"
        " qbo_sync_error_class = 'validation', qbo_sync_error_code = '2170'"
        " WHERE id = (SELECT id FROM customer_profile ORDER BY id LIMIT 1) RETURNING id, qbo_id"
    ).fetchone()
    listed = run_qbo_sync("records", "--failed", "--dsn", db_dsn)
    assert listed.returncode == EXIT_OK, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if str(record) in line)
    assert "error" in line and "validation" in line and "2170" in line and "bad email" in line
    retried = run_qbo_sync("records", "--retry", "customers", str(record), "--dsn", db_dsn)
    assert retried.returncode == EXIT_OK and "queued again" in retried.stdout, retried.stderr
    assert conn.execute(
        "SELECT qbo_sync_status FROM customer_profile WHERE id = %s", (record,)
    ).fetchone() != ("error",)
    wrong = run_qbo_sync("records", "--retry", "vendors", str(record), "--dsn", db_dsn)
    assert wrong.returncode == EXIT_ERROR and "Traceback" not in wrong.stderr
    assert qbo_id


def test_conflicts_lists_both_sides_and_resolves(db_dsn, conn, sim):
    org = connect(db_dsn, sim)
    conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'X')", (org,)
    )
    local_id = conn.execute("SELECT id FROM customer_profile").fetchone()[0]
    conflict = conn.execute(
        """INSERT INTO qbo_sync_conflict (organization_id, entity, local_id, qbo_id, fields,
                                          local_values, remote_values, base_values, policy,
                                          status, resolution)
           VALUES (%s, 'customers', %s, '77', '{email}', '{"email": "here@x.example"}',
                   '{"email": "qbo@x.example"}', '{"email": "before@x.example"}', 'hold',
                   'held', 'hold') RETURNING id""",
        (org, local_id),
    ).fetchone()[0]
    listed = run_qbo_sync("conflicts", "--dsn", db_dsn)
    assert listed.returncode == EXIT_OK, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if str(conflict) in line)
    for value in ("email", "before@x.example", "here@x.example", "qbo@x.example", "held"):
        assert value in line
    bad = run_qbo_sync("conflicts", "--resolve", str(uuid.uuid4()), "--dsn", db_dsn)
    assert bad.returncode == EXIT_ERROR and "Traceback" not in bad.stderr

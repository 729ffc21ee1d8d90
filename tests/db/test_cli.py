"""The qbo-sync command against the test database; its usual mistakes run as real processes and
end with one line on stderr and a meaningful exit code, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from qbo_sync.cli import EXIT_ERROR, EXIT_UNAVAILABLE, EXIT_USAGE, main
from qbo_sync.install import PROJECT_ROOT
from tests.clitools import assert_one_line_error, run_qbo_sync


def test_install_reports_and_is_idempotent(db_dsn, capsys):
    assert main(["install", "--dsn", db_dsn]) == 0
    out = capsys.readouterr().out
    applied = len(list((PROJECT_ROOT / "sql" / "incremental").glob("*.sql")))
    assert f"migrations: all {applied} already applied" in out and "nothing new" in out


def test_install_into_an_unreachable_database_fails_clearly(capsys):
    dsn = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    assert main(["install", "--dsn", dsn]) == EXIT_UNAVAILABLE
    assert "cannot connect" in capsys.readouterr().err


@pytest.fixture
def empty_db(pg_server):
    """A database without qbo-sync."""
    name = "empty_" + uuid.uuid4().hex[:8]
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["sync", "--org", "9af4c081-7379-4e41-8dfb-924e2518e3c6", "--entities", "invoices"],
    ],
)
def test_a_database_without_qbo_sync_says_to_install_it(empty_db, command):
    result = run_qbo_sync(*command, "--dsn", empty_db)
    assert_one_line_error(
        result, EXIT_UNAVAILABLE, "qbo-sync is not installed in database empty_", "qbo-sync install"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["sync", "--org", "9af4c081-7379-4e41-8dfb-924e2518e3c6", "--entities", "invoices"],
        ["install"],
    ],
)
def test_a_wrong_database_name_or_role_says_which_and_what_to_do(pg_server, command):
    for dsn, reason in [
        (pg_server.dsn("no_such_database"), 'database "no_such_database" does not exist'),
        (pg_server.dsn("postgres", user="no_such_role"), 'role "no_such_role" does not exist'),
    ]:
        result = run_qbo_sync(*command, "--dsn", dsn)
        # the server answered: the --dsn is wrong, not the server down (a usage error)
        assert_one_line_error(result, EXIT_USAGE, "cannot connect to database", reason, "--dsn")
        assert "start the database" not in result.stderr


def test_a_malformed_connection_option_is_a_usage_error(pg_server):
    result = run_qbo_sync("status", "--dsn", pg_server.dsn() + "?sslmode=bogus")
    assert_one_line_error(result, EXIT_USAGE, "invalid connection string", "sslmode", "--dsn")


@pytest.fixture
def app_login(pg_server, db_dsn) -> Iterator[str]:
    """A login role granted qbo_sync_app only, as the application connects."""
    name = "cli_app_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db_dsn, autocommit=True) as su:
        su.execute(f"CREATE ROLE {name} LOGIN IN ROLE qbo_sync_app")
    yield db_dsn.replace("postgres@", f"{name}@")
    with psycopg.connect(db_dsn, autocommit=True) as su:
        su.execute(f"DROP ROLE {name}")


def test_the_application_role_queues_a_sync_for_its_organization(app_login, conn, org):
    result = run_qbo_sync("sync", "--org", str(org), "--entities", "invoices", "--dsn", app_login)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    entity, job_id = result.stdout.strip().split("\t")
    assert entity == "invoices"
    assert conn.execute(
        "SELECT organization_id, sync_endpoint FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone() == (org, "invoices")


def test_a_role_without_qbo_sync_rights_is_told_what_to_grant(pg_server, db_dsn):
    name = "cli_nobody_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db_dsn, autocommit=True) as su:
        su.execute(f"CREATE ROLE {name} LOGIN")
    try:
        dsn = db_dsn.replace("postgres@", f"{name}@")
        for command in (
            ["status"],
            ["sync", "--org", "9af4c081-7379-4e41-8dfb-924e2518e3c6", "--entities", "items"],
        ):
            result = run_qbo_sync(*command, "--dsn", dsn)
            assert_one_line_error(
                result, EXIT_ERROR, f"role {name} may not use qbo-sync", "GRANT qbo_sync_app"
            )
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as su:
            su.execute(f"DROP ROLE {name}")


def test_sync_queues_in_dependency_order_and_bad_arguments_say_what_to_use(db_dsn, conn, org):
    result = run_qbo_sync(
        "sync",
        "--org",
        str(org),
        "--entities",
        "payments,customers",
        "--direction",
        "pull",
        "--dsn",
        db_dsn,
    )
    assert result.returncode == 0, result.stderr
    queued = [line.split("\t") for line in result.stdout.splitlines()]
    assert [entity for entity, _ in queued] == ["customers", "payments"]
    assert conn.execute(
        "SELECT array_agg(sync_endpoint ORDER BY created_at) FROM qbo_sync_queue"
        " WHERE id = ANY (%s::uuid[])",
        ([job for _, job in queued],),
    ).fetchone() == (["customers", "payments"],)
    result = run_qbo_sync("sync", "--org", str(org), "--entities", "vendors", "--dsn", db_dsn)
    # argparse's conventional usage error: the usage line, then the error
    assert result.returncode == EXIT_USAGE and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("unknown entity 'vendors': use customers, items, invoices, payments or all")
    )
    result = run_qbo_sync("sync", "--org", "Nobody Inc", "--dsn", db_dsn)
    assert_one_line_error(result, EXIT_ERROR, "no organization is named 'Nobody Inc'", "--create")


def test_status_lists_connected_organizations(db_dsn, org, capsys):
    assert main(["status", "--dsn", db_dsn]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("organization "))
    assert "company" in header and "access token left" in header
    assert any(line.startswith("Acme ") and " valid " in line for line in out.splitlines())


def test_the_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("qbo-sync ")


@pytest.mark.parametrize("command", ["listen", "dashboard"])
def test_a_server_whose_port_is_in_use_says_so_in_one_line(db_dsn, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_qbo_sync(
            command,
            "--dsn",
            db_dsn,
            "--port",
            str(port),
            env={"QBO_WEBHOOK_VERIFIER_TOKEN": "a-verifier-token"},
        )
    assert_one_line_error(
        result,
        EXIT_UNAVAILABLE,
        f"qbo-sync {command}: error while attempting to bind on address ('127.0.0.1', {port})",
        "address already in use; stop what uses it or pick another with --port",
    )
    # nothing claimed it was serving: that line comes once the port is bound
    assert "listening on" not in result.stdout and "serving" not in result.stdout


def test_ctrl_c_while_following_a_sync_is_one_line_and_the_jobs_stay_queued(db_dsn, conn, org):
    import os
    import signal
    import time

    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbo_sync.cli",
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
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if k != "QBO_SYNC_DSN"},
    )
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and not conn.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE organization_id = %s", (org,)
        ).fetchone()[0]
    ):
        time.sleep(0.1)
    time.sleep(1)  # following it now (no worker runs in this database: it stays pending)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130 and "Traceback" not in out + err, err
    assert err.strip().splitlines() == [
        "qbo-sync sync: interrupted; jobs already queued go on in the database"
        " (qbo-sync status shows them)"
    ]
    assert conn.execute(
        "SELECT status FROM qbo_sync_queue WHERE organization_id = %s", (org,)
    ).fetchall() == [("pending",)]

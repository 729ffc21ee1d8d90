"""The qbo-sync command against the test database."""

from __future__ import annotations

import subprocess
import sys

from qbo_sync.cli import main


def test_install_reports_and_is_idempotent(db_dsn, capsys):
    assert main(["install", "--dsn", db_dsn]) == 0
    out = capsys.readouterr().out
    assert "migrations: all 3 already applied" in out and "nothing new" in out


def test_install_into_an_unreachable_database_fails_clearly(capsys):
    assert main(["install", "--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_sync_queues_and_bad_arguments_get_the_hint(db_dsn, conn, org, capsys):
    assert main(["sync", str(org), "customers", "--direction", "pull", "--dsn", db_dsn]) == 0
    job_id = capsys.readouterr().out.strip()
    assert conn.execute(
        "SELECT sync_endpoint FROM qbo_sync_queue WHERE id = %s", (job_id,)
    ).fetchone() == ("customers",)
    assert main(["sync", str(org), "vendors", "--dsn", db_dsn]) == 1
    err = capsys.readouterr().err
    assert "unknown entity 'vendors'" in err and "hint: entity must be one of" in err


def test_status_lists_connected_organizations(db_dsn, org, capsys):
    assert main(["status", "--dsn", db_dsn]) == 0
    out = capsys.readouterr().out
    assert "organization_name | realm_id" in out and "Acme" in out and "valid" in out


def test_the_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("qbo-sync ")

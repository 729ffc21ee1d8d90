"""The usual mistakes with the `qbo-sync` command, run as real processes without a database:
each ends with one line on stderr saying what is wrong and what to do, and its exit code."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from qbo_sync.cli import EXIT_UNAVAILABLE, EXIT_USAGE
from qbo_sync.pgserver import free_port
from tests.clitools import assert_one_line_error, run_qbo_sync

ORG = "9af4c081-7379-4e41-8dfb-924e2518e3c6"


def test_help_lists_the_exit_codes():
    result = run_qbo_sync("--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    for line in ("0  done", "1  the operation failed", "2  usage", "3  not running"):
        assert line in result.stdout


@pytest.mark.parametrize(
    "command", [["status"], ["sync", "--org", ORG, "--entities", "invoices"], ["install"]]
)
def test_a_database_that_is_down_says_so_and_what_to_do(command):
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/app"
    result = run_qbo_sync(*command, "--dsn", dsn)
    assert_one_line_error(
        result,
        EXIT_UNAVAILABLE,
        f"qbo-sync {command[0]}: cannot connect to database app on 127.0.0.1:",
        "Connection refused",
        "qbo-sync db start",
    )


def test_the_password_of_the_dsn_is_never_printed():
    dsn = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/app"
    result = run_qbo_sync("status", "--dsn", dsn)
    assert result.returncode == EXIT_UNAVAILABLE and "s3cret-pw" not in result.stderr


@pytest.mark.parametrize("command", [["status"], ["install"]])
def test_a_malformed_dsn_is_a_usage_error(command):
    result = run_qbo_sync(*command, "--dsn", "host=127.0.0.1 port")
    assert_one_line_error(result, EXIT_USAGE, "invalid connection string", "postgresql://")


def test_an_invalid_local_port_is_a_usage_error():
    result = run_qbo_sync("db", "status", env={"QBO_SYNC_DB_PORT": "99999"})
    assert_one_line_error(result, EXIT_USAGE, "QBO_SYNC_DB_PORT='99999' is not a port number")


def test_simulator_port_out_of_range():
    result = run_qbo_sync("simulator", "--port", "99999")
    assert_one_line_error(
        result, EXIT_USAGE, "qbo-sync simulator: --port 99999 is not a port number (1-65535)"
    )


def test_simulator_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_qbo_sync("simulator", "--port", str(port))
    assert_one_line_error(
        result,
        EXIT_UNAVAILABLE,
        f"cannot listen on 127.0.0.1:{port}: port {port} is in use",
        "pick another with --port",
    )


def test_simulator_missing_config_file(tmp_path: Path):
    missing = tmp_path / "sim.json"
    result = run_qbo_sync("simulator", "--config", str(missing))
    assert_one_line_error(
        result, EXIT_USAGE, f"cannot read --config {missing}: No such file or directory"
    )


def test_simulator_unknown_setting(tmp_path: Path):
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"latency_ms": 5, "no_such_setting": 1}))
    result = run_qbo_sync("simulator", "--config", str(config))
    assert_one_line_error(
        result, EXIT_USAGE, str(config), "unknown", "no_such_setting", "docs/simulator.md"
    )


def test_simulator_config_that_is_not_json(tmp_path: Path):
    config = tmp_path / "sim.json"
    config.write_text("{latency_ms: 5")
    result = run_qbo_sync("simulator", "--config", str(config))
    assert_one_line_error(result, EXIT_USAGE, str(config), "docs/simulator.md")

"""The command line: ``python -m simulator`` with flags and a JSON settings file, as a real
subprocess on a free port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from simulator.server import build_parser, config_from_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flags_override_config_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "sim.json"
    cfg_file.write_text(
        json.dumps({"latency_ms": 5, "webhook_format": "cloudevents", "per_minute": 100})
    )
    args = build_parser().parse_args(
        [
            "--config",
            str(cfg_file),
            "--latency-ms",
            "0",
            "--webhook-url",
            "http://a/h",
            "--webhook-url",
            "http://b/h",
            "--no-limits",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.latency_ms == 0 and cfg.webhook_format == "cloudevents" and cfg.per_minute == 100
    assert cfg.webhook_urls == ["http://a/h", "http://b/h"] and cfg.limits_enabled is False


def test_python_m_simulator_serves(tmp_path: Path) -> None:
    port = free_port()
    cfg_file = tmp_path / "sim.json"
    cfg_file.write_text(json.dumps({"default_company_name": "CLI Co"}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--config",
            str(cfg_file),
            "--customers",
            "7",
            "--items",
            "3",
            "--realm-id",
            "31337",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                resp = requests.get(base + "/_sim/realms/31337", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("simulator did not start")
        info = resp.json()
        assert info["company_name"] == "CLI Co" and info["counts"]["Customer"] == 7
        doc = requests.get(base + "/.well-known/openid-configuration", timeout=5).json()
        assert doc["token_endpoint"] == base + "/oauth2/v1/tokens/bearer"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert b"sim-client-secret" not in out and b"eyJ" not in out  # no secrets in the log


def test_the_verifier_token_can_come_from_the_environment(monkeypatch) -> None:
    """So that it stays out of the process list (and a token that starts with "-" is not read
    as an option); the flag, when given, wins."""
    monkeypatch.setenv("QBO_WEBHOOK_VERIFIER_TOKEN", "-starts-with-a-dash")
    assert config_from_args(build_parser().parse_args([])).verifier_token == "-starts-with-a-dash"
    flagged = build_parser().parse_args(["--verifier-token", "from-the-flag"])
    assert config_from_args(flagged).verifier_token == "from-the-flag"
    monkeypatch.delenv("QBO_WEBHOOK_VERIFIER_TOKEN")
    assert config_from_args(build_parser().parse_args([])).verifier_token == "sim-verifier-token"

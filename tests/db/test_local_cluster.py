"""`qbo-sync db` and the commands after it use the port the local cluster was created with.

A real cluster in a temporary directory stands in for `.local/pg` (as root its server runs as
`postgres`): created with QBO_SYNC_DB_PORT set, then used with the variable unset or different.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from qbo_sync import pgserver
from qbo_sync.cli import EXIT_UNAVAILABLE, main
from qbo_sync.pgserver import Cluster, free_port


@pytest.fixture
def local_dir(monkeypatch):
    base = Path(tempfile.mkdtemp(prefix="qbo-sync-local-"))
    monkeypatch.setattr(pgserver, "local_cluster_dir", lambda: base)
    monkeypatch.delenv("QBO_SYNC_DSN", raising=False)
    yield base
    Cluster(base_dir=base, port=0).destroy()


@pytest.mark.slow
def test_the_local_cluster_keeps_its_port(local_dir, monkeypatch, capsys):
    created_with = free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{created_with}/qbo_sync"
    monkeypatch.setenv("QBO_SYNC_DB_PORT", str(created_with))
    assert main(["db", "start"]) == 0
    assert capsys.readouterr().out == f"running: {dsn}\n"

    monkeypatch.delenv("QBO_SYNC_DB_PORT")
    assert main(["db", "status"]) == 0
    assert capsys.readouterr().out == f"running: {dsn}\n"
    assert main(["install"]) == 0  # the default DSN is the local cluster's, on its own port
    assert "installed (before: nothing)" in capsys.readouterr().out
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith("qbo-sync ")

    other = free_port()
    monkeypatch.setenv("QBO_SYNC_DB_PORT", str(other))
    assert main(["db", "status"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"running: {dsn}\n"
    assert captured.err.startswith(f"warning: QBO_SYNC_DB_PORT={other} is ignored")
    assert f"was created with port {created_with} and keeps it" in captured.err
    assert main(["install"]) == 0 and "nothing new" in capsys.readouterr().out

    assert main(["db", "stop"]) == 0
    assert main(["db", "status"]) == EXIT_UNAVAILABLE
    assert capsys.readouterr().out.endswith("stopped\n")
    assert main(["db", "start"]) == 0  # restarts on its own port, not the variable's
    assert capsys.readouterr().out == f"running: {dsn}\n"

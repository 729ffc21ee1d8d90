"""The local cluster's port is the one it was created with, read back from its configuration;
QBO_SYNC_DB_PORT only picks the port of a new cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbo_sync import pgserver
from qbo_sync.pgserver import Cluster, local_cluster, requested_local_port


def fake_cluster(base: Path, conf: str, auto_conf: str | None = None) -> Cluster:
    """The files of an initialised cluster that `stored_port` and `initialised` look at."""
    data = base / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    (data / "postgresql.conf").write_text(conf)
    if auto_conf is not None:
        (data / "postgresql.auto.conf").write_text(auto_conf)
    return Cluster(base_dir=base, port=1)


def test_the_port_comes_from_postgresql_conf(tmp_path):
    conf = "#port = 5432\t\t# (change requires restart)\n\n# qbo-sync\nport = '56210'\n"
    assert fake_cluster(tmp_path, conf).stored_port() == 56210


def test_alter_system_wins(tmp_path):
    cluster = fake_cluster(tmp_path, "port = '56210'\n", "# ALTER SYSTEM\nport = '56300'\n")
    assert cluster.stored_port() == 56300


def test_no_cluster_no_port(tmp_path):
    assert Cluster(base_dir=tmp_path, port=1).stored_port() is None


def test_requested_port(monkeypatch):
    monkeypatch.delenv("QBO_SYNC_DB_PORT", raising=False)
    assert requested_local_port() == 54315
    monkeypatch.setenv("QBO_SYNC_DB_PORT", "56210")
    assert requested_local_port() == 56210
    for wrong in ("0", "65536", "port"):
        monkeypatch.setenv("QBO_SYNC_DB_PORT", wrong)
        with pytest.raises(ValueError, match="is not a port number"):
            requested_local_port()


def test_an_existing_cluster_keeps_its_port_whatever_the_variable_says(tmp_path, monkeypatch):
    monkeypatch.setattr(pgserver, "local_cluster_dir", lambda: tmp_path)
    monkeypatch.setenv("QBO_SYNC_DB_PORT", "56999")
    assert local_cluster().port == 56999  # not created yet: the variable picks it
    fake_cluster(tmp_path, "port = '56210'\n")
    assert local_cluster().port == 56210
    assert local_cluster().dsn() == "postgresql://postgres@127.0.0.1:56210/qbo_sync"

"""The in-database Python's loader: a long-lived backend picks up a changed loader too."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from qbo_sync.install import SQL_DIR, install


@pytest.fixture
def fresh_db_dsn(pg_server) -> Iterator[str]:
    name = "loader_" + uuid.uuid4().hex[:8]
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


def test_a_changed_loader_reaches_a_long_lived_backend(fresh_db_dsn, tmp_path):
    """The finding: the loader was kept in GD and replaced only when GD had none, so an install
    that changed the loader itself never reached a backend that had loaded once."""
    install(fresh_db_dsn)
    sql_copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_copy)
    python_file = sql_copy / "idempotent" / "020_python.sql"
    text = python_file.read_text()
    marker = 'GD["qbo_sync_load"] = load\n'
    assert text.count(marker) == 1
    python_file.write_text(text.replace(marker, marker + 'GD["loader_edition"] = "second"\n'))
    with psycopg.connect(fresh_db_dsn, autocommit=True) as backend:
        backend.execute(
            "CREATE FUNCTION pg_temp.loader_edition() RETURNS text LANGUAGE plpython3u"
            " AS 'return GD.get(\"loader_edition\")'"
        )
        assert backend.execute("SELECT qbo_sync.secret('QBO_CLIENT_ID') IS NOT NULL").fetchone()[0]
        assert backend.execute("SELECT pg_temp.loader_edition()").fetchone()[0] is None
        install(fresh_db_dsn, sql_dir=sql_copy)
        assert backend.execute("SELECT qbo_sync.secret('QBO_CLIENT_ID') IS NOT NULL").fetchone()[0]
        assert backend.execute("SELECT pg_temp.loader_edition()").fetchone()[0] == "second"

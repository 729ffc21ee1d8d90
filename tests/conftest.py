"""Shared fixtures: a real PostgreSQL 15 cluster (pg_cron preloaded, PL/Python, pgTAP) started by
pytest-postgresql's executor, with qbo-sync installed.

Two databases: `qbo_test` for most tests (no cron jobs, so nothing claims jobs behind a test's
back) and `qbo_cron`, the cluster's cron.database_name, for the tests of the pg_cron jobs.
When the tests run as root the server runs as `postgres` (through bin/pg_ctl).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.executors import PostgreSQLExecutor

from qbo_sync.install import install
from qbo_sync.pgserver import (
    PG_CTL,
    free_port,
    give_to_server_user,
    server_settings,
    write_secrets_file,
)

TEST_DB = "qbo_test"
CRON_DB = "qbo_cron"
TOKEN_KEY = "test-token-key-" + uuid.uuid4().hex

APP_TABLES = (
    "organizations",
    "qbo_webhook_log",
    "qbo_sync_queue",
    "qbo_sync_history",
    "qbo_webhook_processed",
    "qbo_oauth_state",
    "qbo_sync_cursor",
    "qbo_sync_conflict",
)


@dataclass
class PgServer:
    port: int
    base_dir: Path
    secrets_file: Path

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_until_accepting(server: PgServer, seconds: float = 120) -> None:
    """The executor returns once the port answers; on a loaded machine the server may still be
    "starting up" then, and refuse the first logins."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    base = Path(tempfile.mkdtemp(prefix="qbo-sync-test-"))
    give_to_server_user(base, 0o755)
    secrets_file = base / "secrets.env"
    write_secrets_file(
        secrets_file,
        {
            "QBO_SYNC_TOKEN_KEY": TOKEN_KEY,
            "QBO_WEBHOOK_VERIFIER_TOKEN": "test-verifier-token",
            "QBO_CLIENT_ID": "test-client-id",
            "QBO_CLIENT_SECRET": "test-client-secret",
        },
    )
    port = free_port()
    settings = server_settings(port, base, CRON_DB, secrets_file)
    settings.pop("port")
    settings.pop("unix_socket_directories")
    settings.update({"full_page_writes": "off", "synchronous_commit": "off"})
    options = " ".join(f"-c {key}={value}" for key, value in settings.items())
    executor = PostgreSQLExecutor(
        executable=str(PG_CTL),
        host="127.0.0.1",
        port=port,
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname=TEST_DB,
        postgres_options=options,
        timeout=120,
    )
    executor.start()
    server = PgServer(port=port, base_dir=base, secrets_file=secrets_file)
    wait_until_accepting(server)
    try:
        yield server
    finally:
        executor.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def db_dsn(pg_server: PgServer) -> str:
    """`qbo_test` with qbo-sync installed (pgTAP in its own schema `tap`)."""
    dsn = pg_server.create_database(TEST_DB)
    install(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS tap")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap SCHEMA tap")
    return dsn


@pytest.fixture(scope="session")
def cron_dsn(pg_server: PgServer) -> str:
    """`qbo_cron`, the cluster's pg_cron database, with qbo-sync and its nine jobs installed."""
    dsn = pg_server.create_database(CRON_DB)
    install(dsn)
    return dsn


def truncate_all(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL("TRUNCATE {} CASCADE").format(
            sql.SQL(", ").join(sql.Identifier("public", t) for t in APP_TABLES)
        )
    )
    conn.execute(
        "TRUNCATE qbo_sync.local_deletion, qbo_sync.pacer, qbo_sync.organization_lock,"
        " qbo_sync.pull_pass_seen"
    )


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to `qbo_test`; every table is emptied after the test."""
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection
        connection.execute("RESET ALL")
        truncate_all(connection)


@pytest.fixture
def connect(db_dsn: str) -> Iterator:
    """Open more connections to `qbo_test` (closed after the test)."""
    opened: list[psycopg.Connection] = []

    def _connect(autocommit: bool = True, user: str | None = None) -> psycopg.Connection:
        connection = psycopg.connect(db_dsn, autocommit=autocommit)
        if user:
            connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(user)))
        opened.append(connection)
        return connection

    yield _connect
    for connection in opened:
        connection.close()


@pytest.fixture
def org(conn: psycopg.Connection) -> uuid.UUID:
    """An organization with an active QBO connection."""
    return make_org(conn)


def make_org(conn: psycopg.Connection, name: str = "Acme", active: bool = True) -> uuid.UUID:
    org_id = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, %s)", (org_id, name))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, is_active, inactive_reason,
                                       qbo_token_expires_at)
           VALUES (%s, %s, %s, %s, now() + interval '1 hour')""",
        (org_id, str(uuid.uuid4().int)[:18], active, None if active else "invalid_grant"),
    )
    return org_id

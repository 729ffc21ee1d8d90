"""Every ```sql block of README.md and docs/operations.md runs, statement by statement, against a
freshly installed database with an organization connected to the simulator and pulled.

- The guide's example organization id (9af4c081-…) stands for that organization, except in a
  block that creates the example organization itself (it runs as written).
- A block naming pg_cron (`cron.…`, `qbo_cron_job_runs`, `schedule_workers`) runs in the pg_cron
  database, where those exist; the others in the test database.
- A statement with a comment `-- returns: X` must return X as its first value.
- A block whose first line is `-- not run by tests: <reason>` is skipped; fewer than a quarter of
  the blocks may be.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db.qbo_jobs import LoggedServer, connect_realm

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "operations.md")
EXAMPLE_ORG = "9af4c081-7379-4e41-8dfb-924e2518e3c6"
NOT_RUN = "-- not run by tests:"
CLAIM = re.compile(r"--\s*returns:\s*(.+?)\s*$", re.MULTILINE)
CRON_WORDS = ("cron.", "qbo_cron_job_runs", "schedule_workers")
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    text: str

    @property
    def not_run(self) -> bool:
        return self.text.lstrip().startswith(NOT_RUN)

    @property
    def needs_cron(self) -> bool:
        return any(word in self.text for word in CRON_WORDS)

    @property
    def creates_example_org(self) -> bool:
        return "INSERT INTO organizations" in self.text


def sql_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [
        Block(path.name, text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in SQL_BLOCK.finditer(text)
    ]


def statements(text: str) -> list[str]:
    """Split on `;` outside quotes, dollar quotes and comments; a `--` comment on the line of
    the `;` belongs to the statement it ends, comment lines before a statement to that statement.
    What is only comments is dropped."""
    found: list[str] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        if text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif text[i] in "'\"":
            i = text.index(text[i], i + 1) + 1
        elif text[i] == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", text[i:])):
            i = text.index(tag.group(0), i + len(tag.group(0))) + len(tag.group(0))
        elif text[i] == ";":
            end = text.find("\n", i)
            end = n if end == -1 else end
            if text[i + 1 : end].strip().startswith("--"):
                i = end
            else:
                i += 1
            found.append(text[start:i])
            start = i
        else:
            i += 1
    found.append(text[start:])
    code = re.compile(r"^\s*(--[^\n]*)?$")
    return [s.strip() for s in found if not all(code.match(line) for line in s.splitlines())]


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def test_the_splitter_keeps_quotes_and_trailing_comments():
    text = (
        "SELECT 'a;b', $x$ c; d $x$;  -- returns: 1\n"
        "-- only a comment;\n"
        'SELECT "e;f" FROM t /* g; */ WHERE true;\n'
    )
    assert statements(text) == [
        "SELECT 'a;b', $x$ c; d $x$;  -- returns: 1",
        '-- only a comment;\nSELECT "e;f" FROM t /* g; */ WHERE true;',
    ]
    assert statements("SELECT 1;\n-- the end\n") == ["SELECT 1;"]


@pytest.fixture
def sim() -> Iterator[LoggedServer]:
    server = LoggedServer(seed_customers=6, seed_items=3, seed_invoices=5, seed_payments=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pulled_org(conn: psycopg.Connection, sim: LoggedServer) -> uuid.UUID:
    """An organization connected to the simulator, every entity pulled."""
    org = connect_realm(conn, sim, name="Docs Bakery").org
    conn.execute("SELECT qbo_sync_orchestrator(%s, 'pull')", (org,))
    conn.execute("CALL qbo_sync_worker(120, NULL, true)")
    assert conn.execute(
        "SELECT count(*) FROM qbo_sync_queue WHERE status <> 'completed'"
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM customer_profile WHERE organization_id = %s AND qbo_id = '1'",
        (org,),
    ).fetchone() == (1,)
    return org


SETTINGS = "SELECT key, value FROM qbo_sync.settings ORDER BY key"


def put_back_settings(conn: psycopg.Connection, settings: list[tuple[str, str]]) -> None:
    for key, value in settings:
        conn.execute("UPDATE qbo_sync.settings SET value = %s WHERE key = %s", (value, key))
    assert conn.execute(SETTINGS).fetchall() == settings


@pytest.fixture
def put_back(db_dsn: str, cron_dsn: str) -> Iterator[None]:
    """What the documented statements change beyond the rows the `conn` fixture empties is put
    back: both databases' settings, the pg_cron jobs and whether each is active, and the login
    roles they create."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        settings = conn.execute(SETTINGS).fetchall()
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        cron_settings = conn.execute(SETTINGS).fetchall()
        active = conn.execute("SELECT jobname, active FROM cron.job").fetchall()
        roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    yield
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        put_back_settings(conn, settings)
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        put_back_settings(conn, cron_settings)
        conn.execute("SELECT qbo_sync.schedule_workers()")
        for name, was_active in active:
            conn.execute(
                "SELECT cron.alter_job(jobid, active := %s) FROM cron.job WHERE jobname = %s",
                (was_active, name),
            )
        assert sorted(conn.execute("SELECT jobname, active FROM cron.job").fetchall()) == sorted(
            active
        )
        for (role,) in conn.execute("SELECT rolname FROM pg_roles").fetchall():
            if role not in roles:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_every_sql_block_of_the_docs_runs(db_dsn, cron_dsn, pulled_org, put_back):
    blocks = [block for document in DOCUMENTS for block in sql_blocks(document)]
    assert len([b for b in blocks if b.document == "README.md"]) >= 5
    assert len([b for b in blocks if b.document == "operations.md"]) >= 3
    skipped = [b for b in blocks if b.not_run]
    assert len(skipped) < len(blocks) / 4, [f"{b.document}:{b.line}" for b in skipped]

    ran = claims = 0
    for block in blocks:
        if block.not_run:
            continue
        text = block.text
        if not block.creates_example_org:
            text = text.replace(EXAMPLE_ORG, str(pulled_org))
        with psycopg.connect(cron_dsn if block.needs_cron else db_dsn, autocommit=True) as conn:
            for statement in statements(text):
                where = f"{block.document} block at line {block.line}: {statement}"
                try:
                    cursor = conn.execute(statement)
                except psycopg.Error as exc:
                    pytest.fail(f"{where}\nfailed: {exc}")
                ran += 1
                claim = CLAIM.search(statement)
                if claim:
                    row = cursor.fetchone()
                    assert row is not None, f"{where}\nreturned no row"
                    assert shown(row[0]) == claim.group(1), where
                    claims += 1
    assert ran >= 40 and claims >= 4, (ran, claims)

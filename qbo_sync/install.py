"""Install or upgrade qbo-sync in a database, in one transaction.

Order: ordered migrations from `sql/incremental` (applied once each, recorded with a checksum; an
edited already-applied migration is refused), then every file of `sql/idempotent` (functions,
views, grants, cron jobs; re-applied each time), then the in-database Python package
(`plpython/qbo_sync_db`) stored in `qbo_sync.python_module`. Any failure rolls everything back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from qbo_sync import __version__

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
PYTHON_DIR = PROJECT_ROOT / "plpython"
PYTHON_PACKAGE = "qbo_sync_db"

#: Serializes concurrent installs into the same database.
INSTALL_LOCK_KEY = 0x71B0_5C1C

BOOTSTRAP_SQL = """
CREATE SCHEMA IF NOT EXISTS qbo_sync;
CREATE TABLE IF NOT EXISTS qbo_sync.migration (
    name               text PRIMARY KEY,
    checksum           text NOT NULL,
    applied_at         timestamptz NOT NULL DEFAULT now(),
    applied_by_version text NOT NULL
);
CREATE TABLE IF NOT EXISTS qbo_sync.python_module (
    name       text PRIMARY KEY,
    source     text NOT NULL,
    is_package boolean NOT NULL,
    version    text NOT NULL
);
CREATE TABLE IF NOT EXISTS qbo_sync.installation (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version      text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    upgraded_at  timestamptz NOT NULL DEFAULT now()
);
"""


class InstallError(Exception):
    """The installation was refused or failed; the database is unchanged."""


class EditedMigrationError(InstallError):
    """An already-applied migration file no longer matches its recorded checksum."""


@dataclass
class InstallReport:
    version: str
    previous_version: str | None
    migrations_applied: list[str] = field(default_factory=list)
    migrations_skipped: list[str] = field(default_factory=list)
    idempotent_files: list[str] = field(default_factory=list)
    python_modules: list[str] = field(default_factory=list)
    python_changed: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return (
            bool(self.migrations_applied)
            or self.python_changed
            or (self.previous_version != self.version)
        )

    def lines(self) -> list[str]:
        before = self.previous_version or "nothing"
        out = [f"qbo-sync {self.version} installed (before: {before})"]
        if self.migrations_applied:
            out.append("migrations applied: " + ", ".join(self.migrations_applied))
        else:
            out.append(f"migrations: all {len(self.migrations_skipped)} already applied")
        out.append(f"re-applied {len(self.idempotent_files)} idempotent SQL files")
        state = "updated" if self.python_changed else "unchanged"
        out.append(f"in-database Python: {len(self.python_modules)} modules, {state}")
        out.extend(f"notice: {notice}" for notice in self.notices)
        if not self.changed:
            out.append("nothing new: the database already had this version")
        return out


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def migration_files(sql_dir: Path) -> list[Path]:
    return sorted((sql_dir / "incremental").glob("*.sql"))


def idempotent_files(sql_dir: Path) -> list[Path]:
    return sorted((sql_dir / "idempotent").glob("*.sql"))


def python_modules(python_dir: Path) -> list[tuple[str, str, bool]]:
    """(dotted name, source, is_package) for every module of the in-database package."""
    package_dir = python_dir / PYTHON_PACKAGE
    modules = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(python_dir).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules.append((".".join(parts), path.read_text(encoding="utf-8"), is_package))
    return modules


def install(
    dsn: str,
    *,
    sql_dir: Path = SQL_DIR,
    python_dir: Path = PYTHON_DIR,
    version: str = __version__,
    migration_limit: int | None = None,
    migrations_only: bool = False,
) -> InstallReport:
    """Install or upgrade qbo-sync in the database at `dsn`; returns what was done.

    `migration_limit` and `migrations_only` apply only the first N migrations and nothing else:
    the state an upgrade meets in a database whose schema is older (used by the tests).
    """
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        try:
            report = _install(conn, sql_dir, python_dir, version, migration_limit, migrations_only)
        except psycopg.Error as exc:
            conn.rollback()
            raise InstallError(_describe(exc)) from exc
        except InstallError:
            conn.rollback()
            raise
        conn.commit()
    report.notices = [n for n in notices if n.startswith("qbo-sync")]
    return report


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = f"installation failed, nothing was changed: {diag.message_primary or exc}"
    if diag.context:
        text += f"\ncontext: {diag.context.strip()}"
    return text


def _install(
    conn: psycopg.Connection,
    sql_dir: Path,
    python_dir: Path,
    version: str,
    migration_limit: int | None,
    migrations_only: bool = False,
) -> InstallReport:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK_KEY,))
    conn.execute("SET LOCAL client_min_messages = notice")
    conn.execute(BOOTSTRAP_SQL)
    row = conn.execute("SELECT version FROM qbo_sync.installation").fetchone()
    report = InstallReport(version=version, previous_version=row[0] if row else None)

    applied = dict(conn.execute("SELECT name, checksum FROM qbo_sync.migration").fetchall())
    migrations = migration_files(sql_dir)
    if migration_limit is not None:
        migrations = migrations[:migration_limit]
    for path in migrations:
        text = path.read_text(encoding="utf-8")
        name = path.stem
        digest = checksum(text)
        if name in applied:
            if applied[name] != digest:
                raise EditedMigrationError(
                    f"migration {path.name} was edited after it was applied "
                    f"(recorded checksum {applied[name][:12]}, file {digest[:12]}); "
                    "applied migrations are frozen: put the change in a new migration"
                )
            report.migrations_skipped.append(name)
            continue
        conn.execute(text)
        conn.execute(
            "INSERT INTO qbo_sync.migration (name, checksum, applied_by_version)"
            " VALUES (%s, %s, %s)",
            (name, digest, version),
        )
        report.migrations_applied.append(name)
    if migrations_only:
        return report

    conn.execute(
        """INSERT INTO qbo_sync.installation (version) VALUES (%s)
           ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version,
               upgraded_at = CASE WHEN qbo_sync.installation.version = EXCLUDED.version
                                  THEN qbo_sync.installation.upgraded_at ELSE now() END""",
        (version,),
    )

    for path in idempotent_files(sql_dir):
        conn.execute(path.read_text(encoding="utf-8"))
        report.idempotent_files.append(path.name)

    modules = python_modules(python_dir)
    stored = {
        name: (source, is_package, stored_version)
        for name, source, is_package, stored_version in conn.execute(
            "SELECT name, source, is_package, version FROM qbo_sync.python_module"
        ).fetchall()
    }
    wanted = {name: (source, is_package, version) for name, source, is_package in modules}
    if stored != wanted:
        conn.execute("DELETE FROM qbo_sync.python_module")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO qbo_sync.python_module (name, source, is_package, version)"
                " VALUES (%s, %s, %s, %s)",
                [(name, source, is_package, version) for name, source, is_package in modules],
            )
        report.python_changed = True
    report.python_modules = [name for name, _, _ in modules]
    return report

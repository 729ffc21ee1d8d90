"""Install or upgrade qbo-sync in a database, in one transaction.

Order: ordered migrations from `sql/incremental` (applied once each, recorded with a checksum; an
edited already-applied migration is refused), then every file of `sql/idempotent` (functions,
views, grants, cron jobs; re-applied each time), then the in-database Python package
(`plpython/qbo_sync_db`) stored in `qbo_sync.python_module`. Any failure rolls everything back.

SQL files run one statement at a time, so a failure names its file, line and table.

The transaction first pins its search path to `pg_catalog, pg_temp`: the installer runs as a
superuser, and a function another role planted in public (its owner can, on PostgreSQL 15: the
database owner) would otherwise be picked over a built-in that needs a cast, such as
`unnest(anyarray)`, and run as that superuser. Then it takes the install lock, bounds every lock
wait with `lock_timeout` (a session idle in a transaction would otherwise stall the installation
and everything queued behind it), checks the connecting role's privileges, and collects the
warnings about roles that own or can create in the schemas and tables qbo-sync uses
(`qbo_sync.privileges`), all before anything changes.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import errors, sql

from qbo_sync import __version__
from qbo_sync.lockwait import describe_lock_timeout
from qbo_sync.privileges import PRIVILEGE_ADVICE, missing_privileges, open_schema_warnings
from qbo_sync.sqlfile import Statement, sql_statements

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
PYTHON_DIR = PROJECT_ROOT / "plpython"
PYTHON_PACKAGE = "qbo_sync_db"

#: Serializes concurrent installs into the same database.
INSTALL_LOCK_KEY = 0x71B0_5C1C

#: The installation's search path, for the whole transaction: nothing another role can create in.
#: Every name of the installer's SQL outside pg_catalog is qualified.
PIN_SEARCH_PATH = "SET LOCAL search_path = pg_catalog, pg_temp"

#: How long, in seconds, a statement of the installation waits for a lock before it gives up.
DEFAULT_LOCK_TIMEOUT = 10.0
#: how many times an installation that lost a deadlock to a running worker is started
DEADLOCK_ATTEMPTS = 3

#: Extensions created, qualified, before migration 001 runs its unqualified CREATE EXTENSION
#: (which, under the pinned search path, would put a relocatable extension in pg_catalog), when
#: the database has none yet: name, schema. plpython3u needs no entry: its control file fixes its
#: schema (pg_catalog) whatever the search path.
EXTENSIONS_FIRST = {"pgcrypto": "public"}

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
    """The installation was refused or failed; the database is unchanged.

    `warnings` are those of the check made before anything ran (`privileges.open_schema_warnings`),
    when it was reached.
    """

    def __init__(self, message: str, warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.warnings = warnings or []


class EditedMigrationError(InstallError):
    """An already-applied migration file no longer matches its recorded checksum."""


class PrivilegeError(InstallError):
    """The connecting role may not create what qbo-sync needs (`privileges.missing_privileges`)."""


class StatementFailed(Exception):
    """A statement of an SQL file failed; carries where, for the message."""

    def __init__(self, path: Path, statement: Statement, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.path = path
        self.statement = statement
        self.error = error


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
    #: things to fix that did not stop the installation (roles that own or can create in the
    #: schemas qbo-sync uses, or own its application tables), found before anything ran
    warnings: list[str] = field(default_factory=list)

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


def run_sql_file(conn: psycopg.Connection, path: Path, text: str) -> None:
    """Execute the statements of `text`, read from `path`, in order; StatementFailed names the
    failing one."""
    for statement in sql_statements(text):
        try:
            conn.execute(statement.text)
        except psycopg.Error as exc:
            raise StatementFailed(path, statement, exc) from exc


def install(
    dsn: str,
    *,
    sql_dir: Path = SQL_DIR,
    python_dir: Path = PYTHON_DIR,
    version: str = __version__,
    migration_limit: int | None = None,
    migrations_only: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> InstallReport:
    """Install or upgrade qbo-sync in the database at `dsn`; returns what was done.

    `lock_timeout` (seconds; 0 waits without limit) bounds each lock wait: past it the
    installation stops, changes nothing, and names the session holding the lock.
    `migration_limit` and `migrations_only` apply only the first N migrations and nothing else:
    the state an upgrade meets in a database whose schema is older (used by the tests).
    """
    if lock_timeout < 0:
        raise ValueError(f"lock_timeout must be 0 (no limit) or more seconds, not {lock_timeout}")
    attempt = 1
    while True:
        try:
            return _install_once(
                dsn, sql_dir, python_dir, version, migration_limit, migrations_only, lock_timeout
            )
        except InstallError as exc:
            # An upgrade takes its locks in the files' order, a running worker in its own: the
            # server breaks such a cycle by failing one side, and when that is the installation
            # nothing was changed and the worker has gone on, so it starts again.
            lost_deadlock = isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)
            if not lost_deadlock or attempt == DEADLOCK_ATTEMPTS:
                raise
        time.sleep(0.2 * attempt)
        attempt += 1


def _install_once(
    dsn: str,
    sql_dir: Path,
    python_dir: Path,
    version: str,
    migration_limit: int | None,
    migrations_only: bool,
    lock_timeout: float,
) -> InstallReport:
    notices: list[str] = []
    warnings: list[str] = []
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        try:
            warnings = begin(conn, lock_timeout)
            report = _install(conn, sql_dir, python_dir, version, migration_limit, migrations_only)
        except StatementFailed as failure:
            roll_back(conn)
            message = describe_failure(conn, failure, lock_timeout)
            raise InstallError(message, warnings) from failure.error
        except psycopg.Error as exc:
            roll_back(conn)
            raise InstallError(describe_error(conn, exc, lock_timeout), warnings) from exc
        except InstallError as exc:
            conn.rollback()
            exc.warnings = warnings
            raise
        conn.commit()
    report.notices = [n for n in notices if n.startswith("qbo-sync")]
    report.warnings = warnings
    return report


def begin(conn: psycopg.Connection, lock_timeout: float) -> list[str]:
    """Start the installation's transaction: pin the search path (before anything else, the
    install lock's call included), take the install lock, bound lock waits, refuse a role that
    may not install; returns the warnings about the database as it is, before any change."""
    conn.execute(PIN_SEARCH_PATH)
    conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s::bigint)", (INSTALL_LOCK_KEY,))
    conn.execute(
        "SELECT pg_catalog.set_config('lock_timeout', %s, true)",
        (str(math.ceil(lock_timeout * 1000)),),
    )
    conn.execute("SET LOCAL client_min_messages = notice")
    problems = missing_privileges(conn)
    if problems:
        raise PrivilegeError(f"cannot install qbo-sync: {'; '.join(problems)}; {PRIVILEGE_ADVICE}")
    return open_schema_warnings(conn)


def roll_back(conn: psycopg.Connection) -> None:
    """Roll the installation back, and pin the search path of the transaction that describes
    the failure (it reads the catalog as the same superuser)."""
    conn.rollback()
    conn.execute(PIN_SEARCH_PATH)


def create_extensions_first(conn: psycopg.Connection) -> None:
    """Create each of EXTENSIONS_FIRST in its schema, by name, when the database has none (one
    already installed, in whatever schema, is kept; the SQL files find it there)."""
    for name, schema in EXTENSIONS_FIRST.items():
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = %s)", (name,)
        ).fetchone()
        if row and not row[0]:
            conn.execute(
                sql.SQL("CREATE EXTENSION {} SCHEMA {}").format(
                    sql.Identifier(name), sql.Identifier(schema)
                )
            )


def describe_error(conn: psycopg.Connection, exc: psycopg.Error, lock_timeout: float) -> str:
    """The message for a failure outside the SQL files (after the rollback)."""
    if isinstance(exc, errors.LockNotAvailable):
        return describe_lock_timeout(conn, exc, None, None, lock_timeout)
    return _describe(exc)


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = f"installation failed, nothing was changed: {diag.message_primary or exc}"
    if diag.message_detail:
        text += f"\ndetail: {diag.message_detail}"
    if diag.message_hint:
        text += f"\nhint: {diag.message_hint}"
    if diag.context:
        text += f"\ncontext: {diag.context.strip()}"
    if isinstance(exc, errors.InsufficientPrivilege):
        text += f"\nprivileges: {PRIVILEGE_ADVICE}"
    return text


#: The table a CREATE TABLE, ALTER TABLE or CREATE INDEX statement works on.
TARGET_TABLE = re.compile(
    r"^(?:CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?"
    r"|CREATE\s+(?:UNIQUE\s+)?INDEX\b.*?\bON(?:\s+ONLY)?)\s+([\w.\"]+)",
    re.IGNORECASE | re.DOTALL,
)

#: A column definition with a foreign key, on one line: column, type, referenced table, column.
REFERENCE = re.compile(
    r"^\s*(?:ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?)?(\w+)\s+(\w+)\b.*?"
    r"\bREFERENCES\s+([\w.]+)\s*\(\s*(\w+)\s*\)",
    re.IGNORECASE | re.MULTILINE,
)

REFERENCED_COLUMN_SQL = """
SELECT format_type(a.atttypid, a.atttypmod),
       a.atttypid = to_regtype(%(type)s),
       EXISTS (SELECT FROM pg_constraint AS c
                WHERE c.conrelid = a.attrelid AND c.contype IN ('p', 'u')
                  AND c.conkey = ARRAY[a.attnum])
  FROM pg_attribute AS a
 WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = %(column)s AND NOT a.attisdropped
"""


def source_name(path: Path) -> str:
    """`sql/incremental/001_x.sql` for messages, wherever the sql directory is."""
    return str(Path(path.parent.parent.name, path.parent.name, path.name))


def describe_failure(
    conn: psycopg.Connection, failure: StatementFailed, lock_timeout: float
) -> str:
    """PostgreSQL's message, then where it failed (file, line, table, column) and, for a foreign
    key that the database's own tables cannot satisfy, which table and column are in the way;
    for a lock wait that timed out, one line naming who holds the lock (`lockwait`).

    Runs after the rollback, so the catalog is the database as it was before the installation.
    """
    exc, statement = failure.error, failure.statement
    where = f"{source_name(failure.path)} line {statement.line}"
    if isinstance(exc, errors.LockNotAvailable):
        return describe_lock_timeout(conn, exc, statement.text, where, lock_timeout)
    target = TARGET_TABLE.match(statement.text)
    table = exc.diag.table_name or (target.group(1) if target else None)
    if table:
        where += f", table {table}"
    if exc.diag.column_name:
        where += f", column {exc.diag.column_name}"
    first, _, rest = _describe(exc).partition("\n")
    lines = [first, f"in: {where}"] + ([rest] if rest else [])
    if isinstance(exc, errors.DatatypeMismatch | errors.InvalidForeignKey):
        lines += [f"conflict: {c}" for c in reference_conflicts(conn, statement.text, table)]
    return "\n".join(lines)


def reference_conflicts(conn: psycopg.Connection, text: str, table: str | None) -> list[str]:
    """The foreign keys of `text` whose referenced column, as it exists in the database, has
    another type than the referencing column, or is not unique."""
    conflicts = []
    for column, declared, referenced, key in REFERENCE.findall(text):
        row = conn.execute(
            REFERENCED_COLUMN_SQL, {"type": declared, "table": referenced, "column": key}
        ).fetchone()
        if row is None:
            continue
        actual, same_type, unique = row
        ours = f"{table}.{column}" if table else column
        if not same_type:
            conflicts.append(
                f"your table {referenced} already exists and its column {key} is {actual}, "
                f"but {ours} ({declared}) references it: qbo-sync needs {key} {declared}; "
                f"change that column's type or rename your table, then install again"
            )
        elif not unique:
            conflicts.append(
                f"your table {referenced} already exists and its column {key} is neither its "
                f"primary key nor unique, but {ours} references it: make {key} the primary key"
            )
    conn.rollback()
    return conflicts


def _install(
    conn: psycopg.Connection,
    sql_dir: Path,
    python_dir: Path,
    version: str,
    migration_limit: int | None,
    migrations_only: bool = False,
) -> InstallReport:
    create_extensions_first(conn)
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
        run_sql_file(conn, path, text)
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
        run_sql_file(conn, path, path.read_text(encoding="utf-8"))
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

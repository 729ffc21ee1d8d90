"""The `qbo-sync` command: install/upgrade, the local database, the simulator, sync and status.

The usual mistakes (database down, wrong --dsn, qbo-sync not installed, a bad setting) end with
one line on stderr saying what is wrong and what to do next, and an exit code from EXIT_CODES;
never with a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qbo_sync import __version__
from qbo_sync.install import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    from qbo_sync.pgserver import Cluster

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done
  {EXIT_ERROR}  the operation failed (installation refused or rolled back, sync rejected)
  {EXIT_USAGE}  usage: wrong arguments, connection string, port or settings file
  {EXIT_UNAVAILABLE}  not running or not available: the database cannot be reached, the local
     cluster is stopped, qbo-sync is not installed in the database, the port is in use"""

NEXT_STEP_CONNECT = (
    "start the database (the local one: qbo-sync db start) or pass --dsn (or set QBO_SYNC_DSN)"
)


class CommandError(Exception):
    """A mistake the user can fix: `str(error)` is the line for stderr, `code` the exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: object) -> str:
    """`text` with its whitespace (newlines and tabs included) collapsed to single spaces."""
    return " ".join(str(text).split())


def local_cluster() -> Cluster:
    """The local development cluster, with a warning when $QBO_SYNC_DB_PORT disagrees with it."""
    from qbo_sync import pgserver
    from qbo_sync.pgserver import PORT_VARIABLE

    try:
        requested = pgserver.requested_local_port()
    except ValueError as exc:
        raise CommandError(f"{exc}: set it to a free port, or unset it", EXIT_USAGE) from exc
    cluster = pgserver.local_cluster(requested)
    if os.environ.get(PORT_VARIABLE, "").strip() and cluster.port != requested:
        print(
            f"warning: {PORT_VARIABLE}={requested} is ignored: the local cluster in "
            f"{cluster.base_dir} was created with port {cluster.port} and keeps it "
            f"({PORT_VARIABLE} only picks the port of a new cluster: unset it, or run "
            f"`qbo-sync db stop` and delete {cluster.base_dir} to create a new one)",
            file=sys.stderr,
        )
    return cluster


def default_dsn() -> str:
    """$QBO_SYNC_DSN, else the local development cluster's database."""
    env = os.environ.get("QBO_SYNC_DSN")
    if env:
        return env
    return local_cluster().dsn()


def describe_dsn(dsn: str) -> str:
    """`database D on HOST:PORT` for messages (never the password); usage error when invalid."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise CommandError(
            f"invalid connection string ({one_line(exc)}): "
            "write it as postgresql://user@host:port/database",
            EXIT_USAGE,
        ) from exc
    host = params.get("host") or "the local socket"
    port = params.get("port") or "5432"
    return f"database {params.get('dbname') or params.get('user') or '?'} on {host}:{port}"


#: a server that answered but refused the login: the --dsn is wrong, not the server down (libpq
#: reports these at connection time as text only, with no SQLSTATE to go by)
LOGIN_REFUSED = (
    (re.compile(r'database "[^"]*" does not exist'), "check the database name in --dsn"),
    (re.compile(r'role "[^"]*" does not exist'), "check the user in --dsn"),
    (re.compile(r"password authentication failed"), "check the user and password in --dsn"),
    (
        re.compile(r"no pg_hba\.conf entry"),
        "check the user and database in --dsn (and pg_hba.conf)",
    ),
)
#: libpq refused an option of the connection string before connecting
BAD_OPTION = re.compile(r"invalid [\w ]+ value|invalid connection option|invalid integer value")


def cannot_connect(dsn: str, exc: psycopg.OperationalError) -> CommandError:
    # libpq's first line says what failed; the lines after it are its own advice, replaced by ours
    reason = one_line((str(exc).strip().splitlines() or ["no reason given"])[0])
    where = describe_dsn(dsn)
    for pattern, advice in LOGIN_REFUSED:
        if pattern.search(reason):
            return CommandError(f"cannot connect to {where} ({reason}): {advice}", EXIT_USAGE)
    if BAD_OPTION.search(reason):
        return CommandError(
            f"invalid connection string for {where} ({reason}): fix the option in --dsn",
            EXIT_USAGE,
        )
    return CommandError(
        f"cannot connect to {where} ({reason}): {NEXT_STEP_CONNECT}", EXIT_UNAVAILABLE
    )


def connect(args: argparse.Namespace) -> tuple[psycopg.Connection, str]:
    """An autocommit connection to --dsn (or the default) and its description for messages."""
    dsn = args.dsn or default_dsn()
    where = describe_dsn(dsn)
    try:
        return psycopg.connect(dsn, autocommit=True), where
    except psycopg.OperationalError as exc:
        raise cannot_connect(dsn, exc) from exc


def installed_version(conn: psycopg.Connection, where: str) -> str:
    """qbo-sync's installed version; a CommandError when it is not installed there, or when this
    role may not use it."""
    try:
        row = conn.execute("SELECT to_regprocedure('qbo_sync.version()') IS NOT NULL").fetchone()
        if not row or not row[0]:
            raise CommandError(
                f"qbo-sync is not installed in {where}: install it with "
                "`qbo-sync install --dsn …` (or `make install` for the local cluster)",
                EXIT_UNAVAILABLE,
            )
        version = conn.execute("SELECT qbo_sync.version()").fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        user = conn.info.user
        raise CommandError(
            f"role {user} may not use qbo-sync in {where} ({one_line(exc.diag.message_primary)}): "
            f"grant it qbo_sync_app to queue syncs or qbo_sync_monitor to read status "
            f"(GRANT qbo_sync_app TO {user};)",
            EXIT_ERROR,
        ) from exc
    except psycopg.Error as exc:
        raise database_error(exc) from exc
    return str(version[0]) if version else "unknown"


def database_error(exc: psycopg.Error) -> CommandError:
    """The database's own message, and its hint on a second line when it gives one."""
    message = exc.diag.message_primary or one_line(exc)
    if exc.diag.message_hint:
        message += f"\nhint: {exc.diag.message_hint}"
    return CommandError(message, EXIT_ERROR)


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def cmd_install(args: argparse.Namespace) -> int:
    from qbo_sync.install import InstallError, install

    dsn = args.dsn or default_dsn()
    describe_dsn(dsn)  # an invalid connection string is a usage error, not a failed install
    try:
        report = install(dsn, lock_timeout=args.lock_timeout)
    except InstallError as exc:
        print_warnings(exc.warnings)  # what the check before the installation found
        raise CommandError(str(exc), EXIT_ERROR) from exc
    except psycopg.OperationalError as exc:
        raise cannot_connect(dsn, exc) from exc
    print("\n".join(report.lines()))
    print_warnings(report.warnings)
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    cluster = local_cluster()
    if args.action == "start":
        try:
            cluster.start()
        except (RuntimeError, OSError) as exc:
            raise CommandError(str(exc), EXIT_ERROR) from exc
        print(f"running: {cluster.dsn()}")
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    else:
        if not cluster.running():
            print("stopped")
            return EXIT_UNAVAILABLE
        print(f"running: {cluster.dsn()}")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    conn, where = connect(args)
    with conn:
        installed_version(conn, where)
        try:
            # the application role acts for the organization its session names (row-level
            # security and trigger_qbo_sync read this setting); operators may act for any
            conn.execute(
                "SELECT set_config('qbo_sync.organization_id', %s, false)", (args.organization_id,)
            )
            job_id = conn.execute(
                "SELECT trigger_qbo_sync(%s::uuid, %s, %s, %s)",
                (args.organization_id, args.entity, args.direction, args.priority),
            ).fetchone()
        except psycopg.Error as exc:
            raise database_error(exc) from exc
    print(job_id[0] if job_id else "")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    conn, where = connect(args)
    with conn:
        try:
            version = installed_version(conn, where)
            cur = conn.execute(
                "SELECT organization_name, realm_id, is_active, token_status, pending_jobs,"
                " processing_jobs, failed_jobs, last_successful_sync_at FROM qbo_sync_status"
                " ORDER BY organization_name"
            )
            names = [column.name for column in cur.description or []]
            rows = cur.fetchall()
        except psycopg.Error as exc:
            raise database_error(exc) from exc
    print(f"qbo-sync {version}")
    print(" | ".join(names))
    for row in rows:
        print(" | ".join("" if value is None else str(value) for value in row))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbo-sync",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qbo-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    install = sub.add_parser("install", help="install or upgrade qbo-sync in a database")
    install.add_argument("--dsn", help="target database (default: $QBO_SYNC_DSN or the local one)")
    install.add_argument(
        "--lock-timeout",
        type=seconds,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="how long a statement waits for a lock another session holds before the "
        f"installation stops and changes nothing (default {DEFAULT_LOCK_TIMEOUT:g}; 0: no limit)",
    )
    install.set_defaults(func=cmd_install)

    db = sub.add_parser("db", help="the local development PostgreSQL cluster")
    db.add_argument("action", choices=["start", "stop", "status"])
    db.set_defaults(func=cmd_db)

    sub.add_parser("simulator", help="run the QBO simulator (qbo-sync simulator --help)")
    sub.add_parser(
        "listen", help="run the webhook and OAuth-callback listener (qbo-sync listen --help)"
    )

    sync = sub.add_parser("sync", help="queue a sync (trigger_qbo_sync)")
    sync.add_argument("organization_id")
    sync.add_argument("entity", help="items, customers, invoices or payments")
    sync.add_argument("--direction", default="both")
    sync.add_argument("--priority", default="urgent")
    sync.add_argument("--dsn")
    sync.set_defaults(func=cmd_sync)

    status = sub.add_parser("status", help="show qbo_sync_status")
    status.add_argument("--dsn")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulator"]:
        # everything after `simulator` belongs to the simulator's own parser
        from simulator.server import main as simulator_main

        return simulator_main(argv[1:])
    if argv[:1] == ["listen"]:
        from listener.app import main as listener_main

        return listener_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"qbo-sync {args.command}: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())

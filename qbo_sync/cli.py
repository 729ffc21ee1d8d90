"""The `qbo-sync` command: install/upgrade, the local database, the simulator, the listener,
connecting organizations, queuing and following syncs, status, conflicts and failed records.

The usual mistakes (database down, wrong --dsn, qbo-sync not installed, a bad setting) end with
one line on stderr saying what is wrong and what to do next, and an exit code from EXIT_CODES;
never with a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done
  {EXIT_ERROR}  the operation failed (installation refused or rolled back, sync rejected)
  {EXIT_USAGE}  usage: wrong arguments, connection string, port or settings file
  {EXIT_UNAVAILABLE}  not running or not available: the database cannot be reached, the local
     cluster is stopped, qbo-sync is not installed in the database, the port is in use
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): queued work goes on in the database"""

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


@contextmanager
def session(args: argparse.Namespace) -> Iterator[psycopg.Connection]:
    """A connection to a database with qbo-sync installed; the database's refusals and the
    operations' problems become one line for stderr."""
    from qbo_sync.operations import OperationError

    conn, where = connect(args)
    with conn:
        installed_version(conn, where)
        try:
            yield conn
        except OperationError as exc:
            raise CommandError(str(exc), EXIT_ERROR) from exc
        except psycopg.OperationalError as exc:
            raise CommandError(
                f"lost the connection to {where} ({one_line(exc)}): {NEXT_STEP_CONNECT}",
                EXIT_UNAVAILABLE,
            ) from exc
        except psycopg.Error as exc:
            raise database_error(exc) from exc


def organization(conn: psycopg.Connection, args: argparse.Namespace, *, create: bool = False):
    from qbo_sync.operations import find_organization

    return find_organization(conn, args.org, create=create) if args.org else None


def cmd_connect(args: argparse.Namespace) -> int:
    from qbo_sync import operations

    with session(args) as conn:
        org = organization(conn, args, create=args.create)
        if args.simulator:
            if not (args.dsn or os.environ.get("QBO_SYNC_DSN")):
                # the local cluster: its secrets file is here; tell the simulator its app
                from qbo_sync_db.secrets import read_secrets_file

                values = read_secrets_file(str(local_cluster().secrets_file))
                operations.register_with_simulator(
                    args.simulator,
                    values["QBO_CLIENT_ID"],
                    values["QBO_CLIENT_SECRET"],
                    args.redirect_uri,
                )
            done = operations.connect_simulator(conn, org, args.simulator, args.redirect_uri)
            print(f"connected: organization {org} to company {done.realm_id} (simulator)")
            return EXIT_OK
        started = time.time()
        done = operations.start_connect(conn, org, args.redirect_uri, args.environment)
        print(
            "Open this address in a browser and approve access to the QuickBooks company:\n"
            f"  {done.url}\n"
            f"QuickBooks then sends the browser to {args.redirect_uri}, where `qbo-sync listen` "
            "completes the connection."
        )
        if args.wait:
            realm = operations.wait_connected(conn, org, started, args.wait)
            if realm is None:
                raise CommandError(
                    f"not connected within {args.wait:g} s: open the address above, and check "
                    "that `qbo-sync listen` runs behind the redirect URI",
                    EXIT_ERROR,
                )
            print(f"connected: organization {org} to company {realm}")
    return EXIT_OK


def entity_list(text: str) -> list[str]:
    """An argparse type: entities separated by commas (or `all`)."""
    from qbo_sync.operations import ENTITIES

    if text.strip() == "all":
        return list(ENTITIES)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENTITIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown entity {', '.join(map(repr, unknown)) or repr(text)}: "
            f"use {', '.join(ENTITIES)} or all"
        )
    return names


def cmd_sync(args: argparse.Namespace) -> int:
    from qbo_sync import operations
    from qbo_sync.console import make_console

    console = make_console()
    with session(args) as conn:
        org = organization(conn, args)
        jobs = operations.queue_sync(conn, org, args.entities, args.direction, args.priority)
        if not args.wait:
            for entity, job in jobs.items():
                print(f"{entity}\t{job}")
            return EXIT_OK
        return show_progress(console, conn, jobs, args.timeout)


def show_progress(console, conn: psycopg.Connection, jobs: dict, timeout: float) -> int:
    """Follow `jobs` until they are done: on a terminal a bar per entity with its counts, live;
    piped, a line each time an entity's counts or state change. Errors are printed as lines as
    soon as they are known: a job's failure (and its retries), and each record QBO refused or
    that waits for a person. Exit code: 0 when every job completed and QBO refused no record."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from qbo_sync import operations

    terminal = console.is_terminal

    def say(line: str, style: str | None = None) -> None:
        console.print(
            line, markup=False, highlight=False, soft_wrap=True, style=style if terminal else None
        )
        console.file.flush()  # piped output is block-buffered: each line is news now

    shown: dict[str, str] = {}
    failures_shown: dict[str, int] = {}
    problems_at: dict[str, tuple] = {}
    # records already in trouble before these jobs ran are not theirs
    known: dict[tuple, tuple] = {}
    refused: set[tuple] = set()
    first = operations.job_progress(conn, jobs)
    orgs = {p.organization_id for p in first if p.organization_id is not None}
    for org in orgs:
        for r in operations.record_problems(conn, org, list(jobs)):
            known[(org, r["entity"], r["record_id"])] = record_key(r)

    def new_problems(p) -> None:
        for r in operations.record_problems(conn, p.organization_id, [p.entity]):
            key = (p.organization_id, r["entity"], r["record_id"])
            if known.get(key) == record_key(r):
                continue
            known[key] = record_key(r)
            if r["state"] == "error":
                refused.add(key)
            say(f"{p.entity}: {describe_record(r)}", "red" if r["state"] == "error" else "yellow")

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not terminal,
    ) as bars:
        tasks = {entity: bars.add_task(entity, total=None, state="queued") for entity in jobs}
        for progress in operations.follow(conn, jobs, timeout):
            for p in progress:
                # errors first: the line saying an entity is done comes after what went wrong
                for failure in p.failures[failures_shown.get(p.entity, 0) :]:
                    say(f"{p.entity}: run failed: {one_line(failure)}", "red")
                failures_shown[p.entity] = len(p.failures)
                # a record refused or held shows in the job's counts first: read them then
                marks = (p.progress.get("failed"), p.progress.get("held"), p.done)
                if p.organization_id is not None and problems_at.get(p.entity) != marks:
                    if any(marks[:2]) or p.done:
                        new_problems(p)
                    problems_at[p.entity] = marks
                state = describe_progress(p)
                completed, total = bar_position(p)
                bars.update(tasks[p.entity], completed=completed, total=total, state=state)
                if shown.get(p.entity) != state:
                    if not terminal:
                        say(f"{p.entity}: {state}")
                    shown[p.entity] = state
    failed = [p for p in progress if p.status != "completed"]
    for p in failed:
        where = f" (intuit_tid {p.intuit_tid})" if p.intuit_tid else ""
        print(f"{p.entity}: {p.status}{where}: {one_line(p.error or '')}", file=sys.stderr)
    if refused:
        print(
            f"{len(refused)} record(s) QBO refused did not sync: `qbo-sync records --failed` "
            "lists them; fix them here (a change pushes them again) or skip them",
            file=sys.stderr,
        )
    return EXIT_ERROR if failed or refused else EXIT_OK


def record_key(r: dict) -> tuple:
    return (r["state"], r["attempts"], r["error_code"], r["error_message"])


def describe_record(r: dict) -> str:
    """One record that did not sync, on one line."""
    what = "refused by QBO" if r["state"] == "error" else "waits for a person (conflict)"
    qbo_id = f" (QBO Id {r['qbo_id']})" if r["qbo_id"] else ""
    code = f" [{r['error_code']}]" if r["error_code"] else ""
    tid = f" (intuit_tid {r['intuit_tid']})" if r["intuit_tid"] else ""
    message = one_line(r["error_message"] or "")
    return f"record {r['record_id']}{qbo_id} {what}{code}: {message}{tid}"


def bar_position(p) -> tuple[float, float | None]:
    """The bar of one job: (completed, total); total None draws a pulsing bar."""
    if p.done:
        return 1, 1
    progress = p.progress
    if progress.get("phase") == "push":
        return progress.get("sent") or 0, None
    total = progress.get("total")
    read = progress.get("read") or 0
    return read, (max(total, read) if total is not None else None)


def describe_progress(p) -> str:
    """An entity's state and counts on one line: its running counts while it runs (and when it
    is done), else the counts of its finished runs."""
    if p.status == "pending" and not p.attempts and not p.progress:
        return "queued"
    progress = p.progress
    parts = [p.status]
    if p.status == "processing":
        phase = progress.get("phase")
        mode = progress.get("mode") if phase == "pull" else None
        parts = [f"running ({mode} pull)" if mode else f"running ({phase})" if phase else "running"]
    if progress:
        parts += progress_parts(progress)
    else:
        counts = p.counts
        for key, label in (
            ("entity_count", "objects"),
            ("inserted", "new"),
            ("updated", "updated"),
            ("created", "created in QBO"),
            ("pushed_updates", "updated in QBO"),
            ("conflicts", "conflicts"),
            ("failure_count", "failed"),
        ):
            if counts.get(key):
                parts.append(f"{counts[key]} {label}")
    if p.status == "pending" and p.attempts:
        parts.append(f"attempt {p.attempts + 1} waiting")
    return ", ".join(parts)


def progress_parts(progress: dict) -> list[str]:
    phase = progress.get("phase")
    parts = []
    read, total = progress.get("read") or 0, progress.get("total")
    if read or total is not None or phase == "pull":
        parts.append(f"{read} objects read" + (f", of {total} in QBO" if total is not None else ""))
        parts.append(f"{progress.get('written') or 0} written here")
    if progress.get("held"):
        parts.append(f"{progress['held']} waiting for a person")
    if progress.get("sent") or phase == "push":
        parts.append(f"{progress.get('sent') or 0} sent to QBO")
        parts.append(f"{progress.get('pushed') or 0} accepted")
    if progress.get("failed"):
        parts.append(f"{progress['failed']} failed")
    return parts


def cmd_status(args: argparse.Namespace) -> int:
    from qbo_sync import operations
    from qbo_sync.console import make_console, show_table

    console = make_console()
    with session(args) as conn:
        version = conn.execute("SELECT qbo_sync.version()").fetchone()[0]
        org = organization(conn, args)
        data = operations.status(conn, org)
    console.print(f"qbo-sync {version}")
    show_table(
        console,
        "Organizations",
        [
            "organization",
            "company",
            "connected",
            "token",
            "access token left",
            "refresh token left",
            "pending",
            "running",
            "failed",
            "last good sync",
        ],
        [
            [
                o["organization_name"],
                o["realm_id"],
                o["is_active"],
                o["token_status"],
                o["access_token_left"],
                o["refresh_token_left"],
                o["pending_jobs"],
                o["processing_jobs"],
                o["failed_jobs"],
                o["last_successful_sync_at"],
            ]
            for o in data["organizations"]
        ],
        empty="no organization is connected (qbo-sync connect --org …)",
    )
    show_table(
        console,
        "Recent syncs",
        [
            "finished",
            "organization",
            "entities",
            "type",
            "status",
            "objects",
            "ok",
            "failed",
            "error",
            "intuit_tid",
        ],
        [
            [
                h["completed_at"],
                h["organization_name"],
                h["entity_types"],
                h["sync_type"],
                h["status"],
                h["entity_count"],
                h["success_count"],
                h["failure_count"],
                one_line(h["error_summary"] or "")[:120],
                h["intuit_tid"],
            ]
            for h in data["history"]
        ],
    )
    warnings = [o for o in data["organizations"] if o["token_warning"]]
    for o in warnings:
        console.print(f"{o['organization_name']}: {o['token_warning']}")
    show_table(
        console,
        "Needs a person",
        ["what", "organization", "detail", "next step"],
        [[a["what"], a["organization"], a["detail"], a["next"]] for a in data["attention"]],
        empty="nothing",
    )
    return EXIT_OK


def cmd_conflicts(args: argparse.Namespace) -> int:
    from qbo_sync import operations
    from qbo_sync.console import make_console, show_table

    console = make_console()
    with session(args) as conn:
        if args.resolve:
            outcome = operations.resolve_conflict(conn, args.resolve, args.take)
            console.print(f"resolved {args.resolve}: {args.take}'s values kept ({outcome})")
            return EXIT_OK
        org = organization(conn, args)
        found = operations.conflicts(conn, org, held_only=not args.all)
    rows = []
    for c in found:
        for name in c["fields"] or [None]:
            if name is None:
                rows.append(
                    [
                        c["id"],
                        c["organization_name"],
                        c["entity"],
                        c["qbo_id"],
                        "",
                        "",
                        "",
                        "",
                        c["status"],
                    ]
                )
                continue
            rows.append(
                [
                    c["id"],
                    c["organization_name"],
                    c["entity"],
                    c["qbo_id"],
                    name,
                    (c["base_values"] or {}).get(name),
                    (c["local_values"] or {}).get(name),
                    (c["remote_values"] or {}).get(name),
                    c["status"],
                ]
            )
    show_table(
        console,
        "Conflicts" + ("" if args.all else " waiting for a person"),
        [
            "conflict",
            "organization",
            "entity",
            "QBO id",
            "field",
            "before",
            "here",
            "in QBO",
            "status",
        ],
        rows,
        empty="none",
    )
    if found and not args.all:
        console.print("settle one: qbo-sync conflicts --resolve CONFLICT --take qbo|local")
    return EXIT_OK


def cmd_records(args: argparse.Namespace) -> int:
    from qbo_sync import operations
    from qbo_sync.console import make_console, show_table

    console = make_console()
    with session(args) as conn:
        if args.retry:
            job = operations.retry_record(conn, args.retry[0], uuid.UUID(args.retry[1]))
            console.print(f"queued again: {args.retry[0]} {args.retry[1]} (job {job})")
            return EXIT_OK
        if args.skip:
            job = operations.skip_record(conn, args.skip[0], uuid.UUID(args.skip[1]), args.reason)
            console.print(f"skipped: {args.skip[0]} {args.skip[1]}")
            return EXIT_OK
        org = organization(conn, args)
        found = operations.failed_records(conn, org)
    show_table(
        console,
        "Records that did not sync",
        [
            "organization",
            "entity",
            "record",
            "QBO id",
            "state",
            "class",
            "QBO code",
            "message",
            "attempts",
            "intuit_tid",
        ],
        [
            [
                r["organization_name"],
                r["entity"],
                r["record_id"],
                r["qbo_id"],
                r["state"],
                r["error_class"],
                r["error_code"],
                one_line(r["error_message"] or "")[:160],
                r["attempts"],
                r["intuit_tid"],
            ]
            for r in found
        ],
        empty="none",
    )
    if found:
        console.print(
            "retry one: qbo-sync records --retry ENTITY RECORD; give its change up: "
            "qbo-sync records --skip ENTITY RECORD --reason '…'"
        )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from qbo_sync import demo
    from qbo_sync.operations import OperationError

    if args.stop:
        return demo.stop()
    try:
        return demo.main(args.simulator_port, args.listener_port, args.json, args.timeout)
    except (demo.DemoError, OperationError) as exc:
        raise CommandError(str(exc), EXIT_ERROR) from exc
    except psycopg.Error as exc:
        raise database_error(exc) from exc
    except (RuntimeError, OSError) as exc:
        raise CommandError(one_line(exc), EXIT_ERROR) from exc


def serve(name: str, run: Callable[[list[str]], int], argv: list[str]) -> int:
    """`qbo-sync listen` and `dashboard` (servers with their own parsers): an address they cannot
    listen on (the port in use) is one line, not a traceback."""
    try:
        return run(argv)
    except OSError as exc:
        hint = "stop what uses it or pick another with --port"
        if exc.errno != errno.EADDRINUSE:
            hint = "check --host and --port"
        print(f"qbo-sync {name}: {one_line(exc.strerror or exc)}; {hint}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def cmd_dashboard(argv: list[str]) -> int:
    """`qbo-sync dashboard`: its own parser (qbo_sync.dashboard.app) takes every argument."""
    from qbo_sync.dashboard.app import main as dashboard_main

    return dashboard_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbo-sync",
        description=" ".join(__doc__.split("\n\n")[0].split()) if __doc__ else None,
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
    sub.add_parser("dashboard", help="serve the sync status page (qbo-sync dashboard --help)")

    connect_parser = sub.add_parser(
        "connect",
        help="connect an organization to a QuickBooks company (OAuth)",
        description="Against the simulator (--simulator URL) the flow completes by itself; "
        "against real QuickBooks it prints the address to open, and `qbo-sync listen` completes "
        "it when QuickBooks sends the browser back to the redirect URI.",
    )
    connect_parser.add_argument("--org", required=True, help="organization id or exact name")
    connect_parser.add_argument(
        "--create", action="store_true", help="create the organization when no such name exists"
    )
    connect_parser.add_argument("--simulator", metavar="URL", help="the QBO simulator's URL")
    connect_parser.add_argument(
        "--environment", choices=["production", "sandbox"], default="production"
    )
    connect_parser.add_argument(
        "--redirect-uri",
        default="http://localhost:8080/oauth/callback",
        help="the redirect URI registered with the Intuit app (the listener's /oauth/callback)",
    )
    connect_parser.add_argument(
        "--wait",
        type=seconds,
        default=0,
        metavar="SECONDS",
        help="real QuickBooks: wait this long for the person to approve (default: do not wait)",
    )
    connect_parser.add_argument("--dsn")
    connect_parser.set_defaults(func=cmd_connect)

    sync = sub.add_parser(
        "sync",
        help="queue a sync (trigger_qbo_sync) and, with --wait, follow it",
        description="Queue one sync job per entity, in dependency order (customers and items, "
        "invoices, payments); the worker (pg_cron) runs them. With --wait, a bar per entity "
        "with its counts (a line per change when piped) and each error as it happens; the exit "
        "code is 0 only when every job completed and QBO refused no record.",
    )
    sync.add_argument("--org", required=True, help="organization id or exact name")
    sync.add_argument(
        "--entities",
        type=entity_list,
        default=["customers", "items", "invoices", "payments"],
        help="comma-separated: customers,items,invoices,payments (default: all)",
    )
    sync.add_argument("--direction", choices=["pull", "push", "both"], default="both")
    sync.add_argument("--priority", choices=["low", "normal", "high", "urgent"], default="urgent")
    sync.add_argument("--wait", action="store_true", help="show progress until the jobs are done")
    sync.add_argument(
        "--timeout",
        type=seconds,
        default=900,
        metavar="SECONDS",
        help="with --wait: give up after this long (default 900)",
    )
    sync.add_argument("--dsn")
    sync.set_defaults(func=cmd_sync)

    status = sub.add_parser(
        "status", help="connections, tokens, queue, recent syncs and what needs a person"
    )
    status.add_argument("--org", help="one organization (id or exact name)")
    status.add_argument("--dsn")
    status.set_defaults(func=cmd_status)

    conflicts = sub.add_parser(
        "conflicts", help="fields changed on both sides: list them, or settle one"
    )
    conflicts.add_argument("--org", help="one organization (id or exact name)")
    conflicts.add_argument("--all", action="store_true", help="also the ones settled by policy")
    conflicts.add_argument("--resolve", type=uuid.UUID, metavar="CONFLICT", help="settle this one")
    conflicts.add_argument(
        "--take", choices=["qbo", "local"], default="qbo", help="whose values --resolve keeps"
    )
    conflicts.add_argument("--dsn")
    conflicts.set_defaults(func=cmd_conflicts)

    records = sub.add_parser(
        "records", help="records in error, held or in conflict: list, retry or skip them"
    )
    records.add_argument("--failed", action="store_true", help="list them (the default)")
    records.add_argument("--org", help="one organization (id or exact name)")
    records.add_argument("--retry", nargs=2, metavar=("ENTITY", "RECORD"))
    records.add_argument("--skip", nargs=2, metavar=("ENTITY", "RECORD"))
    records.add_argument("--reason", default="skipped with qbo-sync records --skip")
    records.add_argument("--dsn")
    records.set_defaults(func=cmd_records)

    demo = sub.add_parser(
        "demo",
        help="the whole story on this machine, against the QBO simulator",
        description="Starts the local database, the simulator (a seeded company with Automated "
        "Sales Tax on) and the listener, connects an organization, pulls, pushes local edits, "
        "shows a QBO change arrive by webhook and a conflict settled, prints the status, and "
        "leaves everything running.",
    )
    demo.add_argument("--stop", action="store_true", help="stop what the demo started")
    demo.add_argument("--simulator-port", type=int, default=8765)
    demo.add_argument("--listener-port", type=int, default=8080)
    demo.add_argument("--json", metavar="FILE", help="also write every claim it prints to FILE")
    demo.add_argument(
        "--timeout",
        type=seconds,
        default=300,
        metavar="SECONDS",
        help="longest wait for any one step (default 300)",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulator"]:
        # everything after `simulator` belongs to the simulator's own parser
        from simulator.server import main as simulator_main

        return simulator_main(argv[1:])
    if argv[:1] == ["listen"]:
        from listener.app import main as listener_main

        return serve("listen", listener_main, argv[1:])
    if argv[:1] == ["dashboard"]:
        return serve("dashboard", cmd_dashboard, argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"qbo-sync {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(
            f"qbo-sync {args.command}: interrupted; jobs already queued go on in the database"
            " (qbo-sync status shows them)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

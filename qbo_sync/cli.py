"""The `qbo-sync` command: install/upgrade, the local database, the simulator, sync and status."""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from qbo_sync import __version__


def default_dsn() -> str:
    """$QBO_SYNC_DSN, else the local development cluster's database."""
    env = os.environ.get("QBO_SYNC_DSN")
    if env:
        return env
    from qbo_sync.pgserver import local_cluster

    return local_cluster().dsn()


def cmd_install(args: argparse.Namespace) -> int:
    from qbo_sync.install import InstallError, install

    try:
        report = install(args.dsn or default_dsn())
    except InstallError as exc:
        print(f"qbo-sync install: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"qbo-sync install: cannot connect: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from qbo_sync.pgserver import local_cluster

    cluster = local_cluster()
    if args.action == "start":
        try:
            cluster.start()
        except (RuntimeError, OSError) as exc:
            print(f"qbo-sync db start: {exc}", file=sys.stderr)
            return 1
        print(f"running: {cluster.dsn()}")
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    else:
        if cluster.running():
            print(f"running: {cluster.dsn()}")
        else:
            print("stopped")
            return 3
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    with psycopg.connect(args.dsn or default_dsn(), autocommit=True) as conn:
        try:
            job_id = conn.execute(
                "SELECT trigger_qbo_sync(%s::uuid, %s, %s, %s)",
                (args.organization_id, args.entity, args.direction, args.priority),
            ).fetchone()
        except psycopg.Error as exc:
            diag = exc.diag
            print(f"qbo-sync sync: {diag.message_primary}", file=sys.stderr)
            if diag.message_hint:
                print(f"hint: {diag.message_hint}", file=sys.stderr)
            return 1
    print(job_id[0] if job_id else "")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with psycopg.connect(args.dsn or default_dsn(), autocommit=True) as conn:
        version = conn.execute("SELECT qbo_sync.version()").fetchone()
        print(f"qbo-sync {version[0] if version else 'not installed'}")
        cur = conn.execute(
            "SELECT organization_name, realm_id, is_active, token_status, pending_jobs,"
            " processing_jobs, failed_jobs, last_successful_sync_at FROM qbo_sync_status"
            " ORDER BY organization_name"
        )
        names = [column.name for column in cur.description or []]
        rows = cur.fetchall()
    print(" | ".join(names))
    for row in rows:
        print(" | ".join("" if value is None else str(value) for value in row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qbo-sync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"qbo-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    install = sub.add_parser("install", help="install or upgrade qbo-sync in a database")
    install.add_argument("--dsn", help="target database (default: $QBO_SYNC_DSN or the local one)")
    install.set_defaults(func=cmd_install)

    db = sub.add_parser("db", help="the local development PostgreSQL cluster")
    db.add_argument("action", choices=["start", "stop", "status"])
    db.set_defaults(func=cmd_db)

    sub.add_parser("simulator", help="run the QBO simulator (qbo-sync simulator --help)")

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
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

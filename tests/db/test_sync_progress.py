"""Live progress of `qbo-sync sync --wait`: the worker publishes a job's running counts on its
queue row after every page it pulls and every request it pushes (qbo_sync_db.progress), the
command reads them (operations.job_progress) and prints them as they grow, and prints a record
QBO refused as a line when it happens. Run as a user runs it: a child process, output piped,
connected as a login role granted qbo_sync_app, against a seeded simulator over HTTP and a
worker running beside it."""

# ruff: noqa: F811 - fixtures are imported and then taken as arguments
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from qbo_sync import operations
from qbo_sync.cli import EXIT_ERROR, EXIT_OK
from qbo_sync.install import PROJECT_ROOT
from tests.db.qbo_jobs import LoggedServer, connect_realm, setting  # noqa: F401 - fixture
from tests.db.test_cli_operations import worker  # noqa: F401 - fixture
from tests.db.test_pull import local_rows
from tests.db.test_push import add_invoice
from tests.simulator.simtools import REALM

CUSTOMERS = 60
RUNNING = re.compile(r"^customers: running \(full pull\), (\d+) objects read(?:, of (\d+) in QBO)?")


@pytest.fixture
def company() -> Iterator[LoggedServer]:
    """Enough customers for many small pages, each call slowed a little (as QBO's are)."""
    server = LoggedServer(
        seed_customers=CUSTOMERS, seed_items=4, seed_invoices=2, seed_payments=0, latency_ms=60
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_pages(setting) -> None:
    setting("pull.page_size", "5")
    setting("pull.page_overlap", "1")


def login(db_dsn: str, role: str) -> Iterator[str]:
    name = "progress_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db_dsn, autocommit=True) as su:
        su.execute(f"CREATE ROLE {name} LOGIN IN ROLE {role}")
    try:
        yield db_dsn.replace("postgres@", f"{name}@")
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as su:
            su.execute(f"DROP OWNED BY {name}")
            su.execute(f"DROP ROLE {name}")


@pytest.fixture
def app_dsn(db_dsn) -> Iterator[str]:
    """A login role granted qbo_sync_app only, as the application (and its users) connect."""
    yield from login(db_dsn, "qbo_sync_app")


@pytest.fixture
def monitor_dsn(db_dsn) -> Iterator[str]:
    yield from login(db_dsn, "qbo_sync_monitor")


def follow_sync(*args: str, timeout: float = 120) -> tuple[int, list[tuple[float, str]], str]:
    """`qbo-sync sync ARGS --wait`, piped, each line of its output with when it arrived (epoch
    seconds); returns its exit code, those lines and its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("QBO_SYNC_DSN", "PYTHONUNBUFFERED")}
    child = subprocess.Popen(
        [sys.executable, "-m", "qbo_sync.cli", "sync", *args, "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    lines: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    assert child.stdout is not None and child.stderr is not None
    for line in child.stdout:
        lines.append((time.time(), line.rstrip("\n")))
        assert time.monotonic() < deadline, lines
    code = child.wait(timeout=30)
    return code, lines, child.stderr.read()


def test_a_full_pull_shows_its_counts_growing_while_it_runs(
    conn, company, small_pages, worker, app_dsn
):
    connected = connect_realm(conn, company, name="Progress Bakery")
    total = len(company.state.realms[REALM].objects["Customer"])
    assert total >= CUSTOMERS
    code, lines, stderr = follow_sync(
        "--org",
        str(connected.org),
        "--entities",
        "customers",
        "--direction",
        "pull",
        "--timeout",
        "120",
        "--dsn",
        app_dsn,
    )
    assert code == EXIT_OK, (lines, stderr)
    assert "Traceback" not in stderr
    ended = conn.execute(
        "SELECT extract(epoch FROM completed_at)::float8, progress FROM qbo_sync_queue"
        " WHERE organization_id = %s AND sync_endpoint = 'customers'",
        (connected.org,),
    ).fetchone()
    # lines saying the pull was running, with counts that grew, arrived before it ended
    running = [(at, RUNNING.match(text)) for at, text in lines if RUNNING.match(text)]
    before_end = [(at, m) for at, m in running if at < ended[0]]
    reads = [int(m.group(1)) for _, m in before_end]
    assert len(reads) >= 2 and reads == sorted(reads) and reads[0] < reads[-1] < total, lines
    # the total was known while it ran (QBO counted it), as the bar's end
    assert any(m.group(2) == str(total) for _, m in before_end), lines
    # the last line: everything QBO has, read and written here
    final = lines[-1][1]
    assert final.startswith(f"customers: completed, {total} objects read, of {total} in QBO,")
    assert f"{total} written here" in final
    assert len(local_rows(conn, "customers", connected.org)) == total
    assert ended[1]["read"] == ended[1]["total"] == ended[1]["written"] == total


def pulled(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> None:
    """Pull `entity` through the worker running beside the test, and wait for it."""
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, 'pull')", (org, entity)).fetchone()[0]
    deadline = time.monotonic() + 60
    while conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)).fetchone() != (
        "completed",
    ):
        assert time.monotonic() < deadline, f"the {entity} pull did not complete"
        time.sleep(0.1)


def test_a_record_qbo_refuses_is_a_line_and_the_exit_code_says_so(conn, company, worker, app_dsn):
    connected = connect_realm(conn, company, name="Refused Bakery")
    for entity in ("customers", "items"):
        pulled(conn, connected.org, entity)
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    good = add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(2), Decimal(5))])
    # QBO refuses an invoice whose total is negative (a business validation fault, 6000)
    bad = add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(1), Decimal(-50))])
    code, lines, stderr = follow_sync(
        "--org",
        str(connected.org),
        "--entities",
        "invoices",
        "--direction",
        "push",
        "--timeout",
        "120",
        "--dsn",
        app_dsn,
    )
    texts = [text for _, text in lines]
    refused = [t for t in texts if t.startswith(f"invoices: record {bad} ")]
    assert len(refused) == 1, texts
    assert "refused by QBO [6000]" in refused[0] and "intuit_tid" in refused[0]
    assert not any(str(good) in t for t in texts)
    final = texts[-1]
    assert final.startswith("invoices: completed,") and "2 sent to QBO, 1 accepted" in final
    assert "1 failed" in final
    # not everything synced: the exit code and one line on stderr say so, and what to do
    assert code == EXIT_ERROR and "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        "1 record(s) QBO refused did not sync: `qbo-sync records --failed` lists them; fix them "
        "here (a change pushes them again) or skip them"
    ]
    # a second push has nothing new to say about it: the record is not this run's news
    code, lines, stderr = follow_sync(
        "--org", str(connected.org), "--entities", "invoices", "--direction", "push",
        "--dsn", app_dsn,
    )  # fmt: skip
    assert code == EXIT_OK, (lines, stderr)
    assert not any("refused" in text for _, text in lines)


def run_one_slice(conn: psycopg.Connection) -> None:
    """One run of one job (worker.job_slice_seconds 0: a full pull reads one page per run)."""
    conn.execute("CALL qbo_sync.worker(60, 1, true)")


def test_job_progress_reads_a_job_stopped_half_way_and_only_its_own_organizations(
    conn, db_dsn, company, small_pages, setting, app_dsn, monitor_dsn
):
    setting("worker.job_slice_seconds", "0")
    connected = connect_realm(conn, company, name="Half Way")
    other = connect_realm(conn, company, realm="4620816365999999999", name="Other")
    total = len(company.state.realms[REALM].objects["Customer"])
    job = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (connected.org,)
    ).fetchone()[0]
    jobs = {"customers": job}
    [before] = operations.job_progress(conn, jobs)
    assert (before.status, before.progress) == ("pending", {})

    run_one_slice(conn)  # the first page: positions 1-5, and QBO's count
    [half] = operations.job_progress(conn, jobs)
    assert half.status == "pending" and not half.done  # handed back, to go on
    assert {k: half.progress.get(k) for k in ("phase", "mode", "read", "total", "written")} == {
        "phase": "pull",
        "mode": "full",
        "read": 5,
        "total": total,
        "written": 5,
    }
    run_one_slice(conn)  # the second page starts one early: positions 5-9
    [further] = operations.job_progress(conn, jobs)
    assert (further.progress["read"], further.progress["written"], further.progress["total"]) == (
        9,
        9,
        total,
    )
    assert further.progress["at"] >= half.progress["at"]

    others = conn.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (other.org,)).fetchone()[
        0
    ]
    # the application sees its own organization's job, and not another's
    with psycopg.connect(app_dsn, autocommit=True) as app:
        operations.act_for(app, connected.org)
        [own, foreign] = operations.job_progress(app, {"customers": job, "items": others})
        assert own.progress["read"] == 9 and own.organization_id == connected.org
        assert (foreign.status, foreign.progress) == ("gone", {})
    # the monitor reads every organization's
    with psycopg.connect(monitor_dsn, autocommit=True) as monitor:
        [seen] = operations.job_progress(monitor, jobs)
        assert seen.progress["read"] == 9

    conn.execute("CALL qbo_sync.worker(60, NULL, true)")
    [done, theirs] = operations.job_progress(conn, {"customers": job, "items": others})
    assert done.status == theirs.status == "completed"
    assert done.progress["read"] == done.progress["total"] == total
    assert done.progress["written"] == total  # every object once, whatever the overlap re-read
    assert theirs.progress["read"] == theirs.progress["total"] == 0  # an empty company
    # both jobs published; the application reads its own organization's only
    with psycopg.connect(app_dsn, autocommit=True) as app:
        operations.act_for(app, connected.org)
        assert app.execute(
            "SELECT array_agg(id) FROM qbo_sync_queue WHERE progress IS NOT NULL"
        ).fetchone() == ([job],)
        assert operations.job_progress(app, {"items": others})[0].status == "gone"
    with psycopg.connect(monitor_dsn, autocommit=True) as monitor:
        assert monitor.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE progress IS NOT NULL"
        ).fetchone() == (2,)

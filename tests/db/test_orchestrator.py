"""qbo_sync_orchestrator: the entity syncs queued in dependency order and run in that order by
the worker (the claim holds a job back while one it comes after is pending or processing, even
a folded older job of higher priority), the summary it returns, and every run's history with
its counts and the records QBO refused (with their intuit_tid); against a seeded simulator."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import uuid

import psycopg

from tests.conftest import make_org
from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import SEEDED, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker

ORDER = ["items", "customers", "invoices", "payments"]


def claim(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID, str] | None:
    row = conn.execute(
        "SELECT id, lease_id, sync_endpoint FROM qbo_sync.claim(1, 'test')"
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def complete(conn: psycopg.Connection, job: tuple[uuid.UUID, uuid.UUID, str]) -> None:
    assert conn.execute("SELECT qbo_sync.complete(%s, %s)", job[:2]).fetchone()[0]


def test_jobs_are_claimed_in_dependency_order_even_a_folded_older_urgent_one(conn):
    org, other = make_org(conn, "Ordered"), make_org(conn, "Other")
    older = conn.execute(
        "SELECT qbo_sync.enqueue(%s, 'invoices', 'both', 'urgent', NULL, 'schedule')", (org,)
    ).fetchone()[0]
    conn.execute(
        "UPDATE qbo_sync_queue SET created_at = now() - interval '1 hour',"
        " run_at = now() - interval '1 hour' WHERE id = %s",
        (older,),
    )
    summary = conn.execute("SELECT qbo_sync_orchestrator(%s)", (org,)).fetchone()[0]
    jobs = {j["entity"]: j for j in summary["jobs"]}
    assert summary["order"] == ORDER
    assert jobs["invoices"]["job_id"] == str(older) and jobs["invoices"]["folded"] is True
    assert not jobs["items"]["folded"] and not jobs["payments"]["folded"]
    assert jobs["payments"]["after"] == [jobs[e]["job_id"] for e in ORDER[:3]]

    claimed = []
    while (job := claim(conn)) is not None:
        claimed.append(job[2])
        # nothing of this organization is claimable until the job is done ...
        assert claim(conn) is None
        # ... but another organization's job is
        if len(claimed) == 1:
            conn.execute("SELECT qbo_sync.enqueue(%s, 'items', 'pull')", (other,))
            other_job = claim(conn)
            assert other_job is not None and other_job[2] == "items"
            complete(conn, other_job)
        complete(conn, job)
    assert claimed == ORDER


def test_a_failed_job_lets_the_ones_after_it_run(conn):
    org = make_org(conn, "Failing")
    summary = conn.execute(
        "SELECT qbo_sync_orchestrator(%s, 'pull', ARRAY['customers', 'invoices'])", (org,)
    ).fetchone()[0]
    first = claim(conn)
    assert first is not None and first[2] == "customers"
    assert (
        conn.execute("SELECT qbo_sync.fail(%s, %s, 'broken', false)", first[:2]).fetchone()[0]
        == "failed"
    )
    second = claim(conn)
    assert second is not None and str(second[0]) == summary["jobs"][1]["job_id"]


def test_the_orchestrator_runs_every_entity_in_order_and_writes_the_history(conn, seeded):
    connected = connect_realm(conn, seeded)
    summary = conn.execute("SELECT qbo_sync_orchestrator(%s, 'pull')", (connected.org,)).fetchone()[
        0
    ]
    run_worker(conn, 120)
    runs = conn.execute(
        """SELECT q.sync_endpoint, q.status, q.started_at, h.status, h.entity_count,
                  h.success_count, h.failure_count, h.sync_type, h.entity_types
             FROM qbo_sync_queue AS q JOIN qbo_sync_history AS h ON h.queue_job_id = q.id
            WHERE q.id = ANY (%s::uuid[]) ORDER BY q.started_at""",
        ([j["job_id"] for j in summary["jobs"]],),
    ).fetchall()
    assert [r[0] for r in runs] == ORDER
    for entity, status, _, history, count, success, failures, sync_type, types in runs:
        assert (status, history, sync_type, types) == (
            "completed",
            "completed",
            "orchestrator",
            [entity],
        )
        assert count >= SEEDED[entity] and success == count and failures == 0
    for entity, table in (("customers", "customer_profile"), ("invoices", "invoice_record")):
        local = conn.execute(
            f"SELECT count(*) FROM {table} WHERE organization_id = %s", (connected.org,)
        ).fetchone()[0]
        assert local == SEEDED[entity]


def test_a_run_records_the_records_qbo_refused_with_their_intuit_tid(conn, seeded):
    connected = connect_realm(conn, seeded)
    job = conn.execute("SELECT qbo_sync_customers(%s, 'pull')", (connected.org,)).fetchone()[0]
    run_worker(conn)
    assert outcome(conn, job)["status"] == "completed"
    refused = conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name, company_name)"
        " VALUES (%s, 'Long Name Ltd', %s) RETURNING id",
        (connected.org, "Too Long " * 20),  # QBO's company names have at most 100 characters
    ).fetchone()[0]
    fine = conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Fine Ltd')"
        " RETURNING id",
        (connected.org,),
    ).fetchone()[0]
    job = conn.execute("SELECT qbo_sync_customers(%s, 'push')", (connected.org,)).fetchone()[0]
    run_worker(conn)
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["history"] == "partial", result
    summary = result["summary"]
    assert summary["failure_count"] == 1 and summary["success_count"] >= 1
    records = summary["record_errors"]["records"]
    assert [r["record_id"] for r in records] == [str(refused)]
    assert records[0]["state"] == "error" and records[0]["error_class"] == "validation"
    assert records[0]["intuit_tid"] and records[0]["error_code"]
    state = conn.execute(
        "SELECT state, intuit_tid FROM qbo_sync_record_status WHERE record_id = %s", (fine,)
    ).fetchone()
    assert state == ("synced", None)

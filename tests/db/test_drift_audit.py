"""The drift audit against a seeded simulator over HTTP: QBO's COUNT queries against the local
rows; no drift → drifted false and no repair job; rows deleted here behind the sync's back, or
objects changed in QBO without the sync hearing of it, are found (by Id and SyncToken) and
repaired by a targeted pull; every audit is a row of qbo_sync_drift; the application may audit
its own organization only."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import SEEDED, change, local_rows, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker
from tests.db.test_roles import MONITOR, app_session

ENTITIES = ["items", "customers", "invoices", "payments"]


def synced(conn: psycopg.Connection, seeded_sim) -> uuid.UUID:
    """An organization connected to the seeded realm, every entity pulled."""
    connected = connect_realm(conn, seeded_sim)
    conn.execute("SELECT qbo_sync_orchestrator(%s, 'pull')", (connected.org,))
    run_worker(conn, 120)
    return connected.org


def audit(conn: psycopg.Connection, org: uuid.UUID) -> dict[str, dict]:
    """Run the audit of every entity through the worker; the drift rows by entity."""
    assert conn.execute("SELECT qbo_sync_drift_audit(%s)", (org,)).fetchone()[0] == 4
    run_worker(conn, 120)
    cur = conn.execute(
        "SELECT * FROM qbo_sync_drift WHERE organization_id = %s ORDER BY checked_at", (org,)
    )
    names = [c.name for c in cur.description or []]
    return {row["entity"]: row for row in (dict(zip(names, r, strict=True)) for r in cur)}


def audit_jobs(conn: psycopg.Connection, org: uuid.UUID) -> list[tuple]:
    return conn.execute(
        "SELECT sync_endpoint, status, direction FROM qbo_sync_queue"
        " WHERE organization_id = %s AND payload ? 'audit' ORDER BY sync_endpoint",
        (org,),
    ).fetchall()


def test_no_drift_means_drifted_false_and_no_repair_job(conn, seeded):
    org = synced(conn, seeded)
    found = audit(conn, org)
    assert sorted(found) == sorted(ENTITIES)
    for entity, row in found.items():
        assert row["drifted"] is False, row
        assert row["repair_job_id"] is None
        assert row["qbo_count"] == row["local_count"] == SEEDED[entity]
        assert row["detail"]["differing"] == []
    assert [s for _, s, _ in audit_jobs(conn, org)] == ["completed"] * 4
    refetches = conn.execute(
        "SELECT count(*) FROM qbo_sync_queue WHERE payload ? 'refetch'"
    ).fetchone()[0]
    assert refetches == 0
    # the audit's history: a completed pull run per entity, with what it found
    summaries = conn.execute(
        "SELECT h.summary -> 'audit' FROM qbo_sync_history AS h"
        " JOIN qbo_sync_queue AS q ON q.id = h.queue_job_id WHERE q.payload ? 'audit'"
    ).fetchall()
    assert len(summaries) == 4 and all(s[0]["drifted"] is False for s in summaries)


def test_rows_deleted_here_behind_the_syncs_back_are_found_and_pulled_again(conn, seeded):
    org = synced(conn, seeded)
    before = local_rows(conn, "payments", org)
    gone = sorted(before, key=int)[:2]
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")  # nothing recorded for push
        conn.execute(
            "DELETE FROM invoice_payment WHERE organization_id = %s AND qbo_id = ANY (%s)",
            (org, gone),
        )
    found = audit(conn, org)
    payments = found["payments"]
    assert payments["drifted"] is True
    assert (payments["qbo_count"], payments["local_count"]) == (
        SEEDED["payments"],
        SEEDED["payments"] - 2,
    )
    assert sorted(payments["missing_here"], key=int) == gone
    assert payments["detail"]["differing"] == ["all"]
    assert payments["qbo_total"] is not None and payments["local_total"] is not None
    repair = outcome(conn, payments["repair_job_id"])
    assert repair["status"] == "completed", repair
    assert repair["summary"]["refetched"] == 2
    after = local_rows(conn, "payments", org)
    assert sorted(after) == sorted(before)
    for qbo_id in gone:
        assert after[qbo_id]["amount"] == before[qbo_id]["amount"]
        assert after[qbo_id]["qbo_sync_token"] == before[qbo_id]["qbo_sync_token"]
    # the other entities had nothing to repair
    assert all(not found[e]["drifted"] for e in ("items", "customers", "invoices"))


def test_an_object_changed_in_qbo_unseen_is_found_by_its_sync_token_and_repaired(conn, seeded):
    org = synced(conn, seeded)
    invoices = local_rows(conn, "invoices", org)
    open_one = next(
        i
        for i in sorted(invoices, key=int)
        if invoices[i]["balance_due"] > 0 and not invoices[i]["is_voided"]
    )
    change(seeded, "Invoice", "void", open_one)  # no pull runs before the audit
    found = audit(conn, org)
    row = found["invoices"]
    assert row["drifted"] is True
    assert set(row["detail"]["differing"]) >= {"open", "zero_total"}
    assert row["detail"]["newer_in_qbo"] == [open_one]
    assert row["missing_here"] == []
    assert outcome(conn, row["repair_job_id"])["summary"]["refetched"] == 1
    repaired = local_rows(conn, "invoices", org)[open_one]
    assert repaired["is_voided"] is True and repaired["balance_due"] == 0
    assert repaired["qbo_sync_token"] != invoices[open_one]["qbo_sync_token"]
    # audited again: no drift left
    conn.execute("DELETE FROM qbo_sync_drift")
    assert audit(conn, org)["invoices"]["drifted"] is False


def test_the_application_audits_its_own_organization_only(conn, connect, seeded):
    org = synced(conn, seeded)
    other = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Other')", (other,))
    app = app_session(connect, org)
    assert app.execute("SELECT qbo_sync_drift_audit()").fetchone()[0] == 4  # its own
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app.execute("SELECT qbo_sync_drift_audit(%s)", (other,))
    with pytest.raises(errors.NullValueNotAllowed):
        app_session(connect, None).execute("SELECT qbo_sync_drift_audit()")
    with pytest.raises(errors.InsufficientPrivilege):
        connect(user=MONITOR).execute("SELECT qbo_sync_drift_audit(%s)", (org,))
    assert [e for e, _, _ in audit_jobs(conn, org)] == sorted(ENTITIES)
    assert audit_jobs(conn, other) == []
    # an operator's NULL: every organization with an active connection
    conn.execute("DELETE FROM qbo_sync_queue")
    assert conn.execute("SELECT qbo_sync_drift_audit()").fetchone()[0] == 4


def test_a_deletion_not_pushed_yet_is_not_drift_and_is_not_brought_back(conn, seeded):
    org = synced(conn, seeded)
    gone = sorted(local_rows(conn, "payments", org), key=int)[0]
    conn.execute(  # the application deletes it: recorded for the push, not pushed yet
        "DELETE FROM invoice_payment WHERE organization_id = %s AND qbo_id = %s", (org, gone)
    )
    pending = conn.execute(
        "SELECT count(*) FROM qbo_sync.local_deletion WHERE organization_id = %s AND qbo_id = %s"
        " AND pushed_at IS NULL",
        (org, gone),
    ).fetchone()[0]
    assert pending == 1
    payments = audit(conn, org)["payments"]
    assert payments["drifted"] is False, payments
    assert payments["repair_job_id"] is None
    assert gone not in local_rows(conn, "payments", org)

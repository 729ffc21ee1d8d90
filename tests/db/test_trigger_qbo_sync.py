"""trigger_qbo_sync, qbo_sync_orchestrator and the per-entity functions (qbo_sync_customers, ...):
argument checks with clear errors, and what they queue."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.conftest import make_org
from tests.db.test_roles import MONITOR, app_session

CALL = "SELECT trigger_qbo_sync(%s::uuid, %s, %s, %s)"


def test_queues_an_urgent_sync_by_default(conn, org):
    job_id = conn.execute("SELECT trigger_qbo_sync(%s::uuid, 'invoices')", (org,)).fetchone()[0]
    row = conn.execute(
        "SELECT organization_id, sync_endpoint, direction, priority::text, status, source"
        " FROM qbo_sync_queue WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (org, "invoices", "both", "urgent", "pending", "manual")


def test_repeated_triggers_fold_into_one_pending_job(conn, org):
    first = conn.execute(CALL, (org, "customers", "pull", "low")).fetchone()[0]
    second = conn.execute(CALL, (org, "customers", "pull", "urgent")).fetchone()[0]
    assert first == second
    assert (
        conn.execute(
            "SELECT priority::text FROM qbo_sync_queue WHERE id = %s", (first,)
        ).fetchone()[0]
        == "urgent"
    )


@pytest.mark.parametrize(
    ("entity", "direction", "priority", "message", "hint"),
    [
        (
            "invoice",
            "both",
            "urgent",
            "unknown entity 'invoice'",
            "items, customers, invoices, payments",
        ),
        (None, "both", "urgent", "unknown entity NULL", "items, customers, invoices, payments"),
        ("items", "sideways", "urgent", "unknown direction 'sideways'", "pull, push, both"),
        ("items", None, "urgent", "unknown direction NULL", "pull, push, both"),
        ("items", "pull", "asap", "unknown priority 'asap'", "low, normal, high, urgent"),
        ("items", "pull", "URGENT", "unknown priority 'URGENT'", "low, normal, high, urgent"),
    ],
)
def test_bad_arguments_are_refused_with_a_hint(
    conn, org, entity, direction, priority, message, hint
):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        conn.execute(CALL, (org, entity, direction, priority))
    assert info.value.diag.message_primary == message
    assert hint in info.value.diag.message_hint
    assert conn.execute("SELECT count(*) FROM qbo_sync_queue").fetchone()[0] == 0


def test_null_organization(conn):
    with pytest.raises(
        psycopg.errors.NullValueNotAllowed, match="organization_id must not be null"
    ):
        conn.execute(CALL, (None, "items", "both", "urgent"))


def test_unknown_organization(conn):
    missing = uuid.uuid4()
    with pytest.raises(psycopg.errors.NoDataFound, match=f"organization {missing} does not exist"):
        conn.execute(CALL, (missing, "items", "both", "urgent"))


def test_organization_without_connection(conn):
    org_id = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'No QBO')", (org_id,))
    with pytest.raises(
        psycopg.errors.ObjectNotInPrerequisiteState, match="has no QuickBooks connection"
    ) as info:
        conn.execute(CALL, (org_id, "items", "both", "urgent"))
    assert "qbo_oauth_initiate" in info.value.diag.message_hint


def test_inactive_connection_names_the_reason(conn):
    org_id = make_org(conn, "Lapsed", active=False)
    with pytest.raises(
        psycopg.errors.ObjectNotInPrerequisiteState, match="not active: invalid_grant"
    ):
        conn.execute(CALL, (org_id, "items", "both", "urgent"))


def test_orchestrator_queues_in_dependency_order(conn, org):
    summary = conn.execute(
        "SELECT qbo_sync_orchestrator(%s, 'both', ARRAY['payments', 'invoices', 'customers', 'items'])",
        (org,),
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT id, sync_endpoint FROM qbo_sync_queue ORDER BY priority DESC, created_at"
    ).fetchall()
    assert [r[1] for r in rows] == ["items", "customers", "invoices", "payments"]
    assert summary["order"] == ["items", "customers", "invoices", "payments"]
    assert [(j["entity"], j["job_id"]) for j in summary["jobs"]] == [
        (entity, str(job)) for job, entity in rows
    ]
    assert summary["organization_id"] == str(org) and summary["direction"] == "both"


def test_orchestrator_checks_every_entity_before_queueing(conn, org):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown entity 'vendors'"):
        conn.execute("SELECT qbo_sync_orchestrator(%s, 'both', ARRAY['items', 'vendors'])", (org,))
    assert conn.execute("SELECT count(*) FROM qbo_sync_queue").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least one entity"):
        conn.execute("SELECT qbo_sync_orchestrator(%s, 'both', ARRAY[]::text[])", (org,))


def test_scheduled_sync_queues_only_active_connections(conn, org):
    make_org(conn, "Lapsed", active=False)
    queued = conn.execute(
        "SELECT qbo_sync.schedule_sync(ARRAY['items', 'customers'], 'pull')"
    ).fetchone()[0]
    assert queued == 2
    rows = conn.execute("SELECT DISTINCT organization_id, source FROM qbo_sync_queue").fetchall()
    assert rows == [(org, "schedule")]


@pytest.mark.parametrize("argument", ["entity", "direction", "priority"])
def test_a_huge_argument_is_not_echoed_back_or_logged_in_full(conn, org, pg_server, argument):
    """A 1 MB argument was repeated in full in the error (and so in the server log)."""
    values = {"entity": "items", "direction": "pull", "priority": "urgent"}
    values[argument] = "x" * 1_000_000
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        conn.execute(CALL, (org, values["entity"], values["direction"], values["priority"]))
    message = info.value.diag.message_primary
    assert message == f"unknown {argument} '{'x' * 40}'... (1000000 characters)"
    log = (pg_server.base_dir / "postgresql.log").read_text(errors="replace")
    assert "x" * 1000 not in log


@pytest.mark.parametrize("entity", ["customers", "items", "invoices", "payments"])
def test_each_entity_has_its_own_function(conn, org, entity):
    job = conn.execute(f"SELECT qbo_sync_{entity}(%s)", (org,)).fetchone()[0]
    row = conn.execute(
        "SELECT organization_id, sync_endpoint, direction, priority::text, source"
        " FROM qbo_sync_queue WHERE id = %s",
        (job,),
    ).fetchone()
    assert row == (org, entity, "both", "high", "manual")
    again = conn.execute(f"SELECT qbo_sync_{entity}(%s, 'pull', 'low')", (org,)).fetchone()[0]
    assert again != job  # another direction: another job
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown direction"):
        conn.execute(f"SELECT qbo_sync_{entity}(%s, 'sideways')", (org,))
    with pytest.raises(psycopg.errors.NoDataFound, match="does not exist"):
        conn.execute(f"SELECT qbo_sync_{entity}(%s)", (uuid.uuid4(),))


def test_the_application_queues_entity_syncs_for_its_organization_only(conn, connect):
    org_a, org_b = make_org(conn, "App A"), make_org(conn, "App B")
    app = app_session(connect, org_a)
    job = app.execute("SELECT qbo_sync_invoices(%s, 'pull')", (org_a,)).fetchone()[0]
    summary = app.execute("SELECT qbo_sync_orchestrator(%s, 'push')", (org_a,)).fetchone()[0]
    assert len(summary["jobs"]) == 4
    for entity in ("customers", "items", "invoices", "payments"):
        with pytest.raises(psycopg.errors.NoDataFound, match="does not exist"):
            app.execute(f"SELECT qbo_sync_{entity}(%s)", (org_b,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect(user=MONITOR).execute("SELECT qbo_sync_items(%s)", (org_a,))
    queued = conn.execute("SELECT DISTINCT organization_id FROM qbo_sync_queue").fetchall()
    assert queued == [(org_a,)]
    assert conn.execute("SELECT source FROM qbo_sync_queue WHERE id = %s", (job,)).fetchone() == (
        "manual",
    )

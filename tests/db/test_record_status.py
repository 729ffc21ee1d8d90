"""Per-record status in SQL: qbo_sync_record_status (one row per synced row, with the caller's
row-level security), qbo_sync_record_counts (from the partial indexes), and the functions that
retry or skip a record, with their privilege boundaries and argument checks."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from psycopg import errors

from tests.conftest import make_org
from tests.db.qbo_jobs import LoggedServer, connect_realm
from tests.db.test_pull import local_rows, pull
from tests.db.test_qbo_calls import outcome, run_worker
from tests.db.test_roles import APP, MONITOR, app_session, scalar

STATUS_COLUMNS = (
    "organization_id, entity, record_id, qbo_id, state, error_class, error_code, error_message,"
    " intuit_tid, attempts, last_synced_at, local_version, synced_version, conflict_id"
)


def add_customer(
    conn: psycopg.Connection, org: uuid.UUID, name: str, status: str, qbo_id: str | None, **more
) -> uuid.UUID:
    """A customer row in `status` (written as the sync would, so change tracking leaves it)."""
    row_id = uuid.uuid4()
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        conn.execute(
            """INSERT INTO customer_profile (id, organization_id, display_name, qbo_id, qbo_sync_token,
                                             qbo_sync_status, qbo_local_version, qbo_synced_version,
                                             qbo_sync_error, qbo_sync_error_class, qbo_sync_error_code,
                                             qbo_intuit_tid, qbo_sync_attempts, qbo_deleted_at)
               VALUES (%(id)s, %(org)s, %(name)s, %(qbo_id)s, '3', %(status)s, %(local)s, %(synced)s,
                       %(error)s, %(class)s, %(code)s, %(tid)s, %(attempts)s, %(deleted)s)""",
            {
                "id": row_id,
                "org": org,
                "name": name,
                "qbo_id": qbo_id,
                "status": status,
                "local": more.get("local", 2 if status != "synced" else 1),
                "synced": more.get("synced", 1),
                "error": more.get("error"),
                "class": more.get("error_class"),
                "code": more.get("error_code"),
                "tid": more.get("tid"),
                "attempts": more.get("attempts", 0),
                "deleted": more.get("deleted"),
            },
        )
        # versions after the insert (an insert by the sync is synced at its version)
        conn.execute(
            "UPDATE customer_profile SET qbo_local_version = %s, qbo_synced_version = %s"
            " WHERE id = %s",
            (more.get("local", 2 if status != "synced" else 1), more.get("synced", 1), row_id),
        )
    return row_id


@pytest.fixture
def records(conn: psycopg.Connection) -> dict:
    """Two organizations: A with a customer in each state, B with one in error."""
    org_a, org_b = make_org(conn, "Org A"), make_org(conn, "Org B")
    ids = {
        "synced": add_customer(conn, org_a, "Synced", "synced", "1"),
        "pending": add_customer(conn, org_a, "Pending", "pending", "2"),
        "held": add_customer(
            conn, org_a, "Held", "held", None, error="waits", error_class="dependency"
        ),
        "error": add_customer(
            conn,
            org_a,
            "Error",
            "error",
            "4",
            error="Duplicate Name Exists Error",
            error_class="validation",
            error_code="6240",
            tid="tid-4",
            attempts=3,
        ),
        "deleted": add_customer(
            conn, org_a, "Deleted", "synced", "5", deleted=dt.datetime.now(dt.UTC)
        ),
        "create_refused": add_customer(
            conn, org_a, "Refused", "error", None, error="bad", error_class="validation"
        ),
        "conflict": add_customer(
            conn, org_a, "Conflict", "conflict", "6", error_class="conflict", local=1
        ),
        "b_error": add_customer(conn, org_b, "B error", "error", "9", error_class="validation"),
    }
    conflict = conn.execute(
        """INSERT INTO qbo_sync_conflict (organization_id, entity, local_id, qbo_id, status, policy)
           VALUES (%s, 'customers', %s, '6', 'held', 'hold') RETURNING id""",
        (org_a, ids["conflict"]),
    ).fetchone()[0]
    return {"a": org_a, "b": org_b, "ids": ids, "conflict": conflict}


def status_of(conn: psycopg.Connection, record_id: uuid.UUID) -> dict:
    cur = conn.execute(
        f"SELECT {STATUS_COLUMNS} FROM qbo_sync_record_status WHERE record_id = %s", (record_id,)
    )
    names = [c.name for c in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def test_every_synced_row_has_its_state_with_the_error_and_the_open_conflict(conn, records):
    ids = records["ids"]
    states = {
        name: status_of(conn, row_id)["state"] for name, row_id in ids.items() if name != "b_error"
    }
    assert states == {
        "synced": "synced",
        "pending": "pending",
        "held": "held",
        "error": "error",
        "deleted": "deleted",
        "create_refused": "error",
        "conflict": "conflict",
    }
    error = status_of(conn, ids["error"])
    assert error["entity"] == "customers" and error["qbo_id"] == "4"
    assert (error["error_class"], error["error_code"], error["intuit_tid"]) == (
        "validation",
        "6240",
        "tid-4",
    )
    assert error["error_message"] == "Duplicate Name Exists Error"
    assert error["attempts"] == 3
    assert (error["local_version"], error["synced_version"]) == (2, 1)
    assert error["conflict_id"] is None
    assert status_of(conn, ids["conflict"])["conflict_id"] == records["conflict"]
    # joined to the business row by record_id
    joined = conn.execute(
        """SELECT c.display_name, s.state FROM customer_profile AS c
             JOIN qbo_sync_record_status AS s ON s.record_id = c.id AND s.entity = 'customers'
            WHERE c.organization_id = %s AND s.state IN ('held', 'pending') ORDER BY 1""",
        (records["a"],),
    ).fetchall()
    assert joined == [("Held", "held"), ("Pending", "pending")]


def test_the_four_entities_are_listed(conn, records):
    org = records["a"]
    item = conn.execute(
        "INSERT INTO item_record (organization_id, name) VALUES (%s, 'Widget') RETURNING id", (org,)
    ).fetchone()[0]
    invoice = conn.execute(
        "INSERT INTO invoice_record (organization_id) VALUES (%s) RETURNING id", (org,)
    ).fetchone()[0]
    payment = conn.execute(
        "INSERT INTO invoice_payment (organization_id, invoice_id, amount) VALUES (%s, %s, 5)"
        " RETURNING id",
        (org, invoice),
    ).fetchone()[0]
    for entity, row_id in (("items", item), ("invoices", invoice), ("payments", payment)):
        status = status_of(conn, row_id)
        assert (status["entity"], status["state"]) == (entity, "pending")


def test_counts_per_organization_and_entity_come_from_the_partial_indexes(conn, records):
    counts = conn.execute(
        "SELECT entity, state, records FROM qbo_sync_record_counts WHERE organization_id = %s"
        " ORDER BY state",
        (records["a"],),
    ).fetchall()
    assert counts == [
        ("customers", "conflict", 1),
        ("customers", "error", 2),
        ("customers", "held", 1),
        ("customers", "pending", 1),
    ]
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT * FROM qbo_sync_record_counts WHERE organization_id = %s",
            (records["a"],),
        )
    )
    for index in (
        "customer_profile_unsynced_idx",
        "item_record_unsynced_idx",
        "invoice_record_unsynced_idx",
        "invoice_payment_unsynced_idx",
    ):
        assert index in plan, plan


def test_the_application_sees_its_organizations_records_and_the_monitor_every_one(
    conn, connect, records
):
    app = app_session(connect, records["a"])
    seen = {r[0] for r in app.execute("SELECT organization_id FROM qbo_sync_record_status")}
    assert seen == {records["a"]}
    assert {r[0] for r in app.execute("SELECT organization_id FROM qbo_sync_record_counts")} == {
        records["a"]
    }
    monitor = connect(user=MONITOR)
    seen = {r[0] for r in monitor.execute("SELECT organization_id FROM qbo_sync_record_status")}
    assert seen == {records["a"], records["b"]}
    assert status_of(monitor, records["ids"]["error"])["error_code"] == "6240"
    # the monitor reads the status columns, not the business values
    with pytest.raises(errors.InsufficientPrivilege):
        monitor.execute("SELECT display_name FROM customer_profile")


def test_retry_puts_a_record_back_to_pending_and_queues_a_push(conn, connect, records):
    app = app_session(connect, records["a"])
    record = records["ids"]["error"]
    job = scalar(app, "SELECT qbo_sync_retry_record('customers', %s)", (record,))
    status = status_of(conn, record)
    assert status["state"] == "pending"
    assert status["attempts"] == 0
    assert status["error_message"] is None and status["error_class"] is None
    assert status["local_version"] > status["synced_version"]
    queued = conn.execute(
        "SELECT organization_id, sync_endpoint, direction, status FROM qbo_sync_queue WHERE id = %s",
        (job,),
    ).fetchone()
    assert queued == (records["a"], "customers", "push", "pending")
    history = conn.execute(
        "SELECT sync_type, queue_job_id, summary FROM qbo_sync_history WHERE sync_type = 'retry'"
    ).fetchone()
    assert history[1] == job
    assert history[2]["record_id"] == str(record)
    assert history[2]["former_state"] == "error" and history[2]["by"] == APP
    # a held record too
    scalar(app, "SELECT qbo_sync_retry_record('customers', %s)", (records["ids"]["held"],))
    assert status_of(conn, records["ids"]["held"])["state"] == "pending"


def test_skip_of_a_record_qbo_has_gives_the_change_up_and_refetches_it(conn, connect, records):
    app = app_session(connect, records["a"])
    record = records["ids"]["error"]
    job = scalar(
        app, "SELECT qbo_sync_skip_record('customers', %s, 'the name is taken')", (record,)
    )
    status = status_of(conn, record)
    assert status["state"] == "synced"
    assert status["local_version"] == status["synced_version"]
    assert status["error_message"] is None
    token = scalar(conn, "SELECT qbo_sync_token FROM customer_profile WHERE id = %s", (record,))
    assert token is None  # so the refetch applies QBO's object even at the same SyncToken
    queued = conn.execute(
        "SELECT sync_endpoint, direction, entity_ids, payload FROM qbo_sync_queue WHERE id = %s",
        (job,),
    ).fetchone()
    assert queued == ("customers", "pull", ["4"], {"refetch": True})
    summary = scalar(
        conn,
        "SELECT summary FROM qbo_sync_history WHERE sync_type = 'skip' AND queue_job_id = %s",
        (job,),
    )
    assert summary["reason"] == "the name is taken"
    assert summary["former_state"] == "error" and summary["former_error_code"] == "6240"


def test_skip_of_a_record_qbo_never_had_keeps_it_local_until_it_changes(conn, connect, records):
    app = app_session(connect, records["a"])
    record = records["ids"]["create_refused"]
    assert (
        scalar(app, "SELECT qbo_sync_skip_record('customers', %s, 'test data')", (record,)) is None
    )
    status = status_of(conn, record)
    assert (status["state"], status["error_code"]) == ("error", "skipped")
    assert "test data" in status["error_message"]
    assert status["local_version"] == status["synced_version"]
    assert scalar(conn, "SELECT count(*) FROM qbo_sync_history WHERE sync_type = 'skip'") == 1
    # the application changes it: pending again
    app.execute("UPDATE customer_profile SET display_name = 'Refused 2' WHERE id = %s", (record,))
    assert status_of(conn, record)["state"] == "pending"


def test_a_record_waiting_on_a_held_conflict_is_left_to_its_resolution(conn, connect, records):
    app = app_session(connect, records["a"])
    record = records["ids"]["conflict"]
    for call in (
        "SELECT qbo_sync_retry_record('customers', %s)",
        "SELECT qbo_sync_skip_record('customers', %s, 'x')",
    ):
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="waits for a person") as info:
            app.execute(call, (record,))
        assert "qbo_sync_resolve_conflict" in (info.value.diag.message_hint or "")
    assert status_of(conn, record)["state"] == "conflict"
    # once resolved (no held conflict left), a conflict record may be retried
    conn.execute(
        "UPDATE qbo_sync_conflict SET status = 'resolved' WHERE id = %s", (records["conflict"],)
    )
    scalar(app, "SELECT qbo_sync_retry_record('customers', %s)", (record,))
    assert status_of(conn, record)["state"] == "pending"


def test_another_organizations_application_cannot_retry_or_skip(conn, connect, records):
    app_b = app_session(connect, records["b"])
    record = records["ids"]["error"]
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app_b.execute("SELECT qbo_sync_retry_record('customers', %s)", (record,))
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app_b.execute("SELECT qbo_sync_skip_record('customers', %s, 'mine now')", (record,))
    # a session naming no organization acts for none
    with pytest.raises(errors.NoDataFound):
        app_session(connect, None).execute(
            "SELECT qbo_sync_retry_record('customers', %s)", (record,)
        )
    assert status_of(conn, record)["state"] == "error"
    assert scalar(conn, "SELECT count(*) FROM qbo_sync_queue") == 0
    assert scalar(conn, "SELECT count(*) FROM qbo_sync_history") == 0


def test_the_monitor_cannot_retry_or_skip(conn, connect, records):
    monitor = connect(user=MONITOR)
    record = records["ids"]["error"]
    with pytest.raises(errors.InsufficientPrivilege):
        monitor.execute("SELECT qbo_sync_retry_record('customers', %s)", (record,))
    with pytest.raises(errors.InsufficientPrivilege):
        monitor.execute("SELECT qbo_sync_skip_record('customers', %s, 'x')", (record,))
    assert status_of(conn, record)["state"] == "error"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            "qbo_sync_retry_record('vendors', %(id)s)",
            errors.InvalidParameterValue,
            "unknown entity 'vendors'",
        ),
        (
            "qbo_sync_retry_record(NULL, %(id)s)",
            errors.InvalidParameterValue,
            "unknown entity NULL",
        ),
        ("qbo_sync_retry_record('customers', NULL)", errors.NullValueNotAllowed, "record_id"),
        (
            "qbo_sync_retry_record('items', %(id)s)",
            errors.NoDataFound,
            "items record .* does not exist",
        ),
        (
            "qbo_sync_retry_record('customers', %(synced)s)",
            errors.ObjectNotInPrerequisiteState,
            "is synced",
        ),
        (
            "qbo_sync_retry_record('customers', %(deleted)s)",
            errors.ObjectNotInPrerequisiteState,
            "deleted in QBO",
        ),
        ("qbo_sync_skip_record('customers', %(id)s, '')", errors.InvalidParameterValue, "reason"),
        ("qbo_sync_skip_record('customers', %(id)s, NULL)", errors.InvalidParameterValue, "reason"),
        (
            "qbo_sync_skip_record('customers', %(synced)s, 'x')",
            errors.ObjectNotInPrerequisiteState,
            "no change waiting",
        ),
    ],
)
def test_bad_arguments_get_a_clear_error(conn, connect, records, call, error, message):
    app = app_session(connect, records["a"])
    ids = records["ids"]
    params = {"id": ids["error"], "synced": ids["synced"], "deleted": ids["deleted"]}
    with pytest.raises(error, match=message):
        app.execute(f"SELECT {call}", params)
    assert status_of(conn, ids["error"])["state"] == "error"


def test_a_skipped_change_is_replaced_by_qbos_values_through_the_worker(conn, connect):
    """Against the simulator: a local change QBO refused is skipped; the refetch brings QBO's
    values and SyncToken back, and nothing is sent."""
    sim = LoggedServer(limits_enabled=False, seed_customers=3)
    sim.start()
    try:
        connected = connect_realm(conn, sim)
        pull(conn, connected.org, "customers")
        qbo_id = sorted(local_rows(conn, "customers", connected.org), key=int)[0]
        before = local_rows(conn, "customers", connected.org)[qbo_id]
        conn.execute(
            "UPDATE customer_profile SET notes = 'local only' WHERE organization_id = %s AND qbo_id = %s",
            (connected.org, qbo_id),
        )
        app = app_session(connect, connected.org)
        job = scalar(
            app, "SELECT qbo_sync_skip_record('customers', %s, 'not wanted')", (before["id"],)
        )
        writes_before = len([a for a in sim.log.api() if a.method == "POST"])
        run_worker(conn)
        assert outcome(conn, job)["summary"]["refetched"] == 1
        after = local_rows(conn, "customers", connected.org)[qbo_id]
        assert after["notes"] == before["notes"] != "local only"
        assert after["qbo_sync_token"] == before["qbo_sync_token"]
        assert (after["qbo_sync_status"], after["qbo_local_version"]) == (
            "synced",
            after["qbo_synced_version"],
        )
        assert len([a for a in sim.log.api() if a.method == "POST"]) == writes_before
    finally:
        sim.stop()

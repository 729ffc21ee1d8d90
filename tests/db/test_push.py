"""Pushing local changes to QBO through the worker, against a seeded simulator over HTTP:
creates carry a requestid stored before they are sent (a create whose connection dropped after
QBO committed it is not made twice), updates are sparse with the stored SyncToken, QBO's answer
is stored, a row QBO refuses is marked with QBO's message while the others go on, and nothing
pushed comes back as a change."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import local_rows, pull, qbo_objects, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker, sim_control


def push(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> uuid.UUID:
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, 'push')", (org, entity)).fetchone()[0]
    run_worker(conn)
    return job


def add_customer(conn: psycopg.Connection, org: uuid.UUID, name: str, **values) -> uuid.UUID:
    columns = ["organization_id", "display_name", *values]
    placeholders = ", ".join(["%s"] * len(columns))
    return conn.execute(
        f"INSERT INTO customer_profile ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id",
        (org, name, *values.values()),
    ).fetchone()[0]


def by_name(objects: list[dict], name: str) -> list[dict]:
    return [o for o in objects if o.get("DisplayName") == name or o.get("Name") == name]


def test_a_new_local_customer_is_created_in_qbo_once_and_does_not_come_back(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    row_id = add_customer(
        conn, connected.org, "Pushed Bakery", email="bread@example.com", notes="from the app"
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["created"] == 1
    made = by_name(qbo_objects(seeded, connected.access, "customers"), "Pushed Bakery")
    assert len(made) == 1
    assert made[0]["PrimaryEmailAddr"]["Address"] == "bread@example.com"
    assert made[0]["Notes"] == "from the app"
    row = conn.execute(
        "SELECT qbo_id, qbo_sync_token, qbo_sync_status, qbo_request_id,"
        " qbo_local_version = qbo_synced_version FROM customer_profile WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert row == (made[0]["Id"], made[0]["SyncToken"], "synced", None, True)
    # pulling afterwards (CDC, which returns the new customer) changes nothing: our own write
    # is no change
    job = pull(conn, connected.org, "customers")
    summary = outcome(conn, job)["summary"]
    assert summary["mode"] == "incremental" and summary["unchanged"] >= 1
    assert (summary["inserted"], summary["updated"]) == (0, 0)


def test_a_local_change_is_pushed_as_a_sparse_update_with_the_sync_token(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[2]
    conn.execute(
        "UPDATE customer_profile SET notes = 'changed here' WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, some),
    )
    before = local_rows(conn, "customers", connected.org)[some]
    assert before["qbo_local_version"] > before["qbo_synced_version"]
    job = push(conn, connected.org, "customers")
    assert outcome(conn, job)["summary"]["pushed_updates"] == 1
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    assert there["Notes"] == "changed here"
    after = local_rows(conn, "customers", connected.org)[some]
    assert after["qbo_sync_token"] == there["SyncToken"] != before["qbo_sync_token"]
    assert after["qbo_local_version"] == after["qbo_synced_version"]


def test_a_row_qbo_refuses_is_marked_with_its_message_and_the_others_go_on(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    taken = qbo_objects(seeded, connected.access, "customers")[0]["DisplayName"]
    refused = add_customer(conn, connected.org, taken)  # 6240: the name is in use
    accepted = add_customer(conn, connected.org, "A Fresh Name")
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["history"] == "partial"
    assert (result["summary"]["created"], result["summary"]["refused"]) == (1, 1)
    status, error = conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error FROM customer_profile WHERE id = %s", (refused,)
    ).fetchone()
    assert status == "error" and "6240" in error
    assert conn.execute(
        "SELECT qbo_sync_status FROM customer_profile WHERE id = %s", (accepted,)
    ).fetchone() == ("synced",)


def test_a_create_committed_in_qbo_whose_answer_was_lost_is_not_made_twice(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/item"}]},
    )
    conn.execute(
        "INSERT INTO item_record (organization_id, name, item_type, unit_price, income_account_ref)"
        " VALUES (%s, 'Dropped Widget', 'Service', 12.5, '1')",
        (connected.org,),
    )
    job = push(conn, connected.org, "items")
    assert outcome(conn, job)["status"] == "completed"
    made = by_name(qbo_objects(seeded, connected.access, "items"), "Dropped Widget")
    assert len(made) == 1 and Decimal(str(made[0]["UnitPrice"])) == Decimal("12.5")
    counters = sim_control(seeded, "GET", "realms/9341453050298375/counters")["counters"]
    # the first answer was lost after QBO committed; the resent create was answered from
    # the requestid's stored answer
    assert counters.get("fault.drop_after_commit") == 1 and counters.get("requestid.replay") == 1

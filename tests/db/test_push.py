"""Pushing local changes to QBO through the worker, against a seeded simulator over HTTP:
creates carry a requestid stored before they are sent (a create whose connection dropped after
QBO committed it is not made twice), updates are sparse with the stored SyncToken, QBO's answer
is stored, a row QBO refuses is marked with QBO's message while the others go on, and nothing
pushed comes back as a change."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import psycopg
from psycopg import sql
from qbo_sync_db import mapping

from tests.db.engine_tools import insert
from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import local_rows, pull, qbo_objects, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker, sim_control


def push(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> uuid.UUID:
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, 'push')", (org, entity)).fetchone()[0]
    run_worker(conn)
    return job


def add_customer(conn: psycopg.Connection, org: uuid.UUID, name: str, **values) -> uuid.UUID:
    return insert(
        conn, "customer_profile", {"organization_id": org, "display_name": name, **values}
    )


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


def record_of(conn, table: str, row_id) -> dict:
    cur = conn.execute(
        sql.SQL(
            "SELECT qbo_id, qbo_sync_status, qbo_sync_error, qbo_sync_error_class,"
            " qbo_sync_error_code, qbo_intuit_tid, qbo_sync_attempts, qbo_local_version,"
            " qbo_synced_version FROM {} WHERE id = %s"
        ).format(sql.Identifier(table)),
        (row_id,),
    )
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def test_a_create_refused_for_a_name_qbo_has_links_that_object_and_pushes_the_row_to_it(
    conn, seeded
):  # noqa: F811
    connected = connect_realm(conn, seeded)
    there = qbo_objects(seeded, connected.access, "customers")[0]
    taken = there["DisplayName"]
    # nothing local is linked to it (no pull yet): QBO's 6240 links it, and the row's own values
    # (a note QBO does not have) are pushed to it as an update
    row_id = add_customer(conn, connected.org, taken, notes="the app's note")
    other = add_customer(conn, connected.org, "A Fresh Name")
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    assert (summary["linked"], summary["created"], summary["refused"]) == (1, 1, 0)
    same = by_name(qbo_objects(seeded, connected.access, "customers"), taken)
    assert len(same) == 1 and same[0]["Id"] == there["Id"]
    assert same[0]["Notes"] == "the app's note"
    row = record_of(conn, "customer_profile", row_id)
    assert (row["qbo_id"], row["qbo_sync_status"]) == (there["Id"], "synced")
    assert row["qbo_local_version"] == row["qbo_synced_version"]
    assert record_of(conn, "customer_profile", other)["qbo_sync_status"] == "synced"


def test_a_name_qbo_has_for_another_linked_row_is_a_conflict_for_a_person(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "items")  # every QBO item is now linked to a local row
    there = next(o for o in qbo_objects(seeded, connected.access, "items") if o.get("Active", True))
    conn.execute(
        "INSERT INTO item_record (organization_id, name, item_type, unit_price, income_account_ref)"
        " VALUES (%s, %s, 'Service', 99, '1')",
        (connected.org, there["Name"]),
    )
    job = push(conn, connected.org, "items")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["conflicts"] == 1, result
    row_id, status, error_class, code = conn.execute(
        "SELECT id, qbo_sync_status, qbo_sync_error_class, qbo_sync_error_code FROM item_record"
        " WHERE organization_id = %s AND qbo_id IS NULL",
        (connected.org,),
    ).fetchone()
    assert (status, error_class, code) == ("conflict", "conflict", "6240")
    conflict = conn.execute(
        "SELECT qbo_id, local_values, remote_values, status, detected_by FROM qbo_sync_conflict"
        " WHERE organization_id = %s AND local_id = %s",
        (connected.org, row_id),
    ).fetchone()
    assert conflict[0] == there["Id"] and conflict[3:] == ("held", "push")
    assert Decimal(str(conflict[1]["unit_price"])) == 99
    assert conflict[2]["name"] == there["Name"]
    assert len(by_name(qbo_objects(seeded, connected.access, "items"), there["Name"])) == 1
    # a conflict row is not pushed again until a person resolves it or it changes
    job = push(conn, connected.org, "items")
    assert outcome(conn, job)["summary"].get("entity_count", 0) == 0
    # a person renames it: the next push creates it
    conflict_id = conn.execute(
        "SELECT id FROM qbo_sync_conflict WHERE local_id = %s", (row_id,)
    ).fetchone()[0]
    conn.execute(
        "SELECT qbo_sync_resolve_conflict(%s, 'custom', %s)",
        (conflict_id, json.dumps({"name": "Renamed By A Person"})),
    )
    job = push(conn, connected.org, "items")
    assert outcome(conn, job)["summary"]["created"] == 1
    assert len(by_name(qbo_objects(seeded, connected.access, "items"), "Renamed By A Person")) == 1
    assert record_of(conn, "item_record", row_id)["qbo_sync_status"] == "synced"


def test_a_validation_fault_on_one_invoice_leaves_the_rest_of_its_batch_and_its_job_done(
    conn, seeded
):  # noqa: F811
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items"):
        pull(conn, connected.org, entity)
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    good = [
        add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(n), Decimal(4))])
        for n in (1, 2, 3)
    ]
    # QBO refuses an invoice whose total is negative (a business validation fault, 6000)
    bad = add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(1), Decimal(-50))])
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["history"] == "partial", result
    summary = result["summary"]
    assert (summary["created"], summary["refused"], summary["batches"]) == (3, 1, 1)
    for invoice in good:
        assert record_of(conn, "invoice_record", invoice)["qbo_sync_status"] == "synced"
    row = record_of(conn, "invoice_record", bad)
    assert (row["qbo_sync_status"], row["qbo_sync_error_class"]) == ("error", "validation")
    assert row["qbo_sync_error_code"] == "6000" and row["qbo_intuit_tid"]
    assert row["qbo_sync_attempts"] == 1 and "negative" in row["qbo_sync_error"]
    # an 'error' row is skipped until it changes; a change makes it pending and it is pushed
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["summary"]["entity_count"] == 0
    conn.execute(
        "UPDATE invoice_line_item SET unit_price = 50, amount = 50 WHERE invoice_id = %s", (bad,)
    )
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["summary"]["created"] == 1
    row = record_of(conn, "invoice_record", bad)
    assert row["qbo_sync_status"] == "synced" and row["qbo_id"] is not None
    assert (row["qbo_sync_error_class"], row["qbo_sync_error_code"], row["qbo_intuit_tid"]) == (
        None,
        None,
        None,
    )
    assert row["qbo_sync_attempts"] == 0


def test_qbo_answer_to_a_push_never_overwrites_a_change_made_while_it_was_in_flight(conn, org):
    """record_pushed writes the business columns only while the row is at the version pushed;
    what QBO computes (the balance) always."""
    row_id = add_customer(conn, org, "In Flight", notes="as pushed")
    version = conn.execute(
        "SELECT qbo_local_version FROM customer_profile WHERE id = %s", (row_id,)
    ).fetchone()[0]
    # the application changes the row while its push is on its way
    conn.execute("UPDATE customer_profile SET notes = 'changed meanwhile' WHERE id = %s", (row_id,))
    answer = {
        "qbo_id": "901",
        "qbo_sync_token": "0",
        "display_name": "In Flight",
        "notes": "as pushed",
        "balance": "12.50",
        "qbo_raw": {"Id": "901", "SyncToken": "0"},
    }
    conn.execute(
        "SELECT qbo_sync.record_pushed(%s, 'customers', %s, %s, %s, %s, %s)",
        (org, row_id, version, json.dumps(answer), ["display_name", "notes"], ["balance"]),
    )
    notes, balance, status, qbo_id, pending = conn.execute(
        "SELECT notes, balance, qbo_sync_status, qbo_id, qbo_local_version > qbo_synced_version"
        " FROM customer_profile WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert (notes, balance, status, qbo_id, pending) == (
        "changed meanwhile",
        Decimal("12.50"),
        "pending",
        "901",
        True,
    )
    # at the version pushed, QBO's answer is taken whole
    version = conn.execute(
        "SELECT qbo_local_version FROM customer_profile WHERE id = %s", (row_id,)
    ).fetchone()[0]
    conn.execute(
        "SELECT qbo_sync.record_pushed(%s, 'customers', %s, %s, %s, %s, %s)",
        (org, row_id, version, json.dumps(answer), ["display_name", "notes"], ["balance"]),
    )
    assert conn.execute(
        "SELECT notes, qbo_sync_status FROM customer_profile WHERE id = %s", (row_id,)
    ).fetchone() == ("as pushed", "synced")


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
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    made = by_name(qbo_objects(seeded, connected.access, "items"), "Dropped Widget")
    assert len(made) == 1 and Decimal(str(made[0]["UnitPrice"])) == Decimal("12.5")
    counters = sim_control(seeded, "GET", "realms/9341453050298375/counters")["counters"]
    # the answer was lost after QBO committed: the create is not resent blindly, it is looked
    # up by its name first, found, and linked
    assert counters.get("fault.drop_after_commit") == 1 and counters.get("write.item") == 1
    assert result["summary"]["found_after_unknown_outcome"] == 1
    assert conn.execute(
        "SELECT qbo_id, qbo_sync_status, qbo_create_sent_at FROM item_record"
        " WHERE organization_id = %s AND name = 'Dropped Widget'",
        (connected.org,),
    ).fetchone() == (made[0]["Id"], "synced", None)


def add_invoice(conn, org, customer_id, lines) -> uuid.UUID:
    invoice = conn.execute(
        "INSERT INTO invoice_record (organization_id, customer_id, invoice_number, private_note)"
        " VALUES (%s, %s, %s, 'made in the app') RETURNING id",
        (org, customer_id, "APP-" + uuid.uuid4().hex[:6]),
    ).fetchone()[0]
    for number, (item_id, quantity, price) in enumerate(lines, start=1):
        conn.execute(
            "INSERT INTO invoice_line_item (organization_id, invoice_id, line_number, item_id,"
            " description, quantity, unit_price, amount) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (org, invoice, number, item_id, f"line {number}", quantity, price, quantity * price),
        )
    return invoice


def test_an_invoice_with_lines_is_created_and_its_lines_get_qbo_ids(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items", "invoices"):
        pull(conn, connected.org, entity)
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    items = [r for r in local_rows(conn, "items", connected.org).values() if r["is_active"]][:2]
    invoice = add_invoice(
        conn,
        connected.org,
        customer["id"],
        [(items[0]["id"], Decimal(3), Decimal(10)), (items[1]["id"], Decimal(1), Decimal(20))],
    )
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["created"] == 1, result
    row = conn.execute(
        "SELECT qbo_id, total_amount, qbo_local_version = qbo_synced_version FROM invoice_record"
        " WHERE id = %s",
        (invoice,),
    ).fetchone()
    there = next(o for o in qbo_objects(seeded, connected.access, "invoices") if o["Id"] == row[0])
    assert there["CustomerRef"]["value"] == customer["qbo_id"]
    assert there["PrivateNote"] == "made in the app"
    sent = mapping.invoice_lines(there)
    assert [(line["item_id_qbo_id"], line["amount"]) for line in sent] == [
        (items[0]["qbo_id"], Decimal(30)),
        (items[1]["qbo_id"], Decimal(20)),
    ]
    # QBO's totals are authoritative (Automated Sales Tax may add tax): taken as QBO states them
    assert row[1] == Decimal(str(there["TotalAmt"])) and row[2] is True
    lines = conn.execute(
        "SELECT qbo_line_id FROM invoice_line_item WHERE invoice_id = %s ORDER BY line_number",
        (invoice,),
    ).fetchall()
    assert [line[0] for line in lines] == [line["qbo_line_id"] for line in sent]
    # and a pull afterwards changes nothing, lines included
    state = (
        "SELECT i.qbo_updated_at, i.updated_at, i.qbo_sync_token, i.qbo_local_version,"
        " i.qbo_synced_version, array_agg(l.updated_at ORDER BY l.line_number)"
        " FROM invoice_record AS i JOIN invoice_line_item AS l ON l.invoice_id = i.id"
        " WHERE i.id = %s GROUP BY i.id"
    )
    before = conn.execute(state, (invoice,)).fetchone()
    job = pull(conn, connected.org, "invoices")
    assert outcome(conn, job)["status"] == "completed"
    assert conn.execute(state, (invoice,)).fetchone() == before
    assert len(before[5]) == 2


def test_an_invoice_whose_customer_is_not_in_qbo_is_held_then_pushed_after_it(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "items")
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    customer = add_customer(conn, connected.org, "Brand New Client")
    invoice = add_invoice(conn, connected.org, customer, [(item["id"], Decimal(2), Decimal(5))])
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["held"] == 1
    row = record_of(conn, "invoice_record", invoice)
    assert (row["qbo_sync_status"], row["qbo_sync_error_class"], row["qbo_id"]) == (
        "held",
        "dependency",
        None,
    )
    assert "customer is not in QBO yet" in row["qbo_sync_error"]
    push(conn, connected.org, "customers")
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["summary"]["created"] == 1
    assert conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error FROM invoice_record WHERE id = %s", (invoice,)
    ).fetchone() == ("synced", None)


def test_a_payment_of_a_pushed_invoice_is_created_and_applied_to_it(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items", "invoices"):
        pull(conn, connected.org, entity)
    invoices = qbo_objects(seeded, connected.access, "invoices")
    unpaid = next(i for i in invoices if not i.get("LinkedTxn") and Decimal(str(i["Balance"])) > 10)
    local_invoice = local_rows(conn, "invoices", connected.org)[unpaid["Id"]]
    payment = conn.execute(
        "INSERT INTO invoice_payment (organization_id, customer_id, invoice_id, amount,"
        " reference_number) VALUES (%s, %s, %s, 10, 'CHK-77') RETURNING id",
        (connected.org, local_invoice["customer_id"], local_invoice["id"]),
    ).fetchone()[0]
    job = push(conn, connected.org, "payments")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["created"] == 1, result
    qbo_id, status, unapplied = conn.execute(
        "SELECT qbo_id, qbo_sync_status, unapplied_amount FROM invoice_payment WHERE id = %s",
        (payment,),
    ).fetchone()
    there = next(p for p in qbo_objects(seeded, connected.access, "payments") if p["Id"] == qbo_id)
    assert there["PaymentRefNum"] == "CHK-77" and Decimal(str(there["TotalAmt"])) == 10
    assert mapping.paid_invoice(there) == unpaid["Id"]
    assert (status, unapplied) == ("synced", Decimal(0))
    # QBO applied it: the invoice's balance went down by the payment
    after = next(
        i for i in qbo_objects(seeded, connected.access, "invoices") if i["Id"] == unpaid["Id"]
    )
    assert Decimal(str(after["Balance"])) == Decimal(str(unpaid["Balance"])) - 10


def test_a_request_that_fails_the_job_notes_its_class_on_the_rows_it_carried(conn, seeded):
    connected = connect_realm(conn, seeded)
    row_id = add_customer(conn, connected.org, "Not Now Client")
    # the connecting user lost admin rights: QBO answers 401 (code 120) whatever the token
    sim_control(seeded, "PATCH", "realms/9341453050298375/status", {"admin_access": False})
    job = push(conn, connected.org, "customers")
    assert outcome(conn, job)["status"] == "failed"
    row = record_of(conn, "customer_profile", row_id)
    assert (row["qbo_sync_status"], row["qbo_sync_error_class"]) == ("pending", "auth")
    assert row["qbo_sync_error_code"] == "120" and row["qbo_sync_attempts"] == 1
    assert row["qbo_intuit_tid"] and row["qbo_id"] is None
    sim_control(seeded, "PATCH", "realms/9341453050298375/status", {"admin_access": True})
    job = push(conn, connected.org, "customers")
    assert outcome(conn, job)["status"] == "completed"
    row = record_of(conn, "customer_profile", row_id)
    assert row["qbo_sync_status"] == "synced" and row["qbo_id"] is not None
    assert (row["qbo_sync_error_class"], row["qbo_sync_attempts"]) == (None, 0)


def test_a_create_qbo_refused_is_sent_with_a_new_requestid_once_corrected(conn, seeded):
    """QBO answers a requestid it has seen with its first answer, a fault too: a corrected row
    must not be sent under the requestid of the create QBO refused."""
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items"):
        pull(conn, connected.org, entity)
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    bad = add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(1), Decimal(-9))])
    job = push(conn, connected.org, "invoices")  # alone: a single call with the row's requestid
    assert outcome(conn, job)["summary"]["refused"] == 1
    conn.execute(
        "UPDATE invoice_line_item SET unit_price = 9, amount = 9 WHERE invoice_id = %s", (bad,)
    )
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["summary"]["created"] == 1, result
    assert record_of(conn, "invoice_record", bad)["qbo_sync_status"] == "synced"


def test_line_ids_are_not_taken_for_lines_changed_while_the_push_was_in_flight(conn, org):
    customer = add_customer(conn, org, "Lines In Flight")
    invoice = add_invoice(conn, org, customer, [(None, Decimal(1), Decimal(5))] * 2)
    version = conn.execute(
        "SELECT qbo_local_version FROM invoice_record WHERE id = %s", (invoice,)
    ).fetchone()[0]
    # a line inserted before the first while QBO was answering: positions no longer match
    conn.execute(
        "INSERT INTO invoice_line_item (organization_id, invoice_id, line_number, description,"
        " quantity, unit_price, amount) VALUES (%s, %s, 0, 'meanwhile', 1, 1, 1)",
        (org, invoice),
    )
    assert conn.execute(
        "SELECT qbo_sync.record_pushed_lines(%s, %s, %s, %s)", (org, invoice, ["1", "2"], version)
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(qbo_line_id) FROM invoice_line_item WHERE invoice_id = %s", (invoice,)
    ).fetchone() == (0,)
    current = conn.execute(
        "SELECT qbo_local_version FROM invoice_record WHERE id = %s", (invoice,)
    ).fetchone()[0]
    assert conn.execute(
        "SELECT qbo_sync.record_pushed_lines(%s, %s, %s, %s)",
        (org, invoice, ["1", "2", "3"], current),
    ).fetchone() == (3,)

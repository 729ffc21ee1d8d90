"""Local deletions, voids and inactivation pushed as QBO does them per entity, through the worker
against a seeded simulator over HTTP: invoices and payments deleted (operation=delete with Id and
SyncToken), customers and items made inactive (QBO cannot delete name-list objects), invoices and
payments voided, a deletion QBO refuses kept with its attempts and error, a deletion of what QBO
already deleted done."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import time
import uuid
from decimal import Decimal

import psycopg

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import change, local_rows, pull, seeded  # noqa: F401
from tests.db.test_pull import qbo_objects as read_qbo
from tests.db.test_push import add_customer, push
from tests.db.test_qbo_calls import outcome


def qbo_objects(sim, token: str, entity: str) -> list[dict]:
    """What QBO holds, read by the test (waiting out a 429 the job's own calls left behind)."""
    for _ in range(20):
        try:
            return read_qbo(sim, token, entity)
        except AssertionError as failed:
            if "ThrottleExceeded" not in str(failed):
                raise
            time.sleep(0.5)
    return read_qbo(sim, token, entity)


def deletion(conn: psycopg.Connection, org: uuid.UUID, entity: str, qbo_id: str) -> tuple:
    return conn.execute(
        "SELECT pushed_at IS NOT NULL, attempts, last_error FROM qbo_sync.local_deletion"
        " WHERE organization_id = %s AND entity = %s AND qbo_id = %s",
        (org, entity, qbo_id),
    ).fetchone()


def pulled(conn, seeded, *entities):
    connected = connect_realm(conn, seeded)
    for entity in entities:
        pull(conn, connected.org, entity)
    return connected


def unlinked_invoices(sim, token: str) -> list[dict]:
    return [
        i
        for i in qbo_objects(sim, token, "invoices")
        if not i.get("LinkedTxn") and Decimal(str(i["TotalAmt"])) > 0
    ]


def test_locally_deleted_payments_and_an_invoice_are_deleted_in_qbo(conn, seeded):
    connected = pulled(conn, seeded, "customers", "items", "invoices", "payments")
    payments = sorted(local_rows(conn, "payments", connected.org), key=int)[:2]
    conn.execute(
        "DELETE FROM invoice_payment WHERE organization_id = %s AND qbo_id = ANY (%s)",
        (connected.org, payments),
    )
    job = push(conn, connected.org, "payments")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["deleted"] == 2, result
    assert result["summary"]["batches"] == 1  # two deletions: one batch
    left = {p["Id"] for p in qbo_objects(seeded, connected.access, "payments")}
    for qbo_id in payments:
        assert qbo_id not in left
        assert deletion(conn, connected.org, "payments", qbo_id) == (True, 1, None)

    invoice = unlinked_invoices(seeded, connected.access)[0]["Id"]
    conn.execute(
        "DELETE FROM invoice_record WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, invoice),
    )
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["summary"]["deleted"] == 1
    assert invoice not in {i["Id"] for i in qbo_objects(seeded, connected.access, "invoices")}
    assert deletion(conn, connected.org, "invoices", invoice) == (True, 1, None)


def test_a_locally_deleted_customer_and_item_are_made_inactive_in_qbo(conn, seeded):
    connected = connect_realm(conn, seeded)
    customer = add_customer(conn, connected.org, "Short Lived Client")
    conn.execute(
        "INSERT INTO item_record (organization_id, name, item_type, unit_price, income_account_ref)"
        " VALUES (%s, 'Short Lived Item', 'Service', 5, '1')",
        (connected.org,),
    )
    push(conn, connected.org, "customers")
    push(conn, connected.org, "items")
    customer_id = conn.execute(
        "SELECT qbo_id FROM customer_profile WHERE id = %s", (customer,)
    ).fetchone()[0]
    item_id = conn.execute(
        "SELECT qbo_id FROM item_record WHERE organization_id = %s AND name = 'Short Lived Item'",
        (connected.org,),
    ).fetchone()[0]
    assert customer_id and item_id
    conn.execute("DELETE FROM customer_profile WHERE id = %s", (customer,))
    conn.execute("DELETE FROM item_record WHERE qbo_id = %s", (item_id,))
    for entity, qbo_id in (("customers", customer_id), ("items", item_id)):
        job = push(conn, connected.org, entity)
        result = outcome(conn, job)
        assert result["status"] == "completed" and result["summary"]["deactivated"] == 1, result
        there = next(o for o in qbo_objects(seeded, connected.access, entity) if o["Id"] == qbo_id)
        assert there["Active"] is False  # still there: QBO cannot delete a name-list object
        assert deletion(conn, connected.org, entity, qbo_id) == (True, 1, None)


def test_a_deletion_qbo_refuses_is_kept_with_its_attempts_and_error(conn, seeded):
    connected = pulled(conn, seeded, "customers", "items", "invoices", "payments")
    paid = next(
        i
        for i in qbo_objects(seeded, connected.access, "invoices")
        if any(link.get("TxnType") == "Payment" for link in i.get("LinkedTxn") or ())
    )
    conn.execute(
        "DELETE FROM invoice_record WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, paid["Id"]),
    )
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["deleted"] == 0, result
    done, attempts, error = deletion(conn, connected.org, "invoices", paid["Id"])
    assert (done, attempts) == (False, 1) and "linked" in error
    assert paid["Id"] in {i["Id"] for i in qbo_objects(seeded, connected.access, "invoices")}
    push(conn, connected.org, "invoices")  # tried again on the next push
    assert deletion(conn, connected.org, "invoices", paid["Id"])[:2] == (False, 2)


def test_a_deletion_of_an_object_qbo_already_deleted_is_done(conn, seeded):
    connected = pulled(conn, seeded, "customers", "items", "invoices")
    invoice = unlinked_invoices(seeded, connected.access)[1]["Id"]
    change(seeded, "Invoice", "delete", invoice)  # a QBO user deleted it meanwhile
    conn.execute(
        "DELETE FROM invoice_record WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, invoice),
    )
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert deletion(conn, connected.org, "invoices", invoice) == (True, 1, None)


def test_a_voided_invoice_and_payment_are_voided_in_qbo(conn, seeded):
    connected = pulled(conn, seeded, "customers", "items", "invoices", "payments")
    invoice = unlinked_invoices(seeded, connected.access)[2]["Id"]
    conn.execute(
        "UPDATE invoice_record SET is_voided = true WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, invoice),
    )
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["voided"] == 1, result
    there = next(i for i in qbo_objects(seeded, connected.access, "invoices") if i["Id"] == invoice)
    assert there["PrivateNote"].startswith("Voided") and Decimal(str(there["TotalAmt"])) == 0
    row = local_rows(conn, "invoices", connected.org)[invoice]
    assert (row["qbo_sync_status"], row["is_voided"], row["total_amount"]) == (
        "synced",
        True,
        Decimal(0),
    )
    assert row["qbo_sync_token"] == there["SyncToken"]

    payment = sorted(local_rows(conn, "payments", connected.org), key=int)[0]
    conn.execute(
        "UPDATE invoice_payment SET is_voided = true WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, payment),
    )
    job = push(conn, connected.org, "payments")
    result = outcome(conn, job)
    assert result["status"] == "completed" and result["summary"]["voided"] == 1, result
    there = next(p for p in qbo_objects(seeded, connected.access, "payments") if p["Id"] == payment)
    assert Decimal(str(there["TotalAmt"])) == 0 and there["PrivateNote"].startswith("Voided")
    row = local_rows(conn, "payments", connected.org)[payment]
    assert (row["qbo_sync_status"], row["qbo_sync_token"]) == ("synced", there["SyncToken"])


def test_a_customer_made_inactive_here_is_made_inactive_in_qbo(conn, seeded):
    connected = connect_realm(conn, seeded)
    customer = add_customer(conn, connected.org, "Retiring Client")
    push(conn, connected.org, "customers")
    conn.execute("UPDATE customer_profile SET is_active = false WHERE id = %s", (customer,))
    job = push(conn, connected.org, "customers")
    assert outcome(conn, job)["summary"]["pushed_updates"] == 1
    qbo_id = conn.execute(
        "SELECT qbo_id FROM customer_profile WHERE id = %s", (customer,)
    ).fetchone()[0]
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == qbo_id)
    assert there["Active"] is False


def test_a_deletion_with_a_stale_sync_token_reads_qbo_again_and_is_done(conn, seeded):
    connected = pulled(conn, seeded, "customers", "items", "invoices")
    invoice = unlinked_invoices(seeded, connected.access)[3]["Id"]
    customer = add_customer(conn, connected.org, "Edited Then Deleted")
    push(conn, connected.org, "customers")
    customer_id = conn.execute(
        "SELECT qbo_id FROM customer_profile WHERE id = %s", (customer,)
    ).fetchone()[0]
    # QBO's users edit both meanwhile: the SyncTokens stored here are stale
    change(seeded, "Invoice", "update", invoice, PrivateNote="edited in QBO")
    change(seeded, "Customer", "update", customer_id, Notes="edited in QBO")
    conn.execute(
        "DELETE FROM invoice_record WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, invoice),
    )
    conn.execute("DELETE FROM customer_profile WHERE id = %s", (customer,))
    for entity, qbo_id, counter in (
        ("invoices", invoice, "deleted"),
        ("customers", customer_id, "deactivated"),
    ):
        job = push(conn, connected.org, entity)
        result = outcome(conn, job)
        assert result["status"] == "completed" and result["summary"][counter] == 1, result
        assert deletion(conn, connected.org, entity, qbo_id)[0] is True
    assert invoice not in {i["Id"] for i in qbo_objects(seeded, connected.access, "invoices")}
    there = next(
        o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == customer_id
    )
    assert there["Active"] is False


def test_deletions_qbo_refused_in_a_batch_go_through_once_what_blocked_them_is_gone(conn, seeded):
    """Two invoices with payments deleted here: QBO refuses both (one batch). Once a QBO user
    deleted the payments, the next push sends them again as a new request (not answered from
    the refusal) and they are deleted."""
    from tests.db.test_qbo_calls import sim_control

    connected = pulled(conn, seeded, "customers", "items", "invoices", "payments")
    sim_control(seeded, "PATCH", "config", {"payment_bumps_invoice": False})
    paid = [
        i
        for i in qbo_objects(seeded, connected.access, "invoices")
        if any(link.get("TxnType") == "Payment" for link in i.get("LinkedTxn") or ())
    ][:2]
    ids = [i["Id"] for i in paid]
    conn.execute(
        "DELETE FROM invoice_record WHERE organization_id = %s AND qbo_id = ANY (%s)",
        (connected.org, ids),
    )
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["summary"]["batches"] == 1
    assert all(deletion(conn, connected.org, "invoices", i)[:2] == (False, 1) for i in ids)
    for invoice in paid:
        for link in invoice["LinkedTxn"]:
            if link["TxnType"] == "Payment":
                change(seeded, "Payment", "delete", link["TxnId"])
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["summary"]["deleted"] == 2, result
    left = {i["Id"] for i in qbo_objects(seeded, connected.access, "invoices")}
    assert not left & set(ids)
    assert all(deletion(conn, connected.org, "invoices", i) == (True, 2, None) for i in ids)

"""Webhooks end to end, every piece real: a change made in the simulator as a QBO user would is
signed and POSTed by the simulator to `qbo-sync listen` (a separate process), stored in
qbo_webhook_log, turned into queue work by the worker's loop, pulled, and reaches the local row.
For every entity, and for create, update, delete, void and inactivation."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.db.qbo_jobs import LoggedServer, connect_realm
from tests.db.test_listener import VERIFIER, listener_dsn, listening_process  # noqa: F401
from tests.db.test_pull import APP_TABLE, pull, qbo_objects
from tests.db.test_qbo_calls import sim_control
from tests.simulator.simtools import REALM


@pytest.fixture
def webhook_sim(listening_process) -> Iterator[LoggedServer]:  # noqa: F811
    """A seeded simulator that sends its webhooks to the listener, signed with its token."""
    _, url = listening_process
    server = LoggedServer(
        seed_customers=4,
        seed_items=3,
        seed_invoices=4,
        seed_payments=2,
        webhook_urls=[url + "/webhooks/qbo"],
        verifier_token=VERIFIER,
        webhook_window_s=0.1,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def background_worker(db_dsn: str) -> Iterator[None]:
    """The queue processor as pg_cron runs it (it drains the queue and processes webhooks on
    every loop), on its own connection, stopped at the end of the test."""
    errors: list[BaseException] = []
    pid: list[int] = []

    def work() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as worker:
            pid.append(worker.info.backend_pid)
            try:
                worker.execute("CALL qbo_sync.worker(120, NULL, false)")
            except psycopg.errors.QueryCanceled:
                pass
            except BaseException as exc:  # reported by the test
                errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    with psycopg.connect(db_dsn, autocommit=True) as control:
        control.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
    thread.join(timeout=30)
    assert not errors, errors


def wait_for(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not within {seconds} s: {what}")


def row(conn: psycopg.Connection, entity: str, org: uuid.UUID, qbo_id: str) -> dict | None:
    cur = conn.execute(
        f"SELECT * FROM {APP_TABLE[entity]} WHERE organization_id = %s AND qbo_id = %s",
        (org, qbo_id),
    )
    found = cur.fetchone()
    names = [c.name for c in cur.description or []]
    return dict(zip(names, found, strict=True)) if found else None


def change(sim: LoggedServer, entity: str, operation: str, qbo_id: str | None = None, **fields):
    body: dict[str, Any] = {"entity": entity, "operation": operation}
    if qbo_id is not None:
        body["id"] = qbo_id
    if fields:
        body["fields"] = fields
    answer = sim_control(sim, "POST", f"realms/{REALM}/change", body)
    assert "Fault" not in answer, answer
    return answer[entity]


def test_qbo_changes_reach_the_tables_through_webhooks(conn, webhook_sim, background_worker):
    connected = connect_realm(conn, webhook_sim)
    org = connected.org
    for entity in ("customers", "items", "invoices", "payments"):
        pull(conn, org, entity)  # the first full pull; from here on webhooks bring the changes
    conn.execute("DELETE FROM qbo_webhook_log")
    webhook_sim.log.answers.clear()

    def arrives(entity: str, qbo_id: str, test: Callable[[dict], bool], what: str) -> dict:
        return wait_for(
            lambda: (r := row(conn, entity, org, qbo_id)) is not None and test(r) and r,
            f"{what} ({entity} {qbo_id})",
        )

    # create and update, every entity
    made = change(webhook_sim, "Customer", "create", DisplayName="Webhook Bakery")
    customer_id = str(made["Id"])
    arrives("customers", customer_id, lambda r: r["display_name"] == "Webhook Bakery", "create")
    change(webhook_sim, "Customer", "update", customer_id, Notes="called by webhook")
    arrives("customers", customer_id, lambda r: r["notes"] == "called by webhook", "update")

    item = change(
        webhook_sim,
        "Item",
        "create",
        Name="Webhook Widget",
        Type="Service",
        UnitPrice=12.5,
        IncomeAccountRef={"value": "1"},
    )
    item_id = str(item["Id"])
    arrives("items", item_id, lambda r: r["name"] == "Webhook Widget", "create")
    change(webhook_sim, "Item", "update", item_id, UnitPrice=13)
    arrives("items", item_id, lambda r: r["unit_price"] == 13, "update")

    invoice = change(
        webhook_sim,
        "Invoice",
        "create",
        CustomerRef={"value": customer_id},
        Line=[
            {
                "Amount": 25,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 2, "UnitPrice": 12.5},
            }
        ],
    )
    invoice_id = str(invoice["Id"])
    local_invoice = arrives("invoices", invoice_id, lambda r: r["total_amount"] == 25, "create")
    customer_row = row(conn, "customers", org, customer_id)
    assert local_invoice["customer_id"] == customer_row["id"]
    change(webhook_sim, "Invoice", "update", invoice_id, PrivateNote="edited in QBO")
    arrives("invoices", invoice_id, lambda r: r["private_note"] == "edited in QBO", "update")

    payment = change(
        webhook_sim,
        "Payment",
        "create",
        CustomerRef={"value": customer_id},
        TotalAmt=10,
        Line=[{"Amount": 10, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    )
    payment_id = str(payment["Id"])
    arrives("payments", payment_id, lambda r: r["amount"] == 10, "create")
    arrives("invoices", invoice_id, lambda r: r["balance_due"] == 15, "the payment's effect")
    change(webhook_sim, "Payment", "update", payment_id, PrivateNote="paid by phone")
    arrives("payments", payment_id, lambda r: r["private_note"] == "paid by phone", "update")

    # delete, void and inactivation, applied as what they are
    change(webhook_sim, "Payment", "delete", payment_id)
    arrives("payments", payment_id, lambda r: r["qbo_deleted_at"] is not None, "delete")
    change(webhook_sim, "Invoice", "void", invoice_id)
    arrives(
        "invoices", invoice_id, lambda r: r["is_voided"] and r["qbo_deleted_at"] is None, "void"
    )
    change(webhook_sim, "Customer", "deactivate", customer_id)
    arrives("customers", customer_id, lambda r: r["is_active"] is False, "inactivation")
    change(webhook_sim, "Item", "deactivate", item_id)
    arrives("items", item_id, lambda r: r["is_active"] is False, "inactivation")

    # each webhook's job read just the objects it named (by Id, no CDC, no full pass)
    modes = conn.execute(
        "SELECT DISTINCT h.summary ->> 'mode' FROM qbo_sync_history AS h"
        " JOIN qbo_sync_queue AS q ON q.id = h.queue_job_id WHERE q.source = 'webhook'"
    ).fetchall()
    assert modes == [("webhook objects",)], modes
    assert not [a for a in webhook_sim.log.api() if a.path.endswith("/cdc")]

    # every webhook was signed, stored, processed; none came back as a local change to push
    statuses = conn.execute(
        "SELECT status, count(*) FROM qbo_webhook_log GROUP BY status"
    ).fetchall()
    assert dict(statuses).keys() <= {"processed", "received"}, statuses
    for entity, table in APP_TABLE.items():
        pending = conn.execute(
            f"SELECT count(*) FROM {table} WHERE organization_id = %s"
            " AND qbo_local_version > qbo_synced_version",
            (org,),
        ).fetchone()[0]
        assert pending == 0, entity


@pytest.fixture
def unruly_sim(listening_process) -> Iterator[LoggedServer]:  # noqa: F811
    """Webhooks as Intuit warns they may come: every POST delivered twice, events shuffled and
    batches in reverse order."""
    _, url = listening_process
    server = LoggedServer(
        seed_customers=3,
        webhook_urls=[url + "/webhooks/qbo"],
        verifier_token=VERIFIER,
        webhook_window_s=0.3,
        webhook_max_events=2,
        webhook_duplicate_rate=1.0,
        webhook_reorder=True,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_duplicated_and_reordered_webhooks_change_each_row_once_to_qbos_latest(
    conn, unruly_sim, background_worker
):
    connected = connect_realm(conn, unruly_sim)
    org = connected.org
    pull(conn, org, "customers")
    conn.execute("DELETE FROM qbo_webhook_log")
    rows = conn.execute(
        "SELECT qbo_id FROM customer_profile WHERE organization_id = %s ORDER BY qbo_id", (org,)
    ).fetchall()
    targets = [r[0] for r in rows]
    for version in range(1, 4):  # three edits of each customer, in quick succession
        for qbo_id in targets:
            change(unruly_sim, "Customer", "update", qbo_id, Notes=f"version {version}")
    sim_control(unruly_sim, "POST", "webhooks/flush")

    def settled() -> bool:
        deliveries = sim_control(unruly_sim, "GET", "webhooks/deliveries")
        notes = {
            r[0]
            for r in conn.execute(
                "SELECT notes FROM customer_profile WHERE organization_id = %s", (org,)
            )
        }
        return (
            deliveries["pending_events"] == 0
            and all(d["state"] == "delivered" for d in deliveries["deliveries"])
            and notes == {"version 3"}
            and conn.execute(
                "SELECT count(*) FROM qbo_webhook_log WHERE status = 'received'"
            ).fetchone()[0]
            == 0
        )

    wait_for(settled, "every webhook delivered (twice), processed, and QBO's latest value here")
    deliveries = sim_control(unruly_sim, "GET", "webhooks/deliveries")["deliveries"]
    sent_twice = [d for d in deliveries if len(d["attempts"]) == 2]
    assert sent_twice and len(sent_twice) == len(deliveries)  # the simulator duplicated each
    events = 3 * len(targets)
    assert conn.execute(
        "SELECT count(*), count(DISTINCT body) FROM qbo_webhook_log WHERE signature_valid"
    ).fetchone() == (2 * len(deliveries), len(deliveries))
    # each event became work once, whatever the copies and the order
    assert conn.execute(
        "SELECT count(*) FROM qbo_webhook_processed WHERE organization_id = %s", (org,)
    ).fetchone() == (events,)
    # and QBO's latest value is every row's, with QBO's latest SyncToken (nothing older won)
    qbo = {str(c["Id"]): c for c in qbo_objects(unruly_sim, connected.access, "customers")}
    for qbo_id, notes, token in conn.execute(
        "SELECT qbo_id, notes, qbo_sync_token FROM customer_profile WHERE organization_id = %s",
        (org,),
    ):
        assert (notes, token) == (qbo[qbo_id]["Notes"], qbo[qbo_id]["SyncToken"])

"""Our own writes do not come back: after a push (creates and updates, through a batch and single
calls), pulling the same entity (CDC carries the objects we just wrote, with the SyncToken we
stored) changes nothing: no row's qbo_updated_at, updated_at, versions, SyncToken or status, no
invoice line, for every entity."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import APP_TABLE, local_rows, pull, seeded  # noqa: F401
from tests.db.test_push import add_customer, add_invoice, push
from tests.db.test_qbo_calls import outcome, run_worker


def snapshot(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> dict:
    rows = conn.execute(
        sql.SQL(
            "SELECT id, qbo_updated_at, updated_at, qbo_local_version, qbo_synced_version,"
            " qbo_sync_token, qbo_sync_status, qbo_raw FROM {} WHERE organization_id = %s"
        ).format(sql.Identifier(APP_TABLE[entity])),
        (org,),
    ).fetchall()
    shot = {r[0]: r[1:] for r in rows}
    if entity == "invoices":
        lines = conn.execute(
            "SELECT id, updated_at, qbo_line_id, amount FROM invoice_line_item"
            " WHERE organization_id = %s",
            (org,),
        ).fetchall()
        shot |= {("line", r[0]): r[1:] for r in lines}
    return shot


def change_locally(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> None:
    """Two creates and two updates of `entity` (four operations: a batch and single calls)."""
    rows = sorted(local_rows(conn, entity, org).values(), key=lambda r: int(r["qbo_id"]))
    if entity == "customers":
        add_customer(conn, org, "Echo Client A", notes="new")
        add_customer(conn, org, "Echo Client B", email="b@example.com")
        conn.execute(
            "UPDATE customer_profile SET notes = 'echo' WHERE id = ANY (%s)",
            ([r["id"] for r in rows[:2]],),
        )
    elif entity == "items":
        for name in ("Echo Item A", "Echo Item B"):
            conn.execute(
                "INSERT INTO item_record (organization_id, name, item_type, unit_price,"
                " income_account_ref) VALUES (%s, %s, 'Service', 7.25, '1')",
                (org, name),
            )
        conn.execute(
            "UPDATE item_record SET description = 'echo' WHERE id = ANY (%s)",
            ([r["id"] for r in rows[:2]],),
        )
    elif entity == "invoices":
        customer = next(iter(local_rows(conn, "customers", org).values()))
        items = [r for r in local_rows(conn, "items", org).values() if r["is_active"]][:2]
        for n in (1, 2):
            add_invoice(
                conn,
                org,
                customer["id"],
                [
                    (items[0]["id"], Decimal(n), Decimal(10)),
                    (items[1]["id"], Decimal(1), Decimal(4)),
                ],
            )
        open_ones = [r for r in rows if not r["is_voided"]][:2]
        conn.execute(
            "UPDATE invoice_record SET private_note = 'echo' WHERE id = ANY (%s)",
            ([r["id"] for r in open_ones],),
        )
        # and a line changed on one of them (the invoice goes with all its lines)
        conn.execute(
            "UPDATE invoice_line_item SET description = 'echo line' WHERE id = ("
            " SELECT id FROM invoice_line_item WHERE invoice_id = %s ORDER BY line_number LIMIT 1)",
            (open_ones[0]["id"],),
        )
    else:
        invoices = [
            r
            for r in local_rows(conn, "invoices", org).values()
            if r["balance_due"] and r["balance_due"] > 5 and not r["is_voided"]
        ][:2]
        for invoice in invoices:
            conn.execute(
                "INSERT INTO invoice_payment (organization_id, customer_id, invoice_id, amount,"
                " reference_number) VALUES (%s, %s, %s, 5, 'ECHO')",
                (org, invoice["customer_id"], invoice["id"]),
            )
        conn.execute(
            "UPDATE invoice_payment SET private_note = 'echo' WHERE id = ANY (%s)",
            ([r["id"] for r in rows[:2]],),
        )


@pytest.mark.parametrize("entity", ["customers", "items", "invoices", "payments"])
def test_pull_after_push_changes_nothing(conn, seeded, entity):
    connected = connect_realm(conn, seeded)
    for name in ("customers", "items", "invoices", "payments"):
        pull(conn, connected.org, name)
    change_locally(conn, connected.org, entity)
    job = push(conn, connected.org, entity)
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    assert (summary["created"], summary["pushed_updates"]) == (2, 2), summary
    assert summary["batches"] >= 1
    before = snapshot(conn, connected.org, entity)
    job = pull(conn, connected.org, entity)
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["mode"] == "incremental"
    # CDC brought back the four objects we wrote (other entities' real changes may come along:
    # QBO recomputes a customer's balance after an invoice); not one row of this entity moved
    assert snapshot(conn, connected.org, entity) == before
    # the webhooks of our own writes: the pull webhook processing queues for those Ids
    ids = [r["qbo_id"] for r in local_rows(conn, entity, connected.org).values()]
    job = conn.execute(
        "SELECT qbo_sync.enqueue(%s, %s, 'pull', 'high', %s, 'webhook')",
        (connected.org, entity, ids),
    ).fetchone()[0]
    run_worker(conn)
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert snapshot(conn, connected.org, entity) == before

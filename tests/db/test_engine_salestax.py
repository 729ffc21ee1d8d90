"""Automated Sales Tax (AST) end to end: QBO computes an invoice's tax from its addresses (the
simulator: the ship-to state's base rate on the TAX lines, simulator/salestax.py), and the local
invoice takes QBO's tax, total and balance, whether the invoice was made locally and pushed
(created, then changed) or made in QBO and pulled. What the application had put in those
columns is replaced: QBO is authoritative for them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import psycopg

from simulator.salestax import STATE_RATES
from tests.db.engine_tools import (
    empty_sim,  # noqa: F401 - fixture
    insert,
    line_values,
    local_rows,
    qbo_change,
    qbo_fields,
    qbo_line,
    qbo_objects,
    reference_ids,
    run_job,
    values,
)
from tests.db.qbo_jobs import LoggedServer, connect_realm, sim_call
from tests.simulator.simtools import REALM


def expected_tax(lines: list[dict], state: str) -> Decimal:
    taxable = sum((line["amount"] for line in lines if line["tax_code_ref"] == "TAX"), Decimal(0))
    return (taxable * STATE_RATES[state] / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def qbo_invoice(sim: LoggedServer, token: str, qbo_id: str) -> dict:
    return next(o for o in qbo_objects(sim, token, "invoices") if o["Id"] == qbo_id)


def assert_totals_are_qbos(row: dict, obj: dict) -> None:
    assert row["tax_total"] == Decimal(str(obj["TxnTaxDetail"]["TotalTax"]))
    assert row["total_amount"] == Decimal(str(obj["TotalAmt"]))
    assert row["balance_due"] == Decimal(str(obj["Balance"]))


def test_an_invoice_pushed_from_here_takes_the_tax_qbo_computed(
    conn: psycopg.Connection,
    empty_sim: LoggedServer,  # noqa: F811
):
    assert sim_call(empty_sim, "GET", f"realms/{REALM}/status")["automated_sales_tax"] is True
    connected = connect_realm(conn, empty_sim)
    refs = reference_ids(empty_sim)
    # a taxable customer shipping to California (7.25 %), and an item
    customer = values("customers", 2, refs) | {"taxable": True}
    assert customer["shipping_address"]["CountrySubDivisionCode"] == "NY"
    customer["shipping_address"] = customer["billing_address"]  # CA
    customer_id = insert(conn, "customer_profile", {"organization_id": connected.org, **customer})
    item_id = insert(
        conn, "item_record", {"organization_id": connected.org, **values("items", 1, refs)}
    )
    run_job(conn, connected.org, "customers", "push")
    run_job(conn, connected.org, "items", "push")

    # the application's invoice: no addresses of its own (QBO takes the customer's), two TAX
    # lines and one NON, and a tax and total of its own making, which QBO's replace
    invoice = values("invoices", 1, refs) | {"billing_address": None, "shipping_address": None}
    invoice_id = insert(
        conn,
        "invoice_record",
        {
            "organization_id": connected.org,
            "customer_id": customer_id,
            **invoice,
            "tax_total": Decimal("1.11"),
            "total_amount": Decimal("2.22"),
            "balance_due": Decimal("2.22"),
        },
    )
    lines = [line_values(1, k) for k in (1, 2, 3)]
    assert [line["tax_code_ref"] for line in lines] == ["NON", "TAX", "NON"]
    lines[0]["tax_code_ref"] = "TAX"
    for k, line in enumerate(lines, start=1):
        insert(
            conn,
            "invoice_line_item",
            {
                "organization_id": connected.org,
                "invoice_id": invoice_id,
                "line_number": k,
                "item_id": item_id,
                **line,
            },
        )
    summary = run_job(conn, connected.org, "invoices", "push")
    assert summary["created"] == 1, summary

    row = next(
        r for r in local_rows(conn, "invoices", connected.org).values() if r["id"] == invoice_id
    )
    obj = qbo_invoice(empty_sim, connected.access, row["qbo_id"])
    tax = expected_tax(lines, "CA")
    assert tax > 0 and Decimal(str(obj["TxnTaxDetail"]["TotalTax"])) == tax
    assert_totals_are_qbos(row, obj)
    subtotal = sum((line["amount"] for line in lines), Decimal(0))
    assert row["total_amount"] == subtotal + tax == row["balance_due"]
    assert row["qbo_local_version"] == row["qbo_synced_version"]

    # a line changed here: QBO computes the tax again, and the row takes the new one
    conn.execute(
        "UPDATE invoice_line_item SET quantity = quantity + 2, amount = (quantity + 2) * unit_price"
        " WHERE invoice_id = %s AND line_number = 2",
        (invoice_id,),
    )
    conn.execute(
        "UPDATE invoice_record SET private_note = 'two more of line 2' WHERE id = %s", (invoice_id,)
    )
    summary = run_job(conn, connected.org, "invoices", "push")
    assert summary["pushed_updates"] == 1, summary
    lines[1]["quantity"] += 2
    lines[1]["amount"] = lines[1]["quantity"] * lines[1]["unit_price"]
    row = next(
        r for r in local_rows(conn, "invoices", connected.org).values() if r["id"] == invoice_id
    )
    obj = qbo_invoice(empty_sim, connected.access, row["qbo_id"])
    assert Decimal(str(obj["TxnTaxDetail"]["TotalTax"])) == expected_tax(lines, "CA") > tax
    assert_totals_are_qbos(row, obj)

    # and nothing of it comes back as a change
    summary = run_job(conn, connected.org, "invoices", "pull")
    assert (summary["inserted"], summary["updated"], summary["held"]) == (0, 0, 0), summary


def test_a_pulled_invoice_keeps_the_tax_qbo_computed(
    conn: psycopg.Connection,
    empty_sim: LoggedServer,  # noqa: F811
):
    connected = connect_realm(conn, empty_sim)
    refs = reference_ids(empty_sim)
    customer = qbo_change(
        empty_sim,
        "Customer",
        "create",
        qbo_fields("customers", values("customers", 4, refs) | {"taxable": True}),
    )
    item = qbo_change(empty_sim, "Item", "create", qbo_fields("items", values("items", 1, refs)))
    lines = [line_values(3, k) for k in (1, 2, 3)]
    body = qbo_fields("invoices", values("invoices", 3, refs))
    body["CustomerRef"] = {"value": customer["Id"]}
    body["Line"] = [qbo_line(line, item["Id"]) for line in lines]
    made = qbo_change(empty_sim, "Invoice", "create", body)
    # the invoice ships to California (values("invoices") gives its ShipAddr CA)
    assert made["ShipAddr"]["CountrySubDivisionCode"] == "CA"
    tax = expected_tax(lines, "CA")
    assert tax > 0 and Decimal(str(made["TxnTaxDetail"]["TotalTax"])) == tax

    for entity in ("customers", "items", "invoices"):
        run_job(conn, connected.org, entity, "pull")
    row = local_rows(conn, "invoices", connected.org)[made["Id"]]
    assert_totals_are_qbos(row, made)
    assert row["tax_total"] == tax

    # QBO's tax changes (a line edited in QBO): a pull through CDC brings the new tax
    changed = [dict(line) for line in lines]
    changed[1]["quantity"] += 3
    changed[1]["amount"] = changed[1]["quantity"] * changed[1]["unit_price"]
    kept = [line["Id"] for line in made["Line"] if line.get("Id")]
    qbo_change(
        empty_sim,
        "Invoice",
        "update",
        {"Line": [qbo_line(line, item["Id"], kept[k]) for k, line in enumerate(changed)]},
        made["Id"],
    )
    summary = run_job(conn, connected.org, "invoices", "pull")
    # one CDC call for every entity: the invoice, and the customer whose balance it moved
    assert summary["mode"] == "incremental" and summary["updated"] >= 1, summary
    row = local_rows(conn, "invoices", connected.org)[made["Id"]]
    obj = qbo_invoice(empty_sim, connected.access, made["Id"])
    assert row["tax_total"] == expected_tax(changed, "CA") > tax
    assert_totals_are_qbos(row, obj)

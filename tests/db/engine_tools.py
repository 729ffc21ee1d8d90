"""Shared helpers of the engine's end-to-end tests (tests/db/test_engine_*.py): a value for every
mapped field of every entity (walking qbo_sync_db.mapping, so a field added there without a
sample here fails the tests), QBO objects and local rows built from those values, and the
comparisons of a local row with a QBO object field by field.

Values are in the mapping's local form: text, Decimal, bool, dates as 'YYYY-MM-DD', addresses
as dicts. QBO objects are made through the simulator's control surface (acting as a QBO user,
over HTTP); local rows through plain INSERTs, as the application makes them.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from qbo_sync_db import mapping

from tests.db.qbo_jobs import LoggedServer, sim_call
from tests.db.test_pull import APP_TABLE, local_rows, qbo_objects  # noqa: F401 - re-exported
from tests.db.test_qbo_calls import outcome, run_worker
from tests.simulator.simtools import REALM

#: the order the engine syncs in (what an object references goes first)
ORDER = ("customers", "items", "invoices", "payments")

Refs = dict[str, str]
Sample = Callable[[int, Refs], Any]


def _address(n: int, state: str) -> dict[str, str]:
    return {
        "Line1": f"{n} Harbor Street",
        "Line2": f"Suite {n}",
        "Line3": "Building B",
        "Line4": "Floor 3",
        "Line5": "Dock 7",
        "City": f"Town {n}",
        "CountrySubDivisionCode": state,
        "PostalCode": f"9{n:04d}",
        "Country": "US",
    }


def _day(n: int, offset: int = 0) -> str:
    return (dt.date(2026, 3, 1) + dt.timedelta(days=n + offset)).isoformat()


#: the value set whose customer and item are inactive (they cannot be invoiced: made alone)
INACTIVE = 7

#: a non-default value of every writable mapped column, per entity; `n` makes them differ per
#: object (odd and even `n` give the booleans both ways), `refs` holds QBO ids of the
#: reference lists (accounts, terms, payment methods)
SAMPLES: dict[str, dict[str, Sample]] = {
    "customers": {
        "display_name": lambda n, r: f"Round Trip Customer {n}",
        "company_name": lambda n, r: f"Trip Company {n}",
        "given_name": lambda n, r: f"Given{n}",
        "family_name": lambda n, r: f"Family{n}",
        "email": lambda n, r: f"customer{n}@example.com",
        "phone": lambda n, r: f"(555) 010-{n:04d}",
        "mobile": lambda n, r: f"(555) 020-{n:04d}",
        "billing_address": lambda n, r: _address(n, "CA"),
        "shipping_address": lambda n, r: _address(n + 100, "NY"),
        "notes": lambda n, r: f"notes of customer {n}",
        "taxable": lambda n, r: n % 2 == 0,
        "currency_code": lambda n, r: "USD",
        "is_active": lambda n, r: n != INACTIVE,
    },
    "items": {
        "name": lambda n, r: f"Round Trip Item {n}",
        "sku": lambda n, r: f"SKU-{n:03d}",
        "description": lambda n, r: f"item {n}, described",
        "item_type": lambda n, r: "NonInventory" if n % 2 else "Service",
        "unit_price": lambda n, r: Decimal("10.5") + n,
        "purchase_cost": lambda n, r: Decimal("3.25") + n,
        "income_account_ref": lambda n, r: r["Services"],
        "expense_account_ref": lambda n, r: r["Cost of Goods Sold"],
        "taxable": lambda n, r: n % 2 == 1,
        "is_active": lambda n, r: n != INACTIVE,
    },
    "invoices": {
        "invoice_number": lambda n, r: f"RT-{n:04d}",
        "txn_date": lambda n, r: _day(n),
        "due_date": lambda n, r: _day(n, 45),
        "currency_code": lambda n, r: "USD",
        "customer_memo": lambda n, r: f"thank you, {n}",
        "private_note": lambda n, r: f"private note {n}",
        "billing_email": lambda n, r: f"billing{n}@example.com",
        "billing_address": lambda n, r: _address(n + 200, "TX"),
        "shipping_address": lambda n, r: _address(n + 300, "CA"),
        "sales_term_ref": lambda n, r: r["Net 30"],
    },
    "payments": {
        "amount": lambda n, r: Decimal("5.25") + n,
        "payment_date": lambda n, r: _day(n, 50),
        "payment_method_ref": lambda n, r: r["Check"],
        "reference_number": lambda n, r: f"CHK-{n:04d}",
        "deposit_account_ref": lambda n, r: r["Checking"],
        "currency_code": lambda n, r: "USD",
        "private_note": lambda n, r: f"payment note {n}",
    },
}

#: invoice line columns (mapping.LINE_FIELDS); `k` numbers the line on its invoice
LINE_SAMPLES: dict[str, Callable[[int, int], Any]] = {
    "description": lambda n, k: f"line {k} of invoice {n}",
    "quantity": lambda n, k: Decimal(k + 1),
    "unit_price": lambda n, k: Decimal("7.5") + n + k,
    "amount": lambda n, k: Decimal(k + 1) * (Decimal("7.5") + n + k),
    "tax_code_ref": lambda n, k: "TAX" if k % 2 == 0 else "NON",
    "service_date": lambda n, k: _day(n, k),
}


def writable(entity: str) -> list[mapping.Field]:
    return [f for f in mapping.ENTITIES[entity].fields if not f.read_only]


#: where Intuit's API reference puts each mapped value (written here independently of the
#: mapping, so a mapping that reads or writes the wrong key fails the round trips)
QBO_PATH: dict[str, dict[str, tuple[str, ...]]] = {
    "customers": {
        "display_name": ("DisplayName",),
        "company_name": ("CompanyName",),
        "given_name": ("GivenName",),
        "family_name": ("FamilyName",),
        "email": ("PrimaryEmailAddr", "Address"),
        "phone": ("PrimaryPhone", "FreeFormNumber"),
        "mobile": ("Mobile", "FreeFormNumber"),
        "billing_address": ("BillAddr",),
        "shipping_address": ("ShipAddr",),
        "notes": ("Notes",),
        "taxable": ("Taxable",),
        "currency_code": ("CurrencyRef", "value"),
        "is_active": ("Active",),
        "balance": ("Balance",),
    },
    "items": {
        "name": ("Name",),
        "sku": ("Sku",),
        "description": ("Description",),
        "item_type": ("Type",),
        "unit_price": ("UnitPrice",),
        "purchase_cost": ("PurchaseCost",),
        "income_account_ref": ("IncomeAccountRef", "value"),
        "expense_account_ref": ("ExpenseAccountRef", "value"),
        "taxable": ("Taxable",),
        "is_active": ("Active",),
        "qty_on_hand": ("QtyOnHand",),
    },
    "invoices": {
        "invoice_number": ("DocNumber",),
        "txn_date": ("TxnDate",),
        "due_date": ("DueDate",),
        "currency_code": ("CurrencyRef", "value"),
        "customer_memo": ("CustomerMemo", "value"),
        "private_note": ("PrivateNote",),
        "billing_email": ("BillEmail", "Address"),
        "billing_address": ("BillAddr",),
        "shipping_address": ("ShipAddr",),
        "sales_term_ref": ("SalesTermRef", "value"),
        "email_status": ("EmailStatus",),
        "print_status": ("PrintStatus",),
        "tax_total": ("TxnTaxDetail", "TotalTax"),
        "total_amount": ("TotalAmt",),
        "balance_due": ("Balance",),
    },
    "payments": {
        "amount": ("TotalAmt",),
        "payment_date": ("TxnDate",),
        "payment_method_ref": ("PaymentMethodRef", "value"),
        "reference_number": ("PaymentRefNum",),
        "deposit_account_ref": ("DepositToAccountRef", "value"),
        "currency_code": ("CurrencyRef", "value"),
        "private_note": ("PrivateNote",),
        "unapplied_amount": ("UnappliedAmt",),
    },
    "lines": {
        "description": ("Description",),
        "amount": ("Amount",),
        "quantity": ("SalesItemLineDetail", "Qty"),
        "unit_price": ("SalesItemLineDetail", "UnitPrice"),
        "tax_code_ref": ("SalesItemLineDetail", "TaxCodeRef", "value"),
        "service_date": ("SalesItemLineDetail", "ServiceDate"),
    },
}
ITEM_REF_PATH = ("SalesItemLineDetail", "ItemRef", "value")


def fields_of(entity: str) -> tuple[mapping.Field, ...]:
    return mapping.LINE_FIELDS if entity == "lines" else mapping.ENTITIES[entity].fields


def check_samples_cover_the_mapping() -> None:
    """Every writable mapped field has a sample, every mapped field a documented path, and none
    names a field the mapping lacks: a field added to (or removed from) the mapping makes the
    round-trip tests fail here."""
    for entity in mapping.ENTITIES:
        assert set(SAMPLES[entity]) == {f.column for f in writable(entity)}, entity
    assert set(LINE_SAMPLES) == {f.column for f in mapping.LINE_FIELDS}
    for entity in [*mapping.ENTITIES, "lines"]:
        assert set(QBO_PATH[entity]) == {f.column for f in fields_of(entity)}, entity


def values(entity: str, n: int, refs: Refs) -> dict[str, Any]:
    return {f.column: SAMPLES[entity][f.column](n, refs) for f in writable(entity)}


def line_values(n: int, k: int) -> dict[str, Any]:
    return {f.column: LINE_SAMPLES[f.column](n, k) for f in mapping.LINE_FIELDS}


def _put(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


def _get(obj: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def qbo_fields(entity: str, row: Mapping) -> dict:
    """The QBO object's fields (of `entity`, or "lines") for these local values of its writable
    fields, each put where Intuit documents it."""
    body: dict[str, Any] = {}
    for f in fields_of(entity):
        if not f.read_only and row.get(f.column) is not None:
            _put(body, QBO_PATH[entity][f.column], f.kind.write(row[f.column]))
    return body


def qbo_line(line: Mapping[str, Any], item_qbo_id: str, line_id: str | None = None) -> dict:
    body = qbo_fields("lines", line) | {"DetailType": "SalesItemLineDetail"}
    _put(body, ITEM_REF_PATH, item_qbo_id)
    if line_id is not None:
        body["Id"] = line_id
    return body


def jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))
    )


def reference_ids(sim: LoggedServer, realm: str = REALM) -> Refs:
    """QBO ids of the realm's accounts, terms and payment methods, by name."""
    objects = sim.state.realms[realm].objects
    return {
        o["Name"]: o["Id"]
        for kind in ("Account", "Term", "PaymentMethod")
        for o in list(objects[kind].values())
    }


def qbo_change(sim: LoggedServer, entity: str, operation: str, fields=None, object_id=None):
    """Act as a QBO user (the simulator's control surface): the object written."""
    body: dict[str, Any] = {"entity": entity, "operation": operation}
    if fields is not None:
        body["fields"] = jsonable(fields)
    if object_id is not None:
        body["id"] = object_id
    answer = sim_call(sim, "POST", f"realms/{REALM}/change", body)
    return answer[entity]


# ----------------------------------------------------------------------------- local rows


def insert(conn: psycopg.Connection, table: str, row: Mapping[str, Any]) -> uuid.UUID:
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier("public", table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join([sql.Placeholder()] * len(row)),
    )
    params = [Jsonb(v) if isinstance(v, dict) else v for v in row.values()]
    return conn.execute(statement, params).fetchone()[0]


def lines_of(conn: psycopg.Connection, invoice_id: uuid.UUID) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT l.*, i.qbo_id AS item_qbo_id FROM invoice_line_item AS l"
        " LEFT JOIN item_record AS i ON i.id = l.item_id"
        " WHERE l.invoice_id = %s ORDER BY l.line_number, l.id",
        (invoice_id,),
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur]


def normal(value: Any) -> Any:
    """One form for a value read from the database, from QBO or from the samples."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = Decimal(str(value))
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value


def differences(have: Mapping[str, Any], want: Mapping[str, Any], columns) -> list[tuple]:
    return [
        (c, have.get(c), want.get(c)) for c in columns if normal(have.get(c)) != normal(want.get(c))
    ]


def mapped_columns(entity: str) -> list[str]:
    """Every column the mapping gives a value of (read-only and derived ones included)."""
    spec = mapping.ENTITIES[entity]
    columns = [f.column for f in spec.fields]
    if spec.voided_column:
        columns.append(spec.voided_column)
    if spec.derived is not None:
        columns += sorted(spec.derived({}))
    return columns


def documented(entity: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Each mapped column's value read from where Intuit documents it (the mapping's default
    when QBO leaves it out)."""
    read = {}
    for f in fields_of(entity):
        value = f.kind.read(_get(obj, QBO_PATH[entity][f.column]))
        read[f.column] = f.default if value is None else value
    return read


def assert_row_matches_qbo(
    conn: psycopg.Connection, entity: str, row: Mapping[str, Any], obj: Mapping[str, Any]
) -> None:
    """The local row holds, for every mapped column, what mapping.from_qbo makes of QBO's object;
    its references point at the local rows of the objects QBO references; an invoice's lines are
    QBO's sales lines, matched by line Id."""
    want = mapping.from_qbo(entity, obj)
    wrong = differences(row, want, mapped_columns(entity))
    assert wrong == [], (entity, obj["Id"], wrong)
    wrong = differences(row, documented(entity, obj), [f.column for f in fields_of(entity)])
    assert wrong == [], (entity, obj["Id"], "not where Intuit documents it", wrong)
    assert (row["qbo_id"], row["qbo_sync_token"]) == (obj["Id"], obj["SyncToken"])
    for ref in mapping.ENTITIES[entity].references:
        qbo_id = want[mapping.reference_key(ref.column)]
        linked = conn.execute(
            sql.SQL("SELECT qbo_id FROM {} WHERE id = %s").format(
                sql.Identifier("public", APP_TABLE[ref.entity])
            ),
            (row[ref.column],),
        ).fetchone()
        assert (linked[0] if linked else None) == qbo_id, (entity, ref.column)
    if entity == "invoices":
        have_lines = lines_of(conn, row["id"])
        want_lines = mapping.invoice_lines(obj)
        assert len(have_lines) == len(want_lines), obj["Id"]
        columns = [f.column for f in mapping.LINE_FIELDS] + ["qbo_line_id", "line_number"]
        for have, wanted in zip(have_lines, want_lines, strict=True):
            wrong = differences(have, wanted, columns)
            assert wrong == [], (obj["Id"], have["line_number"], wrong)
            assert have["item_qbo_id"] == wanted[mapping.reference_key("item_id")]
        sales = [x for x in obj.get("Line") or () if x.get("DetailType") == "SalesItemLineDetail"]
        for have, line in zip(have_lines, sales, strict=True):
            wrong = differences(have, documented("lines", line), list(QBO_PATH["lines"]))
            assert wrong == [], (obj["Id"], line.get("Id"), "not where Intuit documents it", wrong)
            assert have["item_qbo_id"] == _get(line, ITEM_REF_PATH)


def assert_qbo_has_values(entity: str, obj: Mapping[str, Any], local: Mapping[str, Any]) -> None:
    """QBO's object carries every writable value of the local row where Intuit documents it."""
    wrong = [
        (f.column, _get(obj, QBO_PATH[entity][f.column]), local[f.column])
        for f in writable(entity)
        if normal(f.kind.read(_get(obj, QBO_PATH[entity][f.column])))
        != normal(f.kind.write(local[f.column]))
    ]
    assert wrong == [], (entity, obj["Id"], wrong)


# ----------------------------------------------------------------------------- running jobs


def run_job(conn: psycopg.Connection, org: uuid.UUID, entity: str, direction: str) -> dict:
    """Queue one job and run the worker until the queue is idle: the job's outcome, which
    must be a completed run."""
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, %s)", (org, entity, direction)).fetchone()[
        0
    ]
    run_worker(conn)
    result = outcome(conn, job)
    assert result["status"] == "completed", (entity, direction, result)
    return result["summary"]


def run_jobs(conn: psycopg.Connection, org: uuid.UUID, direction: str) -> dict[str, dict]:
    """Queue one job per entity together (as the orchestrator and the cron jobs do), then run
    the worker until the queue is idle: each job's summary, each a completed run."""
    jobs = {
        entity: conn.execute(
            "SELECT trigger_qbo_sync(%s, %s, %s)", (org, entity, direction)
        ).fetchone()[0]
        for entity in ORDER
    }
    run_worker(conn)
    summaries = {}
    for entity, job in jobs.items():
        result = outcome(conn, job)
        assert result["status"] == "completed", (entity, direction, result)
        summaries[entity] = result["summary"]
    return summaries


def snapshot(conn: psycopg.Connection, org: uuid.UUID) -> dict[str, list[tuple]]:
    """What a no-op sync must leave as it is: every row's versions, updated_at, QBO
    timestamps, SyncToken and status, and every line."""
    state: dict[str, list[tuple]] = {}
    for entity in ORDER:
        state[entity] = conn.execute(
            sql.SQL(
                "SELECT id, qbo_id, qbo_sync_token, qbo_local_version, qbo_synced_version,"
                " updated_at, qbo_updated_at, qbo_sync_status FROM {}"
                " WHERE organization_id = %s ORDER BY id"
            ).format(sql.Identifier("public", APP_TABLE[entity])),
            (org,),
        ).fetchall()
    state["lines"] = conn.execute(
        "SELECT id, qbo_line_id, updated_at, amount FROM invoice_line_item"
        " WHERE organization_id = %s ORDER BY id",
        (org,),
    ).fetchall()
    return state


def qbo_writes(sim: LoggedServer) -> list[str]:
    """The API calls that could have written (anything but a GET, a query or CDC)."""
    return [
        f"{a.method} {a.path}"
        for a in sim.log.api()
        if a.method != "GET" and not a.path.endswith(("/query", "/cdc"))
    ]


@pytest.fixture
def empty_sim() -> Iterator[LoggedServer]:
    """A simulator with an empty company (its reference lists only). Throttling is off so the
    tests' own reads of QBO are never refused; the engine paces itself to Intuit's limits
    anyway (test_engine_faults.py has QBO throttle it)."""
    server = LoggedServer(limits_enabled=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()

"""Creates are made once in QBO whatever happens to their answers, through the worker against a
seeded simulator over HTTP: a create whose answer was lost after QBO committed it (the simulator's
"commit, then drop the connection" fault) is looked up in QBO before it is sent again, whether QBO
honours requestid or ignores it (as integrators report it sometimes does); the same under storms
of dropped answers, 5xx and 429: zero duplicates in QBO, nothing lost locally."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

import time
import uuid
from collections import Counter
from decimal import Decimal

import psycopg
import pytest
from qbo_sync_db import mapping

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import local_rows, pull, seeded  # noqa: F401
from tests.db.test_pull import qbo_objects as read_qbo
from tests.db.test_push import add_customer, add_invoice, by_name, push
from tests.db.test_qbo_calls import outcome, sim_control

REALM = "9341453050298375"


def counters(sim) -> dict:
    return sim_control(sim, "GET", f"realms/{REALM}/counters")["counters"]


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


def push_until_done(conn: psycopg.Connection, org: uuid.UUID, entity: str, table: str) -> int:
    """Push jobs (a failed one is triggered again at once) until no row of `table` waits."""
    for attempt in range(1, 25):
        push(conn, org, entity)
        waiting = conn.execute(
            f"SELECT count(*) FROM {table} WHERE organization_id = %s"  # noqa: S608 - a fixed name
            " AND qbo_local_version > qbo_synced_version",
            (org,),
        ).fetchone()[0]
        if not waiting:
            return attempt
    raise AssertionError(f"{entity} still waiting after 24 pushes")


@pytest.mark.parametrize("mode", ["replay", "ignore"])
def test_a_batch_of_creates_whose_answer_was_lost_is_looked_up_not_made_again(conn, seeded, mode):
    connected = connect_realm(conn, seeded)
    sim_control(seeded, "PATCH", "config", {"requestid_mode": mode})
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/batch"}]},
    )
    names = [f"Lost Answer {n}" for n in range(5)]
    for name in names:
        add_customer(conn, connected.org, name)
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["found_after_unknown_outcome"] == 5
    seen = counters(seeded)
    assert seen.get("fault.drop_after_commit") == 1
    assert seen.get("batch") == 1 and not seen.get("write.customer")  # nothing sent twice
    assert seen.get("query") == 1  # the five looked up by name in one query
    there = qbo_objects(seeded, connected.access, "customers")
    rows = {r["display_name"]: r for r in local_rows(conn, "customers", connected.org).values()}
    for name in names:
        made = by_name(there, name)
        assert len(made) == 1
        assert (rows[name]["qbo_id"], rows[name]["qbo_sync_status"]) == (made[0]["Id"], "synced")


@pytest.mark.parametrize("mode", ["replay", "ignore"])
def test_an_invoice_and_a_payment_whose_answers_were_lost_are_found_by_what_was_sent(
    conn, seeded, mode
):
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items", "invoices"):
        pull(conn, connected.org, entity)
    sim_control(seeded, "PATCH", "config", {"requestid_mode": mode})
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    invoice = add_invoice(
        conn, connected.org, customer["id"], [(item["id"], Decimal(2), Decimal(15))]
    )
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/invoice"}]},
    )
    before = len(qbo_objects(seeded, connected.access, "invoices"))
    job = push(conn, connected.org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["found_after_unknown_outcome"] == 1
    invoices = qbo_objects(seeded, connected.access, "invoices")
    assert len(invoices) == before + 1
    qbo_id, status = conn.execute(
        "SELECT qbo_id, qbo_sync_status FROM invoice_record WHERE id = %s", (invoice,)
    ).fetchone()
    there = next(i for i in invoices if i["Id"] == qbo_id)
    assert status == "synced" and there["CustomerRef"]["value"] == customer["qbo_id"]
    lines = conn.execute(
        "SELECT qbo_line_id FROM invoice_line_item WHERE invoice_id = %s", (invoice,)
    ).fetchall()
    assert [line[0] for line in lines] == [
        line["qbo_line_id"] for line in mapping.invoice_lines(there)
    ]

    payment = conn.execute(
        "INSERT INTO invoice_payment (organization_id, customer_id, invoice_id, amount,"
        " reference_number) VALUES (%s, %s, %s, 12, 'LOST-1') RETURNING id",
        (connected.org, customer["id"], invoice),
    ).fetchone()[0]
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/payment"}]},
    )
    before = len(qbo_objects(seeded, connected.access, "payments"))
    job = push(conn, connected.org, "payments")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["found_after_unknown_outcome"] == 1
    payments = qbo_objects(seeded, connected.access, "payments")
    assert len(payments) == before + 1
    assert [p.get("PaymentRefNum") for p in payments].count("LOST-1") == 1
    assert conn.execute(
        "SELECT qbo_sync_status FROM invoice_payment WHERE id = %s", (payment,)
    ).fetchone() == ("synced",)


def test_storms_of_lost_answers_and_5xx_make_no_duplicate_and_lose_nothing(conn, seeded):
    """requestid ignored, 30 % of writes committed then their connection dropped, 20 % of calls
    answered 500 or 503: the pushes, retried, end with every row in QBO exactly once."""
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items"):
        pull(conn, connected.org, entity)
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    sim_control(
        seeded,
        "PATCH",
        "config",
        {
            "requestid_mode": "ignore",
            "rate_drop_after_commit": 0.3,
            "rate_500": 0.1,
            "rate_503": 0.1,
        },
    )
    names = [f"Storm Client {n:02}" for n in range(40)]
    ids = [add_customer(conn, connected.org, name) for name in names]
    push_until_done(conn, connected.org, "customers", "customer_profile")
    invoices = [
        add_invoice(conn, connected.org, ids[n], [(item["id"], Decimal(n + 1), Decimal(3))])
        for n in range(12)
    ]
    push_until_done(conn, connected.org, "invoices", "invoice_record")
    sim_control(
        seeded,
        "PATCH",
        "config",
        {"rate_drop_after_commit": 0, "rate_500": 0, "rate_503": 0, "requestid_mode": "replay"},
    )
    seen = counters(seeded)
    assert seen.get("fault.drop_after_commit", 0) >= 3  # the storm happened
    assert seen.get("fault.500", 0) + seen.get("fault.503", 0) >= 3
    customers = Counter(
        o["DisplayName"] for o in qbo_objects(seeded, connected.access, "customers")
    )
    assert all(customers[name] == 1 for name in names)
    rows = local_rows(conn, "customers", connected.org)
    assert sum(1 for r in rows.values() if r["display_name"] in names) == 40
    assert all(r["qbo_sync_status"] == "synced" for r in rows.values())
    made = conn.execute(
        "SELECT invoice_number, qbo_id FROM invoice_record WHERE id = ANY (%s)", (invoices,)
    ).fetchall()
    numbers = Counter(o.get("DocNumber") for o in qbo_objects(seeded, connected.access, "invoices"))
    assert all(numbers[number] == 1 and qbo_id for number, qbo_id in made)


def test_a_429_storm_makes_no_duplicate_and_loses_nothing(conn, seeded):
    connected = connect_realm(conn, seeded)
    sim_control(seeded, "PATCH", "config", {"per_second": 2, "requestid_mode": "ignore"})
    names = [f"Throttled Client {n:02}" for n in range(40)]
    for name in names:
        add_customer(conn, connected.org, name, notes="through 429s")
    push_until_done(conn, connected.org, "customers", "customer_profile")
    sim_control(seeded, "PATCH", "config", {"per_second": 10})
    assert counters(seeded).get("throttled", 0) >= 1
    customers = Counter(
        o["DisplayName"] for o in qbo_objects(seeded, connected.access, "customers")
    )
    assert all(customers[name] == 1 for name in names)
    rows = [
        r
        for r in local_rows(conn, "customers", connected.org).values()
        if r["display_name"] in names
    ]
    assert len(rows) == 40 and all(r["qbo_sync_status"] == "synced" for r in rows)


def test_a_refused_create_whose_fault_was_lost_is_not_stuck_on_qbos_600(conn, seeded):
    """QBO answering a seen requestid with fault 600 (RequestId already exists) instead of its
    first answer: the create the lookup did not find goes again under a new requestid, and the
    row ends with QBO's real answer."""
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items"):
        pull(conn, connected.org, entity)
    sim_control(seeded, "PATCH", "config", {"requestid_mode": "error600"})
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    bad = add_invoice(conn, connected.org, customer["id"], [(item["id"], Decimal(1), Decimal(-7))])
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/invoice"}]},
    )
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["status"] == "completed"
    status, error_class, code = conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error_class, qbo_sync_error_code FROM invoice_record"
        " WHERE id = %s",
        (bad,),
    ).fetchone()
    assert (status, error_class, code) == ("pending", "transient", "600")
    push(conn, connected.org, "invoices")
    assert conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error_class, qbo_sync_error_code FROM invoice_record"
        " WHERE id = %s",
        (bad,),
    ).fetchone() == ("error", "validation", "6000")


def test_a_lost_create_a_pull_brought_in_first_is_a_conflict_not_a_second_invoice(conn, seeded):
    """The create's answer is lost and the lookup cannot run (QBO answers 500 to it): the job
    fails. A pull then brings QBO's new invoice in as a row of its own. The next push finds the
    invoice, linked to that row: it does not create a second one, a person decides."""
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items", "invoices"):
        pull(conn, connected.org, entity)
    customer = next(iter(local_rows(conn, "customers", connected.org).values()))
    item = next(r for r in local_rows(conn, "items", connected.org).values() if r["is_active"])
    invoice = add_invoice(
        conn, connected.org, customer["id"], [(item["id"], Decimal(3), Decimal(7))]
    )
    number = conn.execute(
        "SELECT invoice_number FROM invoice_record WHERE id = %s", (invoice,)
    ).fetchone()[0]
    sim_control(
        seeded,
        "POST",
        "faults",
        {
            "next": [
                {"kind": "drop_after_commit", "path_contains": "/invoice"},
                {"kind": "500", "path_contains": "/query", "times": 4},
            ]
        },
    )
    job = push(conn, connected.org, "invoices")
    assert outcome(conn, job)["status"] != "completed"
    pull(conn, connected.org, "invoices")
    push(conn, connected.org, "invoices")
    there = [
        i for i in qbo_objects(seeded, connected.access, "invoices") if i.get("DocNumber") == number
    ]
    assert len(there) == 1  # no second invoice in QBO
    status, error_class = conn.execute(
        "SELECT qbo_sync_status, qbo_sync_error_class FROM invoice_record WHERE id = %s",
        (invoice,),
    ).fetchone()
    assert (status, error_class) == ("conflict", "conflict")
    copy = conn.execute(
        "SELECT id FROM invoice_record WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, there[0]["Id"]),
    ).fetchone()[0]
    assert copy != invoice
    assert conn.execute(
        "SELECT qbo_id, status, detected_by FROM qbo_sync_conflict WHERE local_id = %s",
        (invoice,),
    ).fetchone() == (there[0]["Id"], "held", "push")


def test_a_job_that_recovered_a_lost_batch_answer_is_complete_not_partial(conn, seeded):
    connected = connect_realm(conn, seeded)
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/batch"}]},
    )
    for n in range(3):
        add_customer(conn, connected.org, f"Recovered {n}")
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert (result["status"], result["history"]) == ("completed", "completed"), result
    assert result["summary"]["unknown_outcomes"] == 1
    assert result["summary"]["failure_count"] == 0

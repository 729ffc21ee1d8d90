"""End to end, both ways, every mapped field: the engine against the simulator over HTTP, the
real database and the worker.

The tests walk qbo_sync_db.mapping (tests/db/engine_tools.py has a non-default value for every
writable field of every entity and of invoice lines; a field added to the mapping without one
fails here): objects made in QBO arrive with every field (full pull, then CDC), rows made
locally reach QBO with every field, after a round trip both sides agree field by field (QBO's
computed totals and balances included), and a following pull and push change nothing on
either side. Deletes, voids and inactivation arrive as what they are, in both pull modes.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
from qbo_sync_db import mapping

from tests.db.engine_tools import (
    INACTIVE,
    ORDER,
    QBO_PATH,
    assert_qbo_has_values,
    assert_row_matches_qbo,
    check_samples_cover_the_mapping,
    differences,
    empty_sim,  # noqa: F401 - fixture
    insert,
    line_values,
    local_rows,
    qbo_change,
    qbo_fields,
    qbo_line,
    qbo_objects,
    qbo_writes,
    reference_ids,
    run_job,
    run_jobs,
    snapshot,
    values,
)
from tests.db.qbo_jobs import LoggedServer, connect_realm, setting  # noqa: F401 - fixture

QBO_NAME = {"customers": "Customer", "items": "Item", "invoices": "Invoice", "payments": "Payment"}


def make_in_qbo(sim: LoggedServer, refs: dict, n: int, customer: str, items: list[str]) -> dict:
    """A customer, an item, an invoice of three lines and a payment applied to it, made in QBO
    by a user with value set `n` for every mapped field. Returns {entity: QBO object}."""
    made: dict[str, dict] = {}
    made["customers"] = qbo_change(
        sim, "Customer", "create", qbo_fields("customers", values("customers", n, refs))
    )
    made["items"] = qbo_change(sim, "Item", "create", qbo_fields("items", values("items", n, refs)))
    customer = customer or made["customers"]["Id"]
    items = [*items, made["items"]["Id"]]
    invoice = qbo_fields("invoices", values("invoices", n, refs))
    invoice["CustomerRef"] = {"value": made["customers"]["Id"]}
    invoice["Line"] = [qbo_line(line_values(n, k), items[k % len(items)]) for k in range(1, 4)]
    made["invoices"] = qbo_change(sim, "Invoice", "create", invoice)
    payment = qbo_fields("payments", values("payments", n, refs))
    payment["CustomerRef"] = {"value": made["customers"]["Id"]}
    payment["Line"] = [
        {
            "Amount": payment["TotalAmt"],
            "LinkedTxn": [{"TxnId": made["invoices"]["Id"], "TxnType": "Invoice"}],
        }
    ]
    made["payments"] = qbo_change(sim, "Payment", "create", payment)
    return made


def assert_local_equals_qbo(conn, sim: LoggedServer, token: str, org: uuid.UUID) -> dict:
    """Every QBO object is a local row (and no other row is), equal for every mapped field."""
    rows_by_entity = {}
    for entity in ORDER:
        objects = qbo_objects(sim, token, entity)
        rows = local_rows(conn, entity, org)
        assert set(rows) == {o["Id"] for o in objects}, entity
        for obj in objects:
            assert_row_matches_qbo(conn, entity, rows[obj["Id"]], obj)
        rows_by_entity[entity] = rows
    return rows_by_entity


def assert_values_kept(rows: dict, made: dict[int, dict], refs: dict) -> None:
    """The local rows hold the very values written in QBO (not only what from_qbo says)."""
    for n, objects in made.items():
        for entity, obj in objects.items():
            row = rows[entity][obj["Id"]]
            want = values(entity, n, refs)
            wrong = differences(row, want, list(want))
            assert wrong == [], (entity, n, wrong)


def assert_no_echo(conn, sim: LoggedServer, org: uuid.UUID) -> None:
    """A pull of every entity in both modes and a push of every entity change nothing: no row
    written, no version moved, nothing sent to QBO that writes."""
    before = snapshot(conn, org)
    sim.log.answers.clear()
    for entity in ORDER:
        summary = run_job(conn, org, entity, "pull")
        assert summary["mode"] == "incremental", (entity, summary)
        assert (summary["inserted"], summary["updated"], summary["held"]) == (0, 0, 0), summary
    conn.execute(
        "UPDATE qbo_sync_cursor SET full_pass_needed = true WHERE organization_id = %s", (org,)
    )
    for entity in ORDER:
        summary = run_job(conn, org, entity, "pull")
        assert summary["mode"] == "full", (entity, summary)
        assert (summary["inserted"], summary["updated"], summary["held"]) == (0, 0, 0), summary
    for entity in ORDER:
        summary = run_job(conn, org, entity, "push")
        assert summary["entity_count"] == 0, (entity, summary)
    assert snapshot(conn, org) == before
    assert qbo_writes(sim) == []


def test_the_samples_cover_every_mapped_field():
    check_samples_cover_the_mapping()


def test_objects_made_in_qbo_arrive_with_every_field_by_full_pull_then_by_cdc(
    conn: psycopg.Connection,
    empty_sim: LoggedServer,  # noqa: F811
):
    check_samples_cover_the_mapping()
    connected = connect_realm(conn, empty_sim)
    refs = reference_ids(empty_sim)
    made = {1: make_in_qbo(empty_sim, refs, 1, "", []), 2: make_in_qbo(empty_sim, refs, 2, "", [])}
    made[INACTIVE] = {
        entity: qbo_change(
            empty_sim,
            QBO_NAME[entity],
            "create",
            qbo_fields(entity, values(entity, INACTIVE, refs)),
        )
        for entity in ("customers", "items")
    }
    assert made[INACTIVE]["customers"]["Active"] is False
    for entity in ORDER:
        summary = run_job(conn, connected.org, entity, "pull")
        assert summary["mode"] == "full" and summary["failure_count"] == 0, summary
    rows = assert_local_equals_qbo(conn, empty_sim, connected.access, connected.org)
    assert_values_kept(rows, made, refs)
    assert all(
        r["qbo_local_version"] == r["qbo_synced_version"] for e in rows.values() for r in e.values()
    )

    # in QBO: a third set of objects, and the first set edited to other values of every field
    # (the invoice keeps two lines by Id with new values, loses one and gains one)
    made[3] = make_in_qbo(empty_sim, refs, 3, "", [])
    first = made.pop(1)
    edited = {}
    for entity in ("customers", "items"):
        edited[entity] = qbo_change(
            empty_sim,
            QBO_NAME[entity],
            "update",
            qbo_fields(entity, values(entity, 11, refs)),
            first[entity]["Id"],
        )
    invoice = qbo_fields("invoices", values("invoices", 11, refs))
    kept = [line for line in first["invoices"]["Line"] if line.get("Id")][:2]
    invoice["Line"] = [
        qbo_line(line_values(11, k), first["items"]["Id"], kept[k - 1]["Id"]) for k in (1, 2)
    ] + [qbo_line(line_values(11, 3), made[2]["items"]["Id"])]
    edited["invoices"] = qbo_change(
        empty_sim, "Invoice", "update", invoice, first["invoices"]["Id"]
    )
    payment = qbo_fields("payments", values("payments", 11, refs))
    payment["Line"] = [
        {
            "Amount": payment["TotalAmt"],
            "LinkedTxn": [{"TxnId": first["invoices"]["Id"], "TxnType": "Invoice"}],
        }
    ]
    edited["payments"] = qbo_change(
        empty_sim, "Payment", "update", payment, first["payments"]["Id"]
    )
    made[11] = edited

    empty_sim.log.answers.clear()
    summaries = run_jobs(conn, connected.org, "pull")
    # the first job's one CDC call brings every entity up to date; the others have nothing to do
    first_job = summaries[ORDER[0]]
    assert first_job["mode"] == "incremental" and first_job["failure_count"] == 0, first_job
    assert first_job["inserted"] == len(ORDER), first_job
    assert sorted(first_job["cdc_entities"]) == sorted(QBO_NAME[e] for e in ORDER)
    # ... and were completed by it, never claimed
    assert first_job["covered_jobs"] == len(ORDER) - 1, first_job
    for entity in ORDER[1:]:
        assert summaries[entity]["mode"] == "up to date", (entity, summaries[entity])
    assert conn.execute(
        "SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed' AND attempts = 0"
        " AND result ->> 'mode' = 'up to date'"
    ).fetchone() == (len(ORDER) - 1,)
    assert [a.path.rsplit("/", 1)[-1] for a in empty_sim.log.api()] == ["cdc"]
    rows = assert_local_equals_qbo(conn, empty_sim, connected.access, connected.org)
    assert_values_kept(rows, made, refs)
    # the edited invoice: the two kept lines in place (same QBO line Ids), the dropped one gone
    lines = conn.execute(
        "SELECT qbo_line_id FROM invoice_line_item WHERE invoice_id = %s ORDER BY line_number",
        (rows["invoices"][first["invoices"]["Id"]]["id"],),
    ).fetchall()
    assert [line[0] for line in lines][:2] == [line["Id"] for line in kept] and len(lines) == 3

    assert_no_echo(conn, empty_sim, connected.org)


def add_local(conn, org: uuid.UUID, refs: dict, n: int, items: list[uuid.UUID]) -> dict:
    """A customer, an item, an invoice of three lines and a payment of it, made locally with
    value set `n` for every mapped field. Returns {entity: local id}."""
    made: dict[str, Any] = {}
    made["customers"] = insert(
        conn, "customer_profile", {"organization_id": org, **values("customers", n, refs)}
    )
    made["items"] = insert(
        conn, "item_record", {"organization_id": org, **values("items", n, refs)}
    )
    items = [*items, made["items"]]
    made["invoices"] = insert(
        conn,
        "invoice_record",
        {"organization_id": org, "customer_id": made["customers"], **values("invoices", n, refs)},
    )
    for k in range(1, 4):
        insert(
            conn,
            "invoice_line_item",
            {
                "organization_id": org,
                "invoice_id": made["invoices"],
                "line_number": k,
                "item_id": items[k % len(items)],
                **line_values(n, k),
            },
        )
    made["payments"] = insert(
        conn,
        "invoice_payment",
        {
            "organization_id": org,
            "customer_id": made["customers"],
            "invoice_id": made["invoices"],
            **values("payments", n, refs),
        },
    )
    return made


def test_rows_made_locally_reach_qbo_with_every_field_and_the_round_trip_is_exact(
    conn: psycopg.Connection,
    empty_sim: LoggedServer,  # noqa: F811
):
    check_samples_cover_the_mapping()
    connected = connect_realm(conn, empty_sim)
    refs = reference_ids(empty_sim)
    made = {
        1: add_local(conn, connected.org, refs, 1, []),
        2: add_local(conn, connected.org, refs, 2, []),
    }
    made[INACTIVE] = {
        "customers": insert(
            conn,
            "customer_profile",
            {"organization_id": connected.org, **values("customers", INACTIVE, refs)},
        ),
        "items": insert(
            conn,
            "item_record",
            {"organization_id": connected.org, **values("items", INACTIVE, refs)},
        ),
    }
    for entity in ORDER:
        summary = run_job(conn, connected.org, entity, "push")
        created = 3 if entity in ("customers", "items") else 2
        assert (summary["created"], summary["failure_count"]) == (created, 0), (entity, summary)

    for entity in ORDER:
        objects = {o["Id"]: o for o in qbo_objects(empty_sim, connected.access, entity)}
        rows = {r["id"]: r for r in local_rows(conn, entity, connected.org).values()}
        assert len(objects) == len(rows) == len([n for n in made if entity in made[n]]), entity
        for n, ids in made.items():
            if entity not in ids:
                continue
            row = rows[ids[entity]]
            assert row["qbo_sync_status"] == "synced" and row["qbo_id"] in objects, row
            obj = objects[row["qbo_id"]]
            # QBO carries every value written locally, at its mapped path
            assert_qbo_has_values(entity, obj, values(entity, n, refs))
            # and the local row took QBO's answer (an invoice's SyncToken moved on since: the
            # payment pushed after it was applied to it)
            if entity != "invoices":
                assert row["qbo_sync_token"] == obj["SyncToken"]
            if entity == "invoices":
                sent = [x for x in obj["Line"] if x.get("DetailType") == "SalesItemLineDetail"]
                assert len(sent) == 3
                for k, line in enumerate(sent, start=1):
                    assert _line_equal(line, line_values(n, k)), (n, k, line)

    # QBO moved what it owns after the pushes (a payment lowers its invoice's balance, invoices
    # raise their customer's): one pull brings it; then a pull and a push change nothing, and
    # both sides agree on every field
    for entity in ORDER:
        run_job(conn, connected.org, entity, "pull")
    assert_no_echo(conn, empty_sim, connected.org)
    assert_local_equals_qbo(conn, empty_sim, connected.access, connected.org)
    for entity in ORDER:
        rows = {r["id"]: r for r in local_rows(conn, entity, connected.org).values()}
        for n, ids in made.items():
            if entity not in ids:
                continue
            want = values(entity, n, refs)
            wrong = differences(rows[ids[entity]], want, list(want))
            assert wrong == [], (entity, n, wrong)


def _line_equal(line: dict, want: dict) -> bool:
    read = {
        f.column: f.kind.read(_path(line, QBO_PATH["lines"][f.column])) for f in mapping.LINE_FIELDS
    }
    return differences(read, want, list(want)) == []


def _path(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def test_deletes_voids_and_inactivation_arrive_as_what_they_are_in_both_pull_modes(
    conn: psycopg.Connection,
    empty_sim: LoggedServer,  # noqa: F811
    setting,  # noqa: F811
):
    """Every entity, each way QBO removes it: customers and items go inactive (and stay, as
    inactive rows), invoices and payments are voided (they stay, voided, zeroed) or deleted
    (marked deleted). Once through CDC after a full pull, once through a full pull alone."""
    refs = reference_ids(empty_sim)
    # sets 1..4: 1 and 2 removed after a full pull (seen by CDC), 3 and 4 before the first pull
    made = {n: make_in_qbo(empty_sim, refs, n, "", []) for n in (1, 2, 3, 4)}
    extra_customers = {
        n: qbo_change(
            empty_sim,
            "Customer",
            "create",
            qbo_fields("customers", values("customers", n + 50, refs)),
        )
        for n in (1, 3)
    }
    extra_items = {
        n: qbo_change(
            empty_sim,
            "Item",
            "create",
            qbo_fields("items", values("items", n + 50, refs)),
        )
        for n in (1, 3)
    }

    def remove(voided: int, deleted: int) -> None:
        # a payment is voided or deleted first: an invoice with a payment cannot be deleted
        qbo_change(empty_sim, "Payment", "void", None, made[voided]["payments"]["Id"])
        qbo_change(empty_sim, "Payment", "delete", None, made[deleted]["payments"]["Id"])
        qbo_change(empty_sim, "Invoice", "void", None, made[voided]["invoices"]["Id"])
        qbo_change(empty_sim, "Invoice", "delete", None, made[deleted]["invoices"]["Id"])
        n = min(voided, deleted)
        qbo_change(empty_sim, "Customer", "deactivate", None, extra_customers[n]["Id"])
        qbo_change(empty_sim, "Item", "deactivate", None, extra_items[n]["Id"])

    def check(voided: int, deleted: int) -> None:
        rows = {e: local_rows(conn, e, connected.org) for e in ORDER}
        n = min(voided, deleted)
        customer = rows["customers"][extra_customers[n]["Id"]]
        item = rows["items"][extra_items[n]["Id"]]
        assert (customer["is_active"], customer["qbo_deleted_at"]) == (False, None)
        assert (item["is_active"], item["qbo_deleted_at"]) == (False, None)
        for entity in ("invoices", "payments"):
            gone = rows[entity][made[voided][entity]["Id"]]
            assert gone["is_voided"] is True and gone["qbo_deleted_at"] is None, (entity, gone)
            assert gone[mapping_amount(entity)] == 0
            dropped = rows[entity].get(made[deleted][entity]["Id"])
            assert dropped is not None and dropped["qbo_deleted_at"] is not None, (entity, dropped)
        assert rows["invoices"][made[voided]["invoices"]["Id"]]["status"] == "voided"
        # nothing of it waits to be pushed back
        for entity_rows in rows.values():
            assert all(
                r["qbo_local_version"] == r["qbo_synced_version"] for r in entity_rows.values()
            )

    remove(3, 4)
    connected = connect_realm(conn, empty_sim)
    for entity in ORDER:
        assert run_job(conn, connected.org, entity, "pull")["mode"] == "full"
    # a full pull of a company where they were already gone: the voided and inactive ones
    # arrive as such; QBO's query no longer returns the deleted ones, so they never arrive
    rows = {e: local_rows(conn, e, connected.org) for e in ORDER}
    for entity in ("invoices", "payments"):
        assert made[4][entity]["Id"] not in rows[entity]
        voided = rows[entity][made[3][entity]["Id"]]
        assert voided["is_voided"] is True and voided[mapping_amount(entity)] == 0
    assert rows["customers"][extra_customers[3]["Id"]]["is_active"] is False
    assert rows["items"][extra_items[3]["Id"]]["is_active"] is False

    remove(1, 2)
    summaries = run_jobs(conn, connected.org, "pull")
    # one CDC call for the four entities (the first job's): the deleted invoice and payment
    first_job = summaries[ORDER[0]]
    assert first_job["mode"] == "incremental" and first_job["deleted"] == 2, first_job
    assert all(summaries[e]["mode"] == "up to date" for e in ORDER[1:]), summaries
    check(1, 2)

    # a full pass later (one is asked for after a capped CDC answer, or by hand), in pages of
    # two: what CDC applied stays as it is, rows QBO deleted while no CDC saw it are marked
    # deleted too (here ones in the middle of the Id range, on a page between others), and
    # nothing QBO still has is
    made[5] = make_in_qbo(empty_sim, refs, 5, "", [])
    made[6] = make_in_qbo(empty_sim, refs, 6, "", [])
    for entity in ORDER:
        run_job(conn, connected.org, entity, "pull")
    qbo_change(empty_sim, "Payment", "delete", None, made[5]["payments"]["Id"])
    qbo_change(empty_sim, "Invoice", "delete", None, made[5]["invoices"]["Id"])
    setting("pull.page_size", "2")
    setting("pull.page_overlap", "1")
    conn.execute(
        "UPDATE qbo_sync_cursor SET full_pass_needed = true WHERE organization_id = %s",
        (connected.org,),
    )
    for entity in ORDER:
        summary = run_job(conn, connected.org, entity, "pull")
        assert summary["mode"] == "full" and summary["pages"] >= 2, summary
    check(1, 2)
    for entity in ("invoices", "payments"):
        rows = local_rows(conn, entity, connected.org)
        row = rows[made[5][entity]["Id"]]
        assert row["qbo_deleted_at"] is not None, (
            f"{entity} {made[5][entity]['Id']} was deleted in QBO, and a complete full pull"
            " did not mark it deleted"
        )
    for entity in ORDER:
        rows = local_rows(conn, entity, connected.org)
        live = {o["Id"] for o in qbo_objects(empty_sim, connected.access, entity)}
        assert live <= set(rows)
        assert [q for q in live if rows[q]["qbo_deleted_at"] is not None] == [], entity
        gone = {q for q, r in rows.items() if r["qbo_deleted_at"] is not None}
        assert gone.isdisjoint(live) and len(gone) == (
            2 if entity in ("invoices", "payments") else 0
        )


def mapping_amount(entity: str) -> str:
    return "total_amount" if entity == "invoices" else "amount"


def test_decimal_samples_are_exact():
    """The line samples obey QBO's rule Amount = Qty × UnitPrice (else QBO refuses, 6070)."""
    for n in (1, 2, 11):
        for k in (1, 2, 3):
            line = line_values(n, k)
            assert line["amount"] == line["quantity"] * line["unit_price"]
            assert isinstance(line["amount"], Decimal)

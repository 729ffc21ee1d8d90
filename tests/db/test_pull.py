"""Full pulls from QBO into the application's tables, through the worker, against a seeded
simulator over HTTP: every object arrives with every mapped field as QBO has it (the test walks
the mapping), references are linked (and fetched first when missing), invoice lines match QBO's
by line Id, nothing echoes back for push, a local change not pushed yet is never overwritten, and
a pull that stops half-way resumes at its page."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import requests
from qbo_sync_db import client, mapping

from tests.db.qbo_jobs import LoggedServer, connect_realm, setting  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker, sim_control
from tests.simulator.simtools import REALM

SEEDED = {"customers": 25, "items": 8, "invoices": 30, "payments": 12}
TABLES = {e: m.qbo_entity for e, m in mapping.ENTITIES.items()}
APP_TABLE = {
    "customers": "customer_profile",
    "items": "item_record",
    "invoices": "invoice_record",
    "payments": "invoice_payment",
}


@pytest.fixture
def seeded() -> Iterator[LoggedServer]:
    server = LoggedServer(
        limits_enabled=True,
        seed_customers=SEEDED["customers"],
        seed_items=SEEDED["items"],
        seed_invoices=SEEDED["invoices"],
        seed_payments=SEEDED["payments"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_pages(setting) -> None:  # noqa: F811 - the fixture imported above
    setting("pull.page_size", "7")
    setting("pull.page_overlap", "2")


def qbo_objects(sim: LoggedServer, token: str, entity: str) -> list[dict[str, Any]]:
    """Everything QBO holds of `entity`, read independently of qbo-sync (inactive ones too)."""
    text = f"SELECT * FROM {TABLES[entity]}"
    if entity in ("customers", "items"):
        text += " WHERE Active IN (true, false)"
    for _ in range(20):  # QBO's limits hold for this reader too: a 429 is waited out
        answer = requests.get(
            f"{sim.base_url}/v3/company/{REALM}/query",
            params={"query": text + " MAXRESULTS 1000", "minorversion": "75"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=10,
        )
        if answer.status_code != 429:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    return client.parse_query(client.decode_json(answer.content), TABLES[entity]).rows


def local_rows(conn: psycopg.Connection, entity: str, org: uuid.UUID) -> dict[str, dict]:
    cur = conn.execute(f"SELECT * FROM {APP_TABLE[entity]} WHERE organization_id = %s", (org,))
    names = [c.name for c in cur.description or []]
    return {row["qbo_id"]: row for row in (dict(zip(names, r, strict=True)) for r in cur)}


def normal(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def as_numbers(value: Any) -> Any:
    """JSON with every number as a Decimal (psycopg loads jsonb numbers as float or int, the
    client as Decimal); a string stays a string, so an amount stored as text would differ."""
    if isinstance(value, dict):
        return {k: as_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_numbers(v) for v in value]
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    return value


def pages_from(start: int, total: int, size: int = 7, overlap: int = 2) -> int:
    """How many query pages a full pull reads from STARTPOSITION `start` on: pages of `size`,
    each starting `overlap` before the last one ended, until one comes back short."""
    pages, position = 0, start
    while True:
        pages += 1
        if total - position + 1 < size:
            return pages
        position += size - overlap


def pull(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> uuid.UUID:
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, 'pull')", (org, entity)).fetchone()[0]
    run_worker(conn)
    return job


def test_a_full_pull_brings_every_object_with_every_mapped_field(conn, seeded, small_pages):
    connected = connect_realm(conn, seeded)
    for entity in ("customers", "items", "invoices", "payments"):
        job = pull(conn, connected.org, entity)
        result = outcome(conn, job)
        assert result["status"] == "completed", result
        expected = qbo_objects(seeded, connected.access, entity)
        assert len(expected) >= SEEDED[entity]
        rows = local_rows(conn, entity, connected.org)
        assert set(rows) == {o["Id"] for o in expected}, entity
        spec = mapping.ENTITIES[entity]
        for obj in expected:
            want = mapping.from_qbo(entity, obj)
            have = rows[obj["Id"]]
            for f in spec.fields:
                assert normal(have[f.column]) == normal(want[f.column]), (
                    entity,
                    f.column,
                    obj["Id"],
                )
            assert have["qbo_sync_token"] == obj["SyncToken"]
            assert have["qbo_sync_status"] == "synced"
            # the base kept for merges is QBO's object as QBO sent it, amounts as numbers
            assert as_numbers(have["qbo_raw"]) == as_numbers(obj), (entity, obj["Id"])
            # nothing to push: the pull's own writes are not local changes
            assert have["qbo_local_version"] == have["qbo_synced_version"]
        summary = result["summary"]
        # pages of 7 starting 2 early: the last page is short, and every object was read
        assert summary["pages"] >= len(expected) // 5
        assert summary["inserted"] >= len(expected) and summary["failure_count"] == 0


def test_invoices_pulled_first_fetch_their_customers_and_items_and_match_lines(conn, seeded):
    connected = connect_realm(conn, seeded)
    job = pull(conn, connected.org, "invoices")
    assert outcome(conn, job)["status"] == "completed"
    invoices = qbo_objects(seeded, connected.access, "invoices")
    customers = {
        r["qbo_id"]: r["id"] for r in local_rows(conn, "customers", connected.org).values()
    }
    items = {r["qbo_id"]: r["id"] for r in local_rows(conn, "items", connected.org).values()}
    rows = local_rows(conn, "invoices", connected.org)
    for invoice in invoices:
        row = rows[invoice["Id"]]
        assert row["customer_id"] == customers[invoice["CustomerRef"]["value"]]
        lines = conn.execute(
            "SELECT qbo_line_id, item_id, amount, line_number FROM invoice_line_item"
            " WHERE invoice_id = %s ORDER BY line_number",
            (row["id"],),
        ).fetchall()
        want = mapping.invoice_lines(invoice)
        assert [(line[0], line[2]) for line in lines] == [
            (w["qbo_line_id"], w["amount"]) for w in want
        ]
        assert [line[1] for line in lines] == [items[w["item_id_qbo_id"]] for w in want]
    assert outcome(conn, job)["summary"]["fetched_references"] >= 1


def test_a_second_pull_changes_nothing_and_a_qbo_change_arrives(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    before = local_rows(conn, "customers", connected.org)
    some = sorted(before, key=int)[0]
    sim_control(
        seeded,
        "POST",
        f"realms/{REALM}/change",
        {"entity": "Customer", "id": some, "fields": {"Notes": "changed in QBO"}},
    )
    job = pull(conn, connected.org, "customers")
    summary = outcome(conn, job)["summary"]
    assert (summary["updated"], summary["inserted"]) == (1, 0)
    assert summary["unchanged"] == len(before) - 1
    after = local_rows(conn, "customers", connected.org)
    assert after[some]["notes"] == "changed in QBO"
    assert int(after[some]["qbo_sync_token"]) > int(before[some]["qbo_sync_token"])
    assert after[some]["qbo_local_version"] == after[some]["qbo_synced_version"]  # no echo
    unchanged = [q for q in before if q != some]
    assert all(after[q]["updated_at"] == before[q]["updated_at"] for q in unchanged)


def test_a_local_change_not_pushed_yet_is_never_overwritten_by_a_pull(conn, seeded):
    """A row changed here and in QBO is merged (test_conflicts.py has the same field changed on
    both sides): QBO's change arrives, the local one stays and is still to be pushed."""
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[1]
    conn.execute(
        "UPDATE customer_profile SET notes = 'changed here' WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, some),
    )
    sim_control(
        seeded,
        "POST",
        f"realms/{REALM}/change",
        {"entity": "Customer", "id": some, "fields": {"CompanyName": "Changed There Ltd"}},
    )
    job = pull(conn, connected.org, "customers")
    summary = outcome(conn, job)["summary"]
    assert (summary["held"], summary["merged"], summary["conflicts"]) == (1, 1, 0)
    row = local_rows(conn, "customers", connected.org)[some]
    assert row["notes"] == "changed here" and row["qbo_local_version"] > row["qbo_synced_version"]
    assert row["company_name"] == "Changed There Ltd"


def test_an_inactive_customer_stays_inactive(conn, seeded):
    connected = connect_realm(conn, seeded)
    customers = qbo_objects(seeded, connected.access, "customers")
    idle = next(c for c in customers if not c.get("Balance"))
    sim_control(
        seeded,
        "POST",
        f"realms/{REALM}/change",
        {"entity": "Customer", "id": idle["Id"], "operation": "deactivate"},
    )
    pull(conn, connected.org, "customers")
    row = local_rows(conn, "customers", connected.org)[idle["Id"]]
    assert row["is_active"] is False and row["qbo_deleted_at"] is None


def test_a_pull_that_stops_half_way_resumes_at_its_page(conn, seeded, small_pages):
    connected = connect_realm(conn, seeded)
    # the third page (STARTPOSITION 11: 1, 6, 11 with pages of 7 starting 2 early) fails for good
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "500", "path_contains": "STARTPOSITION%2011%20", "times": 50}]},
    )
    job = pull(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"]) == ("pending", "QB500")
    position = conn.execute(
        "SELECT full_pass_position FROM qbo_sync_cursor WHERE organization_id = %s AND entity = 'customers'",
        (connected.org,),
    ).fetchone()[0]
    assert position == 11
    assert len(local_rows(conn, "customers", connected.org)) == 12  # two pages (1-7, 6-12) kept

    sim_control(seeded, "DELETE", "faults")
    conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job,))
    total = len(qbo_objects(seeded, connected.access, "customers"))
    seeded.log.answers.clear()
    run_worker(conn)
    queries = [a for a in seeded.log.api() if a.path.endswith("/query")]
    # the resumed run read on from where it stopped (page 11 on), not from the start
    assert len(queries) == pages_from(11, total) == pages_from(1, total) - 2
    assert outcome(conn, job)["status"] == "completed"
    cursor = conn.execute(
        "SELECT full_pass_position, last_full_sync_at IS NOT NULL FROM qbo_sync_cursor"
        " WHERE organization_id = %s AND entity = 'customers'",
        (connected.org,),
    ).fetchone()
    assert cursor == (None, True)
    assert len(local_rows(conn, "customers", connected.org)) == len(
        qbo_objects(seeded, connected.access, "customers")
    )


def change(sim: LoggedServer, entity: str, operation: str, object_id: str | None = None, **fields):
    body: dict[str, Any] = {"entity": entity, "operation": operation, "fields": fields}
    if object_id is not None:
        body["id"] = object_id
    return sim_control(sim, "POST", f"realms/{REALM}/change", body)


def api_calls(sim: LoggedServer, endpoint: str) -> int:
    """Calls QBO answered (a 401 that made the job refresh its token is not counted)."""
    return sum(1 for a in sim.log.api() if a.path.endswith("/" + endpoint) and a.status == 200)


def cursor(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> dict:
    cur = conn.execute(
        "SELECT * FROM qbo_sync_cursor WHERE organization_id = %s AND entity = %s", (org, entity)
    )
    names = [c.name for c in cur.description or []]
    return dict(zip(names, cur.fetchone(), strict=True))


def test_after_a_full_pull_changes_arrive_through_one_cdc_call(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "invoices")
    invoices = qbo_objects(seeded, connected.access, "invoices")
    unpaid = [i for i in invoices if not i.get("LinkedTxn") and i["Balance"] == i["TotalAmt"]]
    edited, removed = unpaid[0], unpaid[1]
    line = mapping.invoice_lines(edited)[0]
    change(seeded, "Invoice", "update", edited["Id"], PrivateNote="edited in QBO")
    change(seeded, "Invoice", "delete", removed["Id"])
    created = change(
        seeded,
        "Invoice",
        "create",
        CustomerRef={"value": edited["CustomerRef"]["value"]},
        Line=[
            {
                "Amount": 30,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": line["item_id_qbo_id"]},
                    "Qty": 2,
                    "UnitPrice": 15,
                },
            }
        ],
    )
    new_id = next(v for v in created.values() if isinstance(v, dict) and "Id" in v)["Id"]
    seeded.log.answers.clear()

    job = pull(conn, connected.org, "invoices")
    summary = outcome(conn, job)["summary"]
    assert summary["mode"] == "incremental"
    # one CDC call, and one query reading again the customers whose balance moved (QBO changes a
    # Balance without a new SyncToken: neither CDC nor webhooks report the customer)
    assert (api_calls(seeded, "cdc"), api_calls(seeded, "query")) == (1, 1)
    assert summary["balances_refreshed"] >= 1
    qbo_customer = next(
        c
        for c in qbo_objects(seeded, connected.access, "customers")
        if c["Id"] == edited["CustomerRef"]["value"]
    )
    assert local_rows(conn, "customers", connected.org)[qbo_customer["Id"]]["balance"] == Decimal(
        str(qbo_customer["Balance"])
    )
    assert (summary["inserted"], summary["updated"], summary["deleted"]) == (1, 1, 1)
    rows = local_rows(conn, "invoices", connected.org)
    assert rows[edited["Id"]]["private_note"] == "edited in QBO"
    assert rows[removed["Id"]]["qbo_deleted_at"] is not None  # kept, marked deleted
    assert rows[new_id]["total_amount"] == Decimal(30)
    lines = conn.execute(
        "SELECT count(*) FROM invoice_line_item WHERE invoice_id = %s", (rows[new_id]["id"],)
    ).fetchone()[0]
    assert lines == 1


def test_a_cursor_older_than_cdc_reaches_back_means_a_full_pull(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    conn.execute(
        "UPDATE qbo_sync_cursor SET last_changed_since = now() - interval '31 days'"
        " WHERE organization_id = %s",
        (connected.org,),
    )
    seeded.log.answers.clear()
    job = pull(conn, connected.org, "customers")
    assert outcome(conn, job)["summary"]["mode"] == "full"
    assert api_calls(seeded, "cdc") == 0 and api_calls(seeded, "query") >= 1
    assert cursor(conn, connected.org, "customers")["last_changed_since"] > dt.datetime.now(
        dt.UTC
    ) - dt.timedelta(minutes=5)


def test_a_full_cdc_answer_is_followed_by_another_and_a_full_pull_next(conn, seeded, setting):  # noqa: F811
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    sim_control(seeded, "PATCH", "config", {"cdc_max_objects": 3})
    setting("pull.cdc_max_objects", "3")
    setting("pull.cdc_overlap_seconds", "0")
    # the changes come after everything the full pull read (the access token expires meanwhile:
    # the job's first call is refused, refreshes it and is sent again)
    seeded.state.clock.advance(3600)
    ids = sorted(local_rows(conn, "customers", connected.org), key=int)[:7]
    for number, customer in enumerate(ids):
        seeded.state.clock.advance(1)
        change(seeded, "Customer", "update", customer, Notes=f"change {number}")
    seeded.log.answers.clear()

    job = pull(conn, connected.org, "customers")
    summary = outcome(conn, job)["summary"]
    assert summary["mode"] == "incremental" and summary["updated"] == 7
    # answers of 3, each from the last one's latest change on: 1-3, 3-5, 5-7, 7
    assert api_calls(seeded, "cdc") == 4
    rows = local_rows(conn, "customers", connected.org)
    assert [rows[c]["notes"] for c in ids] == [f"change {n}" for n in range(7)]
    assert cursor(conn, connected.org, "customers")["full_pass_needed"] is True

    # a full answer may have left deletions out: the next pull reads everything, then CDC again
    seeded.log.answers.clear()
    job = pull(conn, connected.org, "customers")
    assert outcome(conn, job)["summary"]["mode"] == "full"
    assert cursor(conn, connected.org, "customers")["full_pass_needed"] is False
    job = pull(conn, connected.org, "customers")
    assert outcome(conn, job)["summary"]["mode"] == "incremental"


def test_a_long_pull_hands_itself_back_so_other_organizations_go_between(
    conn,
    seeded,
    small_pages,
    setting,  # noqa: F811
):
    """worker.job_slice_seconds 0: every run of a full pull reads one page, saves where it is
    and goes back to the queue; another organization's job, queued behind it, runs between
    its pages instead of after the whole pull."""
    setting("worker.job_slice_seconds", "0")
    big = connect_realm(conn, seeded)
    small = connect_realm(conn, seeded, realm="4620816365999999999", name="Small")
    big_job = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (big.org,)
    ).fetchone()[0]
    small_job = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'items', 'pull')", (small.org,)
    ).fetchone()[0]
    run_worker(conn)
    assert outcome(conn, big_job)["status"] == outcome(conn, small_job)["status"] == "completed"
    runs = conn.execute(
        "SELECT queue_job_id, status, summary ->> 'continues' FROM qbo_sync_history"
        " ORDER BY completed_at"
    ).fetchall()
    big_runs = [r for r in runs if r[0] == big_job]
    total = len(qbo_objects(seeded, big.access, "customers"))
    # one run per page, each but the last handing the job back; no attempt counted for those
    assert len(big_runs) == pages_from(1, total)
    assert [r[2] for r in big_runs] == ["true"] * (len(big_runs) - 1) + [None]
    assert all(r[1] == "completed" for r in big_runs)
    assert outcome(conn, big_job)["attempts"] == 1
    # the small organization's job ran between the big pull's pages, not after all of them
    order = [r[0] for r in runs]
    assert order.index(small_job) < len(order) - 1
    assert len(local_rows(conn, "customers", big.org)) == total


def test_the_engine_writes_business_columns_only(conn, org):
    """apply_pulled and record_pushed take the columns to write from the engine: qbo-sync's own
    bookkeeping and columns the table lacks are refused before anything is written."""
    for columns in (["qbo_synced_version"], ["organization_id"], ["id"], ["no_such_column"]):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a business column"):
            conn.execute("SELECT qbo_sync.apply_pulled(%s, 'customers', '[]', %s)", (org, columns))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a business column"):
            conn.execute(
                "SELECT qbo_sync.record_pushed(%s, 'customers', gen_random_uuid(), 1, '{}', %s)",
                (org, columns),
            )


def test_apply_pulled_refuses_raw_objects_that_do_not_match_its_rows(conn, org):
    """The raw objects a full pull passes must pair one to one with its rows, in order."""
    rows = '[{"qbo_id": "1", "display_name": "A"}, {"qbo_id": "2", "display_name": "B"}]'
    for raw in ('[{"Id": "1"}]', '{"Id": "1"}'):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="as long as its rows"):
            conn.execute(
                "SELECT qbo_sync.apply_pulled(%s, 'customers', %s, '{display_name}', '{}', %s)",
                (org, rows, raw),
            )
    assert (
        conn.execute(
            "SELECT count(*) FROM customer_profile WHERE organization_id = %s", (org,)
        ).fetchone()[0]
        == 0
    )


def full_pass_next(conn: psycopg.Connection, org: uuid.UUID) -> None:
    conn.execute(
        "UPDATE qbo_sync_cursor SET full_pass_needed = true WHERE organization_id = %s", (org,)
    )


def test_a_full_pass_marks_the_rows_qbo_deleted_while_no_cdc_saw_it(conn, seeded, small_pages):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "invoices")
    invoices = qbo_objects(seeded, connected.access, "invoices")
    unpaid = sorted(
        (i for i in invoices if not i.get("LinkedTxn") and i["Balance"] == i["TotalAmt"]),
        key=lambda i: int(i["Id"]),
    )
    # one on the first page, one further on (pages of 7), and the highest Id if unpaid
    gone = {unpaid[0]["Id"], unpaid[len(unpaid) // 2]["Id"], unpaid[-1]["Id"]}
    for qbo_id in gone:
        change(seeded, "Invoice", "delete", qbo_id)
    full_pass_next(conn, connected.org)

    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert summary["mode"] == "full" and summary["deleted"] == len(gone)
    rows = local_rows(conn, "invoices", connected.org)
    assert {q for q, r in rows.items() if r["qbo_deleted_at"] is not None} == gone
    assert all(r["qbo_local_version"] == r["qbo_synced_version"] for r in rows.values())
    # a local change waiting to be pushed is not marked (the push finds out)
    kept = next(i for i in unpaid if i["Id"] not in gone)
    conn.execute(
        "UPDATE invoice_record SET private_note = 'changed here'"
        " WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, kept["Id"]),
    )
    change(seeded, "Invoice", "delete", kept["Id"])
    full_pass_next(conn, connected.org)
    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert summary["deleted"] == 0
    assert local_rows(conn, "invoices", connected.org)[kept["Id"]]["qbo_deleted_at"] is None


def test_a_balance_qbo_moved_without_a_new_sync_token_is_refreshed(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    invoices = qbo_objects(seeded, connected.access, "invoices")
    unpaid = next(i for i in invoices if not i.get("LinkedTxn") and i["Balance"] == i["TotalAmt"])
    some = unpaid["CustomerRef"]["value"]
    before = local_rows(conn, "customers", connected.org)[some]
    # a payment made in QBO lowers the customer's balance; the customer's SyncToken stays
    change(
        seeded,
        "Payment",
        "create",
        CustomerRef={"value": some},
        TotalAmt=5,
        Line=[{"Amount": 5, "LinkedTxn": [{"TxnId": unpaid["Id"], "TxnType": "Invoice"}]}],
    )
    there = next(c for c in qbo_objects(seeded, connected.access, "customers") if c["Id"] == some)
    assert there["SyncToken"] == before["qbo_sync_token"]
    assert Decimal(str(there["Balance"])) == before["balance"] - 5
    full_pass_next(conn, connected.org)
    summary = outcome(conn, pull(conn, connected.org, "customers"))["summary"]
    assert summary["updated"] == 1
    after = local_rows(conn, "customers", connected.org)[some]
    assert after["balance"] == before["balance"] - 5
    assert after["qbo_sync_token"] == before["qbo_sync_token"]
    assert after["qbo_local_version"] == after["qbo_synced_version"]  # no echo
    # read again: nothing changes
    full_pass_next(conn, connected.org)
    summary = outcome(conn, pull(conn, connected.org, "customers"))["summary"]
    assert summary["updated"] == 0
    again = local_rows(conn, "customers", connected.org)[some]
    assert again["updated_at"] == after["updated_at"]


def test_a_full_pass_marks_deleted_only_what_it_never_read_whatever_the_id_order(conn, org):
    """Intuit does not say whether ORDERBY Id sorts Ids as numbers or as text: a pass read in text
    order (1, 10, 11, …, 19, 2, 20, 3, …) marks exactly the rows whose Ids no page held; rows the
    sync wrote since the pass started, and rows with a local change waiting, are never marked."""
    conn.execute("SELECT qbo_sync.begin_applying_remote()")
    started = conn.execute("SELECT now() - interval '1 second'").fetchone()[0]
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        for n in range(1, 21):
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name, qbo_id,"
                " qbo_sync_token, qbo_sync_status, qbo_last_synced_at)"
                " VALUES (%s, %s, %s, '0', 'synced', now() - interval '1 hour')",
                (org, f"C{n}", str(n)),
            )
    text_order = sorted((str(n) for n in range(1, 21)), key=str)
    gone = {"2", "7", "15"}
    pages = [p for p in (text_order[:8], text_order[6:14], text_order[12:]) if p]
    for index, page in enumerate(pages):
        conn.execute(
            "SELECT qbo_sync.record_pass_seen(%s, 'customers', %s, %s)",
            (org, [i for i in page if i not in gone], index == 0),
        )
    # a row created in QBO by a push while the pass ran, and one changed here: not judged
    conn.execute("UPDATE customer_profile SET notes = 'local' WHERE qbo_id = '7'")
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        conn.execute(
            "INSERT INTO customer_profile (organization_id, display_name, qbo_id, qbo_sync_token,"
            " qbo_sync_status, qbo_last_synced_at) VALUES (%s, 'New', '21', '0', 'synced', now())",
            (org,),
        )
    marked = conn.execute(
        "SELECT qbo_sync.finish_pass_absent(%s, 'customers', %s)", (org, started)
    ).fetchone()[0]
    deleted = {
        r[0]
        for r in conn.execute(
            "SELECT qbo_id FROM customer_profile WHERE qbo_deleted_at IS NOT NULL"
        ).fetchall()
    }
    assert (marked, deleted) == (2, {"2", "15"})
    assert conn.execute("SELECT count(*) FROM qbo_sync.pull_pass_seen").fetchone() == (0,)


def test_the_stored_qbo_objects_are_compressed_with_lz4(conn):
    """Every pull writes each object's raw JSON (the merge's base); lz4 compresses it several
    times faster than PostgreSQL's default (pglz). The server is built with lz4 here."""
    methods = conn.execute(
        "SELECT attrelid::regclass::text, attcompression FROM pg_attribute"
        " WHERE attname = 'qbo_raw' AND attrelid = ANY (%s::regclass[]) ORDER BY 1",
        ([f"public.{t}" for t in APP_TABLE.values()],),
    ).fetchall()
    assert methods == sorted((t, "l") for t in APP_TABLE.values())


def test_a_pass_remembers_only_the_ids_whose_rows_it_did_not_write_itself(conn, org):
    """Rows synced in the page's own transaction are never judged at the pass's end, so a
    first pull remembers nothing; rows synced before the pass are remembered."""
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        for n, synced in ((1, "now()"), (2, "now()"), (3, "now() - interval '1 hour'")):
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name, qbo_id,"
                f" qbo_sync_token, qbo_sync_status, qbo_last_synced_at)"
                f" VALUES (%s, %s, %s, '0', 'synced', {synced})",
                (org, f"C{n}", str(n)),
            )
        conn.execute(
            "SELECT qbo_sync.record_pass_seen(%s, 'customers', %s, true)",
            (org, ["1", "2", "3", "4"]),
        )
        seen = conn.execute(
            "SELECT array_agg(qbo_id ORDER BY qbo_id) FROM qbo_sync.pull_pass_seen"
        ).fetchone()[0]
    assert seen == ["3", "4"]  # 4: read from QBO but not here (held, say): remembered too


LINE_EDGE_CASES: list[dict[str, Any]] = [
    {"Id": "e1"},  # no Line at all
    {"Id": "e2", "Line": {"Id": "1"}},  # not a list
    {
        "Id": "e3",
        "Line": [
            {
                "Id": "1",
                "LineNum": 4,
                "Amount": Decimal("12.50"),
                "DetailType": "SalesItemLineDetail",
                "Description": "with everything",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "7"},
                    "Qty": Decimal("2.5"),
                    "UnitPrice": Decimal("5"),
                    "TaxCodeRef": {"value": "TAX"},
                    "ServiceDate": "2026-01-31",
                },
            },
            {
                "Amount": Decimal("12.50"),
                "DetailType": "SubTotalLineDetail",
                "SubTotalLineDetail": {},
            },
            {"Id": "2", "DetailType": "DiscountLineDetail", "Amount": Decimal("1")},
            {"Id": "3", "DetailType": "DescriptionOnly", "Description": "a note"},
            # no LineNum, Qty or UnitPrice: the position among sales lines, 1, and the amount
            {
                "Id": "4",
                "Amount": Decimal("3.10"),
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "8"}},
            },
            # LineNum 0 and amounts as text; no amount: 0, and unit price 0
            {
                "Id": "5",
                "LineNum": 0,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"Qty": "3", "UnitPrice": ""},
            },
            # a line without an Id (the engine skips it) and without a detail object
            {"Amount": Decimal("9"), "LineNum": "7", "DetailType": "SalesItemLineDetail"},
        ],
    },
]


def test_a_pulls_lines_mapped_in_sql_are_what_the_python_mapping_makes(conn, seeded):
    """qbo_sync.invoice_lines_of (a pull's lines, read from the invoices' JSON in SQL) equals
    mapping.invoice_lines on every invoice QBO holds and on edge cases, field by field."""
    connected = connect_realm(conn, seeded)
    invoices = qbo_objects(seeded, connected.access, "invoices") + LINE_EDGE_CASES
    assert sum(len(mapping.invoice_lines(i)) for i in invoices) > 2 * SEEDED["invoices"]
    doc = json.dumps(invoices, default=str)
    in_sql = conn.execute("SELECT * FROM qbo_sync.invoice_lines_of(%s)", (doc,))
    names = [c.name for c in in_sql.description or []]
    have = [dict(zip(names, r, strict=True)) for r in in_sql]
    want = [
        line | {"invoice_qbo_id": str(invoice["Id"])}
        for invoice in invoices
        for line in mapping.invoice_lines(invoice)
    ]
    assert len(have) == len(want)
    for mine, theirs in zip(have, want, strict=True):
        for column in (f.column for f in mapping.LINE_FIELDS):
            assert normal(mine[column]) == normal(theirs[column]), (column, mine, theirs)
        assert mine["qbo_line_id"] == theirs["qbo_line_id"]
        assert mine["line_number"] == theirs["line_number"]
        assert mine["item_qbo_id"] == theirs[mapping.reference_key("item_id")]
        assert mine["invoice_qbo_id"] == theirs["invoice_qbo_id"]
        assert mine["detail_type"] == theirs["detail_type"]
    edge = [m for m in have if m["invoice_qbo_id"] == "e3"]
    assert [m["line_number"] for m in edge] == [4, 2, 3, 7]
    assert [m["unit_price"] for m in edge] == [Decimal("5"), Decimal("3.10"), 0, Decimal("9")]
    # the items to fetch first are those the sales lines name
    assert mapping.line_item_ids(LINE_EDGE_CASES[2]) == {"7", "8"}
    assert mapping.line_item_ids(LINE_EDGE_CASES[1]) == set()

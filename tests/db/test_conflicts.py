"""Conflicts: the three-way merge of a row changed both here and in QBO, against the real
database and the simulator over HTTP. Fields changed on one side only merge; a field changed on
both goes by the organization's policy (QBO wins by default, local wins, or hold for a person),
with per-field owners overriding it; what QBO computes never conflicts. The merge runs in a pull
(for the rows the pull finds changed here too) and in a push that QBO answered 5010 (through
qbo_sync_db.conflicts.merge_remote, called here by a probe job); a held conflict is resolved by
public.qbo_sync_resolve_conflict and the next push or pull honours it."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from qbo_sync_db import conflicts, mapping

from tests.db.qbo_jobs import LoggedServer, connect_realm
from tests.db.test_pull import local_rows, pull, qbo_objects, seeded  # noqa: F401 - fixture
from tests.db.test_qbo_calls import outcome, run_worker, sim_control
from tests.simulator.simtools import REALM

PROBE_SOURCE = (Path(__file__).parent / "conflict_probe.py").read_text()


@pytest.fixture
def merge_probe(conn: psycopg.Connection) -> Iterator[None]:
    """The merge_remote probe installed as the handler of 'customers' jobs (removed afterwards)."""
    conn.execute(
        """INSERT INTO qbo_sync.python_module (name, source, is_package, version)
           VALUES ('qbo_sync_db.testing_conflict_probe', %s, false, qbo_sync.version())""",
        (PROBE_SOURCE,),
    )
    built_in = conn.execute(
        "SELECT handler FROM qbo_sync.entity WHERE entity = 'customers'"
    ).fetchone()[0]
    conn.execute(
        "UPDATE qbo_sync.entity SET handler = 'qbo_sync_db.testing_conflict_probe:run'"
        " WHERE entity = 'customers'"
    )
    yield
    conn.execute("UPDATE qbo_sync.entity SET handler = %s WHERE entity = 'customers'", (built_in,))
    conn.execute(
        "DELETE FROM qbo_sync.python_module WHERE name = 'qbo_sync_db.testing_conflict_probe'"
    )


def push(conn: psycopg.Connection, org: uuid.UUID, entity: str) -> uuid.UUID:
    job = conn.execute("SELECT trigger_qbo_sync(%s, %s, 'push')", (org, entity)).fetchone()[0]
    run_worker(conn)
    return job


def merge_remote(conn: psycopg.Connection, org: uuid.UUID, row: dict) -> dict:
    """Run merge_remote through the probe job for invoice `row`; returns the job's outcome."""
    payload = {"entity": "invoices", "row_id": str(row["id"]), "qbo_id": row["qbo_id"]}
    job = conn.execute(
        "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', NULL, 'manual', %s)",
        (org, json.dumps(payload)),
    ).fetchone()[0]
    run_worker(conn)
    return outcome(conn, job)


def qbo_change(sim: LoggedServer, entity: str, qbo_id: str, **fields: Any) -> None:
    sim_control(
        sim, "POST", f"realms/{REALM}/change", {"entity": entity, "id": qbo_id, "fields": fields}
    )


def local_change(conn: psycopg.Connection, table: str, row_id: uuid.UUID, **values: Any) -> None:
    statement = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values),
    )
    conn.execute(statement, (*values.values(), row_id))


def qbo_object(sim: LoggedServer, token: str, entity: str, qbo_id: str) -> dict:
    return next(o for o in qbo_objects(sim, token, entity) if o["Id"] == qbo_id)


def conflict_rows(conn: psycopg.Connection, org: uuid.UUID) -> list[dict]:
    cur = conn.execute(
        "SELECT * FROM qbo_sync_conflict WHERE organization_id = %s ORDER BY detected_at", (org,)
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur]


def set_policy(
    conn: psycopg.Connection, org: uuid.UUID, policy: str, owners: dict | None = None
) -> None:
    conn.execute(
        """INSERT INTO qbo_sync.organization_settings (organization_id, conflict_policy, field_owners)
           VALUES (%s, %s, %s)
           ON CONFLICT (organization_id) DO UPDATE
              SET conflict_policy = EXCLUDED.conflict_policy, field_owners = EXCLUDED.field_owners""",
        (org, policy, json.dumps(owners or {})),
    )


def pulled_invoice(conn: psycopg.Connection, org: uuid.UUID) -> dict:
    """Pull invoices; returns one invoice row (the first by QBO Id) that is not voided."""
    job = pull(conn, org, "invoices")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    rows = local_rows(conn, "invoices", org)
    return next(rows[q] for q in sorted(rows, key=int) if not rows[q]["is_voided"])


def invoice(conn: psycopg.Connection, org: uuid.UUID, qbo_id: str) -> dict:
    return local_rows(conn, "invoices", org)[qbo_id]


def conflicts_row(conn: psycopg.Connection, org: uuid.UUID, row_id: uuid.UUID) -> dict:
    """The invoice row as the merge reads it (qbo_sync.conflict_rows), decoded."""
    text = conn.execute(
        "SELECT r::text FROM qbo_sync.conflict_rows(%s, 'invoices', '{}', %s, %s) AS r",
        (org, [row_id], json.dumps({"customer_id": "customers"})),
    ).fetchone()[0]
    return json.loads(text, parse_float=Decimal)


# ----------------------------------------------------------------------------- merge_remote


def test_merge_remote_merges_disjoint_fields_and_keeps_the_local_change_to_push(
    conn,
    seeded,  # noqa: F811
    merge_probe,
):
    connected = connect_realm(conn, seeded)
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], due_date="2031-01-15")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO")
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])

    result = merge_remote(conn, connected.org, row)
    assert result["status"] == "completed", result
    assert result["summary"]["merge_outcome"] == "push"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert str(after["due_date"]) == "2031-01-15"  # the local change stays
    assert after["private_note"] == "noted in QBO"  # QBO's change arrives
    assert after["qbo_sync_token"] == there["SyncToken"]  # the new base
    assert after["qbo_raw"]["SyncToken"] == there["SyncToken"]
    assert after["qbo_local_version"] > after["qbo_synced_version"]
    assert after["qbo_sync_status"] == "pending"
    assert conflict_rows(conn, connected.org) == []


def test_merge_remote_same_field_qbo_wins_records_the_conflict_and_leaves_nothing_to_push(
    conn,
    seeded,  # noqa: F811
    merge_probe,
):
    connected = connect_realm(conn, seeded)
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], private_note="noted here")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO")

    result = merge_remote(conn, connected.org, row)
    assert result["summary"]["merge_outcome"] == "synced"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["private_note"] == "noted in QBO"
    assert after["qbo_local_version"] == after["qbo_synced_version"]
    assert after["qbo_sync_status"] == "synced"
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["fields"] == ["private_note"]
    assert conflict["local_values"] == {"private_note": "noted here"}
    assert conflict["remote_values"] == {"private_note": "noted in QBO"}
    assert conflict["base_values"] == {"private_note": row["private_note"]}
    assert (conflict["policy"], conflict["status"], conflict["detected_by"]) == (
        "qbo_wins",
        "resolved",
        "push",
    )
    assert conflict["resolution"] == "qbo_wins"
    assert conflict["resolved_values"] == {"private_note": "noted in QBO"}
    assert conflict["local_id"] == row["id"] and conflict["qbo_id"] == row["qbo_id"]


def test_merge_remote_on_hold_holds_the_row(conn, seeded, merge_probe):  # noqa: F811
    connected = connect_realm(conn, seeded)
    set_policy(conn, connected.org, "hold")
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], private_note="noted here")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO")

    result = merge_remote(conn, connected.org, row)
    assert result["summary"]["merge_outcome"] == "held"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["private_note"] == "noted here"
    assert after["qbo_sync_status"] == "conflict"
    assert after["qbo_local_version"] == after["qbo_synced_version"]  # not pushed meanwhile
    [conflict] = conflict_rows(conn, connected.org)
    assert (conflict["status"], conflict["detected_by"]) == ("held", "push")
    assert conflict["resolved_values"] is None


# ----------------------------------------------------------------------------- pulls and pushes


def test_disjoint_edits_of_an_invoice_merge_and_both_sides_end_equal(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], due_date="2031-02-01")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO")

    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert (summary["held"], summary["merged"], summary["conflicts"]) == (1, 1, 0)
    assert conflict_rows(conn, connected.org) == []
    merged = invoice(conn, connected.org, row["qbo_id"])
    assert merged["private_note"] == "noted in QBO" and str(merged["due_date"]) == "2031-02-01"
    assert merged["qbo_sync_status"] == "pending"

    result = outcome(conn, push(conn, connected.org, "invoices"))
    assert result["status"] == "completed", result
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    after = invoice(conn, connected.org, row["qbo_id"])
    assert there["DueDate"] == "2031-02-01" and there["PrivateNote"] == "noted in QBO"
    assert after["qbo_sync_status"] == "synced" and after["qbo_sync_token"] == there["SyncToken"]
    # every merged field equal on both sides
    want = conflicts.remote_values("invoices", there)
    have = conflicts.local_values("invoices", conflicts_row(conn, connected.org, after["id"]))
    for key, kind in conflicts.mergeable_kinds("invoices").items():
        assert conflicts.same(kind, key, have[key], want[key]), key


def test_the_same_field_edited_on_both_sides_qbo_wins_and_nothing_is_pushed(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], private_note="noted here")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO")
    token = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])["SyncToken"]

    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert (summary["merged"], summary["conflicts"]) == (1, 1)
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["private_note"] == "noted in QBO" and after["qbo_sync_status"] == "synced"
    assert after["qbo_local_version"] == after["qbo_synced_version"]
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["fields"] == ["private_note"] and conflict["detected_by"] == "pull"
    assert conflict["local_values"] == {"private_note": "noted here"}
    assert conflict["remote_values"] == {"private_note": "noted in QBO"}
    assert (conflict["status"], conflict["resolution"]) == ("resolved", "qbo_wins")

    summary = outcome(conn, push(conn, connected.org, "invoices"))["summary"]
    assert summary.get("pushed_updates", 0) == 0
    assert qbo_object(seeded, connected.access, "invoices", row["qbo_id"])["SyncToken"] == token


def test_the_same_field_edited_on_both_sides_local_wins_is_pushed(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    set_policy(conn, connected.org, "local_wins")
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], private_note="noted here")
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO", DueDate="2032-03-03")

    outcome(conn, pull(conn, connected.org, "invoices"))
    merged = invoice(conn, connected.org, row["qbo_id"])
    assert merged["private_note"] == "noted here" and str(merged["due_date"]) == "2032-03-03"
    [conflict] = conflict_rows(conn, connected.org)
    assert (conflict["policy"], conflict["resolution"]) == ("local_wins", "local_wins")
    assert conflict["resolved_values"] == {"private_note": "noted here"}

    assert outcome(conn, push(conn, connected.org, "invoices"))["status"] == "completed"
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert there["PrivateNote"] == "noted here" and there["DueDate"] == "2032-03-03"
    assert invoice(conn, connected.org, row["qbo_id"])["qbo_sync_status"] == "synced"


def test_a_field_owner_overrides_the_hold_policy(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    set_policy(conn, connected.org, "hold", {"invoices.due_date": "local"})
    row = pulled_invoice(conn, connected.org)
    local_change(conn, "invoice_record", row["id"], due_date="2031-04-04")
    qbo_change(seeded, "Invoice", row["qbo_id"], DueDate="2030-05-05")

    outcome(conn, pull(conn, connected.org, "invoices"))
    after = invoice(conn, connected.org, row["qbo_id"])
    assert str(after["due_date"]) == "2031-04-04" and after["qbo_sync_status"] == "pending"
    [conflict] = conflict_rows(conn, connected.org)
    assert (conflict["status"], conflict["resolution"]) == ("resolved", "local_wins")
    outcome(conn, push(conn, connected.org, "invoices"))
    assert (
        qbo_object(seeded, connected.access, "invoices", row["qbo_id"])["DueDate"] == "2031-04-04"
    )


def test_qbo_computed_totals_never_conflict_and_qbo_line_changes_arrive(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    set_policy(conn, connected.org, "hold")
    row = pulled_invoice(conn, connected.org)
    # here: a header field, and totals the application wrote itself
    local_change(
        conn,
        "invoice_record",
        row["id"],
        customer_memo="thanks",
        total_amount=Decimal("99999"),
        balance_due=Decimal("99999"),
    )
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    lines = copy.deepcopy(there["Line"])
    sales = next(line for line in lines if line.get("DetailType") == "SalesItemLineDetail")
    sales["SalesItemLineDetail"]["Qty"] = 3
    sales["SalesItemLineDetail"]["UnitPrice"] = 10
    sales["Amount"] = 30
    lines = json.loads(
        json.dumps(
            [x for x in lines if x.get("DetailType") == "SalesItemLineDetail"], default=float
        )
    )
    qbo_change(seeded, "Invoice", row["qbo_id"], Line=lines)
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])

    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert (summary["merged"], summary["conflicts"], summary["held_for_person"]) == (1, 0, 0)
    assert conflict_rows(conn, connected.org) == []
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["customer_memo"] == "thanks" and after["qbo_sync_status"] == "pending"
    assert after["total_amount"] == Decimal(str(there["TotalAmt"]))  # QBO's, not ours
    local_lines = conn.execute(
        "SELECT qbo_line_id, amount FROM invoice_line_item WHERE invoice_id = %s ORDER BY line_number",
        (row["id"],),
    ).fetchall()
    assert [(q, a) for q, a in local_lines] == [
        (line["qbo_line_id"], line["amount"]) for line in mapping.invoice_lines(there)
    ]
    assert outcome(conn, push(conn, connected.org, "invoices"))["status"] == "completed"
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert there["CustomerMemo"]["value"] == "thanks"
    assert Decimal(str(there["TotalAmt"])) == after["total_amount"]


# ----------------------------------------------------------------------------- held for a person


def held_invoice(conn, sim, connected) -> tuple[dict, dict]:
    """An invoice whose note was changed on both sides under the 'hold' policy, pulled: the row
    is 'conflict' and its conflict held. Returns (row before, conflict)."""
    set_policy(conn, connected.org, "hold")
    row = pulled_invoice(conn, connected.org)
    local_change(
        conn, "invoice_record", row["id"], private_note="noted here", due_date="2031-06-06"
    )
    qbo_change(sim, "Invoice", row["qbo_id"], PrivateNote="noted in QBO", DueDate="2030-07-07")
    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert (summary["conflicts"], summary["held_for_person"]) == (1, 1)
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["status"] == "held" and conflict["resolved_values"] is None
    assert sorted(conflict["fields"]) == ["due_date", "private_note"]
    return row, conflict


def test_a_held_row_waits_is_not_pushed_and_records_qbos_newer_values(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["qbo_sync_status"] == "conflict" and after["private_note"] == "noted here"
    token = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])["SyncToken"]
    summary = outcome(conn, push(conn, connected.org, "invoices"))["summary"]
    assert summary.get("pushed_updates", 0) == 0
    assert qbo_object(seeded, connected.access, "invoices", row["qbo_id"])["SyncToken"] == token

    # QBO changes again: the row still waits; the conflict shows QBO's newest values
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO again")
    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert summary["held_for_person"] == 1 and summary["merged"] == 0
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["qbo_sync_status"] == "conflict" and after["private_note"] == "noted here"
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["status"] == "held"
    assert conflict["remote_values"]["private_note"] == "noted in QBO again"


def resolve(conn, conflict_id, choice, values=None) -> dict:
    return conn.execute(
        "SELECT qbo_sync_resolve_conflict(%s, %s, %s)",
        (conflict_id, choice, None if values is None else json.dumps(values)),
    ).fetchone()[0]


def app_session(connect, org: uuid.UUID) -> psycopg.Connection:
    app = connect(user="qbo_sync_app")
    app.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))
    return app


def test_resolved_local_by_the_application_is_pushed(conn, connect, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    # edited again while it waited: the edit stays, and is not pushed before the decision
    local_change(conn, "invoice_record", row["id"], customer_memo="edited while held")
    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert invoice(conn, connected.org, row["qbo_id"])["qbo_sync_status"] == "conflict"

    done = resolve(app_session(connect, connected.org), conflict["id"], "local")
    assert done["row_status"] == "pending"
    [resolved] = conflict_rows(conn, connected.org)
    assert (resolved["status"], resolved["resolution"]) == ("resolved", "local_wins")
    assert resolved["resolved_by"] == "qbo_sync_app" and resolved["resolved_at"] is not None
    assert resolved["resolved_values"] == {"private_note": "noted here", "due_date": "2031-06-06"}

    summary = outcome(conn, push(conn, connected.org, "invoices"))["summary"]
    assert summary["pushed_updates"] == 1
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert there["PrivateNote"] == "noted here" and there["DueDate"] == "2031-06-06"
    assert there["CustomerMemo"]["value"] == "edited while held"
    assert invoice(conn, connected.org, row["qbo_id"])["qbo_sync_status"] == "synced"


def test_resolved_qbo_takes_qbos_values_and_the_next_pull_applies_qbo_changes(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    done = resolve(conn, conflict["id"], "qbo")
    assert done["row_status"] == "synced"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["private_note"] == "noted in QBO" and str(after["due_date"]) == "2030-07-07"
    assert after["qbo_local_version"] == after["qbo_synced_version"]
    [resolved] = conflict_rows(conn, connected.org)
    assert resolved["resolution"] == "qbo_wins" and resolved["resolved_by"] is not None
    # no longer held: QBO's next change is applied as any other
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="later in QBO")
    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert summary["updated"] == 1 and summary["held"] == 0
    assert invoice(conn, connected.org, row["qbo_id"])["private_note"] == "later in QBO"


def test_resolved_custom_merges_with_a_qbo_change_made_meanwhile(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    qbo_change(seeded, "Invoice", row["qbo_id"], CustomerMemo={"value": "memo from QBO"})
    with pytest.raises(psycopg.Error, match="custom values must name exactly the held fields"):
        resolve(conn, conflict["id"], "custom", {"private_note": "agreed"})
    done = resolve(
        conn, conflict["id"], "custom", {"private_note": "agreed", "due_date": "2033-01-01"}
    )
    assert done["row_status"] == "pending"
    # the push meets QBO's newer SyncToken (5010); either way QBO ends with both changes
    outcome(conn, push(conn, connected.org, "invoices"))
    outcome(conn, pull(conn, connected.org, "invoices"))
    outcome(conn, push(conn, connected.org, "invoices"))
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert there["PrivateNote"] == "agreed" and there["DueDate"] == "2033-01-01"
    assert there["CustomerMemo"]["value"] == "memo from QBO"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["customer_memo"] == "memo from QBO" and after["qbo_sync_status"] == "synced"
    with pytest.raises(psycopg.Error, match="not waiting for a decision"):
        resolve(conn, conflict["id"], "qbo")


def test_only_the_organizations_application_may_resolve_and_the_monitor_cannot(
    conn,
    connect,
    seeded,  # noqa: F811
):
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    other = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Other')", (other,))
    with pytest.raises(psycopg.errors.NoDataFound):
        resolve(app_session(connect, other), conflict["id"], "local")
    monitor = connect(user="qbo_sync_monitor")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        resolve(monitor, conflict["id"], "local")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        resolve(app_session(connect, connected.org), conflict["id"], "mine")
    # nothing changed
    [still] = conflict_rows(conn, connected.org)
    assert still["status"] == "held" and still["resolved_by"] is None
    assert invoice(conn, connected.org, row["qbo_id"])["qbo_sync_status"] == "conflict"


def test_a_push_conflict_about_a_name_in_use_is_resolved_with_new_values(conn, org):
    """A create QBO refused because another linked row has the name (the push records it, held):
    'qbo' has nothing to take; 'custom' gives the row a new name and it is pushed again."""
    row_id = conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Taken')"
        " RETURNING id",
        (org,),
    ).fetchone()[0]
    conflict_id = conn.execute(
        """INSERT INTO qbo_sync_conflict (organization_id, entity, local_id, qbo_id, local_values,
                                          remote_values, fields, resolution, policy, status, detected_by)
           VALUES (%s, 'customers', %s, '77', '{"display_name": "Taken"}',
                   '{"display_name": "Taken"}', '{display_name}', 'hold', 'hold', 'held', 'push')
           RETURNING id""",
        (org, row_id),
    ).fetchone()[0]
    conn.execute(
        "UPDATE customer_profile SET qbo_sync_status = 'conflict' WHERE id = %s", (row_id,)
    )
    with pytest.raises(psycopg.Error, match="choose 'local' or 'custom'"):
        resolve(conn, conflict_id, "qbo")
    done = resolve(conn, conflict_id, "custom", {"display_name": "Taken (2)"})
    assert done["row_status"] == "pending"
    name, status, pending = conn.execute(
        "SELECT display_name, qbo_sync_status, qbo_local_version > qbo_synced_version"
        " FROM customer_profile WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert (name, status, pending) == ("Taken (2)", "pending", True)
    [resolved] = conflict_rows(conn, org)
    assert resolved["resolution"] == "custom"
    assert resolved["resolved_values"] == {"display_name": "Taken (2)"}


def test_lines_edited_on_both_sides_take_one_sides_whole_list(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    row = pulled_invoice(conn, connected.org)
    first = conn.execute(
        "SELECT id FROM invoice_line_item WHERE invoice_id = %s ORDER BY line_number LIMIT 1",
        (row["id"],),
    ).fetchone()[0]
    local_change(conn, "invoice_line_item", first, description="described here")
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    lines = json.loads(
        json.dumps(
            [x for x in there["Line"] if x.get("DetailType") == "SalesItemLineDetail"],
            default=float,
        )
    )
    lines[-1]["Description"] = "described in QBO"
    qbo_change(seeded, "Invoice", row["qbo_id"], Line=lines)
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])

    summary = outcome(conn, pull(conn, connected.org, "invoices"))["summary"]
    assert (summary["merged"], summary["conflicts"]) == (1, 1)
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["fields"] == ["lines"] and conflict["resolution"] == "qbo_wins"
    assert "described here" in json.dumps(conflict["local_values"]["lines"])
    assert "described in QBO" in json.dumps(conflict["remote_values"]["lines"])
    have = conn.execute(
        "SELECT qbo_line_id, description FROM invoice_line_item WHERE invoice_id = %s"
        " ORDER BY line_number",
        (row["id"],),
    ).fetchall()
    assert have == [(x["qbo_line_id"], x["description"]) for x in mapping.invoice_lines(there)]
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["qbo_sync_status"] == "synced"


def test_held_with_an_owned_field_the_person_decides_only_the_rest(conn, seeded):  # noqa: F811
    connected = connect_realm(conn, seeded)
    set_policy(conn, connected.org, "hold", {"invoices.due_date": "local"})
    row = pulled_invoice(conn, connected.org)
    local_change(
        conn, "invoice_record", row["id"], private_note="noted here", due_date="2031-06-06"
    )
    qbo_change(seeded, "Invoice", row["qbo_id"], PrivateNote="noted in QBO", DueDate="2030-07-07")
    outcome(conn, pull(conn, connected.org, "invoices"))
    [conflict] = conflict_rows(conn, connected.org)
    assert conflict["status"] == "held" and conflict["resolved_values"] == {
        "due_date": "2031-06-06"
    }
    done = resolve(conn, conflict["id"], "qbo")
    assert done["fields"] == ["private_note"] and done["row_status"] == "pending"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["private_note"] == "noted in QBO" and str(after["due_date"]) == "2031-06-06"
    [resolved] = conflict_rows(conn, connected.org)
    assert resolved["resolved_values"] == {"due_date": "2031-06-06", "private_note": "noted in QBO"}
    outcome(conn, push(conn, connected.org, "invoices"))
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert there["DueDate"] == "2031-06-06" and there["PrivateNote"] == "noted in QBO"


def test_a_held_row_edited_here_is_not_pushed_by_a_push_alone(conn, seeded):  # noqa: F811
    """A held row keeps its old SyncToken: edited again and pushed before any pull, the push
    meets 5010, and the merge finds it held: QBO keeps its values, the row waits again."""
    connected = connect_realm(conn, seeded)
    row, conflict = held_invoice(conn, seeded, connected)
    there = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    held = invoice(conn, connected.org, row["qbo_id"])
    assert held["qbo_sync_token"] == row["qbo_sync_token"] != there["SyncToken"]
    assert held["qbo_raw"]["SyncToken"] == there["SyncToken"]  # QBO's object is the base
    local_change(conn, "invoice_record", row["id"], customer_memo="edited while held")
    outcome(conn, push(conn, connected.org, "invoices"))
    now = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert now["SyncToken"] == there["SyncToken"] and now["PrivateNote"] == "noted in QBO"
    after = invoice(conn, connected.org, row["qbo_id"])
    assert after["qbo_sync_status"] == "conflict" and after["customer_memo"] == "edited while held"
    # the person decides: the SyncToken is QBO's again, and the push goes through
    resolve(conn, conflict["id"], "local")
    assert invoice(conn, connected.org, row["qbo_id"])["qbo_sync_token"] == there["SyncToken"]
    outcome(conn, push(conn, connected.org, "invoices"))
    now = qbo_object(seeded, connected.access, "invoices", row["qbo_id"])
    assert (
        now["PrivateNote"] == "noted here" and now["CustomerMemo"]["value"] == "edited while held"
    )


def test_a_merge_is_not_applied_over_a_local_change_made_since_it_was_read(conn, org):
    row_id, version = conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name, qbo_id, qbo_sync_token)"
        " VALUES (%s, 'Before', '41', '3') RETURNING id, qbo_local_version",
        (org,),
    ).fetchone()
    conn.execute("UPDATE customer_profile SET notes = 'edited meanwhile' WHERE id = %s", (row_id,))
    change = {
        "id": str(row_id),
        "version": version,  # as read before the edit
        "status": "synced",
        "columns": ["display_name"],
        "refs": {},
        "values": {"display_name": "From QBO", "qbo_sync_token": "4", "qbo_raw": {"Id": "41"}},
        "new_base": True,
        "lines": None,
        "conflict": {"fields": ["display_name"], "status": "resolved", "detected_by": "pull"},
    }
    result = conn.execute(
        "SELECT qbo_sync.apply_merges(%s, 'customers', %s)", (org, json.dumps([change]))
    ).fetchone()[0]
    assert result == {"applied": [], "stale": [str(row_id)]}
    name, notes, token = conn.execute(
        "SELECT display_name, notes, qbo_sync_token FROM customer_profile WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert (name, notes, token) == ("Before", "edited meanwhile", "3")
    assert conflict_rows(conn, org) == []  # no conflict recorded for a merge not applied
    # read again, it applies
    change["version"] = conn.execute(
        "SELECT qbo_local_version FROM customer_profile WHERE id = %s", (row_id,)
    ).fetchone()[0]
    change["conflict"] = None
    result = conn.execute(
        "SELECT qbo_sync.apply_merges(%s, 'customers', %s)", (org, json.dumps([change]))
    ).fetchone()[0]
    assert result == {"applied": [str(row_id)], "stale": []}
    # the engine writes business columns only
    change["columns"] = ["qbo_id"]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(
            "SELECT qbo_sync.apply_merges(%s, 'customers', %s)", (org, json.dumps([change]))
        )

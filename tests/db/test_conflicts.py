"""Conflicts: the three-way merge of a row changed both here and in QBO, against the real
database and the simulator over HTTP. Fields changed on one side only merge; a field changed on
both goes by the organization's policy (QBO wins by default, local wins, or hold for a person),
with per-field owners overriding it; what QBO computes never conflicts. The merge runs in a pull
(for the rows the pull finds changed here too) and in a push that QBO answered 5010 (through
qbo_sync_db.conflicts.merge_remote, called here by a probe job); a held conflict is resolved by
public.qbo_sync_resolve_conflict and the next push or pull honours it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

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
    assert outcome(conn, job)["status"] == "completed"
    rows = local_rows(conn, "invoices", org)
    return next(rows[q] for q in sorted(rows, key=int) if not rows[q]["is_voided"])


def invoice(conn: psycopg.Connection, org: uuid.UUID, qbo_id: str) -> dict:
    return local_rows(conn, "invoices", org)[qbo_id]


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

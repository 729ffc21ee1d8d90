"""Pushing through QBO's batch endpoint together with single calls, through the worker against a
seeded simulator over HTTP: creates and sparse updates go as batches of at most 30 with single
calls between them, every item's answer is stored with its row (Id, SyncToken, timestamps), and a
stale SyncToken (5010) is read, merged and pushed once more (or recognised as our own update)."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import change, local_rows, pull, qbo_objects, seeded  # noqa: F401
from tests.db.test_push import add_customer, push
from tests.db.test_qbo_calls import outcome, sim_control

REALM = "9341453050298375"


def counters(sim) -> dict:
    return sim_control(sim, "GET", f"realms/{REALM}/counters")["counters"]


def test_45_creates_go_as_two_batches_and_11_single_calls_then_updates_as_batches(conn, seeded):
    connected = connect_realm(conn, seeded)
    names = [f"Batch Client {n:02}" for n in range(45)]
    ids = {name: add_customer(conn, connected.org, name, notes=f"note {name}") for name in names}
    before = counters(seeded)
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    # 30 in a batch, 11 single calls (QBO's 500 a minute less its 40 batches, per batch), 4 in
    # a batch
    assert (summary["created"], summary["batches"], summary["single_calls"]) == (45, 2, 11)
    after = counters(seeded)
    assert after.get("batch", 0) - before.get("batch", 0) == 2
    assert after.get("batch.item", 0) - before.get("batch.item", 0) == 34
    assert after.get("write.customer", 0) - before.get("write.customer", 0) == 11
    there = {o["DisplayName"]: o for o in qbo_objects(seeded, connected.access, "customers")}
    assert all(name in there for name in names)
    rows = {r["display_name"]: r for r in local_rows(conn, "customers", connected.org).values()}
    for name in names:
        row, obj = rows[name], there[name]
        assert row["id"] == ids[name]
        assert (row["qbo_id"], row["qbo_sync_token"]) == (obj["Id"], obj["SyncToken"])
        assert row["qbo_sync_status"] == "synced" and row["qbo_created_at"] is not None
        assert row["qbo_raw"]["Id"] == obj["Id"]
    # sparse updates with the stored SyncToken, batched too
    conn.execute(
        "UPDATE customer_profile SET notes = 'batched update' WHERE organization_id = %s"
        " AND display_name LIKE 'Batch Client %%'",
        (connected.org,),
    )
    job = push(conn, connected.org, "customers")
    summary = outcome(conn, job)["summary"]
    assert (summary["pushed_updates"], summary["batches"]) == (45, 2)
    there = {o["DisplayName"]: o for o in qbo_objects(seeded, connected.access, "customers")}
    rows = {r["display_name"]: r for r in local_rows(conn, "customers", connected.org).values()}
    for name in names:
        assert there[name]["Notes"] == "batched update" and there[name]["SyncToken"] == "1"
        assert rows[name]["qbo_sync_token"] == "1" and rows[name]["qbo_sync_status"] == "synced"


def test_a_stale_sync_token_is_merged_and_the_row_pushed_once_more(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[3]
    # QBO's user changes the company name, the application the note: both survive
    change(seeded, "Customer", "update", some, CompanyName="Changed In QBO")
    conn.execute(
        "UPDATE customer_profile SET notes = 'changed here' WHERE organization_id = %s"
        " AND qbo_id = %s",
        (connected.org, some),
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["merged_push"] == 1 and result["summary"]["pushed_updates"] == 1
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    assert there["Notes"] == "changed here" and there["CompanyName"] == "Changed In QBO"
    row = local_rows(conn, "customers", connected.org)[some]
    assert row["company_name"] == "Changed In QBO" and row["qbo_sync_token"] == there["SyncToken"]
    assert row["qbo_sync_status"] == "synced"


def test_an_update_whose_answer_was_lost_and_that_was_resent_is_recognised_as_ours(conn, seeded):
    """QBO not honouring requestid: the resent update meets 5010 (its own first send moved the
    SyncToken on); QBO's object holds what was sent, so it is stored as pushed, no conflict."""
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[4]
    sim_control(seeded, "PATCH", "config", {"requestid_mode": "ignore"})
    sim_control(
        seeded,
        "POST",
        "faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/customer"}]},
    )
    conn.execute(
        "UPDATE customer_profile SET notes = 'sent twice' WHERE organization_id = %s"
        " AND qbo_id = %s",
        (connected.org, some),
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["pushed_updates"] == 1 and result["summary"]["conflicts"] == 0
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    row = local_rows(conn, "customers", connected.org)[some]
    assert there["Notes"] == "sent twice"
    assert (row["qbo_sync_status"], row["qbo_sync_token"]) == ("synced", there["SyncToken"])


def test_a_5010_on_one_item_of_a_batch_is_merged_and_the_others_are_stored(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    ids = sorted(local_rows(conn, "customers", connected.org), key=int)[5:8]
    change(seeded, "Customer", "update", ids[1], CompanyName="Moved On In QBO")
    conn.execute(
        "UPDATE customer_profile SET notes = 'batch of three' WHERE organization_id = %s"
        " AND qbo_id = ANY (%s)",
        (connected.org, ids),
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    # two stored from the batch, the stale one merged and pushed once more on its own
    assert (summary["batches"], summary["pushed_updates"], summary["merged_push"]) == (1, 3, 1)
    there = {o["Id"]: o for o in qbo_objects(seeded, connected.access, "customers")}
    assert all(there[i]["Notes"] == "batch of three" for i in ids)
    assert there[ids[1]]["CompanyName"] == "Moved On In QBO"
    rows = local_rows(conn, "customers", connected.org)
    assert all(rows[i]["qbo_sync_status"] == "synced" for i in ids)
    assert all(rows[i]["qbo_sync_token"] == there[i]["SyncToken"] for i in ids)


def test_a_5010_on_a_field_changed_on_both_sides_under_the_hold_policy_waits_for_a_person(
    conn, seeded
):
    connected = connect_realm(conn, seeded)
    conn.execute(
        "INSERT INTO qbo_sync.organization_settings (organization_id, conflict_policy)"
        " VALUES (%s, 'hold') ON CONFLICT (organization_id) DO UPDATE SET conflict_policy = 'hold'",
        (connected.org,),
    )
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[8]
    change(seeded, "Customer", "update", some, Notes="QBO's note")
    conn.execute(
        "UPDATE customer_profile SET notes = 'our note' WHERE organization_id = %s AND qbo_id = %s",
        (connected.org, some),
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["merged_held"] == 1 and result["summary"]["pushed_updates"] == 0
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    assert there["Notes"] == "QBO's note"  # nothing overwritten in QBO
    row = local_rows(conn, "customers", connected.org)[some]
    assert row["qbo_sync_status"] == "conflict" and row["notes"] == "our note"
    held = conn.execute(
        "SELECT count(*) FROM qbo_sync_conflict WHERE organization_id = %s AND qbo_id = %s"
        " AND status = 'held'",
        (connected.org, some),
    ).fetchone()[0]
    assert held == 1


def test_200_creates_take_55_requests_paced_under_qbos_limits(conn, seeded):
    """A round of 123 rows (three batches of 30, each followed by 11 single calls), then one of
    77 (30, 11, 30, 6): 5 batches and 50 single calls for 200 operations, none throttled."""
    connected = connect_realm(conn, seeded)
    for n in range(200):
        add_customer(conn, connected.org, f"Paced Client {n:03}")
    before = counters(seeded)
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    assert summary["created"] == 200
    assert (summary["batches"], summary["single_calls"]) == (5, 50)
    after = counters(seeded)
    assert after.get("throttled", 0) == before.get("throttled", 0)  # the pacer kept under
    names = {o["DisplayName"] for o in qbo_objects(seeded, connected.access, "customers")}
    assert all(f"Paced Client {n:03}" in names for n in range(200))


def test_two_stale_rows_of_one_batch_are_merged_and_pushed_once_more_as_a_batch(conn, seeded):
    """The batch sent again holds the same rows at the same versions, with QBO's newer
    SyncTokens: another request (QBO must not answer it with the first batch's 5010s)."""
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    ids = sorted(local_rows(conn, "customers", connected.org), key=int)[9:11]
    for qbo_id in ids:
        change(seeded, "Customer", "update", qbo_id, CompanyName=f"QBO {qbo_id}")
    conn.execute(
        "UPDATE customer_profile SET notes = 'both stale' WHERE organization_id = %s"
        " AND qbo_id = ANY (%s)",
        (connected.org, ids),
    )
    job = push(conn, connected.org, "customers")
    result = outcome(conn, job)
    assert result["status"] == "completed", result
    summary = result["summary"]
    assert (summary["batches"], summary["merged_push"], summary["pushed_updates"]) == (2, 2, 2)
    there = {o["Id"]: o for o in qbo_objects(seeded, connected.access, "customers")}
    rows = local_rows(conn, "customers", connected.org)
    for qbo_id in ids:
        assert there[qbo_id]["Notes"] == "both stale"
        assert there[qbo_id]["CompanyName"] == f"QBO {qbo_id}"
        assert rows[qbo_id]["qbo_sync_status"] == "synced"

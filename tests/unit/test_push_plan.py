"""qbo_sync_db.push's pure parts, without a database: how operations are split into batches and
single calls (and that the split, paced by the shared pacer's arithmetic, uses a realm's whole
budget: about 1,660 operations a minute, never more than 500 requests or 40 batches), how a batch's
requestid is made, how QBO's object is matched against what was sent, and which class a failed
request gives a row."""

from __future__ import annotations

from decimal import Decimal

from qbo_sync_db import client, pacing, push
from qbo_sync_db.errors import (
    QboReconnectNeeded,
    QboRequestRejected,
    QboServerError,
    QboThrottled,
    QboUnauthorized,
    QboUnreachable,
)

T0 = 1_700_000_000.0


def test_singles_between_batches_follow_qbos_limits():
    assert push.singles_per_batch(500, 40) == 11
    assert push.singles_per_batch(500, 0) == 0  # no batch limit: batches only
    assert push.singles_per_batch(0, 40) == 0


def test_a_plan_is_batches_of_at_most_30_with_single_calls_between():
    assert push.plan(0, 30, 11) == []
    assert push.plan(1, 30, 11) == [("single", 0, 1)]
    assert push.plan(2, 30, 11) == [("batch", 0, 2)]
    runs = push.plan(100, 30, 11)
    assert runs[0] == ("batch", 0, 30)
    assert runs[1:12] == [("single", i, i + 1) for i in range(30, 41)]
    assert runs[12] == ("batch", 41, 71)
    # every operation exactly once, in order, no batch over 30
    covered = [i for _kind, start, end in runs for i in range(start, end)]
    assert covered == list(range(100))
    assert all(end - start <= 30 for kind, start, end in runs if kind == "batch")
    # one left over after a run of singles goes alone
    assert push.plan(42, 30, 11)[-1] == ("single", 41, 42)


def test_the_plan_paced_by_the_shared_pacer_uses_the_whole_budget_of_a_realm():
    """A batch counts once toward the 500 a minute and once toward the 40 batches: sent as the
    plan says, as fast as the pacer lets them go, a minute carries close to 40 x 30 + 460."""
    limits = pacing.Limits()
    singles = push.singles_per_batch(limits.per_minute, limits.batches_per_minute)
    # rounds of push.ROUND rows, as the push reads them
    runs = push.plan(push.ROUND, client.BATCH_MAX_ITEMS, singles) * 100
    state = pacing.new_state(T0)
    now = T0
    sent: list[tuple[float, str, int]] = []
    for kind, start, end in runs:
        pace = "batch" if kind == "batch" else "call"
        while True:
            decision, state = pacing.reserve(state, now, pace, limits)
            if decision.go:
                break
            now += decision.wait_seconds
        state = pacing.release(state, now, decision.slot, 0, limits)
        sent.append((now, kind, end - start))
        if now > T0 + 120:
            break
    minute = [s for s in sent if s[0] < T0 + 60]
    requests = len(minute)
    batches = sum(1 for s in minute if s[1] == "batch")
    operations = sum(s[2] for s in minute)
    assert requests <= 500 and batches <= 40
    assert operations >= 1580, (requests, batches, operations)  # 1,660 less the 2 % headroom


def test_a_batch_requestid_is_the_same_for_the_same_operations_only():
    row = {"id": "7e0b1c6e-0000-4000-8000-000000000001", "qbo_local_version": 3}
    create = push.Op("create", "Customer", {"DisplayName": "A"}, row, requestid="r-1")
    update = push.Op("update", "Customer", {"Id": "5", "SyncToken": "2"}, dict(row, id="x"))
    first = push.batch_requestid("customers", [create, update])
    assert first == push.batch_requestid("customers", [create, update])
    assert len(first) == 36  # a batch's requestid is at most 36 characters
    newer = push.Op("create", "Customer", {}, dict(row, qbo_local_version=4), requestid="r-1")
    assert push.batch_requestid("customers", [newer, update]) != first
    assert push.batch_requestid("customers", [update]) != first
    # an update's own requestid is fresh each time: the same update read again by a retried
    # job gives the same batch requestid
    again = push.Op("update", "Customer", update.body, update.row, requestid="another")
    assert push.batch_requestid("customers", [create, again]) == first
    # merged after a 5010: the same version with QBO's newer SyncToken is another request
    merged = push.Op("update", "Customer", {"Id": "5", "SyncToken": "3"}, update.row)
    assert push.batch_requestid("customers", [create, merged]) != first
    # refused once and retried unchanged: another request too
    retried = push.Op("update", "Customer", update.body, dict(update.row, qbo_sync_attempts=1))
    assert push.batch_requestid("customers", [create, retried]) != first


def test_what_was_sent_is_matched_against_qbos_object():
    sent = {
        "CustomerRef": {"value": "58"},
        "DocNumber": "APP-1",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal("30"),
                "SalesItemLineDetail": {"ItemRef": {"value": "3"}, "Qty": Decimal(3)},
            }
        ],
    }
    remote = {
        "Id": "130",
        "SyncToken": "0",
        "CustomerRef": {"value": "58", "name": "Red Rock Diner"},
        "DocNumber": "APP-1",
        "TotalAmt": Decimal("32.40"),
        "Line": [
            {
                "Id": "1",
                "LineNum": 1,
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal("30.00"),
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "3", "name": "Design"},
                    "Qty": 3,
                    "TaxCodeRef": {"value": "TAX"},
                },
            },
            {"DetailType": "SubTotalLineDetail", "Amount": Decimal("30.00")},
        ],
    }
    assert push.sent_matches(sent, remote)
    assert not push.sent_matches({**sent, "DocNumber": "APP-2"}, remote)
    other_amount = {**sent, "Line": [{**sent["Line"][0], "Amount": Decimal("31")}]}
    assert not push.sent_matches(other_amount, remote)
    two_lines = {**sent, "Line": sent["Line"] * 2}
    assert not push.sent_matches(two_lines, remote)
    assert push.sent_matches({"Active": True}, {"Active": True})
    assert not push.sent_matches({"Active": True}, {"Active": False})
    assert not push.sent_matches({"Taxable": False}, {})
    # the SyncToken sent is not QBO's concern once the object moved on
    assert push.sent_matches({"Id": "130", "SyncToken": "7", "sparse": True}, remote)


def test_a_failed_request_gives_its_rows_the_class_of_the_failure():
    assert push.problem_class(QboThrottled("x")) == "throttle"
    assert push.problem_class(QboServerError("x")) == "transient"
    assert push.problem_class(QboUnreachable("x")) == "transient"
    assert push.problem_class(QboUnauthorized("x")) == "auth"
    assert push.problem_class(QboReconnectNeeded("x")) == "auth"
    assert push.problem_class(QboRequestRejected("x")) == "validation"


def test_a_create_is_never_resent_blindly_and_a_batch_with_creates_neither():
    company = client.Company("123", "http://127.0.0.1:1/v3/company/123", "token-abcdefgh")
    create = push.Op("create", "Customer", {"DisplayName": "A"}, {"id": "r"}, requestid="rid-1")
    request = create.single(company)
    assert request.requestid == "rid-1" and not request.idempotent
    update = push.Op("update", "Customer", {"Id": "5", "SyncToken": "1"}, {"id": "u"}, "rid-2")
    assert update.single(company).idempotent
    deletion = push.Op("delete", "Invoice", {"Id": "9", "SyncToken": "2"}, requestid="rid-3")
    assert deletion.batch_item() == {
        "bId": "",
        "operation": "delete",
        "Invoice": {"Id": "9", "SyncToken": "2"},
    }
    deactivate = push.Op("deactivate", "Item", {"Id": "4", "SyncToken": "0"}, bid="b1")
    assert deactivate.batch_item()["Item"] == {
        "Id": "4",
        "SyncToken": "0",
        "Active": False,
        "sparse": True,
    }
    void = push.Op("void", "Payment", {"Id": "8", "SyncToken": "1"}, {"id": "p"}, "rid-4")
    assert "include=void" in void.single(company).url


def test_the_shared_pacer_counts_a_batch_once_toward_each_of_its_two_limits():
    limits = pacing.Limits()
    state = pacing.new_state(T0)
    decision, after_call = pacing.reserve(state, T0, "call", limits)
    assert decision.go
    decision, after_batch = pacing.reserve(state, T0, "batch", limits)
    assert decision.go
    # a batch moves the per-minute budget exactly as one call does, and the batch budget once
    assert after_batch["tat"]["per_minute"] == after_call["tat"]["per_minute"]
    assert after_batch["tat"]["per_second"] == after_call["tat"]["per_second"]
    assert "batches_per_minute" in after_batch["tat"]
    assert after_call["tat"].get("batches_per_minute") in (
        None,
        state["tat"].get("batches_per_minute"),
    )
    # 40 batches go in a minute, the 41st waits for the next
    state, now, gone = pacing.new_state(T0), T0, 0
    while now < T0 + 60:
        decision, state = pacing.reserve(
            state, now, "batch", pacing.Limits(headroom=0, skew_seconds=0)
        )
        if decision.go:
            gone += 1
            state = pacing.release(state, now, decision.slot, 0, limits)
        else:
            now += decision.wait_seconds
    assert gone == 40


def test_a_round_of_rows_is_whole_runs_of_a_full_batch_and_its_single_calls():
    singles = push.singles_per_batch(500, 40)
    assert push.ROUND == 3 * (client.BATCH_MAX_ITEMS + singles) == 123
    runs = push.plan(push.ROUND, client.BATCH_MAX_ITEMS, singles)
    assert [end - start for kind, start, end in runs if kind == "batch"] == [30, 30, 30]
    assert sum(1 for kind, _start, _end in runs if kind == "single") == 33

"""The three-way merge per field (qbo_sync_db.conflicts.merge), without a database: one-sided
changes merge, the same change on both sides is no conflict, a different change on both sides
goes by the field's owner and then the policy, QBO-computed values never conflict, decimals
compare as numbers, and an invoice's lines merge as one field (whole set per side)."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from qbo_sync_db import conflicts, mapping

from tests.unit.test_mapping import CUSTOMER, INVOICE


def rows(entity: str, base_obj: dict, local_edits: dict, remote_edits: dict):
    """(base, local, remote) as the engine builds them: the mapped base object, the local row
    (the base plus `local_edits`) and the remote object mapped after `remote_edits`."""
    base = conflicts.remote_values(entity, base_obj)
    local = copy.deepcopy(base) | local_edits
    remote_obj = copy.deepcopy(base_obj)
    remote_obj.update(remote_edits)
    return base, local, conflicts.remote_values(entity, remote_obj)


def test_fields_changed_on_different_sides_merge_without_conflict():
    base, local, remote = rows("customers", CUSTOMER, {"notes": "here"}, {"CompanyName": "There"})
    result = conflicts.merge("customers", base, local, remote)
    assert result.values["notes"] == "here" and result.sources["notes"] == "local"
    assert result.values["company_name"] == "There" and result.sources["company_name"] == "remote"
    assert result.conflicts == [] and result.resolution == "merged"
    assert result.pending and result.outcome == "push"  # the local note still goes to QBO


def test_only_qbo_changed_means_nothing_to_push():
    base, local, remote = rows("customers", CUSTOMER, {}, {"CompanyName": "There"})
    result = conflicts.merge("customers", base, local, remote)
    assert result.values["company_name"] == "There"
    assert not result.pending and result.outcome == "synced"


def test_the_same_change_on_both_sides_is_no_conflict():
    base, local, remote = rows("customers", CUSTOMER, {"notes": "same"}, {"Notes": "same"})
    result = conflicts.merge("customers", base, local, remote, policy="hold")
    assert result.conflicts == [] and result.values["notes"] == "same"
    assert result.outcome == "synced"


@pytest.mark.parametrize(
    ("policy", "value", "decided", "outcome"),
    [
        ("qbo_wins", "there", "qbo", "synced"),
        ("local_wins", "here", "local", "push"),
        ("hold", "here", "hold", "held"),
    ],
)
def test_a_field_changed_on_both_sides_goes_by_the_policy(policy, value, decided, outcome):
    base, local, remote = rows("customers", CUSTOMER, {"notes": "here"}, {"Notes": "there"})
    result = conflicts.merge("customers", base, local, remote, policy=policy)
    assert result.conflicts == ["notes"]
    assert result.decided == {"notes": decided}
    assert result.values["notes"] == value
    assert result.outcome == outcome


def test_the_default_policy_is_qbo_wins():
    base, local, remote = rows("customers", CUSTOMER, {"notes": "here"}, {"Notes": "there"})
    assert conflicts.merge("customers", base, local, remote).values["notes"] == "there"


@pytest.mark.parametrize(("owner", "value"), [("local", "2031-01-01"), ("qbo", "2030-06-30")])
def test_a_field_owner_overrides_the_policy(owner, value):
    base, local, remote = rows(
        "invoices", INVOICE, {"due_date": "2031-01-01"}, {"DueDate": "2030-06-30"}
    )
    for policy in conflicts.POLICIES:
        result = conflicts.merge(
            "invoices", base, local, remote, policy=policy, owners={"invoices.due_date": owner}
        )
        assert result.values["due_date"] == value, policy
        assert result.decided == {"due_date": owner} and result.by_owner == ["due_date"]
        assert not result.held


def test_an_owner_of_another_field_or_entity_changes_nothing():
    base, local, remote = rows("customers", CUSTOMER, {"notes": "here"}, {"Notes": "there"})
    owners = {"invoices.notes": "local", "customers.email": "local"}
    result = conflicts.merge("customers", base, local, remote, owners=owners)
    assert result.values["notes"] == "there" and result.by_owner == []


def test_what_qbo_computes_never_conflicts():
    # the application wrote its own totals; QBO's differ: not a merged field at all
    base, local, remote = rows(
        "invoices",
        INVOICE,
        {"total_amount": Decimal("999"), "balance_due": Decimal("1"), "subtotal": Decimal(5)},
        {"TotalAmt": 200.0, "Balance": 200.0},
    )
    result = conflicts.merge("invoices", base, local, remote, policy="hold")
    assert result.conflicts == []
    for column in ("total_amount", "balance_due", "tax_total", "subtotal", "amount_paid", "status"):
        assert column not in result.values
        assert column in conflicts.qbo_owned("invoices")
    assert "balance" in conflicts.qbo_owned("customers")


def test_decimals_compare_as_numbers_not_text():
    item = {
        "Id": "5",
        "SyncToken": "1",
        "Name": "Widget",
        "UnitPrice": 12.5,
        "Type": "Service",
    }
    base = conflicts.remote_values("items", item)
    local = base | {"unit_price": "12.50"}  # the same number written differently
    remote = conflicts.remote_values("items", item | {"UnitPrice": "12.500"})
    result = conflicts.merge("items", base, local, remote, policy="hold")
    assert result.conflicts == [] and not result.pending
    assert conflicts.normal(mapping.DECIMAL, "1.0") == conflicts.normal(mapping.DECIMAL, 1)


def test_empty_text_and_no_value_are_the_same():
    base, local, remote = rows("customers", CUSTOMER, {"notes": ""}, {})
    result = conflicts.merge("customers", base, local, remote)
    assert not result.pending  # QBO has no Notes; an empty note is no change


def test_references_merge_as_qbo_ids():
    base, local, remote = rows(
        "invoices", INVOICE, {"customer_id_qbo_id": "7"}, {"CustomerRef": {"value": "8"}}
    )
    result = conflicts.merge("invoices", base, local, remote, policy="local_wins")
    assert result.conflicts == ["customer_id_qbo_id"]
    assert result.values["customer_id_qbo_id"] == "7"
    owned = conflicts.merge(
        "invoices", base, local, remote, owners={"invoices.customer_id": "local"}
    )
    assert owned.by_owner == ["customer_id_qbo_id"] and owned.values["customer_id_qbo_id"] == "7"


def _line(qbo_id: str, amount: float, description: str = "Consulting") -> dict:
    return {
        "Id": qbo_id,
        "LineNum": int(qbo_id),
        "Amount": amount,
        "Description": description,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": amount},
    }


def test_invoice_lines_are_one_field_whole_set_per_side():
    base_obj = INVOICE | {"Line": [_line("1", 150.0), _line("2", 50.0)]}
    base = conflicts.remote_values("invoices", base_obj)
    # QBO changed line 2; the application changed nothing in the lines but the memo
    remote = conflicts.remote_values(
        "invoices", base_obj | {"Line": [_line("1", 150.0), _line("2", 70.0)]}
    )
    local = copy.deepcopy(base) | {"customer_memo": "thanks"}
    result = conflicts.merge("invoices", base, local, remote)
    assert result.sources["lines"] == "remote" and result.conflicts == []
    assert [line["amount"] for line in result.values["lines"]] == [Decimal(150), Decimal(70)]
    # both changed the lines differently: one field in conflict, one side's list wins whole
    local["lines"] = copy.deepcopy(base["lines"])
    local["lines"][0]["description"] = "Consulting, revised"
    for policy, side in (("qbo_wins", "remote"), ("local_wins", "local")):
        result = conflicts.merge("invoices", base, local, remote, policy=policy)
        assert result.conflicts == ["lines"] and result.sources["lines"] == side
        chosen = result.values["lines"]
        assert chosen == (remote["lines"] if side == "remote" else local["lines"])


def test_line_order_matters_and_missing_quantity_reads_as_one():
    a = [{"qbo_line_id": "1", "amount": Decimal(5), "quantity": None, "unit_price": None}]
    b = [{"qbo_line_id": "1", "amount": "5.00", "quantity": 1, "unit_price": 5}]
    assert conflicts.lines_key(a) == conflicts.lines_key(b)
    two = b + [{"qbo_line_id": "2", "amount": 1}]
    assert conflicts.lines_key(two) != conflicts.lines_key(list(reversed(two)))


def test_no_base_counts_every_difference_as_both_sides():
    _, local, remote = rows("customers", CUSTOMER, {"notes": "here"}, {"CompanyName": "There"})
    result = conflicts.merge("customers", None, local, remote, policy="local_wins")
    assert sorted(result.conflicts) == ["company_name", "notes"]


def test_the_mergeable_fields_are_the_synced_columns():
    """Every column the registry says a local change of must be pushed is merged (references as
    their QBO Ids), and nothing QBO computes is."""
    for entity, spec in mapping.ENTITIES.items():
        kinds = conflicts.mergeable_kinds(entity)
        expected = {
            mapping.reference_key(c) if c in {r.column for r in spec.references} else c
            for c in spec.synced_columns()
        }
        assert set(kinds) - {"lines"} == expected, entity
        assert not set(kinds) & set(conflicts.qbo_owned(entity)), entity


def test_a_conflict_record_carries_the_three_values_of_the_fields_in_conflict():
    row = conflicts.remote_values("customers", CUSTOMER) | {
        "id": "00000000-0000-0000-0000-000000000001",
        "qbo_local_version": 3,
        "qbo_raw": CUSTOMER,
        "notes": "here",
        "email": "new@example.com",
    }
    remote = copy.deepcopy(CUSTOMER) | {"Notes": "there", "SyncToken": "4"}
    result, change = conflicts.merge_row("customers", row, remote, "qbo_wins", {}, "pull")
    assert change["conflict"] == {
        "fields": ["notes"],
        "local_values": {"notes": "here"},
        "remote_values": {"notes": "there"},
        "base_values": {"notes": None},
        "policy": "qbo_wins",
        "status": "resolved",
        "resolution": "qbo_wins",
        "resolved_values": {"notes": "there"},
        "detected_by": "pull",
    }
    # written: the note QBO's, the email stays (local only); QBO's SyncToken is the new base
    assert change["columns"] == ["notes", "balance"]
    assert change["values"]["qbo_sync_token"] == "4" and change["values"]["qbo_raw"] == remote
    assert change["status"] == "pending" and change["version"] == 3
    assert result.outcome == "push"


def test_conflicts_going_both_ways_are_mixed():
    base, local, remote = rows(
        "customers",
        CUSTOMER,
        {"notes": "here", "email": "here@example.com"},
        {"Notes": "there", "PrimaryEmailAddr": {"Address": "there@example.com"}},
    )
    result = conflicts.merge("customers", base, local, remote, owners={"customers.email": "local"})
    assert result.decided == {"email": "local", "notes": "qbo"}
    assert result.resolution == "mixed" and result.outcome == "push"

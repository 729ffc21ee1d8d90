"""The field mapping between application rows and QBO objects (qbo_sync_db.mapping), without a
database: Intuit's documented sample objects map to the expected rows, every writable field of
every entity survives a round trip (the test walks the mapping, not a hand-picked few), sparse
updates carry only what changed, and the registry in SQL lists the same synced columns."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from qbo_sync_db import client, mapping

SQL_ENTITIES = Path(__file__).resolve().parents[2] / "sql" / "idempotent" / "015_entities.sql"

# Intuit's documented responses (qbo-api.md §3.2, §3.4, §3.5), decoded as the client decodes them
CUSTOMER = client.decode_json(
    """{"Id": "67", "SyncToken": "0", "domain": "QBO", "sparse": false,
   "DisplayName": "King's Groceries", "FullyQualifiedName": "King's Groceries",
   "GivenName": "James", "FamilyName": "King", "CompanyName": "King Groceries",
   "PrimaryEmailAddr": {"Address": "jdrew@example.com"},
   "PrimaryPhone": {"FreeFormNumber": "(555) 555-5555"},
   "BillAddr": {"Id": "112", "Line1": "123 Main Street", "City": "Mountain View",
                "CountrySubDivisionCode": "CA", "PostalCode": "94042", "Country": "USA"},
   "Active": true, "Taxable": true, "Job": false, "Balance": 0, "BalanceWithJobs": 0,
   "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
   "MetaData": {"CreateTime": "2015-07-23T10:58:12-07:00",
                "LastUpdatedTime": "2015-07-23T10:58:12-07:00"}}"""
)
INVOICE = client.decode_json(
    """{"Id": "239", "SyncToken": "0", "DocNumber": "INV-1001", "TxnDate": "2025-11-10",
  "DueDate": "2025-12-10", "CustomerRef": {"value": "1", "name": "Amy's Bird Sanctuary"},
  "Line": [
    {"Id": "1", "LineNum": 1, "Amount": 150.0, "Description": "Consulting",
     "DetailType": "SalesItemLineDetail",
     "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}, "Qty": 2,
                             "UnitPrice": 75, "TaxCodeRef": {"value": "NON"}}},
    {"Amount": 150.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}],
  "TxnTaxDetail": {"TotalTax": 0}, "TotalAmt": 150.0, "Balance": 100.0,
  "EmailStatus": "NotSet", "PrintStatus": "NeedToPrint",
  "BillEmail": {"Address": "birds@example.com"}, "CustomerMemo": {"value": "Thank you!"},
  "BillAddr": {"Id": "2", "Line1": "4581 Finch St.", "City": "Bayshore",
               "CountrySubDivisionCode": "CA", "PostalCode": "94326"},
  "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
  "MetaData": {"CreateTime": "2025-11-10T10:33:39-08:00",
               "LastUpdatedTime": "2025-11-10T10:33:39-08:00"}}"""
)
PAYMENT = client.decode_json(
    """{"Id": "125", "SyncToken": "0", "CustomerRef": {"value": "20", "name": "Red Rock Diner"},
  "TotalAmt": 25, "UnappliedAmt": 0, "TxnDate": "2025-11-12",
  "PaymentMethodRef": {"value": "1"}, "DepositToAccountRef": {"value": "4"},
  "Line": [{"Amount": 25, "LinkedTxn": [{"TxnId": "67", "TxnType": "Invoice"}]}],
  "MetaData": {"CreateTime": "2025-11-12T14:59:48-08:00",
               "LastUpdatedTime": "2025-11-12T14:59:48-08:00"}}"""
)


def test_a_documented_customer_maps_to_its_row():
    row = mapping.from_qbo("customers", CUSTOMER)
    assert row["display_name"] == "King's Groceries" and row["company_name"] == "King Groceries"
    assert (row["given_name"], row["family_name"]) == ("James", "King")
    assert (row["email"], row["phone"], row["mobile"]) == (
        "jdrew@example.com",
        "(555) 555-5555",
        None,
    )
    # QBO's address Id is QBO's, not the application's
    assert row["billing_address"] == {
        "Line1": "123 Main Street",
        "City": "Mountain View",
        "CountrySubDivisionCode": "CA",
        "PostalCode": "94042",
        "Country": "USA",
    }
    assert row["shipping_address"] is None
    assert (row["is_active"], row["taxable"], row["currency_code"]) == (True, True, "USD")
    assert row["balance"] == Decimal(0)
    assert (row["qbo_id"], row["qbo_sync_token"]) == ("67", "0")
    assert row["qbo_updated_at"] == "2015-07-23T10:58:12-07:00"


def test_a_documented_invoice_maps_to_its_row_and_lines():
    row = mapping.from_qbo("invoices", INVOICE)
    assert (row["invoice_number"], row["txn_date"], row["due_date"]) == (
        "INV-1001",
        "2025-11-10",
        "2025-12-10",
    )
    assert row["customer_id_qbo_id"] == "1"
    assert (row["customer_memo"], row["billing_email"]) == ("Thank you!", "birds@example.com")
    # QBO's totals are authoritative: taken as QBO states them
    assert (row["total_amount"], row["balance_due"], row["tax_total"]) == (
        Decimal("150.0"),
        Decimal("100.0"),
        Decimal(0),
    )
    assert (row["subtotal"], row["amount_paid"], row["status"]) == (
        Decimal("150.0"),
        Decimal("50.0"),
        "partially_paid",
    )
    assert row["is_voided"] is False
    lines = mapping.invoice_lines(INVOICE)
    assert len(lines) == 1  # the SubTotalLine is QBO's, not a line of the application
    assert lines[0] == {
        "description": "Consulting",
        "amount": Decimal("150.0"),
        "quantity": Decimal(2),
        "unit_price": Decimal(75),
        "tax_code_ref": "NON",
        "service_date": None,
        "qbo_line_id": "1",
        "line_number": 1,
        "detail_type": "SalesItemLineDetail",
        "item_id_qbo_id": "1",
    }


def test_a_documented_payment_maps_to_its_row():
    row = mapping.from_qbo("payments", PAYMENT)
    assert (row["amount"], row["unapplied_amount"], row["payment_date"]) == (
        Decimal(25),
        Decimal(0),
        "2025-11-12",
    )
    assert (row["customer_id_qbo_id"], row["invoice_id_qbo_id"]) == ("20", "67")
    assert (row["payment_method_ref"], row["deposit_account_ref"]) == ("1", "4")


def test_a_voided_invoice_is_voided_and_stays():
    voided = {**INVOICE, "TotalAmt": 0, "Balance": 0, "PrivateNote": "Voided - keep for records"}
    row = mapping.from_qbo("invoices", voided)
    assert row["is_voided"] is True and row["status"] == "voided"
    # a zero invoice that was not voided is not voided
    assert (
        mapping.from_qbo("invoices", {**INVOICE, "TotalAmt": 0, "Balance": 0})["is_voided"] is False
    )


def test_an_inactive_customer_stays_inactive_and_a_missing_active_means_active():
    assert mapping.from_qbo("customers", {**CUSTOMER, "Active": False})["is_active"] is False
    assert mapping.from_qbo("customers", {"Id": "1", "DisplayName": "x"})["is_active"] is True


def _value(kind: mapping.Kind) -> st.SearchStrategy:
    if kind is mapping.DECIMAL:
        return st.decimals(
            min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2, allow_nan=False
        )
    if kind is mapping.BOOL:
        return st.booleans()
    if kind is mapping.DATE:
        return st.dates().map(lambda d: d.isoformat())
    if kind is mapping.ADDRESS:
        text = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() == t and t)
        return st.dictionaries(st.sampled_from(mapping.ADDRESS_KEYS), text, min_size=1)
    return st.text(min_size=1, max_size=40)


@st.composite
def rows(draw: st.DrawFn, entity: str) -> dict:
    spec = mapping.ENTITIES[entity]
    row = {f.column: draw(_value(f.kind)) for f in spec.fields if not f.read_only}
    for ref in spec.references:
        row[mapping.reference_key(ref.column)] = draw(
            st.from_regex(r"[1-9][0-9]{0,6}", fullmatch=True)
        )
    return row


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_writable_field_of_every_entity_survives_a_round_trip(data):
    for entity in mapping.ENTITIES:
        row = data.draw(rows(entity), label=entity)
        body = mapping.to_qbo(entity, row)
        # what QBO sends back: the body as stored, with its Id and SyncToken
        back = mapping.from_qbo(entity, client.decode_json(client.encode_json(body)) | {"Id": "9"})
        for column, value in row.items():
            assert back[column] == value, (entity, column)


def test_a_sparse_update_carries_only_what_changed_with_id_and_sync_token():
    row = mapping.from_qbo("customers", CUSTOMER)
    row["email"] = None
    row["notes"] = "call first"
    body = mapping.to_qbo("customers", row, changed=["email", "notes"])
    assert body == {
        "PrimaryEmailAddr": {"Address": ""},  # cleared: an empty value, not a missing one
        "Notes": "call first",
        "Id": "67",
        "SyncToken": "0",
        "sparse": True,
    }
    # read-only fields are never sent, even when asked
    assert "Balance" not in mapping.to_qbo("customers", row, changed=["balance"])


def test_invoice_lines_keep_their_qbo_ids_and_a_payment_links_its_invoice():
    lines = mapping.invoice_lines(INVOICE)
    body = mapping.to_qbo("invoices", mapping.from_qbo("invoices", INVOICE), lines=lines)
    assert body["CustomerRef"] == {"value": "1"}
    assert body["Line"] == [
        {
            "DetailType": "SalesItemLineDetail",
            "Id": "1",
            "Description": "Consulting",
            "Amount": Decimal("150.0"),
            "SalesItemLineDetail": {
                "Qty": Decimal(2),
                "UnitPrice": Decimal(75),
                "TaxCodeRef": {"value": "NON"},
                "ItemRef": {"value": "1"},
            },
        }
    ]
    assert "TotalAmt" not in body and "Balance" not in body
    payment = mapping.to_qbo("payments", mapping.from_qbo("payments", PAYMENT))
    assert payment["Line"] == [
        {"Amount": Decimal(25), "LinkedTxn": [{"TxnId": "67", "TxnType": "Invoice"}]}
    ]


def test_the_registry_in_sql_syncs_exactly_the_mapped_columns():
    text = SQL_ENTITIES.read_text()
    for entity, spec in mapping.ENTITIES.items():
        match = re.search(rf"\('{entity}', '\w+', '\w+', \d,\s*ARRAY\[(.*?)\]", text, re.S)
        assert match, entity
        registered = re.findall(r"'(\w+)'", match.group(1))
        assert sorted(registered) == sorted(spec.synced_columns()), entity


def test_odd_line_lists_are_read_as_far_as_they_go_never_raising():
    """A Line (or LinkedTxn) that is not a list, or holds something that is not an object, is
    skipped where it is odd: the invoice's subtotal and status and the payment's invoice come
    from what is well formed (before, such an object stopped the whole page with an error)."""
    invoice = mapping.from_qbo(
        "invoices",
        {
            "Id": "3",
            "TotalAmt": Decimal("100"),
            "Balance": Decimal("0"),
            "Line": [
                "odd",
                {"DetailType": "SubTotalLineDetail"},  # no amount: the sales lines' sum
                {"DetailType": "SalesItemLineDetail", "Amount": Decimal("60")},
                {"DetailType": "SalesItemLineDetail"},
            ],
        },
    )
    assert (invoice["subtotal"], invoice["status"], invoice["amount_paid"]) == (60, "paid", 100)
    assert mapping.from_qbo("invoices", {"Id": "5", "Line": "odd"})["subtotal"] == 0
    payment = {
        "Id": "2",
        "Line": [
            7,
            {"LinkedTxn": "odd"},
            {"LinkedTxn": [5, {"TxnId": "9", "TxnType": "CreditMemo"}, {"TxnType": "Invoice"}]},
            {"LinkedTxn": [{"TxnId": "12", "TxnType": "Invoice"}]},
        ],
    }
    assert mapping.paid_invoice(payment) == "12"
    assert mapping.paid_invoice({"Line": {"LinkedTxn": []}}) is None

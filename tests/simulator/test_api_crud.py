"""Accounting API: CRUD, SyncToken, sparse/full update, delete/void/inactive, envelopes, auth."""

from __future__ import annotations

from typing import Any

from simtools import Sim, fault_code

SERVICE = {
    "Name": "Gardening",
    "Type": "Service",
    "UnitPrice": 25,
    "IncomeAccountRef": {"value": "2"},
}


async def make_invoice(
    sim: Sim, customer: str, item: str, qty: int = 2, price: float = 25, **extra: Any
) -> dict[str, Any]:
    return await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": customer},
            "Line": [
                {
                    "Amount": qty * price,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": item},
                        "Qty": qty,
                        "UnitPrice": price,
                    },
                }
            ],
            **extra,
        },
    )


async def test_create_read_customer_envelope(sim: Sim) -> None:
    cust = await sim.create(
        "Customer",
        {
            "DisplayName": "King's Groceries",
            "GivenName": "James",
            "BillAddr": {"Line1": "1 Main", "City": "X"},
        },
    )
    assert cust["SyncToken"] == "0" and cust["domain"] == "QBO" and cust["sparse"] is False
    assert cust["Active"] is True and cust["Balance"] == 0
    assert cust["FullyQualifiedName"] == "King's Groceries" and cust["BillAddr"]["Id"]
    meta = cust["MetaData"]
    assert meta["CreateTime"] == meta["LastUpdatedTime"] and meta["CreateTime"][-6:] in (
        "-08:00",
        "-07:00",
    )
    resp = await sim.client.get(sim.url(f"customer/{cust['Id']}"), headers=sim.auth)
    body = await resp.json()
    assert resp.status == 200 and body["Customer"] == cust and body["time"]
    assert resp.headers["intuit_tid"].startswith("1-")
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_read_only_fields_are_ignored_on_create(sim: Sim) -> None:
    cust = await sim.create(
        "Customer",
        {
            "DisplayName": "RO",
            "Balance": 999,
            "Id": None,
            "SyncToken": "7",
            "MetaData": {"CreateTime": "x"},
        },
    )
    assert (
        cust["Balance"] == 0 and cust["SyncToken"] == "0" and cust["MetaData"]["CreateTime"] != "x"
    )


async def test_display_name_generated_and_6080(sim: Sim) -> None:
    cust = await sim.create("Customer", {"GivenName": "Ada", "FamilyName": "Lovelace"})
    assert cust["DisplayName"] == "Ada Lovelace"
    status, body = await sim.post("customer", {"CompanyName": "Nameless"})
    assert status == 400 and fault_code(body) == "6080"
    assert body["Fault"]["type"] == "ValidationFault" and body["time"]


async def test_duplicate_display_name_across_customer_vendor_employee(sim: Sim) -> None:
    await sim.create("Customer", {"DisplayName": "Acme Ltd"})
    for entity, name in (
        ("customer", "acme  ltd"),
        ("vendor", "ACME LTD"),
        ("employee", "Acme Ltd"),
    ):
        status, body = await sim.post(entity, {"DisplayName": name})
        assert status == 400 and fault_code(body) == "6240", (entity, body)
    # the seeded vendor's name blocks a customer too
    status, body = await sim.post("customer", {"DisplayName": "Sim Supplies Inc"})
    assert fault_code(body) == "6240"


async def test_item_name_unique_and_required_fields(sim: Sim) -> None:
    await sim.create("Item", SERVICE)
    status, body = await sim.post("item", SERVICE)
    assert status == 400 and fault_code(body) == "6240"
    status, body = await sim.post("item", {"Type": "Service", "IncomeAccountRef": {"value": "2"}})
    assert fault_code(body) == "2020" and body["Fault"]["Error"][0]["element"] == "Name"
    status, body = await sim.post("item", {"Name": "NoAcct", "Type": "Service"})
    assert fault_code(body) == "2020"
    status, body = await sim.post(
        "item", {"Name": "Inv", "Type": "Inventory", "IncomeAccountRef": {"value": "1"}}
    )
    assert fault_code(body) == "2020"
    status, body = await sim.post("item", {**SERVICE, "Name": "BadType", "Type": "Gadget"})
    assert fault_code(body) == "2170"
    status, body = await sim.post("item", {**SERVICE, "Name": "x" * 101})
    assert fault_code(body) == "2050"


async def test_sparse_update_keeps_fields_full_update_clears(sim: Sim) -> None:
    cust = await sim.create(
        "Customer",
        {"DisplayName": "Sparse Co", "Notes": "keep", "PrimaryEmailAddr": {"Address": "a@b.c"}},
    )
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Notes": "changed"}
    )
    upd = body["Customer"]
    assert status == 200 and upd["SyncToken"] == "1" and upd["Notes"] == "changed"
    assert upd["PrimaryEmailAddr"] == {"Address": "a@b.c"}
    assert upd["MetaData"]["CreateTime"] == cust["MetaData"]["CreateTime"]
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "1", "DisplayName": "Sparse Co"}
    )
    full = body["Customer"]
    assert full["SyncToken"] == "2" and "PrimaryEmailAddr" not in full and "Notes" not in full


async def test_stale_sync_token_5010(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Stale"})
    await sim.post("customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Notes": "a"})
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Notes": "b"}
    )
    assert status == 400 and fault_code(body) == "5010"
    assert body["Fault"]["Error"][0]["Message"] == "Stale Object Error"
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert body["Customer"]["Notes"] == "a"


async def test_update_needs_sync_token_and_display_name_cannot_be_removed(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Needs Token"})
    status, body = await sim.post("customer", {"Id": cust["Id"], "sparse": True, "Notes": "x"})
    assert fault_code(body) == "2020"
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "DisplayName": ""}
    )
    assert fault_code(body) == "2020"


async def test_unknown_id_is_610(sim: Sim) -> None:
    status, body = await sim.get("customer/99999")
    assert status == 400 and fault_code(body) == "610"
    status, body = await sim.post("customer", {"Id": "99999", "SyncToken": "0", "sparse": True})
    assert fault_code(body) == "610"


async def test_name_lists_cannot_be_deleted_but_go_inactive(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Going Away"})
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0"}, operation="delete"
    )
    assert status == 400 and fault_code(body) == "500"
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Active": False}
    )
    assert body["Customer"]["Active"] is False
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert status == 200 and body["Customer"]["Active"] is False


async def test_references_must_exist_and_be_active(sim: Sim) -> None:
    item = await sim.create("Item", SERVICE)
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": "424242"},
            "Line": [
                {
                    "Amount": 5,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
                }
            ],
        },
    )
    assert fault_code(body) == "2500"
    cust = await sim.create("Customer", {"DisplayName": "Dormant"})
    await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Active": False}
    )
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [
                {
                    "Amount": 5,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
                }
            ],
        },
    )
    assert status == 400 and fault_code(body) == "610"
    active = await sim.create("Customer", {"DisplayName": "Awake"})
    await sim.post("item", {"Id": item["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": active["Id"]},
            "Line": [
                {
                    "Amount": 5,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
                }
            ],
        },
    )
    assert fault_code(body) == "610"


async def test_invoice_totals_lines_and_defaults(sim: Sim) -> None:
    cust = await sim.create(
        "Customer",
        {"DisplayName": "Totals", "SalesTermRef": {"value": "3"}, "BillAddr": {"Line1": "9 Elm"}},
    )
    item = await sim.create("Item", SERVICE)
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TxnDate": "2025-11-10",
            "Line": [
                {
                    "Amount": 150.0,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": item["Id"]},
                        "Qty": 2,
                        "UnitPrice": 75,
                    },
                },
                {
                    "Amount": 10.1,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": item["Id"]},
                        "Qty": 1,
                        "UnitPrice": 10.1,
                    },
                },
                {
                    "DetailType": "DiscountLineDetail",
                    "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
                },
            ],
        },
    )
    assert inv["TotalAmt"] == 144.09 and inv["Balance"] == 144.09
    assert inv["Line"][-1] == {
        "Amount": 160.1,
        "DetailType": "SubTotalLineDetail",
        "SubTotalLineDetail": {},
    }
    assert [ln["LineNum"] for ln in inv["Line"][:-1]] == [1, 2, 3]
    assert inv["Line"][0]["SalesItemLineDetail"]["ItemRef"]["name"] == "Gardening"
    assert inv["DueDate"] == "2025-12-10"  # Net 30 from the customer's terms
    assert inv["DocNumber"] and inv["CustomerRef"]["name"] == "Totals"
    assert inv["BillAddr"]["Line1"] == "9 Elm"
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert body["Customer"]["Balance"] == 144.09


def sales_line(amount: float, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "Amount": amount,
        "Description": description,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {},
        **extra,
    }


def line_ids(inv: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(Description, Id, LineNum) of the invoice's lines, subtotal line left out."""
    return [
        (ln["Description"], ln["Id"], ln["LineNum"])
        for ln in inv["Line"]
        if ln["DetailType"] != "SubTotalLineDetail"
    ]


async def test_invoice_line_ids_are_stable(sim: Sim) -> None:
    """qbo-api.md §2.5: a sent line Id keeps its line; new lines get never-used Ids."""
    cust = await sim.create("Customer", {"DisplayName": "Stable Lines"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [sales_line(1, "A"), sales_line(2, "B"), sales_line(3, "C")],
        },
    )
    assert line_ids(inv) == [("A", "1", 1), ("B", "2", 2), ("C", "3", 3)]
    # full update: keep B (changed), drop A and C, add D
    b = {**inv["Line"][1], "Amount": 20}
    status, body = await sim.post(
        "invoice",
        {
            "Id": inv["Id"],
            "SyncToken": inv["SyncToken"],
            "CustomerRef": {"value": cust["Id"]},
            "Line": [b, sales_line(4, "D")],
        },
    )
    inv = body["Invoice"]
    assert line_ids(inv) == [("B", "2", 1), ("D", "4", 2)]  # D does not reuse 1 or 3
    assert inv["Line"][0]["Amount"] == 20 and inv["TotalAmt"] == 24
    # sparse update sending Line: D kept, E new, B removed; an Id the invoice never had
    # (or no longer has) is a new line too
    d = inv["Line"][1]
    status, body = await sim.post(
        "invoice",
        {
            "Id": inv["Id"],
            "SyncToken": inv["SyncToken"],
            "sparse": True,
            "Line": [sales_line(5, "E"), d, sales_line(6, "F", Id="1"), inv["Line"][-1]],
        },
    )
    inv = body["Invoice"]
    assert line_ids(inv) == [("E", "5", 1), ("D", "4", 2), ("F", "6", 3)]
    # sparse update without Line keeps every line as it is
    status, body = await sim.post(
        "invoice",
        {"Id": inv["Id"], "SyncToken": inv["SyncToken"], "sparse": True, "PrivateNote": "x"},
    )
    assert line_ids(body["Invoice"]) == line_ids(inv)
    # the same Id twice: the first keeps the line, the second is new
    status, body = await sim.post(
        "invoice",
        {
            "Id": inv["Id"],
            "SyncToken": body["Invoice"]["SyncToken"],
            "sparse": True,
            "Line": [inv["Line"][1], {**inv["Line"][1], "Description": "D2"}],
        },
    )
    assert line_ids(body["Invoice"]) == [("D", "4", 1), ("D2", "7", 2)]
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert line_ids(body["Invoice"]) == [("D", "4", 1), ("D2", "7", 2)]


async def test_amount_must_equal_qty_times_price_6070(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Math"})
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [
                {
                    "Amount": 100,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"Qty": 3, "UnitPrice": 33.33},
                }
            ],
        },
    )
    assert status == 400 and fault_code(body) == "6070"


async def test_invoice_requires_lines_and_valid_tax_code(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "NoLines"})
    status, body = await sim.post("invoice", {"CustomerRef": {"value": cust["Id"]}})
    assert fault_code(body) == "2020"
    status, body = await sim.post(
        "invoice", {"Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail"}]}
    )
    assert fault_code(body) == "2020"
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [
                {
                    "Amount": 1,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"TaxCodeRef": {"value": "VAT"}},
                }
            ],
        },
    )
    assert fault_code(body) == "6100"
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "DocNumber": "X" * 22,
            "Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail"}],
        },
    )
    assert fault_code(body) == "2050"


async def test_tax_rate_setting_and_total_tax_override(sim: Sim) -> None:
    """Without Automated Sales Tax: sales_tax_percent on TAX lines, or the client's TotalTax."""
    await sim.control("PATCH", f"/_sim/realms/{sim.realm}/status", {"automated_sales_tax": False})
    sim.state.cfg.sales_tax_percent = 8
    cust = await sim.create("Customer", {"DisplayName": "Taxed"})
    line = {
        "Amount": 100,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"TaxCodeRef": {"value": "TAX"}},
    }
    inv = await sim.create("Invoice", {"CustomerRef": {"value": cust["Id"]}, "Line": [line]})
    assert inv["TxnTaxDetail"]["TotalTax"] == 8 and inv["TotalAmt"] == 108
    inv = await sim.create(
        "Invoice",
        {"CustomerRef": {"value": cust["Id"]}, "Line": [line], "TxnTaxDetail": {"TotalTax": 7.5}},
    )
    assert inv["TotalAmt"] == 107.5


def taxed_invoice(customer: str, **extra: Any) -> dict[str, Any]:
    """100 on a TAX line and 50 on a NON line."""
    return {
        "CustomerRef": {"value": customer},
        "Line": [
            sales_line(100, "taxed", SalesItemLineDetail={"TaxCodeRef": {"value": "TAX"}}),
            sales_line(50, "not taxed", SalesItemLineDetail={"TaxCodeRef": {"value": "NON"}}),
        ],
        **extra,
    }


async def test_automated_sales_tax_from_the_customer_address(sim: Sim) -> None:
    """AST (on by default): the server computes tax from the ship-to/bill-to state."""
    ca = await sim.create(
        "Customer", {"DisplayName": "In California", "BillAddr": {"CountrySubDivisionCode": "CA"}}
    )
    assert ca["Taxable"] is True
    inv = await sim.create("Invoice", taxed_invoice(ca["Id"]))
    assert inv["TxnTaxDetail"]["TotalTax"] == 7.25  # 7.25% of the TAX line only
    assert inv["TotalAmt"] == 157.25 and inv["Balance"] == 157.25
    tax_line = inv["TxnTaxDetail"]["TaxLine"][0]["TaxLineDetail"]
    assert tax_line["TaxPercent"] == 7.25 and tax_line["NetAmountTaxable"] == 100
    status, body = await sim.get(f"customer/{ca['Id']}")
    assert body["Customer"]["Balance"] == 157.25
    # the invoice's own ShipAddr wins over the customer's BillAddr
    inv = await sim.create(
        "Invoice", taxed_invoice(ca["Id"], ShipAddr={"CountrySubDivisionCode": "tx"})
    )
    assert inv["TxnTaxDetail"]["TotalTax"] == 6.25 and inv["TotalAmt"] == 156.25
    # no address, an unknown state, a state without sales tax, an exempt customer: no tax
    nowhere = await sim.create("Customer", {"DisplayName": "No Address"})
    exempt = await sim.create(
        "Customer",
        {"DisplayName": "Exempt", "Taxable": False, "BillAddr": {"CountrySubDivisionCode": "CA"}},
    )
    for cust, extra in (
        (nowhere["Id"], {}),
        (nowhere["Id"], {"BillAddr": {"CountrySubDivisionCode": "ZZ"}}),
        (ca["Id"], {"ShipAddr": {"CountrySubDivisionCode": "OR"}}),
        (exempt["Id"], {}),
    ):
        inv = await sim.create("Invoice", taxed_invoice(cust, **extra))
        assert inv["TxnTaxDetail"] == {"TotalTax": 0} and inv["TotalAmt"] == 150, extra
    # a payment: Balance follows the taxed total
    inv = await sim.create("Invoice", taxed_invoice(ca["Id"]))
    await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": ca["Id"]},
            "TotalAmt": 57.25,
            "Line": [{"Amount": 57.25, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 100 and body["Invoice"]["TotalAmt"] == 157.25


async def test_automated_sales_tax_override_needs_txn_tax_code_ref(sim: Sim) -> None:
    ca = await sim.create(
        "Customer", {"DisplayName": "Override", "BillAddr": {"CountrySubDivisionCode": "CA"}}
    )
    # TotalTax alone is ignored: AST's value wins
    inv = await sim.create("Invoice", taxed_invoice(ca["Id"], TxnTaxDetail={"TotalTax": 1}))
    assert inv["TxnTaxDetail"]["TotalTax"] == 7.25 and inv["TotalAmt"] == 157.25
    # with TxnTaxCodeRef it is honoured
    override = {"TxnTaxCodeRef": {"value": "TAX"}, "TotalTax": 9}
    inv = await sim.create("Invoice", taxed_invoice(ca["Id"], TxnTaxDetail=override))
    assert inv["TxnTaxDetail"] == override and inv["TotalAmt"] == 159 and inv["Balance"] == 159
    # a full update that sends back a detail without TxnTaxCodeRef is computed again
    lines = [ln for ln in inv["Line"] if ln["DetailType"] != "SubTotalLineDetail"]
    lines[0] = {**lines[0], "Amount": 200}
    status, body = await sim.post(
        "invoice",
        {
            "Id": inv["Id"],
            "SyncToken": inv["SyncToken"],
            "CustomerRef": {"value": ca["Id"]},
            "Line": lines,
            "TxnTaxDetail": {"TotalTax": 9},
        },
    )
    assert body["Invoice"]["TxnTaxDetail"]["TotalTax"] == 14.5
    assert body["Invoice"]["TotalAmt"] == 264.5
    status, body = await sim.post(
        "invoice",
        taxed_invoice(ca["Id"], TxnTaxDetail={"TxnTaxCodeRef": {"value": ""}, "TotalTax": 3}),
    )
    assert status == 400 and fault_code(body) == "2500"


async def test_automated_sales_tax_is_a_realm_setting(sim: Sim) -> None:
    sim.state.cfg.sales_tax_percent = 8
    await sim.control("POST", "/_sim/realms", {"realm_id": "70", "automated_sales_tax": False})
    await sim.control("PATCH", "/_sim/config", {"automated_sales_tax": False})
    await sim.control("POST", "/_sim/realms", {"realm_id": "71"})
    await sim.control("PATCH", "/_sim/config", {"automated_sales_tax": True})
    await sim.control("POST", "/_sim/realms", {"realm_id": "72"})
    for realm_id, ast_on in (("70", False), ("71", False), ("72", True)):
        assert sim.state.realms[realm_id].status.automated_sales_tax is ast_on
        tokens = await sim.control("POST", f"/_sim/realms/{realm_id}/tokens", {})
        other = Sim(sim.client, sim.state, realm_id, tokens["access_token"], "")
        cust = await other.create(
            "Customer", {"DisplayName": "Anywhere", "BillAddr": {"CountrySubDivisionCode": "NY"}}
        )
        inv = await other.create("Invoice", taxed_invoice(cust["Id"]))
        # AST: New York's 4%; without it: sales_tax_percent (8%), as before
        assert inv["TxnTaxDetail"]["TotalTax"] == (4 if ast_on else 8), realm_id


async def test_duplicate_docnumber_6140_when_enforced(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Docs"})
    item = await sim.create("Item", SERVICE)
    await make_invoice(sim, cust["Id"], item["Id"], DocNumber="INV-1")
    await make_invoice(sim, cust["Id"], item["Id"], DocNumber="INV-1")  # allowed by default
    sim.state.cfg.enforce_unique_docnumber = True
    status, body = await sim.post(
        "invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "DocNumber": "INV-1",
            "Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail"}],
        },
    )
    assert status == 400 and fault_code(body) == "6140"


async def test_payment_applies_to_invoice_and_links(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Payer"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"], qty=4)  # 100
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 65,
            "PaymentMethodRef": {"value": "1"},
            "Line": [{"Amount": 55, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    assert pay["UnappliedAmt"] == 10 and pay["DepositToAccountRef"]["name"] == "Undeposited Funds"
    status, body = await sim.get(f"invoice/{inv['Id']}")
    after = body["Invoice"]
    assert after["Balance"] == 45 and after["SyncToken"] == "1"
    assert {"TxnId": pay["Id"], "TxnType": "Payment"} in after["LinkedTxn"]
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert body["Customer"]["Balance"] == 35  # 45 open - 10 unapplied
    # over-applying fails with a business validation error
    status, body = await sim.post(
        "payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 50,
            "Line": [{"Amount": 50, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    assert status == 400 and fault_code(body) == "6000"
    status, body = await sim.post(
        "payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 5,
            "Line": [{"Amount": 5, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Estimate"}]}],
        },
    )
    assert fault_code(body) == "620"
    status, body = await sim.post("payment", {"CustomerRef": {"value": cust["Id"]}})
    assert fault_code(body) == "2020"


async def test_payment_update_replaces_lines_and_rebalances(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Rebalance"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"], qty=4)
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 100,
            "Line": [{"Amount": 100, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 0
    status, body = await sim.post(
        "payment",
        {
            "Id": pay["Id"],
            "SyncToken": "0",
            "sparse": True,
            "Line": [{"Amount": 40, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    assert status == 200 and body["Payment"]["UnappliedAmt"] == 60
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 60


async def test_invoice_delete_blocked_while_linked_then_allowed(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Linked"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"])
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 10,
            "Line": [{"Amount": 10, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    status, body = await sim.get(f"invoice/{inv['Id']}")
    token = body["Invoice"]["SyncToken"]
    status, body = await sim.post(
        "invoice", {"Id": inv["Id"], "SyncToken": token}, operation="delete"
    )
    assert status == 400 and fault_code(body) == "6000"
    status, body = await sim.post(
        "payment", {"Id": pay["Id"], "SyncToken": "0"}, operation="delete"
    )
    assert body == {
        "Payment": {"status": "Deleted", "domain": "QBO", "Id": pay["Id"]},
        "time": body["time"],
    }
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 50 and body["Invoice"]["LinkedTxn"] == []
    status, body = await sim.post(
        "invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="delete"
    )
    assert fault_code(body) == "5010"  # the payment bumped it
    status, body = await sim.post(
        "invoice", {"Id": inv["Id"], "SyncToken": str(int(token) + 1)}, operation="delete"
    )
    assert status == 200 and body["Invoice"]["status"] == "Deleted"
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert status == 400 and fault_code(body) == "610"
    assert "deleted" in body["Fault"]["Error"][0]["Detail"]


async def test_invoice_void_unapplies_payments(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Voided"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"], PrivateNote="memo")
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 20,
            "Line": [{"Amount": 20, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    status, body = await sim.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="void")
    voided = body["Invoice"]
    assert status == 200 and voided["TotalAmt"] == 0 and voided["Balance"] == 0
    assert voided["PrivateNote"].startswith("Voided") and voided["SyncToken"] == "2"
    assert all(ln["Amount"] == 0 for ln in voided["Line"])
    status, body = await sim.get(f"payment/{pay['Id']}")
    assert body["Payment"]["UnappliedAmt"] == 20 and body["Payment"]["Line"] == []
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert body["Customer"]["Balance"] == -20


async def test_payment_void_via_include_void(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "PayVoid"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"])
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": {"value": cust["Id"]},
            "TotalAmt": 50,
            "Line": [{"Amount": 50, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    status, body = await sim.post(
        "payment",
        {"Id": pay["Id"], "SyncToken": "0", "sparse": True},
        operation="update",
        include="void",
    )
    assert status == 200 and body["Payment"]["TotalAmt"] == 0
    assert body["Payment"]["PrivateNote"].startswith("Voided")
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 50
    status, body = await sim.post("payment", {"Id": pay["Id"], "SyncToken": "1"}, operation="void")
    assert status == 400 and fault_code(body) == "500"


async def test_reference_entities_are_readable(sim: Sim) -> None:
    for tail, key in (
        ("account/1", "Account"),
        ("taxcode/TAX", "TaxCode"),
        ("term/1", "Term"),
        ("paymentmethod/1", "PaymentMethod"),
        ("companyinfo/1", "CompanyInfo"),
    ):
        status, body = await sim.get(tail)
        assert status == 200 and body[key]["Id"], tail
    status, body = await sim.post(
        "companyinfo", {"Id": "1", "SyncToken": "0", "sparse": True, "CompanyName": "Renamed Co"}
    )
    assert status == 200 and body["CompanyInfo"]["SyncToken"] == "1"
    status, body = await sim.post("taxcode", {"Name": "New"})
    assert fault_code(body) == "500"


async def test_companyinfo_read_by_realm_id(sim: Sim) -> None:
    """Intuit documents the read as companyinfo/{realmId}; /1 (the object's Id) works too."""
    status, by_realm = await sim.get(f"companyinfo/{sim.realm}")
    assert status == 200 and by_realm["CompanyInfo"]["Id"] == "1"
    status, by_id = await sim.get("companyinfo/1")
    assert by_id["CompanyInfo"] == by_realm["CompanyInfo"]
    status, body = await sim.post(
        "companyinfo",
        {"Id": sim.realm, "SyncToken": "0", "sparse": True, "CompanyName": "Addressed By Realm"},
    )
    assert status == 200 and body["CompanyInfo"]["Id"] == "1"
    assert body["CompanyInfo"]["SyncToken"] == "1"
    status, body = await sim.get("companyinfo/2")
    assert status == 400 and fault_code(body) == "610"


async def test_minorversion_is_accepted_any_value(sim: Sim) -> None:
    for mv in ("4", "75", "999", "junk"):
        resp = await sim.client.get(
            sim.url("companyinfo/1"), headers=sim.auth, params={"minorversion": mv}
        )
        assert resp.status == 200


async def test_invalid_json_body(sim: Sim) -> None:
    resp = await sim.client.post(sim.url("customer"), headers=sim.auth, data=b"{nope")
    body = await resp.json()
    assert resp.status == 400 and fault_code(body) == "2010"


async def test_gateway_faults_for_auth(sim: Sim) -> None:
    resp = await sim.client.get(sim.url("companyinfo/1"))
    body = await resp.json()
    assert resp.status == 401 and body["fault"]["error"][0]["code"] == "3200"
    assert isinstance(body["time"], int) and resp.headers["intuit_tid"]
    resp = await sim.client.get(sim.url("companyinfo/1"), headers={"Authorization": "Bearer junk"})
    assert resp.status == 401
    other = sim.state.create_realm("777")
    resp = await sim.client.get(f"/v3/company/{other.realm_id}/companyinfo/1", headers=sim.auth)
    body = await resp.json()
    assert resp.status == 403 and body["fault"]["error"][0]["code"] == "3100"
    assert "statusCode=403" in body["fault"]["error"][0]["message"]


async def test_send_invoice_and_pdf(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Mailer"})
    item = await sim.create("Item", SERVICE)
    inv = await make_invoice(sim, cust["Id"], item["Id"])
    resp = await sim.client.post(
        sim.url(f"invoice/{inv['Id']}/send"), headers=sim.auth, params={"sendTo": "x@example.com"}
    )
    body = await resp.json()
    assert body["Invoice"]["EmailStatus"] == "EmailSent"
    resp = await sim.client.get(sim.url(f"invoice/{inv['Id']}/pdf"), headers=sim.auth)
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


async def test_customer_with_open_balance_cannot_go_inactive(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Owes Money"})
    await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [{"Amount": 12, "DetailType": "SalesItemLineDetail"}],
        },
    )
    status, body = await sim.post(
        "customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Active": False}
    )
    assert status == 400 and fault_code(body) == "6000"
    status, body = await sim.get(f"customer/{cust['Id']}")
    assert body["Customer"]["Active"] is True and body["Customer"]["Balance"] == 12


async def test_payment_for_another_customers_invoice_is_refused(sim: Sim) -> None:
    a = await sim.create("Customer", {"DisplayName": "Owner A"})
    b = await sim.create("Customer", {"DisplayName": "Payer B"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": a["Id"]},
            "Line": [{"Amount": 12, "DetailType": "SalesItemLineDetail"}],
        },
    )
    status, body = await sim.post(
        "payment",
        {
            "CustomerRef": {"value": b["Id"]},
            "TotalAmt": 12,
            "Line": [{"Amount": 12, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    assert status == 400 and fault_code(body) == "6000"
    status, body = await sim.get(f"invoice/{inv['Id']}")
    assert body["Invoice"]["Balance"] == 12 and body["Invoice"]["SyncToken"] == "0"

"""Query endpoint (through simulator.query), CDC and batch."""

from __future__ import annotations

from simtools import Sim, fault_code

from simulator.clock import fmt_time


async def seed(sim: Sim, **sizes: int) -> None:
    await sim.control("POST", f"/_sim/realms/{sim.realm}/seed", {"seed": 7, **sizes})


async def test_query_envelope_paging_and_count(sim: Sim) -> None:
    await seed(sim, customers=25)
    status, body = await sim.query("select * from Customer startposition 11 maxresults 10")
    qr = body["QueryResponse"]
    assert status == 200 and qr["startPosition"] == 11 and qr["maxResults"] == 10
    assert len(qr["Customer"]) == 10 and body["time"]
    status, body = await sim.query("SELECT COUNT(*) FROM Customer")
    assert body["QueryResponse"] == {"totalCount": 25}
    status, body = await sim.query("select * from Customer where DisplayName = 'nobody'")
    assert body["QueryResponse"] == {}


async def test_query_by_post_with_application_text(sim: Sim) -> None:
    await seed(sim, customers=3)
    resp = await sim.client.post(
        sim.url("query"),
        data="select * from Customer",
        headers={**sim.auth, "Content-Type": "application/text"},
    )
    body = await resp.json()
    assert resp.status == 200 and len(body["QueryResponse"]["Customer"]) == 3


async def test_query_default_active_filter(sim: Sim) -> None:
    a = await sim.create("Customer", {"DisplayName": "Active One"})
    b = await sim.create("Customer", {"DisplayName": "Inactive One"})
    await sim.post("customer", {"Id": b["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    status, body = await sim.query("select * from Customer")
    ids = [c["Id"] for c in body["QueryResponse"]["Customer"]]
    assert a["Id"] in ids and b["Id"] not in ids
    status, body = await sim.query("select * from Customer where Active in (true, false)")
    ids = [c["Id"] for c in body["QueryResponse"]["Customer"]]
    assert b["Id"] in ids


async def test_query_escaped_apostrophe_and_like(sim: Sim) -> None:
    await sim.create("Customer", {"DisplayName": "Amy's Bird Sanctuary"})
    status, body = await sim.query(
        r"select * from Customer where DisplayName = 'Amy\'s Bird Sanctuary'"
    )
    assert body["QueryResponse"]["Customer"][0]["DisplayName"] == "Amy's Bird Sanctuary"
    status, body = await sim.query("select * from Customer where DisplayName like 'Amy%'")
    assert len(body["QueryResponse"]["Customer"]) == 1


async def test_query_errors_4000_4001(sim: Sim) -> None:
    status, body = await sim.query("select * from Customer where DisplayName = 'Amy's'")
    assert status == 400 and fault_code(body) == "4000"
    status, body = await sim.query("select * from Customer where Bogus = '1'")
    assert status == 400 and fault_code(body) == "4001"
    status, body = await sim.query("select * from Customer maxresults 1001")
    assert status == 400 and fault_code(body) in ("4000", "4001")


async def test_query_order_by_and_invoice_filter(sim: Sim) -> None:
    await seed(sim, customers=5, items=5, invoices=20)
    status, body = await sim.query(
        "select * from Invoice where TotalAmt > '100' order by TotalAmt desc maxresults 1000"
    )
    totals = [i["TotalAmt"] for i in body["QueryResponse"]["Invoice"]]
    assert totals == sorted(totals, reverse=True) and all(t > 100 for t in totals)


async def test_cdc_changes_and_tombstones(sim: Sim) -> None:
    since = fmt_time(sim.state.clock.now() - 1)
    cust = await sim.create("Customer", {"DisplayName": "CDC Co"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [{"Amount": 5, "DetailType": "SalesItemLineDetail"}],
        },
    )
    gone = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [{"Amount": 7, "DetailType": "SalesItemLineDetail"}],
        },
    )
    await sim.post("invoice", {"Id": gone["Id"], "SyncToken": "0"}, operation="delete")
    status, body = await sim.get("cdc", entities="Customer,Invoice,Payment", changedSince=since)
    assert status == 200 and body["time"]
    qrs = body["CDCResponse"][0]["QueryResponse"]
    assert [c["Id"] for c in qrs[0]["Customer"]] == [cust["Id"]]
    invoices = qrs[1]["Invoice"]
    assert invoices[0]["Id"] == inv["Id"]
    assert invoices[-1] == {
        "status": "Deleted",
        "domain": "QBO",
        "Id": gone["Id"],
        "MetaData": {"LastUpdatedTime": invoices[-1]["MetaData"]["LastUpdatedTime"]},
    }
    assert len(qrs) == 2  # Payment had no change: left out
    # changes before changedSince are not returned
    sim.state.clock.advance(60)
    later = fmt_time(sim.state.clock.now())
    status, body = await sim.get("cdc", entities="Customer", changedSince=later)
    assert body["CDCResponse"][0]["QueryResponse"] == [{}]


async def test_cdc_without_changes_is_one_empty_object(sim: Sim) -> None:
    """qbo-api.md §2.9: no change for any requested type answers "QueryResponse": [{}]."""
    since = fmt_time(sim.state.clock.now() + 1)
    status, body = await sim.get("cdc", entities="Customer,Invoice,Payment", changedSince=since)
    assert status == 200 and body["CDCResponse"] == [{"QueryResponse": [{}]}]
    cust = await sim.create("Customer", {"DisplayName": "Only Customers Changed"})
    since = fmt_time(sim.state.clock.now() - 1)
    status, body = await sim.get("cdc", entities="Invoice,Customer,Payment", changedSince=since)
    qrs = body["CDCResponse"][0]["QueryResponse"]
    assert [list(qr)[0] for qr in qrs] == ["Customer"]
    assert [c["Id"] for c in qrs[0]["Customer"]] == [cust["Id"]]


async def test_cdc_thirty_day_limit_and_errors(sim: Sim) -> None:
    old = fmt_time(sim.state.clock.now() - 31 * 86400)
    status, body = await sim.get("cdc", entities="Customer", changedSince=old)
    assert status == 400 and "older than" in body["Fault"]["Error"][0]["Detail"]
    status, body = await sim.get("cdc", entities="Customer")
    assert fault_code(body) == "2020"
    status, body = await sim.get("cdc", entities="TaxCode", changedSince="2025-01-01")
    assert status == 400
    ok = fmt_time(sim.state.clock.now() - 29 * 86400)
    status, body = await sim.get("cdc", entities="Customer", changedSince=ok)
    assert status == 200


async def test_cdc_caps_at_max_objects(sim: Sim) -> None:
    sim.state.cfg.cdc_max_objects = 10
    since = fmt_time(sim.state.clock.now() - 1)
    await seed(sim, customers=8, items=8)
    status, body = await sim.get("cdc", entities="Customer,Item", changedSince=since)
    qrs = body["CDCResponse"][0]["QueryResponse"]
    assert len(qrs[0]["Customer"]) == 8 and len(qrs[1]["Item"]) == 2


async def test_batch_mixed_items_and_faults(sim: Sim) -> None:
    await sim.create("Customer", {"DisplayName": "Taken"})
    inv_c = await sim.create("Customer", {"DisplayName": "Batch Owner"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": inv_c["Id"]},
            "Line": [{"Amount": 5, "DetailType": "SalesItemLineDetail"}],
        },
    )
    other = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": inv_c["Id"]},
            "Line": [{"Amount": 6, "DetailType": "SalesItemLineDetail"}],
        },
    )
    status, body = await sim.post(
        "batch",
        {
            "BatchItemRequest": [
                {"bId": "c1", "operation": "create", "Customer": {"DisplayName": "Fresh"}},
                {"bId": "c2", "operation": "create", "Customer": {"DisplayName": "Taken"}},
                {
                    "bId": "u1",
                    "operation": "update",
                    "Invoice": {
                        "Id": inv["Id"],
                        "SyncToken": "0",
                        "sparse": True,
                        "DueDate": "2031-01-01",
                    },
                },
                {
                    "bId": "u2",
                    "operation": "update",
                    "Invoice": {
                        "Id": inv["Id"],
                        "SyncToken": "0",
                        "sparse": True,
                        "DueDate": "2032-01-01",
                    },
                },
                {
                    "bId": "d1",
                    "operation": "delete",
                    "Invoice": {"Id": other["Id"], "SyncToken": "0"},
                },
                {"bId": "q1", "Query": "select * from Customer where DisplayName = 'Taken'"},
            ]
        },
    )
    assert status == 200
    by = {item["bId"]: item for item in body["BatchItemResponse"]}
    assert by["c1"]["Customer"]["DisplayName"] == "Fresh"
    assert by["c2"]["Fault"]["Error"][0]["code"] == "6240"
    assert by["u1"]["Invoice"]["DueDate"] == "2031-01-01"
    assert by["u2"]["Fault"]["Error"][0]["code"] == "5010"
    assert by["d1"]["Invoice"] == {"status": "Deleted", "domain": "QBO", "Id": other["Id"]}
    assert by["q1"]["QueryResponse"]["Customer"][0]["DisplayName"] == "Taken"


async def test_batch_items_do_not_see_each_other(sim: Sim) -> None:
    status, body = await sim.post(
        "batch",
        {
            "BatchItemRequest": [
                {"bId": "a", "operation": "create", "Customer": {"DisplayName": "Parent X"}}
            ]
        },
    )
    new_id = str(int(body["BatchItemResponse"][0]["Customer"]["Id"]) + 1)
    status, body = await sim.post(
        "batch",
        {
            "BatchItemRequest": [
                {"bId": "a", "operation": "create", "Customer": {"DisplayName": "Child Parent"}},
                {
                    "bId": "b",
                    "operation": "update",
                    "Customer": {"Id": new_id, "SyncToken": "0", "sparse": True, "Notes": "x"},
                },
            ]
        },
    )
    by = {item["bId"]: item for item in body["BatchItemResponse"]}
    assert by["a"]["Customer"]["Id"] == new_id
    assert by["b"]["Fault"]["Error"][0]["code"] == "610"


async def test_batch_void_payment_with_options_data(sim: Sim) -> None:
    cust = await sim.create("Customer", {"DisplayName": "BV"})
    pay = await sim.create("Payment", {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 9})
    status, body = await sim.post(
        "batch",
        {
            "BatchItemRequest": [
                {
                    "bId": "v",
                    "operation": "update",
                    "optionsData": "void",
                    "Payment": {"Id": pay["Id"], "SyncToken": "0", "sparse": True},
                }
            ]
        },
    )
    assert body["BatchItemResponse"][0]["Payment"]["TotalAmt"] == 0


async def test_batch_size_limit_1040(sim: Sim) -> None:
    items = [{"bId": str(i), "Query": "select * from Term"} for i in range(31)]
    status, body = await sim.post("batch", {"BatchItemRequest": items})
    assert status == 400 and fault_code(body) == "1040"
    status, body = await sim.post("batch", {"BatchItemRequest": items[:30]})
    assert status == 200 and len(body["BatchItemResponse"]) == 30
    counters = await sim.control("GET", f"/_sim/realms/{sim.realm}/counters")
    assert counters["counters"]["batch.item"] == 30

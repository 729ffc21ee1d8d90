"""Error codes of qbo-api.md §4.4 over real HTTP: the company-status, permission, period and
deposit faults (100, 120, 130, 3201, 4002, 5020, 6190, 6210, 6540), the realm status control
surface, and one walk over the whole §4.4 table that produces every code listed there.
"""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from simtools import Sim, fault_code

_names = itertools.count(1)
SERVICE_ITEM = {
    "Name": "Consulting",
    "Type": "Service",
    "UnitPrice": 50,
    "IncomeAccountRef": {"value": "2"},
}


@dataclass
class Answer:
    status: int
    content_type: str
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


async def call(
    sim: Sim,
    method: str,
    tail: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **params: str,
) -> Answer:
    """One Accounting API call on sim's realm; token None = sim's token."""
    hdrs = {"Accept": "application/json"}
    if headers is not None:
        hdrs = headers
    else:
        hdrs["Authorization"] = f"Bearer {token or sim.token}"
    resp = await sim.client.request(
        method,
        sim.url(tail),
        headers=hdrs,
        json=body,
        params={"minorversion": "75", **params},
    )
    return Answer(resp.status, resp.content_type, await resp.text(), dict(resp.headers))


async def company(sim: Sim) -> Sim:
    """A new realm with its own token, on the same server (isolates status changes)."""
    made = await sim.control("POST", "/_sim/realms", {})
    pair = await sim.control("POST", f"/_sim/realms/{made['realm_id']}/tokens", {})
    return Sim(sim.client, sim.state, made["realm_id"], pair["access_token"], pair["refresh_token"])


async def set_status(sim: Sim, **status: Any) -> dict[str, Any]:
    return await sim.control("PATCH", f"/_sim/realms/{sim.realm}/status", status)


def garble(token: str) -> str:
    """The same token with one character of its random part changed (same shape)."""
    i = len(token) - 10
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def std_error(answer: Answer) -> dict[str, Any]:
    body = answer.json()
    assert isinstance(body["time"], str) and "Fault" in body, body
    return body["Fault"]["Error"][0]


def gateway_error(answer: Answer) -> dict[str, Any]:
    body = answer.json()
    assert isinstance(body["time"], int) and body["intuitObject"] is None, body
    return body["fault"]["error"][0]


async def invoice_body(sim: Sim, **extra: Any) -> dict[str, Any]:
    n = next(_names)
    cust = await sim.create("Customer", {"DisplayName": f"Buyer {n}"})
    item = await sim.create("Item", {**SERVICE_ITEM, "Name": f"Service {n}"})
    return {
        "CustomerRef": {"value": cust["Id"]},
        "Line": [
            {
                "Amount": 100,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": item["Id"]},
                    "Qty": 2,
                    "UnitPrice": 50,
                },
            }
        ],
        **extra,
    }


async def invoice_and_payment(sim: Sim, txn_date: str | None = None) -> tuple[dict, dict]:
    dated = {"TxnDate": txn_date} if txn_date else {}
    inv = await sim.create("Invoice", await invoice_body(sim, **dated))
    pay = await sim.create(
        "Payment",
        {
            "CustomerRef": inv["CustomerRef"],
            "TotalAmt": 40,
            "Line": [{"Amount": 40, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
            **dated,
        },
    )
    return inv, pay


# ------------------------------------------------------------------------------ 100 / 3200


async def test_100_for_a_garbled_token_3200_for_malformed_expired_revoked(sim: Sim) -> None:
    answer = await call(sim, "GET", "companyinfo/1", token=garble(sim.token))
    err = std_error(answer)
    assert answer.status == 401 and err["code"] == "100"
    assert err["Message"] == "General Authentication Error"
    assert "SRV-110" in err["Detail"] and answer.json()["Fault"]["type"] == "AuthenticationFault"

    for bad in ("junk", sim.token + "x", sim.token[:-1]):  # wrong length: the gateway's 3200
        answer = await call(sim, "GET", "companyinfo/1", token=bad)
        err = gateway_error(answer)
        assert answer.status == 401 and err["code"] == "3200"
        assert err["detail"] == "Malformed bearer token: too short or too long"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    assert (await call(sim, "GET", "companyinfo/1")).status == 200
    await sim.control("POST", "/_sim/tokens/expire", {"realm_id": sim.realm, "kind": "access"})
    err = gateway_error(await call(sim, "GET", "companyinfo/1"))
    assert err["code"] == "3200" and err["detail"] == "Token expired"

    other = await company(sim)
    await sim.control("POST", "/_sim/tokens/revoke", {"realm_id": other.realm})
    answer = await call(other, "GET", "companyinfo/1")
    err = gateway_error(answer)
    assert answer.status == 401 and err["code"] == "3200" and err["detail"] == "Token revoked"


# ------------------------------------------------------------------------------ 120


async def test_120_when_the_connecting_user_lost_admin_rights(sim: Sim) -> None:
    co = await company(sim)
    out = await set_status(co, admin_access=False)
    assert out["admin_access"] is False
    for method, tail, body, params in (
        ("GET", "companyinfo/1", None, {}),
        ("GET", "query", None, {"query": "select * from Term"}),
        ("POST", "customer", {"DisplayName": "Blocked"}, {}),
    ):
        answer = await call(co, method, tail, body, **params)
        err = std_error(answer)
        assert answer.status == 401 and err["code"] == "120", (tail, answer.text)
        assert err["Message"] == "Authorization Failure" and "-11014-" in err["Detail"]
        assert answer.json()["Fault"]["type"] == "AuthorizationFault"
    assert (await call(sim, "GET", "companyinfo/1")).status == 200  # other realms unaffected
    await set_status(co, admin_access=True)
    assert (await call(co, "GET", "companyinfo/1")).status == 200


# ------------------------------------------------------------------------------ 130 / 3100


async def test_130_production_company_on_sandbox_cluster_3100_the_other_way(sim: Sim) -> None:
    prod = await company(sim)
    await set_status(prod, environment="production")
    answer = await call(prod, "GET", "companyinfo/1")
    err = std_error(answer)
    assert answer.status == 401 and err["code"] == "130"
    assert err["Message"] == "Accessing Wrong Cluster"
    assert answer.json()["Fault"]["type"] == "AuthenticationFault"

    # the simulator's base URL now stands for production: the production company works and
    # the sandbox company (default realm) is refused the way Intuit refuses it (403 3100)
    await sim.control("PATCH", "/_sim/config", {"api_environment": "production"})
    assert (await call(prod, "GET", "companyinfo/1")).status == 200
    answer = await call(sim, "GET", "companyinfo/1")
    err = gateway_error(answer)
    assert answer.status == 403 and err["code"] == "3100"
    assert answer.json()["fault"]["type"] == "SERVICE"
    await sim.control("PATCH", "/_sim/config", {"api_environment": "sandbox"})
    assert (await call(sim, "GET", "companyinfo/1")).status == 200


# ------------------------------------------------------------------------------ 3201 / 3100


async def test_3201_when_app_authorization_withdrawn_3100_for_another_realms_token(
    sim: Sim,
) -> None:
    co = await company(sim)
    await set_status(co, app_authorized=False)
    answer = await call(co, "GET", "companyinfo/1")
    err = gateway_error(answer)
    assert answer.status == 403 and err["code"] == "3201"
    assert err["message"] == "message=AuthorizationFailure; errorCode=003201; statusCode=403"
    assert (await call(co, "POST", "customer", {"DisplayName": "No"})).status == 403

    # a token issued for another realm is still 3100, whatever that realm's state
    answer = await call(co, "GET", "companyinfo/1", token=sim.token)
    err = gateway_error(answer)
    assert answer.status == 403 and err["code"] == "3100"
    answer = await call(sim, "GET", "companyinfo/1", token=co.token)
    assert answer.status == 403 and gateway_error(answer)["code"] == "3100"

    await set_status(co, app_authorized=True)
    assert (await call(co, "GET", "companyinfo/1")).status == 200


# ------------------------------------------------------------------------------ 4002


async def test_4002_when_a_query_reaches_an_invalid_stored_email(sim: Sim) -> None:
    good = await sim.create(
        "Customer", {"DisplayName": "Good Mail", "PrimaryEmailAddr": {"Address": "a@b.com"}}
    )
    status, _ = await sim.query("select * from Customer")
    assert status == 200
    made = await sim.control(
        "POST",
        f"/_sim/realms/{sim.realm}/change",
        {
            "entity": "Customer",
            "operation": "create",
            "fields": {"DisplayName": "Bad Mail", "PrimaryEmailAddr": {"Address": "bad@@mail"}},
        },
    )
    bad_id = made["Customer"]["Id"]
    answer = await call(sim, "GET", "query", query="select * from Customer")
    err = std_error(answer)
    assert answer.status == 400 and err["code"] == "4002"
    assert err["Message"] == "Error processing query"
    assert err["Detail"].startswith("QueryProcessingError:") and f"Id={bad_id}" in err["Detail"]
    assert err["element"] == "PrimaryEmailAddr.Address"

    # rows that do not include the bad customer, reads by Id and projections still work
    status, body = await sim.query(f"select * from Customer where Id = '{good['Id']}'")
    assert status == 200 and body["QueryResponse"]["Customer"][0]["Id"] == good["Id"]
    assert (await sim.get(f"customer/{bad_id}"))[0] == 200
    assert (await sim.query("select Id, DisplayName from Customer"))[0] == 200

    # batch queries fail per item
    status, body = await sim.post(
        "batch", {"BatchItemRequest": [{"bId": "q", "Query": "select * from Customer"}]}
    )
    assert status == 200 and body["BatchItemResponse"][0]["Fault"]["Error"][0]["code"] == "4002"

    # the user fixes the address in QBO: the query works again
    await sim.control(
        "POST",
        f"/_sim/realms/{sim.realm}/change",
        {
            "entity": "Customer",
            "id": bad_id,
            "fields": {"PrimaryEmailAddr": {"Address": "x@y.org"}},
        },
    )
    assert (await sim.query("select * from Customer"))[0] == 200


async def test_4002_for_an_invoice_bill_email(sim: Sim) -> None:
    await sim.create("Invoice", await invoice_body(sim, BillEmail={"Address": "no-at-sign"}))
    status, body = await sim.query("select * from Invoice")
    assert status == 400 and fault_code(body) == "4002"
    assert body["Fault"]["Error"][0]["element"] == "BillEmail.Address"


# ------------------------------------------------------------------------------ 5020


async def test_5020_for_features_the_edition_lacks(sim: Sim) -> None:
    co = await company(sim)
    out = await set_status(co, edition="SimpleStart")
    assert out["edition"] == "SimpleStart"
    answer = await call(co, "GET", "cdc", entities="Customer", changedSince="2020-01-01T00:00:00Z")
    err = std_error(answer)
    assert answer.status == 400 and err["code"] == "5020"
    assert err["Message"] == "You do not have permission to access this feature."
    assert "SimpleStart" in err["Detail"] and "cdc" in err["Detail"]
    batch = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Term"}]}
    answer = await call(co, "POST", "batch", batch)
    assert answer.status == 400 and std_error(answer)["code"] == "5020"
    # features the edition has keep working
    assert (await call(co, "GET", "query", query="select * from Term")).status == 200
    assert (await call(co, "POST", "customer", {"DisplayName": "Fine"})).status == 200

    await set_status(co, edition="Plus")
    since = "2020-01-01T00:00:00Z"
    answer = await call(co, "GET", "cdc", entities="Customer", changedSince=since)
    assert answer.status == 400 and std_error(answer)["code"] == "4000"  # past the 30-day window
    assert (await call(co, "POST", "batch", batch)).status == 200


# ------------------------------------------------------------------------------ 6190


async def test_6190_on_writes_after_the_subscription_ended(sim: Sim) -> None:
    co = await company(sim)
    cust = await co.create("Customer", {"DisplayName": "Before End"})
    await set_status(co, subscription="ended")
    answer = await call(co, "POST", "customer", {"DisplayName": "After End"})
    err = std_error(answer)
    assert answer.status == 400 and err["code"] == "6190"
    assert err["Message"] == "Invalid Company Status" and "subscription" in err["Detail"]
    assert answer.json()["Fault"]["type"] == "ValidationFault"
    sparse = {"Id": cust["Id"], "SyncToken": cust["SyncToken"], "sparse": True, "Notes": "x"}
    assert std_error(await call(co, "POST", "customer", sparse))["code"] == "6190"
    # reads, queries and batch queries go on; batch writes fail per item
    assert (await call(co, "GET", f"customer/{cust['Id']}")).status == 200
    assert (await call(co, "GET", "query", query="select * from Customer")).status == 200
    batch = {
        "BatchItemRequest": [
            {"bId": "w", "operation": "create", "Customer": {"DisplayName": "Batch"}},
            {"bId": "q", "Query": "select * from Customer"},
        ]
    }
    answer = await call(co, "POST", "batch", batch)
    items = {i["bId"]: i for i in answer.json()["BatchItemResponse"]}
    assert answer.status == 200 and items["w"]["Fault"]["Error"][0]["code"] == "6190"
    assert items["q"]["QueryResponse"]["Customer"][0]["DisplayName"] == "Before End"

    await set_status(co, subscription="active")
    assert (await call(co, "POST", "customer", {"DisplayName": "After End"})).status == 200


# ------------------------------------------------------------------------------ 6210


async def test_6210_for_transactions_dated_in_a_closed_period(sim: Sim) -> None:
    inv, pay = await invoice_and_payment(sim, "2024-06-01")
    out = await set_status(sim, closing_date="2024-12-31")
    assert out["closing_date"] == "2024-12-31"

    status, body = await sim.post("invoice", await invoice_body(sim, TxnDate="2024-12-31"))
    err = body["Fault"]["Error"][0]
    assert status == 400 and err["code"] == "6210" and err["Message"] == "Account Period Closed"
    assert err["element"] == "TxnDate" and "2024-12-31" in err["Detail"]
    assert body["Fault"]["type"] == "ValidationFault"
    status, _ = await sim.post("invoice", await invoice_body(sim, TxnDate="2025-01-01"))
    assert status == 200

    fresh = (await sim.get(f"invoice/{inv['Id']}"))[1]["Invoice"]
    ident = {"Id": fresh["Id"], "SyncToken": fresh["SyncToken"]}
    moved = {**ident, "sparse": True, "TxnDate": "2025-02-01"}
    for params, body in (
        ({}, moved),  # moving it out of the closed period is a change of a closed txn too
        ({"operation": "delete"}, ident),
        ({"operation": "void"}, ident),
    ):
        status, answer = await sim.post("invoice", body, **params)
        assert status == 400 and fault_code(answer) == "6210", (params, answer)
    pay_ident = {"Id": pay["Id"], "SyncToken": pay["SyncToken"]}
    status, answer = await sim.post("payment", pay_ident, operation="delete")
    assert status == 400 and fault_code(answer) == "6210"

    # moving an open-period invoice into the closed period is refused as well
    late = await sim.create("Invoice", await invoice_body(sim, TxnDate="2025-03-01"))
    status, answer = await sim.post(
        "invoice",
        {"Id": late["Id"], "SyncToken": late["SyncToken"], "sparse": True, "TxnDate": "2024-01-05"},
    )
    assert status == 400 and fault_code(answer) == "6210"

    # name lists are not dated: unaffected; reopening the books allows the change
    assert (await sim.post("customer", {"DisplayName": "Undated"}))[0] == 200
    await set_status(sim, closing_date=None)
    assert (await sim.post("invoice", moved))[0] == 200


# ------------------------------------------------------------------------------ 6540


async def test_6540_for_a_deposited_payment(sim: Sim) -> None:
    inv, pay = await invoice_and_payment(sim)
    out = await sim.control(
        "POST",
        f"/_sim/realms/{sim.realm}/change",
        {"entity": "Payment", "id": pay["Id"], "operation": "deposit"},
    )
    deposited = out["Payment"]
    assert deposited["SyncToken"] == str(int(pay["SyncToken"]) + 1)
    assert deposited["LinkedTxn"][-1]["TxnType"] == "Deposit"
    ident = {"Id": pay["Id"], "SyncToken": deposited["SyncToken"]}

    for params, body in (
        ({}, {**ident, "sparse": True, "PrivateNote": "edit"}),
        ({"operation": "delete"}, ident),
        ({"operation": "update", "include": "void"}, ident),
    ):
        status, answer = await sim.post("payment", body, **params)
        err = answer["Fault"]["Error"][0]
        assert status == 400 and err["code"] == "6540", (params, answer)
        assert err["Message"] == "Deposited Transaction cannot be changed"
        assert "deposited" in err["Detail"] and answer["Fault"]["type"] == "ValidationFault"

    # voiding the invoice would unapply (change) the deposited payment
    fresh = (await sim.get(f"invoice/{inv['Id']}"))[1]["Invoice"]
    status, answer = await sim.post(
        "invoice", {"Id": fresh["Id"], "SyncToken": fresh["SyncToken"]}, operation="void"
    )
    assert status == 400 and fault_code(answer) == "6540"

    # the payment is unchanged, and a second deposit of it is refused
    stored = (await sim.get(f"payment/{pay['Id']}"))[1]["Payment"]
    assert stored == deposited
    resp = await sim.client.post(
        f"/_sim/realms/{sim.realm}/change",
        json={"entity": "Payment", "id": pay["Id"], "operation": "deposit"},
    )
    assert resp.status == 400 and fault_code(await resp.json()) == "6540"
    # an undeposited payment can still be voided
    _, other = await invoice_and_payment(sim)
    status, _ = await sim.post(
        "payment",
        {"Id": other["Id"], "SyncToken": other["SyncToken"]},
        include="void",
        operation="update",
    )
    assert status == 200


# ------------------------------------------------------------------------------ control


async def test_realm_status_control_surface(sim: Sim) -> None:
    path = f"/_sim/realms/{sim.realm}/status"
    defaults = await sim.control("GET", path)
    assert defaults == {
        "realm_id": sim.realm,
        "environment": "sandbox",
        "admin_access": True,
        "app_authorized": True,
        "subscription": "active",
        "edition": "Plus",
        "closing_date": None,
        "automated_sales_tax": True,
        "requestid_mode": None,
    }
    for bad in (
        {"nope": 1},
        {"edition": "Gold"},
        {"admin_access": "no"},
        {"closing_date": "31/12/2024"},
        {"subscription": "ended", "environment": "moon"},  # all or nothing
    ):
        resp = await sim.client.patch(path, json=bad)
        assert resp.status == 400, bad
    assert await sim.control("GET", path) == defaults
    resp = await sim.client.get("/_sim/realms/404/status")
    assert resp.status == 404


# ------------------------------------------------------------------------------ §4.4 walk

# qbo-api.md §4.4, "Important codes": code -> (HTTP status, accepted fault types). Where the
# reference leaves the status ("?") or type ("", "–") open, the value is the simulator's choice
# (docs/simulator.md). "gateway" / "xml" name the envelope; anything else is the JSON Fault.
TABLE_4_4: dict[str, tuple[int, str, set[str]]] = {
    "3200": (401, "gateway", {"AUTHENTICATION"}),
    "100": (401, "fault", {"AuthenticationFault"}),
    "120": (401, "fault", {"AuthorizationFault"}),
    "130": (401, "fault", {"AuthenticationFault"}),
    "3100": (403, "gateway", {"SERVICE"}),
    "3201": (403, "gateway", {"SERVICE"}),
    "3001": (429, "xml", {"SERVICE"}),
    "500": (400, "fault", {"ValidationFault"}),
    "600": (400, "fault", {"ValidationFault"}),
    "610": (400, "fault", {"ValidationFault"}),
    "620": (400, "fault", {"ValidationFault"}),
    "1040": (400, "fault", {"ValidationFault"}),
    "2020": (400, "fault", {"ValidationFault"}),
    "2050": (400, "fault", {"ValidationFault"}),
    "2170": (400, "fault", {"ValidationFault"}),
    "2500": (400, "fault", {"ValidationFault"}),
    "4000": (400, "fault", {"ValidationFault"}),
    "4001": (400, "fault", {"ValidationFault"}),
    "4002": (400, "fault", {"ValidationFault", "Service", "ServiceFault"}),
    "5010": (400, "fault", {"ValidationFault"}),
    "5020": (400, "fault", {"ValidationFault"}),
    "6000": (400, "fault", {"ValidationFault"}),
    "6070": (400, "fault", {"ValidationFault"}),
    "6080": (400, "fault", {"ValidationFault"}),
    "6140": (400, "fault", {"ValidationFault"}),
    "6190": (400, "fault", {"ValidationFault"}),
    "6210": (400, "fault", {"ValidationFault"}),
    "6240": (400, "fault", {"ValidationFault"}),
    "6540": (400, "fault", {"ValidationFault"}),
    "10000": (500, "fault", {"SystemFault"}),
}

Trigger = Callable[[Sim], Awaitable[Answer]]


async def _t3200(sim: Sim) -> Answer:
    return await call(sim, "GET", "companyinfo/1", headers={"Accept": "application/json"})


async def _t100(sim: Sim) -> Answer:
    return await call(sim, "GET", "companyinfo/1", token=garble(sim.token))


async def _t120(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, admin_access=False)
    return await call(co, "GET", "companyinfo/1")


async def _t130(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, environment="production")
    return await call(co, "GET", "companyinfo/1")


async def _t3100(sim: Sim) -> Answer:
    co = await company(sim)
    return await call(co, "GET", "companyinfo/1", token=sim.token)


async def _t3201(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, app_authorized=False)
    return await call(co, "GET", "companyinfo/1")


async def _t3001(sim: Sim) -> Answer:
    co = await company(sim)
    await sim.control("PATCH", "/_sim/config", {"limits_enabled": True, "per_second": 1})
    try:
        await call(co, "GET", "companyinfo/1")
        return await call(co, "GET", "companyinfo/1")
    finally:
        await sim.control("PATCH", "/_sim/config", {"limits_enabled": False, "per_second": 10})


async def _t500(sim: Sim) -> Answer:
    cust = await sim.create("Customer", {"DisplayName": "Undeletable"})
    ident = {"Id": cust["Id"], "SyncToken": cust["SyncToken"]}
    return await call(sim, "POST", "customer", ident, operation="delete")


async def _t600(sim: Sim) -> Answer:
    await sim.control("PATCH", "/_sim/config", {"requestid_mode": "error600"})
    try:
        await call(sim, "POST", "term", {"Name": "Net 7", "DueDays": 7}, requestid="walk-600")
        return await call(
            sim, "POST", "term", {"Name": "Net 7", "DueDays": 7}, requestid="walk-600"
        )
    finally:
        await sim.control("PATCH", "/_sim/config", {"requestid_mode": "replay"})


async def _t610(sim: Sim) -> Answer:
    return await call(sim, "GET", "customer/987654")


async def _t620(sim: Sim) -> Answer:
    cust = await sim.create("Customer", {"DisplayName": "Linker"})
    line = {"Amount": 1, "LinkedTxn": [{"TxnId": "1", "TxnType": "Bill"}]}
    body = {"CustomerRef": {"value": cust["Id"]}, "TotalAmt": 1, "Line": [line]}
    return await call(sim, "POST", "payment", body)


async def _t1040(sim: Sim) -> Answer:
    items = [{"bId": str(n), "Query": "select * from Term"} for n in range(31)]
    return await call(sim, "POST", "batch", {"BatchItemRequest": items})


async def _t2020(sim: Sim) -> Answer:
    return await call(sim, "POST", "invoice", {"Line": []})


async def _t2050(sim: Sim) -> Answer:
    return await call(sim, "POST", "customer", {"DisplayName": "x" * 501})


async def _t2170(sim: Sim) -> Answer:
    body = {"DisplayName": "Faxer", "PreferredDeliveryMethod": "Fax"}
    return await call(sim, "POST", "customer", body)


async def _t2500(sim: Sim) -> Answer:
    body = await invoice_body(sim)
    return await call(sim, "POST", "invoice", {**body, "CustomerRef": {"value": "987654"}})


async def _t4000(sim: Sim) -> Answer:
    return await call(sim, "GET", "query", query="select * from Customer where DisplayName = 'a'b'")


async def _t4001(sim: Sim) -> Answer:
    return await call(sim, "GET", "query", query="select * from Customer where Nope = '1'")


async def _t4002(sim: Sim) -> Answer:
    co = await company(sim)
    await sim.control(
        "POST",
        f"/_sim/realms/{co.realm}/change",
        {
            "entity": "Customer",
            "operation": "create",
            "fields": {"DisplayName": "Bad", "PrimaryEmailAddr": {"Address": "bad@"}},
        },
    )
    return await call(co, "GET", "query", query="select * from Customer")


async def _t5010(sim: Sim) -> Answer:
    cust = await sim.create("Customer", {"DisplayName": "Stale"})
    await call(sim, "POST", "customer", {**cust, "Notes": "first"})
    return await call(sim, "POST", "customer", {**cust, "Notes": "second"})


async def _t5020(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, edition="SimpleStart")
    return await call(co, "GET", "cdc", entities="Customer", changedSince="2020-01-01")


async def _t6000(sim: Sim) -> Answer:
    inv = await sim.create("Invoice", await invoice_body(sim))
    line = {"Amount": 20, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}
    body = {"CustomerRef": inv["CustomerRef"], "TotalAmt": 10, "Line": [line]}
    return await call(sim, "POST", "payment", body)


async def _t6070(sim: Sim) -> Answer:
    body = await invoice_body(sim)
    body["Line"][0]["Amount"] = 99
    return await call(sim, "POST", "invoice", body)


async def _t6080(sim: Sim) -> Answer:
    return await call(sim, "POST", "customer", {"CompanyName": "No Display"})


async def _t6140(sim: Sim) -> Answer:
    await sim.control("PATCH", "/_sim/config", {"enforce_unique_docnumber": True})
    try:
        await call(sim, "POST", "invoice", await invoice_body(sim, DocNumber="W-1"))
        return await call(sim, "POST", "invoice", await invoice_body(sim, DocNumber="W-1"))
    finally:
        await sim.control("PATCH", "/_sim/config", {"enforce_unique_docnumber": False})


async def _t6190(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, subscription="ended")
    return await call(co, "POST", "customer", {"DisplayName": "Late"})


async def _t6210(sim: Sim) -> Answer:
    co = await company(sim)
    await set_status(co, closing_date="2024-12-31")
    return await call(co, "POST", "invoice", await invoice_body(co, TxnDate="2024-11-30"))


async def _t6240(sim: Sim) -> Answer:
    await sim.create("Customer", {"DisplayName": "Twin"})
    return await call(sim, "POST", "vendor", {"DisplayName": "twin "})


async def _t6540(sim: Sim) -> Answer:
    _, pay = await invoice_and_payment(sim)
    out = await sim.control(
        "POST",
        f"/_sim/realms/{sim.realm}/change",
        {"entity": "Payment", "id": pay["Id"], "operation": "deposit"},
    )
    ident = {"Id": pay["Id"], "SyncToken": out["Payment"]["SyncToken"]}
    return await call(sim, "POST", "payment", ident, operation="delete")


async def _t10000(sim: Sim) -> Answer:
    await sim.control("POST", "/_sim/faults", {"next": [{"kind": "500", "times": 1}]})
    return await call(sim, "GET", "companyinfo/1")


TRIGGERS: dict[str, Trigger] = {
    "3200": _t3200,
    "100": _t100,
    "120": _t120,
    "130": _t130,
    "3100": _t3100,
    "3201": _t3201,
    "3001": _t3001,
    "500": _t500,
    "600": _t600,
    "610": _t610,
    "620": _t620,
    "1040": _t1040,
    "2020": _t2020,
    "2050": _t2050,
    "2170": _t2170,
    "2500": _t2500,
    "4000": _t4000,
    "4001": _t4001,
    "4002": _t4002,
    "5010": _t5010,
    "5020": _t5020,
    "6000": _t6000,
    "6070": _t6070,
    "6080": _t6080,
    "6140": _t6140,
    "6190": _t6190,
    "6210": _t6210,
    "6240": _t6240,
    "6540": _t6540,
    "10000": _t10000,
}


def _code_type(answer: Answer, envelope: str) -> tuple[str, str]:
    """(code, fault type) read from the envelope the table names; asserts its shape."""
    assert answer.headers.get("intuit_tid", "").startswith("1-")
    if envelope == "xml":
        assert answer.content_type == "application/xml"
        ns = {"i": "http://schema.intuit.com/finance/v3"}
        root = ET.fromstring(answer.text)
        fault = root.find("i:Fault", ns)
        assert root.get("time") and fault is not None
        error = fault.find("i:Error", ns)
        assert error is not None and error.find("i:Message", ns) is not None
        return str(error.get("code")), str(fault.get("type"))
    assert answer.content_type == "application/json"
    body = answer.json()
    if envelope == "gateway":
        err = gateway_error(answer)
        assert err["message"].startswith("message=") and err["element"] is None
        assert f"statusCode={answer.status}" in err["message"]
        return err["code"], body["fault"]["type"]
    err = std_error(answer)
    assert set(err) == {"Message", "Detail", "code", "element"} and err["Message"]
    assert isinstance(err["code"], str) and isinstance(err["element"], str)
    return err["code"], body["Fault"]["type"]


async def test_every_code_of_the_reference_table_is_produced(sim: Sim) -> None:
    assert set(TRIGGERS) == set(TABLE_4_4)
    seen: dict[str, tuple[int, str, str]] = {}
    for code, (status, envelope, types) in TABLE_4_4.items():
        answer = await TRIGGERS[code](sim)
        got_code, got_type = _code_type(answer, envelope)
        seen[code] = (answer.status, got_code, got_type)
        assert (answer.status, got_code) == (status, code), (code, answer.text[:400])
        assert got_type in types, (code, got_type)
    assert len(seen) == 30

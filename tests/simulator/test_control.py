"""Control surface: realms, deterministic seeding, user changes, clock, config, counters, reset."""

from __future__ import annotations

from typing import Any

from simtools import Sim, base_config

from simulator.seed import seed_company
from simulator.state import State


def strip_times(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {oid: {k: v for k, v in obj.items() if k != "MetaData"} for oid, obj in objs.items()}


def test_seeding_is_deterministic() -> None:
    a, b = State(base_config()), State(base_config())
    for st in (a, b):
        st.clock.set(1_750_000_000)
        realm = st.create_realm("42")
        seed_company(st.ctx(realm), 5, customers=30, items=10, invoices=40, payments=15)
    for entity in ("Customer", "Item", "Invoice", "Payment"):
        assert strip_times(a.realms["42"].objects[entity]) == strip_times(
            b.realms["42"].objects[entity]
        )
    c = State(base_config())
    c.clock.set(1_750_000_000)
    seed_company(c.ctx(c.create_realm("42")), 6, customers=30)
    assert strip_times(c.realms["42"].objects["Customer"]) != strip_times(
        a.realms["42"].objects["Customer"]
    )


def test_seeded_company_is_consistent() -> None:
    st = State(base_config())
    realm = st.create_realm("43")
    made = seed_company(st.ctx(realm), 1, customers=20, items=8, invoices=50, payments=20)
    assert made == {"customers": 20, "items": 8, "invoices": 50, "payments": 20}
    for inv in realm.objects["Invoice"].values():
        lines = [ln for ln in inv["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
        assert lines and round(sum(ln["Amount"] for ln in lines), 2) == inv["TotalAmt"]
        applied = sum(realm.applied.get(inv["Id"], {}).values())
        assert round(inv["TotalAmt"] - applied, 2) == inv["Balance"]
    for cust in realm.objects["Customer"].values():
        open_total = sum(
            i["Balance"]
            for i in realm.objects["Invoice"].values()
            if i["CustomerRef"]["value"] == cust["Id"]
        )
        assert round(open_total, 2) == cust["Balance"]


async def test_create_and_seed_realm_over_http(sim: Sim) -> None:
    out = await sim.control(
        "POST",
        "/_sim/realms",
        {"realm_id": "123", "seed": 3, "customers": 4, "items": 2, "invoices": 3, "payments": 1},
    )
    assert out["realm_id"] == "123" and out["seeded"]["invoices"] == 3
    assert out["counts"]["Customer"] == 4
    realms = await sim.control("GET", "/_sim/realms")
    assert {"123", sim.realm} <= {r["realm_id"] for r in realms["realms"]}
    resp = await sim.client.post("/_sim/realms", json={"realm_id": "123"})
    assert resp.status == 409
    tokens = await sim.control("POST", "/_sim/realms/123/tokens", {})
    resp = await sim.client.get(
        "/v3/company/123/query",
        params={"query": "select count(*) from Invoice"},
        headers={"Authorization": "Bearer " + tokens["access_token"]},
    )
    assert (await resp.json())["QueryResponse"]["totalCount"] == 3


async def test_user_changes_create_delete_void_deactivate(sim: Sim) -> None:
    path = f"/_sim/realms/{sim.realm}/change"
    cust = (
        await sim.control(
            "POST",
            path,
            {"entity": "customer", "operation": "create", "fields": {"DisplayName": "By Hand"}},
        )
    )["Customer"]
    inv = (
        await sim.control(
            "POST",
            path,
            {
                "entity": "Invoice",
                "operation": "create",
                "fields": {
                    "CustomerRef": {"value": cust["Id"]},
                    "Line": [{"Amount": 4, "DetailType": "SalesItemLineDetail"}],
                },
            },
        )
    )["Invoice"]
    out = await sim.control(
        "POST", path, {"entity": "Invoice", "id": inv["Id"], "operation": "void"}
    )
    assert out["Invoice"]["TotalAmt"] == 0 and out["events"] == [["Invoice", inv["Id"], "Void"]]
    out = await sim.control(
        "POST", path, {"entity": "Invoice", "id": inv["Id"], "operation": "delete"}
    )
    assert out["Invoice"]["status"] == "Deleted"
    out = await sim.control(
        "POST", path, {"entity": "Customer", "id": cust["Id"], "operation": "deactivate"}
    )
    assert out["Customer"]["Active"] is False
    resp = await sim.client.post(
        path,
        json={"entity": "Customer", "operation": "create", "fields": {"DisplayName": "By Hand"}},
    )
    assert resp.status == 400 and (await resp.json())["Fault"]["Error"][0]["code"] == "6240"


async def test_clock_moves_metadata_and_tokens(sim: Sim) -> None:
    before = await sim.control("GET", "/_sim/clock")
    after = await sim.control("POST", "/_sim/clock", {"advance_seconds": 86400 * 3})
    assert after["epoch"] - before["epoch"] >= 86400 * 3
    assert (await sim.get("companyinfo/1"))[0] == 401  # token aged 3 days
    await sim.control("POST", "/_sim/clock", {"set": "2030-01-15T10:00:00-08:00"})
    pair = sim.state.oauth.issue_for(sim.realm, "sim-client-id")
    sim.token = pair["access_token"]
    cust = await sim.create("Customer", {"DisplayName": "Future"})
    assert cust["MetaData"]["CreateTime"].startswith("2030-01-15T10:00")


async def test_config_patch_masks_secrets(sim: Sim) -> None:
    cfg = await sim.control("PATCH", "/_sim/config", {"latency_ms": 0, "batch_max_items": 5})
    assert cfg["batch_max_items"] == 5 and sim.state.cfg.batch_max_items == 5
    assert cfg["verifier_token"] == "***" and cfg["apps"][0]["client_secret"] == "***"
    resp = await sim.client.patch("/_sim/config", json={"no_such_setting": 1})
    assert resp.status == 400


async def test_counters_by_endpoint(sim: Sim) -> None:
    await sim.get("companyinfo/1")
    await sim.get("companyinfo/1")
    await sim.query("select * from Term")
    await sim.post("customer", {"DisplayName": "Counted"})
    out = await sim.control("GET", f"/_sim/realms/{sim.realm}/counters")
    assert out["counters"] == {"read.companyinfo": 2, "query": 1, "write.customer": 1}


async def test_reset_restores_a_fresh_state(sim: Sim) -> None:
    await sim.create("Customer", {"DisplayName": "Wiped"})
    await sim.control("POST", "/_sim/reset")
    assert (await sim.get("companyinfo/1"))[0] == 401  # tokens are gone too
    realm = sim.state.realms[sim.realm]
    assert realm.objects["Customer"] == {} and realm.objects["Account"]
    resp = await sim.client.get("/_sim/health")
    assert resp.status == 200 and resp.headers["intuit_tid"]


async def test_control_and_qbo_paths_are_separate(sim: Sim) -> None:
    resp = await sim.client.get(f"/v3/company/{sim.realm}/_sim/health", headers=sim.auth)
    assert resp.status == 400  # not a control route: an unknown QBO entity
    resp = await sim.client.get("/_sim/realms/nope")
    assert resp.status == 404

"""requestid replay, throttling, injected faults, latency, token expiry/revocation on demand."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from simtools import Sim, fault_code


async def test_requestid_replays_create(sim: Sim) -> None:
    body = {"DisplayName": "Once Only"}
    s1, first = await sim.post("customer", body, requestid="rid-1")
    s2, second = await sim.post("customer", body, requestid="rid-1")
    assert s1 == s2 == 200 and first == second
    status, q = await sim.query("select count(*) from Customer where DisplayName = 'Once Only'")
    assert q["QueryResponse"]["totalCount"] == 1
    s3, third = await sim.post("customer", {"DisplayName": "Once Only"}, requestid="rid-2")
    assert s3 == 400 and fault_code(third) == "6240"


async def test_requestid_replays_faults_too_and_expires(sim: Sim) -> None:
    sim.state.cfg.requestid_ttl_s = 60
    s1, f1 = await sim.post("customer", {}, requestid="rid-f")
    s2, f2 = await sim.post("customer", {"DisplayName": "Would Work"}, requestid="rid-f")
    assert s1 == s2 == 400 and f1 == f2
    sim.state.clock.advance(61)
    s3, ok = await sim.post("customer", {"DisplayName": "Would Work"}, requestid="rid-f")
    assert s3 == 200


async def test_requestid_error600_mode(sim: Sim) -> None:
    sim.state.cfg.requestid_mode = "error600"
    await sim.post("customer", {"DisplayName": "Six Hundred"}, requestid="r600")
    status, body = await sim.post("customer", {"DisplayName": "Six Hundred"}, requestid="r600")
    assert status == 400 and fault_code(body) == "600"


async def test_requestid_ignore_mode_global_and_per_realm(sim: Sim) -> None:
    """requestid_mode "ignore": a retried create with the same requestid makes a duplicate."""
    cust = await sim.create("Customer", {"DisplayName": "Twice"})
    body = {
        "CustomerRef": {"value": cust["Id"]},
        "Line": [{"Amount": 5, "DetailType": "SalesItemLineDetail"}],
    }

    async def created_twice(rid: str) -> bool:
        s1, first = await sim.post("invoice", body, requestid=rid)
        s2, second = await sim.post("invoice", body, requestid=rid)
        assert s1 == s2 == 200
        return first["Invoice"]["Id"] != second["Invoice"]["Id"]

    sim.state.cfg.requestid_mode = "ignore"
    assert await created_twice("dup-1")
    # the realm's own mode wins over the global one, both ways
    path = f"/_sim/realms/{sim.realm}/status"
    await sim.control("PATCH", path, {"requestid_mode": "replay"})
    assert not await created_twice("dup-2")
    sim.state.cfg.requestid_mode = "replay"
    await sim.control("PATCH", path, {"requestid_mode": "ignore"})
    assert await created_twice("dup-3")
    await sim.control("PATCH", path, {"requestid_mode": None})  # back to the global "replay"
    assert not await created_twice("dup-4")
    status, q = await sim.query("select count(*) from Invoice")
    assert q["QueryResponse"]["totalCount"] == 2 + 1 + 2 + 1


async def test_drop_after_commit_then_requestid_retry(sim: Sim) -> None:
    await sim.control(
        "POST",
        "/_sim/faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/invoice"}]},
    )
    cust = await sim.create("Customer", {"DisplayName": "Dropped"})
    body = {
        "CustomerRef": {"value": cust["Id"]},
        "Line": [{"Amount": 5, "DetailType": "SalesItemLineDetail"}],
    }
    with pytest.raises(aiohttp.ClientError):
        await sim.post("invoice", body, requestid="inv-77")
    status, q = await sim.query("select count(*) from Invoice")
    assert q["QueryResponse"]["totalCount"] == 1  # the write was committed
    status, retry = await sim.post("invoice", body, requestid="inv-77")
    assert status == 200
    status, q = await sim.query("select count(*) from Invoice")
    assert q["QueryResponse"]["totalCount"] == 1  # ...and not repeated


@pytest.mark.parametrize("kind,status", [("500", 500), ("503", 503), ("504", 504)])
async def test_queued_server_faults(sim: Sim, kind: str, status: int) -> None:
    await sim.control("POST", "/_sim/faults", {"next": [{"kind": kind}]})
    resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
    assert resp.status == status and resp.headers["intuit_tid"]
    if kind == "500":
        body = await resp.json()
        assert fault_code(body) == "10000" and body["Fault"]["type"] == "SystemFault"
    resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
    assert resp.status == 200  # one-shot


async def test_fault_rates_are_seeded(sim: Sim) -> None:
    sim.state.cfg.rate_503 = 0.5
    seen = []
    for _ in range(40):
        resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
        seen.append(resp.status)
    assert 503 in seen and 200 in seen


async def test_timeout_fault_holds_the_request(sim: Sim) -> None:
    sim.state.cfg.timeout_s = 0.5
    await sim.control("POST", "/_sim/faults", {"next": [{"kind": "timeout"}]})
    with pytest.raises((asyncio.TimeoutError, aiohttp.ClientError)):
        await sim.client.get(
            sim.url("companyinfo/1"), headers=sim.auth, timeout=aiohttp.ClientTimeout(total=0.2)
        )


async def test_latency_setting(sim: Sim) -> None:
    sim.state.cfg.latency_ms = 150
    start = time.monotonic()
    resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
    assert resp.status == 200 and time.monotonic() - start >= 0.15


async def test_throttle_per_second_xml_and_json(sim: Sim) -> None:
    cfg = sim.state.cfg
    cfg.limits_enabled, cfg.per_second = True, 3
    statuses = []
    for _ in range(5):
        resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
        statuses.append(resp.status)
        if resp.status == 429:
            text = await resp.text()
            assert "<IntuitResponse" in text and 'code="3001"' in text
            assert resp.headers["intuit_tid"]
    assert statuses == [200, 200, 200, 429, 429]
    cfg.throttle_format = "json"
    resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
    assert resp.status == 429 and fault_code(await resp.json()) == "3001"


async def test_throttle_per_minute_and_batch(sim: Sim) -> None:
    cfg = sim.state.cfg
    cfg.limits_enabled, cfg.per_second, cfg.per_minute, cfg.batch_per_minute = True, 0, 4, 1
    batch = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Term"}]}
    assert (await sim.post("batch", batch))[0] == 200
    assert (await sim.post("batch", batch))[0] == 429  # batch bucket
    statuses = [(await sim.get("companyinfo/1"))[0] for _ in range(4)]
    # 4 admitted calls per minute (the refused batch call did not count)
    assert statuses == [200, 200, 200, 429]
    counters = await sim.control("GET", f"/_sim/realms/{sim.realm}/counters")
    assert counters["counters"]["throttled"] == 2


async def batch_status(sim: Sim, token: str) -> int:
    resp = await sim.client.post(
        sim.url("batch"),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        json={"BatchItemRequest": [{"bId": "1", "Query": "select * from Term"}]},
    )
    return resp.status


async def test_batch_limit_is_40_per_minute_per_realm_and_app(sim: Sim) -> None:
    """qbo-api.md §5: 40 batch calls/min per realm and app, 120/min per realm across apps."""
    sim.state.cfg.limits_enabled = True  # the defaults: 500/min, 10/s, 40 and 120 batch/min
    statuses = []
    for _ in range(41):  # 41 calls in 6 s of (simulated) time: under 10/s, one over 40/min
        statuses.append(await batch_status(sim, sim.token))
        sim.state.clock.advance(0.15)
    assert statuses == [200] * 40 + [429]
    assert (await sim.get(f"companyinfo/{sim.realm}"))[0] == 200  # other calls go on
    # another app on the same realm has its own 40 ...
    app = await sim.control("POST", "/_sim/apps", {"redirect_uris": ["http://127.0.0.1/cb"]})
    other = await sim.control(
        "POST", f"/_sim/realms/{sim.realm}/tokens", {"client_id": app["client_id"]}
    )
    sim.state.cfg.batch_per_minute = 45  # ... within the realm's limit across apps
    statuses = []
    for _ in range(6):
        statuses.append(await batch_status(sim, other["access_token"]))
        sim.state.clock.advance(0.15)
    assert statuses == [200] * 5 + [429]
    sim.state.clock.advance(60)  # a minute later the windows have slid on
    assert await batch_status(sim, sim.token) == 200
    counters = await sim.control("GET", f"/_sim/realms/{sim.realm}/counters")
    assert counters["counters"]["throttled"] == 2


async def test_throttle_concurrency(sim: Sim) -> None:
    cfg = sim.state.cfg
    cfg.limits_enabled, cfg.per_second, cfg.per_minute, cfg.concurrent = True, 0, 0, 2
    cfg.latency_ms = 200
    results = await asyncio.gather(
        *[sim.client.get(sim.url("companyinfo/1"), headers=sim.auth) for _ in range(4)]
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 200, 429, 429]


async def test_expire_and_revoke_tokens_on_demand(sim: Sim) -> None:
    out = await sim.control(
        "POST", "/_sim/tokens/expire", {"realm_id": sim.realm, "kind": "access"}
    )
    assert out["expired"] >= 1
    resp = await sim.client.get(sim.url("companyinfo/1"), headers=sim.auth)
    assert resp.status == 401
    pair = sim.state.oauth.issue_for(sim.realm, "sim-client-id")
    sim.token = pair["access_token"]
    assert (await sim.get("companyinfo/1"))[0] == 200
    out = await sim.control("POST", "/_sim/tokens/revoke", {"realm_id": sim.realm})
    assert out["revoked_grants"] >= 1
    assert (await sim.get("companyinfo/1"))[0] == 401

"""The control surface refuses bad input with 400 naming the field, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from simtools import REALM, Sim

from simulator.config import SimulatorConfig
from simulator.schema import SchemaError

STATUS = f"/_sim/realms/{REALM}/status"
CHANGE = f"/_sim/realms/{REALM}/change"

# (method, path, body, field named in the answer)
BAD_INPUT: list[tuple[str, str, Any, str]] = [
    ("PATCH", "/_sim/config", {"per_second": "fast"}, "per_second"),
    ("PATCH", "/_sim/config", {"per_second": -1}, "per_second"),
    ("PATCH", "/_sim/config", {"per_second": True}, "per_second"),
    ("PATCH", "/_sim/config", {"per_minute": 2.5}, "per_minute"),
    ("PATCH", "/_sim/config", {"latency_ms": float("inf")}, "latency_ms"),
    ("PATCH", "/_sim/config", {"rate_500": 1.5}, "rate_500"),
    ("PATCH", "/_sim/config", {"requestid_mode": "sometimes"}, "requestid_mode"),
    ("PATCH", "/_sim/config", {"webhook_urls": ["ftp://x"]}, "webhook_urls[0]"),
    ("PATCH", "/_sim/config", {"webhook_retry_s": [1, -1]}, "webhook_retry_s[1]"),
    ("PATCH", "/_sim/config", {"apps": []}, "apps"),
    ("PATCH", "/_sim/config", {"apps": [{"client_id": "x"}]}, "apps[0].client_secret"),
    ("PATCH", "/_sim/config", {"batch_max_items": 5, "nope": 1}, "nope"),  # all or nothing
    ("PATCH", "/_sim/config", [1, 2], "body"),
    ("POST", "/_sim/clock", {"advance_seconds": 1e308}, "advance_seconds"),
    ("POST", "/_sim/clock", {"advance_seconds": "60"}, "advance_seconds"),
    ("POST", "/_sim/clock", {"advance_seconds": float("nan")}, "advance_seconds"),
    ("POST", "/_sim/clock", {"set": "yesterday"}, "set"),
    ("POST", "/_sim/clock", {"set": "3000-01-01"}, "set"),
    (
        "POST",
        "/_sim/clock",
        {"set": "2099-12-01", "advance_seconds": 86400 * 60},
        "advance_seconds",
    ),
    ("POST", "/_sim/clock", {"reset": "yes"}, "reset"),
    ("POST", "/_sim/clock", {"speed": 2}, "speed"),
    ("POST", "/_sim/realms", {"customers": "lots"}, "customers"),
    ("POST", "/_sim/realms", {"customers": -5}, "customers"),
    ("POST", "/_sim/realms", {"customers": 10**9}, "customers"),
    ("POST", "/_sim/realms", {"realm_id": "abc"}, "realm_id"),
    ("POST", "/_sim/realms", {"max_lines": 0}, "max_lines"),
    ("POST", "/_sim/realms", {"realm_id": "77", "edition": "Gold"}, "edition"),
    ("POST", "/_sim/realms", {"seed": 1.5}, "seed"),
    ("POST", "/_sim/realms", {"colour": "red"}, "colour"),
    ("POST", f"/_sim/realms/{REALM}/seed", {"invoices": "many"}, "invoices"),
    ("POST", f"/_sim/realms/{REALM}/seed", {"customers": 2, "items": 1e6}, "items"),
    ("PATCH", STATUS, {"edition": "Gold"}, "edition"),
    ("PATCH", STATUS, {"admin_access": "no"}, "admin_access"),
    ("PATCH", STATUS, {"closing_date": "31/12/2024"}, "closing_date"),
    ("PATCH", STATUS, {"closing_date": 20241231}, "closing_date"),
    ("PATCH", STATUS, {"subscription": "ended", "environment": "moon"}, "environment"),
    ("PATCH", STATUS, {"nope": 1}, "nope"),
    ("POST", CHANGE, {"entity": "Spaceship"}, "entity"),
    ("POST", CHANGE, {"entity": "Customer", "operation": "explode", "id": "1"}, "operation"),
    ("POST", CHANGE, {"entity": "Customer", "operation": "create", "fields": "x"}, "fields"),
    ("POST", CHANGE, {"entity": "Customer", "operation": "update"}, "id"),
    ("POST", CHANGE, {"entity": "Customer", "operation": "deposit", "id": "1"}, "operation"),
    ("POST", CHANGE, {"operation": "create", "fields": {"DisplayName": "X"}}, "entity"),
    ("POST", "/_sim/faults", {"next": [{"kind": "418"}]}, "next[0].kind"),
    ("POST", "/_sim/faults", {"next": [{"kind": "500", "times": 0}]}, "next[0].times"),
    ("POST", "/_sim/faults", {"next": [{"kind": "500"}, {"kind": "nope"}]}, "next[1].kind"),
    ("POST", "/_sim/faults", {"next": "500"}, "next"),
    ("POST", "/_sim/tokens/expire", {"kind": "both"}, "kind"),
    ("POST", "/_sim/tokens/expire", {"realm_id": 5}, "realm_id"),
    ("POST", "/_sim/tokens/revoke", {"realm_id": ["x"]}, "realm_id"),
    ("POST", "/_sim/apps", {"redirect_uris": "http://x/cb"}, "redirect_uris"),
    ("POST", "/_sim/apps", {"redirect_uris": ["not a url"]}, "redirect_uris[0]"),
    ("POST", "/_sim/apps", {"client_id": ""}, "client_id"),
    ("POST", f"/_sim/realms/{REALM}/tokens", {"client_id": "ghost"}, "client_id"),
    ("POST", "/_sim/reset", {"keep": ["tokens"]}, "keep"),
    ("POST", "/_sim/webhooks/flush", {"now": True}, "now"),
]


def snapshot(sim: Sim) -> dict[str, Any]:
    """Everything a control call could change."""
    state = sim.state
    return {
        "config": state.cfg.to_public_dict(),
        "clock": state.clock.offset,
        "realms": {
            rid: (r.status.public(), {e: len(objs) for e, objs in r.objects.items()})
            for rid, r in state.realms.items()
        },
        "faults": json.dumps(state.next_faults),
        "tokens": (len(state.oauth.access), len(state.oauth.grants)),
        "revoked": sum(g.revoked for g in state.oauth.grants.values()),
    }


@pytest.mark.parametrize(
    "method,path,body,field",
    BAD_INPUT,
    ids=[f"{m} {p.split('/')[-1]} {f}" for m, p, _, f in BAD_INPUT],
)
async def test_bad_control_input_is_400_naming_the_field(
    sim: Sim, method: str, path: str, body: Any, field: str
) -> None:
    before = snapshot(sim)
    resp = await sim.client.request(
        method, path, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert answer["error"] == "invalid_request" and answer["field"] == field, answer
    assert answer["reason"]
    assert snapshot(sim) == before
    status, _ = await sim.get(f"companyinfo/{REALM}")
    assert status == 200  # and the API still works


async def test_body_that_is_not_json(sim: Sim) -> None:
    before = snapshot(sim)
    for path in ("/_sim/config", "/_sim/clock", "/_sim/realms", "/_sim/faults"):
        resp = await sim.client.post(path, data=b"{nope")
        if path == "/_sim/config":
            resp = await sim.client.patch(path, data=b"{nope")
        assert resp.status == 400 and (await resp.json())["field"] == "body", path
    assert snapshot(sim) == before


async def test_good_control_input_still_applies(sim: Sim) -> None:
    cfg = await sim.control("PATCH", "/_sim/config", {"per_second": 20, "rate_500": 0.0})
    assert cfg["per_second"] == 20
    out = await sim.control("POST", "/_sim/clock", {"set": "2031-05-01", "advance_seconds": 60})
    assert out["now"].startswith("2031-05-01T00:01:00")
    made = await sim.control("POST", "/_sim/realms", {"realm_id": "88", "edition": "Essentials"})
    assert made["realm_id"] == "88"
    assert sim.state.realms["88"].status.edition == "Essentials"
    out = await sim.control("POST", "/_sim/faults", {"next": [{"kind": "503", "times": 2}]})
    assert out["next"] == [{"kind": "503", "times": 2}]


def test_config_files_are_checked_too() -> None:
    cfg = SimulatorConfig()
    with pytest.raises(SchemaError) as err:
        SimulatorConfig.from_dict({"port": "8765"})
    assert err.value.field == "port"
    with pytest.raises(SchemaError, match="no_such_setting: unknown setting"):
        SimulatorConfig.from_dict({"latency_ms": 5, "no_such_setting": 1})
    with pytest.raises(SchemaError):
        cfg.update({"seed_customers": 3, "concurrent": "ten"})
    assert cfg.seed_customers == 0 and cfg.concurrent == 10

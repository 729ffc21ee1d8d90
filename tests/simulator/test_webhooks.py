"""Webhook emitter: formats, signature, batching window, retries, duplicates, control changes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from aiohttp import web
from simtools import Sim

VERIFIER = "sim-verifier-token"


class Receiver:
    """A webhook endpoint that records raw bodies and answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.calls: list[tuple[bytes, dict[str, str], int]] = []
        self.event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        self.calls.append((raw, dict(request.headers), status))
        self.event.set()
        return web.Response(status=status)

    async def wait_for(self, n: int, timeout: float = 5.0) -> None:
        async def loop() -> None:
            while len(self.calls) < n:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(loop(), timeout)


def valid_signature(raw: bytes, header: str) -> bool:
    mac = hmac.new(VERIFIER.encode(), raw, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(mac).decode(), header)


@pytest.fixture
async def receiver(aiohttp_server: Any, sim: Sim) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    sim.state.cfg.webhook_urls = [str(server.make_url("/hook"))]
    return rec


async def test_legacy_notification_signed_and_batched(sim: Sim, receiver: Receiver) -> None:
    cust = await sim.create("Customer", {"DisplayName": "Hooked"})
    await sim.post("customer", {"Id": cust["Id"], "SyncToken": "0", "sparse": True, "Notes": "n"})
    await receiver.wait_for(1)
    raw, headers, _ = receiver.calls[0]
    assert valid_signature(raw, headers["intuit-signature"])
    assert headers["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    note = body["eventNotifications"][0]
    assert note["realmId"] == sim.realm
    ents = note["dataChangeEvent"]["entities"]
    assert [(e["name"], e["id"], e["operation"]) for e in ents] == [
        ("Customer", cust["Id"], "Create"),
        ("Customer", cust["Id"], "Update"),
    ]
    assert all(e["lastUpdated"] for e in ents)
    await asyncio.sleep(0.1)
    assert len(receiver.calls) == 1  # both changes went in one POST


async def test_cloudevents_format(sim: Sim, receiver: Receiver) -> None:
    sim.state.cfg.webhook_format = "cloudevents"
    sim.state.cfg.cloudevents_content_type = "application/cloudevents+json"
    cust = await sim.create("Customer", {"DisplayName": "Cloudy"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [{"Amount": 3, "DetailType": "SalesItemLineDetail"}],
        },
    )
    await sim.post("invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="void")
    await receiver.wait_for(1)
    raw, headers, _ = receiver.calls[0]
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert valid_signature(raw, headers["intuit-signature"])
    events = json.loads(raw)
    assert isinstance(events, list)
    assert [e["type"] for e in events] == [
        "qbo.customer.created.v1",
        "qbo.invoice.created.v1",
        "qbo.invoice.voided.v1",
    ]
    first = events[0]
    assert first["specversion"] == "1.0" and first["intuitaccountid"] == sim.realm
    assert first["intuitentityid"] == cust["Id"] and first["data"] == {}
    assert len({e["id"] for e in events}) == 3


async def test_retry_on_non_200_resends_same_bytes(sim: Sim, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    await sim.create("Customer", {"DisplayName": "Retry Me"})
    await receiver.wait_for(3)
    bodies = [c[0] for c in receiver.calls]
    assert bodies[0] == bodies[1] == bodies[2]
    deliveries = await sim.control("GET", "/_sim/webhooks/deliveries")
    d = deliveries["deliveries"][0]
    assert d["state"] == "delivered" and [a["result"] for a in d["attempts"]] == [500, 503, 200]


async def test_gives_up_after_schedule(sim: Sim, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 500]
    await sim.create("Customer", {"DisplayName": "Never"})
    await receiver.wait_for(3)
    await asyncio.sleep(0.1)
    deliveries = await sim.control("GET", "/_sim/webhooks/deliveries")
    assert deliveries["deliveries"][0]["state"] == "dropped"
    assert len(receiver.calls) == 3  # first try + two retries from the schedule


async def test_duplicates_setting(sim: Sim, receiver: Receiver) -> None:
    sim.state.cfg.webhook_duplicate_rate = 1.0
    await sim.create("Customer", {"DisplayName": "Twice"})
    await receiver.wait_for(2)
    assert receiver.calls[0][0] == receiver.calls[1][0]


async def test_reorder_setting_changes_order(sim: Sim, receiver: Receiver) -> None:
    sim.state.cfg.webhook_reorder = True
    sim.state.cfg.webhook_window_s = 10  # flushed by hand below
    for n in range(12):
        await sim.create("Customer", {"DisplayName": f"Order {n}"})
    await sim.control("POST", "/_sim/webhooks/flush")
    await receiver.wait_for(1)
    ids = [
        e["id"]
        for e in json.loads(receiver.calls[0][0])["eventNotifications"][0]["dataChangeEvent"][
            "entities"
        ]
    ]
    assert sorted(ids, key=int) != ids and len(ids) == 12


async def test_control_change_emits_webhook(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", f"/_sim/realms/{sim.realm}/seed", {"customers": 2})
    out = await sim.control(
        "POST",
        f"/_sim/realms/{sim.realm}/change",
        {"entity": "Customer", "id": "1", "operation": "update", "fields": {"Notes": "by user"}},
    )
    assert out["Customer"]["Notes"] == "by user" and out["Customer"]["SyncToken"] == "1"
    await receiver.wait_for(1)
    ents = json.loads(receiver.calls[0][0])["eventNotifications"][0]["dataChangeEvent"]["entities"]
    assert ents == [
        {
            "name": "Customer",
            "id": "1",
            "operation": "Update",
            "lastUpdated": ents[0]["lastUpdated"],
        }
    ]


async def test_seeding_emits_no_webhooks(sim: Sim, receiver: Receiver) -> None:
    await sim.control("POST", f"/_sim/realms/{sim.realm}/seed", {"customers": 3, "items": 2})
    await asyncio.sleep(0.15)
    assert receiver.calls == []


async def test_emailed_and_delete_operations(sim: Sim, receiver: Receiver) -> None:
    # one delivery for the four events: the window is flushed by hand (on a loaded machine the
    # default window could close between the calls, splitting them over two deliveries)
    sim.state.cfg.webhook_window_s = 10
    cust = await sim.create("Customer", {"DisplayName": "Mail Me"})
    inv = await sim.create(
        "Invoice",
        {
            "CustomerRef": {"value": cust["Id"]},
            "Line": [{"Amount": 3, "DetailType": "SalesItemLineDetail"}],
        },
    )
    resp = await sim.client.post(
        sim.url(f"invoice/{inv['Id']}/send"), headers=sim.auth, params={"sendTo": "a@b.c"}
    )
    assert resp.status == 200
    await sim.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="delete")
    await sim.control("POST", "/_sim/webhooks/flush")
    await receiver.wait_for(1)
    ents = json.loads(receiver.calls[0][0])["eventNotifications"][0]["dataChangeEvent"]["entities"]
    assert [(e["name"], e["operation"]) for e in ents] == [
        ("Customer", "Create"),
        ("Invoice", "Create"),
        ("Invoice", "Emailed"),
        ("Invoice", "Delete"),
    ]

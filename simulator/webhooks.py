"""Webhook emitter: collects change events, and after a short window POSTs them, signed with the
verifier token, in the legacy ``eventNotifications`` or the CloudEvents format.

Each POST is retried on any answer but 200 (or a timeout) following ``webhook_retry_s``; a
redelivery sends the same bytes (so CloudEvent ids repeat). Optional duplicate deliveries and
reordering imitate what Intuit documents may happen. Timing uses real time (asyncio), so tests
shrink the window and the schedule through the settings.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from simulator.clock import fmt_utc

if TYPE_CHECKING:
    from simulator.state import State

OPERATION_WORD = {
    "Create": "created",
    "Update": "updated",
    "Delete": "deleted",
    "Merge": "merged",
    "Void": "voided",
    "Emailed": "emailed",
}


def sign(body: bytes, verifier_token: str) -> str:
    """The ``intuit-signature`` header: base64(HMAC-SHA256(verifier token, raw body))."""
    mac = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


@dataclass
class Event:
    realm_id: str
    entity: str
    entity_id: str
    operation: str
    ts: float


@dataclass
class Delivery:
    delivery_id: int
    url: str
    body: bytes
    content_type: str
    events: int
    attempts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "pending"  # pending | delivered | dropped

    def public(self) -> dict[str, Any]:
        return {
            "id": self.delivery_id,
            "url": self.url,
            "events": self.events,
            "state": self.state,
            "attempts": self.attempts,
            "content_type": self.content_type,
            "body": self.body.decode("utf-8"),
        }


class WebhookEmitter:
    def __init__(self, state: State) -> None:
        self.state = state
        self.pending: list[Event] = []
        self.deliveries: list[Delivery] = []
        self.rng = random.Random(state.cfg.seed)
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def clear(self) -> None:
        self.pending.clear()
        self.deliveries.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    async def close(self) -> None:
        self.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def add(self, realm_id: str, events: list[tuple[str, str, str]], ts: float) -> None:
        if not self.state.cfg.webhook_urls:
            return
        self.pending.extend(Event(realm_id, e, i, op, ts) for e, i, op in events)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (start-up seeding): sent on the next flush
        if self._timer is None:
            self._timer = loop.call_later(self.state.cfg.webhook_window_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> list[Delivery]:
        """Send everything pending now; returns the deliveries started."""
        cfg = self.state.cfg
        events, self.pending = self.pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        started: list[Delivery] = []
        if not events or not cfg.webhook_urls:
            return started
        if cfg.webhook_reorder:
            self.rng.shuffle(events)
        chunks = [
            events[i : i + cfg.webhook_max_events]
            for i in range(0, len(events), cfg.webhook_max_events)
        ]
        if cfg.webhook_reorder:
            chunks.reverse()
        for chunk in chunks:
            body, ctype = self._render(chunk)
            for url in cfg.webhook_urls:
                delivery = Delivery(len(self.deliveries) + 1, url, body, ctype, len(chunk))
                self.deliveries.append(delivery)
                started.append(delivery)
                task = asyncio.get_running_loop().create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return started

    def _render(self, events: list[Event]) -> tuple[bytes, str]:
        cfg = self.state.cfg
        if cfg.webhook_format == "cloudevents":
            out = []
            for ev in events:
                out.append(
                    {
                        "specversion": "1.0",
                        "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                        "source": "intuit.qbo-simulator",
                        "type": f"qbo.{ev.entity.lower()}.{OPERATION_WORD[ev.operation]}.v1",
                        "datacontenttype": "application/json",
                        "time": fmt_utc(ev.ts),
                        "intuitentityid": ev.entity_id,
                        "intuitaccountid": ev.realm_id,
                        "data": {},
                    }
                )
            return json.dumps(out).encode(), cfg.cloudevents_content_type
        by_realm: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            by_realm.setdefault(ev.realm_id, []).append(
                {
                    "name": ev.entity,
                    "id": ev.entity_id,
                    "operation": ev.operation,
                    "lastUpdated": fmt_utc(ev.ts),
                }
            )
        body = {
            "eventNotifications": [
                {"realmId": realm_id, "dataChangeEvent": {"entities": ents}}
                for realm_id, ents in by_realm.items()
            ]
        }
        return json.dumps(body).encode(), "application/json; charset=utf-8"

    async def _post(self, delivery: Delivery) -> int | str:
        cfg = self.state.cfg
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {
            "Content-Type": delivery.content_type,
            "intuit-signature": sign(delivery.body, cfg.verifier_token),
            "intuit-created-time": fmt_utc(self.state.clock.now()),
            "intuit-t-id": str(uuid.uuid4()),
            "intuit-notification-schema-version": "0.1",
            "User-Agent": "intuit_notification_server/0.1",
        }
        try:
            async with self._session.post(
                delivery.url,
                data=delivery.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=cfg.webhook_timeout_s),
            ) as resp:
                await resp.read()
                return resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            return type(exc).__name__

    async def _deliver(self, delivery: Delivery) -> None:
        cfg = self.state.cfg
        schedule = list(cfg.webhook_retry_s)
        while True:
            result = await self._post(delivery)
            delivery.attempts.append({"at": time.time(), "result": result})
            if result == 200:
                delivery.state = "delivered"
                if cfg.webhook_duplicate_rate and self.rng.random() < cfg.webhook_duplicate_rate:
                    dup = await self._post(delivery)
                    delivery.attempts.append({"at": time.time(), "result": dup, "duplicate": True})
                return
            if not schedule:
                delivery.state = "dropped"
                return
            await asyncio.sleep(schedule.pop(0))

"""Helpers for the simulator tests: an in-process server on a real 127.0.0.1 socket.

``sim`` is an aiohttp test client bound to a fresh simulator (limits off, a small default realm)
plus a bearer token for that realm; ``threaded_sim`` runs the simulator on a background thread
for synchronous clients (requests, python-quickbooks).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from simulator.config import SimulatorConfig
from simulator.server import make_app
from simulator.state import STATE, State

REALM = "9341453050298375"


def base_config(**overrides: Any) -> SimulatorConfig:
    cfg = SimulatorConfig(limits_enabled=False, webhook_window_s=0.05, webhook_retry_s=[0.05, 0.05])
    cfg.update(overrides)
    return cfg


@dataclass
class Sim:
    client: TestClient
    state: State
    realm: str
    token: str
    refresh: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def url(self, tail: str) -> str:
        return f"/v3/company/{self.realm}/{tail}"

    async def get(self, tail: str, **params: Any) -> tuple[int, Any]:
        resp = await self.client.get(
            self.url(tail), headers=self.auth, params={"minorversion": "75", **params}
        )
        return resp.status, await _body(resp)

    async def post(self, tail: str, body: Any, **params: Any) -> tuple[int, Any]:
        resp = await self.client.post(
            self.url(tail), headers=self.auth, json=body, params={"minorversion": "75", **params}
        )
        return resp.status, await _body(resp)

    async def query(self, text: str) -> tuple[int, Any]:
        return await self.get("query", query=text)

    async def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data = await self.post(entity.lower(), body)
        assert status == 200, data
        return data[entity]

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = await self.client.request(method, path, json=body)
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def _body(resp: Any) -> Any:
    text = await resp.text()
    if resp.content_type == "application/json":
        import json

        return json.loads(text)
    return text


def fault_code(body: dict[str, Any]) -> str:
    return body["Fault"]["Error"][0]["code"]


class ThreadedServer:
    """The simulator on its own event loop thread, reachable at ``base_url``."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.app = make_app(cfg)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> State:
        return self.app[STATE]

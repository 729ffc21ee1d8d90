"""Fixtures for the simulator tests (helpers live in simtools.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simtools import REALM, Sim, ThreadedServer, base_config

from simulator.config import SimulatorConfig
from simulator.server import make_app
from simulator.state import STATE


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return base_config()


@pytest.fixture
async def sim(aiohttp_client: Any, sim_config: SimulatorConfig) -> Sim:
    app = make_app(sim_config)
    client = await aiohttp_client(app)
    state = app[STATE]
    pair = state.oauth.issue_for(REALM, state.cfg.apps[0].client_id)
    return Sim(client, state, REALM, pair["access_token"], pair["refresh_token"])


@pytest.fixture
def threaded_sim() -> Iterator[ThreadedServer]:
    server = ThreadedServer(base_config())
    server.start()
    try:
        yield server
    finally:
        server.stop()

"""QBO simulator: an in-memory, single-process stand-in for QuickBooks Online.

It serves Intuit's OAuth 2.0 endpoints, the Accounting API v3 (CRUD, query, CDC, batch),
signed webhooks, throttling and fault injection, plus a separate control surface under
``/_sim`` for tests, the demo and benchmarks. Start it with ``python -m simulator`` or
``qbo-sync simulator``; build an app in-process with :func:`simulator.server.make_app`.
"""

from simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig"]

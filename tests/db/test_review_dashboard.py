"""What a reviewer tried against the status page: the refusals that held are tested in
test_dashboard.py; here what needed a fix."""

from __future__ import annotations

import time

import psycopg

from qbo_sync.dashboard import app as dashboard
from qbo_sync.pgserver import free_port


async def test_a_page_answers_503_soon_while_the_database_is_unreachable(aiohttp_client, db_dsn):
    """Not a bare 500 after the pool's 30 s: the live refresh would pile requests up."""
    params = psycopg.conninfo.conninfo_to_dict(db_dsn)
    params.update(port=str(free_port()), password="not-to-be-shown-anywhere")
    dead = psycopg.conninfo.make_conninfo(**params)
    client = await aiohttp_client(
        dashboard.make_app(dashboard.DashboardConfig(monitor_dsn=dead, action_dsn=dead))
    )
    started = time.monotonic()
    answer = await client.get("/part/overview")
    waited = time.monotonic() - started
    text = await answer.text()
    assert answer.status == 503, text
    assert "database is unavailable" in text and "not-to-be-shown" not in text
    assert answer.headers["Retry-After"] == "5"
    assert answer.headers["X-Frame-Options"] == "DENY"  # still through the security middleware
    assert waited < dashboard.POOL_WAIT_SECONDS + 10

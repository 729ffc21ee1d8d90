"""What a reviewer tried against the status page: the refusals that held are tested in
test_dashboard.py; here what needed a fix."""

from __future__ import annotations

import time

import psycopg
import pytest

from qbo_sync.dashboard import app as dashboard
from qbo_sync.pgserver import free_port
from tests.conftest import make_org
from tests.db.test_dashboard import confined_login, scalar, synced  # noqa: F401 - fixtures
from tests.db.test_pull import seeded  # noqa: F401 - fixture


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


def test_a_confined_login_acts_for_no_other_organization_whatever_sql_it_runs(
    conn,
    synced,  # noqa: F811
    confined_login,  # noqa: F811
):
    """The status page's login confined to one organization: changing the setting in SQL, or
    SET ROLE to the role it was granted, does not let it act for another organization."""
    other = make_org(conn, "Other Co")
    with psycopg.connect(confined_login, autocommit=True) as login:
        login.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(other),))
        with pytest.raises(psycopg.Error, match="may not|does not exist"):
            login.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (other,))
        login.execute("SET ROLE qbo_sync_dashboard")
        with pytest.raises(psycopg.Error, match="may not|does not exist"):
            login.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (other,))
        # its own organization still works when named
        login.execute("RESET ROLE")
        login.execute("RESET qbo_sync.organization_id")
        assert login.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (synced.org,))
    queued = "SELECT count(*) FROM qbo_sync_queue WHERE organization_id = %s AND status = 'pending'"
    assert scalar(conn, queued, (other,)) == 0
    assert scalar(conn, queued, (synced.org,)) == 1

"""The database stops, then starts again, while webhooks arrive. `qbo-sync listen` answers 503 while
it is down (never 200 for a webhook it did not store), the simulator retries those deliveries as
Intuit does, and in the end every event is stored and processed exactly once.

Runs its own cluster (qbo_sync.pgserver.Cluster), so the shared test cluster is not disturbed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql

from qbo_sync.install import install
from qbo_sync.pgserver import Cluster, free_port, give_to_server_user
from tests.db.qbo_jobs import LoggedServer
from tests.db.test_listener import LOGIN, VERIFIER
from tests.db.test_qbo_calls import sim_control
from tests.simulator.simtools import REALM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="qbo-sync-listener-restart-"))
    give_to_server_user(base, 0o755)
    own = Cluster(base_dir=base / "pg", port=free_port(), database="qbo_listener")
    try:  # a set-up that fails must not leave its server running
        own.start()
        install(own.dsn())
        with psycopg.connect(own.dsn(), autocommit=True) as conn:
            conn.execute("UPDATE cron.job SET active = false")  # this test processes by itself
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(LOGIN)))
            conn.execute(sql.SQL("GRANT qbo_sync_listener TO {}").format(sql.Identifier(LOGIN)))
        yield own
    finally:
        own.destroy()
        shutil.rmtree(base, ignore_errors=True)


def listener_dsn(cluster: Cluster) -> str:
    info = psycopg.conninfo.conninfo_to_dict(cluster.dsn())
    info.update(user=LOGIN, connect_timeout="2")
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def listening(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    env.update(QBO_SYNC_LISTENER_DSN=listener_dsn(cluster), QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER)
    process = subprocess.Popen(
        [sys.executable, "-m", "qbo_sync.cli", "listen", "--port", str(port), "--pool-size", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(
            "the listener did not start: " + (process.stderr.read() if process.stderr else "")
        )
    yield url
    process.terminate()
    process.wait(timeout=30)


def deliveries(sim: LoggedServer) -> list[dict]:
    return sim_control(sim, "GET", "webhooks/deliveries")["deliveries"]


def test_webhooks_across_a_database_restart_are_stored_and_processed_once(cluster, listening):
    sim = LoggedServer(
        webhook_urls=[listening + "/webhooks/qbo"],
        verifier_token=VERIFIER,
        webhook_window_s=0.05,
        webhook_max_events=1,  # one event per POST: each delivery's fate is its event's
        webhook_retry_s=[0.5] * 50,
        webhook_timeout_s=5,
    )
    sim.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            org = conn.execute(
                "INSERT INTO organizations (name) VALUES ('Restarted') RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO qbo_connection (organization_id, realm_id) VALUES (%s, %s)",
                (org, REALM),
            )

        def make(n: int) -> list[str]:
            made = []
            for i in range(n):
                answer = sim_control(
                    sim,
                    "POST",
                    f"realms/{REALM}/change",
                    {
                        "entity": "Customer",
                        "operation": "create",
                        "fields": {"DisplayName": f"Customer {time.monotonic_ns()} {i}"},
                    },
                )
                made.append(str(answer["Customer"]["Id"]))
                time.sleep(0.05)
            return made

        before = make(5)
        time.sleep(1)
        cluster.stop()
        during = make(5)
        # the listener answers these 503 (after its pool's wait); the simulator keeps retrying
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            down = [d for d in deliveries(sim) if any(a["result"] == 503 for a in d["attempts"])]
            if len(down) == 5:
                break
            time.sleep(0.2)
        assert len(down) == 5, [d["attempts"] for d in deliveries(sim)]
        cluster.start()
        after = make(5)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [d["state"] for d in deliveries(sim)]
            if len(states) == 15 and all(s == "delivered" for s in states):
                break
            time.sleep(0.2)
        all_deliveries = deliveries(sim)
        assert [d["state"] for d in all_deliveries] == ["delivered"] * 15, all_deliveries
        # never a 200 for a webhook that was not stored: 200, or 503 / no answer in time (the
        # simulator, like Intuit, sends those again)
        results = {a["result"] for d in all_deliveries for a in d["attempts"]}
        assert 200 in results and 503 in results
        assert results <= {200, 503, "TimeoutError", "ServerDisconnectedError"}, results

        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            stored = conn.execute(
                "SELECT body FROM qbo_webhook_log WHERE signature_valid"
            ).fetchall()
            stored_ids = [
                e["id"]
                for (body,) in stored
                for n in json.loads(body)["eventNotifications"]
                for e in n["dataChangeEvent"]["entities"]
            ]
            # each delivered body was stored (a retry after a lost answer may store it twice)
            assert set(stored_ids) == set(before + during + after)
            conn.execute("SELECT qbo_sync.process_webhooks(1000)")
            assert (
                conn.execute(
                    "SELECT count(*) FROM qbo_webhook_log WHERE status NOT IN ('processed', 'rejected')"
                ).fetchone()[0]
                == 0
            )
            processed = conn.execute(
                "SELECT entity_id, count(*) FROM qbo_webhook_processed GROUP BY entity_id"
            ).fetchall()
            assert dict(processed) == {i: 1 for i in before + during + after}
            # one pull job for the organization's customers, with exactly the changed ids
            jobs = conn.execute(
                "SELECT sync_endpoint, direction, entity_ids FROM qbo_sync_queue"
            ).fetchall()
            queued_ids = sorted(i for (_, _, ids) in jobs for i in ids or [])
            assert {(e, d) for e, d, _ in jobs} == {("customers", "pull")}
            assert queued_ids == sorted(set(before + during + after))
    finally:
        sim.stop()

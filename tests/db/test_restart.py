"""A database that crashes and restarts loses nothing committed, and half-done work comes back.

Runs its own cluster through qbo_sync.pgserver.Cluster (the code behind `qbo-sync db`), so the
shared test cluster is not disturbed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest

from qbo_sync.install import install
from qbo_sync.pgserver import Cluster, free_port, give_to_server_user


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="qbo-sync-restart-"))
    give_to_server_user(base, 0o755)
    own = Cluster(base_dir=base / "pg", port=free_port(), database="qbo_restart")
    own.start()
    install(own.dsn())
    yield own
    own.destroy()


def test_cluster_reports_its_state_and_dsn(cluster):
    assert cluster.running()
    assert cluster.dsn().endswith(f":{cluster.port}/qbo_restart")
    with psycopg.connect(cluster.dsn()) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        secrets_file = conn.execute("SHOW qbo_sync.secrets_file").fetchone()[0]
        assert preload == "pg_cron" and secrets_file == str(cluster.secrets_file)
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 10
    assert not (cluster.secrets_file.stat().st_mode & 0o077)  # readable by its owner only


def test_crash_keeps_committed_work_and_drops_uncommitted(cluster):
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE qbo_sync.settings SET value = '600' WHERE key = 'queue.lease_seconds'")
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('Crashy') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
            " VALUES (%s, 'realm-crash', now() + interval '1 hour')",
            (org,),
        )
        kept = conn.execute(
            "SELECT trigger_qbo_sync(%s, 'items', 'pull', 'low')", (org,)
        ).fetchone()[0]
        in_flight = conn.execute(
            "SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,)
        ).fetchone()[0]
        # stop the cron worker from taking the jobs while we stage the crash
        conn.execute("UPDATE cron.job SET active = false")

    worker = psycopg.connect(cluster.dsn(), autocommit=True)
    (claimed,) = worker.execute("SELECT id FROM qbo_sync.claim(1)").fetchone()
    assert claimed == in_flight  # urgent before low
    uncommitted = psycopg.connect(cluster.dsn())
    lost = uncommitted.execute(
        "SELECT trigger_qbo_sync(%s, 'invoices', 'pull')", (org,)
    ).fetchone()[0]

    cluster._pg_ctl("stop", "-D", str(cluster.data_dir), "-m", "immediate", "-w")  # a crash
    with pytest.raises(psycopg.OperationalError):
        worker.execute("SELECT 1")
    cluster.start()
    worker.close()
    uncommitted.close()

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        rows = dict(conn.execute("SELECT id, status FROM qbo_sync_queue").fetchall())
        assert lost not in rows  # the uncommitted enqueue is gone, not half-written
        assert rows[kept] == "pending"
        # the job a worker held when the server died comes back after its lease
        assert rows[in_flight] == "processing"
        assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 0
        conn.execute("UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'")
        assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 1
        assert (
            conn.execute(
                "SELECT status FROM qbo_sync_queue WHERE id = %s", (in_flight,)
            ).fetchone()[0]
            == "pending"
        )
        conn.execute("UPDATE cron.job SET active = true")

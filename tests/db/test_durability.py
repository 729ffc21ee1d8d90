"""The worker's commits do not wait for the disk (synchronous_commit off: each one's loss in a
crash is redone), except the two that protect what QBO cannot undo: a rotated token pair and a
create's requestid. Those transactions wait for the disk whatever the session says."""

from __future__ import annotations

import psycopg

from tests.db.test_tokens import CLIENT, connected, simulator  # noqa: F401 - fixtures


def test_the_worker_runs_without_waiting_for_the_disk_and_gives_the_setting_back(conn):
    conn.execute("SET synchronous_commit = 'local'")
    conn.execute("CREATE TEMP TABLE seen AS SELECT current_setting('synchronous_commit') AS value")
    # what a job's own transaction sees, through a SQL handler
    conn.execute(
        """CREATE OR REPLACE FUNCTION qbo_sync.sync_items(job public.qbo_sync_queue)
           RETURNS jsonb LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO seen VALUES (current_setting('synchronous_commit'));
               RETURN '{}';
           END $$"""
    )
    try:
        org = conn.execute("INSERT INTO organizations (name) VALUES ('D') RETURNING id").fetchone()[
            0
        ]
        conn.execute(
            "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
            " VALUES (%s, 'd1', now() + interval '1 hour')",
            (org,),
        )
        conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,))
        conn.execute("CALL qbo_sync.worker(20, NULL, true)")
        assert [r[0] for r in conn.execute("SELECT value FROM seen")] == ["local", "off"]
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("local",)
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_items(public.qbo_sync_queue)")


def test_a_creates_requestid_is_stored_durably_even_in_the_workers_session(conn):
    org = conn.execute("INSERT INTO organizations (name) VALUES ('D') RETURNING id").fetchone()[0]
    row = conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'X')"
        " RETURNING id",
        (org,),
    ).fetchone()[0]
    conn.execute("SET synchronous_commit = off")
    with conn.transaction():
        conn.execute("SELECT * FROM qbo_sync.prepare_creates(%s, 'customers', %s)", (org, [row]))
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)


def test_a_rotated_token_pair_is_stored_durably_even_in_the_workers_session(
    conn: psycopg.Connection,
    connected,  # noqa: F811
):
    conn.execute("SET synchronous_commit = off")
    with conn.transaction():
        result = conn.execute(
            "SELECT qbo_sync.token_refresh(%s, true)", (connected.org,)
        ).fetchone()[0]
        assert result["refreshed"] is True, result
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)

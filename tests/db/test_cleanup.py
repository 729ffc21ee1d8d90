"""The daily cleanup functions honour their retention settings and never drop unprocessed work."""

from __future__ import annotations


def test_cleanup_respects_retention(conn, org):
    conn.execute(
        "INSERT INTO qbo_webhook_log (body, signature_valid, status, received_at) VALUES"
        " ('old processed', true, 'processed', now() - interval '31 days'),"
        " ('old unprocessed', true, 'received', now() - interval '31 days'),"
        " ('recent', true, 'processed', now() - interval '1 day')"
    )
    conn.execute(
        "INSERT INTO qbo_webhook_processed (organization_id, event_key, realm_id, entity, entity_id,"
        " operation, processed_at) VALUES"
        " (%(o)s, 'old', 'r', 'customers', '1', 'Update', now() - interval '31 days'),"
        " (%(o)s, 'new', 'r', 'customers', '2', 'Update', now())",
        {"o": org},
    )
    conn.execute(
        "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint, status, completed_at) VALUES"
        " (%(o)s, 'items', 'completed', now() - interval '8 days'),"
        " (%(o)s, 'items', 'completed', now() - interval '6 days'),"
        " (%(o)s, 'items', 'failed', now() - interval '8 days'),"
        " (%(o)s, 'items', 'failed', now() - interval '31 days'),"
        " (%(o)s, 'items', 'pending', NULL)",
        {"o": org},
    )
    conn.execute(
        "INSERT INTO qbo_sync_history (organization_id, sync_type, status, completed_at) VALUES"
        " (%(o)s, 'manual', 'completed', now() - interval '91 days'),"
        " (%(o)s, 'manual', 'completed', now() - interval '89 days')",
        {"o": org},
    )
    assert conn.execute("SELECT qbo_sync.cleanup_webhook_logs()").fetchone()[0] == 1
    assert conn.execute("SELECT qbo_sync.cleanup_webhook_processed()").fetchone()[0] == 1
    assert conn.execute("SELECT qbo_sync.cleanup_sync_jobs()").fetchone()[0] == 2
    assert conn.execute("SELECT qbo_sync.cleanup_sync_history()").fetchone()[0] == 1
    bodies = {r[0] for r in conn.execute("SELECT body FROM qbo_webhook_log").fetchall()}
    assert bodies == {"old unprocessed", "recent"}
    left = conn.execute(
        "SELECT status, count(*) FROM qbo_sync_queue GROUP BY status ORDER BY status"
    ).fetchall()
    assert left == [("completed", 1), ("failed", 1), ("pending", 1)]


def test_retention_is_a_setting(conn, org):
    conn.execute(
        "INSERT INTO qbo_sync_history (organization_id, sync_type, status, completed_at)"
        " VALUES (%s, 'manual', 'completed', now() - interval '3 days')",
        (org,),
    )
    assert conn.execute("SELECT qbo_sync.cleanup_sync_history()").fetchone()[0] == 0
    conn.execute(
        "UPDATE qbo_sync.settings SET value = '2' WHERE key = 'retention.sync_history_days'"
    )
    try:
        assert conn.execute("SELECT qbo_sync.cleanup_sync_history()").fetchone()[0] == 1
    finally:
        conn.execute(
            "UPDATE qbo_sync.settings SET value = '90' WHERE key = 'retention.sync_history_days'"
        )

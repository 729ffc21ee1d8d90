"""Logged webhooks become queue work: both formats, redeliveries skipped, bad rows kept with a reason."""

from __future__ import annotations

import json

from tests.conftest import make_org


def realm_of(conn, org):
    return conn.execute(
        "SELECT realm_id FROM qbo_connection WHERE organization_id = %s", (org,)
    ).fetchone()[0]


def log_webhook(conn, body: str, valid: bool = True) -> int:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    return conn.execute(
        "INSERT INTO qbo_webhook_log (body, payload, signature, signature_valid, status)"
        " VALUES (%s, %s, 'sig', %s, %s) RETURNING id",
        (
            body,
            json.dumps(payload) if payload is not None else None,
            valid,
            "received" if valid else "rejected",
        ),
    ).fetchone()[0]


def legacy(realm, *entities):
    return json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": realm,
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": name,
                                "id": entity_id,
                                "operation": op,
                                "lastUpdated": "2025-11-09T12:00:00-0700",
                                **extra,
                            }
                            for name, entity_id, op, extra in entities
                        ]
                    },
                }
            ]
        }
    )


def cloudevents(*events):
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "intuit.test",
                "type": event_type,
                "datacontenttype": "application/json",
                "time": "2025-09-10T21:31:25.179851517Z",
                "intuitentityid": entity_id,
                "intuitaccountid": realm,
                "data": data,
            }
            for event_id, realm, event_type, entity_id, data in events
        ]
    )


def queue(conn):
    return conn.execute(
        "SELECT organization_id, sync_endpoint, direction, priority::text, entity_ids, source"
        " FROM qbo_sync_queue ORDER BY sync_endpoint"
    ).fetchall()


def test_legacy_events_become_one_pull_per_entity(conn, org):
    realm = realm_of(conn, org)
    log_id = log_webhook(
        conn,
        legacy(
            realm,
            ("Customer", "1", "Create", {}),
            ("Customer", "27", "Merge", {"deletedId": "31"}),
            ("Invoice", "130", "Void", {}),
            ("Vendor", "5", "Update", {}),
        ),
    )
    assert conn.execute("SELECT qbo_sync.process_webhooks()").fetchone()[0] == 1
    assert queue(conn) == [
        (org, "customers", "pull", "high", ["1", "27", "31"], "webhook"),
        (org, "invoices", "pull", "high", ["130"], "webhook"),
    ]
    status, fmt, count, error = conn.execute(
        "SELECT status, payload_format, event_count, error FROM qbo_webhook_log WHERE id = %s",
        (log_id,),
    ).fetchone()
    assert (status, fmt, count, error) == ("processed", "legacy", 4, None)
    assert conn.execute("SELECT count(*) FROM qbo_webhook_processed").fetchone()[0] == 3


def test_cloudevents_across_two_companies(conn, org):
    other = make_org(conn, "Other")
    body = cloudevents(
        ("ev-1", realm_of(conn, org), "qbo.invoice.created.v1", "1234", {}),
        ("ev-2", realm_of(conn, other), "qbo.customer.merged.v1", "123", {"deletedid": "27"}),
        ("ev-3", realm_of(conn, org), "qbo.payment.voided.v1", "88", {}),
    )
    log_webhook(conn, body)
    conn.execute("SELECT qbo_sync.process_webhooks()")
    assert queue(conn) == [
        (other, "customers", "pull", "high", ["123", "27"], "webhook"),
        (org, "invoices", "pull", "high", ["1234"], "webhook"),
        (org, "payments", "pull", "high", ["88"], "webhook"),
    ]
    ops = conn.execute("SELECT operation FROM qbo_webhook_processed ORDER BY entity").fetchall()
    assert [o[0] for o in ops] == ["Merge", "Create", "Void"]


def test_redelivered_events_are_not_queued_twice(conn, org):
    realm = realm_of(conn, org)
    body = cloudevents(("ev-9", realm, "qbo.item.updated.v1", "7", {}))
    log_webhook(conn, body)
    conn.execute("SELECT qbo_sync.process_webhooks()")
    # the job ran meanwhile
    conn.execute("UPDATE qbo_sync_queue SET status = 'completed'")
    log_webhook(conn, body)  # Intuit retries the same event
    log_webhook(conn, legacy(realm, ("Item", "8", "Update", {})))
    log_webhook(conn, legacy(realm, ("Item", "8", "Update", {})))
    conn.execute("SELECT qbo_sync.process_webhooks()")
    pending = conn.execute(
        "SELECT entity_ids FROM qbo_sync_queue WHERE status = 'pending'"
    ).fetchall()
    assert pending == [(["8"],)]
    assert conn.execute("SELECT count(*) FROM qbo_webhook_processed").fetchone()[0] == 2


def test_rejected_and_malformed_webhooks_are_kept_and_never_queued(conn, org):
    realm = realm_of(conn, org)
    rejected = log_webhook(conn, legacy(realm, ("Customer", "1", "Create", {})), valid=False)
    garbage = log_webhook(conn, "{not json")
    odd = log_webhook(conn, json.dumps({"hello": "world"}))
    stranger = log_webhook(conn, legacy("999999", ("Customer", "1", "Create", {})))
    conn.execute("SELECT qbo_sync.process_webhooks()")
    assert queue(conn) == []
    rows = dict(
        (r[0], r[1:])
        for r in conn.execute("SELECT id, status, error FROM qbo_webhook_log").fetchall()
    )
    assert rows[rejected] == ("rejected", None)
    assert rows[garbage] == ("error", "body is not JSON")
    assert rows[odd] == ("error", "payload is neither legacy nor CloudEvents")
    assert rows[stranger] == ("processed", "no connection for realm 999999")


def test_worker_turns_webhooks_into_work_on_its_loop(conn, org):
    log_webhook(conn, legacy(realm_of(conn, org), ("Payment", "4", "Create", {})))
    conn.execute("CALL qbo_sync_worker(2, NULL, true)")
    assert conn.execute("SELECT status FROM qbo_webhook_log").fetchone()[0] == "processed"
    # queued and then run by the same worker: the pull handler ran, and failed at once since
    # this organization's connection has no tokens
    job = conn.execute(
        "SELECT sync_endpoint, source, attempts, last_error FROM qbo_sync_queue"
    ).fetchone()
    assert job[:3] == ("payments", "webhook", 1)
    assert "the connection has no access token (SQLSTATE QS002)" in job[3]


def test_processing_itself_skips_unsigned_rows_without_the_constraint(conn, org):
    """The table's constraint keeps unsigned rows 'rejected'; processing asks for signed rows as
    well, so an unsigned row is never turned into work even where the constraint is missing."""
    conn.execute("ALTER TABLE qbo_webhook_log DROP CONSTRAINT qbo_webhook_log_unsigned_is_rejected")
    try:
        unsigned = conn.execute(
            "INSERT INTO qbo_webhook_log (body, payload, signature_valid, status)"
            " VALUES ('x', %s, false, 'received') RETURNING id",
            (legacy(realm_of(conn, org), ("Customer", "1", "Create", {})),),
        ).fetchone()[0]
        assert conn.execute("SELECT qbo_sync.process_webhooks()").fetchone()[0] == 0
        assert (
            conn.execute(
                "SELECT status FROM qbo_webhook_log WHERE id = %s", (unsigned,)
            ).fetchone()[0]
            == "received"
        )
        assert queue(conn) == []
        assert conn.execute("SELECT count(*) FROM qbo_webhook_processed").fetchone()[0] == 0
    finally:
        conn.execute("DELETE FROM qbo_webhook_log WHERE NOT signature_valid")
        conn.execute(
            "ALTER TABLE qbo_webhook_log ADD CONSTRAINT qbo_webhook_log_unsigned_is_rejected"
            " CHECK (signature_valid OR status = 'rejected')"
        )

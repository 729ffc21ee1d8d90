"""Adversarial review of the webhook listener: what a sender without the verifier token can make
it do (fill the disk with rejected rows, hold connections open with a body that never ends,
degrade the group commit of real webhooks)."""

from __future__ import annotations

import asyncio
import json
import time

from listener.app import ListenerConfig
from qbo_sync.pgserver import free_port
from tests.db.test_listener import (  # noqa: F401  (fixtures)
    VERIFIER,
    http,
    legacy_payload,
    listener_dsn,
    log_rows,
    post,
    sign,
    start,
)


async def test_unsigned_posts_are_stored_at_a_bounded_rate(conn, listener_dsn, http):  # noqa: F811
    """An unsigned POST costs a row of qbo_webhook_log (kept 30 days): a flood of them must not
    become a flood of rows. Past the configured rate they are answered 401 all the same and not
    stored; a signed webhook is stored whatever the flood."""
    config = ListenerConfig(
        dsn=listener_dsn, verifier_token=VERIFIER, port=free_port(), rejected_per_minute=5
    )
    runner, running = await start(config)
    try:
        junk = b"x" * 4000
        answers = await asyncio.gather(
            *(post(http, running.url + "/webhooks/qbo", junk, None) for _ in range(40))
        )
        assert [status for status, _ in answers] == [401] * 40
        body = json.dumps(legacy_payload()).encode()
        status, _ = await post(http, running.url + "/webhooks/qbo", body, sign(body))
        assert status == 200
    finally:
        await runner.cleanup()
    rows = log_rows(conn)
    assert len([r for r in rows if r["status"] == "rejected"]) == 5
    assert [r["status"] for r in rows if r["signature_valid"]] == ["received"]


async def test_a_body_that_never_ends_is_given_up_on(conn, listener_dsn):  # noqa: F811
    """Slow-loris: headers announcing a body, a few bytes, then nothing. The listener answers 408
    and closes within its body timeout instead of holding the connection (and a slot) forever."""
    config = ListenerConfig(
        dsn=listener_dsn, verifier_token=VERIFIER, port=free_port(), body_timeout=1.0
    )
    runner, running = await start(config)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", config.port)
        writer.write(
            b"POST /webhooks/qbo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'intuit-signature: abc\r\nContent-Length: 1000\r\n\r\n{"eventNo'
        )
        await writer.drain()
        started = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.readline(), timeout=10)
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert time.monotonic() - started < 8
    finally:
        await runner.cleanup()
    assert log_rows(conn) == []


async def test_a_nul_in_a_rejected_body_is_stored_as_rejected_for_its_own_reason(
    conn,
    listener_dsn,  # noqa: F811
    http,  # noqa: F811
):
    """A NUL in an unsigned (or signed but malformed) body made its batch's INSERT fail, so the
    whole batch, real webhooks included, fell back to one commit per row, and the row lost its
    reason ('stored without its payload'). The body is made storable before it is queued."""
    config = ListenerConfig(dsn=listener_dsn, verifier_token=VERIFIER, port=free_port())
    runner, running = await start(config)
    try:
        status, _ = await post(http, running.url + "/webhooks/qbo", b"{\x00}", None)
        assert status == 401
        bad = b'{"a": "\x00"}'
        status, _ = await post(http, running.url + "/webhooks/qbo", bad, sign(bad))
        assert status == 400
    finally:
        await runner.cleanup()
    rows = log_rows(conn)
    assert [(r["status"], r["error"]) for r in rows] == [
        ("rejected", "no intuit-signature header"),
        ("rejected", "malformed JSON"),
    ]
    assert rows[0]["body"] == "{\ufffd}"

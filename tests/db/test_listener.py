"""The webhook listener (listener/, `qbo-sync listen`) over real sockets on 127.0.0.1, storing into
the real test database as a login role granted only qbo_sync_listener.

Signatures are computed here with hmac directly, not with the listener's own code. Every rejection
path is tried, and each rejected POST is checked never to become work."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psycopg
import pytest
import requests
from aiohttp import web
from psycopg import sql

from listener.app import ListenerConfig, make_app
from qbo_sync.pgserver import free_port
from tests.db.test_connect import REDIRECT, connection, initiate, new_org
from tests.db.test_tokens import simulator  # noqa: F401  (fixture)
from tests.simulator.simtools import REALM

VERIFIER = "listener-test-verifier"
LOGIN = "qbo_test_listener_login"


def sign(body: bytes, token: str = VERIFIER) -> str:
    return base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()


def legacy_payload(realm: str = "4620816365", entity_id: str = "42") -> dict:
    return {
        "eventNotifications": [
            {
                "realmId": realm,
                "dataChangeEvent": {
                    "entities": [
                        {
                            "name": "Customer",
                            "id": entity_id,
                            "operation": "Update",
                            "lastUpdated": "2026-11-28T01:00:00.000Z",
                        }
                    ]
                },
            }
        ]
    }


def cloud_event(realm: str = "4620816365", entity_id: str = "43") -> dict:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": "qbo.invoice.updated.v1",
        "datacontenttype": "application/json",
        "time": "2026-11-28T01:00:00Z",
        "intuitentityid": entity_id,
        "intuitaccountid": realm,
        "data": {},
    }


@pytest.fixture(scope="module")
def listener_dsn(db_dsn: str) -> str:
    """A login role that is granted qbo_sync_listener and nothing else."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(LOGIN)))
        conn.execute(sql.SQL("GRANT qbo_sync_listener TO {}").format(sql.Identifier(LOGIN)))
    info = psycopg.conninfo.conninfo_to_dict(db_dsn)
    info["user"] = LOGIN
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**info)


class Running:
    def __init__(self, url: str, app: web.Application) -> None:
        self.url = url
        self.app = app


async def start(config: ListenerConfig) -> tuple[web.AppRunner, Running]:
    app = make_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port)
    await site.start()
    return runner, Running(f"http://127.0.0.1:{config.port}", app)


@pytest.fixture
async def listener(listener_dsn: str) -> AsyncIterator[Running]:
    runner, running = await start(
        ListenerConfig(dsn=listener_dsn, verifier_token=VERIFIER, port=free_port())
    )
    yield running
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def log_rows(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute(
        "SELECT body, payload, signature_valid, payload_format, status, error, content_type"
        " FROM qbo_webhook_log ORDER BY id"
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    signature: str | None,
    content_type: str = "application/json",
) -> tuple[int, dict]:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["intuit-signature"] = signature
    async with http.post(url, data=body, headers=headers) as answer:
        return answer.status, await answer.json(content_type=None)


async def test_a_signed_legacy_webhook_is_stored_once_committed(conn, listener, http):
    body = json.dumps(legacy_payload()).encode()
    status, answer = await post(http, listener.url + "/webhooks/qbo", body, sign(body))
    assert (status, answer["format"]) == (200, "legacy")
    [row] = log_rows(conn)  # committed before the 200: another session sees it at once
    assert row["body"] == body.decode()
    assert row["payload"] == legacy_payload()
    assert (row["signature_valid"], row["payload_format"], row["status"]) == (
        True,
        "legacy",
        "received",
    )


async def test_cloudevents_single_and_arrays_in_both_content_types(conn, listener, http):
    single = cloud_event(entity_id="7")
    many = [cloud_event(entity_id="8"), cloud_event(entity_id="9")]
    for payload, content_type in (
        (single, "application/cloudevents+json"),
        (many, "application/cloudevents+json; charset=utf-8"),
        (many, "application/json"),
    ):
        body = json.dumps(payload).encode()
        status, answer = await post(
            http, listener.url + "/webhooks/qbo", body, sign(body), content_type
        )
        assert (status, answer["format"]) == (200, "cloudevents")
    rows = log_rows(conn)
    assert [r["payload_format"] for r in rows] == ["cloudevents"] * 3
    assert rows[0]["payload"] == [single]  # one event is stored as an array of one
    assert rows[1]["payload"] == many and rows[1]["content_type"].startswith(
        "application/cloudevents+json"
    )


async def test_the_seed_guides_path_is_the_same_listener(conn, listener, http):
    body = json.dumps(legacy_payload()).encode()
    url = listener.url + "/functions/v1/qbo-webhook-listener"
    assert (await post(http, url, body, sign(body)))[0] == 200
    assert (await post(http, url, body, None))[0] == 401
    assert [r["status"] for r in log_rows(conn)] == ["received", "rejected"]


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(b"another body"),
        sign(b"{}", "another-verifier"),
        "not base64 at all!",
        base64.b64encode(b"short").decode(),
    ],
    ids=["missing", "empty", "other-body", "other-token", "garbage", "wrong-length"],
)
async def test_a_bad_signature_is_401_logged_rejected_and_never_processed(
    conn, listener, http, signature
):
    org = conn.execute("INSERT INTO organizations (name) VALUES ('Org') RETURNING id").fetchone()[0]
    conn.execute(
        "INSERT INTO qbo_connection (organization_id, realm_id) VALUES (%s, '4620816365')", (org,)
    )
    body = json.dumps(legacy_payload()).encode()
    status, answer = await post(http, listener.url + "/webhooks/qbo", body, signature)
    assert status == 401
    [row] = log_rows(conn)
    assert (row["signature_valid"], row["status"]) == (False, "rejected")
    assert row["payload"] is None
    conn.execute("SELECT qbo_sync.process_webhooks()")
    assert log_rows(conn)[0]["status"] == "rejected"
    assert conn.execute("SELECT count(*) FROM qbo_sync_queue").fetchone()[0] == 0


async def test_a_body_signed_then_changed_is_refused(conn, listener, http):
    body = json.dumps(legacy_payload(entity_id="1")).encode()
    tampered = body.replace(b'"1"', b'"2"')
    assert (await post(http, listener.url + "/webhooks/qbo", tampered, sign(body)))[0] == 401


async def test_malformed_json_is_400(conn, listener, http):
    for body in (b"{not json", b'"a string"', b"\xff\xfe"):
        status, _ = await post(http, listener.url + "/webhooks/qbo", body, sign(body))
        assert status == 400, body
    rows = log_rows(conn)
    assert [(r["status"], r["error"]) for r in rows] == [("rejected", "malformed JSON")] * 3


async def test_a_body_over_one_megabyte_is_413_before_it_is_read(conn, listener, http):
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    status, _ = await post(http, listener.url + "/webhooks/qbo", big, sign(big))
    assert status == 413

    async def chunks():  # no Content-Length: refused while reading
        for _ in range(20):
            yield b"a" * 65536

    async with http.post(
        listener.url + "/webhooks/qbo",
        data=chunks(),
        headers={"Content-Type": "application/json", "intuit-signature": sign(b"")},
    ) as answer:
        assert answer.status == 413
    assert log_rows(conn) == []


async def test_a_database_that_does_not_answer_gets_503_never_200(http):
    config = ListenerConfig(
        dsn=f"host=127.0.0.1 port={free_port()} dbname=nothing user=nobody connect_timeout=1",
        verifier_token=VERIFIER,
        port=free_port(),
        db_timeout=1.0,
    )
    runner, running = await start(config)
    try:
        body = json.dumps(legacy_payload()).encode()
        status, answer = await post(http, running.url + "/webhooks/qbo", body, sign(body))
        assert status == 503 and "again" in answer["message"]
        async with http.get(running.url + "/healthz") as health:
            assert health.status == 503
            assert (await health.json())["database"] == "unreachable"
    finally:
        await runner.cleanup()


async def test_healthz_says_the_database_answers(listener, http):
    async with http.get(listener.url + "/healthz") as health:
        assert health.status == 200
        assert await health.json() == {"status": "ok", "database": "ok"}


async def test_the_oauth_callback_completes_a_connect_flow(conn, listener, http, simulator):  # noqa: F811
    org = new_org(conn)
    url = initiate(conn, org, simulator.base_url)
    consented = requests.get(url, allow_redirects=False, timeout=10)
    location = urlsplit(consented.headers["Location"])
    assert REDIRECT.endswith(location.path)
    async with http.get(listener.url + location.path + "?" + location.query) as answer:
        page = await answer.text()
        assert answer.status == 200, page
    assert "QuickBooks is connected" in page and str(org) in page
    stored = connection(conn, org)
    assert stored is not None and stored["realm_id"] == REALM and stored["is_active"]
    # the same redirect again: the state was used up, and the page says what to do
    async with http.get(listener.url + location.path + "?" + location.query) as again:
        assert again.status == 400
        assert "connect" in await again.text()
    assert parse_qs(location.query)["realmId"] == [REALM]


async def test_the_oauth_callback_explains_refusals(listener, http):
    cases = {
        "?error=access_denied&state=x": "access_denied",
        "?code=c&state=s": "lacks code, state or realmId",
        "?code=c&state=unknown&realmId=1": "unknown OAuth state",
        "?error=<script>alert(1)</script>": "&lt;script&gt;",
    }
    for query, expected in cases.items():
        async with http.get(listener.url + "/oauth/callback" + query) as answer:
            page = await answer.text()
            assert answer.status == 400, (query, page)
            assert expected in page, (query, page)
            assert "<script>" not in page


def test_the_command_refuses_to_start_without_a_verifier_token(listener_dsn):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    done = subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", "listen", "--dsn", listener_dsn],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("so it does not start")
    assert "Traceback" not in done.stderr


@pytest.fixture
def listening_process(listener_dsn: str, tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`qbo-sync listen` as a user runs it, the token read from a secrets file."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"QBO_WEBHOOK_VERIFIER_TOKEN={VERIFIER}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    env["QBO_SYNC_LISTENER_DSN"] = listener_dsn
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbo_sync.cli",
            "listen",
            "--port",
            str(port),
            "--secrets-file",
            str(secrets),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the listener did not start: " + process.stderr.read())
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


async def test_sigterm_finishes_the_requests_in_flight(conn, connect, listening_process, http):
    """A webhook whose INSERT waits (the table is locked) when SIGTERM arrives is still stored
    and answered 200; the process then exits cleanly."""
    process, url = listening_process
    blocker = connect(autocommit=False)
    blocker.execute("LOCK TABLE qbo_webhook_log IN EXCLUSIVE MODE")
    body = json.dumps(legacy_payload(entity_id="77")).encode()
    in_flight = asyncio.ensure_future(post(http, url + "/webhooks/qbo", body, sign(body)))
    for _ in range(100):  # wait until the listener's INSERT is waiting for the lock
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qbo-sync listener'"
            " AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        if waiting:
            break
        await asyncio.sleep(0.05)
    assert waiting, "the webhook never reached the database"
    process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    blocker.rollback()
    status, _ = await in_flight
    assert status == 200
    assert process.wait(timeout=30) == 0
    assert [r["payload"] for r in log_rows(conn)] == [legacy_payload(entity_id="77")]


async def test_concurrent_webhooks_are_each_stored_before_their_200(conn, listener, http):
    """Rows that arrive together are committed together; every 200 means a stored row."""
    bodies = [json.dumps(legacy_payload(entity_id=str(i))).encode() for i in range(60)]
    answers = await asyncio.gather(
        *(post(http, listener.url + "/webhooks/qbo", body, sign(body)) for body in bodies)
    )
    assert [status for status, _ in answers] == [200] * 60
    stored = sorted(r["body"] for r in log_rows(conn))
    assert stored == sorted(body.decode() for body in bodies)


async def test_a_signed_payload_jsonb_cannot_hold_is_kept_not_lost(conn, listener, http):
    """\\u0000 is valid JSON but not storable as jsonb: the row is kept (raw body, marked
    as rejected with the reason: a person can read it, nothing processes it) and answered 200, and a good webhook sent with it is unaffected."""
    bad = b'{"eventNotifications": [], "note": "\\u0000"}'
    good = json.dumps(legacy_payload()).encode()
    (bad_status, _), (good_status, _) = await asyncio.gather(
        post(http, listener.url + "/webhooks/qbo", bad, sign(bad)),
        post(http, listener.url + "/webhooks/qbo", good, sign(good)),
    )
    assert (bad_status, good_status) == (200, 200)
    rows = {r["body"]: r for r in log_rows(conn)}
    assert rows[bad.decode()]["status"] == "rejected" and rows[bad.decode()]["payload"] is None
    assert "stored without its payload" in rows[bad.decode()]["error"]
    assert rows[good.decode()]["status"] == "received"

"""The webhook listener's aiohttp application.

Routes:
* `POST /webhooks/qbo` and `POST /functions/v1/qbo-webhook-listener` (the seed guide's path, so a
  URL configured at Intuit keeps working): verify `intuit-signature` over the raw body, store the
  POST with its verdict in one INSERT, answer 200 only after it committed. A missing or wrong
  signature is 401 (stored as rejected, never processed), malformed JSON 400, a body over the
  limit 413 (refused before it is read whole), a database that does not answer 503 (Intuit
  retries).
* `GET /oauth/callback`: completes a connect flow through `qbo_oauth_callback` and shows a short
  page saying what happened.
* `GET /healthz`: 200 when the database answers, 503 otherwise.

The listener connects as a role granted `qbo_sync_listener` (insert webhooks, complete OAuth
redirects, nothing else) and holds no secret but the verifier token and its database login.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from qbo_sync_db import secrets, webhooks

from listener.store import UNAVAILABLE, LogRow, LogWriter

log = logging.getLogger("qbo_sync.listener")

WEBHOOK_PATHS = ("/webhooks/qbo", "/functions/v1/qbo-webhook-listener")
MAX_BODY = 1024 * 1024
#: how much of a rejected body is kept (enough to see what it was; an unsigned POST is not ours)
REJECTED_BODY_KEPT = 4096

CALLBACK = "SELECT public.qbo_oauth_callback(%s, %s, %s)::text"


@dataclass(frozen=True)
class ListenerConfig:
    """What the listener needs: where to listen, its database login, and the verifier token."""

    dsn: str
    verifier_token: str
    host: str = "127.0.0.1"
    port: int = 8080
    pool_size: int = 8
    #: seconds to wait for a database connection before answering 503
    db_timeout: float = 2.0
    max_body: int = MAX_BODY
    #: seconds a request gets to send its whole body (a body that trickles in is answered 408)
    body_timeout: float = 10.0
    #: rejected POSTs (bad or no signature) stored a minute at most; the rest are answered 401
    #: and only counted in the log (anyone can send them, and each row is kept for 30 days)
    rejected_per_minute: int = 60

    def __repr__(self) -> str:  # never show the token or a password in a log or traceback
        return f"ListenerConfig(host={self.host!r}, port={self.port}, pool_size={self.pool_size})"


POOL_KEY = web.AppKey("pool", AsyncConnectionPool)
WRITER_KEY = web.AppKey("writer", LogWriter)
CONFIG_KEY = web.AppKey("config", ListenerConfig)


class RejectedBudget:
    """How many rejected POSTs may still be stored in the current minute (a fixed window)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.window = -1
        self.used = 0
        self.dropped = 0

    def take(self) -> bool:
        """True when one more rejected row may be stored now."""
        window = int(asyncio.get_running_loop().time() // 60)
        if window != self.window:
            if self.dropped:
                log.warning("%d rejected webhooks over the limit were not stored", self.dropped)
            self.window, self.used, self.dropped = window, 0, 0
        if self.used < self.per_minute:
            self.used += 1
            return True
        self.dropped += 1
        return False


BUDGET_KEY = web.AppKey("rejected_budget", RejectedBudget)


def make_app(config: ListenerConfig) -> web.Application:
    """The listener application; its pool opens on startup without waiting for the database."""
    app = web.Application(client_max_size=config.max_body)
    app[CONFIG_KEY] = config
    app[BUDGET_KEY] = RejectedBudget(config.rejected_per_minute)
    for path in WEBHOOK_PATHS:
        app.router.add_post(path, receive_webhook)
    app.router.add_get("/oauth/callback", oauth_callback)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_pool)
    return app


async def _pool(app: web.Application) -> Any:
    config = app[CONFIG_KEY]
    pool = AsyncConnectionPool(
        config.dsn,
        min_size=1,
        max_size=config.pool_size,
        kwargs={
            "autocommit": True,
            "application_name": "qbo-sync listener",
            # a statement stuck behind a lock answers 503 in time for Intuit to send it again
            "options": "-c statement_timeout=10s",
        },
        # a connection is checked when taken (once per batch of webhooks, see store.py): one
        # broken by a database restart is replaced at once, not found out by the INSERT
        check=AsyncConnectionPool.check_connection,
        timeout=config.db_timeout,
        open=False,
        name="qbo-sync-listener",
    )
    await pool.open(wait=False)
    # two writers: one batch commits while the next one gathers (more writers only make the
    # batches smaller and the commits more: measured in bench/bench_listener.py)
    writer = LogWriter(pool, writers=min(config.pool_size, 2))
    writer.start()
    app[POOL_KEY] = pool
    app[WRITER_KEY] = writer
    yield
    await writer.stop()
    await pool.close(timeout=5)


async def _execute(app: web.Application, query: str, params: tuple[Any, ...]) -> Any:
    """Run one statement (committed when it returns); one retry on a fresh connection, for a
    database that restarted since the pooled connection was made."""
    pool = app[POOL_KEY]
    for attempt in (1, 2):
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchone() if cursor.description else None
        except psycopg.OperationalError:
            if attempt == 2:
                raise
    return None


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"status": status, "message": message, **extra}, status=status)


async def receive_webhook(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    if request.content_length is not None and request.content_length > config.max_body:
        return _answer(413, f"body over {config.max_body} bytes")
    try:
        body = await asyncio.wait_for(request.read(), timeout=config.body_timeout)
    except web.HTTPRequestEntityTooLarge:
        return _answer(413, f"body over {config.max_body} bytes")
    except TimeoutError:
        # a body that trickles in (slow-loris) would hold the connection for as long as the
        # sender likes; the connection is closed, not kept alive
        answer = _answer(408, f"the body did not arrive within {config.body_timeout:g} s")
        answer.force_close()
        return answer
    header = request.headers.get(webhooks.SIGNATURE_HEADER)
    content_type = (request.headers.get("Content-Type") or "")[:200] or None
    remote = request.remote
    text = body.decode("utf-8", errors="replace")
    # what is stored as text cannot hold NUL: a rejected body with one would fail its batch's
    # INSERT and send every row of that batch, real webhooks too, to one commit each
    kept = text[:REJECTED_BODY_KEPT].replace("\x00", "\ufffd")
    writer = request.app[WRITER_KEY]

    if not webhooks.verify(body, header, config.verifier_token):
        reason = "no intuit-signature header" if not header else "signature did not verify"
        if not request.app[BUDGET_KEY].take():
            return _answer(401, reason)
        row = LogRow(
            kept,
            None,
            (header or "")[:200] or None,
            False,
            content_type,
            remote,
            None,
            "rejected",
            reason,
        )
        try:
            await writer.store(row)
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("rejected webhook from %s not logged: %s", remote, type(exc).__name__)
        log.info("webhook from %s rejected: %s", remote, reason)
        return _answer(401, reason)

    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if payload is None or not isinstance(payload, (dict, list)):
        row = LogRow(
            kept,
            None,
            header[:200],
            True,
            content_type,
            remote,
            None,
            "rejected",
            "malformed JSON",
        )
        try:
            await writer.store(row)
        except (psycopg.Error, PoolTimeout):
            return _answer(503, "the database is not available; send it again later")
        return _answer(400, "malformed JSON")

    kind = webhooks.payload_format(payload)
    # PostgreSQL parses the text into jsonb; one CloudEvent is stored as an array of one
    stored = f"[{text}]" if isinstance(payload, dict) and kind == "cloudevents" else text
    row = LogRow(text, stored, header[:200], True, content_type, remote, kind, "received", None)
    try:
        await writer.store(row)
    except UNAVAILABLE as exc:
        log.warning("webhook from %s not stored (%s): answered 503", remote, type(exc).__name__)
        return _answer(503, "the database is not available; send it again later")
    except psycopg.Error as exc:
        log.error("webhook from %s not stored (%s): answered 503", remote, type(exc).__name__)
        return _answer(503, "the webhook could not be stored; send it again later")
    return _answer(200, "stored", format=kind)


async def oauth_callback(request: web.Request) -> web.Response:
    query = request.query
    if query.get("error"):
        return _page(
            400,
            "QuickBooks was not connected",
            f"Intuit answered: {query.get('error')}"
            + (f" ({query['error_description']})" if query.get("error_description") else "")
            + ". Nothing was changed. Start the connection again (qbo-sync connect --org …) "
            "and approve access to the company.",
        )
    code, state, realm = query.get("code"), query.get("state"), query.get("realmId")
    if not (code and state and realm):
        return _page(
            400,
            "This is not a QuickBooks redirect",
            "The address lacks code, state or realmId. Open the link that qbo-sync connect "
            "printed, and let QuickBooks send you back here.",
        )
    try:
        row = await _execute(request.app, CALLBACK, (code, state, realm))
    except (PoolTimeout, psycopg.OperationalError):
        return _page(
            503,
            "The database is not available",
            "QuickBooks sent you back, but the connection could not be stored. Start the "
            "connection again in a few minutes.",
        )
    except psycopg.Error as exc:
        message = exc.diag.message_primary or type(exc).__name__
        hint = exc.diag.message_hint or "Start the connection again (qbo-sync connect --org …)."
        return _page(400, "QuickBooks was not connected", f"{message}. {hint}")
    return _page(
        200,
        "QuickBooks is connected",
        f"Company {realm} is now connected to organization {row[0]}. The first sync starts "
        "by itself; you can close this page.",
    )


def _page(status: int, title: str, text: str) -> web.Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(_execute(request.app, "SELECT 1", ()), timeout=5)
    except (psycopg.Error, PoolTimeout, TimeoutError):
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


# ---------------------------------------------------------------------- command line

ENVIRONMENT = """environment:
  QBO_SYNC_LISTENER_DSN        the listener's database login (a role granted qbo_sync_listener)
  QBO_WEBHOOK_VERIFIER_TOKEN   the verifier token of the Intuit app's webhooks
  QBO_SYNC_SECRETS_FILE        a KEY=value file to read QBO_WEBHOOK_VERIFIER_TOKEN from instead
"""


def build_parser(prog: str = "qbo-sync listen") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Receive QBO webhooks (POST /webhooks/qbo, and the seed guide's "
        "/functions/v1/qbo-webhook-listener), complete OAuth redirects (GET /oauth/callback) and "
        "answer health checks (GET /healthz). Webhooks are verified and stored in the database; "
        "the database turns them into sync work.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument(
        "--dsn", help="database to store webhooks in (default: $QBO_SYNC_LISTENER_DSN)"
    )
    parser.add_argument(
        "--secrets-file",
        help="KEY=value file holding QBO_WEBHOOK_VERIFIER_TOKEN (default: "
        "$QBO_SYNC_SECRETS_FILE; the environment variable itself wins)",
    )
    parser.add_argument("--pool-size", type=int, default=8, help="database connections (default 8)")
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds requests in flight get to finish on SIGTERM/SIGINT (default 10)",
    )
    return parser


class ConfigError(Exception):
    """The listener cannot start as configured (one line saying what to do)."""


def config_from(args: argparse.Namespace, environ: dict[str, str]) -> ListenerConfig:
    dsn = args.dsn or environ.get("QBO_SYNC_LISTENER_DSN")
    if not dsn:
        raise ConfigError("no database: pass --dsn or set QBO_SYNC_LISTENER_DSN")
    token = environ.get("QBO_WEBHOOK_VERIFIER_TOKEN")
    path = args.secrets_file or environ.get("QBO_SYNC_SECRETS_FILE")
    if not token and path:
        try:
            token = secrets.read_secrets_file(path).get("QBO_WEBHOOK_VERIFIER_TOKEN")
        except OSError as exc:
            raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(
            "no verifier token: set QBO_WEBHOOK_VERIFIER_TOKEN (in the environment or the "
            "secrets file); the listener refuses every webhook without it, so it does not start"
        )
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port")
    if args.pool_size < 1:
        raise ConfigError("--pool-size must be at least 1")
    return ListenerConfig(
        dsn=dsn, verifier_token=token, host=args.host, port=args.port, pool_size=args.pool_size
    )


def main(argv: list[str] | None = None, prog: str = "qbo-sync listen") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        config = config_from(args, dict(os.environ))
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    ready = f"{prog}: listening on http://{config.host}:{config.port}"
    web.run_app(
        make_app(config),
        host=config.host,
        port=config.port,
        shutdown_timeout=args.shutdown_timeout,
        print=lambda _banner: print(ready, flush=True),  # once the port is bound
        access_log=None,
    )
    return 0

"""The simulator's aiohttp application and command line.

One port serves Intuit's OAuth paths, the Accounting API under ``/v3/company/{realm}`` and the
control surface under ``/_sim``. Every response carries an ``intuit_tid`` header.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import itertools
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from simulator import api, control
from simulator.config import SimulatorConfig
from simulator.errors import (
    GatewayError,
    QBOError,
    Throttled,
    fault_response,
    gateway_response,
    throttle_response,
)
from simulator.state import STATE, State

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("simulator")


def _tid_factory() -> Callable[[], str]:
    prefix = "1-" + secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):024x}"


def make_app(config: SimulatorConfig) -> web.Application:
    state = State(config)
    new_tid = _tid_factory()

    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except QBOError as exc:
            resp = fault_response(exc, state.clock.now())
        except GatewayError as exc:
            resp = gateway_response(exc, state.clock.now())
        except Throttled:
            resp = throttle_response(state.cfg.throttle_format, state.clock.now())
        except web.HTTPException as exc:
            exc.headers["intuit_tid"] = new_tid()
            raise
        resp.headers["intuit_tid"] = new_tid()
        return resp

    def oauth_route(name: str, latency: bool = True) -> Handler:
        async def route(request: web.Request) -> web.StreamResponse:
            if latency and state.cfg.latency_ms:
                await asyncio.sleep(state.cfg.latency_ms / 1000)
            return await getattr(request.app[STATE].oauth, name)(request)

        return route

    app = web.Application(middlewares=[envelope], client_max_size=16 * 1024 * 1024)
    app[STATE] = state
    r = app.router
    for path in (
        "/.well-known/openid-configuration",
        "/.well-known/openid_configuration",
        "/.well-known/openid_sandbox_configuration",
    ):
        r.add_get(path, oauth_route("discovery", False))
        r.add_get(path + "/", oauth_route("discovery", False))
    r.add_get("/op/v1/jwks", oauth_route("jwks", False))
    r.add_get("/connect/oauth2", oauth_route("authorize"))
    r.add_post("/oauth2/v1/tokens/bearer", oauth_route("token"))
    r.add_post("/oauth2/v1/tokens/revoke", oauth_route("revoke"))
    r.add_post("/v2/oauth2/tokens/revoke", oauth_route("revoke"))
    r.add_get("/v1/openid_connect/userinfo", oauth_route("userinfo"))
    r.add_route("*", "/v3/company/{realm}/{tail:.+}", api.handle)
    control.add_routes(app)

    async def close_webhooks(app: web.Application) -> None:
        await app[STATE].webhooks.close()

    app.on_cleanup.append(close_webhooks)
    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qbo-sync simulator", description="Run the QBO simulator.")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8765)")
    p.add_argument("--config", help="JSON file of settings (see docs/simulator.md)")
    p.add_argument(
        "--webhook-url",
        action="append",
        default=None,
        dest="webhook_urls",
        help="POST webhooks here (repeatable)",
    )
    p.add_argument(
        "--verifier-token",
        default=None,
        help="webhook verifier token (default: $QBO_WEBHOOK_VERIFIER_TOKEN, which keeps it out"
        " of the process list)",
    )
    p.add_argument("--webhook-format", choices=["legacy", "cloudevents"], default=None)
    p.add_argument("--latency-ms", type=float, default=None, help="added latency per call")
    p.add_argument("--seed", type=int, default=None, help="seed of the default realm's data")
    p.add_argument("--customers", type=int, default=None, help="seed N customers")
    p.add_argument("--items", type=int, default=None, help="seed N items")
    p.add_argument("--invoices", type=int, default=None, help="seed N invoices")
    p.add_argument("--payments", type=int, default=None, help="seed N payments")
    p.add_argument("--realm-id", default=None, help="id of the default realm")
    p.add_argument("--no-limits", action="store_true", help="disable throttling")
    p.add_argument("--public-url", default=None, help="base URL written in the discovery doc")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    cfg = SimulatorConfig.from_file(args.config) if args.config else SimulatorConfig()
    overrides = {
        "host": args.host,
        "port": args.port,
        "webhook_urls": args.webhook_urls,
        "verifier_token": args.verifier_token or os.environ.get("QBO_WEBHOOK_VERIFIER_TOKEN"),
        "webhook_format": args.webhook_format,
        "latency_ms": args.latency_ms,
        "seed": args.seed,
        "seed_customers": args.customers,
        "seed_items": args.items,
        "seed_invoices": args.invoices,
        "seed_payments": args.payments,
        "default_realm_id": args.realm_id,
        "public_url": args.public_url,
    }
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_limits:
        cfg.limits_enabled = False
    return cfg


#: Exit codes, as `qbo-sync --help` lists them: bad arguments or settings, and a port in use.
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _fail(message: str, code: int) -> int:
    print(f"qbo-sync simulator: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        return _fail(f"--port {args.port} is not a port number (1-65535): try 8765", EXIT_USAGE)
    try:
        cfg = config_from_args(args)
    except OSError as exc:
        return _fail(
            f"cannot read --config {args.config}: {exc.strerror}; pass a JSON file of settings",
            EXIT_USAGE,
        )
    except (ValueError, TypeError) as exc:  # not JSON, or a setting unknown or out of range
        source = args.config or "arguments"
        return _fail(f"{source}: {exc}; the settings are listed in docs/simulator.md", EXIT_USAGE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = make_app(cfg)

    def started(_banner: str) -> None:  # called once the port is bound
        log.info(
            "QBO simulator on http://%s:%d (realm %s)", cfg.host, cfg.port, cfg.default_realm_id
        )

    try:
        web.run_app(app, host=cfg.host, port=cfg.port, access_log=None, print=started)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            problem = f"port {cfg.port} is in use; stop what uses it or pick another with --port"
        else:
            problem = f"{exc.strerror or exc}; check --host and --port"
        return _fail(f"cannot listen on {cfg.host}:{cfg.port}: {problem}", EXIT_UNAVAILABLE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

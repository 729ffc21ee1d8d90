"""`qbo-sync dashboard`: the sync status page (aiohttp, pages rendered on the server with Jinja2).

Pages: every organization at a glance (/), and one organization (/org/<id>): its connection and
tokens, per-entity counts with Pull / Push / Both, the live queue, recent history, held conflicts,
failed records and a chart of the last day. Parts of a page are refreshed every few seconds by
static/refresh.js, a few lines of JavaScript that fetch the same server-rendered HTML
(/part/...): no build step, nothing loaded from elsewhere. Every action is a form POST with the
session's CSRF token, from this site (security.py).

Two database logins: the pages read as qbo_sync_monitor (read-only) and the actions call the SQL
API as qbo_sync_dashboard (docs/dashboard.md). A DSN whose user is a member of the role (a
superuser is) gets SET ROLE to it, so nothing is read or done with more than the role's rights.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
import psycopg
from aiohttp import web
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from qbo_sync.dashboard import chart, queries, security
from qbo_sync.dashboard.actions import ActionRefused, Actor

HERE = Path(__file__).parent
MONITOR_ROLE = "qbo_sync_monitor"
ACTION_ROLE = "qbo_sync_dashboard"
SECRET_NAME = "QBO_SYNC_DASHBOARD_SECRET"
#: a login secret shorter than this is refused (it is the only thing between the network and
#: the sync's controls)
MIN_SECRET_LENGTH = 16
REFRESH_SECONDS = 3
#: a page waits this long for a database connection, then answers 503 (the live refresh asks
#: every few seconds: waiting psycopg_pool's 30 s default piles requests up while it is down)
POOL_WAIT_SECONDS = 5.0
PARTS = ("connection", "entities", "queue", "history", "conflicts", "failed", "chart")


@dataclass(frozen=True)
class DashboardConfig:
    monitor_dsn: str
    action_dsn: str
    host: str = "127.0.0.1"
    port: int = 8090
    secret: str = ""
    redirect_uri: str = "http://localhost:8080/oauth/callback"
    pool_size: int = 4
    #: scheme://host[:port] people open, when a proxy stands in front (POSTs may come from it)
    public_origin: str = ""
    #: the organization the action role is confined to (its qbo_sync.organization_id setting),
    #: found by `prepare`; None: every organization
    confined_to: uuid.UUID | None = None

    def __repr__(self) -> str:  # never the DSNs (passwords) nor the secret
        return f"DashboardConfig(host={self.host!r}, port={self.port})"


class ConfigError(Exception):
    """The dashboard cannot start as configured (one line saying what to do)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(config: DashboardConfig) -> frozenset[str]:
    """The host names a request may be addressed to: on the loopback, the loopback's names (and
    the public URL's); bound to an address, that one too; bound to every address (0.0.0.0, ::),
    any (the login is required there)."""
    if config.host in ("0.0.0.0", "::", ""):
        return frozenset()
    names = {config.host.lower().strip("[]"), "localhost", "127.0.0.1", "::1"}
    if config.public_origin:
        names.add((urlsplit(config.public_origin).hostname or "").lower())
    return frozenset(names)


# ---------------------------------------------------------------------- database roles


def _role_check(conn: psycopg.Connection, role: str) -> None:
    row = conn.execute(
        "SELECT current_user = %s, pg_has_role(current_user, %s, 'MEMBER')", (role, role)
    ).fetchone()
    assert row is not None
    if not row[0]:
        if not row[1]:
            user = conn.info.user
            raise ConfigError(
                f"database user {user} is not a member of {role}: GRANT {role} TO {user};"
            )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


def prepare(config: DashboardConfig) -> DashboardConfig:
    """Checks both logins (members of their roles, qbo-sync installed) and finds the
    organization the action role is confined to."""
    for dsn, role in ((config.monitor_dsn, MONITOR_ROLE), (config.action_dsn, ACTION_ROLE)):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                if conn.execute("SELECT to_regrole(%s) IS NULL", (role,)).fetchone()[0]:
                    raise ConfigError(f"role {role} does not exist: run qbo-sync install first")
                _role_check(conn, role)
                if role == MONITOR_ROLE:
                    conn.execute("SELECT 1 FROM public.qbo_sync_status LIMIT 1")
                else:
                    confined = conn.execute(
                        "SELECT nullif(current_setting('qbo_sync.organization_id', true), '')"
                    ).fetchone()[0]
                    if confined:
                        config = replace(config, confined_to=uuid.UUID(confined))
        except psycopg.OperationalError as exc:
            first = (str(exc).strip().splitlines() or ["no reason given"])[0]
            raise ConfigError(f"cannot connect as {role}'s login: {first}") from None
        except psycopg.Error as exc:
            raise ConfigError(
                f"the {role} login cannot use qbo-sync: {exc.diag.message_primary}"
            ) from None
    return config


def _configure(role: str, read_only: bool) -> Any:
    async def configure(conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT current_user = %s", (role,))
        if not (await cur.fetchone())[0]:
            await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        if read_only:
            await conn.execute("SET default_transaction_read_only = on")

    return configure


MONITOR_KEY = web.AppKey("monitor", AsyncConnectionPool)
ACTOR_KEY = web.AppKey("actor", Actor)
CONFIG_KEY = web.AppKey("config", DashboardConfig)


async def _pools(app: web.Application) -> Any:
    config = app[CONFIG_KEY]
    pools = []
    for dsn, role, read_only in (
        (config.monitor_dsn, MONITOR_ROLE, True),
        (config.action_dsn, ACTION_ROLE, False),
    ):
        pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=config.pool_size,
            kwargs={"autocommit": True},
            configure=_configure(role, read_only),
            check=AsyncConnectionPool.check_connection,
            timeout=POOL_WAIT_SECONDS,
            open=False,
            name=f"dashboard-{role}",
        )
        await pool.open(wait=False)
        pools.append(pool)
    app[MONITOR_KEY] = pools[0]
    app[ACTOR_KEY] = Actor(pools[1], config.confined_to)
    yield
    for pool in pools:
        await pool.close(timeout=5)


@web.middleware
async def database_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    """While the database cannot be reached (restarting, down), a short 503 rather than a bare
    500: the pools reconnect by themselves and the page's next refresh gets through."""
    try:
        return await handler(request)
    except psycopg.OperationalError as exc:  # psycopg_pool.PoolTimeout is one too
        logging.getLogger(__name__).warning("database unavailable: %s", str(exc).splitlines()[0])
        return web.Response(
            status=503,
            text="the database is unavailable right now; try again in a few seconds",
            headers={"Retry-After": "5"},
        )


# ---------------------------------------------------------------------- pages


def _org_id(request: web.Request) -> uuid.UUID:
    """The organization in the address; 404 for a bad id or one the dashboard may not show."""
    try:
        org = uuid.UUID(request.match_info["org"])
    except ValueError:
        raise web.HTTPNotFound(text="no such organization") from None
    if not request.app[ACTOR_KEY].may_act_for(org):
        raise web.HTTPNotFound(text="no such organization")
    return org


def _context(request: web.Request, **values: Any) -> dict[str, Any]:
    session: security.Session = request[security.SESSION]
    return {
        "csrf": session.csrf,
        "login": bool(request.app[security.SECRET_KEY]),
        "refresh_seconds": REFRESH_SECONDS,
        **values,
    }


async def overview_page(request: web.Request) -> web.StreamResponse:
    confined = request.app[ACTOR_KEY].confined_to
    if confined is not None:
        return security.see_other(f"/org/{confined}")
    async with request.app[MONITOR_KEY].connection() as conn:
        organizations = await queries.overview(conn)
    flash, request[security.SESSION].flash = request[security.SESSION].flash, []
    return aiohttp_jinja2.render_template(
        "overview.html",
        request,
        _context(request, organizations=organizations, flash=flash),
    )


async def overview_part(request: web.Request) -> web.StreamResponse:
    async with request.app[MONITOR_KEY].connection() as conn:
        organizations = await queries.overview(conn, request.app[ACTOR_KEY].confined_to)
    return aiohttp_jinja2.render_template(
        "part_overview.html", request, _context(request, organizations=organizations)
    )


async def _part_values(conn: psycopg.AsyncConnection, org: uuid.UUID, part: str) -> dict:
    if part == "connection":
        return {"org": await queries.organization(conn, org)}
    if part == "entities":
        return {"entities": await queries.entity_counts(conn, org)}
    if part == "queue":
        return {"jobs": await queries.queue(conn, org)}
    if part == "history":
        return {"history": await queries.history(conn, org)}
    if part == "conflicts":
        return {"conflicts": await queries.conflicts(conn, org)}
    if part == "failed":
        return {"records": await queries.failed_records(conn, org)}
    return {"chart": chart.bars(await queries.activity(conn, org))}


async def organization_page(request: web.Request) -> web.StreamResponse:
    org = _org_id(request)
    values: dict[str, Any] = {}
    async with request.app[MONITOR_KEY].connection() as conn:
        for part in PARTS:
            values.update(await _part_values(conn, org, part))
    if values["org"] is None:
        raise web.HTTPNotFound(text="no such organization")
    flash, request[security.SESSION].flash = request[security.SESSION].flash, []
    return aiohttp_jinja2.render_template(
        "organization.html",
        request,
        _context(request, org_id=org, parts=PARTS, flash=flash, **values),
    )


async def organization_part(request: web.Request) -> web.StreamResponse:
    org = _org_id(request)
    part = request.match_info["part"]
    if part not in PARTS:
        raise web.HTTPNotFound(text="no such part")
    async with request.app[MONITOR_KEY].connection() as conn:
        values = await _part_values(conn, org, part)
    if part == "connection" and values["org"] is None:
        raise web.HTTPNotFound(text="no such organization")
    return aiohttp_jinja2.render_template(
        f"part_{part}.html", request, _context(request, org_id=org, **values)
    )


async def login_page(request: web.Request) -> web.StreamResponse:
    if not request.app[security.SECRET_KEY] or request[security.SESSION].logged_in:
        return security.see_other("/")
    flash, request[security.SESSION].flash = request[security.SESSION].flash, []
    return aiohttp_jinja2.render_template("login.html", request, _context(request, flash=flash))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# ---------------------------------------------------------------------- actions


def _uuid(text: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise web.HTTPBadRequest(text="not an id") from None


async def action(request: web.Request) -> web.StreamResponse:
    """POST /org/<id>/<what>: one call of the SQL API; the outcome is shown on the page."""
    org = _org_id(request)
    what = request.match_info["action"]
    form = await request.post()
    actor = request.app[ACTOR_KEY]
    session: security.Session = request[security.SESSION]
    back = f"/org/{org}"
    try:
        if what == "sync":
            entity, direction = str(form.get("entity")), str(form.get("direction"))
            job = await actor.sync(org, entity, direction)
            message = f"queued: {direction} {entity} (job {job})"
            back += "#queue"
        elif what in ("requeue", "cancel"):
            job = _uuid(form.get("job"))
            done = await getattr(actor, what)(org, job)
            message = f"job {job} " + (
                "requeued" if what == "requeue" else "cancelled" if done else "had already finished"
            )
            back += "#queue"
        elif what == "resolve":
            conflict, choice = _uuid(form.get("conflict")), str(form.get("choice"))
            await actor.resolve(org, conflict, choice)
            message = (
                f"conflict {conflict} resolved: {'QBO' if choice == 'qbo' else 'local'} values kept"
            )
            back += "#conflicts"
        elif what in ("retry", "skip"):
            entity, record = str(form.get("entity")), _uuid(form.get("record"))
            if what == "retry":
                await actor.retry(org, entity, record)
                message = f"{entity} record {record} queued to be sent again"
            else:
                reason = str(form.get("reason") or "").strip() or "skipped from the dashboard"
                await actor.skip(org, entity, record, reason[:500])
                message = f"{entity} record {record} skipped"
            back += "#failed"
        elif what == "connect":
            environment = str(form.get("environment") or "production")
            url = await actor.connect(org, request.app[CONFIG_KEY].redirect_uri, environment)
            session.flash.append(
                {"kind": "ok", "text": "open QuickBooks to approve the connection:", "link": url}
            )
            return security.see_other(back)
        elif what == "disconnect":
            reason = str(form.get("reason") or "").strip() or "disconnected from the dashboard"
            await actor.disconnect(org, reason[:500])
            message = "disconnected from QuickBooks"
        else:
            raise web.HTTPNotFound(text="no such action")
    except ActionRefused as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except psycopg.Error as exc:
        text = exc.diag.message_primary or str(exc).splitlines()[0]
        if exc.diag.message_hint:
            text += f" ({exc.diag.message_hint})"
        session.flash.append({"kind": "error", "text": text})
        return security.see_other(back)
    session.flash.append({"kind": "ok", "text": message})
    return security.see_other(back)


# ---------------------------------------------------------------------- the application


def make_app(config: DashboardConfig) -> web.Application:
    """The dashboard; `config` as `prepare` returns it. Its pools open on startup."""
    app = web.Application(
        middlewares=[security.security, database_unavailable], client_max_size=64 * 1024
    )
    app[CONFIG_KEY] = config
    app[security.SESSIONS_KEY] = security.Sessions()
    app[security.SECRET_KEY] = config.secret
    app[security.PUBLIC_ORIGIN_KEY] = config.public_origin
    app[security.HOSTS_KEY] = allowed_hosts(config)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ago"] = _ago
    env.filters["life"] = _life
    app.cleanup_ctx.append(_pools)
    app.router.add_get("/", overview_page)
    app.router.add_get("/part/overview", overview_part)
    app.router.add_get("/org/{org}", organization_page)
    app.router.add_get("/part/org/{org}/{part}", organization_part)
    app.router.add_post("/org/{org}/{action}", action)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", security.login)
    app.router.add_post("/logout", security.logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", HERE / "static", show_index=False)
    return app


def _ago(moment: Any) -> str:
    """A timestamp as UTC, e.g. 2026-11-28 04:55:12 UTC; '—' for none."""
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment.tzinfo else str(moment)


def _life(delta: Any) -> str:
    """What is left of a token's life: 43 days, 5 h 12 min, expired."""
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    if seconds <= 0:
        return "expired"
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 60)} min"


# ---------------------------------------------------------------------- command line

ENVIRONMENT = f"""environment:
  QBO_SYNC_DASHBOARD_MONITOR_DSN  the pages' database login (a member of {MONITOR_ROLE})
  QBO_SYNC_DASHBOARD_ACTION_DSN   the actions' database login (a member of {ACTION_ROLE})
  QBO_SYNC_DSN                    both, when the two above are not set (its user is then
                                  SET ROLE to each role: a superuser or a member of both)
  {SECRET_NAME}       the login secret (needed when bound to an address other than
                                  the loopback), at least {MIN_SECRET_LENGTH} characters
  QBO_SYNC_SECRETS_FILE           a KEY=value file to read {SECRET_NAME} from
"""


def build_parser(prog: str = "qbo-sync dashboard") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the sync status page: organizations, connections and tokens, "
        "counts, the queue, history, conflicts and failed records, with the actions a person "
        "takes on them.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    parser.add_argument("--monitor-dsn", help="database login for the pages (read-only)")
    parser.add_argument("--action-dsn", help="database login for the actions")
    parser.add_argument("--dsn", help="one login for both (SET ROLE to each role)")
    parser.add_argument("--secrets-file", help="KEY=value file holding the login secret")
    parser.add_argument(
        "--redirect-uri",
        default="http://localhost:8080/oauth/callback",
        help="OAuth redirect URI for Connect (the listener's /oauth/callback)",
    )
    parser.add_argument("--pool-size", type=int, default=4, help="connections per login")
    parser.add_argument(
        "--public-url",
        default="",
        help="the address people open when a (TLS) proxy stands in front, e.g. "
        "https://sync.example.com: forms are accepted from it, and the cookie is Secure",
    )
    return parser


def config_from(args: argparse.Namespace, environ: dict[str, str]) -> DashboardConfig:
    fallback = args.dsn or environ.get("QBO_SYNC_DSN")
    monitor = args.monitor_dsn or environ.get("QBO_SYNC_DASHBOARD_MONITOR_DSN") or fallback
    action = args.action_dsn or environ.get("QBO_SYNC_DASHBOARD_ACTION_DSN") or fallback
    if not (monitor and action):
        try:
            from qbo_sync.pgserver import local_cluster, requested_local_port

            local = local_cluster(requested_local_port()).dsn()
        except (ValueError, OSError):
            local = None
        monitor, action = monitor or local, action or local
    if not (monitor and action):
        raise ConfigError("no database: pass --monitor-dsn and --action-dsn (or --dsn)")
    secret = environ.get(SECRET_NAME, "")
    path = args.secrets_file or environ.get("QBO_SYNC_SECRETS_FILE")
    if not secret and path:
        from qbo_sync_db.secrets import read_secrets_file

        try:
            secret = read_secrets_file(path).get(SECRET_NAME, "")
        except OSError as exc:
            raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror}") from None
    if secret and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{SECRET_NAME} is too short: use at least {MIN_SECRET_LENGTH} characters"
        )
    if not secret and not is_loopback(args.host):
        raise ConfigError(
            f"bound to {args.host}, the dashboard needs a login: set {SECRET_NAME} (in the "
            "environment or the secrets file), or bind to 127.0.0.1"
        )
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port")
    if args.pool_size < 1:
        raise ConfigError("--pool-size must be at least 1")
    public = urlsplit(args.public_url) if args.public_url else None
    if public is not None and (public.scheme not in ("http", "https") or not public.netloc):
        raise ConfigError("--public-url must be like https://host[:port]")
    return DashboardConfig(
        monitor_dsn=monitor,
        action_dsn=action,
        host=args.host,
        port=args.port,
        secret=secret,
        redirect_uri=args.redirect_uri,
        pool_size=args.pool_size,
        public_origin=f"{public.scheme}://{public.netloc}" if public else "",
    )


def main(argv: list[str] | None = None, prog: str = "qbo-sync dashboard") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        config = prepare(config_from(args, dict(os.environ)))
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    where = f"http://{config.host}:{config.port}/"
    login = "login required" if config.secret else "no login (loopback only)"
    confined = f", organization {config.confined_to} only" if config.confined_to else ""
    ready = f"{prog}: serving {where} ({login}{confined})"
    web.run_app(
        make_app(config),
        host=config.host,
        port=config.port,
        print=lambda _banner: print(ready, flush=True),  # once the port is bound
        access_log=None,
    )
    return 0

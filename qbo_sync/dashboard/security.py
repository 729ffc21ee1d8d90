"""Sessions, the login and the protection of every POST against cross-site requests.

Every visitor gets a session (a random id in an HttpOnly, SameSite=Strict cookie; the session
itself stays in this process's memory) holding a random CSRF token. Every POST must carry that
token in its form (field `csrf_token`) and come from this site: its Origin header (or, without
one, its Referer) must name the address the request was sent to. When a login secret is set,
every page but /login and /static needs a session that logged in with it; logging in gives the
session a new id and a new token. When bound to the loopback, a request must also name a loopback
host (or the public URL's): a page of another name that resolves to 127.0.0.1 (DNS rebinding)
is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "qbo_dashboard"
#: a session unused for this long is forgotten (then the visitor logs in again)
IDLE_SECONDS = 12 * 3600
#: sessions kept at most, the least recently used going first. Visitors who have not logged in
#: and those who have are kept apart: a flood of cookie-less requests (anyone who reaches the
#: port can send them) pushes out only other such sessions, never a logged-in person's.
MAX_SESSIONS = 10_000
MAX_LOGGED_IN = 1_000
#: a failed login answers this much later (guessing the secret stays slow)
FAILED_LOGIN_DELAY = 1.0
OPEN_PATHS = ("/login", "/static/", "/healthz")


@dataclass
class Session:
    id: str
    csrf: str
    logged_in: bool = False
    used_at: float = field(default_factory=time.monotonic)
    flash: list[dict[str, str]] = field(default_factory=list)


class Sessions:
    """The sessions of this process, the least recently used first, visitors not logged in apart
    from those logged in."""

    def __init__(self) -> None:
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._logged_in: OrderedDict[str, Session] = OrderedDict()

    def new(self, logged_in: bool = False) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), logged_in=logged_in
        )
        kept, limit = (
            (self._logged_in, MAX_LOGGED_IN) if logged_in else (self._anonymous, MAX_SESSIONS)
        )
        kept[session.id] = session
        while len(kept) > limit:
            kept.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        key = session_id or ""
        kept = self._logged_in if key in self._logged_in else self._anonymous
        session = kept.get(key)
        if session is None or time.monotonic() - session.used_at > IDLE_SECONDS:
            return None
        session.used_at = time.monotonic()
        kept.move_to_end(session.id)
        return session

    def renew(self, session: Session, logged_in: bool) -> Session:
        """The same visitor under a new id and token (after logging in: no fixation)."""
        self.drop(session)
        fresh = self.new(logged_in)
        fresh.flash = session.flash
        return fresh

    def drop(self, session: Session) -> None:
        self._anonymous.pop(session.id, None)
        self._logged_in.pop(session.id, None)


SESSIONS_KEY = web.AppKey("sessions", Sessions)
SECRET_KEY = web.AppKey("login_secret", str)
#: the address people open when it is not the one the request reaches (behind a TLS proxy)
PUBLIC_ORIGIN_KEY = web.AppKey("public_origin", str)
#: the host names requests may be addressed to (empty: any); a page of another name reaching a
#: dashboard on the loopback (DNS rebinding) would otherwise be "this site" and act without login
HOSTS_KEY = web.AppKey("hosts", frozenset)
SESSION = web.RequestKey("session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def same_origin(request: web.Request) -> bool:
    """The POST came from a page of this site: Origin (or else Referer) is this address."""
    expected = {f"{request.scheme}://{request.host}", request.app[PUBLIC_ORIGIN_KEY]}
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in expected
    referer = request.headers.get("Referer")
    if not referer:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" in expected


def set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=request.secure or request.app[PUBLIC_ORIGIN_KEY].startswith("https:"),
        path="/",
    )


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session, login, CSRF and same-origin checks, and the security headers of every answer."""
    sessions = request.app[SESSIONS_KEY]
    session = sessions.get(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = sessions.new()
    request[SESSION] = session
    try:
        response = await _checked(request, handler, session)
    except web.HTTPException as exc:
        response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
    current = request[SESSION]  # the login handler may have renewed it
    if fresh or current is not session:
        set_cookie(request, response, current)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _checked(request: web.Request, handler: Handler, session: Session) -> web.StreamResponse:
    hosts = request.app[HOSTS_KEY]
    if hosts and (request.url.host or "").lower().strip("[]") not in hosts:
        return refused(421, "refused: this dashboard is not served under that host name")
    needs_login = request.app[SECRET_KEY] != "" and not request.path.startswith(OPEN_PATHS)
    if request.method == "POST":
        form = await request.post()
        token = form.get("csrf_token")
        if not same_origin(request):
            return refused(403, "refused: this form was not sent from this site")
        if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
            return refused(403, "refused: the form's token is missing or stale; reload the page")
    if needs_login and not session.logged_in:
        if request.method == "GET" and not request.path.startswith("/part/"):
            return see_other("/login")
        return refused(401, "log in first")
    return await handler(request)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login: the CSRF and origin checks have passed; compare the secret."""
    form = await request.post()
    secret = request.app[SECRET_KEY]
    given = form.get("secret")
    if secret and isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode()):
        fresh = request.app[SESSIONS_KEY].renew(request[SESSION], logged_in=True)
        request[SESSION] = fresh
        return see_other("/")
    await asyncio.sleep(FAILED_LOGIN_DELAY)
    request[SESSION].flash.append({"kind": "error", "text": "wrong secret"})
    return see_other("/login")


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS_KEY].drop(request[SESSION])
    request[SESSION] = request.app[SESSIONS_KEY].new()
    return see_other("/login" if request.app[SECRET_KEY] else "/")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def refused(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)

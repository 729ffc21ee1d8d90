"""Helpers for the tests that run jobs calling QBO through the worker against the simulator over
HTTP for a long (simulated) time: a simulator whose every answer is logged, both clocks moved
together, settings changed for one test, and what the simulator holds for a grant.

The probe handler, `queue_probe`, `run_worker`, `outcome` and `counters` come from
tests/db/test_qbo_calls.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import requests
from aiohttp import web

from tests.db.test_tokens import CLIENT, Connected
from tests.simulator.simtools import REALM, ThreadedServer, base_config

TOKEN_PATH = "/oauth2/v1/tokens/bearer"


@dataclass(frozen=True)
class Answer:
    """One answer the simulator gave: to what, when it arrived (real monotonic seconds and the
    simulated clock), its HTTP status, the OAuth `error` of a refused token request, and its
    intuit_tid."""

    method: str
    path: str
    realm: str | None
    arrived: float
    sim_at: float
    status: int
    error: str | None = None
    intuit_tid: str | None = None

    @property
    def api(self) -> bool:
        return self.path.startswith("/v3/company/")

    @property
    def token(self) -> bool:
        return self.path == TOKEN_PATH


@dataclass
class AnswerLog:
    """Every request the simulator answered, in arrival order (an aiohttp middleware outside
    all of the simulator's own: it sees the final status of every answer, faults, 401s and 429s
    included, which the simulator's per-realm counters do not all count)."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)

    def api(self, realm: str | None = None) -> list[Answer]:
        return [a for a in self.snapshot() if a.api and realm in (None, a.realm)]

    def token(self) -> list[Answer]:
        return [a for a in self.snapshot() if a.token]

    def middleware(self, server: ThreadedServer) -> Callable:
        log = self

        @web.middleware
        async def record(request: web.Request, handler: Callable) -> web.StreamResponse:
            arrived, sim_at = time.monotonic(), server.state.clock.now()
            parts = request.path.split("/")
            realm = parts[3] if request.path.startswith("/v3/company/") else None
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                log._add(
                    Answer(
                        request.method,
                        request.path,
                        realm,
                        arrived,
                        sim_at,
                        exc.status,
                        intuit_tid=exc.headers.get("intuit_tid"),
                    )
                )
                raise
            error = None
            if request.path == TOKEN_PATH and response.status >= 400:
                try:
                    error = json.loads(response.body).get("error")  # type: ignore[arg-type]
                except (TypeError, ValueError, AttributeError):
                    error = None
            log._add(
                Answer(
                    request.method,
                    request.path,
                    realm,
                    arrived,
                    sim_at,
                    response.status,
                    error,
                    response.headers.get("intuit_tid"),
                )
            )
            return response

        return record

    def _add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


class LoggedServer(ThreadedServer):
    """The simulator on its own thread, with an AnswerLog of everything it answered."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(base_config(apps=[CLIENT], **overrides))
        self.log = AnswerLog()
        self.app.middlewares.insert(0, self.log.middleware(self))


@pytest.fixture
def logged_sim() -> Iterator[LoggedServer]:
    """A simulator with QBO's throttling on (the defaults: 500 a minute, 10 a second, 10 at
    once) and every answer logged."""
    server = LoggedServer(limits_enabled=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect_realm(
    conn: psycopg.Connection, sim: ThreadedServer, realm: str = REALM, name: str = "Lifetime"
) -> Connected:
    """An organization connected to `realm` (created in the simulator when missing) with a fresh
    grant: both sides agree the access token has an hour and the refresh token its full life."""
    if realm not in sim.state.realms:
        sim_call(sim, "POST", "realms", {"realm_id": realm})
    pair = sim_call(sim, "POST", f"realms/{realm}/tokens", {"client_id": CLIENT["client_id"]})
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, %s)", (org, name))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                       qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                                       qbo_token_expires_at, qbo_refresh_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s), qbo_sync.encrypt_token(%s),
                   now() + make_interval(secs => %s), now() + make_interval(secs => %s))""",
        (
            org,
            realm,
            sim.base_url,
            pair["access_token"],
            pair["refresh_token"],
            pair["expires_in"],
            sim.cfg.refresh_token_ttl_s,
        ),
    )
    return Connected(org, sim, pair["access_token"], pair["refresh_token"])


def sim_call(sim: ThreadedServer, method: str, path: str, body: Any = None) -> dict:
    answer = requests.request(method, f"{sim.base_url}/_sim/{path}", json=body, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else {}


def realm_counters(sim: ThreadedServer, realm: str = REALM) -> dict:
    """The simulator's counters of one realm (calls by endpoint, throttled, fault.*)."""
    return sim_call(sim, "GET", f"realms/{realm}/counters")["counters"]


SHIFT_TOKEN_TIMES = """
UPDATE public.qbo_connection
   SET qbo_token_expires_at = qbo_token_expires_at - make_interval(secs => %(s)s),
       qbo_refresh_token_expires_at = qbo_refresh_token_expires_at - make_interval(secs => %(s)s),
       qbo_refresh_token_hard_expires_at =
           qbo_refresh_token_hard_expires_at - make_interval(secs => %(s)s),
       last_refreshed_at = last_refreshed_at - make_interval(secs => %(s)s)"""

SHIFT_WAITING_JOBS = """
UPDATE public.qbo_sync_queue SET run_at = run_at - make_interval(secs => %(s)s)
 WHERE status = 'pending'"""


def advance(
    conn: psycopg.Connection,
    sim: ThreadedServer,
    seconds: float,
    *,
    over_http: bool = True,
    waiting_jobs: bool = False,
) -> None:
    """Let `seconds` pass for the tokens on both sides: the simulator's clock moves forward (its
    control surface, or the same call in process when `over_http` is false) and the database's
    stored token times (access expiry, both refresh expiries, last refresh) move back by as
    much, so both agree on how old every token is; with `waiting_jobs`, pending jobs' run_at
    too (their backoff passes). The connection rows are locked first: a refresh in flight is
    finished and stored before the clocks move, so no token is stored on one side of a move and
    issued on the other."""
    with conn.transaction():
        conn.execute("SELECT FROM public.qbo_connection FOR UPDATE")
        if over_http:
            sim_call(sim, "POST", "clock", {"advance_seconds": seconds})
        else:
            sim.state.clock.advance(seconds)
        conn.execute(SHIFT_TOKEN_TIMES, {"s": seconds})
        if waiting_jobs:
            conn.execute(SHIFT_WAITING_JOBS, {"s": seconds})


@pytest.fixture
def setting(conn: psycopg.Connection) -> Iterator[Callable[[str, Any], None]]:
    """Change a qbo_sync setting for this test (restored afterwards)."""
    saved: dict[str, str] = {}

    def change(key: str, value: Any) -> None:
        if key not in saved:
            saved[key] = conn.execute(
                "SELECT value FROM qbo_sync.settings WHERE key = %s", (key,)
            ).fetchone()[0]
        text = value if isinstance(value, str) else json.dumps(value)
        conn.execute("UPDATE qbo_sync.settings SET value = %s WHERE key = %s", (text, key))

    yield change
    for key, value in saved.items():
        conn.execute("UPDATE qbo_sync.settings SET value = %s WHERE key = %s", (value, key))


def grant_refresh_tokens(sim: ThreadedServer, realm: str = REALM) -> tuple[str | None, int]:
    """The refresh token the simulator honours now for the realm's grant (None when there is
    none: revoked, expired), and how many refresh-token values it has issued for the grant."""
    oauth = sim.state.oauth
    grants = [g for g in list(oauth.grants.values()) if g.realm_id == realm]
    assert len(grants) == 1, grants
    grant = grants[0]
    now = sim.state.clock.now()
    live = [
        (oauth.refresh[t].issued, t)
        for t in list(grant.refresh)
        if t in oauth.refresh
        and oauth.refresh[t].superseded_at is None
        and now < oauth.refresh[t].expires
        and not grant.revoked
    ]
    return (max(live)[1] if live else None), len(grant.refresh)


def rotations_implied(sim: ThreadedServer, first_issued: float, refreshed_at: list[float]) -> int:
    """How many new refresh-token values the simulator's rule gives for refreshes at these
    simulated times: a refresh at least refresh_rotate_after_s after the current value was
    issued returns a new one (simulator/oauth.py)."""
    issued, rotations = first_issued, 0
    for at in refreshed_at:
        if at - issued >= sim.cfg.refresh_rotate_after_s:
            issued, rotations = at, rotations + 1
    return rotations


def token_row(conn: psycopg.Connection, org: uuid.UUID) -> dict:
    cur = conn.execute(
        """SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) AS access,
                  qbo_sync.decrypt_token(qbo_refresh_token_encrypted) AS refresh,
                  extract(epoch FROM qbo_token_expires_at - now()) AS expires_in,
                  is_active, inactive_reason, last_refresh_error, refresh_failure_count
             FROM qbo_connection WHERE organization_id = %s""",
        (org,),
    )
    names = [c.name for c in cur.description or []]
    return dict(zip(names, cur.fetchone(), strict=True))

"""Stand-ins for the client's unit tests: a scripted send function, real `requests.Response`
objects, a recording plpy. Standard library and requests only (these tests also run under
Debian's python3 with Debian's requests)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import requests
from qbo_sync_db import client, transport
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError

REALM = "9341453050298375"
#: shaped like an Intuit access token (a compact JWE); never to be seen in any output
TOKEN = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..Zk9vQmFyU2VjcmV0VG9rZW4xMjM0NTY3ODkw"
SIM_BASE = "http://127.0.0.1:8765"


def company(token: str = TOKEN, base: str = SIM_BASE) -> client.Company:
    return client.Company(REALM, base, token)


def response(
    status: int,
    body: str | bytes = "",
    content_type: str | None = "application/json;charset=UTF-8",
    headers: dict[str, str] | None = None,
    tid: str | None = "1-abc-def",
) -> requests.Response:
    """A real requests.Response, as the Session would return it."""
    resp = requests.Response()
    resp.status_code = status
    resp._content = body.encode() if isinstance(body, str) else body
    all_headers = dict(headers or {})
    if content_type:
        all_headers["Content-Type"] = content_type
    if tid:
        all_headers["intuit_tid"] = tid
    resp.headers = CaseInsensitiveDict(all_headers)
    resp.encoding = "utf-8"
    return resp


def sample_response(sample: tuple[int, str, str], **kwargs: Any) -> requests.Response:
    status, content_type, body = sample
    return response(status, body, content_type, **kwargs)


class ScriptedSend:
    """A send function answering from a script: responses are returned, exceptions raised."""

    def __init__(self, outcomes: Iterable[Any]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[client.Request, tuple[float, float]]] = []

    def __call__(self, request: client.Request, timeout: tuple[float, float]) -> Any:
        self.calls.append((request, timeout))
        if not self.outcomes:
            raise AssertionError("the transport sent more often than the script expected")
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class FakeClock:
    """clock() and sleep() together: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_transport(
    outcomes: Iterable[Any], policy: transport.RetryPolicy | None = None, **kwargs: Any
) -> tuple[transport.Transport, ScriptedSend, FakeClock, list[str]]:
    send = ScriptedSend(outcomes)
    clock = FakeClock()
    lines: list[str] = []
    t = transport.Transport(
        send,
        policy=policy or transport.RetryPolicy(),
        sleep=clock.sleep,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
        rng=random.Random(7),
        log=lines.append,
        **kwargs,
    )
    return t, send, clock, lines


def connection_refused() -> requests.ConnectionError:
    """What requests raises when nothing listens (urllib3's NewConnectionError inside)."""
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")
    return requests.ConnectionError(MaxRetryError(None, "/v3/company", reason))


class Raised(Exception):
    pass


class RecordingPlpy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def error(self, message: str, **kwargs: str) -> None:
        self.calls.append((message, kwargs))
        raise Raised(message)

"""The thin HTTP layer under qbo_sync_db.client: send a built `Request`, retry what is safe.

- One `requests.Session` per backend (module level, made on first use, keep-alive), with
  `trust_env` off: a `.netrc` or proxy variable in the database server's environment must not
  change where a token goes or replace the Authorization header. Redirects are not followed.
- Every call has a connect and a read timeout.
- Retries, bounded by attempts and by a deadline, with exponential backoff and jitter:
  a connection that was never made (any request); a timeout, a dropped connection or a 5xx only
  when the request is idempotent (reads, queries, writes with a requestid: the resent request
  is the same object, so a retried create reuses its requestid and QBO replays its first
  answer instead of creating twice); a 429 always (QBO did nothing), after Retry-After when QBO
  sends one. A Retry-After longer than the policy allows is not slept through in a database
  backend: the QB429 goes to the queue, whose backoff waits instead. Validation faults (400),
  401, 403 are never retried here (a 401 is the caller's cue to refresh the token once).
- Nothing said about a request (exception, log line, repr) contains its token or secrets:
  requests' own exceptions (which can quote headers) are replaced, not chained.

The send function is injectable (`Transport(send=...)`), as are sleep, clock and random, so all
of this is tested without a network.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from qbo_sync_db import client
from qbo_sync_db.errors import (
    QboApiError,
    QboRequestRejected,
    QboServerError,
    QboSyncError,
    QboThrottled,
    QboUnreachable,
    raise_error,
)

#: (connect, read) seconds: QBO answers most calls in well under a second; a 1000-row query
#: page or a batch can take several
DEFAULT_TIMEOUT = (5.0, 30.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `max_attempts` sends, never sleeping past `deadline` seconds
    after the first; backoff base·2^(n-1) capped at max_delay, with jitter (half to all of it)."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    throttle_base_delay: float = 2.0
    throttle_max_delay: float = 20.0
    max_retry_after: float = 30.0
    deadline: float = 60.0


DEFAULT_POLICY = RetryPolicy()
NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Response:
    """A successful (2xx) answer; `data` is the decoded JSON (amounts as Decimal) or None."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    data: Any = field(repr=False)
    intuit_tid: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Failure:
    """One attempt that failed: what QBO (or the network) said, and whether the request may
    have reached QBO (False only when no connection was ever made)."""

    error: QboApiError
    maybe_sent: bool = True


# ----------------------------------------------------------------------------- the session

_session: requests.Session | None = None


def get_session() -> requests.Session:
    """This backend's Session (made on first use; keeps connections alive between calls)."""
    global _session
    if _session is None:
        session = requests.Session()
        session.trust_env = False
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _session = session
    return _session


def close_session() -> None:
    global _session
    if _session is not None:
        _session.close()
        _session = None


def session_send(request: client.Request, timeout: tuple[float, float]) -> requests.Response:
    """The default send function: the backend's Session, no redirects, the given timeouts."""
    return get_session().request(
        request.method,
        request.url,
        headers=dict(request.headers),
        data=request.body,
        timeout=timeout,
        allow_redirects=False,
    )


SendFunction = Callable[[client.Request, tuple[float, float]], Any]


class Pacer(Protocol):
    """The caller's rate limit, shared by every backend calling the same company (the database
    side keeps it; qbo_sync_db.pacing has the arithmetic). `before` runs ahead of every attempt
    (retries included) and may wait or raise QboThrottled; `after` runs after every attempt that
    `before` let through, with the HTTP status (None: no answer) and the error if it failed,
    so a 429 can slow down every backend. `request.kind` is "call", "batch" or "oauth"."""

    def before(self, request: client.Request) -> None: ...

    def after(
        self, request: client.Request, status: int | None, error: QboApiError | None
    ) -> None: ...


# ----------------------------------------------------------------------------- decisions


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter for the wait after failed attempt `attempt` (1-based):
    between half and all of min(cap, base·2^(attempt-1))."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + rng.random() * ceiling / 2


def retry_delay(
    request: client.Request,
    failure: Failure,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before sending `request` again after `failure` on attempt `attempt`,
    or None when it must not be sent again."""
    if attempt >= policy.max_attempts:
        return None
    error = failure.error
    kind = client.error_class(error)
    if kind is QboThrottled:  # QBO did nothing: safe to resend anything
        if error.retry_after is not None:
            if error.retry_after > policy.max_retry_after:
                return None
            delay = error.retry_after + rng.random() * min(1.0, policy.base_delay)
        else:
            delay = backoff(attempt, policy.throttle_base_delay, policy.throttle_max_delay, rng)
    elif kind in (QboServerError, QboUnreachable):
        # QBO may have done the work: resend only what is safe to send twice, or what never
        # left this machine
        if failure.maybe_sent and not request.idempotent:
            return None
        delay = backoff(attempt, policy.base_delay, policy.max_delay, rng)
    else:
        return None  # rejected, unauthorized, forbidden: the same request gets the same answer
    if elapsed + delay > policy.deadline:
        return None
    return delay


def _never_connected(exc: BaseException) -> bool:
    """Did the request fail before a connection was made (so QBO cannot have seen it)?"""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        names = {cls.__name__ for cls in type(reason).__mro__} if reason is not None else set()
        return "NewConnectionError" in names or "ConnectTimeoutError" in names
    return False


#: the request could not be built or sent at all (a bad URL, a header value with a line
#: break): a local problem, never retried
LOCAL_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
    ValueError,
    TypeError,
)


def _network_failure(
    exc: BaseException, request: client.Request, timeout: tuple[float, float]
) -> Failure:
    """What a network exception means, said without quoting it (requests' messages can hold
    a URL or a header value)."""
    if isinstance(exc, requests.ConnectTimeout):
        what = f"connect timeout after {timeout[0]:g} s"
    elif isinstance(exc, requests.ReadTimeout):
        what = f"read timeout after {timeout[1]:g} s"
    else:
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", None) or reason
        name = type(inner).__name__ if isinstance(inner, BaseException) else type(exc).__name__
        what = f"connection failed ({name})"
    error = client.network_error(what, request.label or request.path, request.secrets)
    return Failure(error, maybe_sent=not _never_connected(exc))


def _evaluate(request: client.Request, raw: Any, now: float, attempt: int) -> Response | Failure:
    status = int(raw.status_code)
    headers = raw.headers
    body = raw.content or b""
    tid = client.intuit_tid(headers)
    if not 200 <= status < 300:
        return Failure(client.parse_error(status, headers, body, request.secrets, now))
    data = None
    if request.expects_json:
        try:
            data = client.decode_json(body)
        except ValueError:
            return Failure(client.parse_error(status, headers, body, request.secrets, now))
        if isinstance(data, dict) and ("Fault" in data or "fault" in data):
            return Failure(client.parse_error(status, headers, body, request.secrets, now))
    return Response(status, headers, body, data, tid, attempt)


# ----------------------------------------------------------------------------- the transport


class Transport:
    """Sends requests with timeouts and the retries above; raises QboSyncError subclasses
    (each carrying the parsed `api_error`)."""

    def __init__(
        self,
        send: SendFunction | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        log: Callable[[str], None] | None = None,
        pacer: Pacer | None = None,
        on_retry: Callable[[client.Request, QboApiError, int, float], None] | None = None,
    ) -> None:
        if timeout[0] <= 0 or timeout[1] <= 0:
            raise ValueError("both timeouts must be positive")
        self._send = send or session_send
        self.timeout = timeout
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self.log = log
        self.pacer = pacer
        #: told of every failed attempt that is retried (request, error, attempt, delay)
        self.on_retry = on_retry

    def __repr__(self) -> str:
        return f"Transport(timeout={self.timeout!r}, policy={self.policy!r})"

    def send(self, request: client.Request) -> Response:
        """Send `request` (the same object every attempt: same URL, same requestid) until it
        succeeds or must not be sent again."""
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            outcome = self._paced_attempt(request, attempt)
            if isinstance(outcome, Response):
                return outcome
            elapsed = self.clock() - started
            delay = retry_delay(request, outcome, attempt, elapsed, self.policy, self.rng)
            if delay is None:
                # raised here, outside any except block: no requests exception is chained
                raise client.to_exception(outcome.error, request.label)
            self._log(request, outcome.error, attempt, delay)
            if self.on_retry is not None:
                self.on_retry(request, outcome.error, attempt, delay)
            self.sleep(delay)

    def _paced_attempt(self, request: client.Request, attempt: int) -> Response | Failure:
        if self.pacer is None:
            return self._attempt(request, attempt)
        self.pacer.before(request)
        outcome: Response | Failure | None = None
        try:
            outcome = self._attempt(request, attempt)
            return outcome
        finally:
            if isinstance(outcome, Response):
                self.pacer.after(request, outcome.status, None)
            elif isinstance(outcome, Failure):
                self.pacer.after(request, outcome.error.http_status, outcome.error)
            else:  # the request could not be sent (QboRequestRejected on its way up)
                self.pacer.after(request, None, None)

    def _attempt(self, request: client.Request, attempt: int) -> Response | Failure:
        try:
            raw = self._send(request, self.timeout)
        except LOCAL_ERRORS as exc:
            kind = type(exc).__name__
        except (requests.RequestException, OSError) as exc:
            return _network_failure(exc, request, self.timeout)
        else:
            return _evaluate(request, raw, self.wall_clock(), attempt)
        # raised after the except blocks, so the requests exception is not chained
        error = QboApiError(
            "local",
            None,
            None,
            f"the request for {request.label or request.path} could not be sent ({kind})",
        )
        raise QboRequestRejected(
            error.message,
            hint="a bad value in the request (a token with a line break, a bad URL) or a bug",
            api_error=error,
        )

    def _log(self, request: client.Request, error: QboApiError, attempt: int, delay: float) -> None:
        if self.log is None:
            return
        tid = f", intuit_tid {error.intuit_tid}" if error.intuit_tid else ""
        rid = f", requestid {request.requestid}" if request.requestid else ""
        line = (
            f"qbo-sync: {request.label or request.path}: {client.describe(error)}{tid}; "
            f"attempt {attempt} of {self.policy.max_attempts}, again in {delay:.2f} s{rid}"
        )
        self.log(client.redact(line, request.secrets))


# ----------------------------------------------------------------------------- in the database

_default: Transport | None = None


def default_transport() -> Transport:
    global _default
    if _default is None:
        _default = Transport()
    return _default


def execute(plpy: Any, request: client.Request, transport: Transport | None = None) -> Response:
    """Send `request` from PL/Python: a failure is raised in the database with its SQLSTATE
    (QB429, QB500, QB504, QB400, QB401, QB403, QB410), hint and detail."""
    error: QboSyncError | None = None
    try:
        return (transport or default_transport()).send(request)
    except QboSyncError as exc:
        error = exc
    raise_error(plpy, error)

"""One organization's QuickBooks company, as the worker's jobs call it.

`Connection(plpy, tx, organization_id).send(request_builder)` is the one way a job reaches QBO:

* the request is built for the connection's realm and base URL (production, sandbox or the
  simulator URL the owner set) with its current access token;
* every attempt goes through the realm's shared pacer (qbo_sync_db.shared_pacer), which commits
  the job's work so far before the request leaves;
* an access token about to expire is refreshed first, in a transaction of its own that commits
  the rotated pair before anything else can fail;
* a 401 refreshes once and retries once: with the token another backend stored meanwhile when
  there is one, else after a forced refresh. A second 401 fails the job (QB401); a refresh that
  ends the connection (invalid_grant) fails it with QB410.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from qbo_sync_db import client, db, secrets, transport
from qbo_sync_db.errors import (
    ConfigurationError,
    QboApiError,
    QboReconnectNeeded,
    QboSyncError,
    QboUnauthorized,
    error_class,
)
from qbo_sync_db.shared_pacer import SharedPacer
from qbo_sync_db.txn import Transaction

LOAD = """
SELECT c.realm_id, c.environment, c.api_base_url, c.is_active, c.inactive_reason,
       pg_catalog.date_part('epoch', c.qbo_token_expires_at - pg_catalog.clock_timestamp())
           AS expires_in,
       qbo_sync.decrypt_token(c.qbo_access_token_encrypted) AS access_token
  FROM public.qbo_connection AS c
 WHERE c.organization_id = $1"""

SETTINGS = """
SELECT qbo_sync.setting('pacing.limits') AS limits,
       qbo_sync.setting_numeric('pacing.max_wait_seconds') AS max_wait,
       qbo_sync.setting_numeric('pacing.lock_timeout_ms') AS lock_timeout_ms"""

#: the refresh as the token job and the worker's prepare step make it (one per connection at a
#: time, tables checked, no statement timeout), in the step's own transaction
REFRESH = "SELECT qbo_sync.token_refresh($1, $2)::text AS outcome"

#: refresh before a call when the access token has less than this left
EXPIRY_GUARD_SECONDS = 60.0
#: how many retried failures a job's summary keeps (the latest)
RETRIED_KEPT = 20


class Connection:
    """A job's view of its organization's QBO connection (see the module docstring)."""

    def __init__(
        self,
        plpy: Any,
        tx: Transaction,
        organization_id: str,
        *,
        sender: transport.Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        before_call: Callable[[], None] | None = None,
    ) -> None:
        self.plpy = plpy
        self.tx = tx
        self.organization_id = organization_id
        self.clock = clock
        self.before_call = before_call
        settings = db.execute(plpy, SETTINGS, [], [])[0]
        self._load()
        client_id, _ = secrets.app_credentials(plpy)
        self.pacer = SharedPacer(
            plpy,
            tx,
            self.company.realm_id,
            client_id,
            json.loads(settings["limits"] or "{}"),
            max_wait_seconds=float(settings["max_wait"]),
            lock_timeout_ms=int(settings["lock_timeout_ms"]),
        )
        base = sender or transport.default_transport()
        self.transport = transport.Transport(
            base._send,
            timeout=base.timeout,
            policy=base.policy,
            sleep=base.sleep,
            log=base.log,
            pacer=self.pacer,
            on_retry=self._note_retry,
        )
        self.pacer.linger_seconds = self.transport.timeout[1]
        self.pacer.before_attempt = before_call
        self.calls = 0
        self.refreshes = 0
        #: the failed attempts that were retried (the last RETRIED_KEPT), for the job's history
        self.retried: list[dict[str, Any]] = []

    def _note_retry(
        self, request: client.Request, error: QboApiError, attempt: int, delay: float
    ) -> None:
        self.retried.append(
            {
                "request": request.label or request.path,
                "attempt": attempt,
                "http_status": error.http_status,
                "code": error.code,
                "intuit_tid": error.intuit_tid,
            }
        )
        del self.retried[:-RETRIED_KEPT]

    def _load(self) -> None:
        rows = db.execute(self.plpy, LOAD, ["uuid"], [self.organization_id])
        if not rows:
            raise QboReconnectNeeded(
                f"organization {self.organization_id} has no QuickBooks connection",
                hint="connect it: SELECT qbo_oauth_initiate(...)",
            )
        row = rows[0]
        if not row["is_active"]:
            raise QboReconnectNeeded(
                f"the QuickBooks connection is not active: {row['inactive_reason']}",
                hint="reconnect the organization to QuickBooks",
            )
        if not row["access_token"]:
            raise ConfigurationError(
                "the connection has no access token", hint="refresh or reconnect it"
            )
        ends = client.endpoints(row["environment"], row["api_base_url"])
        self.company = client.Company(row["realm_id"], ends.api_base, row["access_token"])
        expires_in = row["expires_in"]
        self.expires_at = self.clock() + (float(expires_in) if expires_in is not None else 0.0)

    def _refresh(self, force: bool) -> None:
        """Refresh in a transaction of its own, committed before anything else can fail.

        A refresh that could not be made (the token endpoint down, a timeout) fails the call
        with its own, retryable, error when the token is known to be refused (`force`: after a
        401); before expiry the current token is used while it lasts."""
        self.tx.commit()
        outcome = json.loads(
            db.execute(self.plpy, REFRESH, ["uuid", "boolean"], [self.organization_id, force])[0][
                "outcome"
            ]
        )
        self.tx.commit()
        if outcome["refreshed"]:
            self.refreshes += 1
        if not outcome["active"]:
            raise QboReconnectNeeded(
                outcome["error"] or "the connection is not active",
                hint="reconnect the organization to QuickBooks",
            )
        if force and not outcome["refreshed"] and outcome["error"]:
            raise error_class(outcome["sqlstate"])(
                outcome["error"], hint="the job is retried; the connection stays active"
            )
        self._load()

    def send(self, build: Callable[[client.Company], client.Request]) -> transport.Response:
        """Build the request for this company and send it (paced, retried, 401 handled)."""
        if self.clock() > self.expires_at - EXPIRY_GUARD_SECONDS:
            self._refresh(force=False)
        if self.before_call is not None:
            self.before_call()
        request = build(self.company)
        self.calls += 1
        try:
            return self.transport.send(request)
        except QboUnauthorized:
            used = self.company.access_token
        self._refresh_after_401(used)
        return self.transport.send(request.with_access_token(self.company.access_token))

    def _refresh_after_401(self, used_token: str) -> None:
        self.tx.commit()
        self._load()
        if self.company.access_token != used_token:
            return  # another backend refreshed meanwhile: retry with its token
        self._refresh(force=True)


def describe(error: BaseException) -> dict[str, Any]:
    """What a failed call said, for the job's history: SQLSTATE, message, intuit_tid."""
    if isinstance(error, QboSyncError):
        api_error = error.api_error
        return {
            "sqlstate": error.sqlstate,
            "message": error.message,
            "intuit_tid": api_error.intuit_tid if api_error is not None else None,
        }
    return {"sqlstate": "XX000", "message": str(error), "intuit_tid": None}

"""Refreshing one connection's tokens, as qbo_token_refresh() does it inside the database.

* One refresh per connection at a time: the connection's row is locked (FOR UPDATE, under the
  caller's lock_timeout). A caller that waited finds the token fresh and uses it: no second
  refresh, so no second rotation racing the first (the classic cause of invalid_grant).
* The outcome is written to the row and returned, never raised: an error would roll the row back,
  and with it a rotated refresh token QBO has already replaced. The caller commits it before
  doing anything else that could fail (the worker and the token job refresh as a step of their
  own, in a transaction of its own).
* invalid_grant ends the connection (inactive, with the reason); network errors, timeouts and 5xx
  answers from the token endpoint only note the failure and leave it active.
* Tokens only ever travel as parameters of prepared statements, never in statement text.
"""

from __future__ import annotations

from typing import Any

from qbo_sync_db import client, db, secrets, transport
from qbo_sync_db.errors import QboReconnectNeeded, QboSyncError

LOCK_CONNECTION = """
SELECT c.environment, c.api_base_url, c.is_active, c.inactive_reason,
       c.qbo_token_expires_at > now() + make_interval(secs => $2::double precision) AS fresh,
       qbo_sync.decrypt_token(c.qbo_refresh_token_encrypted) AS refresh_token
  FROM public.qbo_connection AS c
 WHERE c.organization_id = $1
   FOR UPDATE"""

#: a rotated pair is stored durably whatever the session's synchronous_commit (the worker's is
#: off): Intuit has already retired the old refresh token
DURABLE = "SELECT pg_catalog.set_config('synchronous_commit', 'on', true)"

STORE_TOKENS = """
UPDATE public.qbo_connection AS c
   SET qbo_access_token_encrypted = qbo_sync.encrypt_token($2),
       qbo_refresh_token_encrypted = qbo_sync.encrypt_token($3),
       qbo_token_expires_at = now() + make_interval(secs => $4::double precision),
       qbo_refresh_token_expires_at = coalesce(
           now() + make_interval(secs => $5::double precision), c.qbo_refresh_token_expires_at),
       qbo_refresh_token_hard_expires_at = coalesce(
           now() + make_interval(secs => $6::double precision),
           c.qbo_refresh_token_hard_expires_at),
       last_refreshed_at = now(), last_refresh_error = NULL, refresh_failure_count = 0,
       updated_at = now()
 WHERE c.organization_id = $1"""

NOTE_FAILURE = """
UPDATE public.qbo_connection AS c
   SET last_refresh_error = $2, refresh_failure_count = c.refresh_failure_count + 1,
       is_active = CASE WHEN $3 THEN false ELSE c.is_active END,
       inactive_reason = CASE WHEN $3 THEN $2 ELSE c.inactive_reason END,
       updated_at = now()
 WHERE c.organization_id = $1"""


def refresh(
    plpy: Any,
    organization_id: str,
    margin_seconds: float,
    force: bool = False,
    sender: transport.Transport | None = None,
) -> dict[str, Any]:
    """Refresh the tokens of `organization_id`'s connection unless they are good for
    `margin_seconds` more (or `force`). Returns what happened, for the caller and the history:
    {"refreshed": bool, "active": bool, "error": str | None, "sqlstate": str | None}."""
    rows = db.execute(plpy, LOCK_CONNECTION, ["uuid", "numeric"], [organization_id, margin_seconds])
    if not rows:
        return outcome(False, False, f"organization {organization_id} has no QuickBooks connection")
    row = rows[0]
    if not row["is_active"]:
        return outcome(False, False, f"the connection is not active: {row['inactive_reason']}")
    if row["fresh"] and not force:
        return outcome(False, True, None)  # refreshed meanwhile by whoever held the lock
    try:
        ends = client.endpoints(row["environment"], row["api_base_url"])
        client_id, client_secret = secrets.app_credentials(plpy)
        request = client.refresh_token_request(
            ends, client_id, client_secret, row["refresh_token"] or ""
        )
        answer = (sender or transport.default_transport()).send(request)
        tokens = client.parse_token_response(answer.data)
    except QboSyncError as exc:
        ends_connection = isinstance(exc, QboReconnectNeeded)
        message = f"token refresh failed: {exc.message}"
        if ends_connection:
            message = f"invalid_grant: {exc.message} (reconnect the organization to QuickBooks)"
        db.execute(
            plpy,
            NOTE_FAILURE,
            ["uuid", "text", "boolean"],
            [organization_id, message[:1000], ends_connection],
        )
        return outcome(False, not ends_connection, message, exc.sqlstate)
    db.execute(plpy, DURABLE, [], [])
    db.execute(
        plpy,
        STORE_TOKENS,
        ["uuid", "text", "text", "integer", "integer", "integer"],
        [
            organization_id,
            tokens.access_token,
            tokens.refresh_token,
            tokens.expires_in,
            tokens.refresh_expires_in,
            tokens.refresh_hard_expires_in,
        ],
    )
    return outcome(True, True, None)


def outcome(
    refreshed: bool, active: bool, error: str | None, sqlstate: str | None = None
) -> dict[str, Any]:
    return {"refreshed": refreshed, "active": active, "error": error, "sqlstate": sqlstate}

"""Connecting an organization to QBO: the authorization URL, the callback and disconnecting.

`initiate` hands out a random, single-use `state` and stores only its SHA-256; `callback` checks
it (unknown, used, expired → a clear error and nothing stored), exchanges the code once, stores
both tokens encrypted with their expiries and activates the connection; `disconnect` revokes at
Intuit and deactivates. Tokens and the state travel only as parameters of prepared statements.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from qbo_sync_db import client, db, secrets, transport
from qbo_sync_db.errors import QboRequestRejected, QboSyncError, raise_error

INTUIT_AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
SIMULATOR_AUTHORIZE_PATH = "/connect/oauth2"
SCOPE = "com.intuit.quickbooks.accounting"


def new_state() -> str:
    """256 random bits, URL-safe."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def authorize_url(environment: str, api_base_url: str | None) -> str:
    ends = client.endpoints(environment, api_base_url)  # validates environment and URL
    if environment == "simulator":
        return ends.api_base + SIMULATOR_AUTHORIZE_PATH
    return INTUIT_AUTHORIZE_URL  # the same for sandbox and production


def authorization_url(base: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{base}?{query}"


def redirect_uri_problem(environment: str, redirect_uri: str) -> str | None:
    """Why `redirect_uri` cannot be used (Intuit takes only https, or http on localhost)."""
    parts = urlsplit(redirect_uri or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "redirect_uri must be an absolute http(s) URL"
    local = parts.hostname in ("localhost", "127.0.0.1")
    if environment != "simulator" and parts.scheme != "https" and not local:
        return "redirect_uri must be https (or http on localhost), as Intuit requires"
    return None


def parse_redirect(location: str) -> tuple[str, str, str]:
    """(code, state, realmId) from the URL QBO redirects the person to."""
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise QboRequestRejected(f"QBO refused the connection: {query['error'][0]}")
    try:
        return query["code"][0], query["state"][0], query["realmId"][0]
    except (KeyError, IndexError):
        raise QboRequestRejected("the redirect carries no code, state and realmId") from None


INSERT_STATE = """
INSERT INTO public.qbo_oauth_state
    (state_hash, organization_id, redirect_uri, environment, api_base_url)
VALUES ($1, $2, $3, $4, $5)"""

TAKE_STATE = """
SELECT s.organization_id, s.redirect_uri, s.environment, s.api_base_url,
       s.consumed_at IS NOT NULL AS used, s.expires_at < now() AS expired
  FROM public.qbo_oauth_state AS s
 WHERE s.state_hash = $1
   FOR UPDATE"""

REALM_OWNER = """
SELECT c.organization_id FROM public.qbo_connection AS c
 WHERE c.realm_id = $1 AND c.organization_id <> $2"""

STORE_CONNECTION = """
INSERT INTO public.qbo_connection AS c
    (organization_id, realm_id, environment, api_base_url, qbo_access_token_encrypted,
     qbo_refresh_token_encrypted, qbo_token_expires_at, qbo_refresh_token_expires_at,
     qbo_refresh_token_hard_expires_at, is_active, inactive_reason, connected_at, last_refreshed_at,
     company_name)
VALUES ($1, $2, $3, $4, qbo_sync.encrypt_token($5), qbo_sync.encrypt_token($6),
        now() + make_interval(secs => $7::double precision),
        now() + make_interval(secs => $8::double precision),
        now() + make_interval(secs => $9::double precision), true, NULL, now(), now(), $10)
ON CONFLICT (organization_id) DO UPDATE
   SET realm_id = EXCLUDED.realm_id, environment = EXCLUDED.environment,
       api_base_url = EXCLUDED.api_base_url,
       qbo_access_token_encrypted = EXCLUDED.qbo_access_token_encrypted,
       qbo_refresh_token_encrypted = EXCLUDED.qbo_refresh_token_encrypted,
       qbo_token_expires_at = EXCLUDED.qbo_token_expires_at,
       qbo_refresh_token_expires_at = EXCLUDED.qbo_refresh_token_expires_at,
       qbo_refresh_token_hard_expires_at = EXCLUDED.qbo_refresh_token_hard_expires_at,
       is_active = true, inactive_reason = NULL, connected_at = now(), last_refreshed_at = now(),
       last_refresh_error = NULL, refresh_failure_count = 0, updated_at = now(),
       company_name = EXCLUDED.company_name"""

CONNECTED_REALM = """
SELECT c.realm_id FROM public.qbo_connection AS c WHERE c.organization_id = $1 AND c.is_active"""

CONSUME_STATE = """
UPDATE public.qbo_oauth_state AS s SET consumed_at = now(), realm_id = $2 WHERE s.state_hash = $1"""


def initiate(
    plpy: Any,
    organization_id: str,
    redirect_uri: str,
    environment: str,
    api_base_url: str | None,
) -> str:
    """The URL to send the person to; its state is stored hashed, for 10 minutes, once."""
    problem = redirect_uri_problem(environment, redirect_uri)
    if problem:
        plpy.error(
            problem, sqlstate="22023", hint="use the exact URI registered with the Intuit app"
        )
    try:
        base = authorize_url(environment, api_base_url)
    except QboSyncError as exc:
        raise_error(plpy, exc)
    state = new_state()
    db.execute(
        plpy,
        INSERT_STATE,
        ["text", "uuid", "text", "text", "text"],
        [state_hash(state), organization_id, redirect_uri, environment, api_base_url],
    )
    client_id = secrets.get_secret(plpy, "QBO_CLIENT_ID")
    return authorization_url(base, client_id, redirect_uri, state)


def callback(
    plpy: Any, code: str, state: str, realm_id: str, sender: transport.Transport | None = None
) -> str:
    """Complete the connection the state was handed out for; returns its organization id."""
    rows = db.execute(plpy, TAKE_STATE, ["text"], [state_hash(state or "")])
    problem = None
    if not rows:
        problem = "unknown OAuth state: start again with qbo_oauth_initiate"
    elif rows[0]["used"]:
        problem = "this OAuth state was used already: start again with qbo_oauth_initiate"
    elif rows[0]["expired"]:
        problem = "this OAuth state expired (after 10 minutes): start again with qbo_oauth_initiate"
    elif not code or not realm_id or not realm_id.isdigit():
        problem = "the callback needs the code and the numeric realmId QBO sent"
    if problem:
        plpy.error(problem, sqlstate="22023")  # invalid_parameter_value
    row = rows[0]
    organization_id = row["organization_id"]
    taken = db.execute(plpy, REALM_OWNER, ["text", "uuid"], [realm_id, organization_id])
    if taken:
        plpy.error(
            f"QuickBooks company {realm_id} is already connected to another organization",
            sqlstate="23505",  # unique_violation: one organization per company
            hint="disconnect it there first (qbo_sync.disconnect)",
        )
    try:
        ends = client.endpoints(row["environment"], row["api_base_url"])
        client_id, client_secret = secrets.app_credentials(plpy)
        request = client.authorization_code_request(
            ends, client_id, client_secret, code, row["redirect_uri"]
        )
        send = (sender or transport.default_transport()).send
        tokens = client.parse_token_response(send(request).data)
        # The token endpoint does not say which company the tokens are for: the realmId came in
        # the redirect's query string, which whoever holds the state could change. Reading the
        # company with the new token proves it (a token for another company is refused).
        company = client.Company(realm_id, ends.api_base, tokens.access_token)
        info = send(client.read_request(company, "CompanyInfo", realm_id)).data
    except QboSyncError as exc:
        raise_error(plpy, exc)
    company_name = _company_name(info)
    connected = db.execute(plpy, CONNECTED_REALM, ["uuid"], [organization_id])
    if connected and connected[0]["realm_id"] != realm_id:
        plpy.error(
            f"this organization is connected to QuickBooks company {connected[0]['realm_id']}, "
            f"not {realm_id}",
            sqlstate="23505",
            hint="disconnect it first (qbo_sync.disconnect): its synced rows are that company's",
        )
    db.execute(
        plpy,
        STORE_CONNECTION,
        ["uuid", "text", "text", "text", "text", "text", "integer", "integer", "integer", "text"],
        [
            organization_id,
            realm_id,
            row["environment"],
            row["api_base_url"],
            tokens.access_token,
            tokens.refresh_token,
            tokens.expires_in,
            tokens.refresh_expires_in or 8726400,
            tokens.refresh_hard_expires_in,
            company_name,
        ],
    )
    db.execute(plpy, CONSUME_STATE, ["text", "text"], [state_hash(state), realm_id])
    return organization_id


def _company_name(info: Any) -> str | None:
    """The company's name from a CompanyInfo read (None when QBO gave none)."""
    company = info.get("CompanyInfo") if isinstance(info, dict) else None
    name = company.get("CompanyName") if isinstance(company, dict) else None
    return str(name)[:200] if name else None


LOCK_FOR_DISCONNECT = """
SELECT c.environment, c.api_base_url,
       qbo_sync.decrypt_token(c.qbo_refresh_token_encrypted) AS refresh_token
  FROM public.qbo_connection AS c WHERE c.organization_id = $1 FOR UPDATE"""

DEACTIVATE = """
UPDATE public.qbo_connection AS c
   SET is_active = false, inactive_reason = $2, qbo_access_token_encrypted = NULL,
       qbo_refresh_token_encrypted = NULL, qbo_token_expires_at = NULL, updated_at = now()
 WHERE c.organization_id = $1"""


def disconnect(
    plpy: Any, organization_id: str, reason: str, sender: transport.Transport | None = None
) -> dict[str, Any]:
    """Revoke the refresh token at Intuit (which disconnects the app from the company) and
    deactivate with `reason`; a revoke that fails is said in the reason, never left half done."""
    rows = db.execute(plpy, LOCK_FOR_DISCONNECT, ["uuid"], [organization_id])
    if not rows:
        plpy.error(f"organization {organization_id} has no QuickBooks connection", sqlstate="P0002")
    row = rows[0]
    revoked = False
    note = reason
    if row["refresh_token"]:
        try:
            ends = client.endpoints(row["environment"], row["api_base_url"])
            client_id, client_secret = secrets.app_credentials(plpy)
            request = client.revoke_request(ends, client_id, client_secret, row["refresh_token"])
            (sender or transport.default_transport()).send(request)
            revoked = True
        except QboSyncError as exc:
            note = f"{reason} (revoking at Intuit failed: {exc.message})"
    db.execute(plpy, DEACTIVATE, ["uuid", "text"], [organization_id, note[:1000]])
    return {"revoked": revoked, "reason": note}


def follow_consent(url: str, timeout: float = 10.0) -> str:
    """Open an authorization URL as the person's browser would, without following the redirect
    back: the simulator consents at once and answers with the redirect to the callback."""
    import requests

    answer = requests.get(url, allow_redirects=False, timeout=timeout)
    location = answer.headers.get("Location")
    if answer.status_code not in (301, 302, 303, 307) or not location:
        raise QboRequestRejected(
            f"the authorization page answered {answer.status_code}, not a redirect"
        )
    return location

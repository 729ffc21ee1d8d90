"""OAuth 2.0 server as Intuit runs it: discovery, consent, token (both grants), revoke, userinfo.

Access tokens live ``access_token_ttl_s``; refresh tokens have a rolling expiry, a hard 5-year
cap, and rotate: a refresh later than ``refresh_rotate_after_s`` after the current value was
issued returns a new value (with a fresh ``refresh_token_ttl_s``) and the old one stops working
after ``refresh_grace_s``; a refresh inside that window returns the same value with its
remaining lifetime. An authorization code exchanged a second time is refused and revokes the
tokens of its first exchange. Tokens are opaque random strings; they are never logged.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from simulator import faults
from simulator.config import AppConfig
from simulator.errors import json_response

if TYPE_CHECKING:
    from simulator.state import State

JWE_PREFIX = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.."
ACCESS_RANDOM_BYTES = 600
ACCESS_TOKEN_LENGTH = len(JWE_PREFIX) + 800  # token_urlsafe(600) gives 800 characters
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def well_formed_access_token(token: str) -> bool:
    """Has the shape of a simulator access token (prefix, length, alphabet), issued or not."""
    return (
        len(token) == ACCESS_TOKEN_LENGTH
        and token.startswith(JWE_PREFIX)
        and all(ch in _URLSAFE for ch in token[len(JWE_PREFIX) :])
    )


@dataclass
class Grant:
    """One consent of one app for one realm; revoking it kills all its tokens."""

    grant_id: str
    client_id: str
    realm_id: str
    created: float
    revoked: bool = False
    access: set[str] = field(default_factory=set)
    refresh: set[str] = field(default_factory=set)


@dataclass
class AccessToken:
    grant: Grant
    expires: float


@dataclass
class RefreshToken:
    grant: Grant
    issued: float  # when this value was first returned
    expires: float  # rolling expiry
    hard_expires: float
    superseded_at: float | None = None  # set when a newer value was issued


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    realm_id: str
    expires: float
    scope: str
    grant_id: str | None = None  # the grant its (single) exchange created


class OAuthServer:
    def __init__(self, state: State) -> None:
        self.state = state
        self.codes: dict[str, AuthCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.grants: dict[str, Grant] = {}

    # -- apps -------------------------------------------------------------------------------

    def app(self, client_id: str) -> AppConfig | None:
        for app in self.state.cfg.apps:
            if app.client_id == client_id:
                return app
        return None

    def register_app(
        self, client_id: str | None, client_secret: str | None, redirect_uris: list[str]
    ) -> AppConfig:
        app = AppConfig(
            client_id or "app-" + secrets.token_hex(8),
            client_secret or secrets.token_urlsafe(24),
            list(redirect_uris),
        )
        self.state.cfg.apps = [a for a in self.state.cfg.apps if a.client_id != app.client_id]
        self.state.cfg.apps.append(app)
        return app

    def _client_from_basic(self, request: web.Request) -> AppConfig | None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, _, secret = raw.partition(":")
        app = self.app(client_id)
        if app is None or not secrets.compare_digest(app.client_secret, secret):
            return None
        return app

    # -- tokens -----------------------------------------------------------------------------

    def _issue(self, grant: Grant, now: float, hard_expires: float) -> tuple[str, str]:
        cfg = self.state.cfg
        access = JWE_PREFIX + secrets.token_urlsafe(ACCESS_RANDOM_BYTES)
        self.access[access] = AccessToken(grant, now + cfg.access_token_ttl_s)
        grant.access.add(access)
        refresh = f"RT1-{secrets.randbelow(90) + 10}-H0-{int(now)}{secrets.token_hex(10)}"
        self.refresh[refresh] = RefreshToken(
            grant, now, min(now + cfg.refresh_token_ttl_s, hard_expires), hard_expires
        )
        grant.refresh.add(refresh)
        return access, refresh

    def issue_for(self, realm_id: str, client_id: str) -> dict[str, Any]:
        """A fresh grant and token pair (control surface shortcut)."""
        now = self.state.clock.now()
        grant = Grant("g" + secrets.token_hex(8), client_id, realm_id, now)
        self.grants[grant.grant_id] = grant
        access, refresh = self._issue(grant, now, now + self.state.cfg.refresh_token_hard_ttl_s)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.state.cfg.access_token_ttl_s,
        }

    def check_access(self, token: str, now: float) -> AccessToken | str:
        """The token record, or a reason why it is not usable."""
        rec = self.access.get(token)
        if rec is None:
            return "unknown"
        if rec.grant.revoked:
            return "revoked"
        if now >= rec.expires:
            return "expired"
        return rec

    def revoke_grant(self, grant: Grant) -> None:
        # Access-token records stay (their grant is marked revoked) so that a revoked token is
        # told apart from a never-issued one: 3200 "Token revoked" versus fault 100.
        grant.revoked = True
        for tok in grant.refresh:
            self.refresh.pop(tok, None)

    def expire_tokens(self, realm_id: str | None, kind: str, now: float) -> int:
        """Control surface: make access and/or refresh tokens expired right now."""
        n = 0
        if kind in ("access", "all"):
            for rec in self.access.values():
                if realm_id in (None, rec.grant.realm_id) and rec.expires > now:
                    rec.expires = now
                    n += 1
        if kind in ("refresh", "all"):
            for rec in self.refresh.values():
                if realm_id in (None, rec.grant.realm_id) and rec.expires > now:
                    rec.expires = now
                    n += 1
        return n

    def revoke_realm(self, realm_id: str | None) -> int:
        grants = [
            g for g in self.grants.values() if realm_id in (None, g.realm_id) and not g.revoked
        ]
        for grant in grants:
            self.revoke_grant(grant)
        return len(grants)

    # -- handlers ---------------------------------------------------------------------------

    def base_url(self, request: web.Request) -> str:
        return self.state.cfg.public_url or f"{request.scheme}://{request.host}"

    async def discovery(self, request: web.Request) -> web.Response:
        base = self.base_url(request)
        return json_response(
            {
                "issuer": f"{base}/op/v1",
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": [
                    "openid",
                    "email",
                    "profile",
                    "address",
                    "phone",
                    "com.intuit.quickbooks.accounting",
                    "com.intuit.quickbooks.payment",
                ],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        return json_response({"keys": []})

    async def authorize(self, request: web.Request) -> web.Response:
        """Consent at once and redirect back with code, state and realmId."""
        q = request.query
        app = self.app(q.get("client_id", ""))
        if app is None:
            return web.Response(status=400, text="invalid_client: unknown client_id")
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri or (
            redirect_uri not in app.redirect_uris and not self.state.cfg.allow_any_redirect_uri
        ):
            return web.Response(status=400, text="invalid_request: redirect_uri is not registered")
        state_param = q.get("state", "")
        if q.get("response_type") != "code":
            return self._redirect(
                redirect_uri, {"error": "unsupported_response_type", "state": state_param}
            )
        scope = q.get("scope", "")
        if not scope.strip():
            return self._redirect(redirect_uri, {"error": "invalid_scope", "state": state_param})
        if q.get("deny") == "1":  # simulator extension: the user declines
            return self._redirect(redirect_uri, {"error": "access_denied", "state": state_param})
        realm = self.state.realm_for_consent(q.get("realmId") or q.get("realm_id"))
        now = self.state.clock.now()
        code = "AB" + secrets.token_urlsafe(60)
        self.codes[code] = AuthCode(
            app.client_id, redirect_uri, realm.realm_id, now + self.state.cfg.auth_code_ttl_s, scope
        )
        return self._redirect(
            redirect_uri, {"code": code, "state": state_param, "realmId": realm.realm_id}
        )

    @staticmethod
    def _redirect(uri: str, params: dict[str, str]) -> web.Response:
        sep = "&" if "?" in uri else "?"
        raise web.HTTPFound(uri + sep + urlencode(params))

    @staticmethod
    def _error(error: str, status: int = 400, description: str | None = None) -> web.Response:
        body: dict[str, Any] = {"error": error}
        if description:
            body["error_description"] = description
        return json_response(body, status=status)

    async def token(self, request: web.Request) -> web.Response:
        injected = await faults.before(self.state, request, oauth=True)
        if injected is not None:
            return injected
        app = self._client_from_basic(request)
        if app is None:
            return self._error("invalid_client", 401)
        form = await request.post()
        grant_type = form.get("grant_type")
        now = self.state.clock.now()
        cfg = self.state.cfg
        if grant_type == "authorization_code":
            code_value = str(form.get("code") or "")
            if not code_value or not form.get("redirect_uri"):
                return self._error("invalid_request")
            code = self.codes.get(code_value)
            if code is not None and code.grant_id is not None:
                # exchanged twice: Intuit warns this invalidates the tokens (qbo-api.md §1.3)
                self.revoke_grant(self.grants[code.grant_id])
                return self._error("invalid_grant", description="Authorization code reused")
            if (
                code is None
                or now >= code.expires
                or code.client_id != app.client_id
                or code.redirect_uri != form.get("redirect_uri")
            ):
                return self._error("invalid_grant")
            grant = Grant("g" + secrets.token_hex(8), app.client_id, code.realm_id, now)
            self.grants[grant.grant_id] = grant
            code.grant_id = grant.grant_id
            access, refresh = self._issue(grant, now, now + cfg.refresh_token_hard_ttl_s)
        elif grant_type == "refresh_token":
            value = str(form.get("refresh_token") or "")
            if not value:
                return self._error("invalid_request")
            rec = self.refresh.get(value)
            if (
                rec is None
                or rec.grant.revoked
                or rec.grant.client_id != app.client_id
                or now >= rec.expires
                or now >= rec.hard_expires
                or (
                    rec.superseded_at is not None and now >= rec.superseded_at + cfg.refresh_grace_s
                )
            ):
                return self._error(
                    "invalid_grant", description="Incorrect or invalid refresh token"
                )
            grant = rec.grant
            current = self._current_refresh(grant)
            if current is not None and current != value:
                # an old value inside its grace period: answer with the current one
                value, rec = current, self.refresh[current]
            access = JWE_PREFIX + secrets.token_urlsafe(ACCESS_RANDOM_BYTES)
            self.access[access] = AccessToken(grant, now + cfg.access_token_ttl_s)
            grant.access.add(access)
            if now - rec.issued >= cfg.refresh_rotate_after_s:
                rec.superseded_at = now
                _, refresh = self._issue_refresh_only(grant, now, rec.hard_expires)
            else:
                # same value, same expiry: x_refresh_token_expires_in counts down (§1.5)
                refresh = value
        else:
            return self._error("unsupported_grant_type" if grant_type else "invalid_request")
        rt = self.refresh[refresh]
        body: dict[str, Any] = {
            "token_type": "bearer",
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": cfg.access_token_ttl_s,
            "x_refresh_token_expires_in": round(rt.expires - now),
        }
        if request.headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true":
            body["x_refresh_token_hard_expires_in"] = round(rt.hard_expires - now)
        self.state.count(grant.realm_id, "oauth.token")
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _current_refresh(self, grant: Grant) -> str | None:
        live = [
            (self.refresh[t].issued, t)
            for t in grant.refresh
            if t in self.refresh and self.refresh[t].superseded_at is None
        ]
        return max(live)[1] if live else None

    def _issue_refresh_only(self, grant: Grant, now: float, hard: float) -> tuple[None, str]:
        refresh = f"RT1-{secrets.randbelow(90) + 10}-H0-{int(now)}{secrets.token_hex(10)}"
        self.refresh[refresh] = RefreshToken(
            grant, now, min(now + self.state.cfg.refresh_token_ttl_s, hard), hard
        )
        grant.refresh.add(refresh)
        return None, refresh

    async def revoke(self, request: web.Request) -> web.Response:
        app = self._client_from_basic(request)
        if app is None:
            return self._error("invalid_client", 401)
        try:
            data = await request.json()
            token = str(data.get("token") or "")
        except Exception:  # noqa: BLE001 - form bodies are accepted as well
            form = await request.post()
            token = str(form.get("token") or "")
        if not token:
            return self._error("invalid_request")
        rec: AccessToken | RefreshToken | None = self.refresh.get(token) or self.access.get(token)
        if rec is not None and rec.grant.client_id == app.client_id:
            self.revoke_grant(rec.grant)
        return web.Response(status=200)

    async def userinfo(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        rec = self.check_access(token, self.state.clock.now())
        if isinstance(rec, str):
            return json_response({"error": "invalid_token"}, status=401)
        return json_response(
            {
                "sub": "sim-user-" + rec.grant.realm_id,
                "email": "sim.user@example.com",
                "emailVerified": True,
                "givenName": "Sim",
                "familyName": "User",
                "realmid": rec.grant.realm_id,
            }
        )

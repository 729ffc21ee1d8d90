"""OAuth 2.0 server: discovery, consent redirect, token grants, rotation, errors, revoke."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlparse

from simtools import REALM, Sim

CLIENT, SECRET = "sim-client-id", "sim-client-secret"
REDIRECT = "http://127.0.0.1:8000/callback"


def basic(client: str = CLIENT, secret: str = SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}", "Accept": "application/json"}


async def authorize(sim: Sim, **extra: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "com.intuit.quickbooks.accounting",
        "state": "xyz",
        **extra,
    }
    resp = await sim.client.get("/connect/oauth2", params=params, allow_redirects=False)
    assert resp.status == 302
    loc = urlparse(resp.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(loc.query).items()}


async def token(
    sim: Sim, data: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    resp = await sim.client.post(
        "/oauth2/v1/tokens/bearer", data=data, headers=headers if headers is not None else basic()
    )
    return resp.status, await resp.json(), resp.headers


async def connect(sim: Sim) -> dict[str, Any]:
    cb = await authorize(sim)
    status, body, _ = await token(
        sim, {"grant_type": "authorization_code", "code": cb["code"], "redirect_uri": REDIRECT}
    )
    assert status == 200, body
    return {**body, "realmId": cb["realmId"]}


async def test_discovery_documents(sim: Sim) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/openid_sandbox_configuration/"):
        resp = await sim.client.get(path)
        doc = await resp.json()
        assert resp.status == 200
        assert doc["token_endpoint"].endswith("/oauth2/v1/tokens/bearer")
        assert doc["authorization_endpoint"].endswith("/connect/oauth2")
        assert doc["revocation_endpoint"].endswith("/oauth2/v1/tokens/revoke")
        assert {"issuer", "userinfo_endpoint", "jwks_uri"} <= set(doc)
        assert resp.headers["intuit_tid"]


async def test_authorize_redirects_with_code_state_realm(sim: Sim) -> None:
    cb = await authorize(sim)
    assert cb["state"] == "xyz" and cb["realmId"] == REALM and cb["code"]
    cb = await authorize(sim, realmId="555")
    assert cb["realmId"] == "555" and "555" in sim.state.realms


async def test_authorize_new_realm_setting(sim: Sim) -> None:
    sim.state.cfg.authorize_realm = "new"
    first, second = await authorize(sim), await authorize(sim)
    assert first["realmId"] != second["realmId"]
    assert {first["realmId"], second["realmId"]} <= set(sim.state.realms)


async def test_authorize_rejects_unregistered_redirect_and_reports_denial(sim: Sim) -> None:
    resp = await sim.client.get(
        "/connect/oauth2",
        allow_redirects=False,
        params={
            "client_id": CLIENT,
            "response_type": "code",
            "redirect_uri": "http://evil/cb",
            "scope": "com.intuit.quickbooks.accounting",
            "state": "s",
        },
    )
    assert resp.status == 400
    cb = await authorize(sim, deny="1")
    assert cb == {"error": "access_denied", "state": "xyz"}


async def test_code_exchange_and_api_call(sim: Sim) -> None:
    tok = await connect(sim)
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 3600
    assert tok["x_refresh_token_expires_in"] == 8726400
    assert "x_refresh_token_hard_expires_in" not in tok
    resp = await sim.client.get(
        f"/v3/company/{tok['realmId']}/companyinfo/1",
        headers={"Authorization": "Bearer " + tok["access_token"]},
    )
    assert resp.status == 200
    assert (await resp.json())["CompanyInfo"]["Id"] == "1"


async def test_code_is_single_use_and_expires(sim: Sim) -> None:
    cb = await authorize(sim)
    form = {"grant_type": "authorization_code", "code": cb["code"], "redirect_uri": REDIRECT}
    assert (await token(sim, form))[0] == 200
    status, body, _ = await token(sim, form)
    assert (status, body["error"]) == (400, "invalid_grant")
    cb = await authorize(sim)
    sim.state.clock.advance(601)
    status, body, _ = await token(sim, {**form, "code": cb["code"]})
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_second_code_exchange_revokes_the_first_tokens(sim: Sim) -> None:
    cb = await authorize(sim)
    form = {"grant_type": "authorization_code", "code": cb["code"], "redirect_uri": REDIRECT}
    status, first, _ = await token(sim, form)
    assert status == 200
    url = f"/v3/company/{cb['realmId']}/companyinfo/{cb['realmId']}"
    bearer = {"Authorization": "Bearer " + first["access_token"]}
    assert (await sim.client.get(url, headers=bearer)).status == 200
    status, second, _ = await token(sim, form)
    assert (status, second["error"]) == (400, "invalid_grant")
    resp = await sim.client.get(url, headers=bearer)
    assert resp.status == 401  # the first exchange's access token is dead...
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")  # ...and its refresh token
    assert (await sim.get(f"companyinfo/{sim.realm}"))[0] == 200  # other grants unaffected


async def test_redirect_uri_mismatch_is_invalid_grant(sim: Sim) -> None:
    cb = await authorize(sim)
    status, body, _ = await token(
        sim,
        {
            "grant_type": "authorization_code",
            "code": cb["code"],
            "redirect_uri": "http://localhost:8000/callback",
        },
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_invalid_client(sim: Sim) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": sim.refresh}
    for headers in (basic(secret="wrong"), basic(client="nobody"), {}):
        status, body, _ = await token(sim, form, headers)
        assert (status, body) == (401, {"error": "invalid_client"})


async def test_missing_parameter_is_invalid_request(sim: Sim) -> None:
    status, body, _ = await token(sim, {"grant_type": "refresh_token"})
    assert (status, body["error"]) == (400, "invalid_request")


async def test_refresh_within_window_returns_same_value(sim: Sim) -> None:
    tok = await connect(sim)
    sim.state.clock.advance(3600)
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert status == 200
    assert body["refresh_token"] == tok["refresh_token"]
    assert body["access_token"] != tok["access_token"]
    # the remaining lifetime of the same value: it counts down (qbo-api.md §1.5)
    assert body["x_refresh_token_expires_in"] == 8726400 - 3600
    sim.state.clock.advance(7200)
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert body["refresh_token"] == tok["refresh_token"]
    assert body["x_refresh_token_expires_in"] == 8726400 - 3600 - 7200
    sim.state.clock.advance(86400)  # past the rotation window: a new value, a fresh lifetime
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert body["refresh_token"] != tok["refresh_token"]
    assert body["x_refresh_token_expires_in"] == 8726400


async def test_refresh_rotates_and_old_value_dies(sim: Sim) -> None:
    tok = await connect(sim)
    sim.state.clock.advance(86400 + 1)
    form = {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    status, body, _ = await token(sim, form)
    assert status == 200 and body["refresh_token"] != tok["refresh_token"]
    status, again, _ = await token(sim, form)
    assert (status, again["error"]) == (400, "invalid_grant")
    status, newer, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert status == 200


async def test_rotation_grace_setting(sim: Sim) -> None:
    sim.state.cfg.refresh_grace_s = 3600
    tok = await connect(sim)
    sim.state.clock.advance(86401)
    form = {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    status, rotated, _ = await token(sim, form)
    assert status == 200
    status, body, _ = await token(sim, form)  # old value, inside the grace period
    assert status == 200 and body["refresh_token"] == rotated["refresh_token"]
    sim.state.clock.advance(3601)
    status, body, _ = await token(sim, form)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_refresh_token_rolling_and_hard_expiry(sim: Sim) -> None:
    tok = await connect(sim)
    headers = {**basic(), "x-include-refresh-token-hard-expires-in": "true"}
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, headers
    )
    assert status == 200 and body["x_refresh_token_hard_expires_in"] == 157680000
    sim.state.clock.advance(8726400 + 1)  # unused for its whole rolling life
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_hard_cap_limits_refresh(sim: Sim) -> None:
    sim.state.cfg.refresh_token_hard_ttl_s = 200000
    tok = await connect(sim)
    rt = tok["refresh_token"]
    headers = {**basic(), "x-include-refresh-token-hard-expires-in": "true"}
    sim.state.clock.advance(100000)
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": rt}, headers
    )
    assert status == 200 and body["x_refresh_token_hard_expires_in"] == 100000
    assert body["x_refresh_token_expires_in"] <= 100000
    sim.state.clock.advance(100001)
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_access_token_expires_after_an_hour(sim: Sim) -> None:
    tok = await connect(sim)
    url = f"/v3/company/{tok['realmId']}/companyinfo/1"
    headers = {"Authorization": "Bearer " + tok["access_token"]}
    sim.state.clock.advance(3599)
    assert (await sim.client.get(url, headers=headers)).status == 200
    sim.state.clock.advance(2)
    resp = await sim.client.get(url, headers=headers)
    body = await resp.json()
    assert resp.status == 401
    assert body["fault"]["error"][0]["code"] == "3200"
    assert body["fault"]["type"] == "AUTHENTICATION"
    assert "invalid_token" in resp.headers["WWW-Authenticate"]


async def test_revoke_kills_refresh_and_access(sim: Sim) -> None:
    tok = await connect(sim)
    resp = await sim.client.post(
        "/oauth2/v1/tokens/revoke", json={"token": tok["refresh_token"]}, headers=basic()
    )
    assert resp.status == 200
    status, body, _ = await token(
        sim, {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    resp = await sim.client.get(
        f"/v3/company/{tok['realmId']}/companyinfo/1",
        headers={"Authorization": "Bearer " + tok["access_token"]},
    )
    assert resp.status == 401


async def test_revoke_requires_client_auth(sim: Sim) -> None:
    resp = await sim.client.post(
        "/oauth2/v1/tokens/revoke", json={"token": sim.refresh}, headers=basic(secret="bad")
    )
    assert resp.status == 401


async def test_registered_app_through_control_surface(sim: Sim) -> None:
    app = await sim.control("POST", "/_sim/apps", {"redirect_uris": ["http://app.test/cb"]})
    params = {
        "client_id": app["client_id"],
        "response_type": "code",
        "redirect_uri": "http://app.test/cb",
        "scope": "com.intuit.quickbooks.accounting",
        "state": "s",
    }
    resp = await sim.client.get("/connect/oauth2", params=params, allow_redirects=False)
    code = parse_qs(urlparse(resp.headers["Location"]).query)["code"][0]
    status, body, _ = await token(
        sim,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://app.test/cb"},
        basic(app["client_id"], app["client_secret"]),
    )
    assert status == 200 and body["access_token"]
    # another app's code cannot be redeemed with the default client
    resp = await sim.client.get("/connect/oauth2", params=params, allow_redirects=False)
    code = parse_qs(urlparse(resp.headers["Location"]).query)["code"][0]
    status, body, _ = await token(
        sim,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://app.test/cb"},
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_userinfo(sim: Sim) -> None:
    resp = await sim.client.get("/v1/openid_connect/userinfo", headers=sim.auth)
    assert resp.status == 200 and (await resp.json())["realmid"] == REALM


async def test_the_token_endpoint_takes_queued_faults_that_name_it_only(sim: Sim) -> None:
    """The token endpoint down: queued faults naming its path answer instead of it (and use
    nothing up); faults naming no path and the random rates stay with the API."""
    tok = await connect(sim)
    refresh = {"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    await sim.control("POST", "/_sim/faults", {"next": [{"kind": "503"}]})  # no path: API only
    await sim.control("PATCH", "/_sim/config", {"rate_500": 1.0})
    status, body, _ = await token(sim, refresh)
    assert status == 200, body
    await sim.control("PATCH", "/_sim/config", {"rate_500": 0.0})
    await sim.control("DELETE", "/_sim/faults")

    faults = [
        {"kind": "503", "path_contains": "/oauth2/v1/tokens/bearer", "times": 2},
        {"kind": "500", "path_contains": "/oauth2/v1/tokens/bearer"},
    ]
    await sim.control("POST", "/_sim/faults", {"next": faults})
    statuses = []
    for _ in range(3):
        resp = await sim.client.post("/oauth2/v1/tokens/bearer", data=refresh, headers=basic())
        statuses.append((resp.status, resp.content_type))
    assert statuses == [(503, "text/html"), (503, "text/html"), (500, "text/html")]
    status, body, _ = await token(sim, {**refresh, "refresh_token": body["refresh_token"]})
    assert status == 200, body  # the refresh token was not used up by the faults

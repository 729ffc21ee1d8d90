"""The control surface under ``/_sim``: JSON in, JSON out, no auth, never mixed with QBO paths.

Tests, the demo and the benchmarks use it to create and seed realms, act as a QBO user (changes
that emit webhooks), move the clock, change settings, expire or revoke tokens, queue faults,
read counters and webhook deliveries, and reset everything.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from aiohttp import web

from simulator import entities
from simulator.clock import fmt_time, parse_ts
from simulator.errors import QBOError, json_response
from simulator.faults import KINDS
from simulator.state import STATE, State
from simulator.store import EDITIONS, ENTITIES, ENVIRONMENTS, Realm, RealmStatus


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(text="body must be JSON") from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _realm(state: State, request: web.Request) -> Realm:
    realm = state.realms.get(request.match_info["realm"])
    if realm is None:
        raise web.HTTPNotFound(text="unknown realm")
    return realm


def _summary(realm: Realm) -> dict[str, Any]:
    return {
        "realm_id": realm.realm_id,
        "company_name": realm.company_name,
        "counts": {e: len(objs) for e, objs in realm.objects.items()},
    }


async def health(request: web.Request) -> web.Response:
    return json_response({"ok": True})


async def list_realms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response({"realms": [_summary(r) for r in state.realms.values()]})


async def create_realm(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    try:
        realm = state.create_realm(data.get("realm_id"), data.get("company_name"))
    except ValueError as exc:
        raise web.HTTPConflict(text=str(exc)) from exc
    made = _seed(state, realm, data)
    return json_response({**_summary(realm), "seeded": made}, status=201)


def _seed(state: State, realm: Realm, data: dict[str, Any]) -> dict[str, int]:
    return state.seed(
        realm,
        int(data.get("seed", state.cfg.seed)),
        int(data.get("customers", 0)),
        int(data.get("items", 0)),
        int(data.get("invoices", 0)),
        int(data.get("payments", 0)),
        int(data.get("max_lines", 5)),
    )


async def seed_realm(request: web.Request) -> web.Response:
    state = request.app[STATE]
    realm = _realm(state, request)
    made = _seed(state, realm, await _body(request))
    return json_response({**_summary(realm), "seeded": made})


async def get_realm(request: web.Request) -> web.Response:
    return json_response(_summary(_realm(request.app[STATE], request)))


async def counters(request: web.Request) -> web.Response:
    realm = _realm(request.app[STATE], request)
    return json_response({"realm_id": realm.realm_id, "counters": dict(realm.counters)})


async def change(request: web.Request) -> web.Response:
    """Act as a QBO user: {"entity", "operation": create|update|delete|void|deactivate|deposit,
    "fields"}.

    ``update`` is sparse and needs no SyncToken (the user edits the current version);
    ``deposit`` (Payment only) puts the payment on a bank deposit, after which it cannot change.
    """
    state = request.app[STATE]
    realm = _realm(state, request)
    data = await _body(request)
    entity = ENTITIES.get(str(data.get("entity", "")).lower())
    if entity is None:
        raise web.HTTPBadRequest(text="unknown entity")
    op = data.get("operation", "update")
    fields = dict(data.get("fields") or {})
    ctx = state.ctx(realm)
    try:
        if op == "create":
            result = entities.create(ctx, entity, fields)
        else:
            current = realm.get(entity, str(data.get("id")))
            if current is None:
                raise web.HTTPNotFound(text="unknown object")
            ident = {"Id": current["Id"], "SyncToken": current["SyncToken"]}
            if op == "update":
                result = entities.update(ctx, entity, {**fields, **ident, "sparse": True})
            elif op == "deactivate":
                result = entities.update(ctx, entity, {**ident, "sparse": True, "Active": False})
            elif op == "delete":
                result = entities.delete(ctx, entity, ident)
            elif op == "void":
                result = entities.void(ctx, entity, ident)
            elif op == "deposit" and entity == "Payment":
                result = entities.deposit(ctx, current["Id"])
            else:
                raise web.HTTPBadRequest(text="unknown operation")
    except QBOError as exc:
        return json_response({"Fault": exc.fault()}, status=exc.status)
    state.emit(realm, ctx.events, ctx.now)
    return json_response({entity: result, "events": ctx.events})


async def realm_status(request: web.Request) -> web.Response:
    """GET the realm's company status; PATCH/POST a partial dict of it to change it.

    Keys: environment (sandbox|production), admin_access (bool), app_authorized (bool),
    subscription (active|ended), edition (SimpleStart|Essentials|Plus|Advanced),
    closing_date (YYYY-MM-DD or null).
    """
    realm = _realm(request.app[STATE], request)
    if request.method != "GET":
        data = await _body(request)
        try:
            _apply_status(realm.status, data)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
    return json_response({"realm_id": realm.realm_id, **realm.status.public()})


def _apply_status(status: RealmStatus, data: dict[str, Any]) -> None:
    """Validate every key first, then apply, so a bad request changes nothing."""
    choices: dict[str, tuple[Any, ...]] = {
        "environment": ENVIRONMENTS,
        "subscription": ("active", "ended"),
        "edition": EDITIONS,
        "admin_access": (True, False),
        "app_authorized": (True, False),
    }
    clean = dict(data)
    for key, value in data.items():
        if key == "closing_date":
            if value is not None:
                try:
                    clean[key] = date.fromisoformat(str(value)).isoformat()
                except ValueError as exc:
                    raise ValueError("closing_date must be YYYY-MM-DD or null") from exc
        elif key not in choices:
            raise ValueError(f"unknown status key: {key}")
        elif value not in choices[key] or type(value) is not type(choices[key][0]):
            raise ValueError(f"{key} must be one of {list(choices[key])}")
    for key, value in clean.items():
        setattr(status, key, value)


async def clock(request: web.Request) -> web.Response:
    """GET: current time. POST {"advance_seconds": n} or {"set": iso} or {"reset": true}."""
    state = request.app[STATE]
    if request.method == "POST":
        data = await _body(request)
        if data.get("reset"):
            state.clock.reset()
        if "set" in data:
            state.clock.set(parse_ts(str(data["set"])))
        if "advance_seconds" in data:
            state.clock.advance(float(data["advance_seconds"]))
    now = state.clock.now()
    return json_response({"now": fmt_time(now), "epoch": now, "offset_s": state.clock.offset})


async def config(request: web.Request) -> web.Response:
    """GET settings (secrets masked); PATCH/POST a partial dict to change them."""
    state = request.app[STATE]
    if request.method != "GET":
        try:
            state.cfg.update(await _body(request))
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
    return json_response(state.cfg.to_public_dict())


async def register_app(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    app = state.oauth.register_app(
        data.get("client_id"), data.get("client_secret"), list(data.get("redirect_uris") or [])
    )
    # the secret is returned once, to the caller that registered the app
    return json_response(
        {
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "redirect_uris": app.redirect_uris,
        },
        status=201,
    )


async def expire_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    kind = data.get("kind", "access")
    if kind not in ("access", "refresh", "all"):
        raise web.HTTPBadRequest(text="kind must be access, refresh or all")
    n = state.oauth.expire_tokens(data.get("realm_id"), kind, state.clock.now())
    return json_response({"expired": n})


async def issue_tokens(request: web.Request) -> web.Response:
    """Shortcut for tests and benchmarks: a token pair for a realm without the browser flow."""
    state = request.app[STATE]
    realm = _realm(state, request)
    data = await _body(request)
    client_id = data.get("client_id") or state.cfg.apps[0].client_id
    pair = state.oauth.issue_for(realm.realm_id, client_id)
    return json_response({**pair, "realm_id": realm.realm_id, "client_id": client_id})


async def revoke_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request)
    return json_response({"revoked_grants": state.oauth.revoke_realm(data.get("realm_id"))})


async def queue_faults(request: web.Request) -> web.Response:
    """POST {"next": [{"kind": "500"|"503"|"504"|"timeout"|"drop_after_commit",
    "path_contains"?, "method"?, "times"?}]} queues one-shot faults; DELETE clears them."""
    state = request.app[STATE]
    if request.method == "DELETE":
        state.next_faults.clear()
    elif request.method == "POST":
        data = await _body(request)
        for fault in data.get("next") or []:
            if fault.get("kind") not in KINDS:
                raise web.HTTPBadRequest(text=f"fault kind must be one of {sorted(KINDS)}")
            state.next_faults.append(dict(fault))
    return json_response({"next": state.next_faults})


async def webhook_flush(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = state.webhooks.flush()
    return json_response({"deliveries": [d.delivery_id for d in started]})


async def webhook_deliveries(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(
        {
            "pending_events": len(state.webhooks.pending),
            "deliveries": [d.public() for d in state.webhooks.deliveries],
        }
    )


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    return json_response({"ok": True, "realms": list(state.realms)})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/health", health)
    r.add_get("/_sim/realms", list_realms)
    r.add_post("/_sim/realms", create_realm)
    r.add_get("/_sim/realms/{realm}", get_realm)
    r.add_post("/_sim/realms/{realm}/seed", seed_realm)
    r.add_get("/_sim/realms/{realm}/counters", counters)
    r.add_post("/_sim/realms/{realm}/change", change)
    r.add_route("*", "/_sim/realms/{realm}/status", realm_status)
    r.add_route("*", "/_sim/clock", clock)
    r.add_route("*", "/_sim/config", config)
    r.add_post("/_sim/apps", register_app)
    r.add_post("/_sim/realms/{realm}/tokens", issue_tokens)
    r.add_post("/_sim/tokens/expire", expire_tokens)
    r.add_post("/_sim/tokens/revoke", revoke_tokens)
    r.add_route("*", "/_sim/faults", queue_faults)
    r.add_post("/_sim/webhooks/flush", webhook_flush)
    r.add_get("/_sim/webhooks/deliveries", webhook_deliveries)
    r.add_post("/_sim/reset", reset)


__all__ = ["add_routes", "fmt_time"]

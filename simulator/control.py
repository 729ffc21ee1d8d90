"""The control surface under ``/_sim``: JSON in, JSON out, no auth, never mixed with QBO paths.

Every body is checked against a schema (``simulator.schema``; the settings' and realm status'
specs live with their defaults) before anything changes: a bad, unknown or out-of-range field
answers 400 ``{"error": "invalid_request", "field", "reason"}`` and leaves the state as it was.

Tests, the demo and the benchmarks use it to create and seed realms, act as a QBO user (changes
that emit webhooks), move the clock, change settings, expire or revoke tokens, queue faults,
read counters and webhook deliveries, and reset everything.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from simulator import entities
from simulator.clock import fmt_time
from simulator.config import APP_FIELDS, COUNT, SEED, SETTINGS
from simulator.errors import QBOError, json_response
from simulator.faults import KINDS
from simulator.schema import (
    REALM_ID,
    REALM_ID_OR_NULL,
    TEN_YEARS_S,
    Bool,
    Instant,
    Int,
    ListOf,
    Num,
    Obj,
    SchemaError,
    Spec,
    Str,
    check,
    check_epoch,
)
from simulator.state import STATE, State
from simulator.store import ENTITIES, STATUS_SCHEMA, Realm

SEED_FIELDS: dict[str, Spec] = {
    "seed": SEED,
    "customers": COUNT,
    "items": COUNT,
    "invoices": COUNT,
    "payments": COUNT,
    "max_lines": Int(1, 750),  # Intuit's line limit of a taxable invoice
}
# a new realm: its id and name, its status keys (see RealmStatus) and what to seed
NEW_REALM: dict[str, Spec] = {
    "realm_id": REALM_ID,
    "company_name": Str(max_len=100),
    **STATUS_SCHEMA,
    **SEED_FIELDS,
}
CLOCK: dict[str, Spec] = {
    "advance_seconds": Num(-TEN_YEARS_S, TEN_YEARS_S),
    "set": Instant(),
    "reset": Bool(),
}
CHANGE: dict[str, Spec] = {
    "entity": Str(choices=(*ENTITIES, *ENTITIES.values())),
    "id": Str(max_len=40),
    "operation": Str(choices=("create", "update", "delete", "void", "deactivate", "deposit")),
    "fields": Obj(),
}
TOKENS: dict[str, Spec] = {"client_id": Str()}
EXPIRE: dict[str, Spec] = {
    "realm_id": REALM_ID_OR_NULL,
    "kind": Str(choices=("access", "refresh", "all")),
}
REVOKE: dict[str, Spec] = {"realm_id": REALM_ID_OR_NULL}
FAULT = Obj(
    {
        "kind": Str(choices=tuple(sorted(KINDS))),
        "path_contains": Str(max_len=500),
        "method": Str(choices=("GET", "POST", "PUT", "PATCH", "DELETE")),
        "times": Int(1, 10_000),
    },
    required=frozenset({"kind"}),
)
FAULTS: dict[str, Spec] = {"next": ListOf(FAULT)}
NOTHING: dict[str, Spec] = {}  # calls that take no input: an empty body or {}


def bad_request(err: SchemaError) -> web.HTTPBadRequest:
    """400 with a JSON body naming the refused field."""
    body = {"error": "invalid_request", "field": err.field, "reason": err.reason}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


async def _json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise bad_request(SchemaError("body", "must be JSON")) from exc


async def _body(
    request: web.Request, schema: dict[str, Spec], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The request's JSON object checked against schema (400 on the first bad field)."""
    try:
        return check(schema, await _json(request), required)
    except SchemaError as exc:
        raise bad_request(exc) from exc


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
    """Create a realm; its status keys (e.g. ``edition``) and seed sizes may come along."""
    state = request.app[STATE]
    data = await _body(request, NEW_REALM)
    if data.get("realm_id") in state.realms:
        raise web.HTTPConflict(text=f"realm {data['realm_id']} exists")
    realm = state.create_realm(data.get("realm_id"), data.get("company_name"))
    realm.status.apply({k: v for k, v in data.items() if k in STATUS_SCHEMA})
    made = _seed(state, realm, data)
    return json_response({**_summary(realm), "seeded": made}, status=201)


def _seed(state: State, realm: Realm, data: dict[str, Any]) -> dict[str, int]:
    return state.seed(
        realm,
        data.get("seed", state.cfg.seed),
        data.get("customers", 0),
        data.get("items", 0),
        data.get("invoices", 0),
        data.get("payments", 0),
        data.get("max_lines", 5),
    )


async def seed_realm(request: web.Request) -> web.Response:
    state = request.app[STATE]
    realm = _realm(state, request)
    made = _seed(state, realm, await _body(request, SEED_FIELDS))
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
    data = await _body(request, CHANGE, required=("entity",))
    entity = ENTITIES[data["entity"].lower()]
    op = data.get("operation", "update")
    fields = dict(data.get("fields") or {})
    if op != "create" and "id" not in data:
        raise bad_request(SchemaError("id", f"is required for operation {op}"))
    if op == "deposit" and entity != "Payment":
        raise bad_request(SchemaError("operation", "deposit is for a Payment only"))
    ctx = state.ctx(realm)
    try:
        if op == "create":
            result = entities.create(ctx, entity, fields)
        else:
            current = realm.get(entity, data["id"])
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
            else:  # deposit
                result = entities.deposit(ctx, current["Id"])
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
        realm.status.apply(await _body(request, STATUS_SCHEMA))
    return json_response({"realm_id": realm.realm_id, **realm.status.public()})


async def clock(request: web.Request) -> web.Response:
    """GET: current time. POST {"advance_seconds": n} and/or {"set": iso} and/or
    {"reset": true} (applied in the order reset, set, advance; the result must stay within
    2000..2100, or nothing moves)."""
    state = request.app[STATE]
    if request.method == "POST":
        data = await _body(request, CLOCK)
        target = time.time() if data.get("reset") else state.clock.now()
        target = data.get("set", target) + data.get("advance_seconds", 0)
        try:
            check_epoch("advance_seconds" if "advance_seconds" in data else "set", target)
        except SchemaError as exc:
            raise bad_request(exc) from exc
        if data.get("reset"):
            state.clock.reset()
        if "set" in data:
            state.clock.set(data["set"])
        if "advance_seconds" in data:
            state.clock.advance(data["advance_seconds"])
    now = state.clock.now()
    return json_response({"now": fmt_time(now), "epoch": now, "offset_s": state.clock.offset})


async def config(request: web.Request) -> web.Response:
    """GET settings (secrets masked); PATCH/POST a partial dict to change them."""
    state = request.app[STATE]
    if request.method != "GET":
        state.cfg.update(await _body(request, SETTINGS))
    return json_response(state.cfg.to_public_dict())


async def register_app(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request, APP_FIELDS)
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
    data = await _body(request, EXPIRE)
    kind = data.get("kind", "access")
    n = state.oauth.expire_tokens(data.get("realm_id"), kind, state.clock.now())
    return json_response({"expired": n})


async def issue_tokens(request: web.Request) -> web.Response:
    """Shortcut for tests and benchmarks: a token pair for a realm without the browser flow."""
    state = request.app[STATE]
    realm = _realm(state, request)
    data = await _body(request, TOKENS)
    client_id = data.get("client_id") or state.cfg.apps[0].client_id
    if state.oauth.app(client_id) is None:
        raise bad_request(SchemaError("client_id", f"no registered app {client_id!r}"))
    pair = state.oauth.issue_for(realm.realm_id, client_id)
    return json_response({**pair, "realm_id": realm.realm_id, "client_id": client_id})


async def revoke_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await _body(request, REVOKE)
    return json_response({"revoked_grants": state.oauth.revoke_realm(data.get("realm_id"))})


async def queue_faults(request: web.Request) -> web.Response:
    """POST {"next": [{"kind": "500"|"503"|"504"|"timeout"|"drop_after_commit",
    "path_contains"?, "method"?, "times"?}]} queues one-shot faults; DELETE clears them."""
    state = request.app[STATE]
    if request.method == "DELETE":
        state.next_faults.clear()
    elif request.method == "POST":
        data = await _body(request, FAULTS)
        state.next_faults.extend(data.get("next", []))
    return json_response({"next": state.next_faults})


async def webhook_flush(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await _body(request, NOTHING)
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
    await _body(request, NOTHING)
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

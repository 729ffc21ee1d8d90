"""Accounting API v3 handlers: ``/v3/company/{realm}/...``.

Order of checks on every call: bearer token (401 gateway fault 3200, or 100 for a garbled
token), realm access (403 3100), the company's status (130, 3201, 120; see ``authenticate``),
throttling (429), simulated latency, injected faults, then the operation itself (5020 for a
feature the edition lacks, 6190 on writes after the subscription ended, 4002 for a query
whose rows hold invalid stored emails). Writes honour
``requestid`` (replay of the stored answer, or fault 600 in that mode) unless the mode, global
or the realm's own, is ``ignore``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from simulator import entities, faults
from simulator import errors as E
from simulator import query as qlang
from simulator.clock import PACIFIC, fmt_meta, fmt_time, parse_ts, to_pacific
from simulator.entities import Ctx
from simulator.errors import (
    GatewayError,
    QBOError,
    Throttled,
    fault_response,
    json_response,
    unsupported,
)
from simulator.oauth import well_formed_access_token
from simulator.state import STATE, State
from simulator.store import EDITION_DENIED, ENTITIES, Realm

CDC_UNSUPPORTED = {"TaxCode", "CompanyInfo"}


def authenticate(state: State, request: web.Request, realm_id: str) -> tuple[Realm, str]:
    """The realm and the calling app's client id; raises the fault Intuit's gateway or service
    would answer.

    In order: no bearer / wrong shape / expired / revoked → 401 3200 (gateway); well-formed but
    never issued (garbled) → 401 100; token of another realm or unknown realm → 403 3100;
    realm on the other cluster → 401 130 (production company, sandbox URL) or 403 3100
    (sandbox company, production URL); app authorization withdrawn → 403 3201; connecting
    user no longer admin → 401 120.
    """
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise GatewayError(
            401,
            "3200",
            "AuthenticationFailed",
            "Authorization header missing or not a bearer token",
        )
    token = header[7:].strip()
    if not well_formed_access_token(token):
        raise GatewayError(
            401, "3200", "AuthenticationFailed", "Malformed bearer token: too short or too long"
        )
    rec = state.oauth.check_access(token, state.clock.now())
    if rec == "unknown":
        raise E.general_authentication()
    if isinstance(rec, str):
        detail = {"expired": "Token expired", "revoked": "Token revoked"}[rec]
        raise GatewayError(401, "3200", "AuthenticationFailed", detail)
    realm = state.realms.get(realm_id)
    if realm is None or rec.grant.realm_id != realm_id:
        raise _not_authorized_for_realm()
    status = realm.status
    if status.environment != state.cfg.api_environment:
        if status.environment == "production":
            raise E.wrong_cluster(status.environment, state.cfg.api_environment)
        raise _not_authorized_for_realm()
    if not status.app_authorized:
        raise GatewayError(
            403,
            "3201",
            "AuthorizationFailure",
            "The user has not authorized this application for this company (realmId)",
        )
    if not status.admin_access:
        raise E.authorization_failure(status.edition)
    return realm, rec.grant.client_id


def _not_authorized_for_realm() -> GatewayError:
    return GatewayError(
        403,
        "3100",
        "ApplicationAuthorizationFailed",
        "The access token is not authorized for this company (realmId)",
    )


def require_feature(realm: Realm, feature: str) -> None:
    """5020 when the realm's edition is not entitled to feature ("cdc", "batch")."""
    if feature in EDITION_DENIED.get(realm.status.edition, frozenset()):
        raise E.no_feature_permission(feature, realm.status.edition)


def require_active_subscription(realm: Realm) -> None:
    """6190 on writes once the company's subscription has ended (reads keep working)."""
    if realm.status.subscription != "active":
        raise E.invalid_company_status(realm.status.edition)


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    realm_id = request.match_info["realm"]
    tail = request.match_info["tail"].strip("/")
    realm, client_id = authenticate(state, request, realm_id)
    endpoint = _endpoint_name(request.method, tail)
    if not state.limiter.acquire(realm_id, client_id, is_batch=(tail == "batch")):
        state.count(realm_id, "throttled")
        raise Throttled()
    try:
        state.count(realm_id, endpoint)
        if state.cfg.latency_ms:
            await asyncio.sleep(state.cfg.latency_ms / 1000)
        injected = await faults.before(state, request)
        if injected is not None:
            return injected
        is_write = request.method == "POST" and tail not in ("query",)
        rid = request.query.get("requestid")
        if is_write and rid and requestid_mode(state, realm) != "ignore":
            resp = _replay(state, realm, rid)
            if resp is None:
                try:
                    resp = await _dispatch(state, realm, request, tail)
                except QBOError as exc:  # a business fault is the answer to replay, too
                    resp = fault_response(exc, state.clock.now())
                _remember(state, realm, rid, resp)
        else:
            resp = await _dispatch(state, realm, request, tail)
        if is_write and faults.drop_after_commit(state, request):
            faults.drop_connection(request)
        return resp
    finally:
        state.limiter.release(realm_id)


def _endpoint_name(method: str, tail: str) -> str:
    parts = tail.split("/")
    head = parts[0].lower()
    if head in ("query", "cdc", "batch"):
        return head
    if method == "GET":
        return f"read.{head}" if len(parts) >= 2 else f"get.{head}"
    return f"write.{head}"


def requestid_mode(state: State, realm: Realm) -> str:
    """The realm's own requestid_mode if set, else the global one."""
    return realm.status.requestid_mode or state.cfg.requestid_mode


def _replay(state: State, realm: Realm, rid: str) -> web.Response | None:
    hit = realm.requestids.get(rid)
    if hit is None:
        return None
    expires, status, body, ctype = hit
    now = state.clock.now()
    if now >= expires:
        del realm.requestids[rid]
        return None
    if requestid_mode(state, realm) == "error600":
        raise QBOError(
            "600",
            "RequestId already exists",
            f"Duplicate request detected: requestid {rid} was already used",
        )
    state.count(realm.realm_id, "requestid.replay")
    return web.Response(body=body, status=status, content_type=ctype, charset="UTF-8")


def _remember(state: State, realm: Realm, rid: str, resp: web.Response) -> None:
    body = resp.body if isinstance(resp.body, bytes) else b""
    realm.requestids[rid] = (
        state.clock.now() + state.cfg.requestid_ttl_s,
        resp.status,
        body,
        resp.content_type,
    )


def _entity(segment: str) -> str:
    entity = ENTITIES.get(segment.lower())
    if entity is None:
        raise unsupported(f"Unsupported or unknown entity: {segment}")
    return entity


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QBOError(
            "2010", "Request has invalid or unsupported property", "Request body is not valid JSON"
        ) from exc


def _envelope(state: State, key: str, obj: Any) -> web.Response:
    return json_response({key: obj, "time": fmt_time(state.clock.now())})


async def _dispatch(state: State, realm: Realm, request: web.Request, tail: str) -> web.Response:
    parts = tail.split("/")
    head = parts[0].lower()
    if head == "query":
        if request.method == "GET":
            text = request.query.get("query", "")
        else:
            text = (await request.read()).decode("utf-8")
        return _envelope(state, "QueryResponse", run_query(state, realm, text))
    if head == "cdc" and request.method == "GET":
        require_feature(realm, "cdc")
        return cdc(state, realm, request.query)
    if head == "batch" and request.method == "POST":
        require_feature(realm, "batch")
        return await batch(state, realm, await _json_body(request))
    entity = _entity(parts[0])
    if request.method == "GET":
        if len(parts) == 1:
            raise unsupported(f"GET on {entity} needs an Id")
        ctx = state.ctx(realm)
        obj = entities.read(ctx, entity, parts[1])
        if len(parts) == 3 and parts[2] == "pdf" and entity == "Invoice":
            return web.Response(body=_pdf(obj), content_type="application/pdf")
        if len(parts) > 2:
            raise unsupported(f"Unsupported path {tail}")
        return _envelope(state, entity, obj)
    if request.method != "POST":
        raise unsupported(f"Method {request.method} is not supported")
    ctx = state.ctx(realm)
    if len(parts) == 3 and parts[2] == "send" and entity == "Invoice":
        result = send_invoice(ctx, parts[1], request.query.get("sendTo"))
    elif len(parts) > 1:
        raise unsupported(f"Unsupported path {tail}")
    else:
        body = await _json_body(request)
        result = write(
            ctx, entity, body, request.query.get("operation"), request.query.get("include")
        )
    state.emit(realm, ctx.events, ctx.now)
    return _envelope(state, entity, result)


def write(
    ctx: Ctx, entity: str, body: Any, operation: str | None, include: str | None
) -> dict[str, Any]:
    """One entity write, as selected by ?operation= and ?include=."""
    require_active_subscription(ctx.realm)
    if not isinstance(body, dict):
        raise QBOError(
            "2010",
            "Request has invalid or unsupported property",
            "Request body must be a JSON object",
        )
    op = (operation or "").lower()
    if op == "delete":
        return entities.delete(ctx, entity, body)
    if op == "void":
        if entity != "Invoice":
            raise unsupported(
                f"operation=void is not supported for {entity}; use operation=update&include=void"
            )
        return entities.void(ctx, entity, body)
    if (include or "").lower() == "void":
        if entity != "Payment":
            raise unsupported(f"include=void is not supported for {entity}")
        return entities.void(ctx, entity, body)
    if op not in ("", "create", "update"):
        raise unsupported(f"Operation {operation} is not supported")
    return entities.save(ctx, entity, body)


def send_invoice(ctx: Ctx, oid: str, send_to: str | None) -> dict[str, Any]:
    require_active_subscription(ctx.realm)
    inv = entities.read(ctx, "Invoice", oid)
    address = send_to or (inv.get("BillEmail") or {}).get("Address")
    if not address:
        raise entities.E.business(
            "Email address is missing (BillEmail or sendTo).", element="BillEmail"
        )
    new = json.loads(json.dumps(inv))
    new["EmailStatus"] = "EmailSent"
    new["BillEmail"] = {"Address": address}
    new["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": fmt_meta(ctx.now)}
    new["SyncToken"] = str(int(inv["SyncToken"]) + 1)
    new["MetaData"]["LastUpdatedTime"] = fmt_meta(ctx.now)
    ctx.realm.put("Invoice", new, ctx.now)
    ctx.events.append(("Invoice", oid, "Emailed"))
    return new


def _pdf(inv: dict[str, Any]) -> bytes:
    text = f"Invoice {inv.get('DocNumber', inv['Id'])} total {inv.get('TotalAmt')}"
    return (
        b"%PDF-1.4\n% qbo simulator\n1 0 obj << /Title (" + text.encode() + b") >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


# ------------------------------------------------------------------------------ query


def query_options(state: State) -> qlang.ExecuteOptions:
    return qlang.DEFAULT_OPTIONS.with_(naive_tz=PACIFIC, today=to_pacific(state.clock.now()).date())


def run_query(state: State, realm: Realm, text: str) -> dict[str, Any]:
    try:
        q = qlang.parse(text)
    except qlang.QueryError as exc:
        raise QBOError(exc.code, exc.message, exc.detail) from exc
    store = realm.objects.get(q.entity)
    if store is None:
        return {}  # a QBO entity the simulator does not keep: always empty
    page, total = qlang.execute(q, store.values(), query_options(state))
    if q.count:
        return {"totalCount": total}
    if not page:
        return {}
    _check_stored_emails(q.entity, page)
    return {q.entity: page, "startPosition": q.start_position, "maxResults": len(page)}


EMAIL_FIELDS = {  # entity -> field holding an EmailAddress ({"Address": ...})
    "Customer": "PrimaryEmailAddr",
    "Vendor": "PrimaryEmailAddr",
    "Employee": "PrimaryEmailAddr",
    "Invoice": "BillEmail",
}


def valid_email(address: str) -> bool:
    """A plain local@domain.tld check (QBO's exact rule is not documented)."""
    local, at, domain = address.strip().rpartition("@")
    return (
        bool(at and local and domain)
        and "@" not in local
        and " " not in address.strip()
        and "." in domain.strip(".")
        and not domain.startswith(".")
        and not domain.endswith(".")
    )


def _check_stored_emails(entity: str, rows: list[dict[str, Any]]) -> None:
    """4002 when a row of the result holds an invalid stored email (reference §8 row 14)."""
    fieldname = EMAIL_FIELDS.get(entity)
    if fieldname is None:
        return
    for row in rows:
        holder = row.get(fieldname)
        address = holder.get("Address") if isinstance(holder, dict) else None
        if isinstance(address, str) and address and not valid_email(address):
            raise E.query_processing(entity, str(row.get("Id")), f"{fieldname}.Address")


# ------------------------------------------------------------------------------ CDC


def cdc(state: State, realm: Realm, params: Any) -> web.Response:
    cfg = state.cfg
    names = [n.strip() for n in (params.get("entities") or "").split(",") if n.strip()]
    if not names:
        raise QBOError(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter entities is missing",
            element="entities",
        )
    since_text = params.get("changedSince")
    if not since_text:
        raise QBOError(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter changedSince is missing",
            element="changedSince",
        )
    try:
        since = parse_ts(since_text)
    except ValueError as exc:
        raise QBOError(
            "2170",
            "Invalid Enumeration",
            f"Invalid changedSince: {since_text}",
            element="changedSince",
        ) from exc
    now = state.clock.now()
    if now - since > cfg.cdc_max_days * 86400:
        raise QBOError(
            "4000",
            "Invalid date",
            f"Operation cdc with changedSince date {since_text} which is older than "
            f"{cfg.cdc_max_days} days is not supported.",
            element="changedSince",
        )
    wanted = []
    for name in names:
        entity = ENTITIES.get(name.lower())
        if entity is None or entity in CDC_UNSUPPORTED:
            raise QBOError(
                "4001",
                "Invalid query",
                f"Operation cdc is not supported for entity {name}",
                element="entities",
            )
        if entity not in wanted:
            wanted.append(entity)
    budget = cfg.cdc_max_objects
    responses: list[dict[str, Any]] = []
    for entity in wanted:
        stamps = realm.updated[entity]
        live = sorted((ts, oid) for oid, ts in stamps.items() if ts >= since)
        gone = sorted((t.ts, oid) for oid, t in realm.deleted[entity].items() if t.ts >= since)
        objs = [realm.objects[entity][oid] for _, oid in live[:budget]]
        budget -= len(objs)
        tombs = [realm.deleted[entity][oid].body for _, oid in gone[:budget]]
        budget -= len(tombs)
        objs += tombs
        if objs:
            responses.append(
                {entity: objs, "startPosition": 1, "maxResults": len(objs), "totalCount": len(objs)}
            )
    # Entity types without changes are left out; with no change at all the list holds one
    # empty object, as Intuit answers (qbo-api.md §2.9).
    body = {"CDCResponse": [{"QueryResponse": responses or [{}]}], "time": fmt_time(now)}
    return json_response(body)


# ------------------------------------------------------------------------------ batch


async def batch(state: State, realm: Realm, body: Any) -> web.Response:
    items = body.get("BatchItemRequest") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise QBOError(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "BatchItemRequest is missing or empty",
            element="BatchItemRequest",
        )
    if len(items) > state.cfg.batch_max_items:
        raise QBOError(
            "1040",
            "Batch size exceeds allowed limit",
            f"Batch size {len(items)} exceeds the maximum of {state.cfg.batch_max_items} items",
        )
    ctx = state.ctx(realm)
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        bid = item.get("bId")
        state.count(realm.realm_id, "batch.item")
        try:
            out.append({"bId": bid, **_batch_item(state, realm, ctx, item)})
        except QBOError as exc:
            out.append({"bId": bid, "Fault": exc.fault()})
    state.emit(realm, ctx.events, ctx.now)
    return json_response({"BatchItemResponse": out, "time": fmt_time(state.clock.now())})


def _batch_item(state: State, realm: Realm, ctx: Ctx, item: dict[str, Any]) -> dict[str, Any]:
    if "Query" in item:
        return {"QueryResponse": run_query(state, realm, str(item["Query"]))}
    keys = [
        k for k in item if k not in ("bId", "operation", "optionsData") and k in ENTITIES.values()
    ]
    if len(keys) != 1:
        raise QBOError(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "A batch item needs exactly one entity object or a Query",
        )
    entity = keys[0]
    op = (item.get("operation") or "").lower()
    body = item[entity]
    if op == "create":
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "Id"}
        result = write(ctx, entity, body, "create", None)
        ctx.hidden.add((entity, result["Id"]))  # later items must not see it
    elif op == "update":
        if not isinstance(body, dict) or not body.get("Id"):
            raise QBOError(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Id is required for update",
                element="Id",
            )
        include = "void" if (item.get("optionsData") or "").lower() == "void" else None
        if include and entity == "Invoice":
            result = write(ctx, entity, body, "void", None)
        else:
            result = write(ctx, entity, body, "update", include)
    elif op == "delete":
        result = write(ctx, entity, body, "delete", None)
    else:
        raise QBOError(
            "2170",
            "Invalid Enumeration",
            f"Invalid batch operation: {item.get('operation')}",
            element="operation",
        )
    return {entity: result}

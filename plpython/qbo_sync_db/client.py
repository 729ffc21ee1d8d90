"""The QBO client's pure parts: where to call, what to send, and what QBO's answers mean.

Nothing here touches the network or the database: functions build `Request`s (method, URL with
`minorversion=75` and, for writes, the caller's `requestid`; headers; body) that
qbo_sync_db.transport sends, and read QBO's answers (entity, query, CDC, batch) and every error
envelope (JSON `Fault`, the gateway's lowercase `fault`, the token endpoint's `error`, the XML
fault, HTML or empty bodies) into one `QboApiError`, mapped onto the project's error classes.
The facts behind each choice are in docs/qbo-api-notes.md; docs/client.md describes the design.

Errors a caller's data can cause (a query value with a control character, an unknown
environment) are `QboSyncError`s with their SQLSTATE; misuse by the calling code (an entity
name that is not a name, 31 batch items) is a ValueError, a bug the worker does not retry.
No token or secret ever appears in a repr, a message or a detail: `Request` and `Company` keep
theirs out of repr, and every text read from QBO goes through `redact`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from qbo_sync_db import __version__
from qbo_sync_db.errors import (
    ConfigurationError,
    QboApiError,
    QboErrorItem,
    QboForbidden,
    QboReconnectNeeded,
    QboRequestRejected,
    QboServerError,
    QboSyncError,
    QboThrottled,
    QboUnauthorized,
    QboUnreachable,
)

# ----------------------------------------------------------------------------- where to call

API_BASE_URLS = {
    "production": "https://quickbooks.api.intuit.com",
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
}
#: the OAuth endpoints are the same for sandbox and production (qbo-api.md §1.1)
INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
INTUIT_REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
#: the simulator serves Intuit's paths under its own base URL
SIMULATOR_TOKEN_PATH = "/oauth2/v1/tokens/bearer"
SIMULATOR_REVOKE_PATH = "/oauth2/v1/tokens/revoke"
ENVIRONMENTS = ("production", "sandbox", "simulator")

MINOR_VERSION = "75"
BATCH_MAX_ITEMS = 30
QUERY_MAX_RESULTS = 1000
REQUESTID_MAX_LENGTH = 50
BATCH_REQUESTID_MAX_LENGTH = 36
BATCH_BID_MAX_LENGTH = 10
USER_AGENT = f"qbo-sync/{__version__}"
#: a longer query goes as a POST body (URLs this long are refused by some proxies)
MAX_GET_URL = 4000

#: removing these means a sparse update to Active=false; QBO cannot delete them
NAME_LIST_ENTITIES = frozenset(
    {"Customer", "Item", "Vendor", "Employee", "Account", "Term", "PaymentMethod", "TaxCode"}
)
#: void is `?operation=void` for an invoice, `?operation=update&include=void` for these
VOID_BY_INCLUDE = frozenset({"Payment", "SalesReceipt", "BillPayment"})
VOID_BY_OPERATION = frozenset({"Invoice"})

_ENTITY_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}\Z")
_REALM_ID = re.compile(r"[0-9]{1,32}\Z")
_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,50}\Z")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Endpoints:
    """The Accounting API base (without /v3) and the OAuth URLs of one environment."""

    environment: str
    api_base: str
    token_url: str
    revoke_url: str


def endpoints(environment: str, api_base_url: str | None = None) -> Endpoints:
    """Endpoints for qbo_connection.environment and .api_base_url.

    Production and sandbox always call Intuit's own hosts: an api_base_url naming another host
    is refused, so a changed row cannot send an organization's tokens elsewhere. The simulator
    needs its URL (http or https, root or ending in /v3).
    """
    if environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"unknown QBO environment {environment!r}",
            hint="qbo_connection.environment is one of: " + ", ".join(ENVIRONMENTS),
        )
    base = _normal_base_url(api_base_url) if api_base_url else None
    if environment in API_BASE_URLS:
        official = API_BASE_URLS[environment]
        if base is not None and base != official:
            raise ConfigurationError(
                f"api_base_url {base!r} does not belong to QBO's {environment} environment",
                hint=f"leave qbo_connection.api_base_url empty (it is {official}) or use "
                "environment 'simulator'",
            )
        return Endpoints(environment, official, INTUIT_TOKEN_URL, INTUIT_REVOKE_URL)
    if base is None:
        raise ConfigurationError(
            "the simulator environment needs qbo_connection.api_base_url",
            hint="e.g. http://127.0.0.1:8765 (where `qbo-sync simulator` listens)",
        )
    return Endpoints(environment, base, base + SIMULATOR_TOKEN_PATH, base + SIMULATOR_REVOKE_PATH)


def _normal_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            "api_base_url must be an http(s) URL without credentials, query or fragment",
            hint="e.g. http://127.0.0.1:8765",
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v3"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


def check_access_token(access_token: str) -> None:
    """A token goes into a header: it must be non-empty, without whitespace or control
    characters (never named in the error)."""
    if (
        not isinstance(access_token, str)
        or not access_token
        or _HEADER_VALUE_BAD.search(access_token)
    ):
        raise ConfigurationError(
            "the QBO access token is empty or not a token (whitespace or control characters)",
            hint="refresh the connection's tokens",
        )


@dataclass(frozen=True)
class Company:
    """One QBO company as the API is called for it: realm, base URL and the access token."""

    realm_id: str
    api_base: str
    access_token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _REALM_ID.match(self.realm_id or ""):
            raise ConfigurationError(
                "a QBO realm id is decimal digits", hint="check qbo_connection.realm_id"
            )
        check_access_token(self.access_token)

    def url(self, tail: str, params: Sequence[tuple[str, str]] = ()) -> str:
        query = urlencode([*params, ("minorversion", MINOR_VERSION)], quote_via=quote)
        return f"{self.api_base}/v3/company/{self.realm_id}/{tail}?{query}"


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """One HTTP request, ready to send; resending it unchanged reuses its requestid.

    `idempotent` says whether sending it twice is safe (reads, queries, writes with a requestid);
    transport retries an ambiguous failure (a timeout, a 5xx) only then. `kind` is what QBO's
    limits count it as: "call", "batch" (its own 40 a minute) or "oauth" (the token endpoint,
    not the company's API). `secrets` are the values to scrub from anything said about this
    request; they, the headers and the body stay out of repr.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    idempotent: bool = True
    label: str = ""
    requestid: str | None = None
    expects_json: bool = True
    kind: str = "call"
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def with_access_token(self, access_token: str) -> Request:
        """The same request (same URL and requestid) under a refreshed access token."""
        check_access_token(access_token)
        headers = {**self.headers, "Authorization": f"Bearer {access_token}"}
        return replace(self, headers=headers, secrets=(access_token,))


def new_requestid() -> str:
    """A fresh requestid (a UUID, 36 characters: short enough for a batch too)."""
    return str(uuid.uuid4())


def api_headers(
    access_token: str, content_type: str | None = None, accept: str = "application/json"
) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Accept": accept,
        "User-Agent": USER_AGENT,
    }
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _entity_path(entity: str) -> str:
    if not _ENTITY_NAME.match(entity or ""):
        raise ValueError(f"not a QBO entity name: {entity!r}")
    return entity.lower()


def _object_id(value: Any, what: str = "Id") -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _OBJECT_ID.match(text):
        raise ValueError(f"not a QBO {what}: {value!r}")
    return text


def _requestid(value: str, limit: int = REQUESTID_MAX_LENGTH) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.match(value) or len(value) > limit:
        raise ValueError(f"a requestid is 1..{limit} characters of [A-Za-z0-9_-]")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        as_float = float(value)
        if not value.is_finite() or Decimal(repr(as_float)) != value:
            raise ValueError(f"{value} cannot be sent as a JSON number without losing digits")
        return as_float
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} to QBO")


def encode_json(body: Any) -> bytes:
    """JSON for QBO: UTF-8, Decimals as numbers (refused if a float would change them)."""
    return json.dumps(
        body, default=_json_default, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def decode_json(body: bytes | str) -> Any:
    """QBO's JSON with amounts as Decimal (qbo-api.md §2.11)."""
    return json.loads(body, parse_float=Decimal)


def _write(
    company: Company,
    entity: str,
    body: Mapping[str, Any],
    requestid: str,
    label: str,
    params: Sequence[tuple[str, str]] = (),
) -> Request:
    rid = _requestid(requestid)
    return Request(
        "POST",
        company.url(_entity_path(entity), [*params, ("requestid", rid)]),
        api_headers(company.access_token, "application/json"),
        encode_json(body),
        idempotent=True,
        label=label,
        requestid=rid,
        secrets=(company.access_token,),
    )


def read_request(company: Company, entity: str, entity_id: str | int) -> Request:
    oid = _object_id(entity_id)
    return Request(
        "GET",
        company.url(f"{_entity_path(entity)}/{oid}"),
        api_headers(company.access_token),
        label=f"read {entity} {oid}",
        secrets=(company.access_token,),
    )


def create_request(
    company: Company, entity: str, body: Mapping[str, Any], requestid: str
) -> Request:
    """Create: QBO assigns Id and SyncToken; a client Id is left out (it would mean update)."""
    clean = {k: v for k, v in body.items() if k not in ("Id", "SyncToken", "sparse")}
    return _write(company, entity, clean, requestid, f"create {entity}")


def update_request(
    company: Company,
    entity: str,
    body: Mapping[str, Any],
    requestid: str,
    *,
    sparse: bool = True,
) -> Request:
    """Update by Id and SyncToken: sparse (only the fields sent) unless sparse=False, where QBO
    sets every writable field not sent to null."""
    oid = _object_id(body.get("Id"))
    _object_id(body.get("SyncToken"), "SyncToken")
    clean = {**body, "sparse": sparse}
    return _write(company, entity, clean, requestid, f"update {entity} {oid}")


def deactivate_request(
    company: Company, entity: str, entity_id: str | int, sync_token: str, requestid: str
) -> Request:
    """A name-list entity (customer, item, ...) is removed by making it inactive."""
    if entity not in NAME_LIST_ENTITIES:
        raise ValueError(f"{entity} is not a name-list entity; delete or void it instead")
    body = {"Id": _object_id(entity_id), "SyncToken": sync_token, "Active": False}
    return update_request(company, entity, body, requestid)


def delete_request(
    company: Company, entity: str, entity_id: str | int, sync_token: str, requestid: str
) -> Request:
    if entity in NAME_LIST_ENTITIES:
        raise ValueError(f"QBO cannot delete a {entity}; deactivate it")
    oid = _object_id(entity_id)
    body = {"Id": oid, "SyncToken": _object_id(sync_token, "SyncToken")}
    return _write(
        company, entity, body, requestid, f"delete {entity} {oid}", [("operation", "delete")]
    )


def void_request(
    company: Company, entity: str, entity_id: str | int, sync_token: str, requestid: str
) -> Request:
    oid = _object_id(entity_id)
    body: dict[str, Any] = {"Id": oid, "SyncToken": _object_id(sync_token, "SyncToken")}
    if entity in VOID_BY_OPERATION:
        params = [("operation", "void")]
    elif entity in VOID_BY_INCLUDE:
        params = [("operation", "update"), ("include", "void")]
        body["sparse"] = True
    else:
        raise ValueError(f"QBO has no void for {entity}")
    return _write(company, entity, body, requestid, f"void {entity} {oid}", params)


def query_request(company: Company, text: str, *, method: str | None = None) -> Request:
    """A query: GET with the URL-encoded text, or POST with it as the body (application/text).
    Without `method`, GET unless the URL would be longer than MAX_GET_URL."""
    _check_text(text, "query")
    url = company.url("query", [("query", text)])
    if method is None:
        method = "GET" if len(url) <= MAX_GET_URL else "POST"
    if method == "GET":
        return Request(
            "GET",
            url,
            api_headers(company.access_token),
            label="query",
            secrets=(company.access_token,),
        )
    if method != "POST":
        raise ValueError("a query is sent by GET or POST")
    return Request(
        "POST",
        company.url("query"),
        api_headers(company.access_token, "application/text"),
        text.encode("utf-8"),
        idempotent=True,  # a query changes nothing
        label="query",
        secrets=(company.access_token,),
    )


def cdc_request(
    company: Company, entities: Iterable[str], changed_since: datetime | date | str
) -> Request:
    """Change data capture since `changed_since` (at most 30 days back; an aware datetime)."""
    names = list(entities)
    for name in names:
        _entity_path(name)
    if not names:
        raise ValueError("CDC needs at least one entity")
    if isinstance(changed_since, datetime):
        if changed_since.utcoffset() is None:
            raise ValueError("changed_since must carry its time zone")
        since = changed_since.isoformat()
    elif isinstance(changed_since, date):
        since = changed_since.isoformat()
    else:
        since = changed_since
        _check_text(since, "changedSince")
    return Request(
        "GET",
        company.url("cdc", [("entities", ",".join(names)), ("changedSince", since)]),
        api_headers(company.access_token),
        label="cdc " + ",".join(names),
        secrets=(company.access_token,),
    )


# ----------------------------------------------------------------------------- batch


def batch_create(bid: str, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
    _entity_path(entity)
    clean = {k: v for k, v in body.items() if k not in ("Id", "SyncToken", "sparse")}
    return {"bId": bid, "operation": "create", entity: clean}


def batch_update(
    bid: str, entity: str, body: Mapping[str, Any], *, sparse: bool = True
) -> dict[str, Any]:
    _entity_path(entity)
    _object_id(body.get("Id"))
    _object_id(body.get("SyncToken"), "SyncToken")
    return {"bId": bid, "operation": "update", entity: {**body, "sparse": sparse}}


def batch_delete(bid: str, entity: str, entity_id: str | int, sync_token: str) -> dict[str, Any]:
    if entity in NAME_LIST_ENTITIES:
        raise ValueError(f"QBO cannot delete a {entity}; deactivate it")
    _entity_path(entity)
    body = {"Id": _object_id(entity_id), "SyncToken": _object_id(sync_token, "SyncToken")}
    return {"bId": bid, "operation": "delete", entity: body}


def batch_void(bid: str, entity: str, entity_id: str | int, sync_token: str) -> dict[str, Any]:
    """Void in a batch is `operation: update` with `optionsData: void` for every entity."""
    if entity not in VOID_BY_OPERATION | VOID_BY_INCLUDE:
        raise ValueError(f"QBO has no void for {entity}")
    body = {
        "Id": _object_id(entity_id),
        "SyncToken": _object_id(sync_token, "SyncToken"),
        "sparse": True,
    }
    return {"bId": bid, "operation": "update", "optionsData": "void", entity: body}


def batch_query(bid: str, text: str) -> dict[str, Any]:
    _check_text(text, "query")
    return {"bId": bid, "Query": text}


def batch_request(
    company: Company, items: Sequence[Mapping[str, Any]], requestid: str | None = None
) -> Request:
    """One batch of at most 30 items with unique bIds; a batch that writes needs a requestid
    (at most 36 characters, and then each bId at most 10)."""
    if not 1 <= len(items) <= BATCH_MAX_ITEMS:
        raise ValueError(f"a batch holds 1..{BATCH_MAX_ITEMS} items, not {len(items)}")
    bids = [item.get("bId") for item in items]
    if any(not isinstance(b, str) or not b for b in bids) or len(set(bids)) != len(bids):
        raise ValueError("every batch item needs its own non-empty bId")
    writes = any("operation" in item for item in items)
    if writes and requestid is None:
        raise ValueError("a batch that writes needs a requestid")
    params: list[tuple[str, str]] = []
    if requestid is not None:
        params.append(("requestid", _requestid(requestid, BATCH_REQUESTID_MAX_LENGTH)))
        if any(len(b) > BATCH_BID_MAX_LENGTH for b in bids):
            raise ValueError(f"with a requestid every bId is at most {BATCH_BID_MAX_LENGTH} long")
    return Request(
        "POST",
        company.url("batch", params),
        api_headers(company.access_token, "application/json"),
        encode_json({"BatchItemRequest": list(items)}),
        idempotent=requestid is not None or not writes,
        label=f"batch of {len(items)}",
        requestid=requestid,
        kind="batch",
        secrets=(company.access_token,),
    )


def chunks(items: Sequence[Any], size: int = BATCH_MAX_ITEMS) -> Iterator[Sequence[Any]]:
    """`items` in runs of at most `size` (one batch each)."""
    if not 1 <= size <= BATCH_MAX_ITEMS:
        raise ValueError(f"a batch holds 1..{BATCH_MAX_ITEMS} items")
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ----------------------------------------------------------------------------- OAuth


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint answered; the tokens stay out of repr."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    refresh_expires_in: int | None
    refresh_hard_expires_in: int | None
    token_type: str = "bearer"


def _basic(client_id: str, client_secret: str) -> str:
    """The app's Basic credentials (base64 of id:secret, as Intuit's OAuth endpoints take them)."""
    if not client_id or not client_secret:
        raise ConfigurationError(
            "QBO_CLIENT_ID and QBO_CLIENT_SECRET are needed to talk to QBO's OAuth endpoints"
        )
    return base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")


def _token_endpoint_request(
    ends: Endpoints, client_id: str, client_secret: str, form: dict[str, str], label: str
) -> Request:
    basic = _basic(client_id, client_secret)
    secret_values = (client_secret, basic, *(v for k, v in form.items() if k != "grant_type"))
    return Request(
        "POST",
        ends.token_url,
        {
            "Authorization": f"Basic {basic}",
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            "x-include-refresh-token-hard-expires-in": "true",
        },
        urlencode(form).encode("ascii"),
        # a refresh that timed out may have rotated the token: never resend it blindly
        idempotent=False,
        label=label,
        kind="oauth",
        secrets=tuple(v for v in secret_values if v),
    )


def refresh_token_request(
    ends: Endpoints, client_id: str, client_secret: str, refresh_token: str
) -> Request:
    if not refresh_token:
        raise ConfigurationError("the connection has no refresh token", hint="connect again")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_endpoint_request(ends, client_id, client_secret, form, "token refresh")


def authorization_code_request(
    ends: Endpoints, client_id: str, client_secret: str, code: str, redirect_uri: str
) -> Request:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return _token_endpoint_request(ends, client_id, client_secret, form, "code exchange")


def revoke_request(ends: Endpoints, client_id: str, client_secret: str, token: str) -> Request:
    basic = _basic(client_id, client_secret)
    return Request(
        "POST",
        ends.revoke_url,
        {
            "Authorization": f"Basic {basic}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        },
        encode_json({"token": token}),
        idempotent=True,  # revoking twice changes nothing
        label="token revoke",
        expects_json=False,
        kind="oauth",
        secrets=tuple(v for v in (client_secret, basic, token) if v),
    )


def parse_token_response(data: Any) -> TokenSet:
    """The token endpoint's success body (qbo-api.md §1.5)."""

    def seconds(key: str) -> int | None:
        value = data.get(key)
        if value is None or isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    if (
        not isinstance(data, dict)
        or not isinstance(data.get("access_token"), str)
        or not isinstance(data.get("refresh_token"), str)
        or not data["access_token"]
        or not data["refresh_token"]
        or seconds("expires_in") is None
    ):
        raise QboServerError(
            "QBO's token endpoint answered without access_token, refresh_token and expires_in"
        )
    return TokenSet(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        expires_in=seconds("expires_in") or 0,
        refresh_expires_in=seconds("x_refresh_token_expires_in"),
        refresh_hard_expires_in=seconds("x_refresh_token_hard_expires_in"),
        token_type=str(data.get("token_type") or "bearer"),
    )


# ----------------------------------------------------------------------------- queries

QUERY_OPERATORS = frozenset({"=", "<", ">", "<=", ">=", "IN", "LIKE"})
_PROPERTY = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PAGING = re.compile(r"\b(?:STARTPOSITION|MAXRESULTS)\b", re.I)


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the {what} is empty")
    if _CONTROL.search(text.replace("\n", " ").replace("\t", " ").replace("\r", " ")):
        raise QboRequestRejected(f"the {what} holds a control character")


def literal(value: Any) -> str:
    """`value` as a QBO query literal.

    Strings are single-quoted with backslash and apostrophe escaped by a backslash
    (`Amy's` -> `'Amy\\'s'`; escaping the backslash too keeps a trailing one from escaping the
    closing quote); control characters are refused (QboRequestRejected). Booleans are bare
    (`true`); numbers, dates and aware datetimes are quoted, as Intuit's examples are.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError("not a finite number")
        return f"'{value}'"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return f"'{value!r}'"
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("a datetime in a query must carry its time zone")
        return f"'{value.isoformat()}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise QboRequestRejected(
                "a value in a QBO query holds a control character",
                hint="QBO names and values cannot hold tabs, newlines or other control characters",
            )
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise ValueError(f"cannot put a {type(value).__name__} in a QBO query")


def condition(prop: str, op: str, value: Any) -> str:
    """`prop op value`; IN takes a non-empty sequence; LIKE's value may use % (its only
    wildcard, which cannot be escaped)."""
    if not _PROPERTY.match(prop or ""):
        raise ValueError(f"not a QBO property name: {prop!r}")
    operator = op.upper()
    if operator not in QUERY_OPERATORS:
        raise ValueError(f"QBO queries have no operator {op!r}")
    if operator == "IN":
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError("IN takes a sequence of values")
        values = [literal(v) for v in value]
        if not values:
            raise ValueError("IN needs at least one value")
        return f"{prop} IN ({', '.join(values)})"
    return f"{prop} {operator} {literal(value)}"


def select(
    entity: str,
    where: Iterable[tuple[str, str, Any]] = (),
    order_by: Iterable[str | tuple[str, str]] = (),
    *,
    count: bool = False,
) -> str:
    """SELECT * (or COUNT(*)) FROM entity [WHERE a AND b ...] [ORDERBY p [ASC|DESC], ...].

    Conditions are ANDed (QBO has no OR); paging is added by `page`.
    """
    _entity_path(entity)
    text = f"SELECT {'COUNT(*)' if count else '*'} FROM {entity}"
    conditions = [condition(*c) for c in where]
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    keys = []
    for key in order_by:
        prop, direction = (key, "ASC") if isinstance(key, str) else key
        if not _PROPERTY.match(prop) or direction.upper() not in ("ASC", "DESC"):
            raise ValueError(f"not an ORDERBY key: {key!r}")
        keys.append(f"{prop} {direction.upper()}")
    if keys:
        text += " ORDERBY " + ", ".join(keys)
    return text


def page(query: str, start_position: int, max_results: int = QUERY_MAX_RESULTS) -> str:
    """`query` limited to one page: STARTPOSITION is 1-based, MAXRESULTS at most 1000."""
    if _PAGING.search(_without_literals(query)):
        raise ValueError("the query already has STARTPOSITION or MAXRESULTS")
    if start_position < 1 or not 1 <= max_results <= QUERY_MAX_RESULTS:
        raise ValueError(f"STARTPOSITION >= 1 and MAXRESULTS 1..{QUERY_MAX_RESULTS}")
    return f"{query} STARTPOSITION {start_position} MAXRESULTS {max_results}"


def _without_literals(query: str) -> str:
    return re.sub(r"'(?:\\.|[^'\\])*'", "''", query)


def next_start(start_position: int, max_results: int, returned: int) -> int | None:
    """Where the next page starts, or None: a page with fewer rows than asked is the last."""
    return start_position + max_results if returned >= max_results else None


def iter_pages(
    query: str,
    fetch: Callable[[str], QueryPage],
    page_size: int = QUERY_MAX_RESULTS,
    max_pages: int | None = None,
) -> Iterator[QueryPage]:
    """Every page of `query`, fetching one page text at a time with `fetch` (which sends it and
    parses the answer); stops after the first page that comes back short."""
    start: int | None = 1
    pages = 0
    while start is not None and (max_pages is None or pages < max_pages):
        result = fetch(page(query, start, page_size))
        pages += 1
        yield result
        start = next_start(start, page_size, len(result.rows))


# ----------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class QueryPage:
    """One QueryResponse: the rows (of `entity`, None when there are none), and the counts."""

    entity: str | None
    rows: list[dict[str, Any]]
    start_position: int | None = None
    max_results: int | None = None
    total_count: int | None = None


@dataclass(frozen=True)
class CdcResult:
    """A CDC answer: changed objects by entity (deleted ones included, see `is_deleted`)."""

    changes: dict[str, list[dict[str, Any]]]
    time: str | None

    def deleted(self, entity: str) -> list[dict[str, Any]]:
        return [obj for obj in self.changes.get(entity, []) if is_deleted(obj)]

    def live(self, entity: str) -> list[dict[str, Any]]:
        return [obj for obj in self.changes.get(entity, []) if not is_deleted(obj)]

    @property
    def count(self) -> int:
        return sum(len(objs) for objs in self.changes.values())


@dataclass(frozen=True)
class BatchResult:
    """One batch item's outcome: an entity, a query page, or an error (never two)."""

    bid: str
    entity: str | None = None
    object: dict[str, Any] | None = None
    query: QueryPage | None = None
    error: QboApiError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def exception(self) -> QboSyncError | None:
        return None if self.error is None else to_exception(self.error)


def is_deleted(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("status", "")).lower() == "deleted"


def _malformed(what: str) -> QboServerError:
    return QboServerError(f"QBO's answer is not {what}", hint="retried; QBO answered oddly")


def parse_entity(data: Any, entity: str) -> dict[str, Any]:
    """The object of a read, create, update, delete or void answer (`{"Customer": {...}}`)."""
    obj = data.get(entity) if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise _malformed(f"a {entity}")
    return obj


def parse_query(data: Any, entity: str | None = None) -> QueryPage:
    """A query answer: `{"QueryResponse": {...}}` or the QueryResponse object itself. An empty
    result is `{}`; COUNT(*) gives only totalCount."""
    response = data.get("QueryResponse", data) if isinstance(data, dict) else None
    if not isinstance(response, dict):
        raise _malformed("a QueryResponse")
    lists = {k: v for k, v in response.items() if isinstance(v, list)}
    if entity is None and len(lists) > 1:
        raise _malformed("one entity's query result")
    name = entity if entity is not None else next(iter(lists), None)
    rows = lists.get(name, []) if name else []
    return QueryPage(
        entity=name if rows else None,
        rows=rows,
        start_position=_int_or_none(response.get("startPosition")),
        max_results=_int_or_none(response.get("maxResults")),
        total_count=_int_or_none(response.get("totalCount")),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_cdc(data: Any) -> CdcResult:
    """A CDC answer: every CDCResponse's QueryResponse list; `[{}]` means nothing changed."""
    responses = data.get("CDCResponse") if isinstance(data, dict) else None
    if not isinstance(responses, list):
        raise _malformed("a CDCResponse")
    changes: dict[str, list[dict[str, Any]]] = {}
    for response in responses:
        if not isinstance(response, dict):
            raise _malformed("a CDCResponse")
        for part in response.get("QueryResponse") or []:
            if not isinstance(part, dict):
                raise _malformed("a CDC QueryResponse")
            for key, value in part.items():
                if isinstance(value, list):
                    changes.setdefault(key, []).extend(value)
    return CdcResult(changes, data.get("time"))


def parse_batch(
    data: Any,
    sent_bids: Iterable[str],
    http_status: int | None = 200,
    intuit_tid: str | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, BatchResult]:
    """Batch answers by bId (never by position). A bId QBO did not answer comes back as an
    error ("no answer"); an answer for a bId that was not sent means the answer cannot be
    trusted (QboServerError)."""
    responses = data.get("BatchItemResponse") if isinstance(data, dict) else None
    if not isinstance(responses, list):
        raise _malformed("a BatchItemResponse")
    wanted = list(sent_bids)
    results: dict[str, BatchResult] = {}
    for item in responses:
        bid = item.get("bId") if isinstance(item, dict) else None
        if bid not in wanted or bid in results:
            raise _malformed("an answer to the items sent (unknown or repeated bId)")
        results[bid] = _batch_item(item, bid, intuit_tid, secrets)
    for bid in wanted:
        if bid not in results:
            results[bid] = BatchResult(
                bid,
                error=QboApiError(
                    "http",
                    http_status,
                    None,
                    "QBO's batch answer has nothing for this item",
                    intuit_tid=intuit_tid,
                ),
            )
    return {bid: results[bid] for bid in wanted}


def _batch_item(
    item: dict[str, Any], bid: str, intuit_tid: str | None, secrets: Iterable[str]
) -> BatchResult:
    if "Fault" in item:
        return BatchResult(
            bid, error=_from_fault(item["Fault"], None, intuit_tid, secrets, source="fault")
        )
    if "QueryResponse" in item:
        return BatchResult(bid, query=parse_query(item))
    entities = [k for k, v in item.items() if k != "bId" and isinstance(v, dict)]
    if len(entities) != 1:
        raise _malformed("a batch item answer")
    return BatchResult(bid, entity=entities[0], object=item[entities[0]])


# ----------------------------------------------------------------------------- errors

REDACTED = "[redacted]"
_TOKEN_WORD = re.compile(r"[A-Za-z0-9._~+/=-]{8,}")
_TOKEN_PATTERNS = (
    # JWT/JWE, whole or cut short (Intuit access tokens are compact JWEs: eyJ...)
    (re.compile(r"\beyJ[A-Za-z0-9_.-]{5,}…?"), REDACTED),
    # Intuit refresh tokens: RT1-39-H3-... now, AB11570127472... before
    (re.compile(r"\bRT1-[A-Za-z0-9-]{6,}…?"), REDACTED),
    (re.compile(r"\bAB1\d{6,}[A-Za-z0-9]*…?"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # "Token expired: AB0173…" (QBO's gateway quotes the start of the token)
    (
        re.compile(r"(?i)(token[\w ]{0,24}:\s*)(?=[^\s]*\d)[A-Za-z0-9._~+/=-]{8,}…?"),
        r"\1" + REDACTED,
    ),
    (
        re.compile(r"(?i)((?:access|refresh)_token[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
        r"\1" + REDACTED,
    ),
)
TEXT_LIMIT = 1000


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any of `secrets` (whole, or a piece of at least 8 characters of one),
    anything shaped like a bearer or refresh token, and capped at 1000 characters."""
    if not text:
        return text
    whole = sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True)
    for secret in whole:
        text = text.replace(secret, REDACTED)
    known = [s for s in whole if len(s) >= 8]
    if known:
        text = _TOKEN_WORD.sub(
            lambda m: REDACTED if any(m.group(0) in s for s in known) else m.group(0), text
        )
    for pattern, replacement in _TOKEN_PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 1] + "…"
    return text


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by case-insensitive name."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def intuit_tid(headers: Mapping[str, str] | None) -> str | None:
    return header(headers, "intuit_tid")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: seconds, or an HTTP date (needs `now`)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    if now is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_error(
    http_status: int | None,
    headers: Mapping[str, str] | None,
    body: bytes | str | None,
    secrets: Iterable[str] = (),
    now: float | None = None,
) -> QboApiError:
    """Whatever QBO answered for a failed call, as one QboApiError."""
    secrets = tuple(secrets)
    tid = intuit_tid(headers)
    retry_after = parse_retry_after(header(headers, "Retry-After"), now)
    if isinstance(body, bytes):
        text = body.decode("utf-8", "replace")
    else:
        text = body or ""
    stripped = text.strip()
    error: QboApiError | None = None
    if stripped.startswith(("{", "[")):
        try:
            data = decode_json(stripped)
        except ValueError:
            data = None
        error = _from_json(data, http_status, tid, secrets)
    elif stripped.startswith("<") and "<Fault" in stripped:
        error = _from_xml(stripped, http_status, tid, secrets)
    if error is None:
        error = _from_other(stripped, header(headers, "Content-Type"), http_status, tid, secrets)
    return replace(error, retry_after=retry_after) if retry_after is not None else error


def _clean(value: Any, secrets: Iterable[str]) -> str:
    return redact("" if value is None else str(value), secrets)


def _from_fault(
    fault: Any, http_status: int | None, tid: str | None, secrets: Iterable[str], source: str
) -> QboApiError:
    """The JSON `Fault` (Error/Message/Detail) or the gateway's `fault` (error/message/detail)."""
    fault = fault if isinstance(fault, dict) else {}
    raw_items = fault.get("Error", fault.get("error")) or []
    items = []
    for raw in raw_items if isinstance(raw_items, list) else [raw_items]:
        if not isinstance(raw, dict):
            continue
        code = raw.get("code", raw.get("Code"))
        element = raw.get("element", raw.get("Element"))
        items.append(
            QboErrorItem(
                code=None if code in (None, "") else _clean(code, secrets),
                message=_clean(raw.get("Message", raw.get("message")), secrets),
                detail=_clean(raw.get("Detail", raw.get("detail")), secrets),
                element=_clean(element, secrets) or None,
            )
        )
    first = items[0] if items else QboErrorItem(None, "QBO answered a fault without errors")
    fault_type = fault.get("type")
    return QboApiError(
        source=source,
        http_status=http_status,
        code=first.code,
        message=first.message or first.detail or "QBO answered a fault",
        detail=first.detail,
        element=first.element,
        fault_type=None if fault_type is None else _clean(fault_type, secrets),
        intuit_tid=tid,
        errors=tuple(items),
    )


def _from_json(
    data: Any, http_status: int | None, tid: str | None, secrets: tuple[str, ...]
) -> QboApiError | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Fault"), dict):
        return _from_fault(data["Fault"], http_status, tid, secrets, "fault")
    if isinstance(data.get("fault"), dict):
        return _from_fault(data["fault"], http_status, tid, secrets, "gateway")
    if isinstance(data.get("error"), str):
        code = _clean(data["error"], secrets)
        description = _clean(data.get("error_description"), secrets)
        return QboApiError(
            source="oauth",
            http_status=http_status,
            code=code,
            message=description or code,
            detail=description,
            intuit_tid=tid,
            errors=(QboErrorItem(code, description or code, description),),
        )
    return None


_XML_FAULT_TYPE = re.compile(r"<Fault\b[^>]*\btype=\"([^\"]*)\"")
_XML_ERROR = re.compile(r"<Error\b([^>]*)>(.*?)</Error>", re.S)
_XML_ATTRIBUTE = {name: re.compile(rf"\b{name}=\"([^\"]*)\"") for name in ("code", "element")}
_XML_TAG = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.S) for name in ("Message", "Detail")}
_XML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))


def _xml_text(value: str) -> str:
    for entity, char in _XML_ENTITIES:
        value = value.replace(entity, char)
    return value.strip()


def _from_xml(
    text: str, http_status: int | None, tid: str | None, secrets: tuple[str, ...]
) -> QboApiError | None:
    """The XML fault (`<IntuitResponse><Fault type=".."><Error code="..">`), read with regular
    expressions: no XML parser runs on what a server sent."""
    items = []
    for match in _XML_ERROR.finditer(text):
        attributes, inner = match.group(1), match.group(2)
        found = {}
        for name, pattern in {**_XML_ATTRIBUTE, **_XML_TAG}.items():
            hit = pattern.search(attributes if name in _XML_ATTRIBUTE else inner)
            found[name] = _clean(_xml_text(hit.group(1)), secrets) if hit else ""
        items.append(
            QboErrorItem(
                code=found["code"] or None,
                message=found["Message"],
                detail=found["Detail"],
                element=found["element"] or None,
            )
        )
    if not items:
        return None
    fault_type = _XML_FAULT_TYPE.search(text)
    first = items[0]
    return QboApiError(
        source="xml",
        http_status=http_status,
        code=first.code,
        message=first.message or first.detail or "QBO answered an XML fault",
        detail=first.detail,
        element=first.element,
        fault_type=_clean(_xml_text(fault_type.group(1)), secrets) if fault_type else None,
        intuit_tid=tid,
        errors=tuple(items),
    )


def _from_other(
    text: str,
    content_type: str | None,
    http_status: int | None,
    tid: str | None,
    secrets: tuple[str, ...],
) -> QboApiError:
    """No envelope: HTML from a proxy or load balancer, an empty body, or unknown JSON."""
    kind = (content_type or "").split(";")[0].strip() or "no content type"
    if not text:
        message = f"QBO answered HTTP {http_status} with an empty body"
        excerpt = ""
    else:
        plain = re.sub(r"<[^>]*>", " ", text) if "<" in text else text
        excerpt = _clean(" ".join(plain.split())[:200], secrets)
        message = f"QBO answered HTTP {http_status} ({kind})"
    return QboApiError(
        source="http",
        http_status=http_status,
        code=None,
        message=message,
        detail=excerpt,
        intuit_tid=tid,
    )


def network_error(what: str, label: str, request_secrets: Iterable[str] = ()) -> QboApiError:
    """No answer: `what` says what happened (e.g. "read timeout after 30 s")."""
    return QboApiError(
        source="network",
        http_status=None,
        code=None,
        message=_clean(f"no answer from QBO for {label}: {what}", request_secrets),
    )


# ----------------------------------------------------------------------------- error classes

#: codes that say the access token itself was refused: refresh it and try once more
TOKEN_REFUSED_CODES = frozenset({"3200", "100"})
_AUTH_CODES = frozenset({"3200", "100", "120", "130"})
_FORBIDDEN_CODES = frozenset({"3100", "3201"})

HINTS = {
    "5010": "the object changed in QBO since it was read: read it again and re-apply the change",
    "6240": "another customer, vendor or employee (or item) already has this name: link to it "
    "or rename",
    "610": "the object, or one it refers to, was deleted or made inactive in QBO",
    "600": "this requestid was used before: look the object up by its natural key",
    "6140": "another invoice has this DocNumber",
    "6190": "the company's QBO subscription has ended: stop syncing it",
    "4000": "the query could not be parsed",
    "4001": "the query names a property QBO does not have",
    "1040": "a batch holds at most 30 items",
    "3200": "the access token was refused: refresh it and try once more",
    "100": "the access token was refused: refresh it and try once more",
    "120": "the person who connected QBO is no longer its admin: an admin must connect again",
    "130": "the company is on the other QBO environment: check qbo_connection.environment",
    "3100": "the app may not use this company (not authorized, or the wrong environment)",
    "3201": "the company no longer authorizes this app: connect again",
    "3001": "QBO throttles a company to 500 calls a minute and 10 a second",
    "invalid_grant": "the refresh token is no longer valid: a person must connect QBO again",
    "invalid_client": "QBO refused the app's credentials: check QBO_CLIENT_ID and "
    "QBO_CLIENT_SECRET",
}


def error_class(error: QboApiError) -> type[QboSyncError]:
    """The project's error class (and so SQLSTATE) for what QBO answered."""
    status = error.http_status
    code = error.code
    if error.source == "network":
        return QboUnreachable
    if error.source == "oauth":
        if code == "invalid_grant":
            return QboReconnectNeeded
        if code == "invalid_client" or status == 401:
            return QboUnauthorized
    if status == 429 or code == "3001":
        return QboThrottled
    if status == 504:
        return QboUnreachable
    if status is not None and status >= 500:
        return QboServerError
    if status == 401:
        return QboUnauthorized
    if status == 403:
        return QboForbidden
    if status is None or 200 <= status < 300:
        # a fault inside a batch item, or a 200 carrying a Fault: judged by its code
        if code in _AUTH_CODES:
            return QboUnauthorized
        if code in _FORBIDDEN_CODES:
            return QboForbidden
        if ((code or "").isdigit() and int(code or "0") >= 10000) or (
            error.fault_type == "SystemFault"
        ):
            return QboServerError
        if error.source == "http" and code is None:
            return QboServerError  # no answer for an item, an unreadable 200
    return QboRequestRejected


_VERB = {
    QboThrottled: "throttled",
    QboServerError: "failed on",
    QboUnreachable: "did not answer",
    QboRequestRejected: "rejected",
    QboUnauthorized: "refused the credentials of",
    QboForbidden: "refused access for",
    QboReconnectNeeded: "refused",
}


def describe(error: QboApiError) -> str:
    """One line: who answered what, without secrets (the parts were cleaned when parsed)."""
    parts = [f"HTTP {error.http_status}" if error.http_status is not None else "no HTTP answer"]
    if error.fault_type:
        parts.append(error.fault_type)
    head = ", ".join(parts)
    code = f"{error.code} " if error.code else ""
    text = error.message
    if error.detail and error.detail != error.message:
        text = f"{text}: {error.detail}"
    return f"({head}) {code}{text}"


def to_exception(error: QboApiError, label: str = "") -> QboSyncError:
    """The QboSyncError to raise for `error` (it carries the error as `api_error`)."""
    cls = error_class(error)
    if error.source == "network":
        message = error.message
    else:
        message = f"QBO {_VERB.get(cls, 'failed on')} {label or 'the request'} {describe(error)}"
    details = []
    if error.element:
        details.append(f"element {error.element}")
    if len(error.errors) > 1:
        details.append("also: " + "; ".join(f"{e.code} {e.message}" for e in error.errors[1:]))
    if error.retry_after is not None:
        details.append(f"Retry-After {error.retry_after:g} s")
    if error.intuit_tid:
        details.append(f"intuit_tid {error.intuit_tid}")
    hint = HINTS.get(error.code or "")
    if hint is None and cls is QboThrottled:
        hint = HINTS["3001"]
    return cls(
        redact(message), hint=hint, detail=redact("; ".join(details)) or None, api_error=error
    )


def token_refused(error: QboApiError) -> bool:
    """Was the access token itself refused (expired, revoked, garbled)? Then refreshing it and
    sending the same request once more is the cure; for other 401s (120, 130) it is not."""
    return error.http_status == 401 and (error.code in TOKEN_REFUSED_CODES or error.code is None)

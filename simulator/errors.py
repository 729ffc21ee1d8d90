"""QBO error envelopes: the JSON ``Fault``, the gateway's lowercase ``fault`` and the XML fault.

``QBOError`` is raised anywhere in request handling and turned into the right envelope by the
server middleware; batch items render it as an item-level ``Fault``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

from simulator.clock import fmt_time


class QBOError(Exception):
    """A coded QBO fault (standard JSON envelope)."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str = "",
        element: str = "",
        status: int = 400,
        fault_type: str = "ValidationFault",
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.detail = detail or message
        self.element = element
        self.status = status
        self.fault_type = fault_type

    def fault(self) -> dict[str, Any]:
        return {
            "Error": [
                {
                    "Message": self.message,
                    "Detail": self.detail,
                    "code": self.code,
                    "element": self.element,
                }
            ],
            "type": self.fault_type,
        }


class GatewayError(Exception):
    """A 401/403 answered by Intuit's gateway (lowercase ``fault``, epoch-ms ``time``)."""

    def __init__(self, status: int, code: str, name: str, detail: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.name = name
        self.detail = detail


class Throttled(Exception):
    """Rate limit exceeded (HTTP 429, code 3001)."""


def new_tid() -> str:
    return f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"


def encode_json(body: Any) -> bytes:
    """`body` as compact UTF-8 JSON. orjson writes the same bytes as the standard library for
    what the simulator answers, about ten times faster (a 1000-object page is most of a query's
    CPU, which in benchmarks shares the machine with the engine it serves); the standard library
    takes what orjson refuses (an integer beyond 64 bits, a key that is not a string)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode_json(body),
        status=status,
        content_type="application/json",
        charset="UTF-8",
        headers=headers,
    )


def fault_response(err: QBOError, now: float) -> web.Response:
    return json_response({"Fault": err.fault(), "time": fmt_time(now)}, status=err.status)


def gateway_response(err: GatewayError, now: float) -> web.Response:
    body = {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [
                {
                    "message": f"message={err.name}; errorCode={int(err.code):06d}; "
                    f"statusCode={err.status}",
                    "detail": err.detail,
                    "code": err.code,
                    "element": None,
                }
            ],
            "type": "AUTHENTICATION" if err.status == 401 else "SERVICE",  # 403: as §4.4 (3100)
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(now * 1000),
        "status": None,
        "cdcresponse": [],
    }
    headers = {}
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
    return json_response(body, status=err.status, headers=headers)


THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
THROTTLE_DETAIL = "The request limit was reached.  Try again later"


def throttle_response(fmt: str, now: float) -> web.Response:
    if fmt == "json":
        err = QBOError("3001", THROTTLE_MESSAGE, THROTTLE_DETAIL, status=429, fault_type="SERVICE")
        return fault_response(err, now)
    return xml_fault_response(429, "3001", THROTTLE_MESSAGE, THROTTLE_DETAIL, "SERVICE", now)


def xml_fault_response(
    status: int, code: str, message: str, detail: str, fault_type: str, now: float
) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{fmt_time(now)}">'
        f'<Fault type="{fault_type}"><Error code="{code}"><Message>{escape(message)}</Message>'
        f"<Detail>{escape(detail)}</Detail></Error></Fault></IntuitResponse>"
    )
    return web.Response(text=body, status=status, content_type="application/xml", charset="UTF-8")


# Frequently used faults -------------------------------------------------------------------


def not_found(entity: str, oid: str) -> QBOError:
    return QBOError(
        "610",
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. Check the "
        f"fields with accounts, customers, items, vendors or employees. ({entity} Id={oid})",
    )


def deleted_txn(entity: str, oid: str) -> QBOError:
    return QBOError(
        "610",
        "Object Not Found",
        f"Object Not Found : Another user has deleted this transaction. ({entity} Id={oid})",
    )


def stale(entity: str) -> QBOError:
    return QBOError(
        "5010",
        "Stale Object Error",
        f"Stale Object Error : You and Sim User were working on this at the same time. Sim User "
        f"finished before you did, so your work was not saved. ({entity})",
    )


def required(element: str, detail: str = "") -> QBOError:
    return QBOError(
        "2020",
        "Required param missing, need to supply the required value for the API",
        detail or f"Required parameter {element} is missing in the request",
        element=element,
    )


def business(detail: str, element: str = "") -> QBOError:
    return QBOError(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element=element,
    )


def unsupported(detail: str) -> QBOError:
    return QBOError("500", "Unsupported Operation", detail)


def invalid_ref(element: str, value: Any) -> QBOError:
    return QBOError(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {element} assigned is invalid: {value}",
        element=element,
    )


def duplicate_name() -> QBOError:
    return QBOError(
        "6240",
        "Duplicate Name Exists Error",
        "The name supplied already exists. : Another customer, vendor or employee is already "
        "using this name. Please use a different name.",
    )


# Company, permission and period faults (qbo-api.md §4.4) --------------------------------


def general_authentication() -> QBOError:
    """100: the bearer value looks like an access token but no such token was ever issued."""
    return QBOError(
        "100",
        "General Authentication Error",
        "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
        status=401,
        fault_type="AuthenticationFault",
    )


def authorization_failure(edition: str) -> QBOError:
    """120: the user who connected the app is no longer an admin of the company."""
    return QBOError(
        "120",
        "Authorization Failure",
        f"AuthorizationFailure: -11014-You do not have access to use QuickBooks Online {edition}.",
        status=401,
        fault_type="AuthorizationFault",
    )


def wrong_cluster(realm_env: str, api_env: str) -> QBOError:
    """130: a company of one environment called on the other environment's base URL."""
    return QBOError(
        "130",
        "Accessing Wrong Cluster",
        f"Accessing Wrong Cluster: company is on the {realm_env} cluster, request reached the "
        f"{api_env} cluster",
        status=401,
        fault_type="AuthenticationFault",
    )


def no_feature_permission(feature: str, edition: str) -> QBOError:
    """5020: the company's edition is not entitled to the feature."""
    return QBOError(
        "5020",
        "You do not have permission to access this feature.",
        f"Permission Denied Error: QuickBooks Online {edition} is not entitled to the {feature} "
        "feature.",
    )


def invalid_company_status(edition: str) -> QBOError:
    """6190: the company's trial or subscription has ended; data cannot be added or changed."""
    return QBOError(
        "6190",
        "Invalid Company Status",
        "Subscription period has ended or been canceled, or there was a billing problem: You "
        f"can't add data to QuickBooks Online {edition} because your trial or subscription "
        "period ended.",
    )


def period_closed(closing_date: str, txn_date: str) -> QBOError:
    """6210: the transaction is dated on or before the company's closing date."""
    return QBOError(
        "6210",
        "Account Period Closed",
        f"Account Period Closed : The books are closed through {closing_date}; a transaction "
        f"dated {txn_date} cannot be added, changed or deleted.",
        element="TxnDate",
    )


def deposited(entity: str, oid: str) -> QBOError:
    """6540: the payment is part of a bank deposit."""
    return QBOError(
        "6540",
        "Deposited Transaction cannot be changed",
        "This transaction has been deposited. To change or delete it, first edit the deposit "
        f"it is on and take it out. ({entity} Id={oid})",
    )


def query_processing(entity: str, oid: str, element: str) -> QBOError:
    """4002: a stored object in the result cannot be read back (invalid stored data)."""
    return QBOError(
        "4002",
        "Error processing query",
        f"QueryProcessingError: {entity} Id={oid} holds an invalid value in {element} "
        "(email address is not valid)",
        element=element,
    )

"""QBO webhooks, the pure part shared by the listener and the database: the `intuit-signature`
check and the payload's format.

Intuit signs each POST with base64(HMAC-SHA256(verifier token, raw body)) in the
`intuit-signature` header. The check runs over the raw bytes as received (never over re-encoded
JSON), compares in constant time, and fails closed: no token, no header, or a header that is not
base64 of 32 bytes is "not verified".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

SIGNATURE_HEADER = "intuit-signature"
#: content types Intuit sends: legacy and CloudEvents as application/json, CloudEvents also as
#: application/cloudevents+json (and its batch form)
ACCEPTED_CONTENT_TYPES = frozenset(
    {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
)


def signature(body: bytes, verifier_token: str) -> str:
    """The `intuit-signature` value Intuit sends for `body`."""
    mac = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def verify(body: bytes, header: str | None, verifier_token: str | None) -> bool:
    """Whether `header` is Intuit's signature of `body` under `verifier_token`."""
    if not verifier_token or not header:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(given) != hashlib.sha256().digest_size:
        return False
    expected = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)


def payload_format(payload: Any) -> str:
    """'legacy' (an object with an `eventNotifications` array), 'cloudevents' (one CloudEvent
    object, or an array of them) or 'unknown'; the same rule as qbo_sync.webhook_format."""
    if isinstance(payload, dict):
        if isinstance(payload.get("eventNotifications"), list):
            return "legacy"
        if "specversion" in payload:
            return "cloudevents"
        return "unknown"
    if (
        isinstance(payload, list)
        and payload
        and all(isinstance(e, dict) and "specversion" in e for e in payload)
    ):
        return "cloudevents"
    return "unknown"


def normal_payload(payload: Any) -> Any:
    """The payload as the database reads it: a single CloudEvent becomes an array of one."""
    if isinstance(payload, dict) and payload_format(payload) == "cloudevents":
        return [payload]
    return payload


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()

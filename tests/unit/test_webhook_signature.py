"""The pure webhook module (qbo_sync_db.webhooks), checked against independent implementations:
python-quickbooks' validator, the simulator's signer and hmac directly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qbo_sync_db import webhooks
from quickbooks.client import QuickBooks

from simulator.webhooks import sign as simulator_sign

TOKEN = "a-verifier-token"
# python-quickbooks warns when a client is made without a minor version; only its validator is used
pytestmark = pytest.mark.filterwarnings("ignore:No minor version specified:DeprecationWarning")


def python_quickbooks_accepts(body: str, signature: str, token: str) -> bool:
    client = QuickBooks.__new__(QuickBooks)  # the validator needs no session or tokens
    return client.validate_webhook_signature(body, signature, token)


@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_our_signature_is_what_intuits_libraries_and_the_simulator_compute(text, token):
    body = text.encode("utf-8")
    ours = webhooks.signature(body, token)
    assert ours == simulator_sign(body, token)
    assert python_quickbooks_accepts(text, ours, token)
    assert webhooks.verify(body, ours, token)


def test_verify_fails_closed():
    body = b'{"eventNotifications": []}'
    good = base64.b64encode(hmac.new(TOKEN.encode(), body, hashlib.sha256).digest()).decode()
    assert webhooks.verify(body, good, TOKEN)
    assert webhooks.verify(body, f"  {good}\n", TOKEN)  # surrounding whitespace of a header
    for header in (None, "", "###", good[:-4], base64.b64encode(b"x" * 31).decode()):
        assert not webhooks.verify(body, header, TOKEN), header
    assert not webhooks.verify(body, good, "")  # no token configured: nothing verifies
    assert not webhooks.verify(body, good, None)
    assert not webhooks.verify(body + b" ", good, TOKEN)  # the raw bytes, not re-encoded JSON
    assert not webhooks.verify(json.dumps(json.loads(body), indent=1).encode(), good, TOKEN)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"eventNotifications": []}, "legacy"),
        ({"eventNotifications": "x"}, "unknown"),
        ({"specversion": "1.0", "id": "1"}, "cloudevents"),
        ([{"specversion": "1.0", "id": "1"}], "cloudevents"),
        ([{"specversion": "1.0"}, {"id": "2"}], "unknown"),
        ([], "unknown"),
        ("text", "unknown"),
        (None, "unknown"),
    ],
)
def test_payload_format(payload, kind):
    assert webhooks.payload_format(payload) == kind


def test_one_cloudevent_is_stored_as_an_array_of_one():
    event = {"specversion": "1.0", "id": "1"}
    assert webhooks.normal_payload(event) == [event]
    assert webhooks.normal_payload([event]) == [event]
    legacy = {"eventNotifications": []}
    assert webhooks.normal_payload(legacy) is legacy


def test_media_type():
    assert webhooks.media_type("Application/CloudEvents+JSON; charset=utf-8") == (
        "application/cloudevents+json"
    )
    assert webhooks.media_type(None) == ""

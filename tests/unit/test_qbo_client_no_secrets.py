"""No token or secret in any exception message, log line or repr of the client and transport,
even when QBO, a proxy or requests itself echoes one back: the access token, the refresh token,
the client secret and the Basic header built from it, whole or in part.

unittest only (no pytest): tests/unit/test_qbo_debian_python.py runs this file under Debian's
python3 and requests too (whose exception messages differ from the venv's)."""

from __future__ import annotations

import json
import traceback
import unittest
from typing import Any

import requests
from qbo_sync_db import client, errors, transport
from qbo_sync_db.transport import RetryPolicy

from tests.unit.qbo_fakes import (
    REALM,
    TOKEN,
    Raised,
    RecordingPlpy,
    company,
    make_transport,
    response,
)

REFRESH = "RT1-39-H3-1785429816rcysb9dns1ofreknypnm"
CLIENT_SECRET = "sEcReT-4b9f2c7d1e8a6053"
RID = "0b7d6c2a-9e4f-4a1b-8c3d-5e6f7a8b9c0d"
ENDS = client.endpoints("simulator", "http://127.0.0.1:8765")
BASIC = client.refresh_token_request(ENDS, "cid", CLIENT_SECRET, REFRESH).headers["Authorization"][
    6:
]
SECRETS = (TOKEN, REFRESH, CLIENT_SECRET, BASIC)


def pieces(secret: str) -> list[str]:
    """The secret and the parts of it that would still give it away."""
    return [secret, secret[:13], secret[-13:], secret[len(secret) // 2 : len(secret) // 2 + 13]]


def everything_said(exc: BaseException | None = None, extra: Any = ()) -> list[str]:
    texts = [str(x) for x in extra]
    if exc is not None:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception_only(type(exc), exc))]
        for name in ("message", "hint", "detail", "api_error"):
            value = getattr(exc, name, None)
            if value is not None:
                texts.append(repr(value))
    return texts


class NoSecretsTest(unittest.TestCase):
    def assert_clean(self, texts: list[str]) -> None:
        for text in texts:
            for secret in SECRETS:
                for piece in pieces(secret):
                    self.assertNotIn(piece, text)

    def assert_not_chained(self, exc: BaseException) -> None:
        self.assertIsNone(exc.__cause__)
        self.assertIsNone(exc.__context__)

    # ------------------------------------------------------------------ reprs

    def test_reprs(self):
        api = client.create_request(company(), "Customer", {"DisplayName": "x"}, RID)
        oauth = [
            client.refresh_token_request(ENDS, "cid", CLIENT_SECRET, REFRESH),
            client.authorization_code_request(ENDS, "cid", CLIENT_SECRET, REFRESH, "http://x/cb"),
            client.revoke_request(ENDS, "cid", CLIENT_SECRET, REFRESH),
        ]
        tokens = client.parse_token_response(
            {"access_token": TOKEN, "refresh_token": REFRESH, "expires_in": 3600}
        )
        t, _, _, _ = make_transport([response(200, json.dumps({"access_token": TOKEN}))])
        got = t.send(api)
        self.assert_clean(
            [
                repr(company()),
                str(company()),
                repr(api),
                str(api),
                repr(tokens),
                repr(t),
                repr(got),
                repr(api.with_access_token(TOKEN)),
            ]
            + [repr(r) for r in oauth]
        )
        self.assertIn(REALM, repr(company()))  # the rest of it is still shown

    # ------------------------------------------------------------------ QBO echoes a secret

    def failing_bodies(self) -> list[tuple[int, str, str, str]]:
        """(status, content type, body, "api" or "oauth": the kind of request whose secrets it
        echoes; an API call never carries the refresh token or the client secret)."""
        return [
            (
                401,
                "application/json",
                json.dumps(
                    {
                        "fault": {
                            "error": [
                                {
                                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                    "detail": f"Token expired: {TOKEN[:13]}…",
                                    "code": "3200",
                                }
                            ],
                            "type": "AUTHENTICATION",
                        }
                    }
                ),
                "api",
            ),
            (
                401,
                "application/json",
                json.dumps(
                    {
                        "Fault": {
                            "Error": [
                                {
                                    "Message": f"bad token Bearer {TOKEN}",
                                    "Detail": f"token={TOKEN}",
                                    "code": "100",
                                }
                            ],
                            "type": "AuthenticationFault",
                        }
                    }
                ),
                "api",
            ),
            (
                400,
                "application/json",
                json.dumps(
                    {
                        "error": "invalid_grant",
                        "error_description": f"refresh_token {REFRESH} is invalid for client secret {CLIENT_SECRET}",
                    }
                ),
                "oauth",
            ),
            (
                401,
                "application/json",
                json.dumps(
                    {"error": "invalid_client", "error_description": f"Basic {BASIC} refused"}
                ),
                "oauth",
            ),
            (
                429,
                "application/xml",
                f'<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>slow</Message><Detail>for {TOKEN}</Detail></Error></Fault></IntuitResponse>',
                "api",
            ),
            (502, "text/html", f"<html><pre>Authorization: Bearer {TOKEN}</pre></html>", "api"),
            (
                502,
                "text/html",
                f"<html><pre>grant_type=refresh_token&refresh_token={REFRESH}</pre></html>",
                "oauth",
            ),
            (500, "text/plain", f"upstream said {TOKEN[5:30]} and {REFRESH[3:20]}", "oauth"),
        ]

    def request_for(self, which: str) -> client.Request:
        if which == "api":
            return client.create_request(company(), "Customer", {"DisplayName": "x"}, RID)
        return client.refresh_token_request(ENDS, "cid", CLIENT_SECRET, REFRESH)

    def test_errors_parsed_from_bodies_that_echo_secrets(self):
        for status, content_type, body, _ in self.failing_bodies():
            with self.subTest(status=status, body=body[:60]):
                error = client.parse_error(
                    status, {"Content-Type": content_type}, body.encode(), SECRETS
                )
                exc = client.to_exception(error, "create Customer")
                self.assert_clean(everything_said(exc, [error, client.describe(error)]))

    def test_known_token_shapes_are_cleaned_even_without_knowing_the_secrets(self):
        for status, content_type, body, _ in self.failing_bodies():
            if "client secret" in body or "Basic" in body:
                continue  # an opaque secret can only be cleaned when it is known
            with self.subTest(status=status, body=body[:60]):
                error = client.parse_error(status, {"Content-Type": content_type}, body.encode())
                self.assert_clean(everything_said(client.to_exception(error)))

    def test_transport_errors_and_log_lines(self):
        for status, content_type, body, which in self.failing_bodies():
            with self.subTest(status=status, body=body[:60]):
                answer = response(status, body, content_type)
                t, _, _, lines = make_transport(
                    [answer] * 4, RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.01)
                )
                with self.assertRaises(errors.QboSyncError) as caught:
                    t.send(self.request_for(which))
                self.assert_not_chained(caught.exception)
                self.assert_clean(everything_said(caught.exception, lines))

    def test_token_endpoint_failures(self):
        body = json.dumps(
            {
                "error": "invalid_grant",
                "error_description": f"Incorrect or invalid refresh token {REFRESH}",
            }
        )
        t, _, _, lines = make_transport([response(400, body)])
        with self.assertRaises(errors.QboReconnectNeeded) as caught:
            t.send(client.refresh_token_request(ENDS, "cid", CLIENT_SECRET, REFRESH))
        self.assert_clean(everything_said(caught.exception, lines))

    # ------------------------------------------------------------------ requests' own exceptions

    def test_network_exceptions_that_quote_secrets_are_replaced_not_chained(self):
        raised = [
            requests.ConnectionError(
                f"connection aborted while sending Authorization: Bearer {TOKEN}"
            ),
            requests.ReadTimeout(f"HTTPSConnectionPool: read timed out (refresh_token={REFRESH})"),
            requests.exceptions.InvalidHeader(f"Invalid header value b'Bearer {TOKEN}\\n'"),
            requests.exceptions.InvalidURL(f"bad url with {CLIENT_SECRET}"),
            OSError(f"socket error {BASIC}"),
            ValueError(f"Invalid header value {TOKEN!r}"),
        ]
        for exc in raised:
            with self.subTest(type(exc).__name__):
                t, _, _, lines = make_transport(
                    [exc] * 4, RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.01)
                )
                with self.assertRaises(errors.QboSyncError) as caught:
                    t.send(client.refresh_token_request(ENDS, "cid", CLIENT_SECRET, REFRESH))
                self.assert_not_chained(caught.exception)
                self.assert_clean(everything_said(caught.exception, lines))

    def test_real_requests_refusing_a_header_value(self):
        """The installed requests raises InvalidHeader quoting the value (newer versions) or the
        name (older ones); either way nothing of it reaches the caller."""
        bad = client.Request(
            "GET",
            "http://127.0.0.1:9/v3/company/1/customer/1",
            {"Authorization": f"Bearer {TOKEN}\r\nX-Injected: 1"},
            label="read Customer 1",
            secrets=(TOKEN,),
        )
        t = transport.Transport(policy=transport.NO_RETRIES)
        with self.assertRaises(errors.QboRequestRejected) as caught:
            t.send(bad)
        self.assert_not_chained(caught.exception)
        self.assert_clean(everything_said(caught.exception))
        self.assertIn("InvalidHeader", caught.exception.message)
        transport.close_session()

    # ------------------------------------------------------------------ in the database

    def test_what_plpy_is_handed(self):
        body = json.dumps(
            {
                "fault": {
                    "error": [
                        {"message": "m", "detail": f"Token expired: {TOKEN}", "code": "3200"}
                    ],
                    "type": "AUTHENTICATION",
                }
            }
        )
        plpy = RecordingPlpy()
        t, _, _, lines = make_transport([response(401, body)])
        with self.assertRaises(Raised):
            transport.execute(plpy, client.read_request(company(), "Customer", "1"), t)
        message, kwargs = plpy.calls[0]
        self.assertEqual(kwargs["sqlstate"], "QB401")
        self.assert_clean([message, *kwargs.values(), *lines])


class RedactTest(unittest.TestCase):
    def test_known_secrets_whole_and_in_part(self):
        text = f"a {TOKEN} b {TOKEN[:20]}… c {REFRESH[4:]} d"
        cleaned = client.redact(text, SECRETS)
        self.assertEqual(cleaned.count("[redacted]"), 3)
        self.assertTrue(cleaned.startswith("a [redacted] b"))

    def test_token_shapes_without_knowing_them(self):
        for text in [
            "Bearer abcdef1234567890",
            "basic Y2lkOnNlY3JldA==",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "Token expired: AB0173002413600",
            "access_token=abc123def456",
            '"refresh_token": "RT1-39-H3-zzz"',
        ]:
            with self.subTest(text=text):
                self.assertIn("[redacted]", client.redact(text))

    def test_ordinary_texts_are_left_alone(self):
        for text in [
            "Malformed bearer token: too short or too long",
            "Object Not Found : Something you're trying to use has been made inactive. (Customer Id=999)",
            "Stale Object Error : You and Jane Doe were working on this at the same time.",
            "Token expired",
            "no answer from QBO for refresh token: connection failed (NewConnectionError)",
        ]:
            with self.subTest(text=text):
                self.assertEqual(client.redact(text, SECRETS), text)

    def test_long_texts_are_capped(self):
        self.assertEqual(len(client.redact("x" * 5000)), client.TEXT_LIMIT)


if __name__ == "__main__":
    unittest.main()

"""qbo_sync_db.transport: retry decisions (5xx and timeouts with bounded exponential backoff and
jitter, 429 after Retry-After, validation faults never), a retried create resending the same
requestid, timeouts on every call, the backend's keep-alive Session, the pacer hook, and the
PL/Python entry point raising with SQLSTATEs.

unittest only (no pytest): tests/unit/test_qbo_debian_python.py runs this file under Debian's
python3 and requests too. The real-socket tests use a stdlib HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import random
import socket
import threading
import time
import unittest
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from qbo_sync_db import client, errors, transport
from qbo_sync_db.errors import QboApiError
from qbo_sync_db.transport import Failure, RetryPolicy, retry_delay

from tests.unit import qbo_samples as S
from tests.unit.qbo_fakes import (
    Raised,
    RecordingPlpy,
    company,
    connection_refused,
    make_transport,
    response,
    sample_response,
)

RID = "4f1c9a8e-6b2d-4e7f-8a3c-1d5e9b0c2f47"
CUSTOMER_OK = '{"Customer": {"Id": "58", "SyncToken": "0", "DisplayName": "Acme"}, "time": "2025-11-10T10:40:00.000-08:00"}'


def create():
    return client.create_request(company(), "Customer", {"DisplayName": "Acme"}, RID)


def refresh():
    ends = client.endpoints("simulator", "http://127.0.0.1:8765")
    return client.refresh_token_request(ends, "cid", "client-secret-xyz", "RT1-39-H3-refreshvalue")


def failure(
    status: int | None, code: str | None = None, retry_after: float | None = None, sent: bool = True
):
    source = "network" if status is None else "fault"
    return Failure(QboApiError(source, status, code, "m", retry_after=retry_after), maybe_sent=sent)


class BackoffTest(unittest.TestCase):
    def test_exponential_with_jitter_and_a_cap(self):
        rng = random.Random(1)
        for attempt in range(1, 9):
            ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
            for _ in range(50):
                delay = transport.backoff(attempt, 0.5, 8.0, rng)
                self.assertTrue(ceiling / 2 <= delay <= ceiling, (attempt, delay))

    def test_jitter_spreads_the_waits(self):
        rng = random.Random(2)
        delays = {round(transport.backoff(3, 0.5, 8.0, rng), 3) for _ in range(20)}
        self.assertGreater(len(delays), 10)


class RetryDecisionTest(unittest.TestCase):
    policy = RetryPolicy()

    def delay(self, request, fail, attempt=1, elapsed=0.0, policy=None):
        return retry_delay(request, fail, attempt, elapsed, policy or self.policy, random.Random(3))

    def test_validation_and_auth_faults_are_never_retried(self):
        for status, code in [
            (400, "6240"),
            (400, "5010"),
            (400, "610"),
            (401, "3200"),
            (403, "3100"),
            (404, None),
            (200, "6000"),
        ]:
            with self.subTest(status=status, code=code):
                self.assertIsNone(self.delay(create(), failure(status, code)))

    def test_server_errors_are_retried_when_a_resend_is_safe(self):
        for status in (500, 502, 503, 504):
            with self.subTest(status=status):
                delay = self.delay(create(), failure(status))
                self.assertIsNotNone(delay)
                self.assertTrue(0.25 <= delay <= 0.5)
                self.assertIsNone(self.delay(refresh(), failure(status)))

    def test_timeouts_are_retried_when_a_resend_is_safe_and_refused_connections_always(self):
        self.assertIsNotNone(self.delay(create(), failure(None)))
        self.assertIsNone(self.delay(refresh(), failure(None)))  # it may have rotated the token
        self.assertIsNotNone(self.delay(refresh(), failure(None, sent=False)))

    def test_throttling_waits_for_retry_after_or_backs_off_longer(self):
        delay = self.delay(create(), failure(429, "3001", retry_after=3.0))
        self.assertTrue(3.0 <= delay <= 3.5, delay)
        backoff = self.delay(create(), failure(429, "3001"))
        self.assertTrue(1.0 <= backoff <= 2.0, backoff)
        self.assertIsNotNone(self.delay(refresh(), failure(429)))  # QBO did nothing: safe
        self.assertIsNotNone(
            self.delay(create(), failure(403, "3001"))
        )  # the historic 403 throttle
        # a wait longer than the policy allows is left to the queue's backoff
        self.assertIsNone(self.delay(create(), failure(429, "3001", retry_after=120.0)))

    def test_bounded_by_attempts_and_deadline(self):
        self.assertIsNone(self.delay(create(), failure(503), attempt=4))
        self.assertIsNotNone(self.delay(create(), failure(503), attempt=3))
        self.assertIsNone(self.delay(create(), failure(503), elapsed=59.9))
        self.assertIsNone(self.delay(create(), failure(503), policy=transport.NO_RETRIES))


class TransportTest(unittest.TestCase):
    def test_success_decodes_json_with_decimals_and_sends_timeouts(self):
        t, send, clock, lines = make_transport([response(200, S.DOC_INVOICE, tid="1-tid-ok")])
        got = t.send(client.read_request(company(), "Invoice", "239"))
        self.assertEqual(got.status, 200)
        self.assertEqual(str(got.data["Invoice"]["TotalAmt"]), "362.07")
        self.assertEqual((got.intuit_tid, got.attempts), ("1-tid-ok", 1))
        self.assertEqual(send.calls[0][1], (5.0, 30.0))
        self.assertEqual((clock.sleeps, lines), ([], []))

    def test_a_retried_create_resends_the_same_requestid(self):
        t, send, clock, lines = make_transport(
            [
                requests.ReadTimeout("read timed out"),
                response(502, S.HTML_502, "text/html"),
                response(200, CUSTOMER_OK),
            ]
        )
        req = create()
        got = t.send(req)
        self.assertEqual(got.attempts, 3)
        sent = [call[0] for call in send.calls]
        self.assertEqual(len(sent), 3)
        self.assertTrue(all(r is req for r in sent))
        self.assertEqual({r.requestid for r in sent}, {RID})
        self.assertTrue(all(f"requestid={RID}" in r.url for r in sent))
        self.assertEqual(len(clock.sleeps), 2)
        self.assertIn("read timeout after 30 s", lines[0])
        self.assertIn(f"requestid {RID}", lines[0])
        self.assertIn("attempt 1 of 4", lines[0])
        self.assertIn("HTTP 502", lines[1])

    def test_server_errors_give_up_after_the_last_attempt(self):
        t, send, clock, _ = make_transport([sample_response(S.SIM_SYSTEM_FAULT)] * 4)
        with self.assertRaises(errors.QboServerError) as caught:
            t.send(client.read_request(company(), "Customer", "1"))
        self.assertEqual(len(send.calls), 4)
        self.assertEqual(len(clock.sleeps), 3)
        self.assertEqual(caught.exception.api_error.code, "10000")
        self.assertEqual(caught.exception.sqlstate, "QB500")

    def test_validation_faults_fail_at_once(self):
        for sample in (
            S.SIM_DUPLICATE_NAME,
            S.SIM_STALE,
            S.SIM_NOT_FOUND,
            S.SIM_GATEWAY_401,
            S.SIM_GATEWAY_403,
        ):
            with self.subTest(sample[2][:50]):
                t, send, clock, _ = make_transport([sample_response(sample)])
                with self.assertRaises(errors.QboSyncError) as caught:
                    t.send(create())
                self.assertFalse(caught.exception.retryable)
                self.assertEqual(len(send.calls), 1)
                self.assertEqual(clock.sleeps, [])

    def test_a_fault_in_a_200_is_an_error(self):
        t, send, _, _ = make_transport([response(200, S.DOC_STALE_FAULT)])
        with self.assertRaises(errors.QboRequestRejected) as caught:
            t.send(create())
        self.assertEqual(caught.exception.api_error.code, "5010")
        self.assertEqual(len(send.calls), 1)

    def test_an_unreadable_200_is_retried_like_a_server_error(self):
        t, send, _, _ = make_transport(
            [response(200, "<html>captive portal</html>", "text/html"), response(200, CUSTOMER_OK)]
        )
        self.assertEqual(t.send(create()).attempts, 2)

    def test_throttling_honours_retry_after(self):
        t, send, clock, lines = make_transport(
            [
                sample_response(S.SIM_THROTTLE_XML, headers={"Retry-After": "2"}),
                response(200, CUSTOMER_OK),
            ]
        )
        self.assertEqual(t.send(create()).attempts, 2)
        self.assertTrue(2.0 <= clock.sleeps[0] <= 2.5, clock.sleeps)
        self.assertIn("3001", lines[0])

    def test_a_long_retry_after_is_left_to_the_queue(self):
        t, send, clock, _ = make_transport(
            [sample_response(S.SIM_THROTTLE_JSON, headers={"Retry-After": "90"})]
        )
        with self.assertRaises(errors.QboThrottled) as caught:
            t.send(create())
        self.assertEqual(caught.exception.api_error.retry_after, 90.0)
        self.assertTrue(caught.exception.retryable)
        self.assertEqual(clock.sleeps, [])

    def test_a_token_refresh_is_never_resent_after_a_timeout(self):
        t, send, _, _ = make_transport([requests.ReadTimeout("read timed out")])
        with self.assertRaises(errors.QboUnreachable) as caught:
            t.send(refresh())
        self.assertEqual(len(send.calls), 1)
        self.assertEqual(caught.exception.sqlstate, "QB504")
        # but a connection that was never made is tried again
        t, send, _, _ = make_transport(
            [connection_refused(), requests.ConnectTimeout("c"), response(200, S.DOC_TOKEN)]
        )
        tokens = client.parse_token_response(t.send(refresh()).data)
        self.assertEqual(tokens.expires_in, 3600)
        self.assertEqual(len(send.calls), 3)

    def test_the_deadline_bounds_the_time_spent(self):
        policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=4.0, deadline=10.0)
        t, send, clock, _ = make_transport([response(503, "")] * 100, policy)
        with self.assertRaises(errors.QboServerError):
            t.send(create())
        self.assertLessEqual(sum(clock.sleeps), 10.0)
        self.assertLess(len(send.calls), 100)

    def test_a_request_that_expects_no_json(self):
        ends = client.endpoints("simulator", "http://127.0.0.1:8765")
        t, _, _, _ = make_transport([response(200, "", None)])
        got = t.send(client.revoke_request(ends, "cid", "csecret-123456", "RT1-39-H3-refreshvalue"))
        self.assertIsNone(got.data)

    def test_redirects_are_errors(self):
        t, _, _, _ = make_transport(
            [response(302, "", None, headers={"Location": "https://elsewhere.example"})]
        )
        with self.assertRaises(errors.QboRequestRejected):
            t.send(create())

    def test_the_pacer_sees_every_attempt(self):
        class Pacer:
            def __init__(self):
                self.events = []

            def before(self, request):
                self.events.append(("before", request.kind))

            def after(self, request, status, error):
                self.events.append(("after", status, error and error.code))

        pacer = Pacer()
        t, _, _, _ = make_transport(
            [
                sample_response(S.SIM_THROTTLE_XML),
                requests.ReadTimeout("x"),
                response(200, '{"BatchItemResponse": []}'),
            ],
            pacer=pacer,
        )
        t.send(client.batch_request(company(), [client.batch_query("q1", "SELECT * FROM Item")]))
        self.assertEqual(
            pacer.events,
            [
                ("before", "batch"),
                ("after", 429, "3001"),
                ("before", "batch"),
                ("after", None, None),
                ("before", "batch"),
                ("after", 200, None),
            ],
        )

    def test_a_pacer_may_refuse(self):
        class Refusing:
            def before(self, request):
                raise errors.QboThrottled("budget spent")

            def after(self, request, status, error):
                raise AssertionError("not called when before refused")

        t, send, _, _ = make_transport([], pacer=Refusing())
        with self.assertRaises(errors.QboThrottled):
            t.send(create())
        self.assertEqual(send.calls, [])

    def test_timeouts_must_be_positive(self):
        with self.assertRaises(ValueError):
            transport.Transport(timeout=(0, 30))


class ExecuteTest(unittest.TestCase):
    def test_failures_are_raised_in_the_database_with_their_sqlstate(self):
        cases = [
            (S.SIM_DUPLICATE_NAME, "QB400"),
            (S.SIM_GATEWAY_401, "QB401"),
            (S.SIM_GATEWAY_403, "QB403"),
            (S.SIM_INVALID_GRANT, "QB410"),
        ]
        for sample, sqlstate in cases:
            with self.subTest(sqlstate=sqlstate):
                plpy = RecordingPlpy()
                t, _, _, _ = make_transport([sample_response(sample)])
                with self.assertRaises(Raised):
                    transport.execute(plpy, create(), t)
                message, kwargs = plpy.calls[0]
                self.assertEqual(kwargs["sqlstate"], sqlstate)
                self.assertIn("intuit_tid", kwargs["detail"])
                self.assertTrue(message.startswith("QBO "))

    def test_throttled_after_retries(self):
        plpy = RecordingPlpy()
        t, _, _, _ = make_transport([sample_response(S.SIM_THROTTLE_XML)] * 4)
        with self.assertRaises(Raised):
            transport.execute(plpy, create(), t)
        self.assertEqual(plpy.calls[0][1]["sqlstate"], "QB429")
        self.assertIn("500 calls a minute", plpy.calls[0][1]["hint"])

    def test_success_is_returned(self):
        t, _, _, _ = make_transport([response(200, CUSTOMER_OK)])
        got = transport.execute(RecordingPlpy(), create(), t)
        self.assertEqual(client.parse_entity(got.data, "Customer")["Id"], "58")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: set = set()
    paths: list = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        type(self).peers.add(self.client_address)
        type(self).paths.append(self.path)
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = CUSTOMER_OK.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("intuit_tid", "1-local")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left: expected here


@contextmanager
def local_server() -> Iterator[str]:
    _Handler.peers = set()
    _Handler.paths = []
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        transport.close_session()


def local_request(base: str, path: str) -> client.Request:
    return client.Request(
        "GET", base + path, client.api_headers("eyJlocal.token-123456"), label="local"
    )


class RealSocketTest(unittest.TestCase):
    def test_one_session_per_backend_without_the_servers_environment(self):
        transport.close_session()
        first = transport.get_session()
        self.assertIs(transport.get_session(), first)
        self.assertFalse(first.trust_env)  # no .netrc, no proxy variables
        self.assertEqual(
            first.get_adapter("https://quickbooks.api.intuit.com").max_retries.total, 0
        )
        transport.close_session()
        self.assertIsNot(transport.get_session(), first)
        transport.close_session()

    def test_connections_are_kept_alive(self):
        with local_server() as base:
            t = transport.Transport(timeout=(2.0, 2.0))
            for _ in range(3):
                self.assertEqual(t.send(local_request(base, "/v3/x")).intuit_tid, "1-local")
            self.assertEqual(len(_Handler.paths), 3)
            self.assertEqual(len(_Handler.peers), 1)  # one connection for all three

    def test_a_read_timeout_is_unreachable_after_the_retries(self):
        with local_server() as base:
            policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
            t = transport.Transport(timeout=(2.0, 0.2), policy=policy)
            with self.assertRaises(errors.QboUnreachable) as caught:
                t.send(local_request(base, "/slow"))
            self.assertIn("read timeout after 0.2 s", caught.exception.message)
            self.assertEqual(len([p for p in _Handler.paths if p == "/slow"]), 2)

    def test_redirects_are_not_followed(self):
        with local_server() as base:
            t = transport.Transport(timeout=(2.0, 2.0), policy=transport.NO_RETRIES)
            with self.assertRaises(errors.QboRequestRejected) as caught:
                t.send(local_request(base, "/redirect"))
            self.assertEqual(caught.exception.api_error.http_status, 302)
            self.assertEqual(_Handler.paths, ["/redirect"])

    def test_a_refused_connection_counts_as_never_sent(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # nothing listens on `port` now
        ends = client.endpoints("simulator", f"http://127.0.0.1:{port}")
        req = client.refresh_token_request(
            ends, "cid", "client-secret-xyz", "RT1-39-H3-refreshvalue"
        )
        calls = []

        def counting_send(request, timeout):
            calls.append(request)
            return transport.session_send(request, timeout)

        policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01)
        t = transport.Transport(counting_send, timeout=(1.0, 1.0), policy=policy)
        with self.assertRaises(errors.QboUnreachable) as caught:
            t.send(req)
        self.assertEqual(len(calls), 3)  # not idempotent, but never sent: retried
        self.assertIn("connection failed", caught.exception.message)
        transport.close_session()


if __name__ == "__main__":
    unittest.main()

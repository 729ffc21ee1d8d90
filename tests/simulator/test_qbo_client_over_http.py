"""The in-database client (qbo_sync_db.client + transport, with the venv's requests) against the
simulator over real HTTP: a read, a paged query loop, a create whose connection drops after the
commit and whose retry (same requestid) is replayed instead of creating twice, injected 5xx, a
batch read back by bId, CDC, the token endpoint, and the real fault bodies (6240, 610, 5010, 401,
403, 429) read the same as the samples the unit tests use (tests/unit/qbo_samples.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from qbo_sync_db import client, errors, transport
from qbo_sync_db.errors import QboApiError
from qbo_sync_db.transport import RetryPolicy
from simtools import REALM, ThreadedServer

from tests.unit import qbo_samples as S

FAST = RetryPolicy(
    base_delay=0.01, max_delay=0.05, throttle_base_delay=0.05, throttle_max_delay=0.1
)


@dataclass
class Qbo:
    server: ThreadedServer
    company: client.Company
    refresh_token: str
    log: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.server.base_url

    def transport(self, policy: RetryPolicy = FAST, **kwargs: Any) -> transport.Transport:
        return transport.Transport(timeout=(2.0, 5.0), policy=policy, log=self.log.append, **kwargs)

    def send(self, request: client.Request, policy: RetryPolicy = FAST) -> transport.Response:
        return self.transport(policy).send(request)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, self.base + path, json=body, timeout=5)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def counters(self) -> dict[str, int]:
        return self.control("GET", f"/_sim/realms/{REALM}/counters")["counters"]

    def create_customer(self, name: str) -> dict[str, Any]:
        req = client.create_request(
            self.company, "Customer", {"DisplayName": name}, client.new_requestid()
        )
        return client.parse_entity(self.send(req).data, "Customer")

    def count(self, entity: str, where: list[tuple[str, str, Any]]) -> int:
        text = client.select(entity, where, count=True)
        return (
            client.parse_query(self.send(client.query_request(self.company, text)).data).total_count
            or 0
        )

    def failure(self, request: client.Request) -> errors.QboSyncError:
        with pytest.raises(errors.QboSyncError) as caught:
            self.send(request, transport.NO_RETRIES)
        return caught.value


@pytest.fixture
def qbo(threaded_sim: ThreadedServer) -> Iterator[Qbo]:
    pair = requests.post(
        f"{threaded_sim.base_url}/_sim/realms/{REALM}/tokens", json={}, timeout=5
    ).json()
    ends = client.endpoints("simulator", threaded_sim.base_url)
    yield Qbo(
        threaded_sim,
        client.Company(REALM, ends.api_base, pair["access_token"]),
        pair["refresh_token"],
    )
    transport.close_session()


def same_as_sample(error: QboApiError | None, sample: tuple[int, str, str]) -> None:
    """The error read from the simulator's answer equals the one read from the stored sample
    (all but the transaction id, which differs per answer)."""
    assert error is not None
    status, content_type, body = sample
    expected = client.parse_error(status, {"Content-Type": content_type}, body.encode())
    assert dataclasses.replace(error, intuit_tid=None) == expected
    assert error.intuit_tid  # the simulator sets one on every answer


# ----------------------------------------------------------------------------- reads and queries


def test_create_and_read(qbo: Qbo) -> None:
    created = qbo.create_customer("King's Groceries")
    assert created["SyncToken"] == "0"
    got = qbo.send(client.read_request(qbo.company, "Customer", created["Id"]))
    assert got.intuit_tid and got.attempts == 1
    customer = client.parse_entity(got.data, "Customer")
    assert (customer["Id"], customer["DisplayName"]) == (created["Id"], "King's Groceries")


def test_query_page_loop_reads_every_row_once(qbo: Qbo) -> None:
    qbo.control("POST", f"/_sim/realms/{REALM}/seed", {"seed": 7, "customers": 47})
    everyone = [("Active", "IN", [True, False])]
    total = qbo.count("Customer", everyone)
    assert total >= 47
    calls_before = qbo.counters().get("query", 0)
    fetch = lambda text: client.parse_query(  # noqa: E731
        qbo.send(client.query_request(qbo.company, text)).data, "Customer"
    )
    pages = list(client.iter_pages(client.select("Customer", everyone, ["Id"]), fetch, 10))
    ids = [row["Id"] for page in pages for row in page.rows]
    assert len(ids) == len(set(ids)) == total
    assert len(pages) == total // 10 + 1
    assert [p.start_position for p in pages if p.rows] == [
        1 + 10 * n for n in range(len(ids) // 10 + bool(len(ids) % 10))
    ]
    assert qbo.counters()["query"] - calls_before == len(pages)


def test_escaped_literals_find_exactly_the_name(qbo: Qbo) -> None:
    for name in ["Amy's Bird Sanctuary", "Back\\slash", "Trailing\\", "O'Neil \\' & Sons"]:
        created = qbo.create_customer(name)
        text = client.select("Customer", [("DisplayName", "=", name)])
        for method in ("GET", "POST"):
            page = client.parse_query(
                qbo.send(client.query_request(qbo.company, text, method=method)).data, "Customer"
            )
            assert [row["Id"] for row in page.rows] == [created["Id"]], (name, method)
    nobody = client.parse_query(
        qbo.send(
            client.query_request(
                qbo.company, client.select("Customer", [("DisplayName", "=", "x' OR Id > '0")])
            )
        ).data
    )
    assert nobody.rows == [] and nobody.entity is None  # QBO's empty `{}`


def test_cdc_and_an_empty_cdc(qbo: Qbo) -> None:
    created = qbo.create_customer("Changed Lately")
    since = datetime.now(UTC) - timedelta(hours=1)
    cdc = client.parse_cdc(
        qbo.send(client.cdc_request(qbo.company, ["Customer", "Invoice"], since)).data
    )
    assert created["Id"] in [c["Id"] for c in cdc.live("Customer")]
    assert cdc.time
    later = datetime.now(UTC) + timedelta(hours=1)
    empty = client.parse_cdc(qbo.send(client.cdc_request(qbo.company, ["Customer"], later)).data)
    assert (empty.changes, empty.count) == ({}, 0)  # "QueryResponse": [{}]


# ----------------------------------------------------------------------------- retries


def test_a_create_retried_after_a_dropped_connection_is_not_duplicated(qbo: Qbo) -> None:
    qbo.control(
        "POST",
        "/_sim/faults",
        {"next": [{"kind": "drop_after_commit", "path_contains": "/customer", "method": "POST"}]},
    )
    rid = client.new_requestid()
    req = client.create_request(qbo.company, "Customer", {"DisplayName": "Only Once Ltd"}, rid)
    got = qbo.send(req)
    assert got.attempts == 2  # the first answer was lost after QBO committed
    customer = client.parse_entity(got.data, "Customer")
    counters = qbo.counters()
    assert counters["fault.drop_after_commit"] == 1
    assert counters["requestid.replay"] == 1  # the retry carried the same requestid
    assert qbo.count("Customer", [("DisplayName", "=", "Only Once Ltd")]) == 1
    assert customer["SyncToken"] == "0"
    assert (
        len(qbo.log) == 1 and f"requestid {rid}" in qbo.log[0] and "connection failed" in qbo.log[0]
    )


def test_injected_server_errors_are_retried_then_succeed(qbo: Qbo) -> None:
    created = qbo.create_customer("Flaky Reads")
    path = f"/customer/{created['Id']}"
    qbo.control(
        "POST",
        "/_sim/faults",
        {"next": [{"kind": k, "path_contains": path} for k in ("503", "500", "504")]},
    )
    got = qbo.send(client.read_request(qbo.company, "Customer", created["Id"]))
    assert got.attempts == 4
    assert ["HTTP 503" in qbo.log[0], "HTTP 500" in qbo.log[1], "HTTP 504" in qbo.log[2]] == [
        True
    ] * 3


def test_real_5xx_bodies_match_the_samples(qbo: Qbo) -> None:
    created = qbo.create_customer("Failing Reads")
    read = client.read_request(qbo.company, "Customer", created["Id"])
    for kind, sample, cls in [
        ("500", S.SIM_SYSTEM_FAULT, errors.QboServerError),
        ("503", S.SIM_503, errors.QboServerError),
        ("504", S.SIM_504, errors.QboUnreachable),
    ]:
        qbo.control("POST", "/_sim/faults", {"next": [{"kind": kind}]})
        exc = qbo.failure(read)
        assert type(exc) is cls and exc.retryable
        same_as_sample(exc.api_error, sample)


def test_a_read_timeout_then_success(qbo: Qbo) -> None:
    qbo.control("PATCH", "/_sim/config", {"timeout_s": 1})
    qbo.control("POST", "/_sim/faults", {"next": [{"kind": "timeout", "path_contains": "/query"}]})
    t = transport.Transport(timeout=(2.0, 0.3), policy=FAST, log=qbo.log.append)
    got = t.send(client.query_request(qbo.company, "SELECT COUNT(*) FROM Item"))
    assert got.attempts == 2 and "read timeout after 0.3 s" in qbo.log[0]


# ----------------------------------------------------------------------------- batch


def test_batch_results_by_bid(qbo: Qbo) -> None:
    existing = qbo.create_customer("Batch Existing")
    items = [
        client.batch_create("c1", "Customer", {"DisplayName": "Batch Existing"}),
        client.batch_create("c2", "Customer", {"DisplayName": "Batch New"}),
        client.batch_update(
            "u1", "Customer", {"Id": existing["Id"], "SyncToken": "7", "CompanyName": "Stale"}
        ),
        client.batch_update(
            "u2", "Customer", {"Id": existing["Id"], "SyncToken": "0", "CompanyName": "Fresh"}
        ),
        client.batch_query(
            "q1", client.select("Customer", [("DisplayName", "=", "Batch Existing")])
        ),
    ]
    got = qbo.send(client.batch_request(qbo.company, items, client.new_requestid()))
    results = client.parse_batch(got.data, [i["bId"] for i in items], got.status, got.intuit_tid)
    assert [r.ok for r in results.values()] == [False, True, False, True, True]
    assert results["c1"].error is not None and results["c1"].error.code == "6240"
    assert isinstance(results["c1"].exception(), errors.QboRequestRejected)
    assert results["c2"].entity == "Customer" and results["c2"].object is not None
    assert results["u1"].error is not None and results["u1"].error.code == "5010"
    assert results["u2"].object is not None and results["u2"].object["SyncToken"] == "1"
    query = results["q1"].query
    assert query is not None and [r["Id"] for r in query.rows] == [existing["Id"]]
    assert results["c1"].error.intuit_tid == got.intuit_tid


def test_batch_limits(qbo: Qbo) -> None:
    qbo.control("PATCH", "/_sim/config", {"batch_max_items": 2})
    items = [client.batch_query(f"q{n}", "SELECT COUNT(*) FROM Item") for n in range(3)]
    exc = qbo.failure(client.batch_request(qbo.company, items))
    assert isinstance(exc, errors.QboRequestRejected) and exc.api_error.code == "1040"
    assert "at most 30" in (exc.hint or "")


# ----------------------------------------------------------------------------- real faults


def test_validation_faults_match_the_samples(qbo: Qbo) -> None:
    qbo.create_customer("Taken Name")
    dup = qbo.failure(
        client.create_request(
            qbo.company, "Customer", {"DisplayName": "Taken Name"}, client.new_requestid()
        )
    )
    same_as_sample(dup.api_error, S.SIM_DUPLICATE_NAME)
    assert dup.sqlstate == "QB400" and not dup.retryable
    missing = qbo.failure(client.read_request(qbo.company, "Customer", "999"))
    same_as_sample(missing.api_error, S.SIM_NOT_FOUND)
    customer = qbo.create_customer("Edited Twice")
    first = client.update_request(
        qbo.company,
        "Customer",
        {"Id": customer["Id"], "SyncToken": "0", "CompanyName": "A"},
        client.new_requestid(),
    )
    qbo.send(first)
    stale = client.update_request(
        qbo.company,
        "Customer",
        {"Id": customer["Id"], "SyncToken": "0", "CompanyName": "B"},
        client.new_requestid(),
    )
    exc = qbo.failure(stale)
    same_as_sample(exc.api_error, S.SIM_STALE)
    assert "read it again" in (exc.hint or "")


def test_refused_tokens(qbo: Qbo) -> None:
    read = client.read_request(qbo.company, "Customer", "1")
    bad = qbo.failure(read.with_access_token("not-a-real-token-0123456789"))
    assert isinstance(bad, errors.QboUnauthorized)
    assert bad.api_error.source == "gateway" and bad.api_error.code == "3200"
    assert client.token_refused(bad.api_error)
    assert "not-a-real-token" not in str(bad) + repr(bad.api_error)
    never_issued = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.." + "A" * 800
    general = qbo.failure(read.with_access_token(never_issued))
    same_as_sample(general.api_error, S.SIM_GENERAL_AUTH)
    other = qbo.control("POST", "/_sim/realms", {})["realm_id"]
    foreign = dataclasses.replace(qbo.company, realm_id=other)
    forbidden = qbo.failure(client.read_request(foreign, "Customer", "1"))
    same_as_sample(forbidden.api_error, S.SIM_GATEWAY_403)
    assert isinstance(forbidden, errors.QboForbidden) and not client.token_refused(
        forbidden.api_error
    )
    qbo.control("POST", "/_sim/tokens/expire", {"realm_id": REALM, "kind": "access"})
    expired = qbo.failure(read)
    same_as_sample(expired.api_error, S.SIM_GATEWAY_401)
    assert client.token_refused(expired.api_error)


def test_refresh_then_the_same_request_goes_through(qbo: Qbo) -> None:
    """What the database side does on a refused token: refresh once, resend the same request
    (same URL, same requestid) under the new access token."""
    create = client.create_request(
        qbo.company, "Customer", {"DisplayName": "After Refresh"}, client.new_requestid()
    )
    qbo.control("POST", "/_sim/tokens/expire", {"realm_id": REALM, "kind": "access"})
    assert client.token_refused(qbo.failure(create).api_error)
    ends = client.endpoints("simulator", qbo.base)
    refresh = client.refresh_token_request(
        ends, "sim-client-id", "sim-client-secret", qbo.refresh_token
    )
    got = qbo.send(refresh)
    tokens = client.parse_token_response(got.data)
    assert (
        tokens.expires_in == 3600 and tokens.refresh_expires_in and tokens.refresh_hard_expires_in
    )
    created = client.parse_entity(
        qbo.send(create.with_access_token(tokens.access_token)).data, "Customer"
    )
    assert created["DisplayName"] == "After Refresh"


def test_token_endpoint_errors(qbo: Qbo) -> None:
    ends = client.endpoints("simulator", qbo.base)
    dead = qbo.failure(
        client.refresh_token_request(
            ends, "sim-client-id", "sim-client-secret", "RT1-39-H3-nosuchtoken"
        )
    )
    assert isinstance(dead, errors.QboReconnectNeeded) and dead.sqlstate == "QB410"
    same_as_sample(dead.api_error, S.SIM_INVALID_GRANT)
    assert "RT1-39-H3-nosuchtoken" not in str(dead)
    wrong = qbo.failure(
        client.refresh_token_request(ends, "sim-client-id", "wrong-secret-123", qbo.refresh_token)
    )
    assert isinstance(wrong, errors.QboUnauthorized)
    same_as_sample(wrong.api_error, S.SIM_INVALID_CLIENT)
    assert "wrong-secret-123" not in str(wrong) + str(wrong.detail)


# ----------------------------------------------------------------------------- throttling


@pytest.mark.parametrize(
    ("fmt", "sample"), [("xml", S.SIM_THROTTLE_XML), ("json", S.SIM_THROTTLE_JSON)]
)
def test_throttled_calls_read_as_429(qbo: Qbo, fmt: str, sample: tuple[int, str, str]) -> None:
    qbo.control(
        "PATCH", "/_sim/config", {"limits_enabled": True, "per_second": 1, "throttle_format": fmt}
    )
    read = client.query_request(qbo.company, "SELECT COUNT(*) FROM Item")
    qbo.send(read)
    exc = qbo.failure(read)
    assert isinstance(exc, errors.QboThrottled) and exc.sqlstate == "QB429" and exc.retryable
    same_as_sample(exc.api_error, sample)


def test_a_throttled_call_is_retried_after_the_backoff(qbo: Qbo) -> None:
    qbo.control("PATCH", "/_sim/config", {"limits_enabled": True, "per_second": 1, "per_minute": 0})
    waits: list[float] = []

    def sleep_on_the_simulators_clock(seconds: float) -> None:
        waits.append(seconds)
        qbo.control("POST", "/_sim/clock", {"advance_seconds": seconds})

    policy = RetryPolicy(throttle_base_delay=2.0, throttle_max_delay=4.0)
    t = qbo.transport(policy, sleep=sleep_on_the_simulators_clock)
    read = client.query_request(qbo.company, "SELECT COUNT(*) FROM Item")
    t.send(read)
    got = t.send(read)  # refused once (same second), then let through
    assert got.attempts == 2 and len(waits) == 1 and 1.0 <= waits[0] <= 2.0
    assert "3001" in qbo.log[0]
    assert qbo.counters()["throttled"] == 1

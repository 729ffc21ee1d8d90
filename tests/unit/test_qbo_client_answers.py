"""qbo_sync_db.client, reading QBO's answers: entity, query (empty `{}` and COUNT), CDC (with
`"QueryResponse": [{}]`), batch items by bId; and every error envelope (JSON `Fault`, the
gateway's lowercase `fault`, OAuth `error`, XML, HTML, empty) into one QboApiError, mapped onto
the project's error classes (docs/client.md).

unittest only (no pytest): tests/unit/test_qbo_debian_python.py runs this file under Debian's
python3 and requests too."""

from __future__ import annotations

import unittest
from decimal import Decimal

from qbo_sync_db import client, errors
from qbo_sync_db.errors import QboApiError

from tests.unit import qbo_samples as S

JSON = {"Content-Type": "application/json;charset=UTF-8", "intuit_tid": "1-5f2e-a1b2"}


def parse(status: int, body: str, headers: dict | None = None) -> QboApiError:
    return client.parse_error(status, JSON if headers is None else headers, body.encode())


class SuccessEnvelopeTest(unittest.TestCase):
    def test_entity(self):
        customer = client.parse_entity(client.decode_json(S.DOC_CUSTOMER), "Customer")
        self.assertEqual((customer["Id"], customer["SyncToken"]), ("67", "0"))
        self.assertEqual(customer["DisplayName"], "King's Groceries")
        invoice = client.parse_entity(client.decode_json(S.DOC_INVOICE), "Invoice")
        self.assertEqual(invoice["TotalAmt"], Decimal("362.07"))  # amounts as Decimal
        self.assertIsInstance(invoice["Line"][0]["Amount"], Decimal)
        deleted = client.parse_entity(client.decode_json(S.DOC_INVOICE_DELETED), "Invoice")
        self.assertTrue(client.is_deleted(deleted))
        with self.assertRaises(errors.QboServerError):
            client.parse_entity(client.decode_json(S.DOC_CUSTOMER), "Invoice")
        with self.assertRaises(errors.QboServerError):
            client.parse_entity([], "Invoice")

    def test_query(self):
        page = client.parse_query(client.decode_json(S.DOC_QUERY), "Customer")
        self.assertEqual(page.entity, "Customer")
        self.assertEqual([r["Id"] for r in page.rows], ["1", "2"])
        self.assertEqual((page.start_position, page.max_results, page.total_count), (1, 2, None))
        # the entity is found without being named
        self.assertEqual(client.parse_query(client.decode_json(S.DOC_QUERY)).entity, "Customer")

    def test_empty_query_is_an_empty_object(self):
        page = client.parse_query(client.decode_json(S.DOC_QUERY_EMPTY), "Customer")
        self.assertEqual(page.rows, [])
        self.assertIsNone(page.entity)
        self.assertEqual(client.parse_query(client.decode_json(S.DOC_QUERY_EMPTY)).rows, [])

    def test_count(self):
        page = client.parse_query(client.decode_json(S.DOC_QUERY_COUNT))
        self.assertEqual((page.total_count, page.rows), (5, []))

    def test_cdc_groups_by_entity_with_deleted_objects(self):
        cdc = client.parse_cdc(client.decode_json(S.DOC_CDC))
        self.assertEqual(sorted(cdc.changes), ["Customer", "Invoice"])
        self.assertEqual(cdc.count, 3)
        self.assertEqual([o["Id"] for o in cdc.live("Invoice")], ["130"])
        self.assertEqual([o["Id"] for o in cdc.deleted("Invoice")], ["979"])
        self.assertEqual(cdc.deleted("Customer"), [])
        self.assertEqual(cdc.live("Payment"), [])
        self.assertEqual(cdc.time, "2015-12-23T12:56:06.196-08:00")

    def test_cdc_with_nothing_changed(self):
        cdc = client.parse_cdc(client.decode_json(S.DOC_CDC_EMPTY))
        self.assertEqual((cdc.changes, cdc.count), ({}, 0))
        self.assertEqual(client.parse_cdc({"CDCResponse": [{"QueryResponse": []}]}).count, 0)
        self.assertEqual(client.parse_cdc({"CDCResponse": [{}]}).count, 0)
        with self.assertRaises(errors.QboServerError):
            client.parse_cdc({"QueryResponse": {}})

    def test_token_response(self):
        tokens = client.parse_token_response(client.decode_json(S.DOC_TOKEN))
        self.assertTrue(tokens.access_token.startswith("eyJ"))
        self.assertEqual(tokens.refresh_token, "RT1-39-H3-1785429816rcysb9dns1ofreknypnm")
        self.assertEqual(
            (tokens.expires_in, tokens.refresh_expires_in, tokens.refresh_hard_expires_in),
            (3600, 8726400, 156032154),
        )
        self.assertNotIn(tokens.access_token, repr(tokens))
        self.assertNotIn(tokens.refresh_token, repr(tokens))
        without_hard = client.decode_json(S.DOC_TOKEN)
        del without_hard["x_refresh_token_hard_expires_in"]
        self.assertIsNone(client.parse_token_response(without_hard).refresh_hard_expires_in)
        for bad in [
            {"access_token": "x"},
            {"access_token": "x", "refresh_token": "y", "expires_in": "soon"},
            [],
            {"access_token": "", "refresh_token": "y", "expires_in": 1},
        ]:
            with self.subTest(bad=bad), self.assertRaises(errors.QboServerError):
                client.parse_token_response(bad)


class BatchAnswerTest(unittest.TestCase):
    def test_results_are_correlated_by_bid_not_position(self):
        data = client.decode_json(S.DOC_BATCH)
        data["BatchItemResponse"].reverse()
        results = client.parse_batch(data, ["c1", "u1", "d1", "s1", "q1"], intuit_tid="1-tid")
        self.assertEqual(list(results), ["c1", "u1", "d1", "s1", "q1"])  # in the order sent
        c1 = results["c1"]
        self.assertFalse(c1.ok)
        assert c1.error is not None
        self.assertEqual(
            (c1.error.code, c1.error.source, c1.error.http_status), ("6240", "fault", None)
        )
        self.assertEqual(c1.error.fault_type, "ValidationFault")
        self.assertEqual(c1.error.intuit_tid, "1-tid")
        self.assertIsInstance(c1.exception(), errors.QboRequestRejected)
        u1 = results["u1"]
        self.assertEqual((u1.entity, u1.object and u1.object["SyncToken"]), ("Invoice", "1"))
        self.assertIsNone(u1.exception())
        assert results["d1"].object is not None
        self.assertTrue(client.is_deleted(results["d1"].object))
        assert results["s1"].error is not None
        self.assertEqual(results["s1"].error.code, "5010")
        q1 = results["q1"]
        assert q1.query is not None
        self.assertEqual(
            (q1.query.entity, q1.query.rows[0]["TotalAmt"]), ("Invoice", Decimal("400.0"))
        )

    def test_an_item_without_an_answer_is_an_error_and_unknown_bids_are_not_trusted(self):
        data = client.decode_json(S.DOC_BATCH)
        results = client.parse_batch(data, ["c1", "u1", "d1", "s1", "q1", "x9"])
        missing = results["x9"]
        self.assertFalse(missing.ok)
        self.assertIsInstance(missing.exception(), errors.QboServerError)  # retried
        with self.assertRaises(errors.QboServerError):
            client.parse_batch(data, ["c1", "u1"])  # d1, s1, q1 were not sent
        doubled = {"BatchItemResponse": data["BatchItemResponse"] + data["BatchItemResponse"][:1]}
        with self.assertRaises(errors.QboServerError):
            client.parse_batch(doubled, ["c1", "u1", "d1", "s1", "q1"])
        with self.assertRaises(errors.QboServerError):
            client.parse_batch({"Fault": {}}, ["c1"])


class ErrorEnvelopeTest(unittest.TestCase):
    def test_json_fault(self):
        error = parse(400, S.DOC_STALE_FAULT)
        self.assertEqual(error.source, "fault")
        self.assertEqual(
            (error.http_status, error.code, error.fault_type), (400, "5010", "ValidationFault")
        )
        self.assertEqual(error.message, "Stale Object Error")
        self.assertTrue(error.detail.startswith("Stale Object Error : You and Jane Doe"))
        self.assertIsNone(error.element)  # "" means none
        self.assertEqual(error.intuit_tid, "1-5f2e-a1b2")
        self.assertEqual(len(error.errors), 1)

    def test_a_fault_with_several_errors_keeps_them_all(self):
        error = parse(400, S.DOC_TWO_ERRORS)
        self.assertEqual((error.code, error.element), ("2020", "Line"))
        self.assertEqual([e.code for e in error.errors], ["2020", "2500"])
        self.assertEqual(error.errors[1].element, "CustomerRef")
        exc = client.to_exception(error)
        self.assertIn("2500 Invalid Reference Id", exc.detail or "")

    def test_gateway_fault_lowercase(self):
        error = parse(401, S.DOC_GATEWAY_401)
        self.assertEqual(error.source, "gateway")
        self.assertEqual((error.code, error.fault_type), ("3200", "AUTHENTICATION"))
        self.assertEqual(
            error.message, "message=AuthenticationFailed; errorCode=003200; statusCode=401"
        )
        self.assertIsNone(error.element)
        # the gateway quotes the start of the token: it never gets further than the parser
        self.assertNotIn("AB01730024136", error.detail)
        self.assertEqual(error.detail, "Token expired: [redacted]")
        self.assertTrue(client.token_refused(error))

    def test_xml_fault(self):
        error = parse(429, S.DOC_XML_THROTTLE, {"Content-Type": "application/xml"})
        self.assertEqual(error.source, "xml")
        self.assertEqual((error.code, error.fault_type), ("3001", "SERVICE"))
        self.assertEqual(
            error.message, "message=ThrottleExceeded; errorCode=003001; statusCode=429"
        )
        self.assertEqual(error.detail, "The request limit was reached.  Try again later")

    def test_xml_entities_are_decoded_and_attributes_in_any_order(self):
        body = (
            '<IntuitResponse><Fault type="ValidationFault"><Error element="Name" code="6240">'
            "<Message>Duplicate &amp; &lt;bad&gt;</Message><Detail>it&apos;s &quot;taken&quot;</Detail>"
            "</Error></Fault></IntuitResponse>"
        )
        error = parse(400, body, {"Content-Type": "text/xml"})
        self.assertEqual((error.code, error.element), ("6240", "Name"))
        self.assertEqual(error.message, "Duplicate & <bad>")
        self.assertEqual(error.detail, 'it\'s "taken"')

    def test_oauth_errors(self):
        grant = parse(400, S.DOC_INVALID_GRANT)
        self.assertEqual(
            (grant.source, grant.code, grant.message), ("oauth", "invalid_grant", "Token invalid")
        )
        bare = parse(400, S.DOC_INVALID_GRANT_BARE)
        self.assertEqual(
            (bare.code, bare.message, bare.detail), ("invalid_grant", "invalid_grant", "")
        )
        self.assertEqual(parse(401, S.DOC_INVALID_CLIENT).code, "invalid_client")

    def test_html_empty_and_unknown_bodies(self):
        html = parse(502, S.HTML_502, {"Content-Type": "text/html"})
        self.assertEqual((html.source, html.code), ("http", None))
        self.assertEqual(html.message, "QBO answered HTTP 502 (text/html)")
        self.assertEqual(html.detail, "502 Bad Gateway 502 Bad Gateway")
        empty = parse(503, "", {})
        self.assertEqual(empty.message, "QBO answered HTTP 503 with an empty body")
        self.assertIsNone(empty.intuit_tid)
        odd = parse(500, '{"unexpected": true}')
        self.assertEqual((odd.source, odd.detail), ("http", '{"unexpected": true}'))
        broken = parse(500, '{"Fault": ')
        self.assertEqual(broken.source, "http")
        long_html = parse(500, "<html>" + "x" * 5000 + "</html>", {"Content-Type": "text/html"})
        self.assertLessEqual(len(long_html.detail), 200)

    def test_retry_after_seconds_and_http_date(self):
        error = parse(429, S.SIM_THROTTLE_JSON[2], {**JSON, "Retry-After": "7"})
        self.assertEqual(error.retry_after, 7.0)
        dated = client.parse_error(
            429, {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, b"", now=1445412480.0
        )
        self.assertEqual(dated.retry_after, 10.0)
        self.assertIsNone(client.parse_retry_after("soon", now=0.0))
        self.assertIsNone(client.parse_retry_after(None))


class ErrorClassTest(unittest.TestCase):
    """Every envelope maps onto one of the project's classes (and so one SQLSTATE)."""

    def test_simulator_bodies(self):
        for name, ((status, content_type, body), code, cls_name, source) in S.SIM_ERRORS.items():
            with self.subTest(name):
                error = client.parse_error(
                    status, {"Content-Type": content_type, "intuit_tid": "t"}, body.encode()
                )
                self.assertEqual(
                    (error.code, error.source, error.http_status), (code, source, status)
                )
                exc = client.to_exception(error)
                self.assertEqual(type(exc).__name__, cls_name)
                self.assertIs(exc.api_error, error)
                self.assertIn(type(exc), errors.ERROR_CLASSES)
                self.assertIn("intuit_tid t", exc.detail or "")

    def test_status_based_mapping(self):
        cases = [
            (400, S.DOC_STALE_FAULT, errors.QboRequestRejected, "QB400"),
            (401, S.DOC_GATEWAY_401, errors.QboUnauthorized, "QB401"),
            (403, S.SIM_GATEWAY_403[2], errors.QboForbidden, "QB403"),
            (429, S.DOC_XML_THROTTLE, errors.QboThrottled, "QB429"),
            (403, S.DOC_XML_THROTTLE, errors.QboThrottled, "QB429"),  # historic 403 + 3001
            (500, S.DOC_SYSTEM_FAULT, errors.QboServerError, "QB500"),
            (502, S.HTML_502, errors.QboServerError, "QB500"),
            (503, "", errors.QboServerError, "QB500"),
            (504, "", errors.QboUnreachable, "QB504"),
            (400, S.DOC_INVALID_GRANT, errors.QboReconnectNeeded, "QB410"),
            (401, S.DOC_INVALID_CLIENT, errors.QboUnauthorized, "QB401"),
            (400, S.DOC_INVALID_REQUEST, errors.QboRequestRejected, "QB400"),
            (429, "", errors.QboThrottled, "QB429"),
            (404, "<html>not found</html>", errors.QboRequestRejected, "QB400"),
            (200, S.DOC_STALE_FAULT, errors.QboRequestRejected, "QB400"),  # a 200 with a Fault
            (200, S.DOC_SYSTEM_FAULT, errors.QboServerError, "QB500"),
            (200, "<html>proxy</html>", errors.QboServerError, "QB500"),
        ]
        for status, body, cls, sqlstate in cases:
            with self.subTest(status=status, body=body[:40]):
                exc = client.to_exception(parse(status, body))
                self.assertIs(type(exc), cls)
                self.assertEqual(exc.sqlstate, sqlstate)

    def test_batch_item_faults_are_judged_by_code(self):
        for code, cls in [
            ("6240", errors.QboRequestRejected),
            ("3200", errors.QboUnauthorized),
            ("3100", errors.QboForbidden),
            ("3001", errors.QboThrottled),
            ("10000", errors.QboServerError),
        ]:
            with self.subTest(code=code):
                error = QboApiError("fault", None, code, "m")
                self.assertIs(client.error_class(error), cls)

    def test_network_errors_are_unreachable(self):
        error = client.network_error("read timeout after 30 s", "create Customer")
        exc = client.to_exception(error)
        self.assertIsInstance(exc, errors.QboUnreachable)
        self.assertEqual(
            exc.message, "no answer from QBO for create Customer: read timeout after 30 s"
        )

    def test_messages_hints_and_details_for_people(self):
        exc = client.to_exception(parse(400, S.SIM_DUPLICATE_NAME[2]), "create Customer")
        self.assertEqual(
            exc.message,
            "QBO rejected create Customer (HTTP 400, ValidationFault) 6240 Duplicate "
            "Name Exists Error: The name supplied already exists. : Another customer, vendor or "
            "employee is already using this name. Please use a different name.",
        )
        self.assertIn("already has this name", exc.hint or "")
        self.assertEqual(exc.detail, "intuit_tid 1-5f2e-a1b2")
        self.assertIn(
            "read it again", client.to_exception(parse(400, S.DOC_STALE_FAULT)).hint or ""
        )
        self.assertIn(
            "connect QBO again", client.to_exception(parse(400, S.DOC_INVALID_GRANT)).hint or ""
        )
        throttled = client.to_exception(parse(429, "", {"Retry-After": "3"}))
        self.assertIn("500 calls a minute", throttled.hint or "")
        self.assertIn("Retry-After 3 s", throttled.detail or "")

    def test_only_expired_or_garbled_tokens_call_for_a_refresh(self):
        self.assertTrue(client.token_refused(parse(401, S.SIM_GATEWAY_401[2])))
        self.assertTrue(client.token_refused(parse(401, S.SIM_GENERAL_AUTH[2])))
        self.assertTrue(client.token_refused(parse(401, "")))
        self.assertFalse(client.token_refused(parse(401, S.SIM_WRONG_CLUSTER[2])))
        self.assertFalse(client.token_refused(parse(403, S.SIM_GATEWAY_403[2])))
        self.assertFalse(client.token_refused(parse(400, S.DOC_INVALID_GRANT)))

    def test_existing_error_classes_still_take_positional_arguments(self):
        exc = errors.QboThrottled("slow down", "wait", "429")
        self.assertEqual(
            (exc.message, exc.hint, exc.detail, exc.api_error), ("slow down", "wait", "429", None)
        )


if __name__ == "__main__":
    unittest.main()

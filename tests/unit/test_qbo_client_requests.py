"""qbo_sync_db.client, building requests: base URLs per environment, URLs with minorversion and
requestid, headers, bodies per operation (docs/client.md).

unittest only (no pytest): tests/unit/test_qbo_debian_python.py runs this file under Debian's
python3 and requests too."""

from __future__ import annotations

import base64
import json
import unittest
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qs, parse_qsl, urlsplit

from qbo_sync_db import client
from qbo_sync_db.errors import ConfigurationError, QboRequestRejected

from tests.unit.qbo_fakes import REALM, SIM_BASE, TOKEN, company

RID = "8a3f7c2e-0d5b-4a61-9c3e-2b7f1e9d4c10"


def query_of(request: client.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query, keep_blank_values=True)


def body_of(request: client.Request) -> dict:
    assert request.body is not None
    return json.loads(request.body)


class EndpointsTest(unittest.TestCase):
    def test_production_and_sandbox_use_intuits_hosts(self):
        prod = client.endpoints("production")
        self.assertEqual(prod.api_base, "https://quickbooks.api.intuit.com")
        self.assertEqual(
            prod.token_url, "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
        )
        self.assertEqual(
            prod.revoke_url, "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
        )
        sandbox = client.endpoints("sandbox", None)
        self.assertEqual(sandbox.api_base, "https://sandbox-quickbooks.api.intuit.com")
        # OAuth endpoints are shared by both environments
        self.assertEqual(sandbox.token_url, prod.token_url)

    def test_a_matching_api_base_url_is_accepted_for_intuit_environments(self):
        ends = client.endpoints("sandbox", "https://sandbox-quickbooks.api.intuit.com/v3/")
        self.assertEqual(ends.api_base, "https://sandbox-quickbooks.api.intuit.com")

    def test_another_host_is_refused_for_production_so_tokens_cannot_be_redirected(self):
        with self.assertRaises(ConfigurationError) as caught:
            client.endpoints("production", "https://evil.example.com")
        self.assertEqual(caught.exception.sqlstate, "QS002")
        with self.assertRaises(ConfigurationError):
            client.endpoints("sandbox", "https://quickbooks.api.intuit.com")

    def test_simulator_needs_its_url_and_serves_intuits_paths(self):
        ends = client.endpoints("simulator", "http://127.0.0.1:8765/")
        self.assertEqual(ends.api_base, "http://127.0.0.1:8765")
        self.assertEqual(ends.token_url, "http://127.0.0.1:8765/oauth2/v1/tokens/bearer")
        self.assertEqual(ends.revoke_url, "http://127.0.0.1:8765/oauth2/v1/tokens/revoke")
        self.assertEqual(client.endpoints("simulator", "http://sim:1/v3").api_base, "http://sim:1")
        with self.assertRaises(ConfigurationError):
            client.endpoints("simulator")

    def test_bad_environment_and_bad_urls_are_configuration_errors(self):
        for env, url in [
            ("staging", None),
            ("simulator", "ftp://127.0.0.1"),
            ("simulator", "http://user:pw@127.0.0.1"),
            ("simulator", "http://127.0.0.1/?x=1"),
            ("simulator", "http://127.0.0.1/#f"),
            ("simulator", "127.0.0.1:8765"),
        ]:
            with self.subTest(env=env, url=url), self.assertRaises(ConfigurationError):
                client.endpoints(env, url)

    def test_company_checks_realm_and_token_without_naming_the_token(self):
        with self.assertRaises(ConfigurationError):
            client.Company("93414-53", SIM_BASE, TOKEN)
        for bad in ["", "abc def", "abc\r\nX-Evil: 1", TOKEN + "\n"]:
            with self.subTest(bad=bad), self.assertRaises(ConfigurationError) as caught:
                client.Company(REALM, SIM_BASE, bad)
            self.assertNotIn(bad.strip() or "\x00", str(caught.exception))
        self.assertNotIn(TOKEN, repr(company()))


class EntityRequestsTest(unittest.TestCase):
    def test_read(self):
        req = client.read_request(company(), "Customer", "67")
        self.assertEqual(req.method, "GET")
        self.assertEqual(req.url, f"{SIM_BASE}/v3/company/{REALM}/customer/67?minorversion=75")
        self.assertEqual(req.headers["Authorization"], f"Bearer {TOKEN}")
        self.assertEqual(req.headers["Accept"], "application/json")
        self.assertNotIn("Content-Type", req.headers)
        self.assertIsNone(req.body)
        self.assertTrue(req.idempotent)
        self.assertIsNone(req.requestid)
        self.assertEqual(req.label, "read Customer 67")

    def test_production_urls(self):
        prod = client.Company(REALM, client.endpoints("production").api_base, TOKEN)
        req = client.read_request(prod, "Invoice", 239)
        self.assertTrue(
            req.url.startswith(f"https://quickbooks.api.intuit.com/v3/company/{REALM}/invoice/239?")
        )

    def test_ids_and_entity_names_cannot_smuggle_paths(self):
        for bad_id in ["1/../2", "1?x=2", "", None, "1 2", True]:
            with self.subTest(bad_id=bad_id), self.assertRaises(ValueError):
                client.read_request(company(), "Customer", bad_id)
        for bad_entity in ["customer/1", "Cust omer", "", "customer"]:
            with self.subTest(bad_entity=bad_entity), self.assertRaises(ValueError):
                client.read_request(company(), bad_entity, "1")

    def test_create_has_minorversion_requestid_json_and_no_client_id(self):
        body = {"DisplayName": "King's Groceries", "Id": "5", "SyncToken": "3"}
        req = client.create_request(company(), "Customer", body, RID)
        self.assertEqual(req.method, "POST")
        self.assertEqual(urlsplit(req.url).path, f"/v3/company/{REALM}/customer")
        self.assertEqual(query_of(req), {"minorversion": ["75"], "requestid": [RID]})
        self.assertEqual(req.headers["Content-Type"], "application/json")
        self.assertEqual(req.headers["Accept"], "application/json")
        self.assertEqual(body_of(req), {"DisplayName": "King's Groceries"})
        self.assertEqual(req.requestid, RID)
        self.assertTrue(req.idempotent)  # a requestid makes a resend safe

    def test_create_needs_a_valid_requestid(self):
        for bad in ["", "x" * 51, "has space", "a/b"]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                client.create_request(company(), "Customer", {"DisplayName": "x"}, bad)
        self.assertEqual(len(client.new_requestid()), 36)
        self.assertNotEqual(client.new_requestid(), client.new_requestid())

    def test_body_is_utf8_json_and_decimals_stay_exact(self):
        body = {
            "DisplayName": "Café Zoë",
            "Balance": Decimal("362.07"),
            "TxnDate": date(2025, 11, 10),
        }
        req = client.create_request(company(), "Customer", body, RID)
        assert req.body is not None
        self.assertIn("Café Zoë".encode(), req.body)
        self.assertIn(b'"Balance":362.07', req.body)
        self.assertIn(b'"TxnDate":"2025-11-10"', req.body)
        with self.assertRaises(ValueError):
            client.encode_json({"Amount": Decimal("0.1000000000000000000001")})
        with self.assertRaises(ValueError):
            client.encode_json({"Amount": Decimal("NaN")})

    def test_sparse_update_by_default_full_on_request(self):
        body = {"Id": "67", "SyncToken": "2", "CompanyName": "King"}
        req = client.update_request(company(), "Customer", body, RID)
        self.assertEqual(
            body_of(req), {"Id": "67", "SyncToken": "2", "CompanyName": "King", "sparse": True}
        )
        self.assertEqual(query_of(req), {"minorversion": ["75"], "requestid": [RID]})
        full = client.update_request(company(), "Customer", body, RID, sparse=False)
        self.assertIs(body_of(full)["sparse"], False)
        with self.assertRaises(ValueError):
            client.update_request(company(), "Customer", {"Id": "67"}, RID)

    def test_deactivate_is_a_sparse_update_of_active(self):
        req = client.deactivate_request(company(), "Customer", "67", "3", RID)
        self.assertEqual(
            body_of(req), {"Id": "67", "SyncToken": "3", "Active": False, "sparse": True}
        )
        self.assertNotIn("operation", query_of(req))
        with self.assertRaises(ValueError):
            client.deactivate_request(company(), "Invoice", "1", "0", RID)

    def test_delete_transactions_only(self):
        req = client.delete_request(company(), "Invoice", "33", "0", RID)
        self.assertEqual(
            parse_qsl(urlsplit(req.url).query),
            [("operation", "delete"), ("requestid", RID), ("minorversion", "75")],
        )
        self.assertEqual(body_of(req), {"Id": "33", "SyncToken": "0"})
        with self.assertRaises(ValueError):
            client.delete_request(company(), "Customer", "1", "0", RID)

    def test_void_invoice_uses_operation_void(self):
        req = client.void_request(company(), "Invoice", "239", "1", RID)
        self.assertEqual(query_of(req)["operation"], ["void"])
        self.assertNotIn("include", query_of(req))
        self.assertEqual(body_of(req), {"Id": "239", "SyncToken": "1"})

    def test_void_payment_uses_update_include_void_with_a_sparse_body(self):
        req = client.void_request(company(), "Payment", "125", "0", RID)
        self.assertEqual(query_of(req)["operation"], ["update"])
        self.assertEqual(query_of(req)["include"], ["void"])
        self.assertEqual(body_of(req), {"Id": "125", "SyncToken": "0", "sparse": True})
        with self.assertRaises(ValueError):
            client.void_request(company(), "Customer", "1", "0", RID)

    def test_with_access_token_keeps_url_and_requestid(self):
        req = client.create_request(company(), "Customer", {"DisplayName": "x"}, RID)
        fresh = req.with_access_token("eyJnew.token-value-12345")
        self.assertEqual(fresh.url, req.url)
        self.assertEqual(fresh.requestid, RID)
        self.assertEqual(fresh.body, req.body)
        self.assertEqual(fresh.headers["Authorization"], "Bearer eyJnew.token-value-12345")
        self.assertEqual(fresh.secrets, ("eyJnew.token-value-12345",))
        with self.assertRaises(ConfigurationError):
            req.with_access_token("bad token")


class QueryAndCdcRequestsTest(unittest.TestCase):
    def test_query_by_get_is_url_encoded(self):
        text = "SELECT * FROM Customer WHERE DisplayName = 'Amy\\'s Bird' STARTPOSITION 1 MAXRESULTS 10"
        req = client.query_request(company(), text)
        self.assertEqual(req.method, "GET")
        self.assertEqual(query_of(req), {"query": [text], "minorversion": ["75"]})
        raw = urlsplit(req.url).query
        self.assertIn("%20", raw)
        self.assertIn("%27", raw)
        self.assertNotIn(" ", raw)
        self.assertNotIn("'", raw)
        self.assertTrue(req.idempotent)

    def test_query_by_post_is_application_text(self):
        req = client.query_request(company(), "SELECT * FROM Item", method="POST")
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.headers["Content-Type"], "application/text")
        self.assertEqual(req.body, b"SELECT * FROM Item")
        self.assertEqual(query_of(req), {"minorversion": ["75"]})
        self.assertTrue(req.idempotent)
        self.assertIsNone(req.requestid)

    def test_a_long_query_goes_by_post(self):
        ids = [str(n) for n in range(1000, 1700)]
        text = client.select("Invoice", [("Id", "IN", ids)])
        self.assertEqual(client.query_request(company(), text).method, "POST")
        with self.assertRaises(ValueError):
            client.query_request(company(), "SELECT * FROM Item", method="PUT")

    def test_query_text_with_control_characters_is_rejected(self):
        with self.assertRaises(QboRequestRejected):
            client.query_request(company(), "SELECT * FROM Item WHERE Name = 'a\x00'")
        # line breaks between clauses are harmless
        client.query_request(company(), "SELECT *\nFROM Item")

    def test_cdc(self):
        since = datetime(2025, 11, 1, 9, 0, tzinfo=timezone(timedelta(hours=-7)))
        req = client.cdc_request(company(), ["Customer", "Item", "Invoice", "Payment"], since)
        self.assertEqual(urlsplit(req.url).path, f"/v3/company/{REALM}/cdc")
        self.assertEqual(
            query_of(req),
            {
                "entities": ["Customer,Item,Invoice,Payment"],
                "changedSince": ["2025-11-01T09:00:00-07:00"],
                "minorversion": ["75"],
            },
        )
        self.assertEqual(req.method, "GET")
        self.assertIn("%3A", urlsplit(req.url).query)  # the time's colons are encoded
        self.assertEqual(
            query_of(client.cdc_request(company(), ["Item"], date(2025, 11, 28)))["changedSince"],
            ["2025-11-28"],
        )
        with self.assertRaises(ValueError):
            client.cdc_request(company(), ["Item"], datetime(2025, 11, 1))  # naive
        with self.assertRaises(ValueError):
            client.cdc_request(company(), [], since)


class BatchRequestsTest(unittest.TestCase):
    def items(self):
        return [
            client.batch_create("c1", "Customer", {"DisplayName": "Acme Ltd", "Id": "9"}),
            client.batch_update(
                "u1", "Invoice", {"Id": "238", "SyncToken": "0", "DueDate": "2025-12-31"}
            ),
            client.batch_delete("d1", "Invoice", "129", "0"),
            client.batch_void("v1", "Payment", "125", "0"),
            client.batch_query("q1", "select * from Invoice where TotalAmt > '300.00'"),
        ]

    def test_batch_body_matches_the_documented_shape(self):
        req = client.batch_request(company(), self.items(), requestid=RID)
        self.assertEqual(urlsplit(req.url).path, f"/v3/company/{REALM}/batch")
        self.assertEqual(query_of(req), {"requestid": [RID], "minorversion": ["75"]})
        self.assertEqual(req.headers["Content-Type"], "application/json")
        self.assertEqual(
            body_of(req),
            {
                "BatchItemRequest": [
                    {"bId": "c1", "operation": "create", "Customer": {"DisplayName": "Acme Ltd"}},
                    {
                        "bId": "u1",
                        "operation": "update",
                        "Invoice": {
                            "Id": "238",
                            "SyncToken": "0",
                            "DueDate": "2025-12-31",
                            "sparse": True,
                        },
                    },
                    {
                        "bId": "d1",
                        "operation": "delete",
                        "Invoice": {"Id": "129", "SyncToken": "0"},
                    },
                    {
                        "bId": "v1",
                        "operation": "update",
                        "optionsData": "void",
                        "Payment": {"Id": "125", "SyncToken": "0", "sparse": True},
                    },
                    {"bId": "q1", "Query": "select * from Invoice where TotalAmt > '300.00'"},
                ]
            },
        )
        self.assertTrue(req.idempotent)

    def test_at_most_thirty_items_with_unique_bids(self):
        queries = [client.batch_query(f"q{n}", "SELECT * FROM Item") for n in range(31)]
        client.batch_request(company(), queries[:30])
        with self.assertRaises(ValueError):
            client.batch_request(company(), queries)
        with self.assertRaises(ValueError):
            client.batch_request(company(), [])
        with self.assertRaises(ValueError):
            client.batch_request(company(), [queries[0], queries[0]])

    def test_a_writing_batch_needs_a_requestid_and_short_bids(self):
        with self.assertRaises(ValueError):
            client.batch_request(company(), self.items())
        with self.assertRaises(ValueError):
            client.batch_request(company(), self.items(), requestid="r" * 37)
        long_bid = [client.batch_create("customer-01", "Customer", {"DisplayName": "x"})]
        with self.assertRaises(ValueError):
            client.batch_request(company(), long_bid, requestid=RID)
        # a query-only batch needs no requestid and is safe to resend
        req = client.batch_request(company(), [client.batch_query("q1", "SELECT * FROM Item")])
        self.assertTrue(req.idempotent)
        self.assertNotIn("requestid", query_of(req))

    def test_void_in_a_batch(self):
        self.assertEqual(
            client.batch_void("v2", "Invoice", "7", "1"),
            {
                "bId": "v2",
                "operation": "update",
                "optionsData": "void",
                "Invoice": {"Id": "7", "SyncToken": "1", "sparse": True},
            },
        )
        with self.assertRaises(ValueError):
            client.batch_void("v3", "Customer", "7", "1")
        with self.assertRaises(ValueError):
            client.batch_delete("d2", "Item", "7", "1")

    def test_chunks_split_into_batches(self):
        runs = list(client.chunks(list(range(65))))
        self.assertEqual([len(r) for r in runs], [30, 30, 5])
        self.assertEqual([len(r) for r in client.chunks(list(range(25)), 10)], [10, 10, 5])
        with self.assertRaises(ValueError):
            list(client.chunks([1], 31))


class OAuthRequestsTest(unittest.TestCase):
    def test_refresh_request(self):
        ends = client.endpoints("production")
        req = client.refresh_token_request(
            ends, "client-id-1", "client-secret-123456", "RT1-39-H3-refresh99"
        )
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.url, "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer")
        expected = base64.b64encode(b"client-id-1:client-secret-123456").decode()
        self.assertEqual(req.headers["Authorization"], f"Basic {expected}")
        self.assertEqual(req.headers["Content-Type"], "application/x-www-form-urlencoded")
        self.assertEqual(req.headers["Accept"], "application/json")
        self.assertEqual(req.headers["x-include-refresh-token-hard-expires-in"], "true")
        assert req.body is not None
        self.assertEqual(
            parse_qs(req.body.decode()),
            {"grant_type": ["refresh_token"], "refresh_token": ["RT1-39-H3-refresh99"]},
        )
        self.assertFalse(req.idempotent)  # a refresh that timed out may have rotated
        for secret in ("client-secret-123456", "RT1-39-H3-refresh99", expected):
            self.assertIn(secret, req.secrets)
            self.assertNotIn(secret, repr(req))

    def test_code_exchange_and_revoke(self):
        ends = client.endpoints("simulator", SIM_BASE)
        req = client.authorization_code_request(
            ends, "cid", "csecret-123456", "AB1234567890code", "http://127.0.0.1:8000/callback"
        )
        assert req.body is not None
        self.assertEqual(
            parse_qs(req.body.decode()),
            {
                "grant_type": ["authorization_code"],
                "code": ["AB1234567890code"],
                "redirect_uri": ["http://127.0.0.1:8000/callback"],
            },
        )
        self.assertEqual(req.url, f"{SIM_BASE}/oauth2/v1/tokens/bearer")
        rev = client.revoke_request(ends, "cid", "csecret-123456", "RT1-39-H3-refresh99")
        self.assertEqual(rev.headers["Content-Type"], "application/json")
        self.assertEqual(body_of(rev), {"token": "RT1-39-H3-refresh99"})
        self.assertFalse(rev.expects_json)

    def test_token_endpoint_needs_client_credentials_and_a_refresh_token(self):
        ends = client.endpoints("production")
        with self.assertRaises(ConfigurationError):
            client.refresh_token_request(ends, "", "secret", "RT1")
        with self.assertRaises(ConfigurationError):
            client.refresh_token_request(ends, "cid", "secret", "")
        with self.assertRaises(ConfigurationError):
            client.revoke_request(ends, "cid", "", "RT1-39-H3-x")


if __name__ == "__main__":
    unittest.main()

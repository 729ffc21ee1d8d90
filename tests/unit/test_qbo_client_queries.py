"""qbo_sync_db.client, the query language: literals escaped as QBO reads them (a backslash before
an apostrophe, and before a backslash), control characters refused, conditions and ORDERBY,
paging by STARTPOSITION/MAXRESULTS until a page comes back short (docs/client.md).

unittest only (no pytest): tests/unit/test_qbo_debian_python.py runs this file under Debian's
python3 and requests too."""

from __future__ import annotations

import unittest
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from qbo_sync_db import client
from qbo_sync_db.errors import QboRequestRejected


def unquote_like_qbo(text: str) -> str:
    """Read a literal back as QBO's lexer does: a backslash takes the next character as is
    (the simulator's lexer, simulator/query.py, is written the same way)."""
    assert text[0] == "'" and text[-1] == "'"
    out, pos, body = [], 0, text[1:-1]
    while pos < len(body):
        char = body[pos]
        if char == "\\":
            out.append(body[pos + 1])
            pos += 2
            continue
        assert char != "'", f"unescaped apostrophe in {text!r}"
        out.append(char)
        pos += 1
    return "".join(out)


class LiteralTest(unittest.TestCase):
    def test_apostrophes_are_backslash_escaped(self):
        self.assertEqual(client.literal("Amy's Bird Sanctuary"), "'Amy\\'s Bird Sanctuary'")

    def test_backslashes_are_escaped_so_the_closing_quote_stays_a_quote(self):
        self.assertEqual(client.literal("C:\\"), "'C:\\\\'")
        self.assertEqual(client.literal("a\\'b"), "'a\\\\\\'b'")

    def test_every_string_reads_back_unchanged(self):
        for value in [
            "",
            "plain",
            "O'Brien & Sons",
            "\\",
            "\\'",
            "''",
            "x' OR Name LIKE '%",
            "100%",
            "Zoë – ☃",
        ]:
            with self.subTest(value=value):
                self.assertEqual(unquote_like_qbo(client.literal(value)), value)

    def test_injection_stays_inside_the_literal(self):
        text = client.select("Customer", [("DisplayName", "=", "x' OR Active = false OR Id = '1")])
        self.assertEqual(
            text,
            "SELECT * FROM Customer WHERE DisplayName = 'x\\' OR Active = false OR Id = \\'1'",
        )

    def test_control_characters_are_refused_with_an_explicit_sqlstate(self):
        for value in ["line\nbreak", "tab\there", "nul\x00", "del\x7f", "c1\x85", "ls\u2028"]:
            with self.subTest(value=value), self.assertRaises(QboRequestRejected) as caught:
                client.literal(value)
            self.assertEqual(caught.exception.sqlstate, "QB400")

    def test_other_types(self):
        self.assertEqual(client.literal(True), "true")
        self.assertEqual(client.literal(False), "false")
        self.assertEqual(client.literal(123), "'123'")
        self.assertEqual(client.literal(Decimal("1000.00")), "'1000.00'")
        self.assertEqual(client.literal(1000.5), "'1000.5'")
        self.assertEqual(client.literal(date(2011, 1, 1)), "'2011-01-01'")
        pacific = timezone(timedelta(hours=-7))
        self.assertEqual(
            client.literal(datetime(2011, 8, 10, 10, 20, 30, tzinfo=pacific)),
            "'2011-08-10T10:20:30-07:00'",
        )
        for bad in [
            None,
            datetime(2011, 8, 10),
            float("nan"),
            Decimal("Infinity"),
            b"bytes",
            object(),
        ]:
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                client.literal(bad)


class SelectTest(unittest.TestCase):
    def test_select_with_conditions_and_order(self):
        since = datetime(2025, 11, 1, tzinfo=UTC)
        text = client.select(
            "Invoice",
            [("MetaData.LastUpdatedTime", ">=", since), ("CustomerRef", "=", "123")],
            ["MetaData.LastUpdatedTime", ("Id", "desc")],
        )
        self.assertEqual(
            text,
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2025-11-01T00:00:00+00:00' "
            "AND CustomerRef = '123' ORDERBY MetaData.LastUpdatedTime ASC, Id DESC",
        )

    def test_count_in_like_and_inactive_rows(self):
        self.assertEqual(
            client.select("Customer", [("Active", "in", [True, False])], count=True),
            "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)",
        )
        self.assertEqual(
            client.condition("DisplayName", "like", "Amy's%"), "DisplayName LIKE 'Amy\\'s%'"
        )
        self.assertEqual(client.condition("Id", "IN", ("1", "2")), "Id IN ('1', '2')")

    def test_bad_properties_operators_and_values(self):
        for args in [
            ("Name; DROP", "=", "x"),
            ("Name", "!=", "x"),
            ("Name", "<>", "x"),
            ("Name", "OR", "x"),
            ("Id", "IN", []),
            ("Id", "IN", "12"),
        ]:
            with self.subTest(args=args), self.assertRaises(ValueError):
                client.condition(*args)
        with self.assertRaises(ValueError):
            client.select("Invoice", order_by=[("Id", "SIDEWAYS")])
        with self.assertRaises(ValueError):
            client.select("invoice; x")


class PagingTest(unittest.TestCase):
    def test_page_adds_startposition_and_maxresults(self):
        self.assertEqual(
            client.page("SELECT * FROM Item", 1001, 1000),
            "SELECT * FROM Item STARTPOSITION 1001 MAXRESULTS 1000",
        )
        for start, size in [(0, 10), (1, 0), (1, 1001)]:
            with self.subTest(start=start, size=size), self.assertRaises(ValueError):
                client.page("SELECT * FROM Item", start, size)
        with self.assertRaises(ValueError):
            client.page("SELECT * FROM Item MAXRESULTS 5", 1, 10)
        # the words inside a value are not paging
        client.page(client.select("Item", [("Name", "=", "MAXRESULTS 5")]), 1, 10)

    def test_next_start_stops_at_a_short_page(self):
        self.assertEqual(client.next_start(1, 100, 100), 101)
        self.assertIsNone(client.next_start(101, 100, 99))
        self.assertIsNone(client.next_start(1, 100, 0))

    def fake_company(self, total: int):
        rows = [{"Id": str(n)} for n in range(1, total + 1)]
        asked: list[str] = []

        def fetch(text: str) -> client.QueryPage:
            asked.append(text)
            words = text.split()
            start = int(words[words.index("STARTPOSITION") + 1])
            size = int(words[words.index("MAXRESULTS") + 1])
            chunk = rows[start - 1 : start - 1 + size]
            data = (
                {"QueryResponse": {"Item": chunk, "startPosition": start, "maxResults": len(chunk)}}
                if chunk
                else {"QueryResponse": {}}
            )
            return client.parse_query(data, "Item")

        return fetch, asked

    def test_iter_pages_reads_everything_once(self):
        for total, size, expected_pages in [
            (0, 10, 1),
            (9, 10, 1),
            (10, 10, 2),
            (25, 10, 3),
            (2500, 1000, 3),
        ]:
            with self.subTest(total=total, size=size):
                fetch, asked = self.fake_company(total)
                pages = list(client.iter_pages("SELECT * FROM Item ORDERBY Id", fetch, size))
                ids = [row["Id"] for p in pages for row in p.rows]
                self.assertEqual(ids, [str(n) for n in range(1, total + 1)])
                self.assertEqual(len(asked), expected_pages)
                self.assertTrue(asked[0].endswith(f"STARTPOSITION 1 MAXRESULTS {size}"))

    def test_iter_pages_max_pages(self):
        fetch, asked = self.fake_company(100)
        pages = list(client.iter_pages("SELECT * FROM Item", fetch, 10, max_pages=2))
        self.assertEqual(len(pages), 2)
        self.assertEqual(asked[1], "SELECT * FROM Item STARTPOSITION 11 MAXRESULTS 10")


if __name__ == "__main__":
    unittest.main()

"""qbo_sync_db.audit's pure parts, without a database: the COUNT and listing queries it sends
(inactive name-list objects counted too; the slices QBO can filter on) and how SyncTokens
compare."""

from __future__ import annotations

from qbo_sync_db import audit


def test_count_queries_include_inactive_customers_and_items():
    assert audit.count_queries("customers") == {
        "all": "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)"
    }
    assert audit.count_queries("items") == {
        "all": "SELECT COUNT(*) FROM Item WHERE Active IN (true, false)"
    }


def test_invoices_and_payments_are_also_counted_in_slices():
    assert audit.count_queries("invoices") == {
        "all": "SELECT COUNT(*) FROM Invoice",
        "open": "SELECT COUNT(*) FROM Invoice WHERE Balance > '0'",
        "zero_total": "SELECT COUNT(*) FROM Invoice WHERE TotalAmt = '0'",
    }
    assert audit.count_queries("payments") == {
        "all": "SELECT COUNT(*) FROM Payment",
        "zero_total": "SELECT COUNT(*) FROM Payment WHERE TotalAmt = '0'",
    }


def test_the_listing_reads_ids_and_sync_tokens_only():
    assert audit.listing_query("customers") == (
        "SELECT Id, SyncToken FROM Customer WHERE Active IN (true, false) ORDERBY Id ASC"
    )
    assert (
        audit.listing_query("invoices")
        == "SELECT Id, SyncToken, TotalAmt FROM Invoice ORDERBY Id ASC"
    )


def test_sync_tokens_compare_as_numbers_and_a_forgotten_one_is_older():
    assert audit.newer("10", "9")
    assert not audit.newer("9", "10")
    assert not audit.newer("3", "3")
    assert audit.newer("3", None)  # a skipped record's forgotten token: refetched
    assert not audit.newer(None, "3")

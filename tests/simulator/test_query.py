"""Unit tests for the simulator's QBO query language (simulator/query.py)."""

from __future__ import annotations

import time
from datetime import UTC, date, timedelta

import pytest

from simulator.query import (
    DEFAULT_MAX_RESULTS,
    ExecuteOptions,
    QueryError,
    execute,
    parse,
    quote_literal,
    run,
)


def customer(
    id_: int,
    name: str,
    *,
    active: bool = True,
    balance: float = 0.0,
    updated: str = "2025-01-01T10:00:00-08:00",
    **extra: object,
) -> dict:
    row = {
        "Id": str(id_),
        "SyncToken": "0",
        "domain": "QBO",
        "sparse": False,
        "DisplayName": name,
        "Active": active,
        "Balance": balance,
        "MetaData": {"CreateTime": "2024-12-01T09:00:00-08:00", "LastUpdatedTime": updated},
    }
    row.update(extra)
    return row


@pytest.fixture
def customers() -> list[dict]:
    return [
        customer(
            1,
            "Amy's Bird Sanctuary",
            balance=239.0,
            updated="2025-01-05T10:00:00-08:00",
            PrimaryEmailAddr={"Address": "Birds@Example.com"},
            GivenName="Amy",
        ),
        customer(
            2,
            "Bill's Windsurf Shop",
            balance=85.0,
            updated="2025-01-03T10:00:00-08:00",
            GivenName="Bill",
        ),
        customer(3, "Cool Cars", active=False, balance=0, updated="2025-01-04T10:00:00-08:00"),
        customer(
            10,
            "Diego Rodriguez",
            balance=1000.5,
            updated="2025-01-02T23:30:00-08:00",
            GivenName="Diego",
        ),
        customer(11, "dukes basketball camp", balance=0, updated="2025-01-06T00:00:00Z"),
    ]


def ids(rows: list[dict]) -> list[str]:
    return [row["Id"] for row in rows]


def query_ids(text: str, rows: list[dict], options: ExecuteOptions | None = None) -> list[str]:
    return ids(execute(parse(text), rows, options)[0])


def error_of(text: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse(text)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_parse_full_statement_into_query_fields() -> None:
    q = parse(
        "SELECT * FROM Customer WHERE DisplayName = 'X' AND Balance > '10' "
        "ORDERBY DisplayName DESC, Id STARTPOSITION 11 MAXRESULTS 10"
    )
    assert q.entity == "Customer"
    assert q.select is None
    assert q.count is False
    assert [(c.field, c.op) for c in q.where] == [("DisplayName", "="), ("Balance", ">")]
    assert q.order_by == [("DisplayName", True), ("Id", False)]
    assert (q.start_position, q.max_results) == (11, 10)


def test_defaults_start_position_and_max_results() -> None:
    q = parse("SELECT * FROM Invoice")
    assert (q.start_position, q.max_results) == (1, DEFAULT_MAX_RESULTS)
    assert DEFAULT_MAX_RESULTS == 100


def test_keywords_entities_and_properties_are_case_insensitive() -> None:
    q = parse(
        "select * from cUstomer where givenname = 'Greg' and metadata.lastupdatedtime > "
        "'2025-01-01' order by displayname asc startposition 10 maxresults 5"
    )
    assert q.entity == "Customer"
    assert [c.field for c in q.where] == ["GivenName", "MetaData.LastUpdatedTime"]
    assert q.order_by == [("DisplayName", False)]
    assert (q.start_position, q.max_results) == (10, 5)


def test_order_by_accepts_both_spellings() -> None:
    assert parse("SELECT * FROM Item ORDERBY Name").order_by == [("Name", False)]
    assert parse("SELECT * FROM Item ORDER BY Name DESC").order_by == [("Name", True)]


def test_maxresults_may_precede_startposition() -> None:
    q = parse("SELECT * FROM Item MAXRESULTS 5 STARTPOSITION 3")
    assert (q.start_position, q.max_results) == (3, 5)


def test_count_star() -> None:
    q = parse("SELECT COUNT(*) FROM Customer WHERE Active = false")
    assert q.count is True and q.select is None


def test_projection_list_is_canonicalised() -> None:
    q = parse("SELECT id, displayname, metadata.lastupdatedtime FROM Customer")
    assert q.select == ["Id", "DisplayName", "MetaData.LastUpdatedTime"]


def test_star_with_extra_property_selects_everything() -> None:
    assert parse("SELECT *, Sku FROM Item").select is None


def test_multiline_query_and_whitespace() -> None:
    q = parse("SELECT *\n  FROM Invoice\n  WHERE TxnDate >= '2025-01-01'\n")
    assert q.where[0].field == "TxnDate"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

PARSER_ERRORS = [
    "",
    "SELECT",
    "SELECT * FROM",
    "SELECT * FORM Customer",
    "SELECT * FROM Customer WHERE DisplayName = 'a' OR DisplayName = 'b'",
    "SELECT * FROM Customer WHERE NOT Active = true",
    "SELECT * FROM Customer WHERE (Active = true)",
    "SELECT * FROM Customer WHERE DisplayName != 'a'",
    "SELECT * FROM Customer WHERE DisplayName <> 'a'",
    "SELECT * FROM Customer, Invoice",
    "SELECT * FROM Invoice JOIN Customer",
    "SELECT * FROM Customer GROUP BY DisplayName",
    "SELECT * FROM Customer WHERE DisplayName = 'Peet''s'",
    "SELECT * FROM Customer WHERE DisplayName = Peet",
    "SELECT * FROM Customer WHERE DisplayName LIKE 5",
    "SELECT * FROM Customer WHERE Active IN ()",
    "SELECT * FROM Customer WHERE",
    "SELECT * FROM Customer WHERE Active = true AND",
    "SELECT * FROM Customer STARTPOSITION 1.5",
    "SELECT * FROM Customer MAXRESULTS ten",
    "SELECT * FROM Customer MAXRESULTS 5 MAXRESULTS 6",
    "SELECT * FROM Customer ORDER DisplayName",
    "SELECT * FROM Customer;",
    "SELECT COUNT(Id) FROM Customer",
    "SELECT * FROM Customer LIMIT 10",
]


@pytest.mark.parametrize("text", PARSER_ERRORS)
def test_syntax_errors_are_4000(text: str) -> None:
    err = error_of(text)
    assert err.code == "4000"
    assert err.message == "Error parsing query"
    assert err.detail.startswith("QueryParserError: ")


def test_unescaped_apostrophe_reports_the_stray_token_and_column() -> None:
    err = error_of("SELECT * FROM Customer WHERE DisplayName = 'Peet's'")
    assert err.code == "4000"
    assert "Encountered" in err.detail and "column 50" in err.detail


def test_unterminated_string_is_4000() -> None:
    err = error_of("SELECT * FROM Customer WHERE DisplayName = 'abc")
    assert err.code == "4000" and "Unterminated" in err.detail
    # A trailing backslash escapes the closing quote, so the string never ends.
    assert error_of("SELECT * FROM Customer WHERE DisplayName = 'abc\\'").code == "4000"


def test_unknown_character_is_4000() -> None:
    err = error_of('SELECT * FROM Customer WHERE DisplayName = "abc"')
    assert err.code == "4000" and "Lexical error" in err.detail


def test_unknown_property_in_where_is_4001_with_qbo_wording() -> None:
    err = error_of("SELECT * FROM Customer WHERE NoSuchField = '1'")
    assert err.code == "4001"
    assert err.message == "Invalid query"
    assert err.detail == "QueryValidationError: Property NoSuchField not found for Entity Customer"


def test_unknown_property_in_order_by_and_select_is_4001() -> None:
    assert error_of("SELECT * FROM Invoice ORDERBY Foo").code == "4001"
    err = error_of("SELECT Id, Foo FROM Invoice")
    assert err.code == "4001" and "Property Foo not found for Entity Invoice" in err.detail


def test_complex_property_cannot_be_selected() -> None:
    err = error_of("SELECT Id, BillAddr FROM Customer")
    assert err.detail == "QueryValidationError: Property BillAddr not found for Entity Customer"


def test_non_filterable_property_is_not_queryable() -> None:
    err = error_of("SELECT * FROM Customer WHERE Taxable = true")
    assert err.code == "4001"
    assert err.detail == "QueryValidationError: property 'Taxable' is not queryable"


def test_non_sortable_property_in_order_by_is_4001() -> None:
    err = error_of("SELECT * FROM Customer ORDERBY Active")
    assert err.code == "4001" and "not sortable" in err.detail


def test_unknown_entity_is_4001() -> None:
    err = error_of("SELECT * FROM Widget")
    assert err.code == "4001" and "Widget" in err.detail


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM Customer WHERE Id > '5'",
        "SELECT * FROM Customer WHERE Id LIKE '5%'",
        "SELECT * FROM Invoice WHERE CustomerRef < '5'",
        "SELECT * FROM Customer WHERE Active > true",
        "SELECT * FROM Customer WHERE Balance LIKE '1%'",
    ],
)
def test_operator_not_supported_for_property_is_4001(text: str) -> None:
    assert error_of(text).code == "4001"


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM Invoice WHERE TotalAmt > 'abc'",
        "SELECT * FROM Invoice WHERE TxnDate > '2025-13-45'",
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > 'yesterday'",
        "SELECT * FROM Customer WHERE Active = 'maybe'",
        "SELECT * FROM Customer WHERE Active = 1",
        "SELECT * FROM Customer WHERE DisplayName = true",
        "SELECT * FROM Invoice WHERE TotalAmt > ' '",
    ],
)
def test_bad_literal_for_property_type_is_4001(text: str) -> None:
    err = error_of(text)
    assert err.code == "4001" and err.detail.startswith("QueryValidationError: ")


def test_maxresults_above_1000_is_rejected() -> None:
    err = error_of("SELECT * FROM Customer MAXRESULTS 1500")
    assert err.code == "4001"
    assert err.detail == "QueryValidationError: value 1500 is too large. Max allowed value is 1000"
    assert parse("SELECT * FROM Customer MAXRESULTS 1000").max_results == 1000


def test_maxresults_clamp_mode() -> None:
    q = parse("SELECT * FROM Customer MAXRESULTS 1500", strict_max_results=False)
    assert q.max_results == 1000


@pytest.mark.parametrize("clause", ["STARTPOSITION 0", "MAXRESULTS 0", "STARTPOSITION -1"])
def test_paging_numbers_below_one_are_rejected(clause: str) -> None:
    err = error_of(f"SELECT * FROM Customer {clause}")
    assert err.code == "4001" and "too small. Min allowed value is 1" in err.detail


def test_query_error_renders_a_fault_error_item() -> None:
    item = error_of("SELECT * FROM Customer WHERE Nope = '1'").to_error()
    assert item["code"] == "4001" and item["Message"] == "Invalid query"
    assert item["Detail"].startswith("QueryValidationError")


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------


def test_equals_on_string_is_case_insensitive_by_default(customers: list[dict]) -> None:
    assert query_ids(
        "SELECT * FROM Customer WHERE DisplayName = 'cool CARS' AND Active = false", customers
    ) == ["3"]


def test_case_sensitive_mode(customers: list[dict]) -> None:
    strict = ExecuteOptions(case_insensitive=False)
    text = "SELECT * FROM Customer WHERE DisplayName = 'diego rodriguez'"
    assert query_ids(text, customers, strict) == []
    assert query_ids(text, customers) == ["10"]


def test_id_equality_quoted_and_unquoted(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE Id = '10'", customers) == ["10"]
    assert query_ids("SELECT * FROM Customer WHERE Id = 10", customers) == ["10"]


def test_in_with_ids(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE Id IN ('1', '11', '99')", customers) == [
        "1",
        "11",
    ]


def test_in_with_strings(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer WHERE DisplayName IN ('COOL CARS', 'Diego Rodriguez')"
    # Cool Cars is inactive and the query does not filter on Active.
    assert query_ids(text, customers) == ["10"]


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("=", ["2"]),
        ("<", ["11"]),
        (">", ["1", "10"]),
        ("<=", ["2", "11"]),
        (">=", ["1", "2", "10"]),
    ],
)
def test_numeric_comparisons_use_numbers_not_strings(
    customers: list[dict], op: str, expected: list[str]
) -> None:
    # '85' vs 239 / 1000.5 would order differently as strings.
    assert query_ids(f"SELECT * FROM Customer WHERE Balance {op} '85'", customers) == expected


def test_numeric_literal_unquoted_and_decimal(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE Balance > 1000.25", customers) == ["10"]
    assert query_ids("SELECT * FROM Customer WHERE Balance = '1000.50'", customers) == ["10"]


def test_string_range_comparison(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE DisplayName >= 'd'", customers) == ["10", "11"]
    assert query_ids("SELECT * FROM Customer WHERE DisplayName < 'B'", customers) == ["1"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Amy%", ["1"]),
        ("%shop", ["2"]),
        ("%'s%", ["1", "2"]),
        ("D%Z", ["10"]),
        ("%", ["1", "2", "10", "11"]),
        ("dukes basketball camp", ["11"]),
        ("Amy", []),
        ("%e_s%", []),  # '_' is not a wildcard in QBO
        ("%.%", []),  # nor is '.', regex metacharacters are literal
    ],
)
def test_like_percent_wildcard(customers: list[dict], pattern: str, expected: list[str]) -> None:
    text = f"SELECT * FROM Customer WHERE DisplayName LIKE {quote_literal(pattern)}"
    assert query_ids(text, customers) == expected


def test_like_on_email_compares_the_address(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer WHERE PrimaryEmailAddr LIKE '%@example.com'"
    assert query_ids(text, customers) == ["1"]


def test_reference_compared_by_value() -> None:
    invoices = [
        {"Id": "1", "CustomerRef": {"value": "3", "name": "Cool Cars"}},
        {"Id": "2", "CustomerRef": {"value": "30", "name": "Other"}},
        {"Id": "3", "CustomerRef": {"value": "3"}},
        {"Id": "4"},
    ]
    assert query_ids("SELECT * FROM Invoice WHERE CustomerRef = '3'", invoices) == ["1", "3"]
    assert query_ids("SELECT * FROM Invoice WHERE CustomerRef IN ('30', '4')", invoices) == ["2"]


def test_null_literal_matches_missing_values() -> None:
    invoices = [{"Id": "1", "DocNumber": "1001"}, {"Id": "2"}, {"Id": "3", "DocNumber": ""}]
    assert query_ids("SELECT * FROM Invoice WHERE DocNumber = ' '", invoices) == ["2", "3"]
    assert query_ids("SELECT * FROM Invoice WHERE DocNumber IN (' ', '1001')", invoices) == [
        "1",
        "2",
        "3",
    ]


def test_and_combines_conditions(customers: list[dict]) -> None:
    text = (
        "SELECT * FROM Customer WHERE Balance > '0' AND DisplayName LIKE '%s%' "
        "AND Id IN ('1', '10', '11')"
    )
    # 2 is not in the IN list, 10 has no 's', 11 has balance 0.
    assert query_ids(text, customers) == ["1"]


def test_boolean_quoted_and_unquoted(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE Active = 'FALSE'", customers) == ["3"]
    assert query_ids("SELECT * FROM Customer WHERE Active = TRUE", customers) == [
        "1",
        "2",
        "10",
        "11",
    ]


# ---------------------------------------------------------------------------------------------
# Dates and times
# ---------------------------------------------------------------------------------------------


def test_timestamp_comparison_respects_offsets(customers: list[dict]) -> None:
    # Customer 10: 2025-01-02T23:30-08:00 == 2025-01-03T07:30Z.
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '2025-01-03T07:00:00Z'"
    assert "10" in query_ids(text, customers)
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '2025-01-03T08:00:00+00:00'"
    assert "10" not in query_ids(text, customers)


def test_timestamp_equality_across_offsets(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime = '2025-01-05T18:00:00Z'"
    assert query_ids(text, customers) == ["1"]


def test_date_only_literal_against_timestamp_uses_company_zone(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '2025-01-05'"
    # 11 is 2025-01-06T00:00Z == 2025-01-05T16:00-08:00.
    assert query_ids(text, customers) == ["1", "11"]
    utc = ExecuteOptions(naive_tz=UTC)
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '2025-01-06'"
    assert query_ids(text, customers, utc) == ["11"]
    assert query_ids(text, customers) == []


def test_timestamp_with_milliseconds_and_no_offset(customers: list[dict]) -> None:
    # No offset: read in the company zone (-08:00), so 2 (10:00:00-08:00) is just before.
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime < '2025-01-03T10:00:00.500'"
    assert query_ids(text, customers) == ["2", "10"]
    text = "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime < '2025-01-03T09:59:59.500'"
    assert query_ids(text, customers) == ["10"]


def test_date_field_comparisons_and_current_date() -> None:
    invoices = [
        {"Id": "1", "TxnDate": "2024-12-31", "DueDate": "2025-01-30"},
        {"Id": "2", "TxnDate": "2025-01-01", "DueDate": "2025-01-31"},
        {"Id": "3", "TxnDate": "2025-02-10", "DueDate": "2025-03-12"},
    ]
    assert query_ids("SELECT * FROM Invoice WHERE TxnDate > '2024-12-31'", invoices) == ["2", "3"]
    assert query_ids(
        "SELECT * FROM Invoice WHERE TxnDate >= '2025-01-01' AND TxnDate <= '2025-01-31'",
        invoices,
    ) == ["2"]
    pinned = ExecuteOptions(today=date(2025, 2, 1))
    text = "SELECT * FROM Invoice WHERE DueDate < CURRENT_DATE"
    assert query_ids(text, invoices, pinned) == ["1", "2"]
    later = ExecuteOptions(today=date(2025, 2, 1) + timedelta(days=60))
    assert query_ids(text, invoices, later) == ["1", "2", "3"]


# ---------------------------------------------------------------------------------------------
# Default Active filter
# ---------------------------------------------------------------------------------------------


def test_name_list_hides_inactive_rows_by_default(customers: list[dict]) -> None:
    page, total = execute(parse("SELECT * FROM Customer"), customers)
    assert "3" not in ids(page) and total == 4


def test_filtering_on_active_disables_the_default(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer WHERE Active = false", customers) == ["3"]
    both = "SELECT * FROM Customer WHERE Active IN (true, false)"
    assert query_ids(both, customers) == ["1", "2", "3", "10", "11"]


def test_count_respects_active_filter(customers: list[dict]) -> None:
    assert execute(parse("SELECT COUNT(*) FROM Customer"), customers) == ([], 4)
    text = "SELECT COUNT(*) FROM Customer WHERE Active IN (true, false)"
    assert execute(parse(text), customers) == ([], 5)


@pytest.mark.parametrize(
    "entity", ["Item", "Account", "Term", "PaymentMethod", "TaxCode", "Vendor", "Employee"]
)
def test_other_name_lists_hide_inactive_rows(entity: str) -> None:
    rows = [{"Id": "1", "Name": "a", "Active": True}, {"Id": "2", "Name": "b", "Active": False}]
    assert query_ids(f"SELECT * FROM {entity}", rows) == ["1"]


def test_transactions_have_no_active_filter() -> None:
    rows = [{"Id": "1", "Active": False}, {"Id": "2"}]
    assert query_ids("SELECT * FROM Invoice", rows) == ["1", "2"]


def test_active_filter_can_be_switched_off(customers: list[dict]) -> None:
    off = ExecuteOptions(active_filter=False)
    assert len(query_ids("SELECT * FROM Customer", customers, off)) == 5


# ---------------------------------------------------------------------------------------------
# Ordering
# ---------------------------------------------------------------------------------------------


def test_default_order_is_numeric_id_ascending(customers: list[dict]) -> None:
    shuffled = [customers[i] for i in (4, 2, 0, 3, 1)]
    text = "SELECT * FROM Customer WHERE Active IN (true, false)"
    assert query_ids(text, shuffled) == ["1", "2", "3", "10", "11"]


def test_order_by_ascending_and_descending(customers: list[dict]) -> None:
    assert query_ids("SELECT * FROM Customer ORDERBY Balance", customers) == ["11", "2", "1", "10"]
    assert query_ids("SELECT * FROM Customer ORDERBY Balance DESC", customers) == [
        "10",
        "1",
        "2",
        "11",
    ]


def test_order_by_string_ignores_case(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer ORDERBY DisplayName DESC"
    assert query_ids(text, customers) == ["11", "10", "2", "1"]


def test_order_by_timestamp_uses_instants(customers: list[dict]) -> None:
    text = "SELECT * FROM Customer ORDER BY MetaData.LastUpdatedTime ASC"
    assert query_ids(text, customers) == ["10", "2", "1", "11"]


def test_order_by_multiple_keys_mixed_directions() -> None:
    rows = [
        {"Id": "1", "FamilyName": "Smith", "GivenName": "Ann"},
        {"Id": "2", "FamilyName": "Jones", "GivenName": "Bob"},
        {"Id": "3", "FamilyName": "Smith", "GivenName": "Cy"},
        {"Id": "4", "FamilyName": "Jones", "GivenName": "Al"},
        {"Id": "5", "FamilyName": "Smith", "GivenName": "Cy"},
    ]
    text = "SELECT * FROM Customer ORDERBY FamilyName, GivenName DESC"
    assert query_ids(text, rows) == ["2", "4", "3", "5", "1"]
    text = "SELECT * FROM Customer ORDERBY FamilyName DESC, GivenName"
    assert query_ids(text, rows) == ["1", "3", "5", "4", "2"]


def test_missing_sort_values_first_ascending_last_descending() -> None:
    rows = [{"Id": "1", "DocNumber": "B"}, {"Id": "2"}, {"Id": "3", "DocNumber": "A"}]
    assert query_ids("SELECT * FROM Invoice ORDERBY DocNumber", rows) == ["2", "3", "1"]
    assert query_ids("SELECT * FROM Invoice ORDERBY DocNumber DESC", rows) == ["1", "3", "2"]


def test_order_by_reference_and_id_desc() -> None:
    rows = [
        {"Id": "1", "CustomerRef": {"value": "9"}},
        {"Id": "2", "CustomerRef": {"value": "10"}},
        {"Id": "3", "CustomerRef": {"value": "9"}},
    ]
    assert query_ids("SELECT * FROM Invoice ORDERBY CustomerRef, Id DESC", rows) == ["3", "1", "2"]


# ---------------------------------------------------------------------------------------------
# Paging
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def many_items() -> list[dict]:
    return [{"Id": str(i), "Name": f"Item {i:03d}", "Active": True} for i in range(1, 251)]


def test_default_page_is_100(many_items: list[dict]) -> None:
    page, total = execute(parse("SELECT * FROM Item"), many_items)
    assert len(page) == 100 and total == 250
    assert page[0]["Id"] == "1" and page[-1]["Id"] == "100"


@pytest.mark.parametrize(
    ("start", "size", "first", "count"),
    [
        (1, 10, "1", 10),
        (11, 10, "11", 10),
        (241, 20, "241", 10),
        (250, 5, "250", 1),
        (251, 5, None, 0),
    ],
)
def test_start_position_is_one_based(
    many_items: list[dict], start: int, size: int, first: str | None, count: int
) -> None:
    text = f"SELECT * FROM Item STARTPOSITION {start} MAXRESULTS {size}"
    page, total = execute(parse(text), many_items)
    assert total == 250
    assert len(page) == count
    assert (page[0]["Id"] if page else None) == first


def test_paging_until_short_page_visits_every_row_once(many_items: list[dict]) -> None:
    seen: list[str] = []
    start = 1
    while True:
        page, _ = execute(
            parse(f"SELECT * FROM Item ORDERBY Name DESC STARTPOSITION {start} MAXRESULTS 40"),
            many_items,
        )
        seen += ids(page)
        if len(page) < 40:
            break
        start += 40
    assert seen == [str(i) for i in range(250, 0, -1)]


def test_count_ignores_paging(many_items: list[dict]) -> None:
    text = "SELECT COUNT(*) FROM Item STARTPOSITION 200 MAXRESULTS 1"
    assert execute(parse(text), many_items) == ([], 250)


# ---------------------------------------------------------------------------------------------
# Projection and returned rows
# ---------------------------------------------------------------------------------------------


def test_select_star_returns_full_copies(customers: list[dict]) -> None:
    page, _ = execute(parse("SELECT * FROM Customer WHERE Id = '1'"), customers)
    assert page[0] == customers[0]
    page[0]["DisplayName"] = "changed"
    assert customers[0]["DisplayName"] == "Amy's Bird Sanctuary"


def test_projection_keeps_selected_fields_plus_id_synctoken(customers: list[dict]) -> None:
    text = (
        "SELECT DisplayName, MetaData.LastUpdatedTime, PrimaryEmailAddr "
        "FROM Customer WHERE Id = '1'"
    )
    page, _ = execute(parse(text), customers)
    assert page == [
        {
            "Id": "1",
            "SyncToken": "0",
            "domain": "QBO",
            "DisplayName": "Amy's Bird Sanctuary",
            "MetaData": {"LastUpdatedTime": "2025-01-05T10:00:00-08:00"},
            "PrimaryEmailAddr": {"Address": "Birds@Example.com"},
            "sparse": True,
        }
    ]
    assert "CreateTime" in customers[0]["MetaData"]  # stored row untouched


def test_projection_omits_unpopulated_fields(customers: list[dict]) -> None:
    page, _ = execute(parse("SELECT GivenName FROM Customer WHERE Id = '11'"), customers)
    assert "GivenName" not in page[0] and page[0]["Id"] == "11"


def test_projection_ignore_mode_returns_all_fields(customers: list[dict]) -> None:
    options = ExecuteOptions(projection="ignore")
    page, _ = execute(parse("SELECT DisplayName FROM Customer WHERE Id = '2'"), customers, options)
    assert page[0] == customers[1]


def test_run_helper(customers: list[dict]) -> None:
    query, page, total = run("SELECT * FROM Customer MAXRESULTS 2", customers)
    assert query.max_results == 2 and ids(page) == ["1", "2"] and total == 4


# ---------------------------------------------------------------------------------------------
# Escaping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Amy's Bird Sanctuary",
        "O'Brien's 'quoted' shop",
        "Back\\slash",
        "Trailing backslash\\",
        "Both \\' tricky",
        "100% Organic",
        "Zoë's Café — 東京",
        "Semi;colon AND OR 'SELECT'",
    ],
)
def test_quote_literal_round_trips(name: str) -> None:
    literal = quote_literal(name)
    q = parse(f"SELECT * FROM Customer WHERE DisplayName = {literal}")
    assert q.where[0].values[0].text == name
    rows = [
        {"Id": "1", "DisplayName": name, "Active": True},
        {"Id": "2", "DisplayName": name + "x", "Active": True},
    ]
    assert ids(execute(q, rows)[0]) == ["1"]


def test_quote_literal_format() -> None:
    assert quote_literal("Amy's") == "'Amy\\'s'"
    assert quote_literal("a\\b") == "'a\\\\b'"
    assert quote_literal("50%") == "'50%'"


def test_documented_backslash_apostrophe_example() -> None:
    q = parse("SELECT * FROM Customer WHERE CompanyName = 'Adam\\'s Candy Shop'")
    assert q.where[0].values[0].text == "Adam's Candy Shop"


def test_percent_in_equality_is_literal() -> None:
    rows = [{"Id": "1", "DisplayName": "100% Organic"}, {"Id": "2", "DisplayName": "100 Organic"}]
    assert query_ids("SELECT * FROM Customer WHERE DisplayName = '100% Organic'", rows) == ["1"]


# ---------------------------------------------------------------------------------------------
# Performance
# ---------------------------------------------------------------------------------------------


def test_ten_thousand_rows_execute_fast() -> None:
    rows = [
        customer(
            i,
            f"Customer {i:05d}",
            active=i % 7 != 0,
            balance=float(i % 500),
            updated=f"2025-01-{1 + i % 28:02d}T10:00:00-08:00",
        )
        for i in range(1, 10_001)
    ]
    query = parse(
        "SELECT * FROM Customer WHERE MetaData.LastUpdatedTime >= '2025-01-10' "
        "AND DisplayName LIKE 'Customer%' AND Balance > '10' "
        "ORDER BY MetaData.LastUpdatedTime DESC, DisplayName STARTPOSITION 101 MAXRESULTS 1000"
    )
    began = time.perf_counter()
    page, total = execute(query, rows)
    elapsed = time.perf_counter() - began
    assert len(page) == 1000 and total > 5000
    assert elapsed < 0.5, f"query over 10k rows took {elapsed:.3f}s"

"""QuickBooks Online query language for the QBO simulator.

This module parses the SQL-like statements that clients send to
``/v3/company/{realm}/query`` and evaluates them over the simulator's stored
entities (plain JSON dicts, exactly as the API returns them).  It is pure
Python with no I/O so the HTTP layer can call it directly and the unit tests
need no server.

Grammar (keywords, entity names and property names are case-insensitive)::

    SELECT * | COUNT(*) | prop[, prop...] FROM <Entity>
      [WHERE <prop> <op> <value> [AND <prop> <op> <value> ...]]
      [ORDERBY | ORDER BY <prop> [ASC|DESC][, ...]]
      [STARTPOSITION <n>] [MAXRESULTS <n>]

* operators: ``=  <  >  <=  >=  IN (v, ...)  LIKE 'pat%'`` (``%`` is the only
  wildcard); ``OR``, ``NOT``, ``!=``, ``<>``, parentheses, JOIN and GROUP BY
  are rejected with code 4000 (QueryParserError);
* values: single-quoted strings (a backslash escapes the next character, so
  ``\\'`` is an apostrophe and ``\\\\`` a backslash), unquoted numbers,
  ``true``/``false``, ``CURRENT_DATE``, and ``' '`` (one space) meaning null;
* unknown properties, properties that are not filterable / sortable, values
  that do not fit the property type and out-of-range paging numbers are
  rejected with code 4001 (QueryValidationError);
* ``Id`` and reference properties (``CustomerRef`` compared by its ``value``)
  accept only ``=`` and ``IN``; booleans only ``=`` and ``IN``;
* name-list entities (Customer, Vendor, Employee, Item, Account, TaxCode,
  Term, PaymentMethod, Class, Department) return only active rows unless the
  query filters on ``Active`` (e.g. ``WHERE Active IN (true, false)``).

Behaviour where the sources disagree or are silent is a setting, see
:class:`ExecuteOptions` (per call, or the module-level ``DEFAULT_OPTIONS``) and
the ``strict_max_results`` argument of :func:`parse`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "DEFAULT_OPTIONS",
    "ENTITIES",
    "MAX_MAX_RESULTS",
    "Condition",
    "EntitySpec",
    "ExecuteOptions",
    "Literal",
    "Prop",
    "Query",
    "QueryError",
    "execute",
    "parse",
    "quote_literal",
    "run",
]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

PARSER_ERROR_CODE = "4000"
PARSER_ERROR_MESSAGE = "Error parsing query"
VALIDATION_ERROR_CODE = "4001"
VALIDATION_ERROR_MESSAGE = "Invalid query"

DEFAULT_MAX_RESULTS = 100
MAX_MAX_RESULTS = 1000


class QueryError(Exception):
    """A query QBO would reject; ``code``/``message``/``detail`` mirror the Fault Error item."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail

    def to_error(self) -> dict[str, str]:
        """The item to put in ``Fault.Error`` (the fault ``type`` is ``ValidationFault``)."""
        return {"Message": self.message, "Detail": self.detail, "code": self.code, "element": ""}


def _parser_error(detail: str) -> QueryError:
    return QueryError(PARSER_ERROR_CODE, PARSER_ERROR_MESSAGE, f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError(
        VALIDATION_ERROR_CODE, VALIDATION_ERROR_MESSAGE, f"QueryValidationError: {detail}"
    )


# --------------------------------------------------------------------------------------------
# Entity catalog
# --------------------------------------------------------------------------------------------

# Property kinds.  "object" properties exist on the entity but can be neither filtered,
# sorted nor named in a projection (QBO answers "Property BillAddr not found for Entity ...").
ID, STRING, NUMBER, BOOL, DATE, DATETIME, OBJECT = (
    "id",
    "string",
    "number",
    "bool",
    "date",
    "datetime",
    "object",
)

_OPERATORS_BY_KIND: dict[str, frozenset[str]] = {
    ID: frozenset({"=", "IN"}),
    STRING: frozenset({"=", "<", ">", "<=", ">=", "IN", "LIKE"}),
    NUMBER: frozenset({"=", "<", ">", "<=", ">=", "IN"}),
    BOOL: frozenset({"=", "IN"}),
    DATE: frozenset({"=", "<", ">", "<=", ">=", "IN"}),
    DATETIME: frozenset({"=", "<", ">", "<=", ">=", "IN"}),
    OBJECT: frozenset(),
}


@dataclass(frozen=True)
class Prop:
    """One queryable/selectable property of an entity.

    ``name`` is the canonical dotted path (``MetaData.LastUpdatedTime``); ``subkey`` is the
    key compared inside a dict value (``value`` for references, ``Address`` for e-mail).
    """

    name: str
    kind: str
    filterable: bool = False
    sortable: bool = False
    subkey: str | None = None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


@dataclass(frozen=True)
class EntitySpec:
    """Catalog entry of a queryable entity."""

    name: str
    props: dict[str, Prop]  # keyed by lower-case property name
    name_list: bool = False

    def lookup(self, name: str) -> Prop | None:
        return self.props.get(name.lower())


def _spec(name: str, props: dict[str, str], *, name_list: bool = False) -> EntitySpec:
    """Build an EntitySpec from ``{"Prop": "kind flags"}`` where flags are f(ilter) s(ort),
    and kind may carry a subkey after a colon (``id:value`` for a reference)."""
    merged = {
        "Id": "id fs",
        "SyncToken": "string",
        "MetaData.CreateTime": "datetime fs",
        "MetaData.LastUpdatedTime": "datetime fs",
        **props,
    }
    table: dict[str, Prop] = {}
    for prop_name, spec in merged.items():
        kind_part, _, flags = spec.partition(" ")
        kind, _, subkey = kind_part.partition(":")
        table[prop_name.lower()] = Prop(prop_name, kind, "f" in flags, "s" in flags, subkey or None)
    return EntitySpec(name, table, name_list)


_REF = "id:value"
_EMAIL = "string:Address"
_PHONE = "string:FreeFormNumber"

_PERSON = {
    "DisplayName": "string fs",
    "Title": "string fs",
    "GivenName": "string fs",
    "MiddleName": "string fs",
    "FamilyName": "string fs",
    "Suffix": "string fs",
    "CompanyName": "string fs",
    "PrintOnCheckName": "string fs",
    "Active": "bool f",
    "PrimaryEmailAddr": _EMAIL + " f",
    "PrimaryPhone": _PHONE,
    "Mobile": _PHONE,
    "Fax": _PHONE,
    "AlternatePhone": _PHONE,
    "WebAddr": "object",
    "BillAddr": "object",
    "ShipAddr": "object",
    "Notes": "string",
    "CurrencyRef": _REF,
}

ENTITIES: dict[str, EntitySpec] = {
    spec.name.lower(): spec
    for spec in (
        _spec(
            "Customer",
            {
                **_PERSON,
                "FullyQualifiedName": "string fs",
                "Job": "bool f",
                "ParentRef": _REF + " f",
                "BillWithParent": "bool",
                "Level": "number",
                "Balance": "number fs",
                "BalanceWithJobs": "number fs",
                "Taxable": "bool",
                "SalesTermRef": _REF,
                "PaymentMethodRef": _REF,
                "DefaultTaxCodeRef": _REF,
                "PreferredDeliveryMethod": "string",
            },
            name_list=True,
        ),
        _spec(
            "Vendor",
            {**_PERSON, "Balance": "number fs", "Vendor1099": "bool f", "AcctNum": "string"},
            name_list=True,
        ),
        _spec(
            "Employee",
            {**_PERSON, "EmployeeNumber": "string f", "HiredDate": "date f"},
            name_list=True,
        ),
        _spec(
            "Item",
            {
                "Name": "string fs",
                "FullyQualifiedName": "string fs",
                "Sku": "string fs",
                "Type": "string fs",
                "Active": "bool f",
                "Description": "string",
                "PurchaseDesc": "string",
                "UnitPrice": "number fs",
                "PurchaseCost": "number",
                "QtyOnHand": "number fs",
                "Taxable": "bool",
                "TrackQtyOnHand": "bool",
                "InvStartDate": "date",
                "SubItem": "bool f",
                "ParentRef": _REF + " f",
                "Level": "number",
                "IncomeAccountRef": _REF,
                "ExpenseAccountRef": _REF,
                "AssetAccountRef": _REF,
                "SalesTaxCodeRef": _REF,
                "PurchaseTaxCodeRef": _REF,
            },
            name_list=True,
        ),
        _spec(
            "Invoice",
            {
                "DocNumber": "string fs",
                "TxnDate": "date fs",
                "DueDate": "date fs",
                "CustomerRef": _REF + " fs",
                "Balance": "number fs",
                "TotalAmt": "number fs",
                "HomeBalance": "number",
                "Deposit": "number",
                "EmailStatus": "string f",
                "PrintStatus": "string f",
                "BillEmail": _EMAIL,
                "PrivateNote": "string",
                "SalesTermRef": _REF,
                "CurrencyRef": _REF,
                "DepartmentRef": _REF,
                "ApplyTaxAfterDiscount": "bool",
                "CustomerMemo": "object",
                "Line": "object",
                "LinkedTxn": "object",
                "TxnTaxDetail": "object",
                "BillAddr": "object",
                "ShipAddr": "object",
            },
        ),
        _spec(
            "Payment",
            {
                "TxnDate": "date fs",
                "CustomerRef": _REF + " fs",
                "TotalAmt": "number fs",
                "UnappliedAmt": "number",
                "PaymentRefNum": "string fs",
                "PaymentMethodRef": _REF + " f",
                "DepositToAccountRef": _REF,
                "ARAccountRef": _REF,
                "CurrencyRef": _REF,
                "PrivateNote": "string",
                "ProcessPayment": "bool",
                "TxnStatus": "string",
                "Line": "object",
                "CreditCardPayment": "object",
            },
        ),
        _spec(
            "Account",
            {
                "Name": "string fs",
                "FullyQualifiedName": "string fs",
                "Active": "bool f",
                "AccountType": "string fs",
                "AccountSubType": "string fs",
                "Classification": "string fs",
                "CurrentBalance": "number fs",
                "CurrentBalanceWithSubAccounts": "number fs",
                "SubAccount": "bool f",
                "ParentRef": _REF + " f",
                "AcctNum": "string",
                "Description": "string",
                "CurrencyRef": _REF,
            },
            name_list=True,
        ),
        _spec(
            "TaxCode",
            {
                "Name": "string fs",
                "Active": "bool f",
                "Taxable": "bool f",
                "TaxGroup": "bool f",
                "Description": "string",
                "SalesTaxRateList": "object",
                "PurchaseTaxRateList": "object",
            },
            name_list=True,
        ),
        _spec(
            "Term",
            {
                "Name": "string fs",
                "Active": "bool f",
                "Type": "string f",
                "DueDays": "number",
                "DiscountPercent": "number",
                "DiscountDays": "number",
                "DayOfMonthDue": "number",
            },
            name_list=True,
        ),
        _spec(
            "PaymentMethod",
            {"Name": "string fs", "Active": "bool f", "Type": "string f"},
            name_list=True,
        ),
        _spec(
            "Class",
            {"Name": "string fs", "FullyQualifiedName": "string fs", "Active": "bool f"},
            name_list=True,
        ),
        _spec(
            "Department",
            {"Name": "string fs", "FullyQualifiedName": "string fs", "Active": "bool f"},
            name_list=True,
        ),
        _spec(
            "CompanyInfo",
            {
                "CompanyName": "string fs",
                "LegalName": "string",
                "Country": "string",
                "FiscalYearStartMonth": "string",
                "SupportedLanguages": "string",
                "CompanyStartDate": "date",
                "Email": "object",
                "CompanyAddr": "object",
                "LegalAddr": "object",
                "CustomerCommunicationAddr": "object",
                "PrimaryPhone": "object",
                "WebAddr": "object",
                "NameValue": "object",
            },
        ),
    )
}


def _entity(name: str) -> EntitySpec:
    spec = ENTITIES.get(name.lower())
    if spec is None:
        # Unverified against the live service: the code and wording are a simulator choice.
        raise _validation_error(f"Entity {name} not found or not queryable")
    return spec


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------

PACIFIC_STANDARD = timezone(timedelta(hours=-8), "PST")


@dataclass(frozen=True)
class ExecuteOptions:
    """Behaviour switches for :func:`execute` (see the reference's conflicts section).

    * ``case_insensitive``: string values compare case-insensitively (=, IN, LIKE, <, >,
      ORDER BY).  Intuit's page says attribute values are not case sensitive; unverified.
    * ``active_filter``: hide inactive rows of name-list entities unless the query filters
      on ``Active``.
    * ``default_order``: sort keys used when the query has no ORDER BY; ``Id`` (numeric)
      always breaks remaining ties so paging is stable.
    * ``projection``: ``"project"`` returns only the selected properties (plus
      ``projection_always`` and ``sparse: true``), as field reports show QBO doing;
      ``"ignore"`` returns every property, as Intuit's page literally says
      ("projections are not supported").
    * ``naive_tz``: zone for date-only / offset-less timestamp literals (QBO uses the
      company's zone; pass a ``zoneinfo.ZoneInfo`` for DST-exact behaviour).
    * ``today``: value of ``CURRENT_DATE`` (default: today in ``naive_tz``).
    """

    case_insensitive: bool = True
    active_filter: bool = True
    default_order: tuple[tuple[str, bool], ...] = (("Id", False),)
    projection: str = "project"
    projection_always: tuple[str, ...] = ("Id", "SyncToken", "domain")
    naive_tz: tzinfo = PACIFIC_STANDARD
    today: date | None = None

    def with_(self, **changes: Any) -> ExecuteOptions:
        return replace(self, **changes)


DEFAULT_OPTIONS = ExecuteOptions()

# --------------------------------------------------------------------------------------------
# Query model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A value as written in the query: ``kind`` is string/number/bool/current_date/null."""

    kind: str
    text: str


@dataclass(frozen=True)
class Condition:
    """``prop op value``; ``values`` holds one literal, or several for ``IN``."""

    prop: Prop
    op: str
    values: tuple[Literal, ...]

    @property
    def field(self) -> str:
        return self.prop.name


@dataclass
class Query:
    entity: str
    select: list[str] | None = None
    count: bool = False
    where: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS

    @property
    def spec(self) -> EntitySpec:
        return _entity(self.entity)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # KEYWORD, IDENT, STRING, NUMBER, SYMBOL, EOF, ERROR (lexical error detail)
    text: str  # keyword upper-cased; string unescaped
    line: int
    column: int
    raw: str = ""

    def describe(self) -> str:
        if self.kind == "EOF":
            return f'Encountered "<EOF>" at line {self.line}, column {self.column}.'
        shown = self.raw or self.text
        label = "INTEGER" if self.kind == "NUMBER" else self.kind
        if self.kind == "SYMBOL":
            return f'Encountered "{shown}" at line {self.line}, column {self.column}.'
        return f'Encountered " <{label}> "{shown} "" at line {self.line}, column {self.column}.'


_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDERBY",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "STARTPOSITION",
        "MAXRESULTS",
        "COUNT",
        "TRUE",
        "FALSE",
        "CURRENT_DATE",
        "JOIN",
        "GROUP",
        "HAVING",
        "IS",
        "NULL",
        "BETWEEN",
        "LIMIT",
        "OFFSET",
    }
)
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_SYMBOLS = ("<=", ">=", "<>", "!=", "=", "<", ">", "(", ")", ",", "*")


class _Tokenizer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def _column(self, pos: int) -> int:
        return pos - self.line_start + 1

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        text = self.text
        while True:
            self._skip_space()
            if self.pos >= len(text):
                out.append(_Token("EOF", "", self.line, self._column(self.pos)))
                return out
            try:
                out.append(self._next())
            except QueryError as lexical:
                # Like a lazy lexer: the error only surfaces if the parser gets this far, so
                # an earlier grammar error (e.g. a stray token after 'Peet') wins.
                out.append(_Token("ERROR", lexical.detail, self.line, self._column(self.pos)))
                return out

    def _skip_space(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos].isspace():
            if text[self.pos] == "\n":
                self.line += 1
                self.line_start = self.pos + 1
            self.pos += 1

    def _next(self) -> _Token:
        text, pos = self.text, self.pos
        line, column = self.line, self._column(pos)
        char = text[pos]
        if char == "'":
            return self._string(line, column)
        match = _IDENT_RE.match(text, pos)
        if match:
            word = match.group()
            self.pos = match.end()
            if word.upper() in _KEYWORDS:
                return _Token("KEYWORD", word.upper(), line, column, word)
            return _Token("IDENT", word, line, column, word)
        match = _NUMBER_RE.match(text, pos)
        if match:
            self.pos = match.end()
            return _Token("NUMBER", match.group(), line, column, match.group())
        for symbol in _SYMBOLS:
            if text.startswith(symbol, pos):
                self.pos += len(symbol)
                return _Token("SYMBOL", symbol, line, column, symbol)
        raise _parser_error(f'Lexical error at line {line}, column {column}. Encountered: "{char}"')

    def _string(self, line: int, column: int) -> _Token:
        text = self.text
        start = self.pos
        pos = start + 1
        chars: list[str] = []
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text):
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char == "'":
                self.pos = pos + 1
                return _Token("STRING", "".join(chars), line, column, text[start : self.pos])
            if char == "\n":
                self.line += 1
                self.line_start = pos + 1
            chars.append(char)
            pos += 1
        raise _parser_error(
            f"Lexical error at line {line}, column {column}. Unterminated string literal."
        )


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, strict_max_results: bool) -> None:
        self.tokens = _Tokenizer(text).tokens()
        self.index = 0
        self.strict_max_results = strict_max_results

    # -- token helpers ---------------------------------------------------------------------
    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def _advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "ERROR":
            raise self._fail()
        if token.kind != "EOF":
            self.index += 1
        return token

    def _fail(self) -> QueryError:
        token = self.current
        if token.kind == "ERROR":
            return QueryError(PARSER_ERROR_CODE, PARSER_ERROR_MESSAGE, token.text)
        return _parser_error(token.describe())

    def _is_keyword(self, *words: str) -> bool:
        return self.current.kind == "KEYWORD" and self.current.text in words

    def _is_symbol(self, *symbols: str) -> bool:
        return self.current.kind == "SYMBOL" and self.current.text in symbols

    def _expect_keyword(self, word: str) -> _Token:
        if not self._is_keyword(word):
            raise self._fail()
        return self._advance()

    def _expect_symbol(self, symbol: str) -> _Token:
        if not self._is_symbol(symbol):
            raise self._fail()
        return self._advance()

    def _expect_name(self) -> str:
        # Entity and property names are plain identifiers (dots allowed); reserved words
        # from _KEYWORDS are never names, which no QBO entity or property collides with.
        if self.current.kind != "IDENT":
            raise self._fail()
        return self._advance().text

    # -- grammar ---------------------------------------------------------------------------
    def parse(self) -> Query:
        self._expect_keyword("SELECT")
        count, star, names = self._select_list()
        self._expect_keyword("FROM")
        spec = _entity(self._expect_name())
        query = Query(entity=spec.name, count=count)
        query.select = None if (count or star) else [self._select_prop(spec, n) for n in names]
        if star:
            for name in names:  # "SELECT *, Sku FROM Item": extra names must still exist
                self._select_prop(spec, name)
        if self._is_keyword("WHERE"):
            self._advance()
            query.where = self._conditions(spec)
        if self._is_keyword("ORDERBY", "ORDER"):
            query.order_by = self._order_by(spec)
        self._paging(query)
        if self.current.kind != "EOF":
            raise self._fail()
        return query

    def _select_list(self) -> tuple[bool, bool, list[str]]:
        if self._is_keyword("COUNT"):
            self._advance()
            self._expect_symbol("(")
            self._expect_symbol("*")
            self._expect_symbol(")")
            return True, False, []
        star = False
        names: list[str] = []
        while True:
            if self._is_symbol("*") and not star:
                self._advance()
                star = True
            else:
                names.append(self._expect_name())
            if not self._is_symbol(","):
                return False, star, names
            self._advance()

    @staticmethod
    def _select_prop(spec: EntitySpec, name: str) -> str:
        prop = spec.lookup(name)
        if prop is None or prop.kind == OBJECT:
            raise _validation_error(f"Property {name} not found for Entity {spec.name}")
        return prop.name

    def _conditions(self, spec: EntitySpec) -> list[Condition]:
        conditions = [self._condition(spec)]
        while self._is_keyword("AND"):
            self._advance()
            conditions.append(self._condition(spec))
        return conditions

    def _condition(self, spec: EntitySpec) -> Condition:
        name = self._expect_name()
        if self._is_keyword("IN"):
            self._advance()
            op = "IN"
            values = self._value_list()
        elif self._is_keyword("LIKE"):
            self._advance()
            op = "LIKE"
            if self.current.kind != "STRING":
                raise self._fail()
            values = (Literal("string", self._advance().text),)
        elif self._is_symbol("=", "<", ">", "<=", ">="):
            op = self._advance().text
            values = (self._value(),)
        else:
            raise self._fail()
        return _validate_condition(spec, name, op, values)

    def _value_list(self) -> tuple[Literal, ...]:
        self._expect_symbol("(")
        values = [self._value()]
        while self._is_symbol(","):
            self._advance()
            values.append(self._value())
        self._expect_symbol(")")
        return tuple(values)

    def _value(self) -> Literal:
        token = self.current
        if token.kind == "STRING":
            self._advance()
            return Literal("null", "") if token.text == " " else Literal("string", token.text)
        if token.kind == "NUMBER":
            self._advance()
            return Literal("number", token.text)
        if token.kind == "KEYWORD" and token.text in ("TRUE", "FALSE"):
            self._advance()
            return Literal("bool", token.text.lower())
        if token.kind == "KEYWORD" and token.text == "CURRENT_DATE":
            self._advance()
            return Literal("current_date", "CURRENT_DATE")
        raise self._fail()

    def _order_by(self, spec: EntitySpec) -> list[tuple[str, bool]]:
        if self._advance().text == "ORDER":
            self._expect_keyword("BY")
        keys: list[tuple[str, bool]] = []
        while True:
            name = self._expect_name()
            prop = spec.lookup(name)
            if prop is None:
                raise _validation_error(f"Property {name} not found for Entity {spec.name}")
            if not prop.sortable:
                raise _validation_error(f"property '{prop.name}' is not sortable")
            descending = False
            if self._is_keyword("ASC", "DESC"):
                descending = self._advance().text == "DESC"
            keys.append((prop.name, descending))
            if not self._is_symbol(","):
                return keys
            self._advance()

    def _paging(self, query: Query) -> None:
        seen: set[str] = set()
        while self._is_keyword("STARTPOSITION", "MAXRESULTS") and self.current.text not in seen:
            word = self._advance().text
            seen.add(word)
            number = self._integer()
            if number < 1:
                raise _validation_error(f"value {number} is too small. Min allowed value is 1")
            if word == "STARTPOSITION":
                query.start_position = number
            elif number > MAX_MAX_RESULTS and self.strict_max_results:
                raise _validation_error(
                    f"value {number} is too large. Max allowed value is {MAX_MAX_RESULTS}"
                )
            else:
                query.max_results = min(number, MAX_MAX_RESULTS)

    def _integer(self) -> int:
        token = self.current
        if token.kind != "NUMBER" or not re.fullmatch(r"-?\d+", token.text):
            raise self._fail()
        self._advance()
        return int(token.text)


def _validate_condition(
    spec: EntitySpec, name: str, op: str, values: tuple[Literal, ...]
) -> Condition:
    prop = spec.lookup(name)
    if prop is None:
        raise _validation_error(f"Property {name} not found for Entity {spec.name}")
    if not prop.filterable:
        raise _validation_error(f"property '{prop.name}' is not queryable")
    if op not in _OPERATORS_BY_KIND[prop.kind]:
        raise _validation_error(f"Operator {op} is not supported for property '{prop.name}'")
    for value in values:
        if value.kind == "null" and op not in ("=", "IN"):
            raise _validation_error(f"null is only supported with = and IN for '{prop.name}'")
        _coerce(prop, value, DEFAULT_OPTIONS)  # raises 4001 for values of the wrong type
    return Condition(prop, op, values)


def parse(text: str, *, strict_max_results: bool = True) -> Query:
    """Parse a QBO SELECT statement; raise :class:`QueryError` for anything QBO rejects.

    ``strict_max_results=False`` clamps MAXRESULTS above 1000 to 1000 instead of failing
    (one third-party note claims QBO caps silently; a captured response shows the 4001).
    """
    if not isinstance(text, str):
        raise _parser_error('Encountered "<EOF>" at line 1, column 1.')
    return _Parser(text, strict_max_results).parse()


# --------------------------------------------------------------------------------------------
# Value conversion
# --------------------------------------------------------------------------------------------


def _parse_datetime(text: str, naive_tz: tzinfo) -> datetime | None:
    """ISO 8601 date or date-time (offset optional, ``Z`` allowed) as an aware datetime."""
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=naive_tz) if parsed.tzinfo is None else parsed


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _instant(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact, fast to compare)."""
    return (moment - _EPOCH) // _MICROSECOND


def _parse_instant(text: str, naive_tz: tzinfo) -> int | None:
    parsed = _parse_datetime(text, naive_tz)
    return None if parsed is None else _instant(parsed)


def _parse_date(text: str, naive_tz: tzinfo) -> date | None:
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    parsed = _parse_datetime(text, naive_tz)
    return parsed.date() if parsed else None


def _today(options: ExecuteOptions) -> date:
    return options.today or datetime.now(options.naive_tz).date()


def _coerce(prop: Prop, literal: Literal, options: ExecuteOptions) -> Any:
    """The literal as a value comparable with the row side of ``prop``; 4001 if it can't be."""
    if literal.kind == "null":
        return None
    kind, text = prop.kind, literal.text
    result: Any = None
    if kind in (ID, STRING):
        if literal.kind in ("string", "number"):
            result = text.strip() if kind == ID else text
    elif kind == NUMBER:
        if literal.kind in ("string", "number"):
            try:
                result = Decimal(text.strip())
            except InvalidOperation:
                result = None
            if result is not None and not result.is_finite():
                result = None
    elif kind == BOOL:
        if literal.kind in ("bool", "string") and text.strip().lower() in ("true", "false"):
            result = text.strip().lower() == "true"
    elif kind == DATE:
        if literal.kind == "current_date":
            result = _today(options)
        elif literal.kind == "string":
            result = _parse_date(text.strip(), options.naive_tz)
    elif kind == DATETIME:
        if literal.kind == "current_date":
            result = datetime.combine(_today(options), datetime.min.time(), options.naive_tz)
        elif literal.kind == "string":
            result = _parse_datetime(text.strip(), options.naive_tz)
    if result is None:
        raise _validation_error(f"value {text!r} is not valid for property '{prop.name}'")
    return result


def _getter(prop: Prop) -> Callable[[dict], Any]:
    """Function returning the raw stored value of ``prop`` (None when absent)."""
    parts = prop.path
    subkey = prop.subkey
    if len(parts) == 1 and subkey is None:
        key = parts[0]
        return lambda row: row.get(key)

    def get(row: dict) -> Any:
        value: Any = row
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        if subkey is not None:
            value = value.get(subkey) if isinstance(value, dict) else value
        return value

    return get


def _row_converter(prop: Prop, options: ExecuteOptions) -> Callable[[Any], Any]:
    """Function turning a stored value into the comparable form (None if absent/invalid).

    One specialised function per kind; timestamp/date parses are memoised per call of
    :func:`execute` because the same strings recur (and sorting re-reads them).
    """
    kind = prop.kind
    naive_tz = options.naive_tz
    if kind == STRING:
        if options.case_insensitive:
            return lambda v: None if v is None else (v if isinstance(v, str) else str(v)).casefold()
        return lambda v: None if v is None else (v if isinstance(v, str) else str(v))
    if kind == ID:
        return lambda v: None if v is None else str(v).strip()
    if kind == NUMBER:
        return _to_decimal
    if kind == BOOL:
        return lambda v: v if v is None or isinstance(v, bool) else str(v).lower() == "true"
    if kind in (DATE, DATETIME):
        parse_text = _parse_date if kind == DATE else _parse_instant
        cache: dict[str, Any] = {}

        def temporal(value: Any) -> Any:
            if value is None:
                return None
            text = str(value)
            try:
                return cache[text]
            except KeyError:
                parsed = cache[text] = parse_text(text, naive_tz)
                return parsed

        return temporal
    return lambda v: v


def _to_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _comparable_literal(prop: Prop, literal: Literal, options: ExecuteOptions) -> Any:
    value = _coerce(prop, literal, options)
    if prop.kind == STRING and options.case_insensitive and isinstance(value, str):
        return value.casefold()
    if prop.kind == DATETIME and isinstance(value, datetime):
        return _instant(value)
    return value


# --------------------------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------------------------

Predicate = Callable[[dict], bool]

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _like_regex(pattern: str, fold: bool) -> re.Pattern[str]:
    if fold:
        pattern = pattern.casefold()
    body = ".*".join(re.escape(piece) for piece in pattern.split("%"))
    return re.compile(body, re.DOTALL)


def _compile_condition(condition: Condition, options: ExecuteOptions) -> Predicate:
    prop = condition.prop
    get = _getter(prop)
    convert = _row_converter(prop, options)

    if condition.op == "LIKE":
        matcher = _like_regex(condition.values[0].text, options.case_insensitive).fullmatch

        def like(row: dict) -> bool:
            value = convert(get(row))
            return value is not None and matcher(value) is not None

        return like

    wants_null = any(v.kind == "null" for v in condition.values)
    targets = [_comparable_literal(prop, v, options) for v in condition.values if v.kind != "null"]

    def is_null(raw: Any) -> bool:
        return raw is None or (isinstance(raw, str) and raw.strip() == "")

    if condition.op in ("=", "IN"):
        target_set = frozenset(targets)

        def member(row: dict) -> bool:
            raw = get(row)
            if is_null(raw):
                return wants_null
            return convert(raw) in target_set

        return member

    compare = _COMPARATORS[condition.op]
    target = targets[0]

    def ordered(row: dict) -> bool:
        value = convert(get(row))
        return value is not None and compare(value, target)

    return ordered


def _active_predicate(row: dict) -> bool:
    return row.get("Active", True) is not False


def _compile_where(query: Query, spec: EntitySpec, options: ExecuteOptions) -> Predicate | None:
    predicates = [_compile_condition(c, options) for c in query.where]
    filters_active = any(c.prop.name == "Active" for c in query.where)
    if spec.name_list and options.active_filter and not filters_active:
        predicates.insert(0, _active_predicate)  # cheapest test first
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]

    def every(row: dict) -> bool:
        for predicate in predicates:
            if not predicate(row):
                return False
        return True

    return every


# --------------------------------------------------------------------------------------------
# Ordering, paging, projection
# --------------------------------------------------------------------------------------------


def _sort_value(prop: Prop, options: ExecuteOptions) -> Callable[[dict], Any]:
    """Comparable value of ``prop`` in a row (None when missing); numeric Ids sort as numbers."""
    get = _getter(prop)
    convert = _row_converter(prop, options)
    if prop.kind == ID:

        def id_value(row: dict) -> Any:
            value = convert(get(row))
            if value is None:
                return None
            return (0, int(value), "") if value.isdigit() else (1, 0, value)

        return id_value
    return lambda row: convert(get(row))


def _sorted_by(rows: list[dict], prop: Prop, descending: bool, options: ExecuteOptions) -> list:
    """Stable sort on one key; rows missing the value go first ascending, last descending."""
    value_of = _sort_value(prop, options)
    keyed = [(value_of(row), row) for row in rows]
    present = [pair for pair in keyed if pair[0] is not None]
    missing = [row for value, row in keyed if value is None]
    present.sort(key=lambda pair: pair[0], reverse=descending)
    ordered = [row for _, row in present]
    return ordered + missing if descending else missing + ordered


def _ordered(
    rows: list[dict], query: Query, spec: EntitySpec, options: ExecuteOptions
) -> list[dict]:
    keys = list(query.order_by) or list(options.default_order)
    id_prop = spec.lookup("Id")
    assert id_prop is not None
    result = _sorted_by(rows, id_prop, False, options)  # final tie-break: Id ascending
    for name, descending in reversed(keys):
        prop = spec.lookup(name)
        if prop is not None:
            result = _sorted_by(result, prop, descending, options)
    return result


def _project(row: dict, select: Sequence[str] | None, options: ExecuteOptions) -> dict:
    if select is None or options.projection == "ignore":
        return dict(row)
    out: dict[str, Any] = {}
    for key in options.projection_always:
        if key in row:
            out[key] = row[key]
    for name in select:
        head, _, rest = name.partition(".")
        if head not in row or out.get(head) is row[head]:
            continue
        if rest and isinstance(row[head], dict):
            if rest in row[head]:
                out.setdefault(head, {})[rest] = row[head][rest]
        else:
            out[head] = row[head]
    out["sparse"] = True
    return out


def execute(
    query: Query, rows: Iterable[dict], options: ExecuteOptions | None = None
) -> tuple[list[dict], int]:
    """Evaluate ``query`` over the entity's stored rows.

    Returns ``(page, total)``: the rows of the requested page (shallow copies, projected)
    and the number of rows matching the filter.  For ``COUNT(*)`` the page is empty.
    """
    options = options or DEFAULT_OPTIONS
    spec = query.spec
    predicate = _compile_where(query, spec, options)
    matched = list(rows) if predicate is None else [row for row in rows if predicate(row)]
    total = len(matched)
    if query.count:
        return [], total
    start = query.start_position - 1
    if start >= total:
        return [], total
    ordered = _ordered(matched, query, spec, options)
    page = ordered[start : start + query.max_results]
    return [_project(row, query.select, options) for row in page], total


def run(
    text: str, rows: Iterable[dict], options: ExecuteOptions | None = None
) -> tuple[Query, list[dict], int]:
    """Convenience: :func:`parse` then :func:`execute`."""
    query = parse(text)
    page, total = execute(query, rows, options)
    return query, page, total


# --------------------------------------------------------------------------------------------
# Literals for query builders
# --------------------------------------------------------------------------------------------


def quote_literal(value: str) -> str:
    """``value`` as a QBO string literal: backslash and apostrophe escaped with a backslash.

    ``%`` is left alone: it is only special as the LIKE wildcard (QBO documents no escape
    for it), so ``=`` comparisons match it literally.
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

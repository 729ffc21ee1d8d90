"""Field mapping between the application's rows and QBO's objects, both ways (pure functions).

Each synced entity has one `EntityMap`: the QBO entity name and a list of `Field`s, each naming a
local column, where the value sits in the QBO object (a path of keys) and how it converts. The
same list drives both directions, so a field cannot be mapped one way and forgotten the other,
and a test walks it: every field survives `to_qbo` then `from_qbo` unchanged.

Conventions (the engine's SQL relies on them):
- values are what PL/Python hands to and gets from prepared statements: text, `Decimal`, bool,
  dates as 'YYYY-MM-DD' text, addresses as dicts (jsonb), QBO timestamps as ISO text;
- a reference to another synced object is carried as that object's QBO Id under a
  `<column>_qbo_id` key (e.g. `customer_id_qbo_id`); the engine turns it into the local id with a
  join, and back;
- read-only fields (QBO computes them: balances, totals, tax) come from QBO only and are never
  sent;
- `from_qbo` also returns `qbo_id`, `qbo_sync_token`, `qbo_created_at`, `qbo_updated_at`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# ----------------------------------------------------------------------------- value kinds


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    if type(value) is Decimal:  # QBO's amounts, decoded (first: comparing a Decimal is slow)
        return value
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


#: the PhysicalAddress keys kept locally (QBO's own Id, Lat and Long are not the application's)
ADDRESS_KEYS = (
    "Line1",
    "Line2",
    "Line3",
    "Line4",
    "Line5",
    "City",
    "CountrySubDivisionCode",
    "PostalCode",
    "Country",
)


def _address(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    kept = {key: str(value[key]) for key in ADDRESS_KEYS if value.get(key) not in (None, "")}
    return kept or None


@dataclass(frozen=True)
class Kind:
    """How one value converts: `read` turns QBO's value into the local one; `write` the local
    one into QBO's; `empty` is what a sparse update sends to clear the field."""

    read: Callable[[Any], Any]
    write: Callable[[Any], Any]
    empty: Any


TEXT = Kind(_text, _text, "")
DECIMAL = Kind(_decimal, _decimal, None)
BOOL = Kind(_bool, _bool, None)
DATE = Kind(_text, _text, None)
ADDRESS = Kind(_address, _address, {})


@dataclass(frozen=True)
class Field:
    """A local column and where its value sits in the QBO object.

    `path` walks nested objects: ("PrimaryEmailAddr", "Address"). `read_only`: QBO computes it;
    it is pulled, never pushed. `default`: the value when QBO leaves the field out."""

    column: str
    path: tuple[str, ...]
    kind: Kind = TEXT
    read_only: bool = False
    #: the local value when QBO leaves the field out (for columns that may not be NULL)
    default: Any = None


@dataclass(frozen=True)
class Reference:
    """A reference to another synced object: local column `column` (a uuid) is the object whose
    QBO Id sits at `path` (a ReferenceType's `value`); an empty path is a link the entity's own
    code reads and writes (a payment's invoice, in its Line's LinkedTxn)."""

    column: str
    entity: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class EntityMap:
    entity: str
    qbo_entity: str
    fields: tuple[Field, ...]
    references: tuple[Reference, ...] = ()
    #: the local column that says a row is inactive (False) or voided (True), and how
    active_column: str | None = None
    voided_column: str | None = None
    derived: Callable[[Mapping[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)

    def synced_columns(self) -> list[str]:
        """The columns a local change of which must be pushed (read-only ones excluded): what
        qbo_sync.entity.synced_columns must list (a test compares them)."""
        columns = [f.column for f in self.fields if not f.read_only]
        columns += [r.column for r in self.references]
        if self.voided_column:
            columns.append(self.voided_column)
        return columns


def _get(obj: Mapping[str, Any] | None, path: Sequence[str]) -> Any:
    value: Any = obj
    for key in path:
        # decoded JSON is made of dicts: the exact-type tests spare the ABC check each step
        if type(value) is not dict and (value is None or not isinstance(value, Mapping)):
            return None
        value = value.get(key)
    return value


def _put(obj: dict[str, Any], path: Sequence[str], value: Any) -> None:
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


# ----------------------------------------------------------------------------- the entities


def _invoice_derived(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """What the application's invoice row shows that QBO states differently: the subtotal (the
    SubTotalLine's amount), what was paid, and a status."""
    total = _decimal(invoice.get("TotalAmt")) or Decimal(0)
    balance = _decimal(invoice.get("Balance"))
    if balance is None:
        balance = total
    subtotal = next(
        (
            _decimal(line.get("Amount"))
            for line in _lines(invoice)
            if line.get("DetailType") == "SubTotalLineDetail"
        ),
        None,
    )
    if subtotal is None:
        subtotal = sum(
            (_decimal(line.get("Amount")) or Decimal(0) for line in _sales_lines(invoice)),
            Decimal(0),
        )
    voided = is_voided("invoices", invoice)
    if voided:
        status = "voided"
    elif total > 0 and balance == 0:
        status = "paid"
    elif 0 < balance < total:
        status = "partially_paid"
    else:
        status = "open"
    return {
        "subtotal": subtotal,
        "amount_paid": total - balance,
        "status": status,
    }


CUSTOMERS = EntityMap(
    "customers",
    "Customer",
    (
        Field("display_name", ("DisplayName",)),
        Field("company_name", ("CompanyName",)),
        Field("given_name", ("GivenName",)),
        Field("family_name", ("FamilyName",)),
        Field("email", ("PrimaryEmailAddr", "Address")),
        Field("phone", ("PrimaryPhone", "FreeFormNumber")),
        Field("mobile", ("Mobile", "FreeFormNumber")),
        Field("billing_address", ("BillAddr",), ADDRESS),
        Field("shipping_address", ("ShipAddr",), ADDRESS),
        Field("notes", ("Notes",)),
        Field("taxable", ("Taxable",), BOOL, default=False),
        Field("currency_code", ("CurrencyRef", "value")),
        Field("is_active", ("Active",), BOOL, default=True),
        Field("balance", ("Balance",), DECIMAL, read_only=True, default=Decimal(0)),
    ),
    active_column="is_active",
)

ITEMS = EntityMap(
    "items",
    "Item",
    (
        Field("name", ("Name",)),
        Field("sku", ("Sku",)),
        Field("description", ("Description",)),
        Field("item_type", ("Type",), default="Service"),
        Field("unit_price", ("UnitPrice",), DECIMAL),
        Field("purchase_cost", ("PurchaseCost",), DECIMAL),
        Field("income_account_ref", ("IncomeAccountRef", "value")),
        Field("expense_account_ref", ("ExpenseAccountRef", "value")),
        Field("taxable", ("Taxable",), BOOL, default=False),
        Field("is_active", ("Active",), BOOL, default=True),
        Field("qty_on_hand", ("QtyOnHand",), DECIMAL, read_only=True),
    ),
    active_column="is_active",
)

INVOICES = EntityMap(
    "invoices",
    "Invoice",
    (
        Field("invoice_number", ("DocNumber",)),
        Field("txn_date", ("TxnDate",), DATE),
        Field("due_date", ("DueDate",), DATE),
        Field("currency_code", ("CurrencyRef", "value")),
        Field("customer_memo", ("CustomerMemo", "value")),
        Field("private_note", ("PrivateNote",)),
        Field("billing_email", ("BillEmail", "Address")),
        Field("billing_address", ("BillAddr",), ADDRESS),
        Field("shipping_address", ("ShipAddr",), ADDRESS),
        Field("sales_term_ref", ("SalesTermRef", "value")),
        Field("email_status", ("EmailStatus",), read_only=True),
        Field("print_status", ("PrintStatus",), read_only=True),
        Field(
            "tax_total", ("TxnTaxDetail", "TotalTax"), DECIMAL, read_only=True, default=Decimal(0)
        ),
        Field("total_amount", ("TotalAmt",), DECIMAL, read_only=True, default=Decimal(0)),
        Field("balance_due", ("Balance",), DECIMAL, read_only=True),
    ),
    references=(Reference("customer_id", "customers", ("CustomerRef", "value")),),
    voided_column="is_voided",
    derived=_invoice_derived,
)

PAYMENTS = EntityMap(
    "payments",
    "Payment",
    (
        Field("amount", ("TotalAmt",), DECIMAL, default=Decimal(0)),
        Field("payment_date", ("TxnDate",), DATE),
        Field("payment_method_ref", ("PaymentMethodRef", "value")),
        Field("reference_number", ("PaymentRefNum",)),
        Field("deposit_account_ref", ("DepositToAccountRef", "value")),
        Field("currency_code", ("CurrencyRef", "value")),
        Field("private_note", ("PrivateNote",)),
        Field("unapplied_amount", ("UnappliedAmt",), DECIMAL, read_only=True, default=Decimal(0)),
    ),
    references=(
        Reference("customer_id", "customers", ("CustomerRef", "value")),
        Reference("invoice_id", "invoices", ()),
    ),
    voided_column="is_voided",
)

ENTITIES: dict[str, EntityMap] = {m.entity: m for m in (ITEMS, CUSTOMERS, INVOICES, PAYMENTS)}

#: invoice line columns, one per SalesItemLineDetail line
LINE_FIELDS = (
    Field("description", ("Description",)),
    Field("amount", ("Amount",), DECIMAL, default=Decimal(0)),
    Field("quantity", ("SalesItemLineDetail", "Qty"), DECIMAL),
    Field("unit_price", ("SalesItemLineDetail", "UnitPrice"), DECIMAL),
    Field("tax_code_ref", ("SalesItemLineDetail", "TaxCodeRef", "value")),
    Field("service_date", ("SalesItemLineDetail", "ServiceDate"), DATE),
)
LINE_ITEM_PATH = ("SalesItemLineDetail", "ItemRef", "value")
SALES_LINE = "SalesItemLineDetail"


# ----------------------------------------------------------------------------- QBO → rows


def is_voided(entity: str, obj: Mapping[str, Any]) -> bool:
    """QBO has no void flag: a voided invoice or payment is zeroed and its PrivateNote starts
    with "Voided" (the reference's void response, §3.4)."""
    if entity not in ("invoices", "payments"):
        return False
    note = str(obj.get("PrivateNote") or "")
    total = _decimal(obj.get("TotalAmt")) or Decimal(0)
    return total == 0 and note.startswith("Voided")


def _reader(fields: Sequence[Field]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function reading `fields` from a QBO object into a row (each field's value converted by
    its kind, or its default when QBO left it out), with the per-field lookups done once here
    rather than for each of the thousands of objects a pull maps."""
    plan = [(f.column, f.path, f.kind.read, f.default) for f in fields]

    def read(obj: Mapping[str, Any]) -> dict[str, Any]:
        row = {}
        for column, path, convert, default in plan:
            value = convert(_get(obj, path))
            row[column] = default if value is None else value
        return row

    return read


_READERS = {name: _reader(spec.fields) for name, spec in ENTITIES.items()}
_read_line = _reader(LINE_FIELDS)


def reference_key(column: str) -> str:
    return f"{column}_qbo_id"


def from_qbo(entity: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The local row (columns → values) for QBO object `obj` of `entity`."""
    spec = ENTITIES[entity]
    row = _READERS[entity](obj)
    for ref in spec.references:
        if ref.path:
            row[reference_key(ref.column)] = _text(_get(obj, ref.path))
    if entity == "payments":
        row[reference_key("invoice_id")] = paid_invoice(obj)
    if spec.voided_column:
        row[spec.voided_column] = is_voided(entity, obj)
    if spec.active_column and row.get(spec.active_column) is None:
        row[spec.active_column] = True  # QBO omits Active when it is the default
    if spec.derived is not None:
        row.update(spec.derived(obj))
    meta = obj.get("MetaData") or {}
    row.update(
        qbo_id=_text(obj.get("Id")),
        qbo_sync_token=_text(obj.get("SyncToken")),
        qbo_created_at=_text(meta.get("CreateTime")),
        qbo_updated_at=_text(meta.get("LastUpdatedTime")),
    )
    return row


def paid_invoice(payment: Mapping[str, Any]) -> str | None:
    """The invoice a payment pays (its first line linked to an Invoice). The application's table
    links one invoice per payment; a payment QBO applies to several is linked to the first and
    keeps the rest in qbo_raw."""
    for line in _lines(payment):
        for linked in _lines(line, "LinkedTxn"):
            if linked.get("TxnType") == "Invoice" and linked.get("TxnId") is not None:
                return str(linked["TxnId"])
    return None


def invoice_lines(invoice: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invoice's sales lines as local line rows, with QBO's line Id and number; subtotal,
    discount and description-only lines are not the application's lines."""
    lines = []
    position = 0
    for line in _sales_lines(invoice):
        position += 1
        row = _read_line(line)
        row.update(
            qbo_line_id=_text(line.get("Id")),
            line_number=int(line.get("LineNum") or position),
            detail_type=SALES_LINE,
        )
        row[reference_key("item_id")] = _text(_get(line, LINE_ITEM_PATH))
        if row["quantity"] is None:
            row["quantity"] = Decimal(1)
        if row["unit_price"] is None:
            row["unit_price"] = row["amount"] or Decimal(0)
        lines.append(row)
    return lines


def line_item_ids(invoice: Mapping[str, Any]) -> set[str]:
    """The QBO Ids of the items an invoice's sales lines name (the lines themselves are mapped
    in SQL when pulled: qbo_sync.invoice_lines_of, which `invoice_lines` here must equal)."""
    return {
        str(item)
        for line in _sales_lines(invoice)
        if (item := _get(line, LINE_ITEM_PATH)) is not None
    }


def _sales_lines(invoice: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """An invoice's SalesItemLineDetail lines, in order (anything else in Line is skipped)."""
    for line in _lines(invoice):
        if line.get("DetailType") == SALES_LINE:
            yield line


def _lines(obj: Mapping[str, Any], key: str = "Line") -> Iterator[dict[str, Any]]:
    """The objects in `obj`'s list `key`, in order (not a list: none; what is not an object in
    it is skipped)."""
    found = obj.get(key)
    for line in found if isinstance(found, list) else ():
        if isinstance(line, dict):
            yield line


# ----------------------------------------------------------------------------- rows → QBO


def to_qbo(
    entity: str,
    row: Mapping[str, Any],
    changed: Sequence[str] | None = None,
    lines: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The QBO body for local `row`: every writable field for a create (`changed` None), or a
    sparse update of the `changed` columns with the row's Id and SyncToken. The `<column>_qbo_id`
    keys give the references; `lines` (invoices) replaces the whole Line list."""
    spec = ENTITIES[entity]
    body: dict[str, Any] = {}
    wanted = None if changed is None else set(changed)
    for f in spec.fields:
        if f.read_only or (wanted is not None and f.column not in wanted):
            continue
        value = f.kind.write(row.get(f.column))
        if value is None:
            if wanted is None or f.kind.empty is None:
                continue
            value = f.kind.empty
        _put(body, f.path, value)
    for ref in spec.references:
        if not ref.path or (wanted is not None and ref.column not in wanted):
            continue
        qbo_id = row.get(reference_key(ref.column))
        if qbo_id is not None:
            _put(body, ref.path, str(qbo_id))
    if entity == "payments" and (wanted is None or "invoice_id" in wanted or "amount" in wanted):
        invoice = row.get(reference_key("invoice_id"))
        body["Line"] = (
            [
                {
                    "Amount": _decimal(row.get("amount")),
                    "LinkedTxn": [{"TxnId": str(invoice), "TxnType": "Invoice"}],
                }
            ]
            if invoice is not None
            else []
        )
    if lines is not None:
        body["Line"] = [line_to_qbo(line) for line in lines]
    if changed is not None:
        body.update(Id=str(row["qbo_id"]), SyncToken=str(row["qbo_sync_token"]), sparse=True)
    return body


def line_to_qbo(line: Mapping[str, Any]) -> dict[str, Any]:
    """One local invoice line as a QBO SalesItemLine (its QBO Id kept, so QBO updates it in
    place rather than adding a line)."""
    body: dict[str, Any] = {"DetailType": SALES_LINE}
    if line.get("qbo_line_id"):
        body["Id"] = str(line["qbo_line_id"])
    for f in LINE_FIELDS:
        value = f.kind.write(line.get(f.column))
        if value is not None:
            _put(body, f.path, value)
    body.setdefault(SALES_LINE, {})
    item = line.get(reference_key("item_id"))
    if item is not None:
        _put(body, LINE_ITEM_PATH, str(item))
    return body

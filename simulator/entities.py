"""Business rules of the entities: create, full/sparse update, delete, void.

Every operation validates first and mutates the realm only when all checks pass, so a fault
leaves no partial change. Changes are recorded in ``Ctx.events`` as (entity, id, operation) for
webhooks; CDC reads the realm's timestamps and tombstones directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from simulator import errors as E
from simulator import salestax
from simulator.clock import add_days, fmt_date, fmt_meta
from simulator.config import SimulatorConfig
from simulator.store import ENTITIES, NAME_LISTS, PARTIES, TRANSACTIONS, Realm, name_key

SYSTEM_FIELDS = {"Id", "SyncToken", "MetaData", "domain", "sparse", "status"}
READ_ONLY: dict[str, set[str]] = {
    "Customer": {"Balance", "BalanceWithJobs", "FullyQualifiedName", "Level"},
    "Vendor": {"Balance"},
    "Employee": set(),
    "Item": {"FullyQualifiedName", "Level"},
    "Account": {"CurrentBalance", "CurrentBalanceWithSubAccounts", "FullyQualifiedName"},
    "Term": set(),
    "PaymentMethod": set(),
    "TaxCode": set(),
    "CompanyInfo": set(),
    "Invoice": {"TotalAmt", "Balance", "HomeBalance", "HomeTotalAmt"},
    "Payment": {"UnappliedAmt"},
}
# Every entity the API serves except the read-only ones (TaxCode and CompanyInfo).
CREATABLE = set(ENTITIES.values()) - {"TaxCode", "CompanyInfo"}
COMPANY_INFO_ID = "1"  # the one CompanyInfo object of a realm
USD = {"value": "USD", "name": "United States Dollar"}
ITEM_TYPES = {"Service", "Inventory", "NonInventory", "Category", "Group"}
ACCOUNT_TYPES = {
    "Bank",
    "Other Current Asset",
    "Fixed Asset",
    "Other Asset",
    "Accounts Receivable",
    "Equity",
    "Expense",
    "Other Expense",
    "Cost of Goods Sold",
    "Accounts Payable",
    "Credit Card",
    "Long Term Liability",
    "Other Current Liability",
    "Income",
    "Other Income",
}
CLASSIFICATION = {
    "Bank": "Asset",
    "Other Current Asset": "Asset",
    "Fixed Asset": "Asset",
    "Other Asset": "Asset",
    "Accounts Receivable": "Asset",
    "Equity": "Equity",
    "Expense": "Expense",
    "Other Expense": "Expense",
    "Cost of Goods Sold": "Expense",
    "Accounts Payable": "Liability",
    "Credit Card": "Liability",
    "Long Term Liability": "Liability",
    "Other Current Liability": "Liability",
    "Income": "Revenue",
    "Other Income": "Revenue",
}
LIMITS = {  # field -> max length (reference §3.2/§3.3)
    "DisplayName": 500,
    "GivenName": 100,
    "MiddleName": 100,
    "FamilyName": 100,
    "CompanyName": 100,
    "Title": 16,
    "Suffix": 16,
    "DocNumber": 21,
    "PrivateNote": 4000,
    "Description": 4000,
    "Sku": 100,
}


@dataclass
class Ctx:
    """One operation's view of the world."""

    realm: Realm
    now: float
    cfg: SimulatorConfig
    hidden: set[tuple[str, str]] = field(default_factory=set)  # batch: created in this batch
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def get(self, entity: str, oid: Any) -> dict[str, Any] | None:
        oid = str(oid)
        if (entity, oid) in self.hidden:
            return None
        return self.realm.get(entity, oid)


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def num(value: Decimal) -> float | int:
    """A money Decimal as the JSON number QBO writes."""
    f = float(value)
    return int(f) if f == int(f) else f


def _number(obj: dict[str, Any], key: str, element: str | None = None) -> Decimal | None:
    if key not in obj or obj[key] is None:
        return None
    try:
        return Decimal(str(obj[key]))
    except Exception as exc:  # noqa: BLE001 - any unparsable number is a 2170-like fault
        raise E.QBOError(
            "2170",
            "Invalid Enumeration",
            f"Invalid number for {element or key}: {obj[key]!r}",
            element=element or key,
        ) from exc


# ---------------------------------------------------------------------------- entry points


def save(ctx: Ctx, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /{entity}: create without Id, full or sparse update with Id."""
    if not isinstance(body, dict):
        raise E.QBOError(
            "2010",
            "Request has invalid or unsupported property",
            "Request body must be a JSON object",
        )
    if body.get("Id") not in (None, ""):
        return update(ctx, entity, body)
    return create(ctx, entity, body)


def create(ctx: Ctx, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    if entity not in CREATABLE:
        raise E.unsupported(f"Operation Create is not supported for {entity}.")
    obj = {
        k: copy.deepcopy(v)
        for k, v in body.items()
        if k not in SYSTEM_FIELDS and k not in READ_ONLY[entity] and v != ""
    }  # empty strings count as absent
    _check_period(ctx, entity, obj.get("TxnDate") or fmt_date(ctx.now))
    obj = NORMALIZE[entity](ctx, obj, None)
    oid = ctx.realm.next_id(entity)
    meta = fmt_meta(ctx.now)
    final = {
        "Id": oid,
        "SyncToken": "0",
        "domain": "QBO",
        "sparse": False,
        **obj,
        "MetaData": {"CreateTime": meta, "LastUpdatedTime": meta},
    }
    _commit(ctx, entity, final, None)
    ctx.events.append((entity, oid, "Create"))
    return final


def update(ctx: Ctx, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    oid = canonical_id(ctx, entity, str(body.get("Id")))
    old = ctx.get(entity, oid)
    if old is None:
        raise _missing(ctx, entity, oid)
    _check_token(entity, old, body)
    _check_changeable(ctx, entity, old)
    if body.get("sparse") is True:
        obj = copy.deepcopy(old)
        for key, value in body.items():
            if key in SYSTEM_FIELDS or key in READ_ONLY[entity]:
                continue
            obj[key] = copy.deepcopy(value)
    else:
        obj = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k not in SYSTEM_FIELDS and k not in READ_ONLY[entity] and v != ""
        }
        for key in READ_ONLY[entity]:
            if key in old:
                obj[key] = copy.deepcopy(old[key])
    for key in SYSTEM_FIELDS:
        obj.pop(key, None)
    _check_period(ctx, entity, obj.get("TxnDate") or fmt_date(ctx.now))
    obj = NORMALIZE[entity](ctx, obj, old)
    final = {
        "Id": oid,
        "SyncToken": str(int(old["SyncToken"]) + 1),
        "domain": "QBO",
        "sparse": False,
        **obj,
        "MetaData": {
            "CreateTime": old["MetaData"]["CreateTime"],
            "LastUpdatedTime": fmt_meta(ctx.now),
        },
    }
    _commit(ctx, entity, final, old)
    ctx.events.append((entity, oid, "Update"))
    return final


def delete(ctx: Ctx, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """``?operation=delete``: transactions only; name lists are made inactive instead."""
    if entity not in TRANSACTIONS:
        raise E.unsupported(
            f"Operation Delete is not supported for {entity}; make it inactive instead "
            "(sparse update with Active=false)."
        )
    oid = str(body.get("Id"))
    old = ctx.get(entity, oid)
    if old is None:
        raise _missing(ctx, entity, oid)
    _check_token(entity, old, body)
    _check_changeable(ctx, entity, old)
    realm = ctx.realm
    if entity == "Invoice" and realm.applied.get(oid):
        raise E.business(
            "This transaction is linked to other transactions (payments); unlink them "
            "before deleting the invoice.",
            element="LinkedTxn",
        )
    if entity == "Payment":
        _apply_payment(ctx, oid, old, {})
    if entity == "Invoice":
        realm.docnumbers.pop(old.get("DocNumber", ""), None)
        realm.applied.pop(oid, None)
    realm.line_seq.pop((entity, oid), None)
    tomb = {
        "status": "Deleted",
        "domain": "QBO",
        "Id": oid,
        "MetaData": {"LastUpdatedTime": fmt_meta(ctx.now)},
    }
    realm.remove(entity, oid, ctx.now, tomb)
    cust = (old.get("CustomerRef") or {}).get("value")
    if cust:
        realm.by_customer.get(cust, set()).discard((entity, oid))
        _recompute_customer(ctx, cust)
    ctx.events.append((entity, oid, "Delete"))
    return {"status": "Deleted", "domain": "QBO", "Id": oid}


def void(ctx: Ctx, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    if entity not in TRANSACTIONS:
        raise E.unsupported(f"Operation Void is not supported for {entity}.")
    oid = str(body.get("Id"))
    old = ctx.get(entity, oid)
    if old is None:
        raise _missing(ctx, entity, oid)
    _check_token(entity, old, body)
    _check_changeable(ctx, entity, old)
    if entity == "Invoice":
        for pid in ctx.realm.applied.get(oid, {}):
            if pid in ctx.realm.deposited:  # voiding would change a deposited payment
                raise E.deposited("Payment", pid)
    obj = copy.deepcopy(old)
    note = obj.get("PrivateNote") or ""
    obj["PrivateNote"] = "Voided" + (" - " + note if note else "")
    for line in obj.get("Line", []):
        if "Amount" in line:
            line["Amount"] = 0
        for detail in ("SalesItemLineDetail",):
            if detail in line and "Qty" in line[detail]:
                line[detail]["Qty"] = 0
    obj["TotalAmt"] = 0
    if entity == "Invoice":
        obj["Balance"] = 0
        obj.setdefault("TxnTaxDetail", {})["TotalTax"] = 0
        obj["LinkedTxn"] = [lt for lt in obj.get("LinkedTxn", []) if lt.get("TxnType") != "Payment"]
        for pid in list(ctx.realm.applied.get(oid, {})):
            _unlink_payment_line(ctx, pid, oid)
        ctx.realm.applied.pop(oid, None)
    else:
        _apply_payment(ctx, oid, old, {})
        obj["UnappliedAmt"] = 0
    obj["SyncToken"] = str(int(old["SyncToken"]) + 1)
    obj["MetaData"]["LastUpdatedTime"] = fmt_meta(ctx.now)
    ctx.realm.put(entity, obj, ctx.now)
    cust = (obj.get("CustomerRef") or {}).get("value")
    if cust:
        _recompute_customer(ctx, cust)
    ctx.events.append((entity, oid, "Void"))
    return obj


def read(ctx: Ctx, entity: str, oid: str) -> dict[str, Any]:
    oid = canonical_id(ctx, entity, oid)
    obj = ctx.get(entity, oid)
    if obj is None:
        raise _missing(ctx, entity, oid)
    return obj


# ---------------------------------------------------------------------------- helpers


def canonical_id(ctx: Ctx, entity: str, oid: str) -> str:
    """The stored Id for oid: CompanyInfo is addressed by the realm id (Intuit's documented
    read, ``companyinfo/{realmId}``) while its object carries Id "1", as in Intuit's samples."""
    if entity == "CompanyInfo" and oid == ctx.realm.realm_id:
        return COMPANY_INFO_ID
    return oid


def _missing(ctx: Ctx, entity: str, oid: str) -> E.QBOError:
    if oid in ctx.realm.deleted[entity]:
        return E.deleted_txn(entity, oid)
    return E.not_found(entity, oid)


def _check_token(entity: str, old: dict[str, Any], body: dict[str, Any]) -> None:
    token = body.get("SyncToken")
    if token is None or token == "":
        raise E.required("SyncToken", f"Required parameter SyncToken is missing for {entity}")
    if str(token) != old["SyncToken"]:
        raise E.stale(entity)


def _check_period(ctx: Ctx, entity: str, txn_date: Any) -> None:
    """6210: a transaction dated on or before the realm's closing date cannot be written."""
    closing = ctx.realm.status.closing_date
    if entity not in TRANSACTIONS or not closing or not isinstance(txn_date, str):
        return
    if txn_date[:10] <= closing:
        raise E.period_closed(closing, txn_date[:10])


def _check_changeable(ctx: Ctx, entity: str, old: dict[str, Any]) -> None:
    """An existing transaction may change: not deposited (6540), not in a closed period (6210)."""
    if entity == "Payment" and old["Id"] in ctx.realm.deposited:
        raise E.deposited(entity, old["Id"])
    _check_period(ctx, entity, old.get("TxnDate"))


def deposit(ctx: Ctx, pid: str) -> dict[str, Any]:
    """A QBO user puts payment pid on a bank deposit: it links the deposit and is then frozen.

    The simulator keeps no Deposit entity; the deposit id comes from the transaction sequence.
    """
    old = ctx.get("Payment", pid)
    if old is None:
        raise _missing(ctx, "Payment", pid)
    if pid in ctx.realm.deposited:
        raise E.deposited("Payment", pid)
    deposit_id = ctx.realm.next_id("Payment")
    obj = copy.deepcopy(old)
    obj["LinkedTxn"] = [*obj.get("LinkedTxn", []), {"TxnId": deposit_id, "TxnType": "Deposit"}]
    obj["SyncToken"] = str(int(old["SyncToken"]) + 1)
    obj["MetaData"] = {**old["MetaData"], "LastUpdatedTime": fmt_meta(ctx.now)}
    ctx.realm.put("Payment", obj, ctx.now)
    ctx.realm.deposited[pid] = deposit_id
    ctx.events.append(("Payment", pid, "Update"))
    return obj


def _check_lengths(obj: dict[str, Any], fields: tuple[str, ...]) -> None:
    for key in fields:
        value = obj.get(key)
        if isinstance(value, str) and len(value) > LIMITS[key]:
            raise E.QBOError(
                "2050",
                "String length exceeds supported length",
                f"String length is either shorter or longer than supported by specification. "
                f"{key} max length: {LIMITS[key]}",
                element=key,
            )


def _ref(
    ctx: Ctx,
    obj: dict[str, Any],
    key: str,
    entity: str,
    *,
    required: bool = False,
    name_field: str | None = "Name",
) -> dict[str, Any] | None:
    """Check a ReferenceType field: the target must exist (2500) and be active (610)."""
    ref = obj.get(key)
    if ref is None:
        if required:
            raise E.required(key)
        return None
    if not isinstance(ref, dict) or ref.get("value") in (None, ""):
        raise E.invalid_ref(key, ref)
    target = ctx.get(entity, str(ref["value"]))
    if target is None:
        raise E.invalid_ref(key, ref.get("value"))
    if target.get("Active") is False:
        raise E.not_found(entity, target["Id"])
    ref["value"] = str(ref["value"])
    if name_field and target.get(name_field):
        ref["name"] = target[name_field]
    return target


def _claim_name(ctx: Ctx, group: str, name: str, oid: str | None) -> None:
    owner = ctx.realm.name_group(group).get(name_key(name))
    if owner is not None and owner != oid:
        raise E.duplicate_name()


def _commit(ctx: Ctx, entity: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Store obj and keep the indexes in step."""
    realm = ctx.realm
    oid = obj["Id"]
    group = "party" if entity in PARTIES else entity
    name_fieldname = "DisplayName" if entity in PARTIES else "Name"
    if entity in NAME_LISTS:
        names = realm.name_group(group)
        if old is not None and old.get(name_fieldname):
            names.pop(name_key(old[name_fieldname]), None)
        if obj.get(name_fieldname):
            names[name_key(obj[name_fieldname])] = oid
    if entity == "Invoice":
        if old is not None:
            realm.docnumbers.pop(old.get("DocNumber", ""), None)
        if obj.get("DocNumber"):
            realm.docnumbers[obj["DocNumber"]] = oid
    line_seq = obj.pop("_line_seq", None)
    if line_seq is not None:
        realm.line_seq[(entity, oid)] = line_seq
    realm.put(entity, obj, ctx.now)
    if entity in TRANSACTIONS:
        cust = obj["CustomerRef"]["value"]
        old_cust = (old or {}).get("CustomerRef", {}).get("value")
        if old_cust and old_cust != cust:
            realm.by_customer.get(old_cust, set()).discard((entity, oid))
            _recompute_customer(ctx, old_cust)
        realm.by_customer.setdefault(cust, set()).add((entity, oid))
        if entity == "Payment":
            _apply_payment(ctx, oid, old, obj.pop("_applications"))
        _recompute_customer(ctx, cust)


# ---------------------------------------------------------------------------- name lists


def _party(
    ctx: Ctx, entity: str, obj: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    display = obj.get("DisplayName")
    if old is not None and "DisplayName" in obj and not (display or "").strip():
        raise E.required("DisplayName", "DisplayName cannot be removed")
    if not (display or "").strip():
        parts = [obj.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
        parts = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
        if not parts:
            raise E.QBOError(
                "6080",
                "No Name Provided",
                "Please provide a name: DisplayName or one of Title, GivenName, "
                "MiddleName, FamilyName, Suffix.",
                element="DisplayName",
            )
        display = " ".join(parts)
    display = " ".join(display.split())
    obj["DisplayName"] = display
    _check_lengths(
        obj,
        ("DisplayName", "GivenName", "MiddleName", "FamilyName", "CompanyName", "Title", "Suffix"),
    )
    _claim_name(ctx, "party", display, old["Id"] if old else None)
    obj.setdefault("Active", True)
    obj.setdefault("PrintOnCheckName", obj.get("CompanyName") or display)
    for addr in ("BillAddr", "ShipAddr", "PrimaryAddr"):
        if isinstance(obj.get(addr), dict) and "Id" not in obj[addr]:
            ctx.realm.seq["addr"] += 1
            obj[addr]["Id"] = str(ctx.realm.seq["addr"])
    obj.setdefault("CurrencyRef", dict(USD))
    return obj


def _customer(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    obj = _party(ctx, "Customer", obj, old)
    _ref(ctx, obj, "SalesTermRef", "Term")
    _ref(ctx, obj, "PaymentMethodRef", "PaymentMethod")
    _ref(ctx, obj, "DefaultTaxCodeRef", "TaxCode")
    parent = None
    if obj.get("ParentRef"):
        parent = _ref(ctx, obj, "ParentRef", "Customer", name_field="DisplayName")
        if old is not None and parent["Id"] == old["Id"]:
            raise E.business("A customer cannot be its own parent.", element="ParentRef")
    # customers are taxable unless exempt (Intuit: false when TaxExemptionReasonId is set)
    obj.setdefault("Taxable", not obj.get("TaxExemptionReasonId"))
    obj.setdefault("Job", parent is not None)
    obj.setdefault("BillWithParent", False)
    obj.setdefault("PreferredDeliveryMethod", "Print")
    if obj["PreferredDeliveryMethod"] not in ("Print", "Email", "None"):
        raise E.QBOError(
            "2170",
            "Invalid Enumeration",
            f"Invalid PreferredDeliveryMethod: {obj['PreferredDeliveryMethod']}",
            element="PreferredDeliveryMethod",
        )
    obj["FullyQualifiedName"] = (
        f"{parent['FullyQualifiedName']}:{obj['DisplayName']}" if parent else obj["DisplayName"]
    )
    obj["Level"] = parent.get("Level", 0) + 1 if parent else 0
    balance = old.get("Balance", 0) if old else 0
    obj["Balance"] = balance
    obj["BalanceWithJobs"] = old.get("BalanceWithJobs", 0) if old else 0
    if old is not None and old.get("Active", True) and obj["Active"] is False and balance:
        raise E.business(
            "You can't make this customer inactive because it has an open "
            "balance (Delete List Has Balance Error).",
            element="Active",
        )
    return obj


def _vendor(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    obj = _party(ctx, "Vendor", obj, old)
    obj["Balance"] = old.get("Balance", 0) if old else 0
    return obj


def _employee(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    return _party(ctx, "Employee", obj, old)


def _named(
    ctx: Ctx, entity: str, obj: dict[str, Any], old: dict[str, Any] | None, max_len: int = 100
) -> str:
    name = obj.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise E.required("Name")
    name = " ".join(name.split())
    if len(name) > max_len:
        raise E.QBOError(
            "2050",
            "String length exceeds supported length",
            f"Name max length: {max_len}",
            element="Name",
        )
    _claim_name(ctx, entity, name, old["Id"] if old else None)
    obj["Name"] = name
    obj.setdefault("Active", True)
    return name


def _item(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    _named(ctx, "Item", obj, old)
    _check_lengths(obj, ("Description", "Sku"))
    obj.setdefault("Type", old.get("Type", "NonInventory") if old else "NonInventory")
    if obj["Type"] not in ITEM_TYPES:
        raise E.QBOError(
            "2170", "Invalid Enumeration", f"Invalid Item Type: {obj['Type']}", element="Type"
        )
    if old is not None and old.get("Type") == "Inventory" and obj["Type"] != "Inventory":
        raise E.business("You can't change the type of an inventory item.", element="Type")
    if obj["Type"] in ("Service", "Inventory", "NonInventory"):
        _ref(ctx, obj, "IncomeAccountRef", "Account", required=True)
    else:
        _ref(ctx, obj, "IncomeAccountRef", "Account")
    if obj["Type"] == "Inventory":
        _ref(ctx, obj, "ExpenseAccountRef", "Account", required=True)
        _ref(ctx, obj, "AssetAccountRef", "Account", required=True)
        for key in ("QtyOnHand", "InvStartDate"):
            if obj.get(key) is None:
                raise E.required(key)
        obj["TrackQtyOnHand"] = True
    else:
        _ref(ctx, obj, "ExpenseAccountRef", "Account")
        _ref(ctx, obj, "AssetAccountRef", "Account")
        obj.setdefault("TrackQtyOnHand", False)
    _ref(ctx, obj, "SalesTaxCodeRef", "TaxCode")
    _ref(ctx, obj, "PurchaseTaxCodeRef", "TaxCode")
    _ref(ctx, obj, "PrefVendorRef", "Vendor", name_field="DisplayName")
    parent = _ref(ctx, obj, "ParentRef", "Item") if obj.get("ParentRef") else None
    obj["SubItem"] = parent is not None
    obj["FullyQualifiedName"] = (
        f"{parent['FullyQualifiedName']}:{obj['Name']}" if parent else obj["Name"]
    )
    obj["Level"] = parent.get("Level", 0) + 1 if parent else 0
    obj.setdefault("Taxable", False)
    obj.setdefault("UnitPrice", 0)
    obj.setdefault("PurchaseCost", 0)
    _number(obj, "UnitPrice")
    return obj


def _account(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    _named(ctx, "Account", obj, old)
    if not obj.get("AccountType"):
        raise E.required("AccountType")
    if obj["AccountType"] not in ACCOUNT_TYPES:
        raise E.QBOError(
            "2170",
            "Invalid Enumeration",
            f"Invalid AccountType: {obj['AccountType']}",
            element="AccountType",
        )
    obj["Classification"] = CLASSIFICATION[obj["AccountType"]]
    obj["FullyQualifiedName"] = obj["Name"]
    obj.setdefault("SubAccount", False)
    obj["CurrentBalance"] = old.get("CurrentBalance", 0) if old else 0
    obj["CurrentBalanceWithSubAccounts"] = obj["CurrentBalance"]
    obj.setdefault("CurrencyRef", dict(USD))
    return obj


def _term(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    _named(ctx, "Term", obj, old, max_len=31)
    obj.setdefault("Type", "STANDARD")
    obj.setdefault("DueDays", 0)
    return obj


def _payment_method(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    _named(ctx, "PaymentMethod", obj, old, max_len=31)
    obj.setdefault("Type", "NON_CREDIT_CARD")
    if obj["Type"] not in ("CREDIT_CARD", "NON_CREDIT_CARD"):
        raise E.QBOError(
            "2170", "Invalid Enumeration", f"Invalid Type: {obj['Type']}", element="Type"
        )
    return obj


def _taxcode(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    raise E.unsupported("Operation Update is not supported for TaxCode.")


def _company_info(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    if not obj.get("CompanyName"):
        raise E.required("CompanyName")
    ctx.realm.company_name = obj["CompanyName"]
    return obj


# ---------------------------------------------------------------------------- transactions


def _invoice(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    realm = ctx.realm
    customer = _ref(ctx, obj, "CustomerRef", "Customer", required=True, name_field="DisplayName")
    lines_in = obj.get("Line")
    if not isinstance(lines_in, list) or not any(
        isinstance(li, dict) and li.get("DetailType") != "SubTotalLineDetail" for li in lines_in
    ):
        raise E.required("Line", "Required parameter Line is missing in the request")
    _check_lengths(obj, ("DocNumber", "PrivateNote"))
    term = _ref(ctx, obj, "SalesTermRef", "Term")
    if term is None and old is None and customer.get("SalesTermRef"):
        term = ctx.get("Term", customer["SalesTermRef"]["value"])
        if term is not None:
            obj["SalesTermRef"] = {"value": term["Id"], "name": term["Name"]}
    obj.setdefault("TxnDate", fmt_date(ctx.now))
    if not obj.get("DueDate"):
        obj["DueDate"] = add_days(obj["TxnDate"], int(term.get("DueDays", 0)) if term else 0)
    if not obj.get("DocNumber"):
        if old is not None and old.get("DocNumber"):
            obj["DocNumber"] = old["DocNumber"]
        else:
            while str(realm.next_docnumber) in realm.docnumbers:
                realm.next_docnumber += 1
            obj["DocNumber"] = str(realm.next_docnumber)
            realm.next_docnumber += 1
    elif ctx.cfg.enforce_unique_docnumber:
        owner = realm.docnumbers.get(obj["DocNumber"])
        if owner is not None and (old is None or owner != old["Id"]):
            raise E.QBOError(
                "6140",
                "Duplicate Document Number Error",
                "Duplicate Document Number Error : You must specify a different "
                f"number. This number has already been used. DocNumber={obj['DocNumber']}",
                element="DocNumber",
            )

    subtotal = Decimal("0")
    taxable = Decimal("0")
    discount = Decimal("0")
    lines: list[dict[str, Any]] = []
    for raw in lines_in:
        if not isinstance(raw, dict):
            raise E.required("Line")
        dtype = raw.get("DetailType")
        if dtype == "SubTotalLineDetail":
            continue  # the server writes its own subtotal line
        line = copy.deepcopy(raw)
        if dtype == "SalesItemLineDetail":
            detail = line.setdefault("SalesItemLineDetail", {})
            amount = _number(line, "Amount", "Line.Amount")
            if amount is None:
                raise E.required("Amount", "Required parameter Line.Amount is missing")
            qty = _number(detail, "Qty", "Qty")
            price = _number(detail, "UnitPrice", "UnitPrice")
            if qty is not None and price is not None and money(qty * price) != money(amount):
                raise E.QBOError(
                    "6070",
                    "Amount calculation incorrect",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                    element="Line.Amount",
                )
            if qty is not None and price is None and qty != 0:
                detail["UnitPrice"] = float(money(amount / qty))
            if detail.get("ItemRef") is not None:
                _ref(ctx, detail, "ItemRef", "Item")
            tax = detail.get("TaxCodeRef")
            if tax is not None:
                if not isinstance(tax, dict) or tax.get("value") not in ("TAX", "NON"):
                    raise E.QBOError(
                        "6100",
                        "Invalid Tax Code",
                        "Line TaxCodeRef must be TAX or NON for a US company",
                        element="TaxCodeRef",
                    )
                if tax["value"] == "TAX":
                    taxable += money(amount)
            line["Amount"] = num(money(amount))
            subtotal += money(amount)
        elif dtype == "DiscountLineDetail":
            detail = line.setdefault("DiscountLineDetail", {})
            if detail.get("PercentBased"):
                pct = _number(detail, "DiscountPercent") or Decimal("0")
                line["_pct"] = pct
            else:
                amount = _number(line, "Amount", "Line.Amount") or Decimal("0")
                line["Amount"] = num(money(amount))
        elif dtype == "DescriptionOnly":
            line.setdefault("DescriptionLineDetail", {})
            line["Amount"] = 0
        else:
            raise E.QBOError(
                "2170",
                "Invalid Enumeration",
                f"Invalid DetailType: {dtype}",
                element="Line.DetailType",
            )
        lines.append(line)
    for line in lines:
        if line.get("DetailType") == "DiscountLineDetail":
            if "_pct" in line:
                line["Amount"] = num(money(subtotal * line.pop("_pct") / 100))
            discount += money(line["Amount"])
    lines = _number_lines(ctx, "Invoice", obj, lines, old)
    lines.append(
        {"Amount": num(subtotal), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
    )
    obj["Line"] = lines

    if "BillAddr" not in obj and customer.get("BillAddr"):
        obj["BillAddr"] = copy.deepcopy(customer["BillAddr"])
    if "ShipAddr" not in obj and customer.get("ShipAddr"):
        obj["ShipAddr"] = copy.deepcopy(customer["ShipAddr"])
    if ctx.realm.status.automated_sales_tax:
        total_tax = _automated_sales_tax(obj, customer, taxable)
    else:
        total_tax = _manual_sales_tax(ctx, obj, taxable)
    total = money(subtotal - discount + total_tax)
    if total < 0:
        raise E.business("Transaction total cannot be negative.", element="Line")
    applied = (
        sum((money(a) for a in realm.applied.get(old["Id"], {}).values()), Decimal("0"))
        if old
        else Decimal("0")
    )
    if total < applied:
        raise E.business(
            "The invoice total would be less than the payments applied to it.", element="Line"
        )
    obj["TotalAmt"] = num(total)
    obj["Balance"] = num(total - applied)
    obj["HomeBalance"] = obj["Balance"]
    obj.setdefault("Deposit", 0)
    obj.setdefault("ApplyTaxAfterDiscount", False)
    obj.setdefault("EmailStatus", "NotSet")
    obj.setdefault("PrintStatus", "NotSet")
    if obj["EmailStatus"] == "NeedToSend" and not (obj.get("BillEmail") or {}).get("Address"):
        raise E.business(
            "You need to supply an email address (BillEmail) to send this invoice.",
            element="BillEmail",
        )
    obj.setdefault("CurrencyRef", dict(USD))
    # Payment links are read-only here: keep the server's, drop any sent by the client.
    links = [lt for lt in obj.get("LinkedTxn") or [] if lt.get("TxnType") != "Payment"]
    if old is not None:
        links += [{"TxnId": pid, "TxnType": "Payment"} for pid in realm.applied.get(old["Id"], {})]
    obj["LinkedTxn"] = links
    return obj


def _manual_sales_tax(ctx: Ctx, obj: dict[str, Any], taxable: Decimal) -> Decimal:
    """Without AST: the client's TxnTaxDetail.TotalTax, else sales_tax_percent of TAX lines."""
    tax_detail = obj.get("TxnTaxDetail") or {}
    if tax_detail.get("TotalTax") is not None:
        total_tax = money(tax_detail["TotalTax"])
    else:
        total_tax = money(taxable * Decimal(str(ctx.cfg.sales_tax_percent)) / 100)
    tax_detail["TotalTax"] = num(total_tax)
    obj["TxnTaxDetail"] = tax_detail
    return total_tax


def _automated_sales_tax(
    obj: dict[str, Any], customer: dict[str, Any], taxable: Decimal
) -> Decimal:
    """With AST the server computes the tax (qbo-api.md §3.4): the rate of the ship-to (else
    bill-to) state on the TAX lines, nothing for a customer with Taxable false. A client's
    TotalTax counts only as an override, sent together with TxnTaxDetail.TxnTaxCodeRef."""
    sent = obj.get("TxnTaxDetail") or {}
    code_ref = sent.get("TxnTaxCodeRef") if isinstance(sent, dict) else None
    if code_ref is not None and sent.get("TotalTax") is not None:
        if not isinstance(code_ref, dict) or code_ref.get("value") in (None, ""):
            raise E.invalid_ref("TxnTaxDetail.TxnTaxCodeRef", code_ref)
        total_tax = money(_number(sent, "TotalTax", "TxnTaxDetail.TotalTax") or 0)
        if total_tax < 0:
            raise E.business("TotalTax cannot be negative.", element="TxnTaxDetail.TotalTax")
        obj["TxnTaxDetail"] = {
            "TxnTaxCodeRef": {**code_ref, "value": str(code_ref["value"])},
            "TotalTax": num(total_tax),
        }
        return total_tax
    state = salestax.tax_state(obj)
    rate = salestax.state_rate(state) if customer.get("Taxable", True) else Decimal("0")
    total_tax = money(taxable * rate / 100)
    detail: dict[str, Any] = {"TotalTax": num(total_tax)}
    if rate:
        detail["TaxLine"] = [
            {
                "Amount": num(total_tax),
                "DetailType": "TaxLineDetail",
                "TaxLineDetail": {
                    "PercentBased": True,
                    "TaxPercent": float(rate),
                    "NetAmountTaxable": num(taxable),
                },
            }
        ]
    obj["TxnTaxDetail"] = detail
    return total_tax


def _number_lines(
    ctx: Ctx,
    entity: str,
    obj: dict[str, Any],
    lines: list[dict[str, Any]],
    old: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Give lines stable Ids and positional LineNums (qbo-api.md §2.5, "Line Id").

    A line sent with the Id of a line of the stored transaction updates that line and keeps its
    Id; any other line (no Id, an unknown Id, or an Id already claimed by an earlier line of the
    request) is new and gets the next Id of the transaction's high-water mark, so an Id is never
    given twice on one transaction. Stored lines not sent are gone. The mark travels in
    ``obj["_line_seq"]`` to ``_commit``.
    """
    existing: set[str] = set()
    seq = 0
    if old is not None:
        existing = {str(ln["Id"]) for ln in old.get("Line", []) if ln.get("Id")}
        seq = ctx.realm.line_seq.get((entity, old["Id"]), 0)
    numbered = []
    for position, line in enumerate(lines, start=1):
        sent = line.pop("Id", None)
        line.pop("LineNum", None)
        line_id = str(sent) if sent not in (None, "") else ""
        if line_id not in existing:
            seq += 1
            line_id = str(seq)
        existing.discard(line_id)  # a second line with the same Id is a new line
        numbered.append({"Id": line_id, "LineNum": position, **line})
    obj["_line_seq"] = seq
    return numbered


def _payment(ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    realm = ctx.realm
    _ref(ctx, obj, "CustomerRef", "Customer", required=True, name_field="DisplayName")
    total = _number(obj, "TotalAmt")
    if total is None:
        raise E.required("TotalAmt")
    total = money(total)
    if total < 0:
        raise E.business("Payment amount cannot be negative.", element="TotalAmt")
    _ref(ctx, obj, "PaymentMethodRef", "PaymentMethod")
    if obj.get("DepositToAccountRef") is None:
        undeposited = _undeposited_funds(realm)
        if undeposited:
            obj["DepositToAccountRef"] = {"value": undeposited, "name": "Undeposited Funds"}
    else:
        _ref(ctx, obj, "DepositToAccountRef", "Account")
    _check_lengths(obj, ("PrivateNote",))
    obj.setdefault("TxnDate", fmt_date(ctx.now))
    previous = {}
    if old is not None:
        for iid, pays in realm.applied.items():
            if old["Id"] in pays:
                previous[iid] = money(pays[old["Id"]])
    applications: dict[str, Decimal] = {}
    lines = []
    for raw in obj.get("Line") or []:
        line = copy.deepcopy(raw)
        amount = _number(line, "Amount", "Line.Amount")
        if amount is None:
            raise E.required("Amount", "Required parameter Line.Amount is missing")
        amount = money(amount)
        linked = line.get("LinkedTxn") or []
        if not linked:
            raise E.required("LinkedTxn", "Each payment line must link a transaction")
        for lt in linked:
            if lt.get("TxnType") != "Invoice":
                raise E.QBOError(
                    "620",
                    "Txn ID cannot be linked",
                    f"Transaction type {lt.get('TxnType')} cannot be linked to a payment here",
                    element="LinkedTxn",
                )
            inv = ctx.get("Invoice", str(lt.get("TxnId")))
            if inv is None:
                raise E.invalid_ref("LinkedTxn.TxnId", lt.get("TxnId"))
            if inv["CustomerRef"]["value"] != obj["CustomerRef"]["value"]:
                raise E.business(
                    "The invoice belongs to a different customer than the payment.",
                    element="LinkedTxn",
                )
            iid = inv["Id"]
            lt["TxnId"] = iid
            open_balance = (
                money(inv["Balance"])
                + previous.get(iid, Decimal("0"))
                - applications.get(iid, Decimal("0"))
            )
            if amount > open_balance:
                raise E.business(
                    f"The payment amount {amount} exceeds the open balance {open_balance} of "
                    f"invoice {iid}.",
                    element="Line.Amount",
                )
            applications[iid] = applications.get(iid, Decimal("0")) + amount
        line["Amount"] = num(amount)
        lines.append(line)
    applied_total = sum(applications.values(), Decimal("0"))
    if applied_total > total:
        raise E.business(
            "The amount applied to transactions exceeds the payment total.", element="Line"
        )
    obj["Line"] = lines
    obj["TotalAmt"] = num(total)
    obj["UnappliedAmt"] = num(total - applied_total)
    obj.setdefault("ProcessPayment", False)
    obj.setdefault("CurrencyRef", dict(USD))
    obj["_applications"] = {k: num(v) for k, v in applications.items()}
    return obj


def _undeposited_funds(realm: Realm) -> str | None:
    return realm.name_group("Account").get(name_key("Undeposited Funds"))


def _apply_payment(
    ctx: Ctx, pid: str, old: dict[str, Any] | None, applications: dict[str, float]
) -> None:
    """Replace payment pid's applications and refresh every invoice whose share changed."""
    realm = ctx.realm
    touched: set[str] = set(applications)
    for iid, pays in realm.applied.items():
        if pid in pays:
            touched.add(iid)
    for iid in touched:
        pays = realm.applied.setdefault(iid, {})
        before = pays.get(pid)
        if applications.get(iid):
            pays[pid] = applications[iid]
        else:
            pays.pop(pid, None)
        if before != pays.get(pid):
            _refresh_invoice(ctx, iid)


def _refresh_invoice(ctx: Ctx, iid: str) -> None:
    realm = ctx.realm
    inv = realm.get("Invoice", iid)
    if inv is None:
        return
    inv = copy.deepcopy(inv)
    pays = realm.applied.get(iid, {})
    applied = sum((money(a) for a in pays.values()), Decimal("0"))
    inv["Balance"] = num(money(inv["TotalAmt"]) - applied)
    inv["HomeBalance"] = inv["Balance"]
    inv["LinkedTxn"] = [lt for lt in inv.get("LinkedTxn", []) if lt.get("TxnType") != "Payment"]
    inv["LinkedTxn"] += [{"TxnId": pid, "TxnType": "Payment"} for pid in pays]
    if ctx.cfg.payment_bumps_invoice:
        inv["SyncToken"] = str(int(inv["SyncToken"]) + 1)
    inv["MetaData"] = {**inv["MetaData"], "LastUpdatedTime": fmt_meta(ctx.now)}
    realm.put("Invoice", inv, ctx.now)
    ctx.events.append(("Invoice", iid, "Update"))
    _recompute_customer(ctx, inv["CustomerRef"]["value"])


def _unlink_payment_line(ctx: Ctx, pid: str, iid: str) -> None:
    """An invoice was voided: payment pid no longer applies to it (amount becomes unapplied)."""
    realm = ctx.realm
    pay = realm.get("Payment", pid)
    if pay is None:
        return
    pay = copy.deepcopy(pay)
    kept = []
    for line in pay.get("Line", []):
        links = [lt for lt in line.get("LinkedTxn", []) if lt.get("TxnId") != iid]
        if links:
            line["LinkedTxn"] = links
            kept.append(line)
    pay["Line"] = kept
    applied = Decimal("0")
    for other, pays in realm.applied.items():
        if other != iid and pid in pays:
            applied += money(pays[pid])
    pay["UnappliedAmt"] = num(money(pay["TotalAmt"]) - applied)
    pay["SyncToken"] = str(int(pay["SyncToken"]) + 1)
    pay["MetaData"] = {**pay["MetaData"], "LastUpdatedTime": fmt_meta(ctx.now)}
    realm.put("Payment", pay, ctx.now)
    ctx.events.append(("Payment", pid, "Update"))


def _recompute_customer(ctx: Ctx, cid: str) -> None:
    """Customer Balance = open invoice balances - unapplied payment amounts.

    Balance is a read-only derived field; changing it does not bump the customer's SyncToken.
    """
    realm = ctx.realm
    cust = realm.get("Customer", cid)
    if cust is None:
        return
    balance = Decimal("0")
    for entity, oid in realm.by_customer.get(cid, ()):
        obj = realm.get(entity, oid)
        if obj is None:
            continue
        if entity == "Invoice":
            balance += money(obj.get("Balance", 0))
        else:
            balance -= money(obj.get("UnappliedAmt", 0))
    cust["Balance"] = num(balance)
    cust["BalanceWithJobs"] = cust["Balance"]


NORMALIZE = {
    "Customer": _customer,
    "Vendor": _vendor,
    "Employee": _employee,
    "Item": _item,
    "Account": _account,
    "Term": _term,
    "PaymentMethod": _payment_method,
    "TaxCode": _taxcode,
    "CompanyInfo": _company_info,
    "Invoice": _invoice,
    "Payment": _payment,
}

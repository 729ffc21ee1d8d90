"""In-memory state: realms (companies) with their objects, indexes and per-realm bookkeeping.

Objects are stored as the JSON dicts the API returns, indexed by entity name and Id, so a read by
Id is a dict lookup. Business rules live in ``entities.py``; this module only stores.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simulator.config import ENVIRONMENTS, REQUESTID_MODES
from simulator.schema import Bool, Day, Str, check, schema_of, setting

# Canonical entity names by lowercase URL segment.
ENTITIES: dict[str, str] = {
    name.lower(): name
    for name in (
        "Customer",
        "Vendor",
        "Employee",
        "Item",
        "Account",
        "Term",
        "PaymentMethod",
        "TaxCode",
        "CompanyInfo",
        "Invoice",
        "Payment",
    )
}
NAME_LISTS = {
    "Customer",
    "Vendor",
    "Employee",
    "Item",
    "Account",
    "Term",
    "PaymentMethod",
    "TaxCode",
}
TRANSACTIONS = {"Invoice", "Payment"}
PARTIES = {"Customer", "Vendor", "Employee"}  # share one DisplayName namespace


def name_key(name: str) -> str:
    """Names compare trimmed, with inner whitespace collapsed, case-insensitively."""
    return " ".join(name.split()).casefold()


@dataclass
class Tombstone:
    ts: float
    body: dict[str, Any]


EDITIONS = ("SimpleStart", "Essentials", "Plus", "Advanced")
# Features an edition is not entitled to (fault 5020). A simulator decision: the reference names
# the code and its cause ("edition not entitled") but not which edition lacks which API feature.
EDITION_DENIED: dict[str, frozenset[str]] = {
    "SimpleStart": frozenset({"cdc", "batch"}),
    "Essentials": frozenset(),
    "Plus": frozenset(),
    "Advanced": frozenset(),
}


@dataclass
class RealmStatus:
    """Company-level conditions that make QBO refuse calls, and per-company behaviour (changed
    through ``/_sim``), each with its spec for the control surface."""

    # which cluster the company lives on (130 / 3100)
    environment: str = setting(Str(choices=ENVIRONMENTS), "sandbox")
    admin_access: bool = setting(Bool(), True)  # False: the connecting user lost admin rights (120)
    # False: the app's authorization was withdrawn (3201)
    app_authorized: bool = setting(Bool(), True)
    # "ended": trial/subscription over, writes refused (6190)
    subscription: str = setting(Str(choices=("active", "ended")), "active")
    edition: str = setting(Str(choices=EDITIONS), "Plus")  # see EDITION_DENIED (5020)
    # books closed through this date, YYYY-MM-DD (6210)
    closing_date: str | None = setting(Day(nullable=True), None)
    # Automated Sales Tax: the server computes invoice tax (new realms: the config's default)
    automated_sales_tax: bool = setting(Bool(), True)
    # how this company treats a reused requestid; None: the global setting
    requestid_mode: str | None = setting(Str(choices=REQUESTID_MODES, nullable=True), None)

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply(self, data: dict[str, Any]) -> None:
        """Change some keys; all are checked first (SchemaError), so a bad one changes nothing."""
        for key, value in check(STATUS_SCHEMA, data).items():
            setattr(self, key, value)


STATUS_SCHEMA = schema_of(RealmStatus)


@dataclass
class Realm:
    realm_id: str
    company_name: str
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES.values()}
    )
    # entity -> id -> last-updated epoch (float precision, for CDC ordering)
    updated: dict[str, dict[str, float]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES.values()}
    )
    deleted: dict[str, dict[str, Tombstone]] = field(
        default_factory=lambda: {name: {} for name in ENTITIES.values()}
    )
    seq: Counter = field(default_factory=Counter)
    # unique-name indexes: group ("party", "Item", "Account", ...) -> key -> Id
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    # invoice id -> {payment id: applied amount}
    applied: dict[str, dict[str, float]] = field(default_factory=dict)
    # customer id -> set of (entity, id) of its invoices and payments
    by_customer: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    docnumbers: dict[str, str] = field(default_factory=dict)  # DocNumber -> invoice id
    # (entity, transaction id) -> highest line Id ever given on it (line Ids are never reused)
    line_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    next_docnumber: int = 1001
    # requestid -> (expires epoch, status, body bytes, content type)
    requestids: dict[str, tuple[float, int, bytes, str]] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    status: RealmStatus = field(default_factory=RealmStatus)
    deposited: dict[str, str] = field(default_factory=dict)  # payment id -> deposit id

    def next_id(self, entity: str) -> str:
        group = "txn" if entity in TRANSACTIONS else entity
        self.seq[group] += 1
        return str(self.seq[group])

    def get(self, entity: str, oid: str) -> dict[str, Any] | None:
        return self.objects[entity].get(oid)

    def put(self, entity: str, obj: dict[str, Any], ts: float) -> None:
        self.objects[entity][obj["Id"]] = obj
        self.updated[entity][obj["Id"]] = ts

    def remove(self, entity: str, oid: str, ts: float, body: dict[str, Any]) -> None:
        self.objects[entity].pop(oid, None)
        self.updated[entity].pop(oid, None)
        self.deleted[entity][oid] = Tombstone(ts, body)

    def name_group(self, group: str) -> dict[str, str]:
        return self.names.setdefault(group, {})

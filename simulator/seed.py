"""Deterministic company data: the reference lists every realm starts with, and a realistic
company of N customers, items, invoices (with lines) and payments generated from a seed number.

Seeding goes through the same business rules as the API (``entities.create``), so seeded data
obeys every invariant (balances, links, unique names), but it emits no webhooks.
"""

from __future__ import annotations

import random
from typing import Any

from simulator import entities
from simulator.clock import add_days, fmt_date
from simulator.entities import Ctx

ACCOUNTS = [
    ("Sales of Product Income", "Income"),
    ("Services", "Income"),
    ("Cost of Goods Sold", "Cost of Goods Sold"),
    ("Inventory Asset", "Other Current Asset"),
    ("Undeposited Funds", "Other Current Asset"),
    ("Checking", "Bank"),
    ("Accounts Receivable (A/R)", "Accounts Receivable"),
    ("Discounts given", "Income"),
]
TERMS = [("Due on receipt", 0), ("Net 15", 15), ("Net 30", 30), ("Net 60", 60)]
PAYMENT_METHODS = [
    ("Cash", "NON_CREDIT_CARD"),
    ("Check", "NON_CREDIT_CARD"),
    ("Visa", "CREDIT_CARD"),
    ("MasterCard", "CREDIT_CARD"),
]

FIRST = [
    "Amy",
    "Bill",
    "Carla",
    "Dylan",
    "Emma",
    "Frank",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kate",
    "Luis",
    "Mona",
    "Nils",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
LAST = [
    "Anders",
    "Baker",
    "Cruz",
    "Dunn",
    "Evans",
    "Fisher",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Keller",
    "Lopez",
    "Meyer",
    "Novak",
    "Olsen",
    "Patel",
    "Quist",
    "Reyes",
    "Smith",
    "Tran",
]
BUSINESS = [
    "Bird Sanctuary",
    "Groceries",
    "Diner",
    "Landscaping",
    "Bakery",
    "Pool Supply",
    "Hardware",
    "Florist",
    "Auto Repair",
    "Dental",
    "Books",
    "Cycles",
    "Kitchen",
    "Farm",
]
CITIES = [
    ("Bayshore", "CA", "94326"),
    ("Palo Alto", "CA", "94303"),
    ("Sunnyvale", "CA", "94086"),
    ("Middlefield", "CA", "94482"),
    ("Tucson", "AZ", "85719"),
    ("Denver", "CO", "80202"),
]
STREETS = ["Main St.", "Oak Ave.", "Finch St.", "Pine Rd.", "Market St.", "Elm Blvd."]
PRODUCTS = [
    "Design",
    "Installation",
    "Maintenance",
    "Consulting",
    "Gardening",
    "Pest Control",
    "Rock Fountain",
    "Sprinkler Heads",
    "Pump",
    "Soil",
    "Trimming",
    "Lighting",
    "Concrete",
    "Hours",
    "Rocks",
    "Fertilizer",
]


def seed_reference(ctx: Ctx) -> None:
    """The lists a fresh QBO company has: accounts, tax codes, terms, payment methods..."""
    realm = ctx.realm
    for name, atype in ACCOUNTS:
        entities.create(ctx, "Account", {"Name": name, "AccountType": atype})
    for code, name, taxable in (("TAX", "TAX", True), ("NON", "NON", False)):
        meta = entities.fmt_meta(ctx.now)
        realm.put(
            "TaxCode",
            {
                "Id": code,
                "SyncToken": "0",
                "domain": "QBO",
                "sparse": False,
                "Name": name,
                "Description": name,
                "Active": True,
                "Taxable": taxable,
                "TaxGroup": False,
                "MetaData": {"CreateTime": meta, "LastUpdatedTime": meta},
            },
            ctx.now,
        )
    for name, days in TERMS:
        entities.create(ctx, "Term", {"Name": name, "DueDays": days})
    for name, ptype in PAYMENT_METHODS:
        entities.create(ctx, "PaymentMethod", {"Name": name, "Type": ptype})
    entities.create(
        ctx, "Vendor", {"DisplayName": "Sim Supplies Inc", "CompanyName": "Sim Supplies Inc"}
    )
    entities.create(
        ctx, "Employee", {"DisplayName": "Emily Platt", "GivenName": "Emily", "FamilyName": "Platt"}
    )
    meta = entities.fmt_meta(ctx.now)
    realm.put(
        "CompanyInfo",
        {
            "Id": entities.COMPANY_INFO_ID,
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "CompanyName": realm.company_name,
            "LegalName": realm.company_name,
            "Country": "US",
            "SupportedLanguages": "en",
            "CompanyAddr": {
                "Id": "1",
                "Line1": "123 Sierra Way",
                "City": "San Pablo",
                "CountrySubDivisionCode": "CA",
                "PostalCode": "87999",
                "Country": "USA",
            },
            "Email": {"Address": "noreply@example.com"},
            "FiscalYearStartMonth": "January",
            "MetaData": {"CreateTime": meta, "LastUpdatedTime": meta},
        },
        ctx.now,
    )
    ctx.events.clear()


def seed_company(
    ctx: Ctx,
    seed: int,
    customers: int = 0,
    items: int = 0,
    invoices: int = 0,
    payments: int = 0,
    max_lines: int = 5,
) -> dict[str, int]:
    """Add a deterministic company's worth of objects; returns how many of each were made."""
    rng = random.Random(seed)
    realm = ctx.realm
    income = realm.name_group("Account").get("services") or "1"
    terms = [t for t in realm.objects["Term"]]
    methods = list(realm.objects["PaymentMethod"])
    cust_ids: list[str] = []
    made = {"customers": 0, "items": 0, "invoices": 0, "payments": 0}
    for n in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = f"{last} {rng.choice(BUSINESS)}"
        city, state, zip_code = rng.choice(CITIES)
        body: dict[str, Any] = {
            "DisplayName": f"{company} #{seed}-{n + 1}",
            "GivenName": first,
            "FamilyName": last,
            "CompanyName": company,
            "PrimaryEmailAddr": {"Address": f"{first.lower()}.{last.lower()}{n + 1}@example.com"},
            "PrimaryPhone": {
                "FreeFormNumber": f"(555) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
            },
            "BillAddr": {
                "Line1": f"{rng.randint(1, 9999)} {rng.choice(STREETS)}",
                "City": city,
                "CountrySubDivisionCode": state,
                "PostalCode": zip_code,
                "Country": "USA",
            },
        }
        if terms and rng.random() < 0.5:
            body["SalesTermRef"] = {"value": rng.choice(terms)}
        cust_ids.append(entities.create(ctx, "Customer", body)["Id"])
        made["customers"] += 1
    item_ids: list[tuple[str, float]] = []
    for n in range(items):
        price = round(rng.uniform(5, 500), 2)
        body = {
            "Name": f"{rng.choice(PRODUCTS)} {seed}-{n + 1}",
            "Type": "Service",
            "UnitPrice": price,
            "IncomeAccountRef": {"value": income},
            "Description": f"{rng.choice(PRODUCTS)} service",
            "Sku": f"SKU-{seed}-{n + 1}",
        }
        item_ids.append((entities.create(ctx, "Item", body)["Id"], price))
        made["items"] += 1
    inv_ids: list[str] = []
    today = fmt_date(ctx.now)
    if cust_ids and item_ids:
        for _ in range(invoices):
            lines = []
            for _ in range(rng.randint(1, max_lines)):
                iid, price = rng.choice(item_ids)
                qty = rng.randint(1, 10)
                lines.append(
                    {
                        "Amount": float(entities.money(qty * price)),
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {
                            "ItemRef": {"value": iid},
                            "Qty": qty,
                            "UnitPrice": price,
                            "TaxCodeRef": {"value": "NON"},
                        },
                    }
                )
            body = {
                "CustomerRef": {"value": rng.choice(cust_ids)},
                "Line": lines,
                "TxnDate": add_days(today, -rng.randint(0, 90)),
            }
            inv_ids.append(entities.create(ctx, "Invoice", body)["Id"])
            made["invoices"] += 1
    open_invoices = list(inv_ids)
    rng.shuffle(open_invoices)
    for _ in range(min(payments, len(open_invoices))):
        inv = realm.get("Invoice", open_invoices.pop())
        assert inv is not None
        full = rng.random() < 0.7
        amount = inv["Balance"] if full else float(entities.money(inv["Balance"] / 2))
        body = {
            "CustomerRef": {"value": inv["CustomerRef"]["value"]},
            "TotalAmt": amount,
            "TxnDate": inv["TxnDate"],
            "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}],
        }
        if methods:
            body["PaymentMethodRef"] = {"value": rng.choice(methods)}
        entities.create(ctx, "Payment", body)
        made["payments"] += 1
    ctx.events.clear()
    return made

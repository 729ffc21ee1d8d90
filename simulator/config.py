"""Settings of the simulator: one dataclass, loadable from JSON and patchable at run time.

Every number that the reference (qbo-api.md) gives for Intuit's service is a default here, and
every point where the sources conflict is a setting (see docs/simulator.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from simulator.schema import (
    RATE,
    REALM_ID_OR_NULL,
    SECONDS,
    TEN_YEARS_S,
    URL,
    Bool,
    Int,
    ListOf,
    Num,
    Obj,
    Str,
    check,
    schema_of,
    setting,
)

ENVIRONMENTS = ("sandbox", "production")
# replay: a reused requestid gets the stored answer; error600: fault 600; ignore: requestid is
# not honoured, so a retried write runs again (a retried create makes a duplicate)
REQUESTID_MODES = ("replay", "error600", "ignore")


@dataclass
class AppConfig:
    """An OAuth client registered with the simulator."""

    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)


APP_FIELDS = {
    "client_id": Str(),
    "client_secret": Str(),
    "redirect_uris": ListOf(URL, max_items=50),
}
APP = Obj(APP_FIELDS, required=frozenset({"client_id", "client_secret"}))
COUNT = Int(0, 100_000)  # objects to seed
SEED = Int(-(2**63), 2**63 - 1)
LIMIT = Int(0, 1_000_000)  # a throttling limit; 0 disables it


@dataclass
class SimulatorConfig:
    """Every setting with its default and its spec (type, range) for ``update``."""

    # Server
    host: str = setting(Str(max_len=253), "127.0.0.1")
    # only read at start-up, where server.main checks the range (1-65535) with a CLI message
    port: int = setting(Int(-(2**31), 2**31 - 1), 8765)
    # base URL written into the discovery document
    public_url: str | None = setting(Str(max_len=2000, nullable=True), None)
    latency_ms: float = setting(Num(0, 60_000), 0.0)  # added to every OAuth and API call
    # seed of the default realm's data and of the fault/webhook RNGs
    seed: int = setting(SEED, 1)

    # Default realm created at start-up (None: start empty)
    default_realm_id: str | None = setting(REALM_ID_OR_NULL, "9341453050298375")
    default_company_name: str = setting(Str(max_len=100), "Sandbox Company_US_1")
    seed_customers: int = setting(COUNT, 0)
    seed_items: int = setting(COUNT, 0)
    seed_invoices: int = setting(COUNT, 0)
    seed_payments: int = setting(COUNT, 0)
    # Automated Sales Tax of every new realm (the default realm included); a realm's own
    # status key overrides it. On, as for every US company QBO creates today.
    automated_sales_tax: bool = setting(Bool(), True)
    # Realm given to the next /connect/oauth2 consent: None = the default realm if any,
    # "new" = create a fresh realm each time, anything else = that realm (created if absent).
    authorize_realm: str | None = setting(
        Str(max_len=32, pattern=r"new|[0-9]+", hint='"new" or a realm id', nullable=True), None
    )

    # OAuth
    apps: list[AppConfig] = setting(
        ListOf(APP, min_items=1),
        factory=lambda: [
            AppConfig(
                "sim-client-id",
                "sim-client-secret",
                ["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
            )
        ],
    )
    allow_any_redirect_uri: bool = setting(Bool(), False)
    auth_code_ttl_s: int = setting(Int(1, 86400), 600)
    access_token_ttl_s: int = setting(Int(1, TEN_YEARS_S), 3600)
    # rolling validity, as Intuit's fixtures show
    refresh_token_ttl_s: int = setting(Int(1, TEN_YEARS_S), 8726400)
    refresh_token_hard_ttl_s: int = setting(Int(1, TEN_YEARS_S), 157680000)  # 5-year cap
    # a refresh later than this returns a new value
    refresh_rotate_after_s: int = setting(SECONDS, 86400)
    refresh_grace_s: int = setting(SECONDS, 0)  # how long a rotated-away refresh token works

    # API behaviour
    # The cluster the simulator's /v3 base URL stands for: "sandbox" (sandbox-quickbooks.api...)
    # or "production". A realm of the other environment is refused: 130 or 3100 (see api.py).
    api_environment: str = setting(Str(choices=ENVIRONMENTS), "sandbox")
    requestid_mode: str = setting(Str(choices=REQUESTID_MODES), "replay")
    requestid_ttl_s: int = setting(SECONDS, 86400)
    # applying a payment bumps the invoice SyncToken
    payment_bumps_invoice: bool = setting(Bool(), True)
    enforce_unique_docnumber: bool = setting(Bool(), False)  # 6140 on duplicate DocNumber
    # rate for TAX lines of realms without Automated Sales Tax, when TotalTax is not sent
    sales_tax_percent: float = setting(Num(0, 100), 0.0)
    batch_max_items: int = setting(Int(1, 1000), 30)
    cdc_max_days: int = setting(Int(1, 3650), 30)
    cdc_max_objects: int = setting(Int(1, 100_000), 1000)

    # Throttling per realm (batch: also per realm and app); 0 disables a limit
    limits_enabled: bool = setting(Bool(), True)
    per_minute: int = setting(LIMIT, 500)
    per_second: int = setting(LIMIT, 10)
    concurrent: int = setting(LIMIT, 10)
    batch_per_minute: int = setting(LIMIT, 120)  # batch calls per realm, all apps together
    batch_per_minute_app: int = setting(LIMIT, 40)  # batch calls per realm and app
    throttle_format: str = setting(Str(choices=("xml", "json")), "xml")

    # Fault injection (probabilities 0..1 per API call)
    rate_500: float = setting(RATE, 0.0)
    rate_503: float = setting(RATE, 0.0)
    rate_504: float = setting(RATE, 0.0)
    rate_timeout: float = setting(RATE, 0.0)
    timeout_s: float = setting(Num(0, 3600), 30.0)
    rate_drop_after_commit: float = setting(RATE, 0.0)  # writes only

    # Webhooks
    webhook_urls: list[str] = setting(ListOf(URL, max_items=20), factory=list)
    verifier_token: str = setting(Str(max_len=500), "sim-verifier-token")
    webhook_format: str = setting(Str(choices=("legacy", "cloudevents")), "legacy")
    cloudevents_content_type: str = setting(
        Str(choices=("application/json", "application/cloudevents+json")), "application/json"
    )
    # events are collected this long before one POST
    webhook_window_s: float = setting(Num(0, 3600), 1.0)
    webhook_max_events: int = setting(Int(1, 10_000), 100)
    webhook_timeout_s: float = setting(Num(0.01, 3600), 3.0)
    webhook_retry_s: list[float] = setting(
        ListOf(Num(0, 7 * 86400), max_items=50),
        factory=lambda: [10, 20, 30, 300, 1200, 7200, 14400, 21600],
    )
    webhook_duplicate_rate: float = setting(RATE, 0.0)
    webhook_reorder: bool = setting(Bool(), False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatorConfig:
        cfg = cls()
        cfg.update(data)
        return cfg

    @classmethod
    def from_file(cls, path: str) -> SimulatorConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def update(self, data: dict[str, Any]) -> None:
        """Apply a partial settings dict. Every key is checked against its spec first (a bad
        or unknown one raises SchemaError, a ValueError), so a refused update changes nothing."""
        data = {
            k: [dataclasses.asdict(a) if isinstance(a, AppConfig) else a for a in v]
            if k == "apps" and isinstance(v, list)
            else v
            for k, v in data.items()
        }
        for key, value in check(SETTINGS, data, noun="setting").items():
            if key == "apps":
                value = [AppConfig(**a) for a in value]
            setattr(self, key, value)

    def to_public_dict(self) -> dict[str, Any]:
        """Settings as JSON, with secrets masked."""
        data = dataclasses.asdict(self)
        data["verifier_token"] = "***"
        for app in data["apps"]:
            app["client_secret"] = "***"
        return data


SETTINGS = schema_of(SimulatorConfig)

"""Settings of the simulator: one dataclass, loadable from JSON and patchable at run time.

Every number that the reference (qbo-api.md) gives for Intuit's service is a default here, and
every point where the sources conflict is a setting (see docs/simulator.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AppConfig:
    """An OAuth client registered with the simulator."""

    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)


@dataclass
class SimulatorConfig:
    # Server
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str | None = None  # base URL written into the discovery document
    latency_ms: float = 0.0  # added to every OAuth and API call
    seed: int = 1  # seed of the default realm's data and of the fault/webhook RNGs

    # Default realm created at start-up (None: start empty)
    default_realm_id: str | None = "9341453050298375"
    default_company_name: str = "Sandbox Company_US_1"
    seed_customers: int = 0
    seed_items: int = 0
    seed_invoices: int = 0
    seed_payments: int = 0
    # Realm given to the next /connect/oauth2 consent: None = the default realm if any,
    # "new" = create a fresh realm each time, anything else = that realm (created if absent).
    authorize_realm: str | None = None

    # OAuth
    apps: list[AppConfig] = field(
        default_factory=lambda: [
            AppConfig(
                "sim-client-id",
                "sim-client-secret",
                ["http://127.0.0.1:8000/callback", "http://localhost:8000/callback"],
            )
        ]
    )
    allow_any_redirect_uri: bool = False
    auth_code_ttl_s: int = 600
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 8726400  # rolling validity, as Intuit's fixtures show
    refresh_token_hard_ttl_s: int = 157680000  # 5-year cap
    refresh_rotate_after_s: int = 86400  # a refresh later than this returns a new value
    refresh_grace_s: int = 0  # how long a rotated-away refresh token keeps working

    # API behaviour
    # The cluster the simulator's /v3 base URL stands for: "sandbox" (sandbox-quickbooks.api...)
    # or "production". A realm of the other environment is refused: 130 or 3100 (see api.py).
    api_environment: str = "sandbox"
    requestid_mode: str = "replay"  # "replay" or "error600"
    requestid_ttl_s: int = 86400
    payment_bumps_invoice: bool = True  # applying a payment bumps the invoice SyncToken
    enforce_unique_docnumber: bool = False  # 6140 on duplicate DocNumber
    sales_tax_percent: float = 0.0  # rate for TAX lines when TxnTaxDetail.TotalTax is absent
    batch_max_items: int = 30
    cdc_max_days: int = 30
    cdc_max_objects: int = 1000

    # Throttling per realm; 0 disables a limit
    limits_enabled: bool = True
    per_minute: int = 500
    per_second: int = 10
    concurrent: int = 10
    batch_per_minute: int = 120
    throttle_format: str = "xml"  # "xml" or "json"

    # Fault injection (probabilities 0..1 per API call)
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_504: float = 0.0
    rate_timeout: float = 0.0
    timeout_s: float = 30.0
    rate_drop_after_commit: float = 0.0  # writes only

    # Webhooks
    webhook_urls: list[str] = field(default_factory=list)
    verifier_token: str = "sim-verifier-token"
    webhook_format: str = "legacy"  # "legacy" or "cloudevents"
    cloudevents_content_type: str = "application/json"  # or "application/cloudevents+json"
    webhook_window_s: float = 1.0  # events are collected this long before one POST
    webhook_max_events: int = 100
    webhook_timeout_s: float = 3.0
    webhook_retry_s: list[float] = field(
        default_factory=lambda: [10, 20, 30, 300, 1200, 7200, 14400, 21600]
    )
    webhook_duplicate_rate: float = 0.0
    webhook_reorder: bool = False

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
        """Apply a partial settings dict; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        for key, value in data.items():
            if key not in names:
                raise ValueError(f"unknown setting: {key}")
            if key == "apps":
                value = [a if isinstance(a, AppConfig) else AppConfig(**a) for a in value]
            setattr(self, key, value)

    def to_public_dict(self) -> dict[str, Any]:
        """Settings as JSON, with secrets masked."""
        data = dataclasses.asdict(self)
        data["verifier_token"] = "***"
        for app in data["apps"]:
            app["client_secret"] = "***"
        return data

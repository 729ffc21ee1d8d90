"""The simulator's whole state in one object: settings, clock, realms, OAuth, webhooks, limits.

Handlers reach it through ``app[STATE]``. Realm creation and seeding live here because both the
control surface and the OAuth consent page create realms.
"""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web

from simulator import seed as seeding
from simulator.clock import Clock
from simulator.config import SimulatorConfig
from simulator.entities import Ctx
from simulator.limits import Limiter
from simulator.oauth import OAuthServer
from simulator.store import Realm
from simulator.webhooks import WebhookEmitter

STATE: web.AppKey[State] = web.AppKey("qbo_sim_state")


class State:
    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = cfg
        self.clock = Clock()
        self.realms: dict[str, Realm] = {}
        self.oauth = OAuthServer(self)
        self.limiter = Limiter(cfg, self.clock.monotonic)
        self.webhooks = WebhookEmitter(self)
        self.fault_rng = random.Random(cfg.seed)
        self.next_faults: list[dict[str, Any]] = []  # one-shot faults queued by tests
        self._realm_counter = 0
        self.global_counters: dict[str, int] = {}
        self.boot()

    def boot(self) -> None:
        """(Re)create the default realm from the settings."""
        if self.cfg.default_realm_id:
            realm = self.create_realm(self.cfg.default_realm_id, self.cfg.default_company_name)
            if any(
                (
                    self.cfg.seed_customers,
                    self.cfg.seed_items,
                    self.cfg.seed_invoices,
                    self.cfg.seed_payments,
                )
            ):
                self.seed(
                    realm,
                    self.cfg.seed,
                    self.cfg.seed_customers,
                    self.cfg.seed_items,
                    self.cfg.seed_invoices,
                    self.cfg.seed_payments,
                )

    def reset(self) -> None:
        self.realms.clear()
        self.oauth = OAuthServer(self)
        self.limiter = Limiter(self.cfg, self.clock.monotonic)
        self.webhooks.clear()
        self.fault_rng = random.Random(self.cfg.seed)
        self.next_faults.clear()
        self.clock.reset()
        self._realm_counter = 0
        self.boot()

    def ctx(self, realm: Realm) -> Ctx:
        return Ctx(realm, self.clock.now(), self.cfg)

    def create_realm(self, realm_id: str | None = None, company_name: str | None = None) -> Realm:
        if realm_id is None:
            while True:
                self._realm_counter += 1
                realm_id = str(9341453050300000 + self._realm_counter)
                if realm_id not in self.realms:
                    break
        if realm_id in self.realms:
            raise ValueError(f"realm {realm_id} exists")
        realm = Realm(realm_id, company_name or f"Sim Company {realm_id[-4:]}")
        realm.status.automated_sales_tax = self.cfg.automated_sales_tax
        self.realms[realm_id] = realm
        seeding.seed_reference(self.ctx(realm))
        return realm

    def seed(
        self,
        realm: Realm,
        seed: int,
        customers: int = 0,
        items: int = 0,
        invoices: int = 0,
        payments: int = 0,
        max_lines: int = 5,
    ) -> dict[str, int]:
        return seeding.seed_company(
            self.ctx(realm), seed, customers, items, invoices, payments, max_lines
        )

    def realm_for_consent(self, requested: str | None) -> Realm:
        choice = requested or self.cfg.authorize_realm
        if choice == "new":
            return self.create_realm()
        if choice:
            return self.realms.get(choice) or self.create_realm(choice)
        if self.cfg.default_realm_id and self.cfg.default_realm_id in self.realms:
            return self.realms[self.cfg.default_realm_id]
        return self.create_realm()

    def count(self, realm_id: str | None, endpoint: str) -> None:
        realm = self.realms.get(realm_id or "")
        if realm is not None:
            realm.counters[endpoint] += 1
        self.global_counters[endpoint] = self.global_counters.get(endpoint, 0) + 1

    def emit(self, realm: Realm, events: list[tuple[str, str, str]], when: float) -> None:
        if events:
            self.webhooks.add(realm.realm_id, events, when)

"""`qbo-sync demo` (and `make demo`): the whole story on this machine, against the QBO simulator.

It starts what is not running yet (the local database with qbo-sync installed, the simulator with
a seeded company that has Automated Sales Tax on, and the webhook listener), connects an
organization, pulls everything, shows the counts here next to QBO's, pushes local edits, shows a
change made in QBO arrive through a webhook, makes one conflicting edit on both sides and shows how
it was settled, prints the status, and leaves everything running. Running it again works: what
runs is reused, the organization is reconnected, the edits are new.

Every claim it prints is a value it read back (from the database, or from QBO's API); with
`--json FILE` it also writes them, so a test can check each one independently.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from qbo_sync import operations
from qbo_sync.install import install
from qbo_sync.pgserver import local_cluster, local_home

ORGANIZATION = "Demo Bakery"
REALM = "9341453050298375"
LISTENER_LOGIN = "qbo_sync_demo_listener"
SEED = {"customers": 40, "items": 8, "invoices": 60, "payments": 20}
QBO_NAMES = {"customers": "Customer", "items": "Item", "invoices": "Invoice", "payments": "Payment"}
TABLES = {
    "customers": "customer_profile",
    "items": "item_record",
    "invoices": "invoice_record",
    "payments": "invoice_payment",
}


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


@dataclass
class Demo:
    sim_port: int = 8765
    listener_port: int = 8080
    timeout: float = 300
    claims: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = local_home() / "demo"
        self.home.mkdir(parents=True, exist_ok=True)
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.listener_url = f"http://127.0.0.1:{self.listener_port}"
        self.http = requests.Session()

    # ---------------------------------------------------------------- output

    def step(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    # ---------------------------------------------------------------- pieces

    def database(self) -> str:
        self.step("The local database")
        cluster = local_cluster()
        cluster.start()
        install(cluster.dsn())
        self.secrets = read_secrets(cluster.secrets_file)
        self.dsn = cluster.dsn()
        self.say(f"PostgreSQL 15 with qbo-sync installed: {self.dsn}")
        return self.dsn

    def start(self, name: str, args: list[str], health: str, env: dict[str, str]) -> bool:
        """Start a piece in the background unless it already answers (it outlives the demo);
        whether it was started now."""
        if self.answers(health):
            self.say(f"{name}: already running")
            return False
        log = open(self.home / f"{name}.log", "a")  # noqa: SIM115 - the child keeps it
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        (self.home / f"{name}.pid").write_text(str(process.pid))
        deadline = time.monotonic() + 60
        while not self.answers(health):
            if process.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"{name} did not start: see {self.home / (name + '.log')}")
            time.sleep(0.2)
        self.say(f"{name}: started (pid {process.pid}, log {self.home / (name + '.log')})")
        return True

    def answers(self, url: str) -> bool:
        try:
            return self.http.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def simulator(self) -> None:
        self.step("The QBO simulator (a seeded company, Automated Sales Tax on)")
        # the verifier token goes in the environment: an argument would show in the process
        # list, and one that starts with "-" would be read as an option
        env = dict(
            os.environ, QBO_WEBHOOK_VERIFIER_TOKEN=self.secrets["QBO_WEBHOOK_VERIFIER_TOKEN"]
        )
        self.fresh_company = self.start(
            "simulator",
            [
                "-m",
                "simulator",
                "--port",
                str(self.sim_port),
                "--realm-id",
                REALM,
                "--customers",
                str(SEED["customers"]),
                "--items",
                str(SEED["items"]),
                "--invoices",
                str(SEED["invoices"]),
                "--payments",
                str(SEED["payments"]),
                "--webhook-url",
                f"{self.listener_url}/webhooks/qbo",
            ],
            f"{self.sim_url}/_sim/health",
            env,
        )
        self.sim("PATCH", f"realms/{REALM}/status", {"automated_sales_tax": True})
        self.sim("PATCH", "config", {"webhook_window_s": 0.3})
        self.say(f"company {REALM} at {self.sim_url}")

    def listener(self) -> None:
        self.step("The webhook listener (qbo-sync listen)")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (LISTENER_LOGIN,)
            ).fetchone():
                conn.execute(f"CREATE ROLE {LISTENER_LOGIN} LOGIN IN ROLE qbo_sync_listener")
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        info["user"] = LISTENER_LOGIN
        env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
        env.update(
            QBO_SYNC_LISTENER_DSN=psycopg.conninfo.make_conninfo(**info),
            QBO_WEBHOOK_VERIFIER_TOKEN=self.secrets["QBO_WEBHOOK_VERIFIER_TOKEN"],
        )
        self.start(
            "listener",
            ["-m", "listener", "--port", str(self.listener_port)],
            f"{self.listener_url}/healthz",
            env,
        )
        self.say(f"webhooks: {self.listener_url}/webhooks/qbo (as role {LISTENER_LOGIN})")

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, f"{self.sim_url}/_sim/{path}", json=body, timeout=30)
        if answer.status_code >= 300:
            raise DemoError(f"the simulator refused {method} {path}: {answer.text[:300]}")
        return answer.json()

    def qbo(self, query: str) -> list[dict[str, Any]]:
        """What QBO holds, read through its API as any client would (a token of our own)."""
        if not hasattr(self, "token"):
            self.token = self.sim(
                "POST", f"realms/{REALM}/tokens", {"client_id": self.secrets["QBO_CLIENT_ID"]}
            )["access_token"]
        # the demo's worker shares the realm's limits: a throttled read backs off and tries again
        for attempt in range(12):
            answer = self.http.get(
                f"{self.sim_url}/v3/company/{REALM}/query",
                params={"query": query, "minorversion": "75"},
                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                timeout=30,
            )
            if answer.status_code != 429:
                break
            time.sleep(min(0.5 * 2**attempt, 10))
        if answer.status_code >= 300:
            raise DemoError(f"QBO (the simulator) refused {query!r}: {answer.text[:300]}")
        response = answer.json()["QueryResponse"]
        return next((v for v in response.values() if isinstance(v, list)), [])

    # ---------------------------------------------------------------- the story

    def connect(self, conn: psycopg.Connection) -> uuid.UUID:
        self.step("Connect an organization (OAuth against the simulator)")
        if self.fresh_company:
            # a simulator started now holds a new company: the organization starts afresh too
            deleted = conn.execute("DELETE FROM organizations WHERE name = %s", (ORGANIZATION,))
            if deleted.rowcount:
                self.say(f"the simulator's company is new: {ORGANIZATION}'s old rows removed")
        org = operations.find_organization(conn, ORGANIZATION, create=True)
        redirect = f"{self.listener_url}/oauth/callback"
        operations.register_with_simulator(
            self.sim_url, self.secrets["QBO_CLIENT_ID"], self.secrets["QBO_CLIENT_SECRET"], redirect
        )
        done = operations.connect_simulator(conn, org, self.sim_url, redirect)
        self.say(f"{ORGANIZATION} ({org}) is connected to company {done.realm_id}")
        self.claims["organization_id"] = str(org)
        return org

    def run_jobs(
        self, conn: psycopg.Connection, org: uuid.UUID, direction: str, entities: list[str]
    ) -> None:
        """Queue and follow jobs with a worker of our own (pg_cron's starts each minute)."""
        from qbo_sync.cli import show_progress
        from qbo_sync.console import make_console

        jobs = operations.queue_sync(conn, org, entities, direction, "urgent")
        with worker(self.dsn, self.timeout):
            code = show_progress(make_console(), conn, jobs, self.timeout)
        if code != 0:
            raise DemoError(f"the {direction} did not complete: qbo-sync status says why")

    def pull(self, conn: psycopg.Connection, org: uuid.UUID) -> None:
        self.step("Pull every entity (all of it the first time; after that, what changed: CDC)")
        self.run_jobs(conn, org, "pull", list(TABLES))
        counts = self.sim("GET", f"realms/{REALM}")
        rows = []
        compared = {}
        for entity, table in TABLES.items():
            here = conn.execute(
                f"SELECT count(*) FROM public.{table} WHERE organization_id = %s"
                " AND qbo_id IS NOT NULL AND qbo_deleted_at IS NULL",
                (org,),
            ).fetchone()[0]
            in_qbo = len(
                self.qbo(
                    f"SELECT Id FROM {QBO_NAMES[entity]}"
                    + (" WHERE Active IN (true, false)" if entity in ("customers", "items") else "")
                    + " MAXRESULTS 1000"
                )
            )
            compared[entity] = {"here": here, "qbo": in_qbo}
            rows.append(f"{entity:<10} here {here:>5}   in QBO {in_qbo:>5}")
        for line in rows:
            self.say(line)
        self.claims["counts"] = compared
        self.claims["simulator_counts"] = counts.get("counts", counts)

    def push(self, conn: psycopg.Connection, org: uuid.UUID) -> None:
        self.step("Edit a customer and an invoice here, and push them")
        stamp = time.strftime("%H%M%S")
        phone = f"(555) 010-{stamp[-4:]}"
        customer_id, customer_qbo, name = conn.execute(
            "UPDATE customer_profile SET phone = %s WHERE id = (SELECT id FROM customer_profile"
            " WHERE organization_id = %s AND qbo_id IS NOT NULL AND is_active"
            " ORDER BY qbo_id::bigint LIMIT 1) RETURNING id, qbo_id, display_name",
            (phone, org),
        ).fetchone()
        note = f"Deliver before noon ({stamp})"
        invoice_id, invoice_qbo = conn.execute(
            "UPDATE invoice_record SET customer_memo = %s WHERE id = (SELECT id FROM"
            " invoice_record WHERE organization_id = %s AND qbo_id IS NOT NULL AND NOT is_voided"
            " AND qbo_deleted_at IS NULL ORDER BY qbo_id::bigint LIMIT 1) RETURNING id, qbo_id",
            (note, org),
        ).fetchone()
        conn.execute(
            "UPDATE invoice_line_item SET tax_code_ref = 'TAX' WHERE id = (SELECT id FROM"
            " invoice_line_item WHERE invoice_id = %s ORDER BY line_number LIMIT 1)",
            (invoice_id,),
        )
        self.say(
            f"here: customer {name!r} phone {phone}; invoice {invoice_qbo} memo {note!r}, "
            "its first line now taxable"
        )
        self.run_jobs(conn, org, "push", ["customers", "invoices"])
        customer = self.qbo(f"SELECT * FROM Customer WHERE Id = '{customer_qbo}'")[0]
        invoice = self.qbo(f"SELECT * FROM Invoice WHERE Id = '{invoice_qbo}'")[0]
        qbo_phone = (customer.get("PrimaryPhone") or {}).get("FreeFormNumber")
        qbo_memo = (invoice.get("CustomerMemo") or {}).get("value")
        self.say(
            f"in QBO: customer {customer_qbo} phone {qbo_phone}; invoice {invoice_qbo} "
            f"memo {qbo_memo!r}"
        )
        tax = conn.execute(
            "SELECT tax_total, total_amount FROM invoice_record WHERE id = %s", (invoice_id,)
        ).fetchone()
        qbo_tax = (invoice.get("TxnTaxDetail") or {}).get("TotalTax")
        self.say(
            f"sales tax: QBO computed {qbo_tax}, the table holds {tax[0]} "
            f"(total {tax[1]}, QBO's {invoice.get('TotalAmt')})"
        )
        self.claims["push"] = {
            "customer_qbo_id": customer_qbo,
            "phone": phone,
            "qbo_phone": qbo_phone,
            "invoice_qbo_id": invoice_qbo,
            "memo": note,
            "qbo_memo": qbo_memo,
            "local_tax": str(tax[0]),
            "qbo_tax": str(qbo_tax),
            "local_total": str(tax[1]),
            "qbo_total": str(invoice.get("TotalAmt")),
            "customer_id": str(customer_id),
        }

    def webhook(self, conn: psycopg.Connection, org: uuid.UUID) -> None:
        self.step("Change a customer in QBO: the webhook brings it here")
        target = conn.execute(
            "SELECT qbo_id FROM customer_profile WHERE organization_id = %s AND qbo_id IS NOT NULL"
            " AND is_active ORDER BY qbo_id::bigint DESC LIMIT 1",
            (org,),
        ).fetchone()[0]
        notes = f"Prefers oat milk (set in QuickBooks at {time.strftime('%H:%M:%S')})"
        started = time.monotonic()
        self.sim(
            "POST",
            f"realms/{REALM}/change",
            {"entity": "Customer", "id": target, "fields": {"Notes": notes}},
        )
        with worker(self.dsn, self.timeout):
            seconds = wait_until(
                lambda: conn.execute(
                    "SELECT notes = %s FROM customer_profile WHERE organization_id = %s"
                    " AND qbo_id = %s",
                    (notes, org, target),
                ).fetchone()[0],
                self.timeout,
            )
        if seconds is None:
            raise DemoError(
                f"the change made in QBO did not arrive: see the listener's log in {self.home}"
            )
        delivered = conn.execute(
            "SELECT count(*) FROM qbo_webhook_log WHERE signature_valid AND body LIKE %s",
            (f'%"id": "{target}"%',),
        ).fetchone()[0]
        self.say(
            f"customer {target}: notes {notes!r} arrived here {time.monotonic() - started:.1f} s"
            " after the change in QBO (through a signed webhook)"
        )
        self.claims["webhook"] = {
            "qbo_id": target,
            "notes": notes,
            "seconds": round(time.monotonic() - started, 2),
            "webhooks_logged": delivered,
        }

    def conflict(self, conn: psycopg.Connection, org: uuid.UUID) -> None:
        self.step("Edit the same field on both sides: the conflict policy decides")
        row_id, target = conn.execute(
            "SELECT id, qbo_id FROM customer_profile WHERE organization_id = %s"
            " AND qbo_id IS NOT NULL AND is_active ORDER BY qbo_id::bigint LIMIT 1 OFFSET 1",
            (org,),
        ).fetchone()
        stamp = time.strftime("%H%M%S")
        local_email = f"orders-{stamp}@bakery-here.example"
        qbo_email = f"accounts-{stamp}@bakery-qbo.example"
        before = conn.execute(
            "SELECT count(*) FROM qbo_sync_conflict WHERE organization_id = %s", (org,)
        ).fetchone()[0]
        conn.execute("UPDATE customer_profile SET email = %s WHERE id = %s", (local_email, row_id))
        self.sim(
            "POST",
            f"realms/{REALM}/change",
            {
                "entity": "Customer",
                "id": target,
                "fields": {"PrimaryEmailAddr": {"Address": qbo_email}},
            },
        )
        self.say(f"customer {target}: email {local_email} here, {qbo_email} in QBO")
        with worker(self.dsn, self.timeout):
            found = wait_until(
                lambda: conn.execute(
                    "SELECT count(*) > %s FROM qbo_sync_conflict WHERE organization_id = %s",
                    (before, org),
                ).fetchone()[0],
                self.timeout,
            )
        if found is None:
            raise DemoError("no conflict was recorded: qbo-sync status says what happened")
        conflict = operations.rows(
            conn,
            "SELECT id, fields, local_values, remote_values, base_values, policy, status"
            " FROM qbo_sync_conflict WHERE organization_id = %s ORDER BY detected_at DESC LIMIT 1",
            (org,),
        )[0]
        kept = conn.execute(
            "SELECT email FROM customer_profile WHERE id = %s", (row_id,)
        ).fetchone()[0]
        self.say(
            f"conflict on {', '.join(conflict['fields'])}: policy {conflict['policy']}, "
            f"{conflict['status']}; the table now holds {kept}"
        )
        self.claims["conflict"] = {
            "qbo_id": target,
            "local_email": local_email,
            "qbo_email": qbo_email,
            "policy": conflict["policy"],
            "status": conflict["status"],
            "fields": conflict["fields"],
            "kept": kept,
            "conflict_id": str(conflict["id"]),
        }

    def run(self) -> dict[str, Any]:
        self.database()
        self.simulator()
        self.listener()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            org = self.connect(conn)
            self.pull(conn, org)
            self.push(conn, org)
            self.webhook(conn, org)
            self.conflict(conn, org)
        self.step("qbo-sync status")
        from qbo_sync.cli import main as cli

        cli(["status", "--org", ORGANIZATION, "--dsn", self.dsn])
        print(
            f"\nStill running: the database ({self.dsn}), the simulator ({self.sim_url}) and the "
            f"listener ({self.listener_url}). Stop them with `qbo-sync demo --stop` "
            "(or `make demo-stop`).",
            flush=True,
        )
        return self.claims


def read_secrets(path: Path) -> dict[str, str]:
    from qbo_sync_db.secrets import read_secrets_file

    return read_secrets_file(str(path))


def wait_until(check, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    return None


@contextlib.contextmanager
def worker(dsn: str, seconds: float):
    """A queue processor of the demo's own while it waits (pg_cron's starts each minute).

    It drains the queue and stops when it is empty, over and over; leaving the block lets the
    job it is running finish (a job cancelled midway shows as failed in `qbo-sync status`).
    Only a job still running 30 s later is cancelled."""
    pid: list[int] = []
    leaving = threading.Event()

    def work() -> None:
        deadline = time.monotonic() + seconds
        with psycopg.connect(dsn, autocommit=True) as conn:
            pid.append(conn.info.backend_pid)
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                while not leaving.is_set() and time.monotonic() < deadline:
                    left = max(deadline - time.monotonic(), 1.0)
                    conn.execute("CALL qbo_sync.worker(%s::numeric, NULL, true)", (left,))
                    leaving.wait(0.2)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        leaving.set()
        thread.join(30)
        if thread.is_alive() and pid:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_cancel_backend(%s)", (pid[0],))
            thread.join(30)


def stop() -> int:
    """Stop what the demo started (the simulator, the listener) and the local database."""
    home = local_home() / "demo"
    for name in ("listener", "simulator"):
        pid_file = home / f"{name}.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()
            print(f"{name}: stopped")
    local_cluster().stop()
    print("database: stopped")
    return 0


def main(sim_port: int, listener_port: int, json_path: str | None, timeout: float) -> int:
    claims = Demo(sim_port, listener_port, timeout).run()
    if json_path:
        Path(json_path).write_text(json.dumps(claims, indent=2, default=str) + "\n")
    return 0

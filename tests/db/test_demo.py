"""`qbo-sync demo` in its non-interactive form, as a user runs it (a child process, its own
database, simulator and listener under a home of its own), twice; every claim it prints is then
checked independently: in the database, and in QBO through the simulator's API with a token of
the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from qbo_sync.install import PROJECT_ROOT
from qbo_sync.pgserver import free_port

pytestmark = pytest.mark.slow
REALM = "9341453050298375"


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qbo_sync.cli", "demo", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("demo-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    env.update(QBO_SYNC_HOME=str(home), QBO_SYNC_DB_PORT=str(free_port()))
    yield env
    run_demo(env, "--stop")


def qbo(sim_url: str, client_id: str, query: str) -> list[dict]:
    token = requests.post(
        f"{sim_url}/_sim/realms/{REALM}/tokens", json={"client_id": client_id}, timeout=10
    ).json()["access_token"]
    # The demo leaves its worker running against the same realm with QBO's limits on, so this
    # client, like any other, can be throttled: it backs off and tries again, as Intuit asks.
    for attempt in range(12):
        answer = requests.get(
            f"{sim_url}/v3/company/{REALM}/query",
            params={"query": query, "minorversion": "75"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=10,
        )
        if answer.status_code != 429:
            break
        time.sleep(min(0.5 * 2**attempt, 10))
    answer.raise_for_status()
    return next(v for v in answer.json()["QueryResponse"].values() if isinstance(v, list))


def check_claims(claims: dict, out: str, sim_url: str, dsn: str, client_id: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        org = claims["organization_id"]
        # the full pull: every count it printed is what both sides hold
        for entity, seen in claims["counts"].items():
            table = {
                "customers": "customer_profile",
                "items": "item_record",
                "invoices": "invoice_record",
                "payments": "invoice_payment",
            }[entity]
            here = conn.execute(
                f"SELECT count(*) FROM {table} WHERE organization_id = %s"
                " AND qbo_deleted_at IS NULL",
                (org,),
            ).fetchone()[0]
            name = {
                "customers": "Customer",
                "items": "Item",
                "invoices": "Invoice",
                "payments": "Payment",
            }[entity]
            where = " WHERE Active IN (true, false)" if entity in ("customers", "items") else ""
            in_qbo = len(qbo(sim_url, client_id, f"SELECT Id FROM {name}{where} MAXRESULTS 1000"))
            assert seen == {"here": here, "qbo": in_qbo} and here == in_qbo > 0, entity
            assert f"{entity:<10} here {here:>5}   in QBO {in_qbo:>5}" in out
        # the push: QBO holds the local edits, and the table holds QBO's tax (AST on)
        push = claims["push"]
        customer = qbo(
            sim_url, client_id, f"SELECT * FROM Customer WHERE Id = '{push['customer_qbo_id']}'"
        )[0]
        assert customer["PrimaryPhone"]["FreeFormNumber"] == push["phone"]
        invoice = qbo(
            sim_url, client_id, f"SELECT * FROM Invoice WHERE Id = '{push['invoice_qbo_id']}'"
        )[0]
        assert invoice["CustomerMemo"]["value"] == push["memo"]
        tax, total = conn.execute(
            "SELECT tax_total, total_amount FROM invoice_record WHERE organization_id = %s"
            " AND qbo_id = %s",
            (org, push["invoice_qbo_id"]),
        ).fetchone()
        assert float(invoice["TxnTaxDetail"]["TotalTax"]) == float(tax) > 0
        assert float(invoice["TotalAmt"]) == float(total)
        assert f"sales tax: QBO computed {push['qbo_tax']}, the table holds {tax}" in out
        # the webhook: the value set in QBO is the row's, and a signed webhook carried it
        hook = claims["webhook"]
        assert (
            conn.execute(
                "SELECT notes FROM customer_profile WHERE organization_id = %s AND qbo_id = %s",
                (org, hook["qbo_id"]),
            ).fetchone()[0]
            == hook["notes"]
        )
        assert hook["webhooks_logged"] >= 1 and hook["seconds"] < 30
        # the conflict: recorded with both values; QBO's won (the default policy), both sides agree
        c = claims["conflict"]
        row = conn.execute(
            "SELECT policy, status, fields, local_values ->> 'email', remote_values ->> 'email'"
            " FROM qbo_sync_conflict WHERE id = %s",
            (c["conflict_id"],),
        ).fetchone()
        assert row == ("qbo_wins", "resolved", ["email"], c["local_email"], c["qbo_email"])
        assert c["kept"] == c["qbo_email"]
        qbo_customer = qbo(sim_url, client_id, f"SELECT * FROM Customer WHERE Id = '{c['qbo_id']}'")
        assert qbo_customer[0]["PrimaryEmailAddr"]["Address"] == c["qbo_email"]
    assert "Needs a person" in out and "Still running" in out and "demo --stop" in out
    with psycopg.connect(dsn, autocommit=True) as conn:
        # the demo's own worker lets a job finish rather than cancel it midway
        failed = conn.execute(
            "SELECT entity_types, error_summary FROM qbo_sync_history"
            " WHERE organization_id = %s AND status = 'failed'",
            (claims["organization_id"],),
        ).fetchall()
    assert failed == []


def test_the_demo_runs_twice_and_every_claim_holds(demo_env, tmp_path):
    sim_port, listener_port = free_port(), free_port()
    ports = ("--simulator-port", str(sim_port), "--listener-port", str(listener_port))
    for run in (1, 2):
        claims_file = tmp_path / f"claims-{run}.json"
        done = run_demo(demo_env, *ports, "--json", str(claims_file))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        claims = json.loads(claims_file.read_text())
        home = Path(demo_env["QBO_SYNC_HOME"])
        secrets = dict(
            line.split("=", 1)
            for line in (home / "pg" / "secrets.env").read_text().splitlines()
            if "=" in line
        )
        dsn = next(
            line.split(": ", 1)[1]
            for line in done.stdout.splitlines()
            if "qbo-sync installed:" in line
        ).strip()
        check_claims(
            claims, done.stdout, f"http://127.0.0.1:{sim_port}", dsn, secrets["QBO_CLIENT_ID"]
        )
        if run == 2:
            assert "simulator: already running" in done.stdout
            assert "listener: already running" in done.stdout
    stopped = run_demo(demo_env, "--stop")
    assert stopped.returncode == 0 and "simulator: stopped" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{sim_port}/_sim/health", timeout=2)

"""Webhooks: the listener's throughput, and how soon a change made in QBO reaches the tables.

Three parts, every piece a real process on 127.0.0.1 (the listener, the simulator and the load
generator each in a process of its own; PostgreSQL a throw-away cluster with synchronous commit):

* **Listener throughput.** Signed webhook POSTs from a separate load-generator process (aiohttp,
  `--concurrency` connections, `--seconds` each) to `qbo-sync listen` (verify the signature,
  INSERT the payload, answer 200 after the commit), next to the baseline: the same verification
  and JSON parsing in an aiohttp server that answers without the INSERT. Requests/s and p50/p99
  latency of both, and the ratio.
* **Change → row latency, one company.** `--changes` customer updates made in the simulator as a
  QBO user would, one every 1/`--rate` s; each travels as a signed webhook to the listener, to
  qbo_webhook_log, to the queue (the worker's loop), to a pull, to the row. Per change: the
  simulator's batching window (change → POST stored, reported apart) and the time from the POST
  stored to the row visible (the figure the targets are about: p50 ≤ 1 s, p99 ≤ 3 s).
* **Many companies.** `--orgs` connected organizations (each its own realm), changes spread over
  all of them at `--many-rate` a second, `--workers` queue processors: the same latencies, and the
  queue's backlog sampled every second (it must not grow).

    python -m bench --only listener [--quick] [--seconds 10] [--concurrency 48]
        [--changes 200] [--rate 5] [--orgs 1000] [--many-rate 20] [--many-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.common import format_table, machine_info, write_results
from qbo_sync.install import install
from qbo_sync.pgserver import Cluster, free_port, give_to_server_user, write_secrets_file

DATABASE = "listener_bench"
VERIFIER = "bench-listener-verifier"
CLIENT_ID = "bench-listener-client"
CLIENT_SECRET = "bench-listener-secret"
LOGIN = "bench_listener_login"
ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# ------------------------------------------------------------------ processes of their own


def serve_baseline(port: int) -> None:
    """The listener's work without the database: verify, parse, answer 200."""
    from aiohttp import web
    from qbo_sync_db import webhooks

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not webhooks.verify(body, request.headers.get("intuit-signature"), VERIFIER):
            return web.json_response({"status": 401}, status=401)
        payload = webhooks.normal_payload(json.loads(body))
        return web.json_response(
            {"status": 200, "message": "stored", "format": webhooks.payload_format(payload)}
        )

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/webhooks/qbo", receive)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def generate_load(url: str, seconds: float, concurrency: int) -> None:
    """POST signed webhooks to `url` for `seconds` over `concurrency` connections; print one JSON
    line: requests, failures and every latency in ms."""
    import aiohttp
    from qbo_sync_db import webhooks

    bodies = []
    for i in range(64):
        payload = {
            "eventNotifications": [
                {
                    "realmId": "4620816365",
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Customer",
                                "id": str(i),
                                "operation": "Update",
                                "lastUpdated": "2026-11-28T01:00:00.000Z",
                            }
                        ]
                    },
                }
            ]
        }
        body = json.dumps(payload).encode()
        bodies.append((body, webhooks.signature(body, VERIFIER)))

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        failures = 0
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def client(index: int) -> None:
                nonlocal failures
                n = index
                while time.monotonic() < deadline:
                    body, signature = bodies[n % len(bodies)]
                    n += concurrency
                    started = time.perf_counter()
                    async with session.post(
                        url,
                        data=body,
                        headers={"Content-Type": "application/json", "intuit-signature": signature},
                    ) as answer:
                        await answer.read()
                        if answer.status == 200:
                            latencies.append((time.perf_counter() - started) * 1000)
                        else:
                            failures += 1

            began = time.monotonic()
            await asyncio.gather(*(client(i) for i in range(concurrency)))
            elapsed = time.monotonic() - began
        return {
            "ok": len(latencies),
            "failures": failures,
            "elapsed": elapsed,
            "latencies_ms": latencies,
        }

    print(json.dumps(asyncio.run(run())), flush=True)


class Process:
    """A child process of this benchmark, stopped at the end."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def wait_http(self, url: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer (see {self.log.name})")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------ the database


@contextmanager
def bench_database(base_dir: Path) -> Iterator[Cluster]:
    cluster_dir = base_dir / "pg"
    cluster_dir.mkdir()
    give_to_server_user(cluster_dir, 0o755)
    write_secrets_file(
        cluster_dir / "secrets.env",
        {"QBO_CLIENT_ID": CLIENT_ID, "QBO_CLIENT_SECRET": CLIENT_SECRET},
    )
    cluster = Cluster(base_dir=cluster_dir, port=free_port())
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
            conn.execute(f"CREATE ROLE {LOGIN} LOGIN")
        install(cluster.dsn(DATABASE))
        with psycopg.connect(cluster.dsn(DATABASE), autocommit=True) as conn:
            conn.execute(f"GRANT qbo_sync_listener TO {LOGIN}")
        yield cluster
    finally:
        cluster.destroy()


def listener_dsn(cluster: Cluster) -> str:
    info = psycopg.conninfo.conninfo_to_dict(cluster.dsn(DATABASE))
    info["user"] = LOGIN
    return psycopg.conninfo.make_conninfo(**info)


def start_listener(cluster: Cluster, base_dir: Path) -> tuple[Process, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_")}
    env.update(QBO_SYNC_LISTENER_DSN=listener_dsn(cluster), QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER)
    process = Process(
        [sys.executable, "-m", "listener", "--port", str(port), "--pool-size", "8"],
        base_dir / "listener.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    process.wait_http(url + "/healthz")
    return process, url


# ------------------------------------------------------------------ part 1: throughput


def load(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_listener",
            "--load",
            url,
            "--seconds",
            str(seconds),
            "--concurrency",
            str(concurrency),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    latencies = data.pop("latencies_ms")
    return data | {
        "requests_per_second": data["ok"] / data["elapsed"],
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


def throughput(cluster: Cluster, base_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    listener, url = start_listener(cluster, base_dir)
    port = free_port()
    baseline = Process(
        [sys.executable, "-m", "bench.bench_listener", "--serve-baseline", str(port)],
        base_dir / "baseline.log",
    )
    try:
        baseline.wait_http(f"http://127.0.0.1:{port}/")
        load(url + "/webhooks/qbo", 2, args.concurrency)  # warm-up: the pool, the caches
        with psycopg.connect(cluster.dsn(DATABASE), autocommit=True) as conn:
            before = conn.execute("SELECT count(*) FROM qbo_webhook_log").fetchone()[0]
        stored = load(url + "/webhooks/qbo", args.seconds, args.concurrency)
        with psycopg.connect(cluster.dsn(DATABASE), autocommit=True) as conn:
            after = conn.execute("SELECT count(*) FROM qbo_webhook_log").fetchone()[0]
            conn.execute("DELETE FROM qbo_webhook_log")
        bare = load(f"http://127.0.0.1:{port}/webhooks/qbo", args.seconds, args.concurrency)
    finally:
        baseline.stop()
        listener.stop()
    return {
        "listener": stored | {"rows_stored": after - before},
        "baseline": bare,
        "ratio": stored["requests_per_second"] / bare["requests_per_second"],
    }


# ------------------------------------------------------------------ parts 2 and 3: latency


class Simulator(Process):
    def __init__(self, base_dir: Path, webhook_url: str, latency_ms: float) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = {
            "apps": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": ["http://localhost/callback"],
                }
            ],
            "webhook_urls": [webhook_url],
            "verifier_token": VERIFIER,
            "webhook_window_s": 0.2,
            "webhook_max_events": 100,
            "limits_enabled": False,
            "latency_ms": latency_ms,
        }
        path = base_dir / "simulator.json"
        path.write_text(json.dumps(config))
        super().__init__(
            [sys.executable, "-m", "simulator", "--port", str(self.port), "--config", str(path)],
            base_dir / "simulator.log",
        )
        self.http = requests.Session()
        self.wait_http(self.base_url + "/_sim/health")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, self.base_url + "/_sim/" + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()


def connect_many(conn: psycopg.Connection, sim: Simulator, count: int, customers: int) -> dict:
    """`count` organizations, each connected to a realm of its own seeded with `customers`
    customers (seeding sends no webhooks); returns realm → (organization, customer ids)."""
    realms: dict[str, tuple[uuid.UUID, list[str]]] = {}
    rows = []
    for i in range(count):
        realm = str(9130350000000000 + i)
        sim.control("POST", "realms", {"realm_id": realm, "customers": customers, "seed": i})
        pair = sim.control("POST", f"realms/{realm}/tokens", {"client_id": CLIENT_ID})
        org = uuid.uuid4()
        rows.append((org, f"Bench {i}", realm, pair["access_token"], pair["refresh_token"]))
        realms[realm] = (org, [])
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO organizations (id, name) VALUES (%s, %s)", [(r[0], r[1]) for r in rows]
        )
        cur.executemany(
            """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                           qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                                           qbo_token_expires_at, qbo_refresh_token_expires_at)
               VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s),
                       qbo_sync.encrypt_token(%s), now() + interval '1 hour',
                       now() + interval '100 days')""",
            [(r[0], r[2], sim.base_url, r[3], r[4]) for r in rows],
        )
    return realms


def first_pull(conn: psycopg.Connection, realms: dict, workers: int, dsn: str) -> None:
    """Every organization's customers pulled once (the state webhooks then keep current)."""
    for org, _ in realms.values():
        conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull', 'low')", (org,))
    run_workers(dsn, workers, stop_when_idle=True)
    for org, ids in realms.values():
        ids.extend(
            qbo_id
            for (qbo_id,) in conn.execute(
                "SELECT qbo_id FROM customer_profile WHERE organization_id = %s ORDER BY qbo_id",
                (org,),
            )
        )
    missing = [realm for realm, (_, ids) in realms.items() if not ids]
    if missing:
        errors = conn.execute(
            "SELECT DISTINCT status, last_error FROM qbo_sync_queue WHERE status <> 'completed'"
        ).fetchall()
        raise RuntimeError(f"the first pull left {len(missing)} organizations empty: {errors}")


def run_workers(dsn: str, count: int, *, stop_when_idle: bool, seconds: float = 600) -> list:
    threads = []
    pids: list[int] = []

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as worker:
            pids.append(worker.info.backend_pid)
            try:
                worker.execute("CALL qbo_sync.worker(%s, NULL, %s)", (seconds, stop_when_idle))
            except psycopg.errors.QueryCanceled:
                pass

    for _ in range(count):
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)
    if stop_when_idle:
        for thread in threads:
            thread.join()
    return [threads, pids]


def stop_workers(dsn: str, handle: list) -> None:
    threads, pids = handle
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
    for thread in threads:
        thread.join(30)


def changes_to_rows(
    cluster: Cluster, sim: Simulator, realms: dict, changes: int, rate: float, workers: int
) -> dict[str, Any]:
    """Make `changes` customer updates at `rate` a second across `realms` (each (realm, customer)
    at most once) with `workers` queue processors running; measure each change's way to its row."""
    dsn = cluster.dsn(DATABASE)
    rng = random.Random(20261128)
    targets = [(realm, qbo_id) for realm, (_, ids) in realms.items() for qbo_id in ids]
    rng.shuffle(targets)
    targets = targets[:changes]
    if len(targets) < changes:
        raise RuntimeError(f"only {len(targets)} customers to change, {changes} asked")
    handle = run_workers(dsn, workers, stop_when_idle=False)
    made: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    backlog: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # when each change becomes visible in the table, and the backlog
        with psycopg.connect(dsn, autocommit=True) as conn:
            last_sample = 0.0
            while not stop.is_set():
                now = time.time()
                for realm, qbo_id in conn.execute(
                    """SELECT c.realm_id, p.qbo_id FROM customer_profile AS p
                         JOIN qbo_connection AS c USING (organization_id)
                        WHERE p.notes LIKE 'bench change %'"""
                ).fetchall():
                    seen.setdefault((realm, qbo_id), now)
                if now - last_sample >= 1:
                    backlog.append(
                        conn.execute(
                            "SELECT count(*) FROM qbo_sync_queue"
                            " WHERE status IN ('pending', 'processing')"
                        ).fetchone()[0]
                    )
                    last_sample = now
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        for index, (realm, qbo_id) in enumerate(targets):
            due = started + index / rate
            time.sleep(max(0.0, due - time.monotonic()))
            sim.control(
                "POST",
                f"realms/{realm}/change",
                {"entity": "Customer", "id": qbo_id, "fields": {"Notes": f"bench change {index}"}},
            )
            made[(realm, qbo_id)] = time.time()
        sent_seconds = time.monotonic() - started
        deadline = time.monotonic() + 120
        while len(seen) < len(made) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(10)
        stop_workers(dsn, handle)
    with psycopg.connect(dsn, autocommit=True) as conn:
        stored = {
            (realm, entity_id): received.timestamp()
            for realm, entity_id, received in conn.execute(
                """SELECT e.realm_id, e.entity_id, min(l.received_at)
                     FROM qbo_webhook_log AS l, qbo_sync.webhook_events(l.payload) AS e
                    WHERE l.signature_valid GROUP BY 1, 2"""
            )
        }
        conn.execute("DELETE FROM qbo_webhook_log")
    window = [stored[k] - made[k] for k in made if k in stored]
    after_post = [seen[k] - stored[k] for k in made if k in seen and k in stored]
    return {
        "changes": len(made),
        "rate_asked": rate,
        "rate_made": len(made) / sent_seconds,
        "reached_row": len([k for k in made if k in seen]),
        "window_p50_s": percentile(window, 0.5),
        "window_p99_s": percentile(window, 0.99),
        "after_post_p50_s": percentile(after_post, 0.5),
        "after_post_p99_s": percentile(after_post, 0.99),
        "after_post_max_s": max(after_post, default=float("nan")),
        "backlog_samples": backlog,
        "backlog_first_half_mean": statistics.fmean(backlog[: len(backlog) // 2] or [0]),
        "backlog_second_half_mean": statistics.fmean(backlog[len(backlog) // 2 :] or [0]),
        "workers": workers,
    }


def latency(cluster: Cluster, base_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    listener, url = start_listener(cluster, base_dir)
    sim = Simulator(base_dir, url + "/webhooks/qbo", args.latency_ms)
    dsn = cluster.dsn(DATABASE)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            one = connect_many(conn, sim, 1, max(args.changes + 10, 20))
            first_pull(conn, one, 1, dsn)
        single = changes_to_rows(cluster, sim, one, args.changes, args.rate, 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM organizations")
            sim.control("POST", "reset")
            wanted = int(args.many_rate * args.many_seconds)
            many_realms = connect_many(conn, sim, args.orgs, -(-wanted // args.orgs))
            first_pull(conn, many_realms, args.workers, dsn)
        many = changes_to_rows(
            cluster,
            sim,
            many_realms,
            int(args.many_rate * args.many_seconds),
            args.many_rate,
            args.workers,
        )
    finally:
        sim.stop()
        listener.stop()
    return {"one_company": single, "many_companies": many | {"organizations": args.orgs}}


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench --only listener",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--many-rate", type=float, default=20)
    parser.add_argument("--many-seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.changes, args.orgs, args.many_seconds = 2, 20, 20, 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    if args.load:
        generate_load(args.load, args.seconds, args.concurrency)
        return 0
    base_dir = Path(tempfile.mkdtemp(prefix="qbo-sync-bench-listener-"))
    give_to_server_user(base_dir, 0o755)
    with bench_database(base_dir) as cluster:
        report = {
            "machine": machine_info(),
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("serve_baseline", "load")
            },
            "throughput": throughput(cluster, base_dir, args),
            "latency": latency(cluster, base_dir, args),
        }
    path = write_results("listener", report)
    print_report(report)
    print(f"\nwritten: {path}")
    return 0


def print_report(report: dict[str, Any]) -> None:
    t = report["throughput"]
    print(
        format_table(
            ["server", "requests/s", "p50 ms", "p99 ms", "failures", "rows stored"],
            [
                [
                    "listener (verify + INSERT)",
                    t["listener"]["requests_per_second"],
                    t["listener"]["p50_ms"],
                    t["listener"]["p99_ms"],
                    t["listener"]["failures"],
                    t["listener"]["rows_stored"],
                ],
                [
                    "baseline (verify, no INSERT)",
                    t["baseline"]["requests_per_second"],
                    t["baseline"]["p50_ms"],
                    t["baseline"]["p99_ms"],
                    t["baseline"]["failures"],
                    None,
                ],
            ],
        )
    )
    print(f"listener / baseline: {t['ratio']:.2f}")
    rows = []
    for name, r in report["latency"].items():
        rows.append(
            [
                name,
                r["changes"],
                r["rate_made"],
                r["workers"],
                r["reached_row"],
                r["window_p50_s"],
                r["after_post_p50_s"],
                r["after_post_p99_s"],
                r["backlog_first_half_mean"],
                r["backlog_second_half_mean"],
            ]
        )
    print()
    print(
        format_table(
            [
                "scenario",
                "changes",
                "per s",
                "workers",
                "reached row",
                "window p50 s",
                "after POST p50 s",
                "after POST p99 s",
                "backlog 1st half",
                "backlog 2nd half",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())

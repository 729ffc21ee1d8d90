"""The shared QBO pacer through the database: what one realm really gets, and what it costs.

Everything goes through the worker's real path: `qbo_sync_db.api.Connection(...).send(...)` in
PL/Python, run by top-level `DO` blocks sent on autocommit connections (non-atomic, so the pacer
commits each decision as in the worker's run step), one backend per worker, against the QBO
simulator over HTTP. The simulator runs in a process of its own (`--serve-simulator`, started
by this benchmark) so that it competes with nobody's GIL; on top of its own limits (500 a
minute, 10 a second, 10 at once, 40 batches a minute per realm and app) it delays every API
answer by a uniform random time, *after* counting the request (as QBO counts a request when it
arrives, not when its answer leaves).

Two parts:

* Cost per call, at zero latency, limits off, sequential, every kind once per round (median of
  the rounds): a bare keep-alive HTTP call from this process (the baseline), the same from
  inside a DO block, the transport without a pacer inside a DO block, and
  `api.Connection.send` with the pacer on limits so high that it always says go
  (`pacing.limits`); then the pacer alone (reserve + release, no HTTP) and a committed 1-row
  UPDATE in a DO block, the unit a decision is built around. µs per call and × the baseline;
  the pacer's share of a call is the difference between the fourth row and the third.
* Throughput of one realm under default limits (`pacing.limits = {}`: 2 % headroom, a ceiling
  of 488.4 calls and 39.07 batches a minute): 1, 4 and 5 workers calling as fast as the pacer
  lets them, and 4 workers sending /batch requests of 30 queries. The rate is measured over a
  steady window after a warm-up; throttled responses are the simulator's own count (429s);
  the spacing the pacer could not use is split between "some worker was ready" (lost on the
  database path) and "every worker was waiting for an answer" (too few workers).

    python -m bench --only pacer_db [--quick] [--seconds 60] [--warmup 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import math
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.common import format_table, machine_info, write_results
from qbo_sync.install import install
from qbo_sync.pgserver import Cluster, free_port, give_to_server_user, write_secrets_file

DATABASE = "pacer_bench"
REALM = "9341453050298375"  # the simulator's default realm
CLIENT_ID = "bench-pacer-client"
CLIENT_SECRET = "bench-pacer-secret"

#: pacing.limits for the cost rows: every rate limit so high that each reserve says go
LIMITS_OFF = {"per_minute": 100_000_000, "per_second": 10_000_000, "batches_per_minute": 10_000_000}
#: Intuit's limits with the default 2 % headroom and 0.2 s skew (pacing.Limits())
HEADROOM, SKEW = 0.02, 0.2
PER_MINUTE, BATCHES_PER_MINUTE = 500, 40
BATCH_ITEMS = 30
DO_TAG = "$bench_pacer$"
MODES = ("http", "transport", "paced", "pacer", "commit", "load")


def spacing_seconds(limit: int, window: float) -> float:
    """The pacer's spacing for a limit of `limit` per `window` s (qbo_sync_db.pacing._buckets,
    burst 1: ⌈(W + skew) / (L × (1 − headroom))⌉ µs + 2 µs)."""
    return (math.ceil((window + SKEW) * 1e6 / (limit * (1 - HEADROOM))) + 2) / 1e6


CALL_SPACING = spacing_seconds(PER_MINUTE, 60.0)  # 122.86 ms: 488.4 a minute
BATCH_SPACING = spacing_seconds(BATCHES_PER_MINUTE, 60.0)  # 1.536 s: 39.07 a minute


@dataclass(frozen=True)
class LoadRow:
    name: str
    workers: int
    kind: str  # "call" or "batch"
    latency: tuple[float, float]  # the simulator's answer delay, uniform, seconds


LOAD_ROWS = (
    LoadRow("1 worker, calls, 0.2-0.6 s", 1, "call", (0.2, 0.6)),
    LoadRow("4 workers, calls, 0.2-0.6 s", 4, "call", (0.2, 0.6)),
    LoadRow("4 workers, calls, 0.05-0.15 s", 4, "call", (0.05, 0.15)),
    LoadRow("5 workers, calls, 0.2-0.6 s", 5, "call", (0.2, 0.6)),
    LoadRow(f"4 workers, batches of {BATCH_ITEMS} queries, 1-3 s", 4, "batch", (1.0, 3.0)),
)

# The body of every DO block. Its parameters arrive as one JSON string, pasted as a Python
# string literal (repr) of json.dumps over values this module made itself (a uuid it checked,
# numbers, fixed words); the tag is checked not to occur in it.
DO_BODY = """
plpy.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
plpy.execute("SELECT qbo_sync.python_loader()")
GD["qbo_sync_load"](plpy)
from qbo_sync_db import api, client, transport, txn
from qbo_sync_db.errors import QboSyncError
tx = txn.Transaction(plpy); tx.pin()
import json, time

P = json.loads(@PARAMS@)
ITEMS = [client.batch_query("b%d" % i, "select * from Customer maxresults 1")
         for i in range(P["batch_items"])]

def build(company):
    if P["kind"] == "batch":
        return client.batch_request(company, ITEMS)
    return client.read_request(company, "CompanyInfo", company.realm_id)

conn = api.Connection(plpy, tx, P["org"])
out = {"mode": P["mode"]}
if P["mode"] == "http":  # the bare call, as the transport sends it, from this backend
    request = build(conn.company)
    for _ in range(P["warmup"]):
        transport.session_send(request, transport.DEFAULT_TIMEOUT).content
    started = time.perf_counter()
    for _ in range(P["calls"]):
        answer = transport.session_send(request, transport.DEFAULT_TIMEOUT)
        answer.content
        assert answer.status_code == 200, answer.status_code
    out["seconds"] = time.perf_counter() - started
elif P["mode"] == "transport":  # the transport (evaluation, JSON) without a pacer
    sender = transport.Transport()
    for _ in range(P["warmup"]):
        sender.send(build(conn.company))
    started = time.perf_counter()
    for _ in range(P["calls"]):
        sender.send(build(conn.company))
    out["seconds"] = time.perf_counter() - started
elif P["mode"] == "commit":  # a committed 1-row UPDATE: what a decision is built around
    plan = plpy.prepare("UPDATE public.bench_pacer_counter SET n = n + 1 WHERE id = 1")
    for _ in range(P["warmup"]):
        plpy.execute(plan)
        plpy.commit()
    started = time.perf_counter()
    for _ in range(P["calls"]):
        plpy.execute(plan)
        plpy.commit()
    out["seconds"] = time.perf_counter() - started
    tx.pin()
elif P["mode"] == "pacer":  # the pacer alone: reserve and release, no HTTP in between
    request = build(conn.company)
    pacer = conn.pacer
    for _ in range(P["warmup"]):
        pacer.before(request)
        pacer.after(request, 200, None)
    started = time.perf_counter()
    for _ in range(P["calls"]):
        pacer.before(request)
        pacer.after(request, 200, None)
    out["seconds"] = time.perf_counter() - started
elif P["mode"] == "paced":  # api.Connection.send: the pacer's two decisions, committed
    for _ in range(P["warmup"]):
        conn.send(build)
    in_pacer = [0.0]
    pacer_before, pacer_after = conn.pacer.before, conn.pacer.after
    def before(request):
        started = time.perf_counter()
        pacer_before(request)
        in_pacer[0] += time.perf_counter() - started
    def after(request, status, error):
        started = time.perf_counter()
        pacer_after(request, status, error)
        in_pacer[0] += time.perf_counter() - started
    conn.pacer.before, conn.pacer.after = before, after
    stats0 = dict(conn.pacer.stats)
    commits = tx.commits
    started = time.perf_counter()
    for _ in range(P["calls"]):
        conn.send(build)
    out["seconds"] = time.perf_counter() - started
    out["in_pacer_seconds"] = in_pacer[0]
    out["stats"] = {k: conn.pacer.stats[k] - stats0[k] for k in stats0}
    out["commits"] = tx.commits - commits
else:  # "load": send until end_at; note when each request was let go and when it came back
    gos, backs = [], []
    pacer_before, pacer_after = conn.pacer.before, conn.pacer.after
    def before(request):
        pacer_before(request)
        gos.append(time.time())
    def after(request, status, error):
        backs.append(time.time())
        pacer_after(request, status, error)
    conn.pacer.before, conn.pacer.after = before, after
    while time.time() < P["start_at"]:
        time.sleep(min(0.01, max(0.0, P["start_at"] - time.time())))
    sends, errors = [], []
    while time.time() < P["end_at"]:
        ready = time.time()
        ok = True
        try:
            conn.send(build)
        except QboSyncError as exc:
            ok = False
            errors.append(exc.sqlstate + ": " + exc.message)
        sends.append([ready, time.time(), ok])
    out.update(gos=gos, backs=backs, sends=sends, errors=errors[:5], error_count=len(errors),
               stats=conn.pacer.stats, calls=conn.calls, commits=tx.commits)
plpy.execute(
    plpy.prepare("INSERT INTO public.bench_pacer_result (run, worker, data)"
                 " VALUES ($1, $2, $3::jsonb)", ["text", "integer", "text"]),
    [P["run"], P["worker"], json.dumps(out)])
tx.commit()
"""


def do_block(params: dict[str, Any]) -> str:
    """A DO statement running DO_BODY with `params` (values this module made: see DO_BODY)."""
    params = dict(params)
    params["org"] = str(uuid.UUID(str(params["org"])))
    if params.get("mode") not in MODES:
        raise ValueError(f"unknown mode {params.get('mode')!r}")
    if params.get("kind") not in ("call", "batch"):
        raise ValueError(f"unknown kind {params.get('kind')!r}")
    for key, value in params.items():
        if key not in ("org", "mode", "kind", "run") and not isinstance(value, int | float):
            raise ValueError(f"parameter {key} must be a number")
    if not str(params["run"]).replace("-", "").replace("_", "").isalnum():
        raise ValueError("run labels are letters, digits, - and _")
    body = DO_BODY.replace("@PARAMS@", repr(json.dumps(params)))
    if DO_TAG in body:
        raise ValueError("the DO block's dollar-quote tag occurs in its body")
    return f"DO {DO_TAG}{body}{DO_TAG} LANGUAGE plpython3u"


# ----------------------------------------------------------------------------- the simulator


def serve_simulator(port: int) -> None:
    """Run the QBO simulator on `port` with this benchmark's app, limits off, and an answer
    delay (uniform in [low, high] s, after the simulator has counted the request) that
    `POST /_bench/latency {"low": .., "high": ..}` sets; until killed."""
    import asyncio

    from aiohttp import web

    from simulator.config import AppConfig, SimulatorConfig
    from simulator.server import make_app

    cfg = SimulatorConfig(
        host="127.0.0.1",
        port=port,
        apps=[AppConfig(CLIENT_ID, CLIENT_SECRET, ["http://localhost/callback"])],
        limits_enabled=False,
    )
    app = make_app(cfg)
    delay = {"low": 0.0, "high": 0.0}
    rng = random.Random(20261127)

    @web.middleware
    async def answer_delay(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if delay["high"] > 0 and request.path.startswith("/v3/"):
            await asyncio.sleep(rng.uniform(delay["low"], delay["high"]))
        return response

    async def set_delay(request: web.Request) -> web.Response:
        body = await request.json()
        low, high = float(body["low"]), float(body["high"])
        if not 0 <= low <= high <= 60:
            return web.json_response({"error": "need 0 <= low <= high <= 60"}, status=400)
        delay.update(low=low, high=high)
        return web.json_response(delay)

    app.middlewares.append(answer_delay)  # innermost: a 429 leaves at once
    app.router.add_post("/_bench/latency", set_delay)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class SimulatorProcess:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_pacer_db", "--serve-simulator", str(self.port)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get(self.base_url + "/_sim/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start (see {log_path})")
            time.sleep(0.1)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, self.base_url + path, json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def set_latency(self, low: float, high: float) -> None:
        self.control("POST", "/_bench/latency", {"low": low, "high": high})

    def set_limits(self, enabled: bool) -> None:
        self.control("PATCH", "/_sim/config", {"limits_enabled": enabled})

    def counters(self) -> dict[str, int]:
        return self.control("GET", f"/_sim/realms/{REALM}/counters")["counters"]

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- the database


@contextmanager
def bench_database(base_dir: Path) -> Iterator[str]:
    """A throw-away cluster whose secrets name this benchmark's app; qbo-sync installed in a
    database that is not pg_cron's (so no scheduled job runs there)."""
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
        dsn = cluster.dsn(DATABASE)
        install(dsn)
        yield dsn
    finally:
        cluster.destroy()


def connect_organization(conn: psycopg.Connection, sim: SimulatorProcess) -> uuid.UUID:
    pair = sim.control("POST", f"/_sim/realms/{REALM}/tokens", {"client_id": CLIENT_ID})
    org = uuid.uuid4()
    conn.execute("INSERT INTO organizations (id, name) VALUES (%s, 'Pacer bench')", (org,))
    conn.execute(
        """INSERT INTO qbo_connection (organization_id, realm_id, environment, api_base_url,
                                       qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                                       qbo_token_expires_at, qbo_refresh_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s),
                   qbo_sync.encrypt_token(%s), now() + make_interval(secs => %s),
                   now() + interval '100 days')""",
        (org, REALM, sim.base_url, pair["access_token"], pair["refresh_token"], pair["expires_in"]),
    )
    conn.execute(
        "CREATE TABLE public.bench_pacer_result (run text, worker integer, data jsonb NOT NULL)"
    )
    conn.execute("CREATE TABLE public.bench_pacer_counter (id integer PRIMARY KEY, n integer)")
    conn.execute("INSERT INTO public.bench_pacer_counter VALUES (1, 0)")
    return org


def set_pacing_limits(conn: psycopg.Connection, limits: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE qbo_sync.settings SET value = %s WHERE key = 'pacing.limits'", (json.dumps(limits),)
    )
    conn.execute("DELETE FROM qbo_sync.pacer")  # a fresh state for the new limits


def results_of(conn: psycopg.Connection, run: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT data FROM public.bench_pacer_result WHERE run = %s ORDER BY worker", (run,)
    ).fetchall()
    return [row[0] for row in rows]


# ----------------------------------------------------------------------------- cost per call


def bare_calls(sim: SimulatorProcess, token: str, calls: int, warmup: int) -> float:
    """Seconds for `calls` sequential keep-alive GETs of CompanyInfo from this process."""
    url = f"{sim.base_url}/v3/company/{REALM}/companyinfo/{REALM}?minorversion=75"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(warmup):
            session.get(url, headers=headers, timeout=30).content  # noqa: B018
        started = time.perf_counter()
        for _ in range(calls):
            answer = session.get(url, headers=headers, timeout=30)
            answer.content  # noqa: B018
            if answer.status_code != 200:
                raise RuntimeError(f"the bare call answered {answer.status_code}")
        return time.perf_counter() - started


def cost_rows(
    conn: psycopg.Connection, sim: SimulatorProcess, org: uuid.UUID, args: argparse.Namespace
) -> dict[str, Any]:
    """µs per call, median over rounds, every kind measured once in each round (so drift over
    the run touches them alike); and a committed 1-row UPDATE in a DO block, the unit a pacer
    decision is built around."""
    token = conn.execute(
        "SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) FROM qbo_connection"
        " WHERE organization_id = %s",
        (org,),
    ).fetchone()[0]
    # key: (label, the row whose µs/call the "µs more" column subtracts)
    labels = {
        "bare": ("bare HTTP call from the driver (baseline)", None),
        "http": ("bare HTTP call inside a DO block", "bare"),
        "transport": ("transport.send, no pacer, inside a DO block", "http"),
        "paced": ("api.Connection.send: pacer on (limits off)", "transport"),
        "pacer": ("pacer alone: reserve + release, no HTTP", None),
        "commit": ("committed 1-row UPDATE inside a DO block", None),
    }
    timings: dict[str, list[float]] = {key: [] for key in labels}
    stats: list[dict[str, Any]] = []
    warmup = 20
    for index in range(args.rounds):
        timings["bare"].append(bare_calls(sim, token, args.calls, warmup) / args.calls)
        for mode in list(labels)[1:]:
            run = f"cost-{mode}-{index}"
            params = {"org": str(org), "mode": mode, "kind": "call", "run": run, "worker": 0}
            params.update(calls=args.calls, warmup=warmup, batch_items=BATCH_ITEMS)
            conn.execute(do_block(params))
            (result,) = results_of(conn, run)
            timings[mode].append(result["seconds"] / args.calls)
            if mode == "paced":
                stats.append(result)
    median = {key: statistics.median(values) * 1e6 for key, values in timings.items()}
    rows = [
        {
            "row": label,
            "us_per_call": median[key],
            "calls_per_second": 1e6 / median[key],
            "x_baseline": median[key] / median["bare"],
            "us_over_previous": None if previous is None else median[key] - median[previous],
            "rounds_us": [t * 1e6 for t in timings[key]],
        }
        for key, (label, previous) in labels.items()
    ]
    calls = args.calls * len(stats)
    decisions = sum(s["stats"]["decisions"] for s in stats) / calls
    pacer_us = median["paced"] - median["transport"]
    in_pacer_us = statistics.median(s["in_pacer_seconds"] for s in stats) / args.calls * 1e6
    return {
        "rows": rows,
        "pacer_us_per_call": pacer_us,
        "decisions_per_call": decisions,
        "commits_per_call": sum(s["commits"] for s in stats) / calls,
        "busy_retries": sum(s["stats"]["busy"] for s in stats),
        "pacer_us_per_decision": pacer_us / decisions,
        "pacer_alone_us_per_decision": median["pacer"] / decisions,
        "in_pacer_us_per_call": in_pacer_us,
        "committed_update_us": median["commit"],
        "decision_x_committed_update": median["pacer"] / decisions / median["commit"],
    }


# ----------------------------------------------------------------------------- throughput


def run_load(
    dsn: str,
    sim: SimulatorProcess,
    org: uuid.UUID,
    row: LoadRow,
    args: argparse.Namespace,
    workers: list[psycopg.Connection],
) -> dict[str, Any]:
    sim.set_latency(*row.latency)
    counters_before = sim.counters()
    run = "load-" + uuid.uuid4().hex[:8]
    start_at = time.time() + 2.0  # every backend loads its code and connection before this
    window = (start_at + args.warmup, start_at + args.warmup + args.seconds)
    end_at = window[1] + 1.0
    errors: list[BaseException] = []

    def work(index: int) -> None:
        params = {"org": str(org), "mode": "load", "kind": row.kind, "run": run, "worker": index}
        params.update(start_at=start_at, end_at=end_at, batch_items=BATCH_ITEMS)
        try:
            workers[index].execute(do_block(params))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(row.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{row.name}: a worker failed: {errors[0]}") from errors[0]
    counters_after = sim.counters()
    with psycopg.connect(dsn, autocommit=True) as conn:
        results = results_of(conn, run)
    return analyse(row, results, window, counters_before, counters_after)


def analyse(
    row: LoadRow,
    results: list[dict[str, Any]],
    window: tuple[float, float],
    counters_before: dict[str, int],
    counters_after: dict[str, int],
) -> dict[str, Any]:
    lo, hi = window
    minutes = (hi - lo) / 60
    spacing = BATCH_SPACING if row.kind == "batch" else CALL_SPACING
    limit = BATCHES_PER_MINUTE if row.kind == "batch" else PER_MINUTE
    done = [s for r in results for s in r["sends"] if s[2] and lo <= s[1] < hi]
    gos = sorted(g for r in results for g in r["gos"])
    in_window = [g for g in gos if lo <= g < hi]
    calls = sum(r["calls"] for r in results)
    stats = {k: sum(r["stats"][k] for r in results) for k in results[0]["stats"]}

    # Where the unused spacing went: between two admissions g1 < g2 the budget was free from
    # g1 + spacing on; the part of [g1 + spacing, g2] during which some worker was ready (its
    # previous answer back, its next request not yet let go) is lost on the database path
    # (sleeping to the exact time, the row lock, the commits); the rest, every worker was
    # waiting for an answer.
    ready: list[tuple[float, float]] = []
    for r in results:
        starts = [lo - 1e9] + r["backs"]
        ready.extend(zip(starts, r["gos"], strict=False))
    ready = merge(ready)
    lost_ready = lost_busy = 0.0
    for first, second in zip(in_window, in_window[1:], strict=False):
        free_from = first + spacing
        if second <= free_from:
            continue
        overlap = covered(ready, free_from, second)
        lost_ready += overlap
        lost_busy += second - free_from - overlap
    # the rate: requests the pacer let go within the window, first to last ((n - 1) intervals);
    # counting them (or the answers) in the window would be off by up to one, 2.6 % of 39
    per_minute = (len(in_window) - 1) / (in_window[-1] - in_window[0]) * 60
    delta = {k: counters_after.get(k, 0) - counters_before.get(k, 0) for k in counters_after}
    return {
        "scenario": row.name,
        "workers": row.workers,
        "kind": row.kind,
        "latency_seconds": list(row.latency),
        "window_seconds": hi - lo,
        "completed_in_window": len(done),
        "completed_per_minute": len(done) / minutes,
        "per_minute": per_minute,
        "limit": limit,
        "fraction_of_limit": per_minute / limit,
        "ceiling_per_minute": 60 / spacing,
        "fraction_of_ceiling": per_minute / (60 / spacing),
        "admitted_in_window": len(in_window),
        "most_in_60_s": most_within(gos, 60.0),
        "most_in_1_s": most_within(gos, 1.0),
        "throttled": delta.get("throttled", 0),
        "pacer_throttled": stats["throttled"],
        "simulator_counters": delta,
        "requests": calls,
        "decisions_per_request": stats["decisions"] / calls if calls else None,
        "waits_per_request": stats["waits"] / calls if calls else None,
        "busy_retries": stats["busy"],
        "errors": sum(r["error_count"] for r in results),
        "error_samples": [e for r in results for e in r["errors"]][:5],
        "lost_per_minute_worker_ready": lost_ready / spacing / minutes,
        "lost_per_minute_all_in_calls": lost_busy / spacing / minutes,
    }


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals if a < end and b > start)


def most_within(times: list[float], span: float) -> int:
    best = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= span:
            first += 1
        best = max(best, last - first + 1)
    return best


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --only pacer_db", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per row")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--calls", type=int, default=300, help="calls per cost measurement")
    parser.add_argument("--rounds", type=int, default=3, help="cost measurements (median)")
    parser.add_argument(
        "--quick", action="store_true", help="15 s windows, 2 s warm-up, 100 calls, 2 rounds"
    )
    parser.add_argument("--serve-simulator", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.calls, args.rounds = 15.0, 2.0, 100, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_simulator:
        serve_simulator(args.serve_simulator)
        return 0
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="qbo-sync-bench-pacer-") as tmp:
        base = Path(tmp)
        give_to_server_user(base, 0o755)
        sim = SimulatorProcess(base / "simulator.log")
        try:
            with bench_database(base) as dsn:
                report = measure(dsn, sim, args)
        finally:
            sim.stop()
    report["machine"]["loadavg_before"] = load_before
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["wall_seconds"] = time.monotonic() - started
    print_report(report)
    path = write_results("pacer_db", report)
    print(f"written: {path}")
    return 0


def measure(dsn: str, sim: SimulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        server = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "fsync", "synchronous_commit")
        }
        org = connect_organization(conn, sim)
        sim.set_limits(False)
        sim.set_latency(0.0, 0.0)
        set_pacing_limits(conn, LIMITS_OFF)
        costs = cost_rows(conn, sim, org, args)
        sim.set_limits(True)
        set_pacing_limits(conn, {})
    workers = [
        psycopg.connect(dsn, autocommit=True) for _ in range(max(r.workers for r in LOAD_ROWS))
    ]
    try:
        loads = [run_load(dsn, sim, org, row, args, workers) for row in LOAD_ROWS]
    finally:
        for worker in workers:
            worker.close()
    return {
        "machine": {**machine_info(), "postgresql": server},
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "calls": args.calls,
            "rounds": args.rounds,
            "limits_off": LIMITS_OFF,
            "call_spacing_ms": CALL_SPACING * 1e3,
            "batch_spacing_ms": BATCH_SPACING * 1e3,
        },
        "cost": costs,
        "load": loads,
    }


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    pg = machine["postgresql"]
    print(
        f"PostgreSQL {pg['server_version'].split()[0]}, fsync {pg['fsync']}, synchronous_commit"
        f" {pg['synchronous_commit']}; nproc {machine['nproc']}; load average before"
        f" {machine['loadavg_before'][0]:.2f}, after {machine['loadavg_after'][0]:.2f}"
    )
    cost = report["cost"]
    print(
        format_table(
            ["per call, zero latency, sequential", "µs/call", "calls/s", "× baseline", "µs more"],
            [
                [
                    r["row"],
                    r["us_per_call"],
                    r["calls_per_second"],
                    r["x_baseline"],
                    r["us_over_previous"],
                ]
                for r in cost["rows"]
            ],
        )
    )
    print(
        f"in the call path the pacer costs {cost['pacer_us_per_call']:,.0f} µs a call:"
        f" {cost['decisions_per_call']:.2f} decisions ({cost['commits_per_call']:.2f} commits) of"
        f" {cost['pacer_us_per_decision']:,.0f} µs ({cost['in_pacer_us_per_call']:,.0f} µs a call"
        " timed inside before/after); alone"
        f" {cost['pacer_alone_us_per_decision']:,.0f} µs a decision ="
        f" {cost['decision_x_committed_update']:.2f} committed 1-row UPDATEs;"
        f" {cost['busy_retries']} busy-row retries"
    )
    print()
    settings = report["settings"]
    print(
        f"default limits (ceiling 488.4 calls, 39.07 batches a minute); a {settings['seconds']:g} s"
        f" window after a {settings['warmup']:g} s warm-up: per min = requests let go in it (first"
        " to last), answers = answers received in it"
    )
    print(
        format_table(
            [
                "scenario",
                "per min",
                "limit",
                "× limit",
                "× ceiling",
                "answers",
                "max 60 s",
                "max 1 s",
                "throttled",
                "decisions/req",
                "busy",
                "lost/min: ready",
                "lost/min: in calls",
            ],
            [
                [
                    r["scenario"],
                    r["per_minute"],
                    r["limit"],
                    r["fraction_of_limit"],
                    r["fraction_of_ceiling"],
                    r["completed_in_window"],
                    r["most_in_60_s"],
                    r["most_in_1_s"],
                    r["throttled"],
                    r["decisions_per_request"],
                    r["busy_retries"],
                    r["lost_per_minute_worker_ready"],
                    r["lost_per_minute_all_in_calls"],
                ]
                for r in report["load"]
            ],
        )
    )
    print(f"wall time {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())

"""What the engine benchmark (bench/bench_engine.py) runs on: the QBO simulator in a process of
its own, a throw-away PostgreSQL cluster with qbo-sync installed, organizations connected to
simulator realms, and worker sessions whose time inside QBO calls and peak memory are measured.

Worker sessions run the real worker (`CALL qbo_sync.worker(...)`) in their own backend. Before
the call, a DO block in the same backend wraps `qbo_sync_db.api.Connection.send` (the one way a
job reaches QBO) with a timer; the package stays imported for the backend's life, so the
worker's jobs use the wrapped method. Nothing else of the engine is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import requests

from qbo_sync.install import install
from qbo_sync.pgserver import Cluster, free_port, give_to_server_user, write_secrets_file

DATABASE = "engine_bench"
# qbo-sync as installed and nothing else: each of part 4's runs starts from a copy of it
TEMPLATE_DATABASE = "engine_bench_template"
CLIENT_ID = "bench-engine-client"
CLIENT_SECRET = "bench-engine-secret"
DO_TAG = "$bench_engine$"

# Run in a worker's backend before its CALL: load the package, wrap Connection.send (a job's
# call, pacing and retries included) and Transport.send (one request, by kind: "call" or
# "batch") once; after each request, the backend's peak and current memory (VmHWM, VmRSS, in
# kB) and the blocks Python has allocated (sys.getallocatedblocks: what of it is Python's).
INSTRUMENT = """
plpy.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
plpy.execute("SELECT qbo_sync.python_loader()")
GD["qbo_sync_load"](plpy)
import sys, time
from qbo_sync_db import api, transport
def memory_now():
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                found[line[:5]] = int(line.split()[1])
    return [found.get("VmHWM"), found.get("VmRSS"), sys.getallocatedblocks()]
if not getattr(api.Connection.send, "bench_engine", False):
    totals = {"send_seconds": 0.0, "sends": 0, "requests": {}, "memory_kb": []}
    send_call = api.Connection.send
    def send(self, build):
        started = time.perf_counter()
        try:
            return send_call(self, build)
        finally:
            totals["send_seconds"] += time.perf_counter() - started
            totals["sends"] += 1
    send.bench_engine = totals
    api.Connection.send = send
    send_request = transport.Transport.send
    def send_one(self, request):
        started = time.perf_counter()
        try:
            return send_request(self, request)
        finally:
            kind = totals["requests"].setdefault(request.kind, {"count": 0, "seconds": 0.0})
            kind["count"] += 1
            kind["seconds"] += time.perf_counter() - started
            if len(totals["memory_kb"]) < 200:
                totals["memory_kb"].append(memory_now())
    transport.Transport.send = send_one
"""

# Run after the CALL: the totals, as a session setting the driver reads.
REPORT = """
import json
from qbo_sync_db import api
totals = getattr(api.Connection.send, "bench_engine", None) or {}
plan = plpy.prepare("SELECT pg_catalog.set_config('bench_engine.totals', $1, false)", ["text"])
plpy.execute(plan, [json.dumps(totals)])
"""


def do_block(body: str) -> str:
    if DO_TAG in body:
        raise ValueError("the DO block's dollar-quote tag occurs in its body")
    return f"DO {DO_TAG}{body}{DO_TAG} LANGUAGE plpython3u"


# ----------------------------------------------------------------------------- the simulator


def serve_simulator(port: int) -> None:
    """Run the QBO simulator on `port` with this benchmark's app and no default realm."""
    from aiohttp import web

    from simulator.config import AppConfig, SimulatorConfig
    from simulator.server import make_app

    cfg = SimulatorConfig(
        host="127.0.0.1",
        port=port,
        apps=[AppConfig(CLIENT_ID, CLIENT_SECRET, ["http://localhost/callback"])],
        default_realm_id=None,
        limits_enabled=True,
    )
    web.run_app(make_app(cfg), host="127.0.0.1", port=port, access_log=None, print=None)


class SimulatorProcess:
    """The simulator in its own process (so it competes with nobody's GIL), controlled over
    HTTP through its /_sim surface."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.engine_setup", str(self.port)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = requests.Session()
        self.http.trust_env = False
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

    def control(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        answer = self.http.request(method, self.base_url + path, json=body, timeout=timeout)
        if answer.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else {}

    def configure(self, **settings: Any) -> None:
        self.control("PATCH", "/_sim/config", settings)

    def seed_realm(self, realm: str, sizes: dict[str, int], max_lines: int, seed: int) -> dict:
        """Create `realm` with a seeded company dated two hours ago (so an incremental pull
        right after the full one does not see the seeding as changes), then put the clock
        back to real time."""
        self.control("POST", "/_sim/clock", {"reset": True, "advance_seconds": -7200})
        try:
            made = self.control(
                "POST",
                "/_sim/realms",
                {"realm_id": realm, "seed": seed, "max_lines": max_lines, **sizes},
                timeout=900,
            )
        finally:
            self.control("POST", "/_sim/clock", {"reset": True})
        return made

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def counters(self, realm: str) -> dict[str, int]:
        return self.control("GET", f"/_sim/realms/{realm}/counters")["counters"]

    def change(self, realm: str, entity: str, oid: str, fields: dict[str, Any]) -> None:
        self.control(
            "POST",
            f"/_sim/realms/{realm}/change",
            {"entity": entity, "id": oid, "operation": "update", "fields": fields},
        )

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(keys)}
    return {k: v for k, v in delta.items() if v}


# ----------------------------------------------------------------------------- the database


@contextmanager
def bench_database(base_dir: Path) -> Iterator[str]:
    """A throw-away cluster whose secrets name this benchmark's app, tracking the time spent in
    PL/pgSQL and SQL functions (track_functions = all: pg_stat_user_functions, no extension);
    qbo-sync installed in a database that is not pg_cron's (no scheduled job runs there), and a
    copy of that database as installed (TEMPLATE_DATABASE, see fresh_database)."""
    cluster_dir = base_dir / "pg"
    cluster_dir.mkdir()
    give_to_server_user(cluster_dir, 0o755)
    write_secrets_file(
        cluster_dir / "secrets.env",
        {"QBO_CLIENT_ID": CLIENT_ID, "QBO_CLIENT_SECRET": CLIENT_SECRET},
    )
    cluster = Cluster(
        base_dir=cluster_dir, port=free_port(), extra_settings={"track_functions": "all"}
    )
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        dsn = cluster.dsn(DATABASE)
        install(dsn)
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DATABASE} TEMPLATE {DATABASE}")
        yield dsn
    finally:
        cluster.destroy()


@contextmanager
def fresh_database(dsn: str, name: str) -> Iterator[str]:
    """A new database `name`, a copy of qbo-sync as installed (TEMPLATE_DATABASE), in the
    cluster of `dsn`, checkpointed before it is used and dropped after: runs compared with
    each other each start from the same state, not one from what the runs before it left (a
    database that grows costs each later run more CPU per pulled row)."""
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
        conn.execute("CHECKPOINT")
    try:
        yield psycopg.conninfo.make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def connect_organization(
    conn: psycopg.Connection, sim: SimulatorProcess, realm: str, name: str
) -> uuid.UUID:
    """A new organization connected to `realm` with a fresh grant from the simulator."""
    pair = sim.control("POST", f"/_sim/realms/{realm}/tokens", {"client_id": CLIENT_ID})
    org = uuid.uuid4()
    conn.execute("INSERT INTO public.organizations (id, name) VALUES (%s, %s)", (org, name))
    conn.execute(
        """INSERT INTO public.qbo_connection
               (organization_id, realm_id, environment, api_base_url,
                qbo_access_token_encrypted, qbo_refresh_token_encrypted,
                qbo_token_expires_at, qbo_refresh_token_expires_at)
           VALUES (%s, %s, 'simulator', %s, qbo_sync.encrypt_token(%s),
                   qbo_sync.encrypt_token(%s), now() + make_interval(secs => %s),
                   now() + interval '100 days')""",
        (org, realm, sim.base_url, pair["access_token"], pair["refresh_token"], pair["expires_in"]),
    )
    return org


def set_setting(conn: psycopg.Connection, key: str, value: str) -> None:
    updated = conn.execute(
        "UPDATE qbo_sync.settings SET value = %s WHERE key = %s", (value, key)
    ).rowcount
    if updated != 1:
        raise RuntimeError(f"no qbo_sync setting {key}")


def function_times(conn: psycopg.Connection) -> dict[str, dict[str, float]]:
    """Calls and total milliseconds of qbo_sync's PL/pgSQL and SQL functions, as the statistics
    system has them (a backend's counts arrive when its transaction ends; read after the
    worker's session closed)."""
    conn.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
    rows = conn.execute(
        """SELECT funcname, calls, total_time, self_time FROM pg_catalog.pg_stat_user_functions
            WHERE schemaname = 'qbo_sync'"""
    ).fetchall()
    return {name: {"calls": c, "total_ms": t, "self_ms": s} for name, c, t, s in rows}


def function_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    zero = {"calls": 0, "total_ms": 0.0, "self_ms": 0.0}
    out = {}
    for name, now in after.items():
        was = before.get(name, zero)
        delta = {k: now[k] - was[k] for k in zero}
        if delta["calls"]:
            out[name] = delta
    return out


def wait_for_function_stats(dsn: str, name: str, calls_at_least: int) -> None:
    """A closed backend's counts reach the shared statistics when it exits: wait until `name`
    has been called `calls_at_least` times (e.g. the procedure qbo_sync.worker, once a session:
    a backend's counts arrive all at once)."""
    deadline = time.monotonic() + 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            calls = function_times(conn).get(name, {}).get("calls", 0)
            if calls >= calls_at_least:
                return
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float, float]:
    """CPU seconds the whole machine has been busy and idle since boot, and the part of busy
    that was stolen (/proc/stat, all cores together: idle and iowait count as idle; steal is
    time the hypervisor gave this virtual machine's CPUs to others)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, idle / tick, values[7] / tick


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of a backend, in kB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


class WorkerSession:
    """One backend running the real worker, its QBO calls timed (see the module docstring)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.pid = int(self.conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0])
        self.conn.execute(do_block(INSTRUMENT))
        self.memory_before = memory_kb(self.pid)
        self.cpu_before = cpu_seconds(self.pid)
        self.seconds = 0.0
        self.runs = 0

    def run(self, max_jobs: int | None = None, max_seconds: float | None = None) -> float:
        """CALL the worker until the queue has nothing due (or max_jobs); seconds taken."""
        started = time.perf_counter()
        self.conn.execute("CALL qbo_sync.worker(%s, %s, true)", (max_seconds, max_jobs))
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self.runs += 1
        return elapsed

    def totals(self) -> dict[str, Any]:
        """Time inside Connection.send (HTTP, pacing, retries, token refreshes), the number
        of sends, and the backend's memory."""
        self.conn.execute(do_block(REPORT))
        text = self.conn.execute("SELECT current_setting('bench_engine.totals')").fetchone()[0]
        return {
            **json.loads(text),
            "worker_seconds": self.seconds,
            "runs": self.runs,
            "memory_kb_before": self.memory_before,
            "memory_kb_after": memory_kb(self.pid),
            "cpu_seconds": cpu_seconds(self.pid) - self.cpu_before,
        }

    def close(self) -> None:
        self.conn.close()


class WaitSampler:
    """Samples what the given backends are waiting on (pg_stat_activity, every `interval`
    seconds, active backends only) until stopped: where time goes that is neither CPU nor a
    QBO call. A backend running Python (waiting on HTTP included) has no wait event: it is
    counted as "running"."""

    def __init__(self, dsn: str, pids: list[int], interval: float = 0.1) -> None:
        self.dsn, self.pids, self.interval = dsn, pids, interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    """SELECT coalesce(wait_event_type || ':' || wait_event, 'running')
                         FROM pg_catalog.pg_stat_activity
                        WHERE pid = ANY(%s) AND state = 'active'""",
                    (self.pids,),
                ).fetchall()
                for (event,) in rows:
                    self.counts[event] = self.counts.get(event, 0) + 1
                self.samples += 1
                time.sleep(self.interval)

    def stop(self) -> dict[str, Any]:
        """Each wait event's share of the active backends' samples, largest first."""
        self._stop.set()
        self._thread.join()
        total = sum(self.counts.values()) or 1
        shares = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {"samples": self.samples, "shares": {k: v / total for k, v in shares}}


def jobs_of(conn: psycopg.Connection, job_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Each job's queue status and the summary of its latest history row."""
    cur = conn.execute(
        """SELECT q.id, q.sync_endpoint, q.direction, q.status, q.attempts, q.last_error,
                  h.summary, h.completed_at,
                  extract(epoch FROM h.completed_at - h.started_at) AS seconds
             FROM public.qbo_sync_queue AS q
             LEFT JOIN LATERAL (SELECT * FROM public.qbo_sync_history AS h
                                 WHERE h.queue_job_id = q.id
                                 ORDER BY h.completed_at DESC LIMIT 1) AS h ON true
            WHERE q.id = ANY(%s)""",
        (job_ids,),
    )
    names = [c.name for c in cur.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cur]
    order = {j: i for i, j in enumerate(job_ids)}
    return sorted(rows, key=lambda r: order[r["id"]])


if __name__ == "__main__":
    serve_simulator(int(sys.argv[1]))

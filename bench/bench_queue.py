"""Queue benchmark: claim/complete throughput at a 200,000-job backlog; claim latency vs backlog.

Everything runs in one throw-away PostgreSQL 15 cluster: first the baseline (bare committed
one-row updates per second over 1 and 4 connections), then the queue configurations, each starting
from a freshly filled backlog, then single-claim latency at a small and a large backlog. Figures
are reported as ratios to the baseline of the same run, because absolute rates drift on shared
machines. Results: a table on stdout and bench/results/queue.json.

"""

from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from bench.common import format_table, machine_info, temporary_cluster, write_results
from qbo_sync.install import install

DATABASE = "queue_bench"
ORGANIZATIONS = 100
BACKLOG = 200_000
SMALL_BACKLOG = 2_000
BATCH = 50
WARMUP_ROUNDS = 6  # psycopg prepares a statement on its 5th execution

#: The claim functions a worker may call (never built from user input).
CLAIM_FUNCTIONS = {"shipped": "qbo_sync.claim"}

FILL_SQL = """
INSERT INTO public.qbo_sync_queue
    (organization_id, sync_endpoint, direction, priority, status, entity_ids, source)
SELECT orgs.ids[1 + g % {organizations}],
       (ARRAY['items', 'customers', 'invoices', 'payments'])[1 + floor(random() * 4)::integer],
       'pull',
       (ARRAY['low', 'normal', 'high', 'urgent']::public.qbo_sync_priority[])
           [1 + floor(random() * 4)::integer],
       'pending',
       ARRAY[g::text],
       'bench'
  FROM generate_series(1, {count}) AS g,
       (SELECT array_agg(id ORDER BY id) AS ids FROM public.organizations) AS orgs
"""


@dataclass
class WorkerSpec:
    """What one worker does: `kind` is update (baseline), single, single_tx or batch."""

    dsn: str
    kind: str
    index: int
    seconds: float
    claim_function: str = "qbo_sync.claim"
    batch: int = 1
    max_jobs: int | None = None  # stop after this many jobs (latency runs)
    record_latency: bool = False


@dataclass
class WorkerResult:
    jobs: int = 0
    seconds: float = 0.0
    lost: int = 0  # complete() returned false (never expected here)
    claim_ms: list[float] = field(default_factory=list)
    cycle_ms: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class Row:
    """One line of the throughput table."""

    configuration: str
    claim: str
    workers: int
    batch: int
    jobs: int
    seconds: float
    per_second: float
    baseline_per_second: float
    ratio: float
    lost: int


# --- workers ---------------------------------------------------------------------------------


def _one_cycle(
    cur: psycopg.Cursor[Any],
    conn: psycopg.Connection[Any],
    spec: WorkerSpec,
    name: str,
    result: WorkerResult,
) -> bool:
    """Do one unit of work; False when the backlog is empty."""
    if spec.kind == "update":
        cur.execute("UPDATE bench_counter SET n = n + 1 WHERE id = %s", (spec.index,))
        result.jobs += 1
        return True

    claim_sql = f"SELECT id, lease_id FROM {spec.claim_function}(%s, %s)"
    started = time.perf_counter()
    if spec.kind in ("single", "single_tx"):
        cur.execute(claim_sql, (1, name))
        row = cur.fetchone()
        claimed = time.perf_counter()
        if row is None:
            if spec.kind == "single_tx":
                conn.rollback()
            return False
        cur.execute("SELECT qbo_sync.complete(%s, %s, NULL)", row)
        done = cur.fetchone()
        if spec.kind == "single_tx":
            conn.commit()
        result.jobs += 1
        result.lost += 0 if done and done[0] else 1
    else:  # batch: claim many, then complete them all in one statement
        cur.execute(claim_sql, (spec.batch, name))
        rows = cur.fetchall()
        claimed = time.perf_counter()
        if not rows:
            return False
        cur.execute(
            "SELECT count(*) FILTER (WHERE qbo_sync.complete(j.id, j.lease_id, NULL))"
            " FROM unnest(%s::uuid[], %s::uuid[]) AS j(id, lease_id)",
            ([r[0] for r in rows], [r[1] for r in rows]),
        )
        completed = cur.fetchone()
        result.jobs += len(rows)
        result.lost += len(rows) - (completed[0] if completed else 0)
    if spec.record_latency:
        finished = time.perf_counter()
        result.claim_ms.append((claimed - started) * 1000)
        result.cycle_ms.append((finished - started) * 1000)
    return True


def run_worker(spec: WorkerSpec, barrier: Any, results: Any) -> None:
    """Connect, warm up (prepares the statements), wait for the others, then work until the time
    or the job count is reached; put a WorkerResult on `results`."""
    result = WorkerResult()
    name = f"bench-{spec.index}"
    try:
        with psycopg.connect(spec.dsn, autocommit=spec.kind != "single_tx") as conn:
            cur = conn.cursor()
            warmup = WorkerResult()
            for _ in range(WARMUP_ROUNDS if spec.max_jobs is None else 0):
                _one_cycle(cur, conn, spec, name, warmup)
            barrier.wait()
            started = time.perf_counter()
            deadline = started + spec.seconds
            while time.perf_counter() < deadline:
                if spec.max_jobs is not None and result.jobs >= spec.max_jobs:
                    break
                if not _one_cycle(cur, conn, spec, name, result):
                    break
            result.seconds = time.perf_counter() - started
    except Exception as exc:  # reported by the parent; a broken barrier must not hang it
        result.error = f"{type(exc).__name__}: {exc}"
        barrier.abort()
    results.put(result)


def run_workers(specs: list[WorkerSpec], mode: str) -> WorkerResult:
    """Run the workers concurrently (processes or threads) and add up their results."""
    if mode == "processes":
        context = multiprocessing.get_context("spawn")
        barrier: Any = context.Barrier(len(specs))
        results: Any = context.Queue()
        runners: list[Any] = [
            context.Process(target=run_worker, args=(spec, barrier, results)) for spec in specs
        ]
    else:
        barrier = threading.Barrier(len(specs))
        results = queue_module.Queue()
        runners = [
            threading.Thread(target=run_worker, args=(spec, barrier, results)) for spec in specs
        ]
    for runner in runners:
        runner.start()
    collected = [results.get(timeout=max(spec.seconds for spec in specs) + 120) for _ in specs]
    for runner in runners:
        runner.join()
    errors = [r.error for r in collected if r.error]
    if errors:
        raise RuntimeError("a benchmark worker failed: " + errors[0])
    total = WorkerResult()
    for r in collected:
        total.jobs += r.jobs
        total.lost += r.lost
        total.seconds = max(total.seconds, r.seconds)
        total.claim_ms.extend(r.claim_ms)
        total.cycle_ms.extend(r.cycle_ms)
    return total


# --- database setup --------------------------------------------------------------------------


def prepare_database(admin_dsn: str, dsn: str) -> None:
    """Create the benchmark database, install qbo-sync, add organizations and the baseline table."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    install(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.organizations (id, name)"
            " SELECT gen_random_uuid(), 'bench org ' || g FROM generate_series(1, %s) AS g",
            (ORGANIZATIONS,),
        )
        conn.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO bench_counter SELECT g, 0 FROM generate_series(0, 63) AS g")
        conn.execute("VACUUM ANALYZE")


def refill(dsn: str, pending: int, completed: int = 0) -> None:
    """Empty the queue table, then fill it with `pending` jobs (and `completed` finished ones)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE public.qbo_sync_queue")
        if completed:
            conn.execute(FILL_SQL.format(organizations=ORGANIZATIONS, count=completed))
            conn.execute(
                "UPDATE public.qbo_sync_queue SET status = 'completed', attempts = 1,"
                " completed_at = now()"
            )
        conn.execute(FILL_SQL.format(organizations=ORGANIZATIONS, count=pending))
        conn.execute("VACUUM ANALYZE public.qbo_sync_queue")


def claim_plan(dsn: str, claim_function: str, max_jobs: int) -> str:
    """The plan PostgreSQL actually runs inside the claim function (through auto_explain)."""
    lines: list[str] = []
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.add_notice_handler(lambda diag: lines.append(diag.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "log_min_duration = 0",
            "log_nested_statements = on",
            "log_analyze = on",
            "log_level = notice",
        ):
            conn.execute(f"SET LOCAL auto_explain.{setting}")
        conn.execute(f"SELECT id FROM {claim_function}(%s, 'explain')", (max_jobs,)).fetchall()
        conn.rollback()
    plans = [text for text in lines if "UPDATE public.qbo_sync_queue" in text]
    if not plans:
        return "(no plan captured)"
    text = plans[0]
    # keep the plan, not the function's source text
    start = text.find("Update on qbo_sync_queue")
    return text[start:] if start >= 0 else text


# --- measurements ----------------------------------------------------------------------------


def measure_baseline(dsn: str, workers: int, seconds: float, mode: str) -> WorkerResult:
    specs = [WorkerSpec(dsn=dsn, kind="update", index=i, seconds=seconds) for i in range(workers)]
    return run_workers(specs, mode)


def measure_queue(
    dsn: str, kind: str, workers: int, batch: int, seconds: float, claim_function: str, mode: str
) -> WorkerResult:
    refill(dsn, BACKLOG)
    specs = [
        WorkerSpec(
            dsn=dsn, kind=kind, index=i, seconds=seconds, claim_function=claim_function, batch=batch
        )
        for i in range(workers)
    ]
    return run_workers(specs, mode)


def measure_latency(
    dsn: str, pending: int, completed: int, samples: int, seconds: float, claim_function: str
) -> dict[str, Any]:
    """Single claims (claim, then complete, each committed) by one worker: median and p95."""
    refill(dsn, pending, completed)
    spec = WorkerSpec(
        dsn=dsn,
        kind="single",
        index=0,
        seconds=seconds,
        claim_function=claim_function,
        max_jobs=samples,
        record_latency=True,
    )
    # warm up in the same session is not possible across calls, so drop the first 6 samples
    result = run_workers([spec], "threads")
    claim_ms = result.claim_ms[WARMUP_ROUNDS:]
    cycle_ms = result.cycle_ms[WARMUP_ROUNDS:]
    return {
        "pending": pending,
        "completed_rows": completed,
        "table_rows": pending + completed,
        "claim": claim_function,
        "samples": len(claim_ms),
        "claim_median_ms": statistics.median(claim_ms),
        "claim_p95_ms": percentile(claim_ms, 95),
        "cycle_median_ms": statistics.median(cycle_ms),
        "cycle_p95_ms": percentile(cycle_ms, 95),
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


# --- main ------------------------------------------------------------------------------------

CONFIGURATIONS = (
    # (name, kind, batch)
    ("claim 1 + complete, 2 commits", "single", 1),
    ("claim 1 + complete, 1 commit", "single_tx", 1),
    (f"claim {BATCH} + complete all, 2 commits", "batch", BATCH),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench --only queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="how long each throughput configuration runs (default 5)",
    )
    parser.add_argument(
        "--mode",
        choices=("processes", "threads"),
        default="processes",
        help="run concurrent workers as processes (default) or threads",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    claims = list(CLAIM_FUNCTIONS)
    began = time.perf_counter()
    rows: list[Row] = []
    latency: list[dict[str, Any]] = []
    plans: dict[str, str] = {}
    baseline: dict[int, float] = {}

    with temporary_cluster() as cluster:
        dsn = cluster.dsn(DATABASE)
        prepare_database(cluster.dsn("postgres"), dsn)
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server_version = row[0] if row else "unknown"
            row = conn.execute("SHOW fsync").fetchone()
            fsync = row[0] if row else "unknown"

        print(
            f"queue benchmark: backlog {BACKLOG:,} jobs over {ORGANIZATIONS} organizations, "
            f"{args.seconds:g} s per configuration, workers as {args.mode}",
            flush=True,
        )
        for workers in (1, 4):
            result = measure_baseline(dsn, workers, args.seconds, args.mode)
            baseline[workers] = result.jobs / result.seconds
            rows.append(
                Row(
                    "baseline: bare committed 1-row UPDATE",
                    "-",
                    workers,
                    1,
                    result.jobs,
                    result.seconds,
                    baseline[workers],
                    baseline[workers],
                    1.0,
                    0,
                )
            )
            print(
                f"  baseline {workers} connection(s): {baseline[workers]:,.0f} updates/s",
                flush=True,
            )

        for claim in claims:
            for name, kind, batch in CONFIGURATIONS:
                for workers in (1, 4):
                    result = measure_queue(
                        dsn, kind, workers, batch, args.seconds, CLAIM_FUNCTIONS[claim], args.mode
                    )
                    rate = result.jobs / result.seconds
                    rows.append(
                        Row(
                            name,
                            claim,
                            workers,
                            batch,
                            result.jobs,
                            result.seconds,
                            rate,
                            baseline[workers],
                            rate / baseline[workers],
                            result.lost,
                        )
                    )
                    print(
                        f"  {claim:8} {name}, {workers} worker(s): {rate:,.0f} jobs/s", flush=True
                    )

        for claim in claims:
            for pending, completed in (
                (SMALL_BACKLOG, 0),
                (BACKLOG, 0),
                (SMALL_BACKLOG, BACKLOG - SMALL_BACKLOG),
            ):
                entry = measure_latency(
                    dsn,
                    pending,
                    completed,
                    samples=400,
                    seconds=4.0,
                    claim_function=CLAIM_FUNCTIONS[claim],
                )
                latency.append(entry)
                if completed == 0:
                    plans[f"{claim} claim(1), {pending} pending"] = claim_plan(
                        dsn, CLAIM_FUNCTIONS[claim], 1
                    )
                print(
                    f"  {claim:8} latency at {pending:,} pending + {completed:,} completed: "
                    f"median {entry['claim_median_ms']:.2f} ms",
                    flush=True,
                )
        refill(dsn, BACKLOG)
        plans[f"shipped claim({BATCH}), {BACKLOG} pending"] = claim_plan(
            dsn, CLAIM_FUNCTIONS["shipped"], BATCH
        )

    print()
    print(
        format_table(
            [
                "configuration",
                "claim",
                "workers",
                "batch",
                "jobs",
                "seconds",
                "per s",
                "x baseline",
            ],
            [
                [
                    r.configuration,
                    r.claim,
                    r.workers,
                    r.batch,
                    r.jobs,
                    round(r.seconds, 2),
                    r.per_second,
                    round(r.ratio, 3),
                ]
                for r in rows
            ],
        )
    )
    print()
    latency_rows = []
    for claim in claims:
        entries = [e for e in latency if e["claim"] == CLAIM_FUNCTIONS[claim]]
        small = entries[0]
        for entry in entries:
            latency_rows.append(
                [
                    claim,
                    entry["pending"],
                    entry["completed_rows"],
                    entry["samples"],
                    round(entry["claim_median_ms"], 3),
                    round(entry["claim_p95_ms"], 3),
                    round(entry["cycle_median_ms"], 3),
                    round(entry["cycle_p95_ms"], 3),
                    round(entry["claim_median_ms"] / small["claim_median_ms"], 2),
                ]
            )
            entry["median_ratio_to_small_backlog"] = (
                entry["claim_median_ms"] / small["claim_median_ms"]
            )
    print(
        format_table(
            [
                "claim latency",
                "pending",
                "completed",
                "samples",
                "claim p50 ms",
                "claim p95 ms",
                "claim+complete p50 ms",
                "p95 ms",
                "p50 x 2,000",
            ],
            latency_rows,
        )
    )

    four_worker_rates = {
        f"{r.claim}: {r.configuration}": r.per_second
        for r in rows
        if r.workers == 4 and r.claim != "-"
    }
    target_met = {key: rate >= 5000 for key, rate in four_worker_rates.items()}
    data = {
        "benchmark": "queue",
        "machine": {**machine_info(), "postgresql": server_version, "fsync": fsync},
        "parameters": {
            "backlog": BACKLOG,
            "small_backlog": SMALL_BACKLOG,
            "organizations": ORGANIZATIONS,
            "batch": BATCH,
            "seconds_per_configuration": args.seconds,
            "worker_mode": args.mode,
        },
        "baseline_updates_per_second": {str(k): v for k, v in baseline.items()},
        "throughput": [asdict(r) for r in rows],
        "latency": latency,
        "target_5000_jobs_per_second_with_4_workers": target_met,
        "plans": plans,
        "total_seconds": time.perf_counter() - began,
    }
    path = write_results("queue", data)
    print(f"\nwritten to {path} ({data['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

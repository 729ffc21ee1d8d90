"""What loading the in-database Python costs each PL/Python call.

Every PL/Python entry point makes sure the package it imports is the installed one (same version,
same sources): once per backend and function, after which a dictionary lookup says so until an
install changes the function's catalog row. Measured per call, in one statement of N calls,
against baselines measured in the same run: a bare PL/Python call, and the same call with a
dictionary check in memory (the cheapest check imaginable, which could never notice a
re-install). The 0.1 way, a nested
`SELECT qbo_sync.python_setup()` that read the version and the module list every call, is
measured too.

    python -m bench --only plpython [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import psycopg

from bench.common import format_table, machine_info, temporary_cluster, write_results
from qbo_sync.install import install

FUNCTIONS = {
    "bare PL/Python call (baseline)": "return 1",
    "in-memory check only": 'GD.setdefault("bench_marker", 1)\nreturn GD["bench_marker"]',
    "entry point as shipped (SD fast path)": (
        'if not SD.get("qbo_sync_ready"):\n'
        '    plpy.execute("SELECT qbo_sync.python_loader()")\n'
        '    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None\n'
        "from qbo_sync_db import secrets\n"
        "return 1"
    ),
    "source-hash check on every call (one prepared query)": (
        'if "qbo_sync_load" not in GD:\n'
        '    plpy.execute("SELECT qbo_sync.python_loader()")\n'
        'GD["qbo_sync_load"](plpy)\n'
        "return 1"
    ),
    "nested SELECT qbo_sync.python_setup() (0.1 style)": (
        'plpy.execute("SELECT qbo_sync.python_setup()")\nreturn 1'
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --only plpython", description=__doc__)
    parser.add_argument("--calls", type=int, default=20000, help="calls per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per function (median)")
    return parser.parse_args(argv)


def per_call_microseconds(conn: psycopg.Connection, name: str, calls: int, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        conn.execute(f"SELECT count(pg_temp.{name}()) FROM generate_series(1, %s)", (calls,))
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[dict[str, Any]] = []
    with temporary_cluster() as cluster:
        dsn = cluster.dsn()
        install(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            names = {}
            for index, (label, body) in enumerate(FUNCTIONS.items()):
                name = f"bench_{index}"
                conn.execute(
                    f"CREATE FUNCTION pg_temp.{name}() RETURNS integer LANGUAGE plpython3u"
                    f" AS $body$\n{body}\n$body$"
                )
                names[label] = name
            for name in names.values():  # warm: the loader and the package are in this backend
                conn.execute(f"SELECT pg_temp.{name}()")
            for label, name in names.items():
                results.append(
                    {
                        "function": label,
                        "us_per_call": per_call_microseconds(conn, name, args.calls, args.repeat),
                    }
                )
    baseline = results[0]["us_per_call"]
    memory = results[1]["us_per_call"]
    for row in results:
        row["ratio_to_bare_call"] = row["us_per_call"] / baseline
        row["extra_us_over_in_memory_check"] = row["us_per_call"] - memory
    print(
        format_table(
            ["function", "µs/call", "× bare call", "µs over in-memory check"],
            [
                [
                    r["function"],
                    r["us_per_call"],
                    r["ratio_to_bare_call"],
                    r["extra_us_over_in_memory_check"],
                ]
                for r in results
            ],
        )
    )
    path = write_results(
        "plpython",
        {"machine": machine_info(), "calls": args.calls, "repeat": args.repeat, "results": results},
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

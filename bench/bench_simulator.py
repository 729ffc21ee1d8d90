"""Throughput of the QBO simulator on loopback, against a bare aiohttp baseline.

Starts the simulator (zero latency, no throttling, 1000+ seeded customers) and a bare aiohttp
server returning a small JSON, each in its own subprocess on a free 127.0.0.1 port, then drives
both with the same concurrent aiohttp clients: reads by Id, 1000-row queries, and the baseline.
Prints a table and writes bench/results/simulator.json.

Run: .venv/bin/python bench/bench_simulator.py [--seconds S] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "simulator.json"
REALM = "9341453050298375"
BASELINE_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    return web.json_response({"ok": True, "n": 1})
app = web.Application()
app.router.add_get("/ok", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start")


async def drive(
    name: str, make_url: Any, headers: dict[str, str], seconds: float, concurrency: int
) -> dict[str, Any]:
    """Hit the server with `concurrency` workers for `seconds`; count 200 answers."""
    count = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        stop = time.monotonic() + seconds

        async def worker(seed: int) -> None:
            nonlocal count, errors
            rng = random.Random(seed)
            while time.monotonic() < stop:
                async with session.get(make_url(rng)) as resp:
                    await resp.read()
                    if resp.status == 200:
                        count += 1
                    else:
                        errors += 1

        start = time.monotonic()
        await asyncio.gather(*[worker(i) for i in range(concurrency)])
        elapsed = time.monotonic() - start
    return {
        "name": name,
        "requests": count,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "req_per_s": round(count / elapsed, 1),
    }


async def run(seconds: float, concurrency: int, customers: int) -> list[dict[str, Any]]:
    sim_port, base_port = free_port(), free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(sim_port),
            "--no-limits",
            "--latency-ms",
            "0",
            "--realm-id",
            REALM,
            "--customers",
            str(customers),
            "--items",
            "50",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = subprocess.Popen(
        [sys.executable, "-c", BASELINE_SERVER, str(base_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sim_url, base_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{base_port}"
        await wait_ready(sim_url + "/_sim/health")
        await wait_ready(base_url + "/ok")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{sim_url}/_sim/realms/{REALM}/tokens", json={}) as resp:
                token = (await resp.json())["access_token"]
            async with session.get(f"{sim_url}/_sim/realms/{REALM}") as resp:
                n_customers = (await resp.json())["counts"]["Customer"]
        auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        api = f"{sim_url}/v3/company/{REALM}"
        query = "select * from Customer maxresults 1000"
        rows = [
            await drive(
                "baseline (bare aiohttp JSON)",
                lambda rng: base_url + "/ok",
                {},
                seconds,
                concurrency,
            ),
            await drive(
                "read Customer by Id",
                lambda rng: f"{api}/customer/{rng.randint(1, n_customers)}?minorversion=75",
                auth,
                seconds,
                concurrency,
            ),
            await drive(
                "query 1000 Customers",
                lambda rng: f"{api}/query?query={query}&minorversion=75",
                auth,
                seconds,
                concurrency,
            ),
        ]
    finally:
        for proc in (sim, base):
            proc.terminate()
            proc.wait(10)
    baseline = rows[0]["req_per_s"] or 1.0
    for row in rows:
        row["ratio_to_baseline"] = round(row["req_per_s"] / baseline, 3)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--customers", type=int, default=1000, help="seeded customers")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.seconds, args.concurrency, args.customers))
    print(f"{'scenario':32} {'requests':>9} {'seconds':>8} {'req/s':>9} {'x baseline':>10}")
    for row in rows:
        print(
            f"{row['name']:32} {row['requests']:>9} {row['seconds']:>8.2f} "
            f"{row['req_per_s']:>9.1f} {row['ratio_to_baseline']:>10.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"concurrency": args.concurrency, "customers": args.customers, "results": rows},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How close the pacer gets to QBO's limits, and what one decision costs.

Workers hammer one realm for ten simulated minutes on a virtual clock (nothing sleeps): each asks
`qbo_sync_db.pacing.reserve` (under the realm row's lock, which one worker holds at a time for
`--db-ms`), sleeps exactly the wait it is told, calls, then `release`s and asks again at once.
A virtual QBO counts every request when it arrives (up to `--jitter-ms` after the reservation)
and reports the most any 60-second and 1-second window held, the most in flight, and every
request over a limit (what would have been a 429). Figures: requests a minute against 500 and
batches a minute against 40, as fractions.

The cost of the pure functions is measured per call against baselines measured in the same run:
copying the state's dict and setting one key (the cheapest conceivable new state), and
json.loads + json.dumps of the state (which the database side does anyway, reading and writing
jsonb).

    python -m bench --only pacing [--minutes 10] [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbo_sync_db import pacing

from bench.common import format_table, machine_info, write_results

T0 = 1_700_000_000.0
QBO_LIMITS = {"per_minute": (500, 60.0), "per_second": (10, 1.0), "batches": (40, 60.0)}


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    latency: tuple[float, float]  # seconds a call takes, uniform in this range
    batch_share: float = 0.0  # the fraction of requests that are batches
    batch_latency: tuple[float, float] = (1.0, 3.0)
    limits: pacing.Limits = pacing.DEFAULT_LIMITS
    jitter_ms: float | None = None  # None: --jitter-ms


NO_MARGINS = pacing.Limits(headroom=0, skew_seconds=0)
SCENARIOS = (
    Scenario("1 worker, calls, instant answers", 1, (0.0, 0.0)),
    Scenario("1 worker, calls, 0.2-0.6 s", 1, (0.2, 0.6)),
    Scenario("4 workers, calls, instant answers", 4, (0.0, 0.0)),
    Scenario("4 workers, calls, 0.2-0.6 s", 4, (0.2, 0.6)),
    Scenario("4 workers, batches, 1-3 s", 4, (0.2, 0.6), batch_share=1.0),
    Scenario("8 workers, calls, 0.2-0.6 s", 8, (0.2, 0.6)),
    Scenario("8 workers, 1 batch in 16, 0.2-0.6 s", 8, (0.2, 0.6), batch_share=1 / 16),
    Scenario("16 workers, calls, 1.5-2.5 s", 16, (1.5, 2.5)),
    Scenario("8 workers, calls, no headroom", 8, (0.2, 0.6), limits=pacing.Limits(headroom=0)),
    Scenario(
        "8 workers, calls, no margins, no jitter",
        8,
        (0.2, 0.6),
        limits=NO_MARGINS,
        jitter_ms=0.0,
    ),
    Scenario("8 workers, calls, no margins", 8, (0.2, 0.6), limits=NO_MARGINS),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --only pacing", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    parser.add_argument("--db-ms", type=float, default=1.0, help="row lock held per decision")
    parser.add_argument(
        "--jitter-ms", type=float, default=150.0, help="most a request reaches QBO late"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000, help="calls per cost measurement")
    parser.add_argument("--repeat", type=int, default=5, help="cost measurements (median)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------- simulation


def most_in_window(times: list[float], window: float, weights: list[int] | None = None) -> int:
    """The most requests (or weight) any half-open window [a, a + window) holds; times sorted."""
    weights = weights or [1] * len(times)
    worst = total = first = 0
    for index, start in enumerate(times):
        total += weights[index]
        while times[first] <= start - window:
            total -= weights[first]
            first += 1
        worst = max(worst, total)
    return worst


def over_limit(times: list[float], window: float, limit: int) -> int:
    """How many requests arrived while `limit` others had already arrived in the last window."""
    over = first = 0
    for index, arrival in enumerate(times):
        while times[first] <= arrival - window:
            first += 1
        if index - first + 1 > limit:
            over += 1
    return over


def most_in_flight(intervals: list[tuple[float, float]]) -> int:
    """The most closed intervals [arrival, answer] that overlap (an instant answer counts 1)."""
    starts = [(start, 0, 1) for start, _ in intervals]  # at equal times starts count first
    ends = [(end, 1, -1) for _, end in intervals]
    worst = current = 0
    for _, _order, step in sorted(starts + ends):
        current += step
        worst = max(worst, current)
    return worst


def simulate(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}:{scenario.name}")
    limits = scenario.limits
    seconds = args.minutes * 60
    db = args.db_ms / 1000
    jitter = (args.jitter_ms if scenario.jitter_ms is None else scenario.jitter_ms) / 1000
    state: dict[str, Any] | None = None
    lock_free = T0  # the realm row: one decision at a time
    decisions = waits = 0
    arrivals: list[tuple[float, str]] = []  # (when QBO counts it, kind)
    intervals: list[tuple[float, float]] = []  # (arrival at QBO, answer back) of every request
    # (time, worker, slot, kind): slot None means "ask the pacer"; a slot means "call ended"
    queue: list[tuple[float, int, int | None, str]] = [
        (T0, w, None, "") for w in range(scenario.workers)
    ]
    while queue:
        now, worker, slot, kind = heapq.heappop(queue)
        now = max(now, lock_free)  # wait for the row lock
        lock_free = now + db
        decisions += 1
        if slot is not None:
            state = pacing.release(state, now, slot, limits=limits)
            now = lock_free  # asks again right after its commit
            lock_free = now + db
            decisions += 1
        if now >= T0 + seconds:
            continue
        kind = "batch" if rng.random() < scenario.batch_share else "call"
        decision, state = pacing.reserve(state, now, kind, limits)
        if not decision.go:
            waits += 1
            heapq.heappush(queue, (now + decision.wait_seconds, worker, None, ""))
            continue
        start = now + db  # after the commit
        latency = scenario.batch_latency if kind == "batch" else scenario.latency
        end = start + rng.uniform(*latency)
        arrival = min(start + rng.uniform(0, jitter), end)
        arrivals.append((arrival, kind))
        intervals.append((arrival, end))
        heapq.heappush(queue, (end, worker, decision.slot, kind))

    arrivals.sort()
    times = [t for t, _ in arrivals]
    batch_times = [t for t, kind in arrivals if kind == "batch"]
    minutes = args.minutes
    requests, batches = len(times), len(batch_times)
    over = sum(
        over_limit(series, window, limit)
        for series, (limit, window) in zip(
            (times, times, batch_times), QBO_LIMITS.values(), strict=True
        )
    )
    return {
        "scenario": scenario.name,
        "workers": scenario.workers,
        "requests_per_minute": requests / minutes,
        "fraction_of_500": requests / minutes / 500,
        "batches_per_minute": batches / minutes,
        "fraction_of_40": batches / minutes / 40,
        "most_in_60_s": most_in_window(times, 60.0),
        "most_in_1_s": most_in_window(times, 1.0),
        "most_batches_in_60_s": most_in_window(batch_times, 60.0) if batch_times else 0,
        "most_in_flight": most_in_flight(intervals),
        "over_a_limit": over,
        "decisions_per_request": decisions / max(requests, 1),
        "row_lock_busy": decisions * db / seconds,
        "waits_per_request": waits / max(requests, 1),
        "jitter_ms": jitter * 1000,
        "limits": limits.as_dict(),
    }


# ------------------------------------------------------------------------------------- cost


def busy_state() -> tuple[dict[str, Any], float]:
    """A realm's state when it is busy: every limit charged, 9 slots in flight, a backoff that
    ended half a minute ago (kept for its level); `now` is the last reservation's time."""
    state = pacing.throttled(None, T0, jitter=0.5)
    now = T0 + 30
    for index in range(9):
        decision, state = pacing.reserve(state, now, "batch" if index == 0 else "call")
        assert decision.go
        now += 0.13 if index == 0 else 0.125
    return state, now - 0.125


def per_call_us(step: Callable[[int], object], calls: int, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for index in range(calls):
            step(index)
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(timings)


def costs(calls: int, repeat: int) -> list[dict[str, Any]]:
    limits = pacing.DEFAULT_LIMITS
    state, now = busy_state()
    text = json.dumps(state)
    now_us = pacing.to_us(now)

    def later(i: int) -> float:  # past every limit's next start, before any slot expires
        return now + 0.2 + (i % 1000) * 1e-4

    def dict_update(i: int) -> object:
        new = dict(state)
        new["seen"] = now_us + i
        return new

    def json_round_trip(i: int) -> object:
        return json.dumps(json.loads(text))

    def reserve_and_release(i: int) -> object:
        decision, new = pacing.reserve(state, later(i), "call", limits)
        return pacing.release(new, later(i), decision.slot, limits=limits)

    def reserve_wait(i: int) -> object:
        return pacing.reserve(state, now, "call", limits)

    def throttled(i: int) -> object:
        return pacing.throttled(state, later(i), 5, None, limits)

    def as_stored(i: int) -> object:
        decision, new = pacing.reserve(json.loads(text), later(i), "call", limits)
        released = pacing.release(
            json.loads(json.dumps(new)), later(i), decision.slot, limits=limits
        )
        return json.dumps(released)

    assert pacing.reserve(state, later(0), "call", limits)[0].go
    assert pacing.reserve(state, now, "call", limits)[0].reason == "per_minute"
    rows = [
        ("baseline: copy the state's dict, set one key", dict_update),
        ("baseline: json.loads + json.dumps of the state", json_round_trip),
        ("reserve (go) + release", reserve_and_release),
        ("reserve (wait)", reserve_wait),
        ("throttled", throttled),
        ("reserve + release with jsonb in/out (2 × loads + dumps)", as_stored),
    ]
    results = [
        {"function": label, "us_per_call": per_call_us(step, calls, repeat)} for label, step in rows
    ]
    base, round_trip = results[0]["us_per_call"], results[1]["us_per_call"]
    for row in results:
        row["ratio_to_dict_update"] = row["us_per_call"] / base
        row["ratio_to_json_round_trip"] = row["us_per_call"] / round_trip
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [simulate(scenario, args) for scenario in SCENARIOS]
    print(
        f"{args.minutes:g} simulated minutes per row; row lock {args.db_ms:g} ms per decision;"
        f" requests reach QBO up to {args.jitter_ms:g} ms after their reservation"
    )
    print(
        format_table(
            [
                "scenario",
                "req/min",
                "× 500",
                "batch/min",
                "× 40",
                "max 60 s",
                "max 1 s",
                "max in flight",
                "over a limit",
                "decisions/req",
                "row busy",
            ],
            [
                [
                    r["scenario"],
                    r["requests_per_minute"],
                    r["fraction_of_500"],
                    r["batches_per_minute"],
                    r["fraction_of_40"],
                    r["most_in_60_s"],
                    r["most_in_1_s"],
                    r["most_in_flight"],
                    r["over_a_limit"],
                    r["decisions_per_request"],
                    r["row_lock_busy"],
                ]
                for r in scenarios
            ],
        )
    )
    print()
    cost = costs(args.calls, args.repeat)
    print(
        format_table(
            ["function", "µs/call", "× dict update", "× json round trip"],
            [
                [
                    r["function"],
                    r["us_per_call"],
                    r["ratio_to_dict_update"],
                    r["ratio_to_json_round_trip"],
                ]
                for r in cost
            ],
        )
    )
    state, _now = busy_state()
    path = write_results(
        "pacing",
        {
            "machine": machine_info(),
            "minutes": args.minutes,
            "db_ms": args.db_ms,
            "jitter_ms": args.jitter_ms,
            "seed": args.seed,
            "state_bytes_busy": len(json.dumps(state)),
            "scenarios": scenarios,
            "cost": cost,
            "calls": args.calls,
            "repeat": args.repeat,
        },
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

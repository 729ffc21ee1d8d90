"""The pacing arithmetic (qbo_sync_db.pacing) under the Python the database server runs: plain
unittest, no hypothesis, so tests/unit/test_qbo_debian_python.py runs it with Debian's
/usr/bin/python3 too (the property tests in test_pacing.py run in the venv). Each test drives the
pure functions on a virtual clock the way the shared pacer does, and checks the limits at QBO's
side of the wire."""

from __future__ import annotations

import json
import unittest
from bisect import bisect_left
from decimal import Decimal

from qbo_sync_db import pacing
from qbo_sync_db.pacing import Limits


def busiest(times: list[float], window: float) -> int:
    """The most request start times within any half-open window of `window` seconds."""
    times = sorted(times)
    return max(
        (i - bisect_left(times, t - window) + 1 for i, t in enumerate(times)),
        default=0,
    )


def run(kind: str, seconds: float, limits: Limits, answer_after: float = 0.0) -> list[float]:
    """One eager backend: ask, go or sleep the wait, release after `answer_after`; the state
    goes through JSON between decisions, as it does through the database."""
    state: dict = {}
    now = 1_700_000_000.0
    end = now + seconds
    started = []
    while now < end:
        decision, state = pacing.reserve(json.loads(json.dumps(state)), now, kind, limits)
        if decision.go:
            started.append(now)
            now += answer_after
            state = pacing.release(state, now, decision.slot, 0, limits)
        else:
            now += decision.wait_seconds
    return started


class PacingUnderTheServersPython(unittest.TestCase):
    def test_calls_never_exceed_500_a_minute_or_10_a_second_and_reach_the_ceiling(self):
        started = run("call", 180, Limits())
        self.assertLessEqual(busiest(started, 60), 500)
        self.assertLessEqual(busiest(started, 1), 10)
        per_minute = len(started) / 3
        self.assertGreaterEqual(per_minute, 0.97 * 500)  # 2 % headroom: a ceiling of 488.4

    def test_batches_never_exceed_40_a_minute(self):
        started = run("batch", 180, Limits())
        self.assertLessEqual(busiest(started, 60), 40)
        self.assertGreaterEqual(len(started) / 3, 0.97 * 40)

    def test_no_more_than_max_in_flight_at_once(self):
        limits = Limits(per_minute=0, per_second=0, batches_per_minute=0, max_in_flight=3)
        state: dict = {}
        slots = []
        for _ in range(3):
            decision, state = pacing.reserve(state, 100.0, "call", limits)
            self.assertTrue(decision.go)
            slots.append(decision.slot)
        decision, state = pacing.reserve(state, 100.0, "call", limits)
        self.assertEqual((decision.go, decision.reason), (False, "max_in_flight"))
        state = pacing.release(state, 100.5, slots[0], 0, limits)
        self.assertTrue(pacing.reserve(state, 100.5, "call", limits)[0].go)
        # a slot nobody releases (its backend died) frees itself when its lease ends
        late = 100.0 + limits.slot_lease_seconds + 1
        self.assertEqual(pacing.in_flight(state, late, limits), 0)

    def test_a_429_stops_every_backend_for_the_backoff_and_honours_retry_after(self):
        limits = Limits()
        decision, state = pacing.reserve({}, 10.0, "call", limits)
        state = pacing.throttled(state, 10.2, None, None, limits, slot=decision.slot, jitter=1.0)
        self.assertEqual(state["backoff"]["level"], 1)
        blocked, _ = pacing.reserve(state, 11.0, "call", limits)
        self.assertEqual(blocked.reason, "backoff")
        self.assertAlmostEqual(11.0 + blocked.wait_seconds, 10.2 + limits.backoff_base_seconds, 5)
        self.assertTrue(pacing.reserve(state, 12.3, "call", limits)[0].go)
        # Retry-After longer than the backoff wins
        state = pacing.throttled({}, 20.0, 45, None, limits, jitter=0.0)
        self.assertEqual(pacing.reserve(state, 64.0, "call", limits)[0].reason, "backoff")
        self.assertTrue(pacing.reserve(state, 65.1, "call", limits)[0].go)

    def test_times_as_the_database_gives_them_and_a_clock_set_back(self):
        limits = Limits()
        go, state = pacing.reserve({}, Decimal("1700000000.123456"), "call", limits)
        self.assertTrue(go.go)
        wait, state = pacing.reserve(state, Decimal("1700000000.123457"), "call", limits)
        self.assertFalse(wait.go)
        # the system clock jumped an hour back: the state moves with it instead of waiting
        after, _ = pacing.reserve(state, 1700000000.2 - 3600, "call", limits)
        self.assertLess(after.wait_seconds, 1)

    def test_limits_come_from_json_and_unknown_keys_are_refused(self):
        self.assertEqual(pacing.as_limits({"per_minute": 100}).per_minute, 100)
        with self.assertRaises(ValueError):
            Limits.from_dict({"per_hour": 1})


if __name__ == "__main__":
    unittest.main()

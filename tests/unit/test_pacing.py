"""qbo_sync_db.pacing without a database: the spacing each limit gets, slots and their leases,
the backoff after a 429, clock readings out of order, and (hypothesis) many backends interleaving
reserve, release, 429s and crashes at random times without any window exceeding a limit or a slot
leaking."""

from __future__ import annotations

import copy
import heapq
import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from qbo_sync_db import pacing
from qbo_sync_db.pacing import Limits

T0 = 1_700_000_000.0  # an epoch-sized time: the float-to-µs conversion is exercised as in the database
EXACT = Limits(headroom=0, skew_seconds=0)  # Intuit's limits with no margin at all
WINDOWS = {"per_minute": 60.0, "per_second": 1.0, "batches_per_minute": 60.0}


def costs(kind: str, limits: Limits) -> dict[str, int]:
    """What one request of `kind` uses of each limit (the module's rule, written out again)."""
    batch = kind == "batch"
    return {
        "per_minute": limits.batch_cost if batch else 1,
        "per_second": 1,
        "batches_per_minute": 1 if batch else 0,
    }


def max_in_window(events: list[tuple[float, dict[str, int]]], name: str, window: float) -> int:
    """The most `name` units that any half-open window [a, a + window) holds (events in order)."""
    worst = total = first = 0
    for start, used in events:
        total += used[name]
        while events[first][0] <= start - window:
            total -= events[first][1][name]
            first += 1
        worst = max(worst, total)
    return worst


def hammer(limits: Limits, kind: str, seconds: float, start: float = T0) -> list[float]:
    """One backend that asks again exactly when told to, for `seconds`: the start times."""
    state, now, starts = None, start, []
    while now < start + seconds:
        decision, state = pacing.reserve(state, now, kind, limits)
        if decision.go:
            starts.append(now)
            state = pacing.release(state, now, decision.slot, limits=limits)
        else:
            now += decision.wait_seconds
    return starts


def window_counts(starts: list[float], window: float) -> int:
    return max_in_window([(t, {"n": 1}) for t in starts], "n", window)


# ---------------------------------------------------------------------------------- the limits


def test_default_spacing_is_the_per_minute_limit_with_its_margins():
    decision, state = pacing.reserve(None, T0)
    assert decision.go and decision.reason == "go" and isinstance(decision.slot, int)
    decision, _ = pacing.reserve(state, T0)
    assert not decision.go and decision.reason == "per_minute" and decision.slot is None
    assert decision.wait_seconds == pytest.approx(60.2 / 490, abs=1e-5)  # (60 s + skew) / 98 %
    decision, _ = pacing.reserve(state, T0 + decision.wait_seconds)
    assert decision.go


@pytest.mark.parametrize(
    ("limits", "kind", "window", "limit"),
    [
        (EXACT, "call", 60.0, 500),
        (Limits(per_minute=0, headroom=0, skew_seconds=0), "call", 1.0, 10),
        (EXACT, "batch", 60.0, 40),
    ],
    ids=["500 calls a minute", "10 calls a second", "40 batches a minute"],
)
def test_without_margins_a_window_holds_exactly_the_limit(limits, kind, window, limit):
    starts = hammer(limits, kind, 10 * window)
    assert window_counts(starts, window) == limit  # reached, never exceeded
    assert len([t for t in starts if t < T0 + window]) == limit  # the first window is full too


def test_a_reading_between_two_microseconds_gains_nothing():
    """`now` is rounded down to a whole µs, which moves a request up to 1 µs earlier on the
    pacer's clock than it really is; every spacing has GUARD_US more, so a request asking at
    the exact whole-µs times the spacing allows still never makes 501 in a real minute."""
    first = Decimal(T0) + Decimal("0.00000099")  # counted as T0 by the pacer
    decision, state = pacing.reserve(None, first, "call", EXACT)
    starts = [first]
    for k in range(1, 520):
        ask = Decimal(T0) + Decimal("0.12") * k
        decision, state = pacing.reserve(state, ask, "call", EXACT)
        if not decision.go:
            ask += Decimal(str(decision.wait_seconds))
            decision, state = pacing.reserve(state, ask, "call", EXACT)
        assert decision.go
        starts.append(ask)
        state = pacing.release(state, ask, decision.slot, limits=EXACT)
    assert sum(1 for t in starts if first <= t < first + 60) == 500


def test_sustained_rate_with_the_default_margins():
    """Ten minutes of one backend asking as soon as allowed: ≥ 95 % of 500 a minute, of 40."""
    calls = hammer(pacing.DEFAULT_LIMITS, "call", 600)
    assert 0.95 * 5000 <= len(calls) <= 5000
    assert window_counts(calls, 60.0) <= 490 and window_counts(calls, 1.0) <= 9
    batches = hammer(pacing.DEFAULT_LIMITS, "batch", 600)
    assert 0.95 * 400 <= len(batches) <= 400
    assert window_counts(batches, 60.0) <= 40 and window_counts(batches, 60.2) <= 40


def test_a_batch_is_one_of_the_per_minute_requests_and_one_of_the_40():
    limits = Limits(per_second=0, headroom=0, skew_seconds=0)
    decision, state = pacing.reserve(None, T0, "batch", limits)
    assert decision.go
    decision, _ = pacing.reserve(state, T0, "call", limits)
    assert decision.reason == "per_minute" and decision.wait_seconds == pytest.approx(
        0.12, abs=1e-5
    )
    decision, _ = pacing.reserve(state, T0 + 1, "batch", limits)
    assert decision.reason == "batches_per_minute"
    assert decision.wait_seconds == pytest.approx(0.5, abs=1e-5)  # 60 / 40 = 1.5 s apart


def test_batch_cost_charges_the_per_minute_limit_for_each_item():
    limits = Limits(batch_cost=30, per_second=0, headroom=0, skew_seconds=0)
    starts = []
    state, now = None, T0
    while now < T0 + 600:
        decision, state = pacing.reserve(state, now, "batch", limits)
        if decision.go:
            starts.append((now, {"units": 30}))
        else:
            now += decision.wait_seconds
    assert max_in_window(starts, "units", 60.0) <= 500
    with pytest.raises(ValueError, match="leaves no room for a request of cost 30"):
        Limits(per_minute=20, batch_cost=30)


def test_a_limit_of_zero_is_off():
    limits = Limits(per_minute=0, per_second=0, batches_per_minute=0, max_in_flight=0)
    state = None
    for _ in range(100):
        decision, state = pacing.reserve(state, T0, "batch", limits)
        assert decision.go
    assert state["tat"] == {} and pacing.in_flight(state, T0, limits) == 100


# ----------------------------------------------------------------------------- slots and leases


NO_RATE = Limits(per_minute=0, per_second=0, batches_per_minute=0, slot_lease_seconds=30)


def take(limits: Limits, count: int, now: float = T0) -> tuple[list[int], dict]:
    state, slots = None, []
    for _ in range(count):
        decision, state = pacing.reserve(state, now, "call", limits)
        assert decision.go
        slots.append(decision.slot)
    return slots, state


def test_ten_in_flight_then_wait_until_one_is_released():
    slots, state = take(NO_RATE, 10)
    assert len(set(slots)) == 10
    decision, state = pacing.reserve(state, T0 + 1, "call", NO_RATE)
    assert decision.reason == "max_in_flight"
    assert decision.wait_seconds == pytest.approx(NO_RATE.in_flight_retry_seconds, abs=1e-5)
    state = pacing.release(state, T0 + 1, slots[3], limits=NO_RATE)
    decision, _ = pacing.reserve(state, T0 + 1, "call", NO_RATE)
    assert decision.go


def test_a_slot_nobody_releases_expires_with_its_lease():
    slots, state = take(NO_RATE, 10)
    assert pacing.in_flight(state, T0 + 29.9, NO_RATE) == 10
    decision, _ = pacing.reserve(state, T0 + 29.95, "call", NO_RATE)
    assert decision.reason == "max_in_flight" and decision.wait_seconds <= 0.050002
    assert pacing.in_flight(state, T0 + 30, NO_RATE) == 0
    decision, state = pacing.reserve(state, T0 + 30, "call", NO_RATE)
    assert decision.go and state["slots"] == [
        [decision.slot, pacing.to_us(T0 + 30), state["slots"][0][2]]
    ]


def test_release_of_an_unknown_expired_or_released_slot_changes_nothing():
    slots, state = take(NO_RATE, 2)
    once = pacing.release(state, T0 + 1, slots[0], limits=NO_RATE)
    assert pacing.release(once, T0 + 1, slots[0], limits=NO_RATE) == once
    assert pacing.release(once, T0 + 1, 12345, limits=NO_RATE) == once
    assert pacing.release(once, T0 + 1, None, limits=NO_RATE) == once
    assert pacing.in_flight(once, T0 + 1, NO_RATE) == 1
    assert pacing.release(once, T0 + 31, slots[1], limits=NO_RATE)["slots"] == []  # long expired


def test_a_timed_out_call_keeps_its_slot_for_the_linger():
    slots, state = take(NO_RATE, 1)
    state = pacing.release(state, T0 + 5, slots[0], linger_seconds=10, limits=NO_RATE)
    assert pacing.in_flight(state, T0 + 14.9, NO_RATE) == 1
    assert pacing.in_flight(state, T0 + 15, NO_RATE) == 0
    with pytest.raises(ValueError):
        pacing.release(state, T0, slots[0], linger_seconds=-1)


def test_slot_tokens_of_a_recreated_state_do_not_collide():
    first, _ = take(NO_RATE, 3)
    again, _ = take(NO_RATE, 3, now=T0 + 60)
    assert not set(first) & set(again)


# --------------------------------------------------------------------------------------- 429s


def test_a_429_stops_every_backend_for_the_backoff():
    _decision, state = pacing.reserve(None, T0)
    state = pacing.throttled(state, T0 + 0.5, jitter=1.0)
    decision, _ = pacing.reserve(state, T0 + 2.4, "batch")
    assert decision.reason == "backoff" and decision.wait_seconds == pytest.approx(0.1, abs=1e-5)
    assert pacing.reserve(state, T0 + 2.5)[0].go


def test_retry_after_is_honoured_and_capped():
    state = pacing.throttled(None, T0, retry_after=30, jitter=0)
    assert pacing.reserve(state, T0 + 29.99)[0].reason == "backoff"
    assert pacing.reserve(state, T0 + 30)[0].go
    state = pacing.throttled(None, T0, retry_after=Decimal("86400"), jitter=0)
    assert pacing.reserve(state, T0 + 3600)[0].go  # retry_after_max_seconds
    state = pacing.throttled(None, T0, retry_after=0.1, jitter=0)
    assert pacing.reserve(state, T0 + 0.5)[0].reason == "backoff"  # never under half the base


def backoff_seconds(state: dict, now: float) -> float:
    return (state["backoff"]["until"] - pacing.to_us(now)) / pacing.US


def test_each_new_episode_doubles_the_delay_up_to_the_maximum():
    state, now, delays = None, T0, []
    for _ in range(8):
        state = pacing.throttled(state, now, jitter=1.0)
        delays.append(backoff_seconds(state, now))
        now += delays[-1] + 1  # a request after the backoff is throttled again
    assert delays == [2, 4, 8, 16, 32, 60, 60, 60]
    assert state["backoff"]["level"] == 8
    quiet = now + 60 + delays[-1]  # a quiet minute after the backoff: back to the base delay
    assert backoff_seconds(pacing.throttled(state, quiet, jitter=1.0), quiet) == 2


def test_the_429s_of_requests_already_in_flight_are_one_episode():
    state, slots = None, []
    for index in range(3):
        decision, state = pacing.reserve(state, T0 + index * 0.2)
        slots.append(decision.slot)
    state = pacing.throttled(state, T0 + 1, slot=slots[0], jitter=1.0)
    state = pacing.throttled(state, T0 + 1.1, slot=slots[1], jitter=1.0)
    state = pacing.throttled(state, T0 + 5, slot=slots[2], jitter=1.0)  # after the backoff ended
    assert state["backoff"]["level"] == 1 and state["slots"] == []
    assert backoff_seconds(state, T0 + 5) == 2  # extended from the latest 429, not doubled
    decision, state = pacing.reserve(state, T0 + 7)
    state = pacing.throttled(state, T0 + 8, slot=decision.slot, jitter=1.0)
    assert state["backoff"]["level"] == 2 and backoff_seconds(state, T0 + 8) == 4


def test_without_a_slot_a_429_during_the_backoff_is_the_same_episode():
    state = pacing.throttled(None, T0, jitter=1.0)
    state = pacing.throttled(state, T0 + 1, jitter=1.0)
    assert state["backoff"]["level"] == 1
    state = pacing.throttled(state, T0 + 10, jitter=1.0)
    assert state["backoff"]["level"] == 2


def test_attempt_is_a_floor_for_the_exponent_and_jitter_is_between_half_and_all():
    state = pacing.throttled(None, T0, attempt=4, jitter=0.0)
    assert backoff_seconds(state, T0) == 8  # half of 2 × 2³
    assert state["backoff"]["level"] == 1
    huge = pacing.throttled(None, T0, attempt=10_000, jitter=1.0)
    assert backoff_seconds(huge, T0) == 60
    derived = [backoff_seconds(pacing.throttled(None, T0 + i), T0 + i) for i in range(50)]
    assert all(1 <= d <= 2 for d in derived) and len(set(derived)) > 10
    assert pacing.throttled(None, T0) == pacing.throttled(None, T0)  # pure: no hidden randomness
    with pytest.raises(ValueError):
        pacing.throttled(None, T0, jitter=1.5)


# ------------------------------------------------------------------------ the clock and the state


def test_a_late_reading_is_taken_as_the_latest_time():
    _decision, state = pacing.reserve(None, T0 + 1)
    decision, _ = pacing.reserve(state, T0 + 0.9)  # read before the other backend's reading
    assert decision.reason == "per_minute"
    assert decision.wait_seconds == pytest.approx(0.12286, abs=1e-5)  # from T0 + 1, not T0 + 0.9


def test_a_clock_set_back_moves_the_state_back_instead_of_freezing():
    slots, state = take(Limits(slot_lease_seconds=30), 1)
    back = T0 - 3600
    decision, moved = pacing.reserve(state, back)
    assert decision.reason == "per_minute" and decision.wait_seconds < 0.2
    assert pacing.in_flight(moved, back + 29.9) == 1 and pacing.in_flight(moved, back + 30) == 0
    assert pacing.release(moved, back, slots[0])["slots"] == []


def test_functions_never_change_the_state_they_are_given():
    _decision, state = pacing.reserve(None, T0)
    state = pacing.throttled(state, T0, jitter=0.5)
    original = copy.deepcopy(state)
    pacing.reserve(state, T0 + 100, "batch")
    pacing.release(state, T0 + 1, state["slots"][0][0])
    pacing.throttled(state, T0 + 2, slot=state["slots"][0][0])
    pacing.in_flight(state, T0 + 3)
    assert state == original


def test_state_round_trips_through_json_and_stays_small():
    state, now, sizes = None, T0, []
    for index in range(200):
        decision, state = pacing.reserve(state, now, "batch" if index % 7 == 0 else "call")
        state = json.loads(json.dumps(state))  # as stored in jsonb
        if index % 5 == 0:
            state = pacing.throttled(state, now, retry_after=1, jitter=0.3)
        sizes.append(len(json.dumps(state)))
        now += 0.05
    assert max(sizes) < 1000
    assert pacing.reserve({}, T0)[0].go and pacing.reserve(None, Decimal("1700000000.25"))[0].go
    with pytest.raises(ValueError, match="version"):
        pacing.reserve({"v": 99}, T0)
    with pytest.raises(ValueError, match="finite"):
        pacing.reserve(None, math.nan)
    with pytest.raises(ValueError, match="kind"):
        pacing.reserve(None, T0, "report")


def test_limits_from_json():
    assert pacing.as_limits(None) == pacing.DEFAULT_LIMITS == Limits.from_dict({})
    assert pacing.as_limits({"per_minute": 100}).per_minute == 100
    assert Limits.from_dict(Limits(headroom=0.1).as_dict()).headroom == 0.1
    with pytest.raises(ValueError, match="unknown pacing limits: per_hour"):
        Limits.from_dict({"per_hour": 1})
    for bad in ({"per_minute": -1}, {"per_minute": 1.5}, {"headroom": 1}, {"per_second": True}):
        with pytest.raises(ValueError):
            Limits.from_dict(bad)
    with pytest.raises(ValueError):
        Limits(backoff_base_seconds=100)


# ------------------------------------------------------------------- many backends (hypothesis)

# weighted by repetition: mostly asking (and asking again when told), rarely a 429 or a crash
ACTIONS = ("call",) * 3 + ("retry",) * 5 + ("batch",) * 2 + ("release",) * 4
ACTIONS += ("timeout", "throttle", "crash")


def buildable(kwargs: dict) -> bool:
    try:
        Limits(**kwargs)
    except ValueError:
        return False
    return True


def limits_strategy(**fields) -> st.SearchStrategy[Limits]:
    return st.fixed_dictionaries(fields).filter(buildable).map(lambda kwargs: Limits(**kwargs))


SMALL_LIMITS = limits_strategy(
    per_minute=st.integers(1, 30),
    per_second=st.integers(0, 5),
    batches_per_minute=st.integers(0, 5),
    max_in_flight=st.integers(0, 4),
    batch_cost=st.sampled_from([1, 1, 2, 3]),
    headroom=st.sampled_from([0.0, 0.0, 0.02, 0.3]),
    skew_seconds=st.sampled_from([0.0, 0.0, 0.2, 1.5]),
    slot_lease_seconds=st.sampled_from([0.5, 5.0, 30.0]),
    backoff_base_seconds=st.sampled_from([0.1, 2.0]),
    backoff_max_seconds=st.just(10.0),
)


@st.composite
def scenarios(draw):
    limits = draw(st.one_of(SMALL_LIMITS, st.just(pacing.DEFAULT_LIMITS)))
    backends = draw(st.integers(1, 6))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, backends - 1),
                st.sampled_from(ACTIONS),
                st.one_of(
                    st.just(0.0),
                    st.floats(0, 0.3),
                    st.floats(0, 40),
                    st.sampled_from([1e-6, 0.1, 1.0, 60.0]),
                ),
                st.floats(0, 1),  # how late this backend reads the clock, as a part of the skew
                st.one_of(st.none(), st.floats(0, 5)),  # Retry-After
            ),
            min_size=1,
            max_size=120,
        )
    )
    return limits, steps


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_interleaved_backends_never_exceed_a_limit_nor_leak_a_slot(scenario):
    """Backends reserve, release, time out, get 429s and crash at random moments. QBO counts each
    request at its real start time; a backend's reading of the clock may be late by up to the
    skew (so real windows of W seconds are checked, the pacer's own being W + skew). The test
    keeps its own account of slots (on the pacer's effective clock) and checks after every step
    that the pacer agrees, that a request never starts during a backoff, and that a wait is
    exact: asking again after it goes, unless every slot is still taken."""
    limits, steps = scenario
    to_us, lease_us = pacing.to_us, math.ceil(limits.slot_lease_seconds * pacing.US)
    real = T0
    seen = -math.inf  # the pacer's effective clock: the latest reading so far
    state = None
    held: dict[int, list[int]] = {}  # backend -> the slots it holds
    expiry: dict[int, int] = {}  # slot -> when (µs, effective clock) it stops counting
    advised: dict[int, float] = {}  # backend -> the last wait it was told
    started: list[tuple[float, dict[str, int]]] = []  # (real start, costs) of every request
    blocked_until = -math.inf  # µs, from the 429s: no request may start before this

    for backend, action, pause, lateness, retry_after in steps:
        if action == "retry":
            pause = advised.get(backend, pause)
            action = "call"
        real += pause
        reading = real - lateness * limits.skew_seconds
        now = max(reading, seen)
        now_us = to_us(now)
        if action != "crash":  # every other step calls the pacer, which then has seen `now`
            seen = now
        for slots in held.values():  # expired slots are no longer anybody's
            slots[:] = [slot for slot in slots if expiry[slot] > now_us]

        if action in ("call", "batch"):
            before = sum(1 for end in expiry.values() if end > now_us)
            decision, state = pacing.reserve(state, reading, action, limits)
            event(f"reserve: {decision.reason}")
            if decision.go:
                assert now_us >= blocked_until
                assert not limits.max_in_flight or before < limits.max_in_flight
                started.append((real, costs(action, limits)))
                held.setdefault(backend, []).append(decision.slot)
                expiry[decision.slot] = now_us + lease_us
            else:
                assert decision.wait_seconds > 0
                advised[backend] = decision.wait_seconds
                again, _ = pacing.reserve(state, now + decision.wait_seconds, action, limits)
                assert again.go or again.reason == "max_in_flight"
        elif action in ("release", "timeout"):
            slot = held[backend].pop(0) if held.get(backend) else None
            linger = 2.0 if action == "timeout" else 0
            state = pacing.release(state, reading, slot, linger, limits)
            if slot is not None:
                expiry[slot] = now_us + math.ceil(linger * pacing.US)
        elif action == "throttle":
            slot = held[backend].pop(0) if held.get(backend) else None
            if slot is not None:
                expiry[slot] = now_us
            state = pacing.throttled(state, reading, retry_after, None, limits, slot)
            shortest = limits.backoff_base_seconds / 2
            if retry_after:
                shortest = max(shortest, min(retry_after, limits.retry_after_max_seconds))
            blocked_until = max(blocked_until, now_us + math.ceil(shortest * pacing.US))
        elif action == "crash":
            held.pop(backend, None)  # its slots are never released: only their leases end them

        counted = sum(1 for end in expiry.values() if end > now_us)
        assert pacing.in_flight(state, now, limits) == counted
        assert not limits.max_in_flight or counted <= limits.max_in_flight

    for bucket in pacing._buckets(limits):
        limit = getattr(limits, bucket.name)
        most = max_in_window(started, bucket.name, WINDOWS[bucket.name])
        assert most <= limit
        event(f"{bucket.name}: {'at' if most == limit else 'below'} the limit")
    end = real + limits.slot_lease_seconds + 3
    assert pacing.in_flight(state, end, limits) == 0  # no slot outlives its lease or linger


@settings(max_examples=200, deadline=None)
@given(
    limits=limits_strategy(
        per_minute=st.integers(1, 600),
        per_second=st.integers(0, 20),
        batches_per_minute=st.integers(0, 50),
        batch_cost=st.integers(1, 5),
        headroom=st.floats(0, 0.5),
        skew_seconds=st.floats(0, 2),
    ),
    pauses=st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
    kinds=st.lists(st.sampled_from(["call", "batch"]), min_size=1, max_size=300),
)
def test_the_window_of_w_plus_skew_holds_at_most_the_budget(limits, pauses, kinds):
    """The pacer's own claim, on its own clock: no stretch of W + skew seconds holds more than
    L × (1 − headroom) (rounded up), for any limits, headroom and skew."""
    state, now, started = None, T0, []
    for index, pause in enumerate(pauses):
        kind = kinds[index % len(kinds)]
        decision, state = pacing.reserve(state, now, kind, limits)
        if decision.go:
            started.append((now, costs(kind, limits)))
            state = pacing.release(state, now, decision.slot, limits=limits)
        now += pause
    for bucket in pacing._buckets(limits):
        budget = math.ceil(getattr(limits, bucket.name) * (1 - limits.headroom))
        window = WINDOWS[bucket.name] + limits.skew_seconds
        most = max_in_window(started, bucket.name, window)
        assert most <= budget
        event(f"{bucket.name}: {'at' if most == budget else 'below'} the budget")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=limits_strategy(
        per_minute=st.integers(1, 40),
        per_second=st.integers(0, 6),
        batches_per_minute=st.integers(0, 6),
        max_in_flight=st.integers(0, 5),
        batch_cost=st.sampled_from([1, 1, 2]),
        headroom=st.sampled_from([0.0, 0.0, 0.05]),
        skew_seconds=st.sampled_from([0.0, 0.0, 0.3]),
        slot_lease_seconds=st.sampled_from([2.0, 20.0]),
        backoff_base_seconds=st.sampled_from([0.5, 2.0]),
    ),
    backends=st.integers(1, 8),
    durations=st.lists(st.floats(0, 3), min_size=1, max_size=20),
    fates=st.lists(st.sampled_from(["ok"] * 12 + ["batch", "timeout", "crash", "429"]), min_size=1),
)
def test_busy_backends_reach_the_limits_and_never_pass_them(limits, backends, durations, fates):
    """Backends that always have work: each asks, waits exactly as told, calls for a while,
    then releases (or times out, crashes, or gets a 429), and asks again; two simulated minutes
    on a virtual clock. Windows end up at the limit, never over it, and no slot is left."""
    queue = [(T0 + index * 1e-3, index, None) for index in range(backends)]  # (time, backend, slot)
    state, started, turn = None, [], 0
    while queue:
        now, backend, finishing = heapq.heappop(queue)
        if finishing is not None:  # the end of a call
            fate = fates[turn % len(fates)]
            if fate == "429":
                state = pacing.throttled(state, now, None, None, limits, finishing)
            elif fate != "crash":
                linger = 2.0 if fate == "timeout" else 0
                state = pacing.release(state, now, finishing, linger, limits)
        if now > T0 + 120:
            continue
        turn += 1
        kind = "batch" if fates[turn % len(fates)] == "batch" else "call"
        decision, state = pacing.reserve(state, now, kind, limits)
        if decision.go:
            assert not limits.max_in_flight or pacing.in_flight(state, now, limits) <= (
                limits.max_in_flight
            )
            started.append((now, costs(kind, limits)))
            end = now + durations[turn % len(durations)]
            heapq.heappush(queue, (end, backend, decision.slot))
        else:
            heapq.heappush(queue, (now + decision.wait_seconds, backend, None))
    for bucket in pacing._buckets(limits):
        limit = getattr(limits, bucket.name)
        most = max_in_window(started, bucket.name, WINDOWS[bucket.name])
        assert most <= limit
        event(f"{bucket.name}: {'at' if most == limit else 'below'} the limit")
    assert pacing.in_flight(state, T0 + 200, limits) == 0

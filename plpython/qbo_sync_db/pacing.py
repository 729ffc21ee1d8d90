"""Pacing calls to QuickBooks per realm and app: one budget that every backend shares.

QBO throttles each realm and app to 500 requests a minute, 10 a second, 10 at once and 40 batch
requests a minute (a batch is one request of the 500, whatever its items). Several backends may
call QBO for the same realm at once, so the budget is a small JSON state stored in the database,
one row per realm and app. A backend locks that row, asks `reserve` whether it may call now
(it gets a slot) or must wait some seconds, writes the new state back and commits; after the call
it hands the slot back with `release`, and a 429 answer goes through `throttled`, which stops
every backend of the realm for a while (exponential with jitter, at least Retry-After).

The functions are pure: they read a state, a time and the limits, and return a new state (never
changing the one they were given); no clock, no randomness of their own, no database. docs/pacing.md
has the algorithm, the proof that no window exceeds a limit, and what the database side stores.

Each rate limit is a GCRA (a token bucket kept as "the earliest time the next request may
start"): L requests per W seconds becomes a spacing of (W + skew) / (L × (1 − headroom)) between
requests, so no stretch of W + skew seconds ever holds more than L × (1 − headroom) of them
(rounded up: never more than L). Time is kept in whole microseconds, so the bound is exact integer
arithmetic. Requests in flight are slots with a lease: a slot a dead backend held is free again
when its lease ends.

State (JSON, a few hundred bytes at most; O(max_in_flight)):

    {"v": 1,                      # layout version
     "seen": 1700000000123456,    # latest time seen (µs); a slightly earlier `now` counts as it
     "tat": {"per_minute": ..., "per_second": ..., "batches_per_minute": ...},
                                  # per limit: the earliest start of the next request (µs)
     "slots": [[token, started_us, expires_us], ...],   # requests in flight
     "next_slot": 1700000000123457,                     # the next slot token
     "backoff": {"until": ..., "since": ..., "level": n}}   # after a 429 (absent otherwise)
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from functools import lru_cache
from typing import Any

STATE_VERSION = 1
KINDS = ("call", "batch")
US = 1_000_000
#: added to every spacing: converting `now` (float seconds) to whole microseconds loses < 1.25 µs
GUARD_US = 2
#: the backoff's exponent stops here (the delay is capped long before)
LEVEL_MAX = 32

Seconds = float | int | Decimal
State = dict[str, Any]


@dataclass(frozen=True)
class _Bucket:
    name: str
    spacing_us: int  # τ: the time one request uses of the budget
    tolerance_us: int  # θ = (burst - 1) τ: how early a request may start (0 with burst 1)
    costs: tuple[int, int]  # what a call and a batch use of it


@lru_cache(maxsize=64)
def _buckets(limits: Limits) -> tuple[_Bucket, ...]:
    """The GCRA of each limit that is on: its spacing, tolerance and what each kind costs.

    A bucket of L requests per W seconds with burst B (the largest cost one request may have)
    spaces requests by T / (M - B + 1), with T = W + skew and M = L × (1 - headroom); then no
    stretch of T seconds holds more than M requests, rounded up: never more than L
    (docs/pacing.md#why-no-window-exceeds-a-limit).
    """
    specs = (
        ("per_minute", limits.per_minute, 60.0, (1, limits.batch_cost)),
        ("per_second", limits.per_second, 1.0, (1, 1)),
        ("batches_per_minute", limits.batches_per_minute, 60.0, (0, 1)),
    )
    buckets = []
    for name, limit, window, costs in specs:
        if not limit:
            continue
        burst = max(costs)
        budget = limit * (1 - limits.headroom) - (burst - 1)
        if budget < 1:
            raise ValueError(
                f"pacing limit {name} ({limit}, headroom {limits.headroom}) leaves no room for a"
                f" request of cost {burst}"
            )
        spacing = math.ceil((window + limits.skew_seconds) * US / budget) + GUARD_US
        buckets.append(_Bucket(name, spacing, (burst - 1) * spacing, costs))
    return tuple(buckets)


@dataclass(frozen=True)
class Limits:
    """QBO's limits for one realm and app, and how much of them to leave unused.

    A limit of 0 turns it off. The defaults are Intuit's published limits with a 2 % headroom
    and 0.2 s of skew (docs/pacing.md says what each costs and protects against).
    """

    per_minute: int = 500
    per_second: int = 10
    batches_per_minute: int = 40
    max_in_flight: int = 10
    #: how many of the per-minute requests a batch uses (1: a batch is one request)
    batch_cost: int = 1
    #: fraction of each rate limit left unused (other clients of the same app, clock rates)
    headroom: float = 0.02
    #: the spread between the shortest and the longest delay from `now` in `reserve` to QBO
    #: counting the request (connection set-up, network): every window is widened by it
    skew_seconds: float = 0.2
    #: a slot not released by then is free again (longer than the HTTP client's whole timeout)
    slot_lease_seconds: float = 120.0
    #: the wait when every slot is taken (a slot's end cannot be known in advance)
    in_flight_retry_seconds: float = 0.1
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 60.0
    #: a 429 this long after the last backoff ended starts again at the base delay
    backoff_reset_seconds: float = 60.0
    #: a larger Retry-After is honoured up to this
    retry_after_max_seconds: float = 3600.0
    #: a `now` earlier than the latest seen by up to this much is taken as the latest (a late
    #: reading); further back, the clock was set back and the state is moved back with it
    max_clock_step_seconds: float = 5.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"pacing limit {spec.name} must be a number, not {value!r}")
            if spec.type == "int" and not isinstance(value, int):
                raise ValueError(f"pacing limit {spec.name} must be a whole number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"pacing limit {spec.name} must be finite and >= 0")
        if not self.headroom < 1:
            raise ValueError("pacing limit headroom must be below 1")
        for name in ("batch_cost", "slot_lease_seconds", "in_flight_retry_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"pacing limit {name} must be positive")
        if not 0 < self.backoff_base_seconds <= self.backoff_max_seconds:
            raise ValueError("pacing needs 0 < backoff_base_seconds <= backoff_max_seconds")
        _buckets(self)  # a budget too small for one batch is refused here

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Limits:
        """Limits from a JSON object: missing keys keep their defaults, unknown ones are refused."""
        data = dict(data or {})
        unknown = sorted(set(data) - {spec.name for spec in fields(cls)})
        if unknown:
            raise ValueError("unknown pacing limits: " + ", ".join(unknown))
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Decision:
    """What `reserve` answers: go now holding `slot`, or ask again in `wait_seconds`.

    `reason` is "go", or the limit that made it wait: "backoff", "per_minute", "per_second",
    "batches_per_minute" or "max_in_flight" (the longest wait when several apply).
    """

    go: bool
    wait_seconds: float
    slot: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=64)
def _limits_from_items(items: tuple[tuple[str, Any], ...]) -> Limits:
    return Limits.from_dict(dict(items))


def as_limits(limits: Limits | Mapping[str, Any] | None) -> Limits:
    """`limits` as Limits: a Limits is kept, a JSON object (or None: defaults) is read."""
    if isinstance(limits, Limits):
        return limits
    return _limits_from_items(tuple(sorted((limits or {}).items())))


def to_us(now: Seconds) -> int:
    """Seconds (float, int or Decimal, e.g. extract(epoch FROM clock_timestamp())) as whole µs."""
    if not math.isfinite(now):
        raise ValueError(f"pacing needs a finite time, not {now!r}")
    return math.floor(now * US)


def new_state(now: Seconds) -> State:
    """The state of a realm nobody has called yet (an empty JSON object means the same)."""
    now_us = to_us(now)
    return {"v": STATE_VERSION, "seen": now_us, "tat": {}, "slots": [], "next_slot": now_us}


def _current(state: Mapping[str, Any] | None, now: Seconds, limits: Limits) -> tuple[State, int]:
    """A copy of `state` brought to `now`: the effective time, expired slots and spent limits gone.

    Slot tokens start at the state's creation time in µs, so a token from a row that was
    deleted and created again does not free another backend's slot.
    """
    now_us = to_us(now)
    if not state:
        return new_state(now), now_us
    if state.get("v") != STATE_VERSION:
        raise ValueError(f"pacing state version {state.get('v')!r} is not {STATE_VERSION}")
    seen = state["seen"]
    shift = 0
    if now_us < seen:
        if seen - now_us <= limits.max_clock_step_seconds * US:
            now_us = seen  # a late reading: as if no time had passed since the latest one
        else:
            shift = now_us - seen  # the clock was set back: move everything back with it
    tat = {name: t + shift for name, t in state["tat"].items() if t + shift > now_us}
    slots = [
        [token, started + shift, expires + shift]
        for token, started, expires in state["slots"]
        if expires + shift > now_us
    ]
    current: State = {
        "v": STATE_VERSION,
        "seen": now_us,
        "tat": tat,
        "slots": slots,
        "next_slot": state["next_slot"],
    }
    backoff = state.get("backoff")
    if backoff and backoff["until"] + shift + limits.backoff_reset_seconds * US >= now_us:
        current["backoff"] = {
            "until": backoff["until"] + shift,
            "since": backoff["since"] + shift,
            "level": backoff["level"],
        }
    return current, now_us


def reserve(
    state: Mapping[str, Any] | None,
    now: Seconds,
    kind: str = "call",
    limits: Limits | Mapping[str, Any] | None = DEFAULT_LIMITS,
) -> tuple[Decision, State]:
    """May a request of `kind` ("call" or "batch") start at `now`? Returns (decision, new state).

    On go, the request is charged to every limit it counts toward and holds a slot until
    `release` (or until the slot's lease ends). On wait, nothing is charged: ask again after
    `decision.wait_seconds` (the state is returned tidied, so writing it back is optional).
    """
    limits = as_limits(limits)
    if kind not in KINDS:
        raise ValueError(f"pacing kind must be one of {', '.join(KINDS)}, not {kind!r}")
    cost_index = KINDS.index(kind)
    current, now_us = _current(state, now, limits)
    tat = current["tat"]

    waits: list[tuple[int, str]] = []
    backoff = current.get("backoff")
    if backoff and backoff["until"] > now_us:
        waits.append((backoff["until"] - now_us, "backoff"))
    buckets = _buckets(limits)
    for bucket in buckets:
        cost = bucket.costs[cost_index]
        if cost and bucket.name in tat:
            earliest = tat[bucket.name] + (cost - 1) * bucket.spacing_us - bucket.tolerance_us
            if earliest > now_us:
                waits.append((earliest - now_us, bucket.name))
    slots = current["slots"]
    if limits.max_in_flight and len(slots) >= limits.max_in_flight:
        first_expiry = min(expires for _token, _started, expires in slots)
        retry_us = math.ceil(limits.in_flight_retry_seconds * US)
        waits.append((min(retry_us, first_expiry - now_us), "max_in_flight"))
    if waits:
        wait_us, reason = max(waits)
        # one µs more: `now + wait` read back as µs is then never short of the time it needs
        return Decision(False, (wait_us + 1) / US, None, reason), current

    for bucket in buckets:
        cost = bucket.costs[cost_index]
        if cost:
            tat[bucket.name] = max(tat.get(bucket.name, now_us), now_us) + cost * bucket.spacing_us
    token = current["next_slot"]
    current["next_slot"] = token + 1
    slots.append([token, now_us, now_us + math.ceil(limits.slot_lease_seconds * US)])
    return Decision(True, 0.0, token, "go"), current


def release(
    state: Mapping[str, Any] | None,
    now: Seconds,
    slot: int | None,
    linger_seconds: Seconds = 0,
    limits: Limits | Mapping[str, Any] | None = DEFAULT_LIMITS,
) -> State:
    """The request that holds `slot` is over: its slot is free (an unknown or expired one: no-op).

    After a timeout or a lost connection QBO may still be working on the request: pass
    `linger_seconds` to keep counting the slot that much longer instead of freeing it now.
    """
    limits = as_limits(limits)
    current, now_us = _current(state, now, limits)
    if linger_seconds < 0:
        raise ValueError("linger_seconds must be >= 0")
    kept = []
    for held in current["slots"]:
        if held[0] != slot:
            kept.append(held)
        elif linger_seconds:
            kept.append([held[0], held[1], now_us + math.ceil(linger_seconds * US)])
    current["slots"] = kept
    return current


def throttled(
    state: Mapping[str, Any] | None,
    now: Seconds,
    retry_after: Seconds | None = None,
    attempt: int | None = None,
    limits: Limits | Mapping[str, Any] | None = DEFAULT_LIMITS,
    slot: int | None = None,
    jitter: float | None = None,
) -> State:
    """QBO answered 429: no backend of this realm may start a request for a while.

    The delay is exponential in the backoff level (base, 2 × base, 4 × base, ... up to the
    maximum) with equal jitter (between half and all of it), and never shorter than
    `retry_after` (seconds, from the Retry-After header, when QBO sent one). The level goes up
    once per episode: 429s of requests that started before the current backoff was decided (the
    others in flight at the time) do not raise it again. `attempt` (how many times the throttled
    request was tried) is a floor for the level. `slot`, when given, is released too (one row
    update for both).
    `jitter` in [0, 1) picks the point in the jitter range; without it, one is derived from
    `now` and the level, so the function stays pure.
    """
    limits = as_limits(limits)
    current, now_us = _current(state, now, limits)
    started = None
    if slot is not None:
        for held in current["slots"]:
            if held[0] == slot:
                started = held[1]
        current["slots"] = [held for held in current["slots"] if held[0] != slot]

    backoff = current.get("backoff")
    if backoff is None:
        until, since, level = now_us, now_us, 1
    else:
        until, since, level = backoff["until"], backoff["since"], backoff["level"]
        same_episode = started < since if started is not None else now_us < until
        if not same_episode:
            since, level = now_us, min(level + 1, LEVEL_MAX)

    exponent = min(max(level, attempt or 0), LEVEL_MAX)
    if jitter is None:
        jitter = random.Random(f"{now_us}:{exponent}").random()
    if not 0 <= jitter <= 1:
        raise ValueError("jitter must be within [0, 1]")
    delay = min(limits.backoff_max_seconds, limits.backoff_base_seconds * 2 ** (exponent - 1))
    delay *= 0.5 + 0.5 * jitter
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(float(retry_after), limits.retry_after_max_seconds))
    until = max(until, now_us + math.ceil(delay * US))
    current["backoff"] = {"until": until, "since": since, "level": level}
    return current


def in_flight(
    state: Mapping[str, Any] | None,
    now: Seconds,
    limits: Limits | Mapping[str, Any] | None = DEFAULT_LIMITS,
) -> int:
    """How many slots are held at `now` (released and expired ones not counted)."""
    current, _now_us = _current(state, now, as_limits(limits))
    return len(current["slots"])

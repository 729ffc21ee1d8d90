"""Per-realm throttling: requests per minute, per second, concurrent requests, batch calls.

Batch calls have two windows: ``batch_per_minute_app`` per realm and app (Intuit's 40/min, the
binding one for a single app) and ``batch_per_minute`` per realm across apps (120/min); a batch
call also counts once toward the per-realm minute and second windows. Windows are sliding and
read the clock's monotonic time (real time plus forward ``advance``; see ``clock.py``), so tests
refill them by advancing the clock instead of sleeping. A limit of 0 disables it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.config import SimulatorConfig


@dataclass
class _Bucket:
    minute: deque[float] = field(default_factory=deque)
    second: deque[float] = field(default_factory=deque)
    batch: deque[float] = field(default_factory=deque)
    active: int = 0


def _trim(window: deque[float], now: float, span: float) -> None:
    while window and window[0] <= now - span:
        window.popleft()


def _full(window: deque[float], now: float, span: float, limit: int) -> bool:
    """Is the sliding window at its limit (0: no limit)?"""
    _trim(window, now, span)
    return bool(limit) and len(window) >= limit


class Limiter:
    def __init__(self, cfg: SimulatorConfig, monotonic: Callable[[], float]) -> None:
        self.cfg = cfg
        self.monotonic = monotonic
        self.buckets: dict[str, _Bucket] = {}
        self.app_batches: dict[tuple[str, str], deque[float]] = {}  # (realm, client id)

    def acquire(self, realm_id: str, client_id: str, is_batch: bool = False) -> bool:
        """Admit one request (then call release) or refuse it (no release)."""
        cfg = self.cfg
        if not cfg.limits_enabled:
            return True
        b = self.buckets.setdefault(realm_id, _Bucket())
        now = self.monotonic()
        if _full(b.minute, now, 60.0, cfg.per_minute) or _full(b.second, now, 1.0, cfg.per_second):
            return False
        if cfg.concurrent and b.active >= cfg.concurrent:
            return False
        if is_batch:
            app_batch = self.app_batches.setdefault((realm_id, client_id), deque())
            if _full(b.batch, now, 60.0, cfg.batch_per_minute) or _full(
                app_batch, now, 60.0, cfg.batch_per_minute_app
            ):
                return False
            b.batch.append(now)
            app_batch.append(now)
        b.minute.append(now)
        b.second.append(now)
        b.active += 1
        return True

    def release(self, realm_id: str) -> None:
        if not self.cfg.limits_enabled:
            return
        b = self.buckets.get(realm_id)
        if b is not None and b.active > 0:
            b.active -= 1

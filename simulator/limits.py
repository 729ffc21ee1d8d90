"""Per-realm throttling: requests per minute, per second, concurrent requests, batch calls.

Windows are sliding and use real monotonic time (they govern real sockets), so moving the
simulated clock does not refill them. A limit of 0 disables it.
"""

from __future__ import annotations

import time
from collections import deque
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


class Limiter:
    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = cfg
        self.buckets: dict[str, _Bucket] = {}

    def acquire(self, realm_id: str, is_batch: bool = False) -> bool:
        """Admit one request (then call release) or refuse it (no release)."""
        cfg = self.cfg
        if not cfg.limits_enabled:
            return True
        b = self.buckets.setdefault(realm_id, _Bucket())
        now = time.monotonic()
        _trim(b.minute, now, 60.0)
        _trim(b.second, now, 1.0)
        if cfg.per_minute and len(b.minute) >= cfg.per_minute:
            return False
        if cfg.per_second and len(b.second) >= cfg.per_second:
            return False
        if cfg.concurrent and b.active >= cfg.concurrent:
            return False
        if is_batch:
            _trim(b.batch, now, 60.0)
            if cfg.batch_per_minute and len(b.batch) >= cfg.batch_per_minute:
                return False
            b.batch.append(now)
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

"""A movable clock: real time plus an offset that tests and the demo can shift.

Token expiry, MetaData timestamps, CDC windows and requestid retention all read this clock, so
moving it (``/_sim/clock``) ages tokens and data without sleeping. Rate limits read
:meth:`Clock.monotonic`: real monotonic time plus every forward ``advance``, so advancing the
clock by a minute refills the per-minute windows, while ``set`` and ``reset`` (which may go
backwards) never rewind them. Webhook timing uses real time only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0
        self.advanced = 0.0  # sum of forward advances, for monotonic()

    def now(self) -> float:
        """Seconds since the epoch, simulated."""
        return time.time() + self.offset

    def monotonic(self) -> float:
        """Real monotonic seconds plus every forward advance: never goes back."""
        return time.monotonic() + self.advanced

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.advanced += max(seconds, 0.0)

    def set(self, epoch: float) -> None:
        self.offset = epoch - time.time()

    def reset(self) -> None:
        self.offset = 0.0


def to_pacific(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=PACIFIC)


def fmt_meta(epoch: float) -> str:
    """MetaData timestamp: seconds precision, Pacific offset (2015-07-23T10:58:12-07:00)."""
    return to_pacific(epoch).isoformat(timespec="seconds")


def fmt_time(epoch: float) -> str:
    """Response ``time``: milliseconds, Pacific offset."""
    return to_pacific(epoch).isoformat(timespec="milliseconds")


def fmt_date(epoch: float) -> str:
    return to_pacific(epoch).date().isoformat()


def fmt_utc(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_ts(text: str) -> float:
    """Parse an ISO date or date-time as QBO accepts it; a naive value is taken as Pacific."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # offsets written without a colon, e.g. -0700
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
            dt = datetime.fromisoformat(text[:-2] + ":" + text[-2:])
        else:
            raise
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=PACIFIC)
    return dt.timestamp()


def add_days(date_text: str, days: int) -> str:
    return (datetime.fromisoformat(date_text) + timedelta(days=days)).date().isoformat()

"""Time as an injectable dependency, so windows and resets are tested with a clock, not with sleeps."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Wall-clock time, epoch microseconds (UTC)."""
        ...


class SystemClock:
    """The wall clock, shifted by `offset_us` (settings.clock_offset_seconds: tests move a server's time)."""

    def __init__(self, offset_us: int = 0) -> None:
        self._offset_us = offset_us

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self._offset_us


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, now_us: int) -> None:
        self.current_us = now_us

    def now_us(self) -> int:
        return self.current_us

    def advance(self, seconds: float) -> None:
        self.current_us += int(seconds * 1_000_000)


def us_to_datetime(epoch_us: int) -> datetime:
    return datetime.fromtimestamp(epoch_us / 1_000_000, tz=UTC)


def us_to_iso(epoch_us: int | None) -> str | None:
    """ISO-8601 UTC with a Z, as OpenRouter prints times."""
    if epoch_us is None:
        return None
    return us_to_datetime(epoch_us).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datetime_to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("time must carry a timezone (UTC)")
    return int(moment.timestamp() * 1_000_000)

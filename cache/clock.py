"""The clock, injected wherever time is read, so TTL logic is tested without sleeping.

Deadlines use the monotonic clock (wall-clock jumps must not stretch or cut a TTL);
the wall clock is only for reporting (`expires_at`, audit lines, receipts).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; the same scale as `loop.time()`."""
        ...

    def wall(self) -> float:
        """Unix time in seconds, for humans and logs."""
        ...


class SystemClock:
    """The real clocks. `time.monotonic` is what asyncio's loop uses too."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to: for tests and simulations."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now += seconds


def wall_of(clock: Clock, monotonic: float) -> float:
    """The wall time that corresponds to a monotonic reading of the same clock."""
    return clock.wall() + (monotonic - clock.monotonic())

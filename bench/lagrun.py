"""One purge-lag measurement: which system, how many items, how the lag was taken, the lags.

Every run follows one schedule so the systems compare: N items are written as fast as the
system takes them, with deadlines drawn uniform over [A + lo, A + hi], where A is the
expected end of the fill (from a calibration write of a few thousand items just before).
So every item's TTL, counted from the end of the fill, lies in lo..hi seconds, all N are
live when the first one falls due, and N items then come due over hi - lo seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .stats import percentile

FILL_MARGIN = 1.25  # the fill is planned to take at most this times the calibrated estimate
FILL_SLACK = 0.1  # seconds added to the planned fill


def plan_anchor(now: float, items: int, seconds_per_item: float) -> float:
    """When the fill is expected to be over: deadlines are drawn after it."""
    return now + items * seconds_per_item * FILL_MARGIN + FILL_SLACK


@dataclass
class LagRun:
    system: str  # e.g. "service memory (in-process)", "Redis expiry"
    items: int
    method: str  # how the lag was taken, for results.md
    lags_ms: list[float] = field(default_factory=list)
    released: int = 0  # items seen released within the bound
    complete: bool = True  # every item released within the bound
    fill_s: float = 0.0
    fill_overran: bool = False  # some deadline fell before the fill was over
    available: bool = True  # False: n/a (e.g. backend not built)
    why_not: str = ""
    estimated: bool = False  # lags estimated from counts, not per item
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def p50(self) -> float | None:
        return percentile(self.lags_ms, 50)

    @property
    def p99(self) -> float | None:
        return percentile(self.lags_ms, 99)

    @property
    def max(self) -> float | None:
        if not self.lags_ms or not self.complete:
            return None
        return max(self.lags_ms)

    def bound_ms(self) -> float | None:
        """For an incomplete run: the lag every unreleased item had at least."""
        return max(self.lags_ms) if self.lags_ms else None

    def summary(self) -> dict[str, object]:
        return {
            "system": self.system,
            "items": self.items,
            "method": self.method,
            "available": self.available,
            "why_not": self.why_not,
            "released": self.released,
            "complete": self.complete,
            "estimated": self.estimated,
            "fill_s": round(self.fill_s, 3),
            "fill_overran": self.fill_overran,
            "p50_ms": self.p50,
            "p99_ms": self.p99,
            "max_ms": self.max,
            **self.extra,
        }

    def cdf_points(self, points: int = 400) -> list[float]:
        """A thinned, sorted copy of the lags for plotting."""
        ordered = sorted(self.lags_ms)
        if len(ordered) <= points:
            return ordered
        step = (len(ordered) - 1) / (points - 1)
        return [ordered[round(i * step)] for i in range(points)]


def not_available(system: str, items: int, why: str) -> LagRun:
    return LagRun(system, items, "n/a", available=False, why_not=why, complete=False)


def fifo_estimate(
    deadlines: Sequence[float], polls: Sequence[tuple[float, int]], items: int
) -> tuple[list[float], int]:
    """Lags (ms) from a count of what is left, polled over time, matching the k-th release
    to the k-th deadline (the best a count can tell). Items never released get the lag they
    had at the last poll: a lower bound. Returns (lags, released)."""
    ordered = sorted(deadlines)
    lags: list[float] = []
    k = 0
    for ts, remaining in polls:
        released = items - remaining
        while k < released and k < len(ordered):
            lags.append((ts - ordered[k]) * 1000)
            k += 1
    released = k
    if polls:
        last = polls[-1][0]
        lags.extend((last - d) * 1000 for d in ordered[k:] if last > d)
    return lags, released

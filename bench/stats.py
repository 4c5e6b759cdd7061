"""Percentiles, ratios and the row every bench reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def rounded(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return float(f"{value:.{digits}g}")


def fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return f"{text} {unit}".strip()


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.3g} {unit}" if abs(scaled) < 1000 else f"{scaled:,.0f} {unit}"
    return f"{value:.0f} B"


@dataclass
class Row:
    """One line of the table: what was measured, against what, and whether it met its target.

    `met` is None when a row has no target of its own (context) or could not be measured.
    """

    metric: str
    service: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Section:
    """What one bench hands back: rows for the table, keys for results.json, notes, series."""

    name: str
    rows: list[Row] = field(default_factory=list)
    keys: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        metric: str,
        service: str,
        reference: str = "",
        ratio_value: float | None = None,
        target: str = "",
        met: bool | None = None,
    ) -> None:
        self.rows.append(Row(metric, service, reference, rounded(ratio_value), target, met))


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit

"""The release recorder: what every store does once bytes are gone.

One receipt per item, one `purged` audit line per item (written together: a purge of
thousands is one write), the purge-lag and residency histograms, and a TTL violation for
every item released later than `deadline + grace`. Both stores call this and nothing
else, so the proof an operator shows a hosting provider reads the same on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from ..clock import Clock, wall_of
from ..item import Item
from ..proof.audit import AuditLog
from ..proof.metrics import Metrics
from .api import Receipt

# An item released by this node: id, sha256, size, created (wall s), created and deadline
# (this node's monotonic clock), reason. A plain tuple: batches of thousands are built.
Gone: TypeAlias = tuple[str, str, int, float, float, float, str]
# An item that went unseen: id, size, created and deadline (this node's monotonic clock;
# None: unknown, an item of another node).
Lost: TypeAlias = tuple[str, int | None, float | None, float | None]


def gone(item: Item, reason: str) -> Gone:
    return (
        item.id,
        item.sha256,
        item.size,
        item.created_wall,
        item.created,
        item.deadline,
        reason,
    )


class ReleaseRecorder:
    def __init__(self, clock: Clock, metrics: Metrics, audit: AuditLog, grace: float) -> None:
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._grace = grace

    def record(
        self, released: list[Gone], at: float | Sequence[float] | None = None
    ) -> list[Receipt]:
        """Metrics, audit lines and receipts for items released by `at` (on the monotonic
        clock; default now; or one time per item, when each item's bytes went), in one
        go: one audit write, a list per figure."""
        if not released:
            return []
        clock = self._clock
        if at is None or isinstance(at, float | int):
            times: Sequence[float] = [clock.monotonic() if at is None else at] * len(released)
        else:
            times = at
        to_wall = clock.wall() - clock.monotonic()
        lags = [t - g[5] for t, g in zip(times, released, strict=True)]
        residencies = [t - g[4] for t, g in zip(times, released, strict=True)]
        lags_ms = [round(lag * 1000, 3) for lag in lags]
        receipts = [
            Receipt(i, sha, size, round(created_wall, 6), round(t + to_wall, 6), why, lag_ms)
            for (i, sha, size, created_wall, _, _, why), t, lag_ms in zip(
                released, times, lags_ms, strict=True
            )
        ]
        self._audit.emit_rows(
            "purged",
            [
                {
                    "id": g[0],
                    "sha256": g[1],
                    "size": g[2],
                    "reason": g[6],
                    "lag_ms": lag_ms,
                    "residency_ms": round(residency * 1000, 3),
                }
                for g, lag_ms, residency in zip(released, lags_ms, residencies, strict=True)
            ],
        )
        self._count(released, lags, residencies)
        return receipts

    def lost(self, items: list[Lost]) -> None:
        """Items that went with no node's purge (Redis lost them: see redis/lost.py): one
        `purged` line each, reason `lost`, and the metric. No lag or residency figures:
        when they went is unknown; `noticed_lag_ms` says how long after the deadline this
        node found them gone (negative: before it), for the items it stored."""
        if not items:
            return
        now, clock = self._clock.monotonic(), self._clock
        lines = []
        for item_id, size, created, deadline in items:
            line: dict[str, object] = {"id": item_id, "size": size, "reason": "lost"}
            if created is not None and deadline is not None:
                line["stored_at"] = round(wall_of(clock, created), 6)
                line["noticed_lag_ms"] = round((now - deadline) * 1000, 3)
            lines.append(line)
        self._audit.emit_many("purged", lines)
        self._metrics.purged.labels("lost").inc(len(items))

    def _count(self, released: list[Gone], lags: list[float], residencies: list[float]) -> None:
        reasons = {g[6] for g in released}
        for why in reasons:
            picked = [n for n, g in enumerate(released) if g[6] == why] if len(reasons) > 1 else []
            why_lags = [lags[n] for n in picked] if picked else lags
            why_residencies = [residencies[n] for n in picked] if picked else residencies
            self._metrics.record_releases(why, why_lags, why_residencies)
            late = sum(1 for lag in why_lags if lag > self._grace) if why == "ttl" else 0
            if late:
                self._metrics.ttl_violations.inc(late)

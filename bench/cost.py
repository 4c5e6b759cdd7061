"""Bench 4: cost growth. Does the work per item grow with what is held?

In-process, on a ManualClock (time moves only when told, so nothing expires by accident):
- purge cost per expired item: N live items with far deadlines plus K items due now;
  `store.purge_expired()` is timed and divided by K, repeated, median taken; N = 10^3 vs 10^6
  (quick: 10^5);
- upload latency: each `store.put` timed (the index, heap and accounting work an upload does
  after ingest; not HTTP, not image validation), p99 with 10^6 items held vs an empty store.
Audit lines go to a sink that drops them (their cost does not depend on N).
"""

from __future__ import annotations

import asyncio
import gc
import io
import statistics
import time

from prometheus_client import CollectorRegistry

from cache.app import build_runtime
from cache.clock import ManualClock
from cache.config import build_config
from cache.item import ImageFacts
from cache.runtime import Runtime

from .context import Ctx
from .stats import Section, at_most, fmt, percentile, ratio

SWEEP_TARGET = 2.0
FAR = 10.0**6  # seconds: never due during the bench
PAYLOAD = bytes(64)


class Sink(io.StringIO):
    """Takes audit lines and keeps none."""

    def write(self, text: str) -> int:
        return len(text)


def _runtime(capacity: int) -> tuple[Runtime, ManualClock]:
    clock = ManualClock()
    storage = {"max_items": capacity, "max_bytes": 1 << 40}  # the item count is the cap
    config = build_config({"storage": storage}, env={})
    return build_runtime(
        config, clock=clock, registry=CollectorRegistry(), audit_stream=Sink()
    ), clock


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def facts(self) -> ImageFacts:
        self.n += 1
        return ImageFacts(f"{self.n:064x}", len(PAYLOAD), "image/png", 1, 1)


async def _fill(rt: Runtime, ids: _Counter, count: int) -> None:
    for _ in range(count):
        await rt.store.put(PAYLOAD, ids.facts(), FAR, None, "upload")


async def _timed_puts(rt: Runtime, ids: _Counter, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        facts = ids.facts()
        started = time.perf_counter()
        await rt.store.put(PAYLOAD, facts, FAR, None, "upload")
        latencies.append((time.perf_counter() - started) * 1e6)
    return latencies


async def _sweeps(
    rt: Runtime, clock: ManualClock, ids: _Counter, due: int, repeats: int
) -> list[float]:
    """Microseconds per expired item, one figure per repeat."""
    per_item = []
    for _ in range(repeats):
        for _ in range(due):
            await rt.store.put(PAYLOAD, ids.facts(), 1.0, None, "upload")
        clock.advance(2.0)
        started = time.perf_counter()
        receipts = await rt.store.purge_expired()
        elapsed = time.perf_counter() - started
        if len(receipts) != due:
            raise RuntimeError(f"purged {len(receipts)} of {due} due items")
        per_item.append(elapsed / due * 1e6)
    return per_item


async def _measure(ctx: Ctx) -> dict[str, list[float]]:
    sizes = ctx.sizes
    out: dict[str, list[float]] = {}
    extra = sizes.upload_samples + sizes.cost_due * sizes.cost_repeats + 10

    rt, _ = _runtime(sizes.upload_samples + 10)
    out["put_empty"] = await _timed_puts(rt, _Counter(), sizes.upload_samples)
    await rt.store.close()

    rt, clock = _runtime(sizes.cost_small + extra)
    ids = _Counter()
    await _fill(rt, ids, sizes.cost_small)
    out["sweep_small"] = await _sweeps(rt, clock, ids, sizes.cost_due, sizes.cost_repeats)
    await rt.store.close()
    del rt

    rt, clock = _runtime(sizes.cost_large + extra)
    ids = _Counter()
    await _fill(rt, ids, sizes.cost_large)
    out["put_large"] = await _timed_puts(rt, ids, sizes.upload_samples)
    out["sweep_large"] = await _sweeps(rt, clock, ids, sizes.cost_due, sizes.cost_repeats)
    gc.collect()
    return out


def run(ctx: Ctx) -> Section:
    sizes = ctx.sizes
    section = Section("cost")
    data = asyncio.run(_measure(ctx))
    gc.collect()
    small, large = statistics.median(data["sweep_small"]), statistics.median(data["sweep_large"])
    sweep_ratio = ratio(large, small)
    section.add(
        f"purge cost per expired item, {sizes.cost_large:,} vs {sizes.cost_small:,} live "
        f"(K={sizes.cost_due:,} due, median of {sizes.cost_repeats})",
        fmt(large, "µs"),
        f"{sizes.cost_small:,} live: {fmt(small, 'µs')}",
        sweep_ratio,
        f"≤ {SWEEP_TARGET:g}",
        at_most(sweep_ratio, SWEEP_TARGET),
    )
    p99_empty = percentile(data["put_empty"], 99)
    p99_large = percentile(data["put_large"], 99)
    upload_ratio = ratio(p99_large, p99_empty)
    section.add(
        f"upload (store.put, in-process) p99, {sizes.cost_large:,} held vs empty",
        fmt(p99_large, "µs") + f" (max {fmt(max(data['put_large']), 'µs')})",
        f"empty: {fmt(p99_empty, 'µs')} (max {fmt(max(data['put_empty']), 'µs')})",
        upload_ratio,
        "(no target given)",
        None,
    )
    section.keys.update(
        {
            "sweep_cost_ratio_1e6_vs_1e3": sweep_ratio,
            "upload_p99_ratio_1e6_vs_empty": upload_ratio,
        }
    )
    section.series["cost"] = {
        "sweep_small_us": data["sweep_small"],
        "sweep_large_us": data["sweep_large"],
        "put_empty_p50_us": percentile(data["put_empty"], 50),
        "put_large_p50_us": percentile(data["put_large"], 50),
        "live_small": sizes.cost_small,
        "live_large": sizes.cost_large,
    }
    if sizes.cost_large != 1_000_000:
        section.notes.append(
            f"Cost growth in this run compares {sizes.cost_large:,} live items (not 10^6) with "
            f"{sizes.cost_small:,}; the keys keep their names."
        )
    return section

"""Purge lag on the redis backend, measured and printed, never asserted: real clock, real
Redis, the service's own exact timer and sweep. `QC_LAG_ITEMS` sets the item count
(default 2,000 keeps the suite quick; the closing note used 10,000). Run with `-s` to see
the line. Grace is long here so that Redis's PX backstop never does the purging for us."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time

from prometheus_client import CollectorRegistry

from cache.app import build_runtime, start, stop
from cache.item import ImageFacts
from tests.conftest import AuditCapture, make_config
from tests.redisproc import RedisServer, all_keys, flush, item_keys, redis_server

__all__ = ["redis_server"]  # a fixture, used by name
SPREAD = 3.0  # deadlines spread over this many seconds


async def test_purge_lag_over_many_items(redis_server: RedisServer) -> None:
    flush(redis_server)
    count = int(os.environ.get("QC_LAG_ITEMS", "2000"))
    config = make_config(
        storage={"backend": "redis", "redis_url": redis_server.url},
        ttl={"sweep_interval": 0.5, "grace": 60.0, "max": 300.0},
    )
    audit = AuditCapture()
    rt = build_runtime(config, registry=CollectorRegistry(), audit_stream=audit)
    await start(rt)
    rng = random.Random(7)
    gate = asyncio.Semaphore(64)
    data = b"\x89PNG" + bytes(2044)
    first = time.monotonic() + 1.0 + count / 1000  # after the stores, on a usual machine

    async def put(n: int) -> None:
        facts = ImageFacts(f"{n:064x}", len(data), "image/png", 1, 1)
        async with gate:
            ttl = max(0.1, first + rng.uniform(0, SPREAD) - time.monotonic())
            await rt.store.put(data, facts, ttl, None, "upload")

    def purged() -> float:
        value = rt.metrics.registry.get_sample_value("cache_purged_total", {"reason": "ttl"})
        return value or 0.0

    began = time.monotonic()
    try:
        await asyncio.gather(*(put(n) for n in range(count)))
        stored_in = time.monotonic() - began
        while purged() < count and time.monotonic() - began < 90:
            await asyncio.sleep(0.05)
    finally:
        await stop(rt)
    lags = sorted(e["lag_ms"] for e in audit.events("purged") if e.get("reason") == "ttl")
    assert len(lags) == count  # every item went, by this node's timer or sweep
    assert item_keys(all_keys(redis_server)) == []
    report = {
        "items": count,
        "store_seconds": round(stored_in, 2),
        "stored_before_first_deadline": began + stored_in < first,
        "lag_p50_ms": round(statistics.median(lags), 3),
        "lag_p99_ms": round(lags[int(0.99 * (count - 1))], 3),
        "lag_max_ms": round(lags[-1], 3),
    }
    print("\nredis purge lag:", json.dumps(report))

"""Bench 5: flood. Ten times the capacity offered at once to a service with a small cap.

server.py runs with a small `storage.max_bytes` (pinned to core 0). Half the capacity is
filled first; those admitted items are read back by a few readers in this process, unloaded
(the reference latency). Then bench/flood_client.py (its own process, core 1) POSTs
flood_factor x capacity distinct ~100 KB PNGs over up to 1,000 connections at once, while the
same readers keep reading the admitted items and a thread samples the server's RSS every
10 ms. Expected: 503 with Retry-After once full, RSS under max_bytes + RSS at start + a fixed
margin, reads of admitted items within 3x their unloaded p99.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import http_client
from .context import Ctx
from .images import noise_png, unique_png
from .procs import CLIENT_CPU, ROOT, Proc, pinned, start_service
from .stats import Section, at_most, fmt, fmt_bytes, percentile, ratio

MiB = 1024 * 1024
RSS_MARGIN = 64 * MiB  # the fixed margin allowed over max_bytes + RSS at start
READ_TARGET = 3.0
MAX_CONNECTIONS = 1_000
IMAGE_BYTES = 100_000


class RssSampler(threading.Thread):
    """The peak RSS of a process, sampled until stopped."""

    def __init__(self, proc: Proc, every: float = 0.01) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.proc, self.every = proc, every
        self.peak = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peak = max(self.peak, self.proc.rss())
            except OSError:
                return
            self.samples += 1
            self.stopping.wait(self.every)

    def stop(self) -> int:
        self.stopping.set()
        self.join(2)
        return self.peak


@dataclass
class Reads:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


async def read_until(
    url: str, ids: list[str], readers: int, stop: asyncio.Event, out: Reads
) -> None:
    """`readers` loops GETting the admitted ids in turn until `stop` is set."""
    async with http_client.session(readers) as http:

        async def reader(offset: int) -> None:
            i = offset
            while not stop.is_set():
                started = time.perf_counter()
                async with http.get(f"{url}/v1/images/{ids[i % len(ids)]}") as resp:
                    await resp.read()
                out.latencies_ms.append((time.perf_counter() - started) * 1000)
                out.statuses[resp.status] += 1
                i += readers

        await asyncio.gather(*(reader(k) for k in range(readers)))


async def _unloaded(url: str, ids: list[str], readers: int, count: int) -> Reads:
    out, stop = Reads(), asyncio.Event()
    task = asyncio.create_task(read_until(url, ids, readers, stop, out))
    give_up = time.monotonic() + 30
    while len(out.latencies_ms) < count and time.monotonic() < give_up and not task.done():
        await asyncio.sleep(0.01)
    stop.set()
    await task
    return out


async def _flood(
    url: str, ids: list[str], readers: int, proc: Proc, body: Path, offered: int
) -> tuple[Reads, dict[str, Any], int, int]:
    argv = [sys.executable, "-m", "bench.flood_client", url, str(body), str(offered)]
    argv.append(str(min(offered, MAX_CONNECTIONS)))
    sampler = RssSampler(proc)
    sampler.start()
    loaded, stop = Reads(), asyncio.Event()
    reading = asyncio.create_task(read_until(url, ids, readers, stop, loaded))
    flood = await asyncio.create_subprocess_exec(
        *pinned(argv, CLIENT_CPU),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(flood.communicate(), timeout=60 + offered * 0.02)
    finally:
        if flood.returncode is None:
            flood.kill()
            await flood.wait()
        stop.set()
        await reading
        peak = sampler.stop()
    if flood.returncode != 0:
        raise RuntimeError(f"flood client failed: {err.decode(errors='replace')[-400:]}")
    outcome: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return loaded, outcome, peak, sampler.samples


async def _scenario(ctx: Ctx, url: str, proc: Proc, body: Path, base: bytes) -> dict[str, Any]:
    sizes = ctx.sizes
    capacity = sizes.flood_max_bytes // len(base)
    async with http_client.session(8) as http:
        admitted = await http_client.upload_all(
            http, url, capacity // 2, lambda i: unique_png(base, i), 8, 300.0
        )
    ids = admitted.ids
    unloaded = await _unloaded(url, ids, sizes.flood_readers, max(200, 4 * len(ids)))
    offered = sizes.flood_factor * capacity
    loaded, outcome, peak, samples = await _flood(
        url, ids, sizes.flood_readers, proc, body, offered
    )
    return {
        "capacity_items": capacity,
        "admitted_before": len(ids),
        "offered": offered,
        "unloaded": unloaded,
        "loaded": loaded,
        "peak_rss": peak,
        "rss_samples": samples,
        **outcome,
    }


def run(ctx: Ctx) -> Section:
    sizes = ctx.sizes
    section = Section("flood")
    base = noise_png(IMAGE_BYTES)
    body = ctx.scratch / "flood.png"
    body.write_bytes(base)
    env = {
        "CACHE_STORAGE_MAX_BYTES": str(sizes.flood_max_bytes),
        "CACHE_STORAGE_MAX_ITEMS": "100000",
        "CACHE_LIMITS_MAX_UPLOAD_BYTES": str(min(20 * MiB, sizes.flood_max_bytes)),
    }
    with ctx.procs() as procs:
        service = start_service(procs, env, name="service-flood")
        time.sleep(0.3)
        start_rss = service.proc.rss()
        data = asyncio.run(_scenario(ctx, service.url, service.proc, body, base))
    unloaded: Reads = data.pop("unloaded")
    loaded: Reads = data.pop("loaded")
    statuses = data.get("statuses", {})
    count_503 = int(statuses.get("503", 0))
    retry_after = count_503 > 0 and data.get("retry_after_missing", 1) == 0
    peak = int(data["peak_rss"])
    limit = sizes.flood_max_bytes + start_rss
    rss_ratio = ratio(peak, limit)
    p99_unloaded = percentile(unloaded.latencies_ms, 99)
    p99_loaded = percentile(loaded.latencies_ms, 99)
    read_ratio = ratio(p99_loaded, p99_unloaded)
    bad_reads = sum(n for code, n in loaded.statuses.items() if code != 200)
    section.add(
        f"flood: {data['offered']:,} uploads offered ({sizes.flood_factor}x capacity of "
        f"{data['capacity_items']:,}), answers",
        f"{count_503:,} x 503, Retry-After on all: {'yes' if retry_after else 'no'}",
        "statuses " + ", ".join(f"{k}: {v}" for k, v in statuses.items()),
        None,
        "503 + Retry-After",
        count_503 > 0 and retry_after,
    )
    section.add(
        "flood: peak RSS / (max_bytes + RSS at start)",
        f"{fmt(rss_ratio)} (peak {fmt_bytes(peak)})",
        f"max_bytes {fmt_bytes(sizes.flood_max_bytes)} + start {fmt_bytes(start_rss)}",
        rss_ratio,
        f"peak ≤ max_bytes + start + {fmt_bytes(RSS_MARGIN)} (ratio ≤ "
        f"{fmt((limit + RSS_MARGIN) / limit)})",
        peak <= limit + RSS_MARGIN,
    )
    section.add(
        f"flood: read p99 of admitted items ({sizes.flood_readers} readers), during / unloaded",
        f"{fmt(p99_loaded, 'ms')} ({len(loaded.latencies_ms):,} reads, {bad_reads} not 200)",
        f"unloaded {fmt(p99_unloaded, 'ms')} ({len(unloaded.latencies_ms):,} reads)",
        read_ratio,
        f"≤ {READ_TARGET:g}",
        None if read_ratio is None else bool(read_ratio <= READ_TARGET and bad_reads == 0),
    )
    section.keys.update(
        {
            "flood_rss_ratio": rss_ratio,
            "flood_read_p99_ratio": read_ratio,
            "flood_503_count": count_503,
            "flood_retry_after_present": retry_after,
        }
    )
    section.series["flood"] = {
        **data,
        "unloaded_ms": sorted(unloaded.latencies_ms),
        "loaded_ms": sorted(loaded.latencies_ms),
        "start_rss": start_rss,
        "unloaded_p50_ms": percentile(unloaded.latencies_ms, 50),
        "loaded_p50_ms": percentile(loaded.latencies_ms, 50),
        "loaded_reads": len(loaded.latencies_ms),
    }
    if at_most(read_ratio, READ_TARGET) is None:
        section.notes.append("Flood: no reads completed during the flood.")
    return section

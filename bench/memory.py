"""Bench 3: memory. RSS of server.py at start, holding N bytes of images, and after they expire.

The service gets unique ~100 KB PNGs over HTTP, all due at about the same moment (TTLs set
so every item outlives the fill). RSS is read from /proc when ready (cold), after a warm-up of
40 uploads and deletes ("start": executor threads and lazy imports in place), with everything
held, at its peak during the fill (VmHWM), and once /readyz says nothing is held. References,
same bytes, same item count: the bare aiohttp dict server (plain CPython + glibc: DELETE
instead of a TTL) and redis-server (SET PX, jemalloc). /proc/PID/smaps splits what is kept
into the main heap ([heap], brk) and other anonymous mappings (thread arenas, mmap'd blocks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import redis

from . import http_client
from .context import Ctx
from .images import noise_png, unique_png
from .procs import Proc, start_bare, start_redis, start_service
from .stats import Section, at_most, fmt, fmt_bytes, ratio

AFTER_TARGET = 1.10
PEAK_TARGET = 1.15  # peak RSS during the fill / (RSS at start + payload)
OVERHEAD_TARGET = 1024
CONCURRENCY = 8
SETTLE = 1.0  # seconds after the last release before RSS is read
MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


@dataclass
class Footprint:
    system: str
    items: int = 0
    payload: int = 0
    cold: int = 0  # RSS when ready, before any request: "at start"
    warm: int = 0  # RSS after a warm-up of 40 uploads and deletes (threads, lazy imports)
    half: int = 0  # RSS with the first half of the items held
    half_items: int = 0
    half_payload: int = 0
    held: int = 0  # RSS with every item held
    peak: int = 0  # VmHWM when the fill ended: the most the process was ever resident
    after: int = 0  # RSS once everything is released
    heap_after: int = 0  # RSS of [heap] after release
    anon_after: int = 0  # RSS of other anonymous mappings after release
    complete: bool = True
    expired_early: int = 0  # items already gone when the fill ended (the TTL plan was short)

    @property
    def after_ratio(self) -> float | None:
        return ratio(self.after, self.cold) if self.complete and self.after else None

    @property
    def peak_ratio(self) -> float | None:
        """Peak RSS during the fill over what it must hold: start + payload."""
        return ratio(self.peak, self.cold + self.payload) if self.peak else None

    @property
    def overhead_per_item(self) -> float | None:
        """Marginal: RSS growth from half to full, less the payload added, per item added.
        Fixed costs (threads, imports, the allocator's pool for requests in flight) cancel."""
        added = self.items - self.half_items
        if added <= 0:
            return None
        return (self.held - self.half - (self.payload - self.half_payload)) / added

    def as_dict(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "after_ratio": self.after_ratio,
            "overhead_per_item": self.overhead_per_item,
            "peak_ratio": self.peak_ratio,
        }


def peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set so far, in bytes (no sampling gaps)."""
    with open(f"/proc/{pid}/status") as handle:
        line = next(x for x in handle if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def smaps_split(pid: int) -> tuple[int, int]:
    """(RSS of [heap], RSS of the other anonymous mappings), in bytes."""
    heap = anon = 0
    current = ""
    with open(f"/proc/{pid}/smaps") as handle:
        for line in handle:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5:  # a mapping line
                current = head[5] if len(head) >= 6 else ""
            elif head[0] == "Rss:":
                size = int(head[1]) * 1024
                if current == "[heap]":
                    heap += size
                elif current == "":
                    anon += size
    return heap, anon


def _items_for(ctx: Ctx, size: int) -> int:
    return max(10, ctx.sizes.memory_fill_bytes // size)


async def _fill_http(
    url: str,
    proc: Proc,
    base: bytes,
    items: int,
    out: Footprint,
    http: aiohttp.ClientSession,
    ttl: Callable[[int], float] | None,
) -> list[str]:
    """Upload in two halves, reading RSS after each (and after a 40-item warm-up)."""
    warm = await http_client.upload_all(
        http,
        url,
        40,
        lambda i: unique_png(base, 10**9 + i),
        CONCURRENCY,
        None if ttl is None else 300.0,
    )
    await http_client.delete_all(http, url, warm.ids)
    await asyncio.sleep(0.3)
    out.warm = proc.rss()
    ids: list[str] = []

    def bodies(first: int) -> Callable[[int], bytes]:
        return lambda i: unique_png(base, first + i)

    for first, count in ((0, items // 2), (items // 2, items - items // 2)):
        done = await http_client.upload_all(http, url, count, bodies(first), CONCURRENCY, ttl)
        ids += done.ids
        out.items += len(done.ids)
        out.payload += done.bytes_stored
        await asyncio.sleep(0.3)
        if first == 0:
            out.half, out.half_items, out.half_payload = proc.rss(), out.items, out.payload
    out.held = proc.rss()
    return ids


def service_footprint(
    ctx: Ctx, base: bytes, extra_env: dict[str, str] | None = None, label: str = ""
) -> Footprint:
    items = _items_for(ctx, len(base))
    result = Footprint(f"this service (memory){label}")
    env = {
        "CACHE_STORAGE_MAX_BYTES": str(ctx.sizes.memory_fill_bytes * 2 + (64 << 20)),
        "CACHE_STORAGE_MAX_ITEMS": str(items * 2 + 100),
        **(extra_env or {}),
    }
    with ctx.procs() as procs:
        service = start_service(procs, env)
        time.sleep(0.3)
        result.cold = service.proc.rss()
        asyncio.run(_service_cycle(service.url, service.proc, base, items, result))
        result.heap_after, result.anon_after = smaps_split(service.proc.pid)
    return result


async def _service_cycle(url: str, proc: Proc, base: bytes, items: int, out: Footprint) -> None:
    async with http_client.session(CONCURRENCY) as http:
        probe = await http_client.upload_all(
            http, url, 20, lambda i: unique_png(base, 2 * 10**9 + i), CONCURRENCY, 300.0
        )
        await http_client.delete_all(http, url, probe.ids)
        deadline = time.monotonic() + items * probe.seconds / 20 * 1.5 + 1.5

        def ttl(_: int) -> float:  # everything falls due together, after the fill
            return deadline - time.monotonic()

        await _fill_http(url, proc, base, items, out, http, ttl)
        out.peak = peak_rss(proc.pid)
        out.expired_early = max(0, out.items - await http_client.items_held(http, url))
        left = await http_client.wait_empty(http, url, deadline + 30 + items * 0.001)
        out.complete = left == 0
        await asyncio.sleep(SETTLE)
        out.after = proc.rss()


def bare_footprint(ctx: Ctx, base: bytes) -> Footprint:
    items = _items_for(ctx, len(base))
    result = Footprint("bare aiohttp (dict)")
    with ctx.procs() as procs:
        bare = start_bare(procs)
        url = f"http://127.0.0.1:{bare.ports['port']}"
        time.sleep(0.3)
        result.cold = bare.rss()
        asyncio.run(_bare_cycle(url, bare, base, items, result))
        result.heap_after, result.anon_after = smaps_split(bare.pid)
    return result


async def _bare_cycle(url: str, proc: Proc, base: bytes, items: int, out: Footprint) -> None:
    async with http_client.session(CONCURRENCY) as http:
        ids = await _fill_http(url, proc, base, items, out, http, None)
        out.peak = peak_rss(proc.pid)
        await http_client.delete_all(http, url, ids)
        await asyncio.sleep(SETTLE)
        out.after = proc.rss()


def redis_footprint(ctx: Ctx, base: bytes) -> Footprint:
    items = _items_for(ctx, len(base))
    result = Footprint("Redis (SET PX)")
    with ctx.procs() as procs:
        server = start_redis(procs)
        client = redis.Redis(host="127.0.0.1", port=server.ports["port"])
        try:
            time.sleep(0.3)
            result.cold = result.warm = server.rss()
            for first, count in ((0, items // 2), (items // 2, items - items // 2)):
                pipe = client.pipeline(transaction=False)
                for i in range(first, first + count):
                    body = unique_png(base, i)
                    pipe.set(f"m:{i}", body, px=300_000)
                    result.payload += len(body)
                    if i % 100 == 99:
                        pipe.execute()
                pipe.execute()
                result.items += count
                time.sleep(0.3)
                if first == 0:
                    result.half, result.half_items = server.rss(), result.items
                    result.half_payload = result.payload
            result.held = server.rss()
            # due now (PEXPIRE 1): Redis's own expiry frees them
            pipe = client.pipeline(transaction=False)
            for i in range(items):
                pipe.pexpire(f"m:{i}", 1)
            pipe.execute()
            give_up = time.monotonic() + 30
            while client.dbsize() and time.monotonic() < give_up:
                time.sleep(0.05)
            result.complete = client.dbsize() == 0
            time.sleep(SETTLE)
            result.after = server.rss()
            result.heap_after, result.anon_after = smaps_split(server.pid)
        finally:
            client.close()
    return result


def run(ctx: Ctx) -> Section:
    section = Section("memory")
    base = noise_png(100_000)
    service = service_footprint(ctx, base)
    bare = bare_footprint(ctx, base)
    redis_fp = redis_footprint(ctx, base)
    after = service.after_ratio
    overhead = service.overhead_per_item
    section.add(
        f"RSS after purge / at start ({fmt_bytes(service.payload)} in {service.items:,} items)",
        f"{fmt(after)} (start {fmt_bytes(service.cold)}, warm {fmt_bytes(service.warm)}, "
        f"held {fmt_bytes(service.held)}, after {fmt_bytes(service.after)})",
        f"bare aiohttp {fmt(bare.after_ratio)}; Redis {fmt(redis_fp.after_ratio)}",
        after,
        f"≤ {AFTER_TARGET:g}",
        at_most(after, AFTER_TARGET),
    )
    section.add(
        "RSS overhead per item, marginal (half -> full: growth - payload) / items",
        fmt(overhead, "B"),
        f"bare aiohttp {fmt(bare.overhead_per_item, 'B')}; "
        f"Redis {fmt(redis_fp.overhead_per_item, 'B')}",
        ratio(overhead, redis_fp.overhead_per_item),
        f"≤ {OVERHEAD_TARGET} B",
        at_most(overhead, OVERHEAD_TARGET),
    )
    section.add(
        "  what is kept after purge: [heap] / other anon RSS",
        f"{fmt_bytes(service.heap_after)} / {fmt_bytes(service.anon_after)}",
        f"bare aiohttp {fmt_bytes(bare.heap_after)} / {fmt_bytes(bare.anon_after)}",
    )
    footprints = [service, bare, redis_fp]
    # Root here has CAP_IPC_LOCK, so the default run mlockall()s: item bytes live in pages
    # of their own (cache/store/local/pages.py) and go back at purge, but what the requests
    # left in glibc's heaps stays resident (malloc_trim cannot drop locked pages). The same
    # service without the lock shows what the trim adds (a container without CAP_IPC_LOCK
    # and with a small RLIMIT_MEMLOCK skips the lock and behaves like this row).
    unlocked = service_footprint(
        ctx, base, {"CACHE_GUARANTEES_LOCK_MEMORY": "false"}, " + lock_memory=false"
    )
    footprints.append(unlocked)
    section.add(
        "RSS after purge / at start, guarantees.lock_memory = false",
        f"{fmt(unlocked.after_ratio)} (start {fmt_bytes(unlocked.cold)}, "
        f"held {fmt_bytes(unlocked.held)}, after {fmt_bytes(unlocked.after)})",
        "same bytes, same items",
        unlocked.after_ratio,
        f"≤ {AFTER_TARGET:g}",
        at_most(unlocked.after_ratio, AFTER_TARGET),
    )
    peak = service.peak_ratio
    section.add(
        "peak RSS during the fill / (RSS at start + payload)",
        f"{fmt(peak)} (peak {fmt_bytes(service.peak)}, start {fmt_bytes(service.cold)}, "
        f"payload {fmt_bytes(service.payload)})",
        f"lock_memory = false {fmt(unlocked.peak_ratio)}; bare aiohttp {fmt(bare.peak_ratio)}",
        peak,
        f"≤ {PEAK_TARGET:g}",
        at_most(peak, PEAK_TARGET),
    )
    if ctx.sizes.mode == "full":  # what a glibc setting alone would change (no code change)
        tuned = service_footprint(ctx, base, {MMAP_ENV: "65536"}, f" + {MMAP_ENV}=65536")
        footprints.append(tuned)
        section.add(
            f"  diagnostic: the same service with {MMAP_ENV}=65536 (environment only)",
            f"after/start {fmt(tuned.after_ratio)}, overhead {fmt(tuned.overhead_per_item, 'B')}",
            f"[heap] / other anon after: {fmt_bytes(tuned.heap_after)} / "
            f"{fmt_bytes(tuned.anon_after)}",
        )
    section.keys.update(
        {
            "rss_after_purge_ratio": after,
            "rss_after_purge_ratio_unlocked": unlocked.after_ratio,
            "overhead_bytes_per_item": overhead,
            "peak_rss_fill_ratio": peak,
        }
    )
    section.series["footprints"] = [fp.as_dict() for fp in footprints]
    section.notes.append(_explain(service, bare))
    if not service.complete:
        section.notes.append("Memory: the service still held items when the wait ended.")
    if service.expired_early:
        section.notes.append(
            f"Memory: {service.expired_early} items expired before the fill ended, so the "
            "'held' RSS is low by about their size."
        )
    return section


def _explain(service: Footprint, bare: Footprint) -> str:
    return (
        "Memory, where the bytes live: the memory backend reads each upload straight into "
        "pages of its own (cache/store/local/pages.py): ~100 KB items packed in 4 MiB "
        "anonymous arenas, items of 1 MiB and more in a mapping each. A purge zeroes the "
        "item, drops every page no live item shares (MADV_DONTNEED_LOCKED, which works on "
        "locked pages) and unmaps an arena once it is empty, so the pages leave the process "
        "also under mlockall. What stays after purge is what the requests left in glibc's "
        "heaps (aiohttp's chunks, parsing), which malloc_trim(0) drops only when memory is "
        f"not locked: once every item had expired, the locked service had "
        f"{fmt_bytes(service.heap_after)} resident in [heap] and "
        f"{fmt_bytes(service.anon_after)} in other anonymous mappings (thread arenas, "
        "stacks, the interpreter's own). The bare aiohttp server ended at "
        f"{fmt_bytes(bare.heap_after)} / {fmt_bytes(bare.anon_after)}. Redis (jemalloc) "
        "returns dirty pages only after its decay time (10 s by default), so its 'after' "
        "figure, read 1 s after the last key went, is high too. The peak during the fill is "
        "the process's VmHWM when the last upload was answered."
    )

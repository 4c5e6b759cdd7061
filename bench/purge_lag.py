"""Bench 1: purge lag, deadline -> bytes released, at 1,000 and 100,000 live items.

This service is measured in-process, with the real clock and the real loop timer: the
store and its ExpiryTimer from `build_runtime` (no APScheduler sweep: the exact timer alone),
audit lines written to a file as server.py writes them to stdout, and the lag taken from the
`purged` lines (`lag_ms`, the store's own figure). The full run also drives server.py over
HTTP and reads `lag_ms` from its audit log (end-to-end). References: Redis's own expiry and
memcached's (bench/purge_refs.py), on the same schedule (bench/lagrun.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time

from prometheus_client import CollectorRegistry

from cache.app import build_runtime
from cache.config import build_config
from cache.item import ImageFacts
from cache.untracked import freeze_startup

from . import http_client
from .context import Ctx
from .images import noise_png, unique_png
from .lagrun import LagRun, not_available, plan_anchor
from .procs import Procs, start_memcached, start_redis, start_service
from .purge_refs import memcached_expiry, redis_expiry
from .stats import Section, at_most, fmt, ratio

P99_TARGET_MS = 5.0
MAX_TARGET_MS = 25.0
KEY_ITEMS = 100_000
CALIBRATE = 2_000
CHUNK = 256  # puts between yields to the loop during the fill
FILL_LIMIT = 90.0  # seconds: a fill still running then stops (and the run is incomplete)


class GcPauses:
    """Times every cyclic-GC run (gc.callbacks) while in use: a full collection walks every
    tracked object, so its pause grows with the items held and delays the expiry timer."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, ms)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1e3))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, float]:
        full = [ms for generation, ms in self.pauses if generation == 2]
        return {
            "gc_runs": len(self.pauses),
            "gc_full_runs": len(full),
            "gc_longest_pause_ms": round(max((ms for _, ms in self.pauses), default=0.0), 3),
        }


def _drain_seconds(items: int) -> float:
    """How long past the last deadline a run may take to release everything."""
    return 5.0 + items * 0.0003


async def _service_run(backend: str, items: int, ctx: Ctx, procs: Procs, redis_url: str) -> LagRun:
    sizes = ctx.sizes
    system = f"service {backend} (in-process)"
    run = LagRun(system, items, "store + ExpiryTimer, real clock; lag_ms of `purged` audit lines")
    storage = {
        "backend": backend,
        "path": str(procs.shm_dir(f"lag-{backend}")),
        "redis_url": redis_url,
        "max_items": items + CALIBRATE + 10,
        "max_bytes": 1 << 40,  # the item count is the cap
    }
    config = build_config({"storage": storage}, env={})
    audit_path = ctx.scratch / f"lag-audit-{backend}-{items}.jsonl"
    rng = ctx.rng(f"lag-{backend}-{items}")
    payload = bytes(sizes.payload_bytes)
    with open(audit_path, "w") as audit:
        rt = build_runtime(config, registry=CollectorRegistry(), audit_stream=audit)
        store, clock = rt.store, rt.clock
        await store.start()
        freeze_startup()  # as server.py does once start-up is over
        try:
            started = clock.monotonic()
            for i in range(min(CALIBRATE, items)):
                await store.put(payload, _facts(i, payload), 300.0, None, "upload")
            per_item = (clock.monotonic() - started) / min(CALIBRATE, items)
            await store.purge_all("admin")
            rt.timer.start()
            lo, hi = sizes.ttl_range
            anchor = plan_anchor(clock.monotonic(), items, per_item)
            offsets = [rng.uniform(lo, hi) for _ in range(items)]
            fill_start = clock.monotonic()
            written = 0
            for i, offset in enumerate(offsets):
                ttl = anchor + offset - clock.monotonic()
                await store.put(payload, _facts(CALIBRATE + i, payload), ttl, None, "upload")
                written += 1
                if i % CHUNK == CHUNK - 1:
                    await asyncio.sleep(0)
                    if clock.monotonic() > fill_start + FILL_LIMIT:
                        break  # bounded in time too: the run is then marked incomplete
            fill_end = clock.monotonic()
            run.fill_s = fill_end - fill_start
            run.fill_overran = fill_end > anchor + lo
            give_up = anchor + hi + _drain_seconds(items)
            with GcPauses() as pauses:  # the collector's pauses while items fall due
                while len(store) and clock.monotonic() < give_up:
                    await asyncio.sleep(0.05)
            left = len(store)
            run.extra.update(pauses.summary())
        finally:
            rt.timer.stop()
            await rt.timer.drain()
            await store.close()
            # As server.py does at exit: the writer thread writes every 10 ms, so the
            # last batch's lines may still be queued when the store is empty.
            await asyncio.get_running_loop().run_in_executor(None, rt.audit.close)
    run.lags_ms = _audit_lags(audit_path.read_text().splitlines())
    run.released = len(run.lags_ms)
    run.complete = left == 0 and run.released == items and written == items
    if written < items:
        run.why_not = f"fill stopped after {FILL_LIMIT:g} s with {written:,} of {items:,} written"
    audit_path.unlink()
    return run


def _facts(i: int, payload: bytes) -> ImageFacts:
    return ImageFacts(f"{i:064x}", len(payload), "image/png", 1, 1)


def _audit_lags(lines: list[str]) -> list[float]:
    lags = []
    for line in lines:
        if '"purged"' in line and '"ttl"' in line:
            event = json.loads(line)
            if event.get("event") == "purged" and event.get("reason") == "ttl":
                lags.append(float(event["lag_ms"]))
    return lags


def service_inprocess(backend: str, items: int, ctx: Ctx) -> LagRun:
    with ctx.procs() as procs:
        redis_url = ""
        if backend == "redis":
            built, why = ctx.redis_backend()
            if not built:
                return not_available(f"service {backend} (in-process)", items, why)
            redis_url = f"redis://127.0.0.1:{start_redis(procs).ports['port']}/0"
        return asyncio.run(_service_run(backend, items, ctx, procs, redis_url))


def service_e2e(items: int, ctx: Ctx) -> LagRun:
    """server.py, uploads over HTTP, lag_ms from its audit log (stdout)."""
    run = LagRun(
        "service memory (end-to-end)",
        items,
        "server.py subprocess, HTTP uploads; lag_ms of `purged` lines on its stdout",
    )
    with ctx.procs() as procs:
        service = start_service(procs)
        base = noise_png(ctx.sizes.payload_bytes)
        left = asyncio.run(_e2e_drive(service.url, base, items, ctx, run))
        procs.stop(service.proc)  # SIGTERM: the audit log is complete
        lines = service.audit_path.read_text().splitlines()
    run.lags_ms = _audit_lags(lines)
    run.released = len(run.lags_ms)
    run.complete = left == 0 and run.released == items
    return run


async def _e2e_drive(url: str, base: bytes, items: int, ctx: Ctx, run: LagRun) -> int:
    lo, hi = ctx.sizes.ttl_range
    rng = ctx.rng(f"e2e-{items}")
    async with http_client.session(8) as http:
        calibration = await http_client.upload_all(
            http, url, 50, lambda i: unique_png(base, i), 8, 300.0
        )
        await http_client.delete_all(http, url, calibration.ids)
        per_item = calibration.seconds / 50
        anchor = plan_anchor(time.monotonic(), items, per_item)
        offsets = [rng.uniform(lo, hi) for _ in range(items)]

        def ttl(index: int) -> float:
            return anchor + offsets[index] - time.monotonic()

        fill_start = time.monotonic()
        await http_client.upload_all(http, url, items, lambda i: unique_png(base, 50 + i), 8, ttl)
        run.fill_s = time.monotonic() - fill_start
        run.fill_overran = time.monotonic() > anchor + lo
        return await http_client.wait_empty(http, url, anchor + hi + _drain_seconds(items))


def references(items: int, ctx: Ctx) -> tuple[LagRun, LagRun]:
    """Redis and memcached, side by side (both spend the wait asleep in their own process)."""
    payload = bytes(ctx.sizes.payload_bytes)
    ttl = ctx.sizes.ttl_range
    with ctx.procs() as procs:
        redis_server = start_redis(procs, notify_expired=True)
        memcached = start_memcached(procs, memory_mb=max(64, items * 4 // 1024 + 64))
        out: dict[str, LagRun] = {}
        failed: list[BaseException] = []

        def mc() -> None:
            try:
                out["mc"] = memcached_expiry(
                    memcached, items, ttl, payload, f"{ctx.seed}:mc{items}"
                )
            except BaseException as exc:  # handed to the caller after join()
                failed.append(exc)

        thread = threading.Thread(target=mc, name="memcached-expiry")
        thread.start()
        try:
            out["redis"] = redis_expiry(
                redis_server, items, ttl, payload, f"{ctx.seed}:redis{items}"
            )
        finally:
            thread.join()
        if failed:
            raise failed[0]
    return out["redis"], out["mc"]


# -- the section -----------------------------------------------------------------------------
def _triple(run: LagRun) -> str:
    if not run.available:
        return f"n/a ({run.why_not})"
    if not run.complete:
        bound = run.bound_ms()
        why = f"; {run.why_not}" if run.why_not else ""
        return (
            f"{fmt(run.p50)} / {fmt(run.p99)} / >{fmt(bound)} ms "
            f"({run.released:,}/{run.items:,} released in the bound{why})"
        )
    text = f"{fmt(run.p50)} / {fmt(run.p99)} / {fmt(run.max)} ms"
    if run.extra.get("gc_full_runs"):
        text += (
            f" ({run.extra['gc_full_runs']:.0f} full GC in the window, longest pause "
            f"{fmt(run.extra['gc_longest_pause_ms'])} ms)"
        )
    return text


def _met(lag_run: LagRun) -> bool | None:
    if not lag_run.available:
        return None
    if not lag_run.complete:
        return False
    return bool(at_most(lag_run.p99, P99_TARGET_MS) and at_most(lag_run.max, MAX_TARGET_MS))


def run(ctx: Ctx) -> Section:
    sizes = ctx.sizes
    section = Section("purge_lag")
    runs: list[LagRun] = []
    refs: dict[int, tuple[LagRun, LagRun]] = {}
    for items in sizes.purge_counts:
        runs.append(service_inprocess("memory", items, ctx))
        refs[items] = references(items, ctx)
    for items in sizes.purge_counts_tmpfs:
        runs.append(service_inprocess("tmpfs", items, ctx))
    for items in sizes.purge_counts_redis:
        runs.append(service_inprocess("redis", items, ctx))
    if sizes.purge_e2e_count:
        runs.append(service_e2e(sizes.purge_e2e_count, ctx))

    key_items = max(sizes.purge_counts)
    for lag_run in runs:
        nearest = min(refs, key=lambda n: abs(n - lag_run.items))
        redis_run = refs[nearest][0]
        targeted = lag_run.items >= KEY_ITEMS or lag_run.items == key_items
        met = _met(lag_run) if targeted else None
        section.add(
            f"purge lag p50/p99/max, {lag_run.items:,} items, {lag_run.system}",
            _triple(lag_run),
            f"Redis expiry {_triple(redis_run)}",
            ratio(lag_run.p99, redis_run.p99),
            f"p99 ≤ {P99_TARGET_MS:g} ms, max ≤ {MAX_TARGET_MS:g} ms" if targeted else "",
            met,
        )
    for items, (_, mc_run) in sorted(refs.items()):
        zero = mc_run.extra.get("zero_after_last_deadline_ms")
        section.add(
            f"memcached purge lag p50/p99 (est.)/max, {items:,} items",
            "",
            f"memcached {_triple(mc_run)}; curr_items 0 at {fmt(zero)} ms after the last deadline",
            None,
            "",
            None,
        )

    key_run = next(
        (r for r in runs if r.system.startswith("service memory (in") and r.items == key_items),
        None,
    )
    key_redis = refs[key_items][0]
    section.keys.update(
        {
            "purge_lag_p50_ms": key_run.p50 if key_run else None,
            "purge_lag_p99_ms": key_run.p99 if key_run else None,
            "purge_lag_max_ms": key_run.max if key_run else None,
            "redis_expiry_p99_ms": key_redis.p99,
        }
    )
    for backend in ("tmpfs", "redis"):  # the same figure for the other two backends
        other = next(
            (
                r
                for r in runs
                if r.system == f"service {backend} (in-process)" and r.items == key_items
            ),
            None,
        )
        key = f"purge_lag_p99_ms_{backend}"
        section.keys[key] = other.p99 if other is not None and other.available else None
        if other is not None and not other.complete:
            section.keys[f"{key}_why"] = other.why_not or "not every item was released in the bound"
    if key_run is not None and not key_run.complete:
        section.keys["purge_lag_max_ms_why"] = (
            f"not every item was released within the bound (> {fmt(key_run.bound_ms())} ms)"
        )
    section.series["runs"] = [r.summary() for r in runs] + [
        r.summary() for pair in refs.values() for r in pair
    ]
    section.series["cdf"] = {
        f"{r.system} @ {r.items:,}": r.cdf_points()
        for r in runs + [r for pair in refs.values() for r in pair]
        if r.available and r.lags_ms
    }
    section.notes.append(
        f"Purge lag schedule: N items written as fast as each system takes them, deadlines "
        f"uniform over {sizes.ttl_range[0]:g}-{sizes.ttl_range[1]:g} s after the expected end "
        "of the fill (calibrated on a first write of 2,000 items), so all N are live when the "
        "first falls due. Service rows marked in-process use build_runtime's store and "
        "ExpiryTimer on the real clock (no sweep); the end-to-end row is server.py over HTTP."
    )
    for r in runs + [r for pair in refs.values() for r in pair]:
        if r.fill_overran:
            section.notes.append(
                f"{r.system} @ {r.items:,}: the fill ({r.fill_s:.2f} s) overran the first "
                "deadline: fewer than N items were live when the first fell due."
            )
    return section

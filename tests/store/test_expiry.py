"""Expiry with a manual clock: the one timer, the heap, the sweep backstop. No real sleeps."""

from __future__ import annotations

import asyncio
import gc
import io
import random

import pytest
from prometheus_client import CollectorRegistry

from cache.clock import ManualClock
from cache.item import ImageFacts
from cache.proof.audit import AuditLog
from cache.proof.metrics import Metrics
from cache.store.api import Capacity, Receipt
from cache.store.expiry import ExpiryTimer, Sweeper
from cache.store.local.memory import MemoryBackend
from cache.store.local.store import LocalStore
from tests.support.service import Service, parse_metrics


def make_store(clock: ManualClock, grace: float = 1.0) -> tuple[LocalStore, Metrics, MemoryBackend]:
    metrics = Metrics(CollectorRegistry())
    backend = MemoryBackend()
    store = LocalStore(
        backend, clock, metrics, AuditLog(clock, io.StringIO()), Capacity(10**9, 10**6), grace
    )
    return store, metrics, backend


def facts(n: int) -> ImageFacts:
    return ImageFacts(sha256=f"{n:064x}", size=10, media_type="image/png", width=1, height=1)


def armed_delay(timer: ExpiryTimer) -> float | None:
    handle = timer._handle
    return None if handle is None else handle.when() - asyncio.get_running_loop().time()


async def test_ten_thousand_items_each_purge_releases_exactly_the_expired() -> None:
    clock = ManualClock()
    store, metrics, backend = make_store(clock)
    timer = ExpiryTimer(store, clock)
    timer.start()
    rng = random.Random(42)
    deadlines: dict[str, float] = {}
    for n in range(10_000):
        item = await store.put(b"x" * 10, facts(n), rng.uniform(1, 300), None, "upload")
        deadlines[item.id] = item.deadline
    assert timer.armed_for == min(deadlines.values())
    held = set(deadlines)
    released_total = 0
    while held:
        clock.advance(rng.uniform(0.5, 7.0))
        now = clock.monotonic()
        receipts = await timer.run_due()
        expected = {i for i in held if deadlines[i] <= now}
        assert {r.id for r in receipts} == expected
        held -= expected
        released_total += len(receipts)
        assert await backend.keys() == held
        assert len(store) == len(held)
        if held:
            assert timer.armed_for == min(deadlines[i] for i in held)
            delay = armed_delay(timer)
            assert delay is not None
            assert abs(delay - (timer.armed_for - now)) < 0.05
        else:
            assert timer.armed_for is None
        assert all(0 <= r.lag_ms < 7000 for r in receipts)
    timer.stop()
    scrape = parse_metrics(_scrape(metrics))
    assert released_total == 10_000
    assert scrape['cache_purged_total{reason="ttl"}'] == 10_000
    assert scrape["cache_purge_lag_seconds_count"] == 10_000
    assert scrape["cache_items"] == 0 and scrape["cache_bytes"] == 0


async def test_insert_with_earlier_deadline_rearms_later_one_does_not() -> None:
    clock = ManualClock()
    store, _, _ = make_store(clock)
    timer = ExpiryTimer(store, clock)
    timer.start()
    assert timer.armed_for is None
    late = await store.put(b"a", facts(1), 100, None, "upload")
    assert timer.armed_for == late.deadline
    early = await store.put(b"b", facts(2), 10, None, "upload")
    assert timer.armed_for == early.deadline
    await store.put(b"c", facts(3), 50, None, "upload")
    assert timer.armed_for == early.deadline
    await store.delete(early.id)
    clock.advance(10)
    assert await timer.run_due() == []  # the stale heap entry is skipped, not purged twice
    assert timer.armed_for == clock.monotonic() + 40
    timer.stop()


async def test_purge_lag_is_time_past_the_deadline() -> None:
    clock = ManualClock()
    store, metrics, _ = make_store(clock)
    timer = ExpiryTimer(store, clock)
    timer.start()
    await store.put(b"a", facts(1), 10, None, "upload")
    clock.advance(10.25)
    [receipt] = await timer.run_due()
    assert receipt.lag_ms == 250.0
    scrape = parse_metrics(_scrape(metrics))
    assert scrape['cache_purge_lag_seconds_bucket{le="0.25"}'] == 1
    assert scrape['cache_purge_lag_seconds_bucket{le="0.1"}'] == 0
    timer.stop()


async def test_sweep_backstop_counts_violations_past_grace() -> None:
    clock = ManualClock()
    store, metrics, _ = make_store(clock, grace=1.0)
    sweeper = Sweeper(store, metrics, clock)
    await store.put(b"a", facts(1), 10, None, "upload")
    await store.put(b"b", facts(2), 20, None, "upload")
    clock.advance(10.5)  # the timer "missed" it, but within grace
    assert await sweeper.sweep() == 1
    clock.advance(11)  # 1.5 s past the second deadline: a violation
    assert await sweeper.sweep() == 1
    scrape = parse_metrics(_scrape(metrics))
    assert scrape["cache_ttl_violations_total"] == 1
    assert scrape["cache_sweep_duration_seconds_count"] == 2
    assert scrape["cache_last_sweep_timestamp_seconds"] == clock.wall()


async def test_timer_actually_fires_on_the_loop(service: Service) -> None:
    """The armed handle runs the purge by itself once its delay has passed (delay 0 here)."""
    created = await service.upload_ok(_png(), ttl=2)
    service.clock.advance(2)
    service.rt.timer.rearm()  # the deadline is now: armed with delay 0
    for _ in range(100):
        if len(service.rt.store) == 0:
            break
        await asyncio.sleep(0)  # yields to the loop; no wall-clock wait
    assert len(service.rt.store) == 0
    assert service.audit.events("purged")[-1]["id"] == created["id"]


async def test_expired_items_purged_by_ttl_show_in_metrics(service: Service) -> None:
    for ttl in (1, 2, 3):
        await service.upload_ok(_png(), ttl=ttl)
    await service.advance(2)
    metrics = await service.metrics()
    assert metrics['cache_purged_total{reason="ttl"}'] == 2
    assert metrics["cache_items"] == 1
    assert metrics["cache_oldest_item_age_seconds"] == 2
    assert metrics["cache_residency_seconds_count"] == 2


def _png() -> bytes:
    from tests.support import images

    return images.png()


def _scrape(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_scheduler_refuses_jobs_it_would_never_await() -> None:
    import functools

    from cache.store.expiry import Scheduler

    async def job(n: int) -> None:
        return None

    scheduler = Scheduler()
    scheduler.every(1, functools.partial(job, 1), "partial")
    with pytest.raises(TypeError):
        scheduler.every(1, lambda: job(1), "lambda")


async def test_scheduled_guarantee_checks_really_run(service: Service) -> None:
    jobs = {name: job for job, _, name in service.rt.scheduler._jobs}
    service.rt.metrics.guarantee_ok.clear()
    await jobs["guarantees"]()
    metrics = await service.metrics()
    assert 'cache_guarantee_ok{check="swap_safe"}' in metrics


async def test_a_batch_purge_is_one_audit_write_with_a_line_per_item() -> None:
    clock = ManualClock()
    store, _, _ = make_store(clock)
    stream = store._audit._stream
    assert isinstance(stream, io.StringIO)
    writes: list[str] = []
    original = stream.write
    stream.write = lambda text: writes.append(text) or original(text)  # type: ignore[method-assign]
    for n in range(50):
        await store.put(b"x", facts(n), 10, None, "upload")
    writes.clear()
    clock.advance(10)
    assert len(await store.purge_expired()) == 50
    assert len(writes) == 1 and writes[0].count("\n") == 50


async def test_memory_backend_trims_the_heap_after_large_releases() -> None:
    from cache.store.local import memory

    backend = MemoryBackend()
    ids = [f"id{n}" for n in range(40)]
    for item_id in ids:
        await backend.put(item_id, bytes(1024 * 1024))
    assert await backend.delete_many(ids[:20]) == 20
    assert backend.trims == 0  # 20 MiB freed: under the threshold
    assert await backend.delete_many(ids[20:39]) == 19
    await backend.close()  # waits for the trim running off the loop
    assert backend.trims == (1 if memory._malloc_trim is not None else 0)
    assert await backend.delete_many(ids[39:]) == 1  # the last item: drained, trim again
    await backend.close()
    assert backend.trims == (2 if memory._malloc_trim is not None else 0)


async def test_the_timer_keeps_nothing_of_what_it_purged() -> None:
    """A finished purge task holding its receipts would keep each purged item's id, sha256
    and size alive until the next purge: metadata of gone images, and small objects that
    pin the allocator's arenas, so RSS never comes back after a fill (issue #14)."""
    clock = ManualClock()
    store, _, _ = make_store(clock)
    timer = ExpiryTimer(store, clock)
    timer.start()
    item = await store.put(b"a", facts(7), 10, None, "upload")
    clock.advance(10.5)
    timer.rearm()  # due now: the loop's timer fires at once and purges in a task
    for _ in range(5):
        await asyncio.sleep(0)
    await timer.drain()
    assert len(store) == 0 and timer._task is not None and timer._task.done()
    gc.collect()
    kept = [o for o in gc.get_objects() if isinstance(o, Receipt) and o.id == item.id]
    assert kept == []
    timer.stop()

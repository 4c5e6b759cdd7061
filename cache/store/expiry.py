"""What makes items go on time: one exact timer, and a scheduled sweep as the backstop.

The timer is a single `loop.call_later` handle armed for the earliest deadline the store
holds (`deadlines.py`), re-armed after each insert that moves it and after each purge. A
timer per item would cost a handle per item and make shutdown and purge bookkeeping harder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import iscoroutinefunction_partial

from ..clock import Clock
from ..proof.metrics import Metrics
from .api import ItemStore, Receipt

log = logging.getLogger(__name__)


class ExpiryTimer:
    def __init__(self, store: ItemStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None
        # The timer's own purge; its result is None so that nothing of a purged item (the
        # receipts hold ids, sha256 and sizes) outlives the purge in a finished task: those
        # small objects, made all through a fill, would pin pymalloc's arenas (issue #14).
        self._task: asyncio.Task[None] | None = None
        self.armed_for: float | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._store.on_new_deadline(self._on_new_deadline)
        self.rearm()

    def stop(self) -> None:
        self._running = False
        self._cancel()

    def _on_new_deadline(self, deadline: float) -> None:
        if self._running and (self.armed_for is None or deadline < self.armed_for):
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        self._cancel()
        delay = max(0.0, deadline - self._clock.monotonic())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)
        self.armed_for = deadline

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.armed_for = None

    def _fire(self) -> None:
        self._handle = None
        self.armed_for = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run_due_quietly())

    async def _run_due_quietly(self) -> None:
        await self.run_due()

    async def run_due(self) -> list[Receipt]:
        """Purge everything due now, then re-arm for the next deadline."""
        try:
            return await self._store.purge_expired()
        except Exception:  # the sweep is the backstop; the timer must keep running
            log.exception("expiry purge failed")
            return []
        finally:
            if self._running:
                self.rearm()

    def rearm(self) -> None:
        """Arm for the earliest deadline from the clock's current reading."""
        deadline = self._store.earliest_deadline()
        if deadline is not None:
            self._arm(deadline)
        else:
            self._cancel()

    async def drain(self) -> None:
        """Wait for a purge already under way (used at shutdown)."""
        if self._task is not None and not self._task.done():
            await self._task


class Sweeper:
    """The backstop: finds what the timer missed, and times itself for the metrics."""

    def __init__(self, store: ItemStore, metrics: Metrics, clock: Clock) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    async def sweep(self) -> int:
        started = time.perf_counter()
        receipts = await self._store.purge_expired()
        self._metrics.sweep_duration.observe(time.perf_counter() - started)
        self._metrics.last_sweep.set(self._clock.wall())
        return len(receipts)


class Scheduler:
    """APScheduler 3.x on the running loop, in UTC; started and stopped by a cleanup_ctx."""

    def __init__(self) -> None:
        self._jobs: list[tuple[Callable[[], Awaitable[object]], float, str]] = []
        self._scheduler: AsyncIOScheduler | None = None

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        """Run `job` every `seconds` on the loop. A lambda returning a coroutine would be run
        in a thread and its coroutine never awaited, so only coroutine functions (or partials
        of them) are accepted."""
        if not iscoroutinefunction_partial(job):
            raise TypeError(f"scheduled job {name!r} must be a coroutine function or a partial")
        self._jobs.append((job, seconds, name))

    def start(self) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        for job, seconds, name in self._jobs:
            scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(seconds * 5)),
            )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

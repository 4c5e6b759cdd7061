"""The pool request work runs in: CPU work off the event loop, bounded in threads and in
decoded bytes, and never shared with the purge path.

Why a pool of its own: the default executor is shared by anything that calls
`run_in_executor(None, ...)`; a thumbnail of a 7000x7000 image there would make a tmpfs
delete wait behind it (a purge late by seconds). Why a byte budget: a thread cap alone
lets a few huge decodes hold gigabytes at once; the budget counts the decoded pixels of
every decode in flight, so a burst waits or is refused instead of growing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from ..errors import ImageTooLarge, ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")
BUDGET_WAIT = 2.0  # s a decode may wait for budget before its request gets a 503
# Work threads run at a lower CPU priority than the event loop: on a busy core the loop
# (and with it the exact expiry timer) is scheduled first, so request work cannot starve
# a purge even where the threads do not hold the GIL (zlib, SHA-256, Pillow).
WORK_NICE = 10


def lower_priority(nice: int = WORK_NICE) -> None:
    """Run in each work thread as it starts: this thread only (Linux thread ids)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class WorkPool:
    def __init__(self, threads: int, budget_bytes: int, wait: float = BUDGET_WAIT) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="work", initializer=lower_priority
        )
        self.budget = budget_bytes
        self._wait = wait
        self.in_flight = 0  # decoded bytes reserved now
        self._freed = asyncio.Condition()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` in a worker thread (CPU work that decodes nothing big)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    @contextlib.asynccontextmanager
    async def decoding(self, cost: int) -> AsyncIterator[None]:
        """Hold `cost` decoded bytes of the budget for the block: 422 when one decode
        alone is over the budget, 503 (Retry-After) when it does not fit in time."""
        if cost > self.budget:
            raise ImageTooLarge(
                f"decoding it needs {cost} bytes, over the {self.budget}-byte decode budget"
            )
        await self._reserve(cost)
        try:
            yield
        finally:
            async with self._freed:
                self.in_flight -= cost
                self._freed.notify_all()

    async def _reserve(self, cost: int) -> None:
        def fits() -> bool:
            return self.in_flight + cost <= self.budget

        async with self._freed:
            try:
                await asyncio.wait_for(self._freed.wait_for(fits), self._wait)
            except TimeoutError:
                raise ServiceUnavailable(
                    "too many images are being decoded; retry shortly", 1.0
                ) from None
            self.in_flight += cost

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

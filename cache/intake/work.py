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
from collections.abc import Callable
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
    """The threads, and the budget of decoded bytes in flight.

    The budget is taken and given back from any thread (under a lock): a work thread that
    has just checked an upload's structure reserves the decode's bytes itself when they fit
    (`run_if_fits`), so the check and the decode are one trip to the pool; only a decode
    that does not fit goes back to the loop and waits there (`run_within`). Invariant:
    `in_flight` is the sum of the costs reserved and not yet released, never over `budget`.
    """

    def __init__(self, threads: int, budget_bytes: int, wait: float = BUDGET_WAIT) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="work", initializer=lower_priority
        )
        self.budget = budget_bytes
        self._wait = wait
        self.in_flight = 0  # decoded bytes reserved now
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._freed: asyncio.Future[None] | None = None  # resolved at the next release

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` in a worker thread (CPU work that decodes nothing big)."""
        loop = self._loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    def try_reserve(self, cost: int) -> bool:
        """Any thread: take `cost` bytes of the budget if they fit now and no decode waits
        for budget on the loop (those go first). 422 when one decode alone is over the
        whole budget."""
        self._check(cost)
        with self._lock:
            if self._freed is not None or self.in_flight + cost > self.budget:
                return False
            self.in_flight += cost
            return True

    def release(self, cost: int) -> None:
        """Any thread: give `cost` bytes back and wake the decodes waiting on the loop."""
        with self._lock:
            self.in_flight -= cost
            waiting = self._freed is not None
        loop = self._loop
        if not waiting or loop is None:
            return
        if _running_loop() is loop:
            self._wake()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(self._wake)

    def run_if_fits(self, cost: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> bool:
        """In a work thread: `fn(*args)` within `cost` bytes of the budget if they fit now
        (True), else nothing (False: the caller waits for budget with `run_within`)."""
        if not self.try_reserve(cost):
            return False
        try:
            fn(*args, **kwargs)
        finally:
            self.release(cost)
        return True

    async def run_within(
        self, cost: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(*args)` in a worker thread once `cost` decoded bytes of the budget are held:
        422 when one decode alone is over the budget, 503 (Retry-After) when it does not
        fit in time. The thread gives the bytes back when `fn` ends: a request cancelled
        meanwhile (a client gone) does not free bytes a decode still holds; if the job
        had not started, it never will, and the bytes go back at once."""
        await self._reserve(cost)

        def job() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                self.release(cost)

        try:
            started = self.executor.submit(job)
        except BaseException:
            self.release(cost)
            raise
        try:
            return await asyncio.wrap_future(started)
        except asyncio.CancelledError:
            if started.cancel():  # never ran, never will: nobody else gives the bytes back
                self.release(cost)
            raise

    async def _reserve(self, cost: int) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._wait):
                while (freed := self._reserve_or_wait(cost)) is not None:
                    await asyncio.shield(freed)
        except TimeoutError:
            raise ServiceUnavailable(
                "too many images are being decoded; retry shortly", 1.0
            ) from None

    def _reserve_or_wait(self, cost: int) -> asyncio.Future[None] | None:
        """On the loop: reserve `cost` (None), or the future the next release resolves. The
        failed check and the future's creation are one step under the lock, so a release
        in a work thread either comes before it (and the bytes fit) or sees the future."""
        self._check(cost)
        assert self._loop is not None
        with self._lock:
            if self.in_flight + cost <= self.budget:
                self.in_flight += cost
                return None
            if self._freed is None:
                self._freed = self._loop.create_future()
            return self._freed

    def _check(self, cost: int) -> None:
        if cost > self.budget:
            raise ImageTooLarge(
                f"decoding it needs {cost} bytes, over the {self.budget}-byte decode budget"
            )

    def _wake(self) -> None:
        """On the loop: every waiter tries again (a release may let several fit)."""
        with self._lock:
            freed, self._freed = self._freed, None
        if freed is not None and not freed.done():
            freed.set_result(None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

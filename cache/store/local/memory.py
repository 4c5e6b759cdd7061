"""Bytes in process memory: the embedded default, nothing to set up."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

from ...wipe import zero
from ..api import Buffer
from .pages import MAX_MAPPINGS, Block, Pages, mapping_budget

# Item bytes live in pages of their own (`pages.py`), but the buffers of the requests that
# brought them (aiohttp's chunks, checks) come from glibc's heaps, which keep freed blocks:
# past this many freed item bytes (a proxy for that churn), the backend asks malloc_trim(0)
# to hand whole free pages back to the kernel (off the loop: it walks heaps), and once
# more whenever the last item has gone. It cannot drop locked pages: with memory locked,
# only the pages of the items themselves go back.
TRIM_AFTER_BYTES = 32 * 1024 * 1024
# A purged item's pages are zeroed at once and given back this long after (`pages.py`,
# warm reuse: bounded by WARM_BYTES and SPARE_ARENAS), unless new uploads reuse them first:
# a fresh page costs a fault each, 0.4 ms for a 1 MB upload here. One timer gives them back.
WARM_SECONDS = 0.25


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


class PageBuffer(Buffer):
    """An upload's room in the backend's pages (`LocalStore.buffer`): the body is read
    into it, and `handover` makes it the item's bytes without a copy."""

    def __init__(self, backend: MemoryBackend, size: int) -> None:
        self._backend = backend
        self._block: Block | None = backend.pages.take(size)
        self.room = self._block.writable()
        self.used = 0

    def handover(self) -> memoryview:
        """A read-only view that `put` recognises as this block (by identity)."""
        block, self._block = self._block, None
        assert block is not None, "handed over twice"
        self.room.release()
        pages = self._backend.pages
        pages.shrink(block, self.used)
        view = pages.base(block)
        self._backend.handed[id(view)] = block
        return view

    def discard(self) -> None:
        block, self._block = self._block, None
        if block is not None:
            self.room.release()
            block.used = self.used  # what was written is what gets zeroed
            self._backend.release_block(block)
        self.used = 0


class MemoryBackend:
    """Each item is a block of pages (`pages.py`) its upload was read into (no copy at
    store), served as read-only views (no copy per read), zeroed before its pages go back.

    A block still viewed by a response being written is not zeroed under it (the client
    would get zeros): it waits in `_doomed` until the view is gone, and is zeroed by the
    next release or sweep (`settle`). Such a response is cut at deadline + grace by the
    route, so the wait is bounded. Zeroing is best effort: socket buffers and the copies
    the kernel makes are freed without being overwritten.
    """

    name = "memory"

    def __init__(self, max_mappings: int = MAX_MAPPINGS) -> None:
        self.pages = Pages(mapping_budget(max_mappings), WARM_SECONDS)
        self._flushing: asyncio.TimerHandle | None = None  # gives warm pages back
        self._blocks: dict[str, Block] = {}
        self.handed: dict[int, Block] = {}  # id(view) -> block: handed over, not put yet
        self._doomed: list[Block] = []  # released, still viewed by a response
        self._freed = 0
        self._trimming: asyncio.Future[int] | None = None
        self._trim_again = False
        self.trims = 0

    def buffer(self, size: int) -> PageBuffer:
        return PageBuffer(self, size)

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        if item_id in self._blocks:
            self.abandon(data)
            raise KeyError(f"id already held: {item_id}")
        block = self.handed.pop(id(data), None)
        if block is not None:  # the view was only the block's token: reads make their own
            assert block.view is not None
            block.view.release()
            block.view = None
        else:  # not from one of our buffers: copied into pages once
            block = self.pages.take(len(data))
            with block.writable() as room:
                room[: len(data)] = data
            block.used = len(data)
            if isinstance(data, bytearray):
                zero(data)
        self._blocks[item_id] = block

    def abandon(self, data: bytes | bytearray | memoryview) -> None:
        """`data` was handed over and will not be stored (the store refused it)."""
        block = self.handed.pop(id(data), None)
        if block is not None:
            self.release_block(block)
        elif isinstance(data, bytearray):
            zero(data)

    async def get(self, item_id: str) -> memoryview | None:
        block = self._blocks.get(item_id)
        return None if block is None else self.pages.read(block)

    async def delete(self, item_id: str) -> bool:
        return await self.delete_many([item_id]) == 1

    async def delete_many(self, item_ids: list[str]) -> int:
        held = 0
        for item_id in item_ids:
            block = self._blocks.pop(item_id, None)
            if block is not None:
                self._freed += block.used
                self.release_block(block)
                held += 1
        self.settle()
        self._maybe_trim()
        return held

    async def delete_timed(self, item_ids: list[str], now: Callable[[], float]) -> list[float]:
        """Zeroed in one go on the loop: one time for the batch."""
        await self.delete_many(item_ids)
        return [now()] * len(item_ids)

    def release_block(self, block: Block) -> None:
        if not self.pages.free(block):
            self._doomed.append(block)
        self._keep_warm()

    def _keep_warm(self) -> None:
        """Arm the one timer that gives warm pages back when they are due (`Pages.flush`)."""
        if self._flushing is not None:
            return
        delay = self.pages.flush()
        if delay is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: nothing stays warm
            self.pages.flush(everything=True)
            return
        self._flushing = loop.call_later(delay, self._flushed)

    def _flushed(self) -> None:
        self._flushing = None
        self._keep_warm()

    def settle(self) -> int:
        """Zero and give back the released blocks no response views any more; how many
        wait still (blocks, and emptied mappings a stray view still holds)."""
        if self._doomed:
            self._doomed = [b for b in self._doomed if not self.pages.free(b)]
        return len(self._doomed) + self.pages.settle()

    async def purge_all(self) -> int:
        return await self.delete_many(list(self._blocks))

    async def keys(self) -> set[str]:
        return set(self._blocks)

    async def entries(self) -> set[str]:
        return set(self._blocks)

    async def destroy_orphans(self, names: set[str]) -> int:
        return await self.delete_many(list(names))

    async def close(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        self.pages.flush(everything=True)
        while self._trimming is not None and not self._trimming.done():
            with contextlib.suppress(Exception):
                await self._trimming
            await asyncio.sleep(0)  # let a follow-up trim start

    def _maybe_trim(self) -> None:
        drained = not self._blocks and self._freed > 0
        if _malloc_trim is None or (self._freed < TRIM_AFTER_BYTES and not drained):
            return
        if self._trimming is not None and not self._trimming.done():
            self._trim_again = True  # one at a time; run again when this one ends
            return
        self._freed = 0
        self._trim_again = False
        self.trims += 1
        self._trimming = asyncio.get_running_loop().run_in_executor(None, _malloc_trim, 0)
        self._trimming.add_done_callback(self._after_trim)

    def _after_trim(self, _: asyncio.Future[int]) -> None:
        if self._trim_again:
            self._freed = max(self._freed, 1)  # what was freed meanwhile is still in the heap
            self._maybe_trim()

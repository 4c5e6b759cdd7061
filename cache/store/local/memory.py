"""Bytes in process memory: the embedded default, nothing to set up."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

from ...wipe import zero

# glibc keeps freed blocks of the size of query images in its heaps: after a burst has
# expired, RSS would stay at the burst's peak. Past this many freed bytes, the backend asks
# malloc_trim(0) to hand whole free pages back to the kernel (off the loop: it walks heaps),
# and once more whenever the last item has gone.
TRIM_AFTER_BYTES = 32 * 1024 * 1024


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


class MemoryBackend:
    """Each item is the `bytearray` its upload was read into (no copy at store), served as
    read-only views (no copy per read), zeroed in place before it is dropped.

    A buffer still viewed by a response being written is not zeroed under it (the client
    would get zeros): it waits in `_doomed` until the view is gone, and is zeroed by the
    next release or sweep (`settle`). Such a response is cut at deadline + grace by the
    route, so the wait is bounded. Zeroing is best effort: socket buffers and the copies
    the kernel makes are freed without being overwritten.
    """

    name = "memory"

    def __init__(self) -> None:
        self._buffers: dict[str, bytearray] = {}
        self._doomed: list[bytearray] = []  # released, still viewed by a response
        self._freed = 0
        self._trimming: asyncio.Future[int] | None = None
        self._trim_again = False
        self.trims = 0

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        if item_id in self._buffers:
            raise KeyError(f"id already held: {item_id}")
        self._buffers[item_id] = data if isinstance(data, bytearray) else bytearray(data)

    async def get(self, item_id: str) -> memoryview | None:
        buffer = self._buffers.get(item_id)
        return None if buffer is None else memoryview(buffer).toreadonly()

    async def delete(self, item_id: str) -> bool:
        return await self.delete_many([item_id]) == 1

    async def delete_many(self, item_ids: list[str]) -> int:
        held = 0
        for item_id in item_ids:
            buffer = self._buffers.pop(item_id, None)
            if buffer is not None:
                self._freed += len(buffer)
                self._zero_unless_viewed(buffer)
                held += 1
        self.settle()
        self._maybe_trim()
        return held

    def _zero_unless_viewed(self, buffer: bytearray) -> None:
        if not _zeroed_unless_viewed(buffer):
            self._doomed.append(buffer)

    def settle(self) -> int:
        """Zero the released buffers no response views any more; how many wait still."""
        if self._doomed:
            self._doomed = [b for b in self._doomed if not _zeroed_unless_viewed(b)]
        return len(self._doomed)

    async def purge_all(self) -> int:
        return await self.delete_many(list(self._buffers))

    async def keys(self) -> set[str]:
        return set(self._buffers)

    async def entries(self) -> set[str]:
        return set(self._buffers)

    async def destroy_orphans(self, names: set[str]) -> int:
        return await self.delete_many(list(names))

    async def close(self) -> None:
        while self._trimming is not None and not self._trimming.done():
            with contextlib.suppress(Exception):
                await self._trimming
            await asyncio.sleep(0)  # let a follow-up trim start

    def _maybe_trim(self) -> None:
        drained = not self._buffers and self._freed > 0
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


def _zeroed_unless_viewed(buffer: bytearray) -> bool:
    """Zero a released buffer unless a memoryview of it still exists; True if zeroed.

    CPython keeps no public export count, but a bytearray with exports cannot be resized:
    dropping its last byte (in place, no reallocation) raises BufferError exactly then.
    The buffer is being released, so losing that byte costs nothing."""
    try:
        del buffer[len(buffer) - 1 :]
    except BufferError:
        return False
    zero(buffer)
    return True

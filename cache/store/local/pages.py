"""Pages for item bytes that go back to the kernel the moment an item goes, locked or not.

Why: with `guarantees.lock_memory` the process is mlockall()ed, and glibc cannot hand a
locked heap page back (malloc_trim's madvise fails on VM_LOCKED pages), so a ~100 KB item
freed in the heap stayed resident, zeroed, for good. Item bytes (and the upload buffer they
are read into, `LocalStore.buffer`) therefore live in anonymous mappings of their own:

- A block of DEDICATED_FROM bytes or more gets a mapping of its own, unmapped when it goes.
- Smaller blocks are packed one after another in arenas of ARENA_BYTES (bump allocation:
  a byte of an arena is written once, so a page given back is never touched again). When a
  block goes, its bytes are zeroed and every page that no live block shares any more is
  dropped: MADV_DONTNEED_LOCKED (Linux 5.18+; the range stays locked), or before that
  munlock, then MADV_DONTNEED (a munlock splits the mapping: counted in the budget). An
  arena with no live block left is unmapped. Packing is what keeps the overhead per item
  far below the ~2 KB that page rounding of one mapping per 100 KB item would cost.
- The mapping budget (`storage.max_mappings`, and never more than half of
  vm.max_map_count, the rest is the interpreter's): an arena lives while one of its blocks
  does, so in the worst case one long-lived small item pins one arena. Past the budget (or
  when mmap fails), a block comes from the heap, counted in `heap_blocks`
  (`cache_memory_heap_items_total`): it is held and zeroed alike, but its pages may stay.

Warm reuse (`warm` seconds, the memory backend's WARM_SECONDS): fresh pages cost a fault
each (in a VM, ~2 µs per 4 KiB: 0.4 ms for a 1 MB upload), so the pages of a freed block,
zeroed at once, are given back only after `warm` seconds, and an arena that empties is
kept as a spare (at most SPARE_ARENAS) for the next blocks: under steady uploads the same
warm pages go round. What waits is bounded (WARM_BYTES, then pages go back at once), holds
only zeros, and is given back by `flush`, which the backend runs on a timer.

Reads never copy and never see zeros: a stored block's read-only `view` is the base every
read derives from through a PickleBuffer, so each read view (and any slice a transport
keeps of it) holds an export on the base; `free` refuses (False) while one exists, and the
backend retries at the next release or sweep. Runs on the event loop only. The mappings
themselves (`Arena`, `Block`, the kernel calls) are in `arena.py`; this is the policy.
"""

from __future__ import annotations

import errno
import mmap
import time
from collections import deque
from collections.abc import Callable
from pickle import PickleBuffer

from ...wipe import zero
from .arena import (
    ARENA_BYTES,
    DEDICATED_FROM,
    MADV_DONTNEED_LOCKED,
    MAX_MAPPINGS,
    PAGE,
    SPARE_ARENAS,
    WARM_BYTES,
    Arena,
    Block,
    mapping_budget,
    memset,
    munlock,
    populate,
)

__all__ = [
    "ARENA_BYTES",
    "DEDICATED_FROM",
    "MAX_MAPPINGS",
    "PAGE",
    "SPARE_ARENAS",
    "WARM_BYTES",
    "Block",
    "Pages",
    "mapping_budget",
]


class Pages:
    """Hands out blocks and takes them back; counts what it holds for the metrics."""

    def __init__(
        self,
        max_mappings: int = MAX_MAPPINGS,
        warm: float = 0.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_mappings = max_mappings
        self.warm = warm  # seconds freed pages stay for reuse (0: given back at once)
        self._now = now
        self._later: deque[tuple[float, Arena, int, int, int]] = deque()  # to give back
        self._warm_bytes = 0  # in `_later`
        self._spares: deque[Arena] = deque()  # emptied arenas kept warm, oldest first
        self._arena: Arena | None = None  # the arena small blocks are packed into now
        self._closing: list[Arena] = []  # emptied, a stray view still holds the mapping
        self.arenas = 0  # mappings open now (dedicated ones included), + munlock splits
        self.heap_blocks = 0  # blocks taken from the heap: budget spent or mmap failed
        self.on_heap: Callable[[], object] | None = None  # told of each (a metric)
        self.released_pages = 0  # pages given back while their mapping stayed

    # -- taking ----------------------------------------------------------------------
    def take(self, size: int) -> Block:
        size = max(1, size)
        if size >= DEDICATED_FROM:
            arena = self._open(-(-size // PAGE) * PAGE)
            if arena is None:
                return self._heap(size)
            arena.sealed = True
            return self._carve(arena, size)
        arena = self._arena
        if arena is None or arena.size - arena.top < size:
            if arena is not None:
                self._seal(arena)
            arena = self._arena = self._spare() or self._open(ARENA_BYTES)
            if arena is None:
                return self._heap(size)
        return self._carve(arena, size)

    def _spare(self) -> Arena | None:
        """The warmest spare, started over (its pages are still there, zeroed)."""
        if not self._spares:
            return None
        arena = self._spares.pop()
        self._restart(arena)
        return arena

    def _next_generation(self, arena: Arena) -> None:
        """Give-backs still pending for the arena are void (it starts over, or goes)."""
        arena.generation += 1
        self._warm_bytes -= arena.later
        arena.later = 0

    def _restart(self, arena: Arena) -> None:
        """An empty arena hands out blocks from its start again. Its pages below the
        lowest one given back are all still there (zeroed): only those above it are
        faulted in again (a populate of present pages still walks each of them: 3.8% of
        the loop's samples in a lifecycle profile)."""
        self._next_generation(arena)
        arena.top = 0
        arena.populated = min(arena.populated, arena.dropped)
        arena.dropped = arena.size
        arena.sealed = False

    def _open(self, size: int) -> Arena | None:
        if self.arenas >= self.max_mappings:
            return None
        try:
            arena = Arena(size)
        except OSError:  # ENOMEM, or the memlock limit under MCL_FUTURE
            return None
        self.arenas += 1
        return arena

    def _heap(self, size: int) -> Block:
        self.heap_blocks += 1
        if self.on_heap is not None:
            self.on_heap()
        return Block(None, 0, size)

    @staticmethod
    def _carve(arena: Arena, size: int) -> Block:
        block = Block(arena, arena.top, size)
        arena.top += size
        arena.live += 1
        arena.mark(block.offset, size, 1)
        populate(arena)
        return block

    def shrink(self, block: Block, used: int) -> None:
        """Keep `used` bytes of the room; the rest goes back to the arena when the block
        is the last one handed out of it (else it stays the block's, unwritten)."""
        arena = block.arena
        block.used = used
        if arena is None or arena.sealed or used == 0 or block.offset + block.size != arena.top:
            return
        arena.mark(block.offset, block.size, -1)
        block.size, arena.top = used, block.offset + used
        arena.mark(block.offset, used, 1)

    @staticmethod
    def base(block: Block) -> memoryview:
        """The read-only view of a block's bytes that every read derives from, made at the
        first read (an item never read costs no view), kept until `free`."""
        if block.view is None:
            if block.arena is None:
                assert block.heap is not None
                whole = memoryview(block.heap)
                start = 0
            else:
                whole, start = block.arena.whole, block.offset
            with whole[start : start + block.used] as part:
                block.view = part.toreadonly()
        return block.view

    def read(self, block: Block) -> memoryview:
        """A view for one read: while it (or a slice of it) lives, `free` waits."""
        return memoryview(PickleBuffer(self.base(block)))

    # -- giving back -----------------------------------------------------------------
    def free(self, block: Block) -> bool:
        """Zero the block and give its pages back; False (nothing done) while a read
        still views it."""
        if block.view is not None:
            try:
                block.view.release()
            except BufferError:
                return False
            block.view = None
        arena = block.arena
        if arena is None:
            if block.heap is not None:
                zero(block.heap)
                block.heap = None
            return True
        if block.used:
            memset(arena.address + block.offset, 0, min(block.used, block.size))
        block.used = 0
        block.arena = None
        arena.live -= 1
        first, last = arena.mark(block.offset, block.size, -1)
        if arena.live == 0:
            self._emptied(arena)
            return True
        lo = first if not arena.edges[first] and arena.finished(first) else first + 1
        hi = last + 1 if not arena.edges[last] and arena.finished(last) else last
        self._give_back_later(arena, lo, hi)
        return True

    def _emptied(self, arena: Arena) -> None:
        """A spare (the next blocks reuse its pages; `flush` unmaps it when it stays
        unused `warm` seconds), or unmapped now."""
        if self.warm > 0 and arena.size == ARENA_BYTES and len(self._spares) < SPARE_ARENAS:
            if arena is self._arena:
                self._arena = None
            self._next_generation(arena)  # pending give-backs: all of it goes, or is reused
            arena.sealed = True
            arena.emptied = self._now()
            self._spares.append(arena)
            return
        self._unmap(arena)

    def _give_back_later(self, arena: Arena, lo: int, hi: int) -> None:
        size = (hi - lo) * PAGE
        if hi <= lo:
            return
        if self.warm <= 0 or self._warm_bytes + size > WARM_BYTES:
            self._give_back(arena, lo, hi)
            return
        self._later.append((self._now(), arena, arena.generation, lo, hi))
        self._warm_bytes += size
        arena.later += size

    def flush(self, everything: bool = False) -> float | None:
        """Give back the pages and spares that stayed warm `warm` seconds (all of them with
        `everything`); -> seconds until the next is due, None when nothing waits."""
        now = self._now()
        due = now if everything else now - self.warm
        later = self._later
        while later and later[0][0] <= due:
            _, arena, generation, lo, hi = later.popleft()
            if arena.generation == generation:  # else void, and uncounted already
                arena.later -= (hi - lo) * PAGE
                self._warm_bytes -= (hi - lo) * PAGE
                self._give_back(arena, lo, hi)
        while self._spares and self._spares[0].emptied <= due:
            self._unmap(self._spares.popleft())
        starts = [later[0][0]] if later else []
        starts += [self._spares[0].emptied] if self._spares else []
        next_at = min(starts, default=None)
        return None if next_at is None else max(0.0, next_at + self.warm - now)

    def _seal(self, arena: Arena) -> None:
        """No more blocks from this arena: its top page, if no block holds it, goes too."""
        arena.sealed = True
        page = arena.top // PAGE
        if arena.top % PAGE and not arena.edges[page]:
            self._give_back(arena, page, page + 1)

    def _give_back(self, arena: Arena, lo: int, hi: int) -> None:
        """Drop pages [lo, hi) of a mapping that stays (they are never written again)."""
        if hi <= lo:
            return
        start, length = lo * PAGE, (hi - lo) * PAGE
        arena.dropped = min(arena.dropped, start)
        try:
            arena.mm.madvise(MADV_DONTNEED_LOCKED, start, length)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a kernel before 5.18
                return
            try:
                arena.mm.madvise(mmap.MADV_DONTNEED, start, length)
            except OSError:  # locked: unlock the range first (splits the mapping)
                if munlock is None or munlock(arena.address + start, length) != 0:
                    return
                arena.splits += 2
                self.arenas += 2
                arena.mm.madvise(mmap.MADV_DONTNEED, start, length)
        self.released_pages += hi - lo

    def _unmap(self, arena: Arena) -> None:
        arena.sealed = True
        self._next_generation(arena)
        if arena is self._arena:
            self._arena = None
        if not self._close(arena):
            self._closing.append(arena)

    def _close(self, arena: Arena) -> bool:
        try:
            arena.whole.release()
            arena.mm.close()  # munmap: locked pages go back too
        except BufferError:  # a stray view of a freed block: retried by `settle`
            return False
        self.arenas -= 1 + arena.splits
        return True

    def settle(self) -> int:
        """Unmap emptied arenas whose last stray view is gone; how many still wait."""
        if self._closing:
            self._closing = [arena for arena in self._closing if not self._close(arena)]
        return len(self._closing)

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

Reads never copy and never see zeros: a stored block's read-only `view` is the base every
read derives from through a PickleBuffer, so each read view (and any slice a transport
keeps of it) holds an export on the base; `free` refuses (False) while one exists, and the
backend retries at the next release or sweep. Runs on the event loop only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
from array import array
from collections.abc import Callable
from pickle import PickleBuffer

from ...wipe import zero

PAGE = mmap.PAGESIZE
ARENA_BYTES = 4 * 1024 * 1024  # small blocks are packed in mappings of this size
DEDICATED_FROM = ARENA_BYTES // 4  # a block this large gets a mapping of its own
MAX_MAPPINGS = 32_768  # storage.max_mappings' default: half of vm.max_map_count's 65,530
MADV_DONTNEED_LOCKED = 24  # Linux 5.18+: drop pages of a locked range, keep it locked
MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault a range in with one call, not one per page
MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"


def _libc_call(name: str) -> Callable[..., int] | None:
    path = ctypes.util.find_library("c")
    try:
        func: Callable[..., int] = getattr(ctypes.CDLL(path, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return None
    return func


_munlock = _libc_call("munlock")
_memset = ctypes.memset


def mapping_budget(wanted: int, path: str = MAX_MAP_COUNT) -> int:
    """`wanted`, but never more than half of vm.max_map_count (the interpreter, its
    libraries, thread stacks and a munlock's splits need the rest)."""
    try:
        with open(path) as handle:
            limit = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return wanted
    return max(0, min(wanted, limit // 2))


class Arena:
    """One anonymous mapping: many small blocks one after another, or one large block."""

    __slots__ = (
        "address",
        "edges",
        "live",
        "mm",
        "populated",
        "sealed",
        "size",
        "splits",
        "top",
        "whole",
    )

    def __init__(self, size: int) -> None:
        self.mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.whole = memoryview(self.mm)  # every view of a block is a slice of this one
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self.size = size
        self.top = 0  # the next byte to hand out: below it, every byte was handed out once
        self.populated = 0  # pages below this offset were faulted in ahead of the writes
        self.live = 0  # blocks not freed yet
        # Per page, the blocks that begin or end in it: a page inside a block is that
        # block's alone, so only the edge pages need a count to be given back.
        self.edges = array("H", bytes(2 * (-(-size // PAGE))))
        self.sealed = False  # no block is handed out of it any more
        self.splits = 0  # mappings a munlock split off (counted in the budget)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):  # a huge page would pin 2 MiB per arena edge
            self.mm.madvise(mmap.MADV_NOHUGEPAGE)

    def mark(self, offset: int, size: int, step: int) -> tuple[int, int]:
        """Count (step 1) or uncount (-1) a block on its edge pages; its first and last."""
        first, last = offset // PAGE, (offset + size - 1) // PAGE
        self.edges[first] += step
        if last != first:
            self.edges[last] += step
        return first, last

    def finished(self, page: int) -> bool:
        """Nothing will be written to `page` again: it is below the top, or sealed."""
        return self.sealed or (page + 1) * PAGE <= self.top


class Block:
    """Room for one item's bytes: in an arena at `offset`, or (past the budget) `heap`."""

    __slots__ = ("arena", "heap", "offset", "size", "used", "view")

    def __init__(self, arena: Arena | None, offset: int, size: int) -> None:
        self.arena = arena
        self.offset = offset
        self.size = size  # room handed out (a multipart body may use less)
        self.used = 0  # bytes written: what is zeroed, and what a stored item holds
        self.heap = bytearray(size) if arena is None else None
        self.view: memoryview | None = None  # read-only base of every read (once stored)

    def writable(self) -> memoryview:
        """The whole room, to write the body into (a slice of the arena's view)."""
        if self.arena is None:
            assert self.heap is not None
            return memoryview(self.heap)
        return self.arena.whole[self.offset : self.offset + self.size]


class Pages:
    """Hands out blocks and takes them back; counts what it holds for the metrics."""

    def __init__(self, max_mappings: int = MAX_MAPPINGS) -> None:
        self.max_mappings = max_mappings
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
            arena = self._arena = self._open(ARENA_BYTES)
            if arena is None:
                return self._heap(size)
        return self._carve(arena, size)

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
        _populate(arena)
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
            _memset(arena.address + block.offset, 0, min(block.used, block.size))
        block.used = 0
        block.arena = None
        arena.live -= 1
        first, last = arena.mark(block.offset, block.size, -1)
        if arena.live == 0:
            self._unmap(arena)
            return True
        lo = first if not arena.edges[first] and arena.finished(first) else first + 1
        hi = last + 1 if not arena.edges[last] and arena.finished(last) else last
        self._give_back(arena, lo, hi)
        return True

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
        try:
            arena.mm.madvise(MADV_DONTNEED_LOCKED, start, length)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a kernel before 5.18
                return
            try:
                arena.mm.madvise(mmap.MADV_DONTNEED, start, length)
            except OSError:  # locked: unlock the range first (splits the mapping)
                if _munlock is None or _munlock(arena.address + start, length) != 0:
                    return
                arena.splits += 2
                self.arenas += 2
                arena.mm.madvise(mmap.MADV_DONTNEED, start, length)
        self.released_pages += hi - lo

    def _unmap(self, arena: Arena) -> None:
        arena.sealed = True
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


def _populate(arena: Arena) -> None:
    """Fault in the pages up to the arena's top in one call: a body written into fresh
    pages would otherwise take one page fault per 4 KiB (most of what a fresh page costs).
    Best effort: kernels before 5.14 fault them one by one, as before."""
    end = min(arena.size, -(-arena.top // PAGE) * PAGE)
    start = arena.populated
    if end <= start:
        return
    with contextlib.suppress(OSError):
        arena.mm.madvise(MADV_POPULATE_WRITE, start, end - start)
    arena.populated = end

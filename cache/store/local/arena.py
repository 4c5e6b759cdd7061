"""The mappings item bytes live in (`pages.Pages` hands them out): an `Arena` is one
anonymous mapping, holding many small blocks one after another or one large block; a
`Block` is one item's room in it (or, past the mapping budget, in the heap). The kernel
calls (madvise, munlock, memset) and the constants they need are here; the policy (which
block goes where, when pages go back) is in `pages.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
from array import array
from collections.abc import Callable

from ...untracked import untrack

PAGE = mmap.PAGESIZE
ARENA_BYTES = 4 * 1024 * 1024  # small blocks are packed in mappings of this size
DEDICATED_FROM = ARENA_BYTES // 4  # a block this large gets a mapping of its own
MAX_MAPPINGS = 32_768  # storage.max_mappings' default: half of vm.max_map_count's 65,530
MADV_DONTNEED_LOCKED = 24  # Linux 5.18+: drop pages of a locked range, keep it locked
MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault a range in with one call, not one per page
MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"
WARM_BYTES = 32 * 1024 * 1024  # freed pages kept warm at most; past it they go back at once
SPARE_ARENAS = 4  # emptied arenas kept warm at most (the rest are unmapped at once)


def _libc_call(name: str) -> Callable[..., int] | None:
    path = ctypes.util.find_library("c")
    try:
        func: Callable[..., int] = getattr(ctypes.CDLL(path, use_errno=True), name)
    except (OSError, AttributeError, TypeError):
        return None
    return func


munlock = _libc_call("munlock")
memset = ctypes.memset


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
        "dropped",
        "edges",
        "emptied",
        "generation",
        "later",
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
        self.dropped = size  # the lowest offset given back since the arena (re)started
        self.live = 0  # blocks not freed yet
        # Per page, the blocks that begin or end in it: a page inside a block is that
        # block's alone, so only the edge pages need a count to be given back.
        self.edges = array("H", bytes(2 * (-(-size // PAGE))))
        self.sealed = False  # no block is handed out of it any more
        self.splits = 0  # mappings a munlock split off (counted in the budget)
        self.generation = 0  # moves when the arena starts over or goes: stale give-backs
        self.emptied = 0.0  # when it became a spare (monotonic)
        self.later = 0  # bytes of this generation waiting to be given back (`Pages.flush`)
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
        # Nothing a block points to (its arena, its bytes, their views) ever points back to
        # a block: it cannot be in a cycle, so the collector need not walk it (untracked.py).
        untrack(self)

    def writable(self) -> memoryview:
        """The whole room, to write the body into (a slice of the arena's view)."""
        if self.arena is None:
            assert self.heap is not None
            return memoryview(self.heap)
        return self.arena.whole[self.offset : self.offset + self.size]


def populate(arena: Arena) -> None:
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

"""Warm reuse in cache/store/local/pages.py: freed blocks are zeroed at once, their pages
given back `warm` seconds later unless an emptied arena (a spare) is reused first; what
waits is bounded, and a reused arena is never hit by a give-back meant for its old blocks.
Time is the injected `now`."""

from __future__ import annotations

from cache.store.local.pages import ARENA_BYTES, PAGE, SPARE_ARENAS, WARM_BYTES, Pages
from tests.support.pages import filled

KB = 1000


class Now:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_freed_pages_are_zeroed_at_once_and_given_back_after_warm() -> None:
    now = Now()
    pages = Pages(warm=0.25, now=now)
    keep, gone = filled(pages, 100 * KB), filled(pages, 100 * KB, 0x77)
    arena, offset = gone.arena, gone.offset
    assert arena is not None
    assert pages.free(gone)
    assert bytes(arena.whole[offset : offset + 100 * KB]) == bytes(100 * KB)  # zeroed now
    assert pages.released_pages == 0  # its pages wait, warm
    assert pages.flush() == 0.25
    now.t += 0.25
    assert pages.flush() is None
    assert pages.released_pages > 0  # given back
    assert pages.free(keep) and pages.arenas == 1  # the emptied arena: a spare
    now.t += 0.25
    assert pages.flush() is None and pages.arenas == 0  # unmapped


def test_an_emptied_arena_is_reused_and_old_give_backs_never_touch_new_blocks() -> None:
    now = Now()
    pages = Pages(warm=0.25, now=now)
    first = [filled(pages, 100 * KB) for _ in range(3)]
    arena = first[0].arena
    for block in first:
        assert pages.free(block)
    fresh = filled(pages, 300 * KB, 0x33)
    assert fresh.arena is arena and fresh.offset == 0  # the warm arena, from its start
    now.t += 1
    pages.flush(everything=True)  # the old blocks' give-backs are void
    assert bytes(pages.read(fresh)) == b"\x33" * 300 * KB
    assert pages.arenas == 1


def test_what_stays_warm_is_bounded() -> None:
    now = Now()
    pages = Pages(warm=10.0, now=now)
    blocks = [filled(pages, 900 * KB) for _ in range(2 * WARM_BYTES // (900 * KB))]
    freed = [b for i, b in enumerate(blocks) if i % 4 != 3]  # no arena empties
    for block in freed:
        assert pages.free(block)
    waiting = sum(a.later for a in {b.arena for b in blocks if b.arena is not None})
    assert waiting <= WARM_BYTES
    edges = 4 * PAGE * len(freed)  # edge pages shared with a live neighbour stay
    assert pages.released_pages * PAGE + waiting >= len(freed) * 900 * KB - edges  # the rest
    assert pages.released_pages > 0  # went back at once


def test_at_most_spare_arenas_stay_warm() -> None:
    pages = Pages(warm=10.0, now=Now())
    blocks = [filled(pages, 1_000_000) for _ in range(4 * (SPARE_ARENAS + 2))]  # 4 an arena
    assert pages.arenas == SPARE_ARENAS + 2 and ARENA_BYTES >= 4 * 1_000_000
    for block in blocks:
        assert pages.free(block)
    assert pages.arenas == SPARE_ARENAS  # the others were unmapped at once
    pages.flush(everything=True)
    assert pages.arenas == 0


def test_without_warm_everything_goes_at_once() -> None:
    pages = Pages()
    block = filled(pages, 100 * KB)
    assert pages.free(block) and pages.arenas == 0 and pages.flush() is None


def test_a_reused_spare_is_faulted_in_again_only_from_its_lowest_page_given_back() -> None:
    """A spare's pages stay (zeroed) unless given back: a reuse populates only from the
    lowest page given back since it started (a populate of present pages still walks
    each of them), and always the pages that went."""
    now = Now()
    pages = Pages(warm=0.25, now=now)
    first = [filled(pages, 100 * KB) for _ in range(3)]
    arena = first[0].arena
    assert arena is not None
    high = arena.populated
    for block in first:
        assert pages.free(block)
    again = filled(pages, 100 * KB)
    assert again.arena is arena and again.offset == 0
    assert arena.populated == high  # nothing went: nothing faulted in again
    # Now a block in the middle goes, and its pages are given back after `warm`.
    more = [filled(pages, 100 * KB) for _ in range(2)]
    assert pages.free(more[0])
    now.t += 0.25
    pages.flush()
    assert arena.dropped == -(-more[0].offset // PAGE) * PAGE  # its first page is shared
    for block in (again, more[1]):
        assert pages.free(block)
    reused = filled(pages, 300 * KB, 0x44)
    assert reused.arena is arena
    assert arena.populated == -(-300 * KB // PAGE) * PAGE  # from `dropped` up, again
    assert bytes(pages.read(reused)) == b"\x44" * 300 * KB

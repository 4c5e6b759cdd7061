"""Pages for item bytes (cache/store/local/pages.py): small blocks packed in arenas, large
ones in mappings of their own, pages given back as blocks go, and the mapping budget past
which blocks come from the heap (counted)."""

from __future__ import annotations

import gc
from pathlib import Path

from cache.store.local.pages import (
    ARENA_BYTES,
    DEDICATED_FROM,
    PAGE,
    Pages,
    mapping_budget,
)
from tests.support.pages import filled

KB = 1000


def test_small_blocks_share_an_arena_and_it_is_unmapped_when_the_last_goes() -> None:
    pages = Pages()
    blocks = [filled(pages, 100 * KB) for _ in range(ARENA_BYTES // (100 * KB))]
    assert pages.arenas == 1 and {b.arena for b in blocks} == {blocks[0].arena}
    assert [b.offset for b in blocks[:3]] == [0, 100 * KB, 200 * KB]  # packed: no rounding
    one_more = filled(pages, 100 * KB)  # does not fit: a second arena
    assert pages.arenas == 2 and one_more.arena is not blocks[0].arena
    for block in blocks:
        assert pages.free(block)
    assert pages.arenas == 1  # the first arena went back whole (munmap)


def test_a_freed_block_gives_back_the_pages_no_live_block_shares() -> None:
    pages = Pages()
    first, middle, last = (filled(pages, 100 * KB, n) for n in (1, 2, 3))
    arena = middle.arena
    assert arena is not None
    start = middle.offset
    assert pages.free(middle)
    assert pages.released_pages == (start + 100 * KB) // PAGE - (-(-start // PAGE))
    assert not any(arena.mm[start : start + 100 * KB])  # zeroed, or given back (zeros)
    assert arena.mm[start - 1] == 1 and arena.mm[start + 100 * KB] == 3  # neighbours intact
    assert pages.free(first) and pages.free(last) and pages.arenas == 0


def test_a_large_block_has_a_mapping_of_its_own() -> None:
    pages = Pages()
    small = filled(pages, 10 * KB)
    large = filled(pages, DEDICATED_FROM)
    assert pages.arenas == 2 and large.arena is not small.arena and large.offset == 0
    assert pages.free(large) and pages.arenas == 1


def test_a_viewed_block_waits_for_its_last_view() -> None:
    pages = Pages()
    keep = filled(pages, 10)
    block = filled(pages, 100, 7)
    view = pages.read(block)
    tail = view[50:]
    del view
    gc.collect()
    assert not pages.free(block)  # a slice of a read is still being written
    assert bytes(tail[:2]) == b"\x07\x07"
    del tail
    gc.collect()
    assert pages.free(block) and pages.free(keep)


def test_shrink_hands_the_unused_room_back_to_the_arena() -> None:
    pages = Pages()
    block = pages.take(64 * KB)  # a multipart body's room: its Content-Length
    pages.shrink(block, 10 * KB)
    assert block.size == 10 * KB and pages.take(1).offset == 10 * KB


def test_past_the_mapping_budget_blocks_come_from_the_heap_counted() -> None:
    counted: list[int] = []
    pages = Pages(max_mappings=1)
    pages.on_heap = lambda: counted.append(1)
    small = filled(pages, 10 * KB)
    large = filled(pages, DEDICATED_FROM)  # a second mapping: over the budget
    assert large.arena is None and pages.heap_blocks == 1 and counted == [1]
    assert bytes(pages.read(large)[:3]) == b"ZZZ"
    assert pages.free(large) and pages.free(small) and pages.arenas == 0


def test_the_budget_is_at_most_half_of_vm_max_map_count(tmp_path: Path) -> None:
    limit = tmp_path / "max_map_count"
    limit.write_text("65530\n")
    assert mapping_budget(32_768, str(limit)) == 32_765
    assert mapping_budget(1_000, str(limit)) == 1_000
    assert mapping_budget(1_000, str(tmp_path / "missing")) == 1_000

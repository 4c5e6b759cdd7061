"""The memory backend serves views of the held block (no copy per read) and never zeroes
a block under a view a response still holds (or a slice of it a transport keeps): it is
zeroed, and its pages given back, once the view is gone. An upload read into the
backend's own buffer becomes the item without a copy."""

from __future__ import annotations

import gc

from cache.item import new_id
from cache.store.local.memory import MemoryBackend


async def test_an_upload_buffer_becomes_the_item_without_a_copy() -> None:
    backend = MemoryBackend()
    keep, item_id = new_id(), new_id()
    await backend.put(keep, b"k" * 100)  # keeps the arena mapped
    buffer = backend.buffer(4096)
    buffer.room[:18] = b"secret image bytes"
    buffer.used = 18
    block = buffer._block
    await backend.put(item_id, buffer.handover())
    assert backend._blocks[item_id] is block  # the very room the body was read into
    view = await backend.get(item_id)
    assert view is not None and view.readonly
    assert bytes(view) == b"secret image bytes"
    assert backend.pages.heap_blocks == 0


async def test_a_viewed_block_is_zeroed_only_after_the_view_and_its_slices_go() -> None:
    backend = MemoryBackend()
    keep, item_id = new_id(), new_id()
    await backend.put(keep, b"k" * 100)
    await backend.put(item_id, b"secret image bytes" * 100)
    view = await backend.get(item_id)
    assert view is not None
    tail = view[6:]  # what a transport keeps of a write it could not finish
    del view
    gc.collect()
    assert await backend.delete(item_id) is True
    assert bytes(tail[:6]) == b" image"  # a response still writing gets the real bytes
    assert backend.settle() == 1  # waiting for that slice
    del tail
    gc.collect()
    assert backend.settle() == 0


async def test_an_unviewed_block_is_zeroed_at_release_and_a_bytearray_handed_over_too() -> None:
    backend = MemoryBackend()
    keep, item_id = new_id(), new_id()
    await backend.put(keep, b"k" * 100)
    source = bytearray(b"x" * 1000)
    await backend.put(item_id, source)
    assert not any(source)  # copied into pages, the heap copy zeroed
    view = await backend.get(item_id)
    assert view is not None
    base = view.obj
    assert isinstance(base, memoryview)
    del view
    held = backend._blocks[item_id]
    arena = held.arena
    assert arena is not None
    start = held.offset
    await backend.delete_many([item_id])
    assert backend.settle() == 0
    assert not any(arena.mm[start : start + 1000])  # zeroed in place

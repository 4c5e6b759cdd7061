"""The memory backend serves views of the held buffer (no copy per read) and never zeroes
a buffer under a view a response still holds: it is zeroed once the view is gone."""

from __future__ import annotations

import gc

from cache.item import new_id
from cache.store.local.memory import MemoryBackend


async def test_a_read_is_a_view_and_a_viewed_buffer_is_zeroed_only_after() -> None:
    backend = MemoryBackend()
    item_id = new_id()
    buffer = bytearray(b"secret image bytes" * 100)
    await backend.put(item_id, buffer)  # handed over: no copy
    view = await backend.get(item_id)
    assert view is not None and view.readonly and view.obj is buffer
    assert await backend.delete(item_id) is True
    assert bytes(view[:6]) == b"secret"  # a response still writing gets the real bytes
    assert backend.settle() == 1  # waiting for that view
    del view
    gc.collect()
    assert backend.settle() == 0
    assert not any(buffer)  # zeroed (its last byte dropped: it was being released)


async def test_an_unviewed_buffer_is_zeroed_at_release() -> None:
    backend = MemoryBackend()
    item_id = new_id()
    buffer = bytearray(b"x" * 1000)
    await backend.put(item_id, buffer)
    await backend.delete_many([item_id])
    assert not any(buffer) and backend.settle() == 0

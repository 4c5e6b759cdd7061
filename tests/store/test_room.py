"""A full cache's Retry-After: the deadline by which the items due first free room for one
more body (LocalStore.room_at over Deadlines.in_order), and the bound on that walk."""

from __future__ import annotations

import random

import pytest

from cache.store.deadlines import Deadlines
from cache.store.local import store as local_store
from tests.support import images
from tests.support.service import ServiceFactory, make_config


def test_in_order_walks_live_entries_earliest_first_without_popping() -> None:
    live = {f"id{n}": float(n) for n in range(200)}
    heap = Deadlines(live, lambda deadline: deadline)
    shuffled = list(live.items())
    random.Random(7).shuffle(shuffled)
    for item_id, deadline in shuffled:
        heap.push(deadline, item_id)
    for stale in ("id3", "id50"):
        del live[stale]
    walked = list(heap.in_order(10))
    assert [d for d, _ in walked] == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert len(heap) == 200  # nothing popped
    assert [d for d, _ in heap.in_order(1000)] == sorted(live.values())


async def test_room_at_walks_at_most_room_walk_deadlines(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = len(images.png())
    service = await make_service(
        make_config(storage={"max_bytes": 4 * size}, limits={"max_upload_bytes": 4 * size})
    )
    for ttl in (10, 20, 30, 40):
        await service.upload_ok(images.png(), ttl=ttl)
    store = service.rt.store
    now = service.clock.monotonic()
    assert store.room_at(3 * size) == pytest.approx(now + 30)  # three must go
    assert store.room_at(5 * size) is None  # more than the whole capacity
    monkeypatch.setattr(local_store, "ROOM_WALK", 2)
    assert store.room_at(3 * size) == pytest.approx(now + 20)  # a lower bound past the bound

"""Shared capacity never leaks and never double-releases, whatever dies or expires when.

Capacity is released by whoever removes an id from the ledger (ZREM answers 1 to one
caller); these tests make every path race or fail on purpose, against a real Redis.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cache.errors import StorageUnavailable
from cache.item import ImageFacts, new_id
from cache.store.redis.codec import wall_ms
from cache.store.redis.tuning import LEDGER_SLACK_MS
from tests.support import images
from tests.support.nodes import Nodes, counters, shared
from tests.support.redisproc import RedisServer, all_keys, item_keys
from tests.support.service import Service


def purged_ttl(service: Service) -> int:
    return len([e for e in service.audit.events("purged") if e.get("reason") == "ttl"])


async def test_keys_expired_by_redis_itself_still_release_capacity_once(
    pair: Nodes, redis_server: RedisServer
) -> None:
    a, b = await pair()
    created = await a.upload_ok(images.png(), ttl=10)
    a.rt.timer.stop()
    for key in item_keys(all_keys(redis_server)):  # the PX backstop, brought forward
        redis_server.cli("pexpire", key, "1")
    for _ in range(200):
        if not item_keys(all_keys(redis_server)):
            break
        await asyncio.sleep(0.01)
    assert item_keys(all_keys(redis_server)) == []
    await b.advance(10)  # the sweep finds no keys: no purge to count, nothing confirmed
    assert purged_ttl(a) == purged_ttl(b) == 0
    assert redis_server.cli("zcard", "qc:{cap}:held") == "1"  # reserved until the scan
    assert await counters(a) == (created["size"], 1)
    b.clock.advance(1 + LEDGER_SLACK_MS / 1000)  # stale: deadline + grace + clock slack
    await asyncio.gather(a.rt.store.purge_orphans(), b.rt.store.purge_orphans())
    await b.rt.store.purge_orphans()
    assert await counters(a) == (0, 0)  # released once: nothing went below zero
    unconfirmed = [(await s.metrics())["cache_unconfirmed_releases_total"] for s in (a, b)]
    assert sum(unconfirmed) == 1


async def test_two_nodes_sweeping_the_same_due_items_count_each_once(
    pair: Nodes,
) -> None:
    a, b = await pair()
    ids = {(await a.upload_ok(images.png(), ttl=10))["id"] for _ in range(20)}
    a.clock.advance(10)
    results = await asyncio.gather(
        a.rt.store.purge_expired(),
        b.rt.store.purge_expired(),
        b.rt.store.purge_expired(),
    )
    receipts = [r.id for batch in results for r in batch]
    assert sorted(receipts) == sorted(ids)  # every item once, no item twice
    assert purged_ttl(a) + purged_ttl(b) == 20
    assert await counters(a) == (0, 0)


async def test_a_node_dying_between_reserve_and_write_releases_after_the_deadline(
    pair: Nodes,
) -> None:
    a, b = await pair()
    store = shared(a)
    deadline_ms = wall_ms(a.clock.wall() + 10)
    await store._scripts.reserve(new_id(), 500, deadline_ms, 10**9, 10**6)  # then "dies"
    assert await counters(b) == (500, 1)
    b.clock.advance(10 + 1)
    await b.rt.store.purge_orphans()
    assert await counters(b) == (500, 1)  # not before deadline + grace + clock slack
    b.clock.advance(LEDGER_SLACK_MS / 1000)
    await b.rt.store.purge_orphans()
    await a.rt.store.purge_orphans()
    assert await counters(b) == (0, 0)


async def test_a_reservation_without_keys_is_swept_then_released_by_the_ledger_scan(
    pair: Nodes, redis_server: RedisServer
) -> None:
    """The reservation is the item's deadline-index entry: the sweep at the deadline finds
    no keys to take (and stops: it does not read the same entry again and again)."""
    a, b = await pair()
    store = shared(a)
    item_id = new_id()
    deadline_ms = wall_ms(a.clock.wall() + 10)
    await store._scripts.reserve(item_id, 500, deadline_ms, 10**9, 10**6)
    await b.advance(10)
    assert await counters(b) == (500, 1)  # no TAKE confirms it: the ledger scan decides
    b.clock.advance(1 + LEDGER_SLACK_MS / 1000)
    await b.rt.store.purge_orphans()
    assert await counters(b) == (0, 0)
    assert sorted(all_keys(redis_server)) == ["qc:{cap}", "qc:{epoch}"]  # counters, token


async def test_a_failed_write_releases_its_reservation(
    pair: Nodes, redis_server: RedisServer
) -> None:
    a, _ = await pair()
    big = b"x" * (2 * 1024 * 1024)
    facts = ImageFacts(sha256="ab" * 32, size=len(big), media_type="image/png", width=1, height=1)
    redis_server.cli("config", "set", "proto-max-bulk-len", "1mb")  # the write is refused
    try:
        with pytest.raises(Exception) as failure:
            await a.rt.store.put(big, facts, 30, None, "upload")
        assert isinstance(failure.value, StorageUnavailable)
    finally:
        redis_server.cli("config", "set", "proto-max-bulk-len", "512mb")
    assert await counters(a) == (0, 0)
    assert item_keys(all_keys(redis_server)) == []
    await a.upload_ok(images.png())  # and the service goes on


async def test_full_cache_with_every_node_racing_admits_exactly_the_capacity(
    pair: Nodes,
) -> None:
    a, b = await pair(max_items=5)
    data = images.png()
    responses = await asyncio.gather(*((a if n % 2 else b).upload(data) for n in range(16)))
    statuses = [r.status for r in responses]
    assert statuses.count(201) == 5 and statuses.count(503) == 11
    assert (await counters(a))[1] == 5


def test_wall_ms_rounds_down() -> None:
    assert wall_ms(1.0019) == 1001
    assert wall_ms(time.time()) <= time.time() * 1000

"""The audit log accounts for every stored id, even when Redis loses items: a node that
finds its items gone (Redis back empty, or their keys missing) writes `purged` with reason
`lost` and counts `cache_purged_total{reason="lost"}`; and a `read` line is never written
after the item's `purged` line."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import images
from tests.support.nodes import Nodes, counters, purged, shared
from tests.support.redisproc import RedisServer, Topology, flush
from tests.support.service import Service, ServiceFactory, make_config


def lost_ids(service: Service) -> list[str]:
    return [e["id"] for e in service.audit.events("purged") if e["reason"] == "lost"]


def accounted(service: Service) -> bool:
    """Every id with a `stored` line has a `purged` line, once."""
    stored = [e["id"] for e in service.audit.events("stored")]
    gone = [e["id"] for e in service.audit.events("purged") if "id" in e]
    return sorted(stored) == sorted(gone)


async def test_redis_back_empty_every_item_gets_a_lost_line(
    own_redis: RedisServer, make_service: ServiceFactory
) -> None:
    config = make_config(storage={"backend": "redis", "redis_url": own_redis.url})
    node = await make_service(config)
    ids = [(await node.upload_ok(images.png(), ttl=30))["id"] for _ in range(3)]
    own_redis.stop()
    assert await shared(node).watch_lost() == 0  # unreachable: nothing is judged
    own_redis.start()  # same port, empty: nothing was on disk to come back
    after = await node.upload_ok(images.png(), ttl=30)  # stored before the node looks
    assert await shared(node).watch_lost() == 3
    assert sorted(lost_ids(node)) == sorted(ids)
    line = next(e for e in node.audit.events("purged") if e["reason"] == "lost")
    assert "size" not in line  # the ledger went with Redis: the stored line has it
    assert "stored_at" in line and "noticed_lag_ms" in line and "lag_ms" not in line
    assert purged(await node.metrics(), "lost") == 3
    assert await shared(node).watch_lost() == 0  # the new epoch is adopted: once each
    await node.advance(30)  # the deadlines pass: nothing more is said of the lost ones
    assert sorted(lost_ids(node)) == sorted(ids)
    assert after["id"] not in lost_ids(node)
    assert accounted(node)


async def test_a_flush_is_seen_by_every_node(nodes: Nodes, topology: Topology) -> None:
    a, b = await nodes()
    mine_a = (await a.upload_ok(images.png(), ttl=30))["id"]
    mine_b = (await b.upload_ok(images.png(), ttl=30))["id"]
    flush(topology)
    assert await shared(a).watch_lost() == 1  # a sets the new epoch
    assert await shared(b).watch_lost() == 1  # b sees it changed
    assert (lost_ids(a), lost_ids(b)) == ([mine_a], [mine_b])


async def test_keys_missing_at_the_deadline_are_lost_and_released(nodes: Nodes) -> None:
    a, _ = await nodes()
    created = await a.upload_ok(images.png(), ttl=10)
    store = shared(a)
    await store.client.delete(store.keys.item(created["id"]))
    await a.advance(10)
    assert lost_ids(a) == [created["id"]]
    assert await counters(a) == (0, 0)  # its reservation went with the lost line
    metrics = await a.metrics()
    assert purged(metrics, "lost") == 1 and purged(metrics, "ttl") == 0
    assert accounted(a)


async def test_an_item_another_node_purged_is_not_lost(nodes: Nodes) -> None:
    a, b = await nodes()
    created = await a.upload_ok(images.png(), ttl=10)
    assert (await b.client.delete(f"/v1/images/{created['id']}")).status == 204
    await a.advance(10)  # a's timer finds it gone: b took it (and said so)
    assert lost_ids(a) == [] and purged(await a.metrics(), "lost") == 0
    assert [e["reason"] for e in b.audit.events("purged")] == ["delete"]


async def test_the_ledger_scan_says_lost_for_items_of_a_dead_node(nodes: Nodes) -> None:
    a, b = await nodes()
    created = await a.upload_ok(images.png(), ttl=10)
    a.rt.timer.stop()  # a is as good as dead: only b is left to notice
    store = shared(a)
    await store.client.delete(store.keys.item(created["id"]))
    b.clock.advance(20)
    await b.rt.store.purge_orphans()
    assert lost_ids(b) == [created["id"]]


async def test_a_read_line_never_follows_the_purged_line(nodes: Nodes) -> None:
    a, _ = await nodes()
    created = await a.upload_ok(images.png(), ttl=30)
    store = shared(a)
    real_read = store._value.read
    reply_held = asyncio.Event()
    purge_done = asyncio.Event()

    async def slow_reply(*args: Any) -> Any:
        result = await real_read(*args)  # served by Redis, before the purge
        reply_held.set()
        await purge_done.wait()  # ... and its reply comes back after it
        return result

    store._value.read = slow_reply  # type: ignore[method-assign]
    read = asyncio.create_task(a.client.get(f"/v1/images/{created['id']}"))
    await reply_held.wait()
    assert (await a.client.delete(f"/v1/images/{created['id']}")).status == 204
    purge_done.set()
    assert (await read).status == 404  # its purged line is out: no read line after it
    events = [e["event"] for e in a.audit.events() if e.get("id") == created["id"]]
    assert events == ["stored", "purged"]
    store._value.read = real_read  # type: ignore[method-assign]
    again = await a.upload_ok(images.png(), max_reads=1)
    assert (await a.client.get(f"/v1/images/{again['id']}")).status == 200
    events = [e["event"] for e in a.audit.events() if e.get("id") == again["id"]]
    assert events == ["stored", "read", "purged"]  # the last read: read, then purged

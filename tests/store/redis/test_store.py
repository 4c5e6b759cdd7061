"""The shared (redis) store in-process, against a real Redis (one server, then a 3-master
cluster), on one manual clock. The nodes are the `nodes` fixture (tests/store/redis/conftest.py).

Two runtimes on one Redis are two service nodes: what one stores the other serves, deletes
and purges. Time moves only when a test moves it; Redis's own PX backstop (real time) is
far away for every TTL used here.
"""

from __future__ import annotations

import asyncio

from redis.asyncio.cluster import RedisCluster

from cache.item import ImageFacts
from cache.store.redis.persistence import check_persistence
from tests.support import images
from tests.support.nodes import Nodes, counters, node_of, purged, shared
from tests.support.redisproc import RedisClusterProcs, Topology, all_keys, item_keys
from tests.support.service import Service


async def test_stored_on_a_is_served_deleted_and_gone_on_b(nodes: Nodes) -> None:
    a, b = await nodes()
    data = images.jpeg()
    created = await a.upload_ok(data, ttl=30)
    response = await b.client.get(f"/v1/images/{created['id']}")
    assert response.status == 200 and await response.read() == data
    assert response.headers["Cache-Control"] == "no-store"
    meta = await (await b.client.get(f"/v1/images/{created['id']}/meta")).json()
    assert meta["reads"] == 1 and meta["sha256"] == created["sha256"]
    assert (await b.client.delete(f"/v1/images/{created['id']}")).status == 204
    assert (await a.client.get(f"/v1/images/{created['id']}")).status == 404
    assert (await a.client.delete(f"/v1/images/{created['id']}")).status == 404
    assert [e["reason"] for e in b.audit.events("purged")] == ["delete"]
    assert a.audit.events("purged") == []
    assert await counters(a) == (0, 0)


async def test_deadline_refuses_reads_on_every_node_then_the_owner_purges(nodes: Nodes) -> None:
    a, b = await nodes()
    created = await a.upload_ok(images.png(), ttl=30)
    a.clock.advance(29.9)
    assert (await b.client.get(f"/v1/images/{created['id']}")).status == 200
    a.clock.advance(0.1)  # the deadline, before any purge ran
    assert (await b.client.get(f"/v1/images/{created['id']}")).status == 404
    assert (await b.client.get(f"/v1/images/{created['id']}/meta")).status == 404
    assert (await b.metrics())["cache_expired_reads_refused_total"] == 2
    await a.advance(0.001)  # A's exact timer fires
    metrics_a, metrics_b = await a.metrics(), await b.metrics()
    assert purged(metrics_a, "ttl") == 1 and purged(metrics_b, "ttl") == 0
    assert metrics_a["cache_purge_lag_seconds_count"] == 1
    assert metrics_a["cache_ttl_violations_total"] == 0
    (event,) = a.audit.events("purged")
    assert event["id"] == created["id"] and event["reason"] == "ttl" and event["lag_ms"] >= 0
    assert event["sha256"] == created["sha256"] and event["size"] == created["size"]
    assert await counters(a) == (0, 0)


async def test_a_dead_node_s_items_are_purged_by_another_node(
    nodes: Nodes, topology: Topology
) -> None:
    a, b = await nodes()
    ids = [(await a.upload_ok(images.png(), ttl=ttl))["id"] for ttl in (10, 20, 30)]
    a.rt.timer.stop()  # A "dies": it never purges again
    await b.advance(10)
    assert purged(await b.metrics(), "ttl") == 1
    await b.advance(25)
    receipts = {e["id"] for e in b.audit.events("purged")}
    assert receipts == set(ids)
    assert purged(await b.metrics(), "ttl") == 3
    assert item_keys(all_keys(topology)) == []
    assert await counters(b) == (0, 0)


async def test_max_reads_across_two_nodes_serves_exactly_max_reads(nodes: Nodes) -> None:
    a, b = await nodes()
    data = images.jpeg((300, 200))
    created = await a.upload_ok(data, max_reads=7)

    async def get(service: Service) -> int:
        response = await service.client.get(f"/v1/images/{created['id']}")
        if response.status == 200:
            assert await response.read() == data
        return response.status

    statuses = await asyncio.gather(*(get(a if n % 2 else b) for n in range(50)))
    assert statuses.count(200) == 7 and statuses.count(404) == 43
    total = purged(await a.metrics(), "read_limit") + purged(await b.metrics(), "read_limit")
    assert total == 1  # counted once, by the node whose read deleted it
    assert await counters(a) == (0, 0)


async def test_capacity_is_shared_503_with_retry_after(nodes: Nodes) -> None:
    a, b = await nodes(storage={"max_items": 2})
    first = await a.upload_ok(images.png(), ttl=20)
    await b.upload_ok(images.png(), ttl=60)
    a.clock.advance(5)
    response = await b.upload(images.png())
    assert response.status == 503
    assert response.headers["Retry-After"] == "15"
    assert (await response.json())["type"].endswith("/cache-full")
    assert (await a.client.get(f"/v1/images/{first['id']}")).status == 200  # nothing evicted
    await a.advance(15)  # the first deadline: A purges its item, capacity comes back
    await b.upload_ok(images.png())
    assert (await b.metrics())["cache_items"] == 2


async def test_capacity_by_bytes_counts_the_whole_cache(nodes: Nodes) -> None:
    data = images.png((200, 200))
    storage = {"max_bytes": len(data) * 2 + 10}
    a, b = await nodes(storage=storage, limits={"max_upload_bytes": len(data) * 2})
    await a.upload_ok(data)
    await b.upload_ok(data)
    assert (await a.upload(data)).status == 503
    assert (await b.upload(data)).status == 503
    assert await counters(a) == (len(data) * 2, 2)


async def test_admin_purge_and_listing_reach_every_node_s_items(nodes: Nodes) -> None:
    a, b = await nodes()
    same = images.png()
    on_a = await a.upload_ok(same)
    on_b = await b.upload_ok(same)
    other = await a.upload_ok(images.jpeg())
    listing = await (await b.ops.get("/admin/items", headers=b.admin_headers)).json()
    assert {it["id"] for it in listing["items"]} == {on_a["id"], on_b["id"], other["id"]}
    response = await b.ops.post(
        "/admin/purge", json={"sha256": on_a["sha256"]}, headers=b.admin_headers
    )
    body = await response.json()
    assert {r["id"] for r in body["receipts"]} == {on_a["id"], on_b["id"]}
    assert all(r["reason"] == "admin" for r in body["receipts"])
    assert (await a.client.get(f"/v1/images/{on_a['id']}")).status == 404
    response = await a.ops.post(
        "/admin/purge", json={"ids": [other["id"], on_a["id"]]}, headers=a.admin_headers
    )
    body = await response.json()
    assert [r["id"] for r in body["receipts"]] == [other["id"]]
    assert body["not_found"] == [on_a["id"]]
    more = [(await s.upload_ok(images.png()))["id"] for s in (a, b, b)]
    response = await a.ops.post("/admin/purge", json={"all": True}, headers=a.admin_headers)
    assert sorted(r["id"] for r in (await response.json())["receipts"]) == sorted(more)
    assert await counters(a) == (0, 0)


async def test_shutdown_purges_this_node_s_items_only(nodes: Nodes) -> None:
    a, b = await nodes()
    mine = await a.upload_ok(images.png())
    theirs = await b.upload_ok(images.png())
    receipts = await a.rt.store.close()
    assert [r.id for r in receipts] == [mine["id"]] and receipts[0].reason == "shutdown"
    assert (await b.client.get(f"/v1/images/{mine['id']}")).status == 404
    assert (await b.client.get(f"/v1/images/{theirs['id']}")).status == 200
    assert (await a.upload(images.png())).status == 503


async def test_readyz_and_thumbnail_on_redis(nodes: Nodes) -> None:
    a, b = await nodes()
    created = await a.upload_ok(images.png((300, 200)), max_reads=1)
    ready = await b.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["items"] == 1
    metrics = await b.metrics()
    assert metrics['cache_guarantee_ok{check="redis_no_persistence"}'] == 1
    thumb = await b.client.get(f"/v1/images/{created['id']}/thumbnail", params={"size": 64})
    assert thumb.status == 200  # a thumbnail does not use up the read
    assert (await a.client.get(f"/v1/images/{created['id']}")).status == 200
    assert (await b.client.get(f"/v1/images/{created['id']}")).status == 404


async def test_every_item_key_carries_a_px_backstop(nodes: Nodes, topology: Topology) -> None:
    a, _ = await nodes()
    await a.upload_ok(images.png(), ttl=30)
    keys = all_keys(topology)
    volatile = [k for k in keys if k.endswith("}:item")]
    assert len(volatile) == 1
    assert [k for k in keys if "{" in k and k not in volatile and "{cap}" not in k] == [
        "qc:{epoch}"
    ]  # no other key per item: the ledger ({cap}) is the deadline index
    for key in volatile:
        pttl = int(node_of(topology, key).cli("pttl", key))
        assert 0 < pttl <= 31_000  # deadline + grace, never unbounded


async def test_cluster_persistence_is_checked_on_every_node(
    redis_cluster: RedisClusterProcs,
) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    persisting = redis_cluster.nodes[2]
    try:
        assert (await check_persistence(client)).ok
        persisting.cli("config", "set", "save", "60 1")
        result = await check_persistence(client)
        assert result.status == "fail"
        assert f"127.0.0.1:{persisting.port} has save '60 1'" in result.reason
    finally:
        persisting.cli("config", "set", "save", "")
        await client.aclose()


async def test_full_shared_cache_retry_after_is_the_deadline_that_makes_room(
    nodes: Nodes,
) -> None:
    small, big = images.png(), images.png((256, 192))
    s, large = len(small), len(big)
    cap = s + large  # 3 small held + the big one: over by 2 small - freeing one is not enough
    a, b = await nodes(storage={"max_bytes": cap}, limits={"max_upload_bytes": cap})
    for ttl in (30, 10, 20):
        await a.upload_ok(small, ttl=ttl)
    response = await b.upload(big)
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"] == "20"
    again = await b.upload(big)  # refused early (the hint): the same Retry-After
    assert again.status == 503 and again.headers["Retry-After"] == "20"


async def test_reads_of_gone_items_leave_no_key_behind(nodes: Nodes, topology: Topology) -> None:
    """A read counts with BITFIELD before it knows whether the item exists; on a key that had
    gone that makes a 4-byte value with no header, which the read must delete again."""
    a, b = await nodes()
    created = await a.upload_ok(images.png(), ttl=30)
    assert (await b.client.delete(f"/v1/images/{created['id']}")).status == 204
    unknown = "A" * len(created["id"])
    for item_id in (created["id"], unknown, created["id"]):
        for service in (a, b):
            assert (await service.client.get(f"/v1/images/{item_id}")).status == 404
            assert (await service.client.get(f"/v1/images/{item_id}/meta")).status == 404
    assert item_keys(all_keys(topology)) == []
    assert await counters(a) == (0, 0)


async def test_a_delete_of_a_key_remade_by_a_late_read_counts_nothing(
    nodes: Nodes, topology: Topology
) -> None:
    """A's DELETE of its own item skips reading it back (TAKE_KNOWN, one server). After B
    deleted the item, a read's BITFIELD can make a 4-byte value under its key: A's DEL
    removes it, finds no reservation, and counts no second purge."""
    a, b = await nodes()
    created = await a.upload_ok(images.png(), ttl=30)
    assert (await b.client.delete(f"/v1/images/{created['id']}")).status == 204
    store = shared(a)
    await store.client.execute_command(
        "BITFIELD", store.keys.item(created["id"]), "INCRBY", "u32", 0, 1
    )  # the late read
    assert (await a.client.delete(f"/v1/images/{created['id']}")).status == 404
    assert item_keys(all_keys(topology)) == []
    assert purged(await a.metrics(), "delete") + purged(await b.metrics(), "delete") == 1
    assert [e["id"] for e in a.audit.events("purged") + b.audit.events("purged")] == [created["id"]]
    assert await counters(a) == (0, 0)


async def test_a_put_cancelled_at_any_step_leaves_nothing(nodes: Nodes, topology: Topology) -> None:
    """A client that goes away mid-upload cancels the put wherever it waits: reserving,
    writing the value (queued on the request path's connection, maybe not yet written), or
    after. Whatever step it stopped at, no key and no reservation stay behind."""
    a, _ = await nodes()
    store, data = shared(a), images.png()
    facts = ImageFacts("ab" * 32, len(data), "image/png", 1, 1)
    warm = await store.put(bytearray(data), facts, 30.0, None, "upload")  # connected
    assert await store.delete(warm.id) is not None
    stored = 0
    for passes in range(12):
        put = asyncio.ensure_future(store.put(bytearray(data), facts, 30.0, None, "upload"))
        for _ in range(passes):
            await asyncio.sleep(0)
        put.cancel()
        try:
            item = await put
        except asyncio.CancelledError:
            continue
        stored += 1  # it finished before the cancel came: a real item, deleted here
        assert await store.delete(item.id) is not None
    await asyncio.sleep(0.05)
    assert item_keys(all_keys(topology)) == []
    assert await counters(a) == (0, 0)
    assert stored < 12  # the cancels did land mid-put

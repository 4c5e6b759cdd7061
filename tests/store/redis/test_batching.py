"""Batched purges on the shared store, against a real Redis (one server, then a cluster).

A purge takes its due items a batch at a time (one script call or one pipeline per batch),
keeps taking what falls due while it runs, and hands back to the exact timer after a short
while. Counting each purge once must hold whatever the batch sizes and whoever races.
"""

from __future__ import annotations

import asyncio

from cache.item import ImageFacts
from cache.store.redis.batching import TakeStream
from cache.store.redis.store import RedisStore
from cache.store.redis.tuning import RUN_SECONDS, TAKE_CHUNK
from tests.support.nodes import Nodes, counters, node_of, purged, shared
from tests.support.redisproc import RedisClusterProcs, Topology, all_keys, item_keys

DATA = b"\x89PNG" + bytes(60)


async def put(store: RedisStore, n: int, ttl: float) -> str:
    facts = ImageFacts(f"{n:064x}", len(DATA), "image/png", 1, 1)
    return (await store.put(DATA, facts, ttl, None, "upload")).id


def index_entries(topology: Topology) -> int:
    """Entries of the deadline index: the ledger of reservations (and its sizes)."""
    if not [k for k in all_keys(topology) if k.startswith("qc:{cap}:")]:
        return 0
    node = node_of(topology, "qc:{cap}")
    return int(node.cli("zcard", "qc:{cap}:held")) + int(node.cli("hlen", "qc:{cap}:size"))


async def test_many_due_items_in_batches_on_two_racing_nodes_count_once(
    nodes: Nodes, topology: Topology
) -> None:
    a, b = await nodes()
    count = TAKE_CHUNK + 88  # more than one batch
    ids = {await put(shared(a), n, 10 + n / 1000) for n in range(count)}
    a.clock.advance(11)
    await asyncio.gather(
        shared(a).purge_expired(), shared(b).purge_expired(), shared(a).purge_ids(list(ids))
    )
    events = [e for s in (a, b) for e in s.audit.events("purged")]
    assert sorted(e["id"] for e in events) == sorted(ids)  # each once, whoever took it
    assert {e["reason"] for e in events} == {"ttl"}
    assert purged(await a.metrics(), "ttl") + purged(await b.metrics(), "ttl") == count
    assert await counters(a) == (0, 0)
    assert item_keys(all_keys(topology)) == [] and index_entries(topology) == 0
    assert shared(a).earliest_deadline() is None


async def test_items_falling_due_during_a_purge_are_taken_by_it(nodes: Nodes) -> None:
    a, _ = await nodes()
    store = shared(a)
    first = await put(store, 1, 10)
    later = [await put(store, n, 10.5) for n in range(2, 5)]
    sends: list[list[str]] = []
    original = TakeStream.send

    async def send(stream: TakeStream, ids: list[str]) -> None:
        sends.append(list(ids))
        if len(sends) == 1:
            a.clock.advance(RUN_SECONDS / 2)  # the others fall due while the first is taken
        await original(stream, ids)

    a.clock.advance(10.5 - RUN_SECONDS / 2)
    TakeStream.send = send  # type: ignore[method-assign]
    try:
        receipts = await store.purge_expired()
    finally:
        TakeStream.send = original  # type: ignore[method-assign]
    assert sends[0] == [first] and sorted(sends[1]) == sorted(later)
    assert sorted(r.id for r in receipts) == sorted([first, *later])  # in one purge
    assert store.earliest_deadline() is None


async def test_after_a_run_the_timer_is_armed_for_what_is_due(nodes: Nodes) -> None:
    a, _ = await nodes()
    store = shared(a)
    first = await put(store, 1, 10)
    second = await put(store, 2, 10.5)
    original = TakeStream.send

    async def send(stream: TakeStream, ids: list[str]) -> None:
        a.clock.advance(1)  # a long batch: past the run's time, the second falls due
        await original(stream, ids)

    a.clock.advance(10)
    TakeStream.send = send  # type: ignore[method-assign]
    try:
        receipts = await store.purge_expired()
    finally:
        TakeStream.send = original  # type: ignore[method-assign]
    assert [r.id for r in receipts] == [first]  # the run stopped: its time was up
    deadline = store.earliest_deadline()
    assert deadline is not None and deadline <= a.clock.monotonic()  # the timer fires now
    assert [r.id for r in await a.rt.timer.run_due()] == [second]
    assert store.earliest_deadline() is None


async def test_scripts_flushed_from_redis_are_loaded_again(
    nodes: Nodes, topology: Topology
) -> None:
    a, b = await nodes()
    servers = topology.nodes if isinstance(topology, RedisClusterProcs) else [topology]
    first = await put(shared(a), 1, 10)
    for server in servers:
        server.cli("script", "flush")
    second = await put(shared(a), 2, 10)  # the index and WRITE scripts, again
    assert (await b.client.get(f"/v1/images/{second}")).status == 200
    for server in servers:
        server.cli("script", "flush")
    await a.advance(10)  # the batch TAKE, again
    assert {e["id"] for e in a.audit.events("purged")} == {first, second}
    for server in servers:
        server.cli("script", "flush")
    third = await put(shared(b), 3, 30)
    for server in servers:
        server.cli("script", "flush")
    assert (await a.client.delete(f"/v1/images/{third}")).status == 204
    assert await counters(a) == (0, 0)
    assert item_keys(all_keys(topology)) == []


async def test_a_purge_survives_its_connection_being_killed(
    nodes: Nodes, topology: Topology
) -> None:
    a, _ = await nodes()
    ids = [await put(shared(a), n, 10) for n in range(20)]
    servers = topology.nodes if isinstance(topology, RedisClusterProcs) else [topology]
    for server in servers:
        server.cli("client", "kill", "type", "normal")
    await a.advance(10)
    assert sorted(e["id"] for e in a.audit.events("purged")) == sorted(ids)
    assert await counters(a) == (0, 0)
    assert item_keys(all_keys(topology)) == []


async def test_a_key_of_an_older_layout_does_not_stop_a_purge_batch(
    nodes: Nodes, topology: Topology
) -> None:
    """An item key of another type (a hash, as nodes of an older layout wrote them): the
    listings skip it, and in a due batch every other item is still purged on time and
    that key goes too."""
    a, _ = await nodes()
    store = shared(a)
    ids = [await put(store, n, 10) for n in range(5)]
    odd = ids[2]
    key = store.keys.item(odd)
    node = node_of(topology, key)
    node.cli("del", key)
    node.cli("hset", key, "sha256", "ab" * 32, "size", str(len(DATA)), "data", "x")
    listed = sorted(item.id for item in await store.list_items())  # operator calls go on
    assert listed == sorted(i for i in ids if i != odd)
    assert [item.id for item in await store.list_items(f"{0:064x}")] == [ids[0]]
    await a.advance(11)
    events = {e["id"]: e["reason"] for e in a.audit.events("purged")}
    assert {i: events.get(i) for i in ids if i != odd} == {i: "ttl" for i in ids if i != odd}
    assert events.get(odd) == "lost"  # deleted, but not as an item of this layout
    assert item_keys(all_keys(topology)) == []
    assert await counters(a) == (0, 0)

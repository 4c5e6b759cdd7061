"""What a lifecycle asks of Redis, counted by Redis itself (`INFO commandstats`), and what an
item is in Redis: one string, a header and then the bytes, which never pass through Lua.

The issue's budget is 12 commands a lifecycle (a script's inner calls count, as Redis counts
them). The counts here are exact, on one server, so a change that adds a round trip or a
command fails here rather than only moving a benchmark.
"""

from __future__ import annotations

from redis.asyncio import Redis

from cache.store.redis.codec import COUNT_BYTES, parse
from tests.support import images
from tests.support.nodes import Nodes, shared


def _stats(info: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


async def _calls(client: Redis) -> dict[str, int]:
    return _stats(await client.info("commandstats"))


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    names = set(before) | set(after)
    moved = {n: after.get(n, 0) - before.get(n, 0) for n in names}
    return {n: c for n, c in moved.items() if c and n not in ("info",)}


async def test_a_lifecycle_is_eleven_commands_and_the_bytes_are_plain(pair: Nodes) -> None:
    a, _ = await pair()
    client = shared(a).client
    assert isinstance(client, Redis)
    data = images.png()
    warm = await a.upload_ok(data, ttl=30)  # loads the scripts (a first EVALSHA: NOSCRIPT)
    assert (await a.client.delete(f"/v1/images/{warm['id']}")).status == 204
    before = await _calls(client)
    created = await a.upload_ok(data, ttl=30)
    uploaded = await _calls(client)
    value = await client.get(shared(a).keys.item(created["id"]))
    assert await client.type(shared(a).keys.item(created["id"])) == b"string"
    fields, start = parse(value)
    assert value is not None and value[start:] == data  # the bytes as they came, after it
    assert fields["sha256"] == created["sha256"] and fields["reads"] == "0"
    assert value[:COUNT_BYTES] == b"\0\0\0\0"
    checked = await _calls(client)
    response = await a.client.get(f"/v1/images/{created['id']}")
    assert response.status == 200 and await response.read() == data
    read = await _calls(client)
    assert (await a.client.delete(f"/v1/images/{created['id']}")).status == 204
    deleted = await _calls(client)
    # upload: RESERVE (zadd, hincrby, zcard inside), then SET with its PX
    assert _moved(before, uploaded) == {"evalsha": 1, "zadd": 1, "hincrby": 1, "zcard": 1, "set": 1}
    assert _moved(checked, read) == {"bitfield": 1, "get": 1}
    # delete of an own item: TAKE_KNOWN (del, zrem, hincrby inside)
    assert _moved(read, deleted) == {"evalsha": 1, "del": 1, "zrem": 1, "hincrby": 1}
    assert sum(_moved(before, uploaded).values()) + 2 + 4 == 11


async def test_the_read_count_lives_in_the_value_and_max_reads_holds(pair: Nodes) -> None:
    a, b = await pair()
    created = await a.upload_ok(images.png(), ttl=30, max_reads=3)
    client, key = shared(a).client, shared(a).keys.item(created["id"])
    for node in (a, b):
        assert (await node.client.get(f"/v1/images/{created['id']}")).status == 200
    fields, _ = parse(await client.getrange(key, 0, 1023))
    assert fields["reads"] == "2" and fields["max_reads"] == "3"
    meta = await (await b.client.get(f"/v1/images/{created['id']}/meta")).json()
    assert meta["reads"] == 2 and meta["reads_left"] == 1
    assert (await b.client.get(f"/v1/images/{created['id']}")).status == 200  # the last
    assert await client.exists(key) == 0
    assert (await a.client.get(f"/v1/images/{created['id']}")).status == 404

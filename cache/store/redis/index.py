"""Reading the shared indexes: which items are held, by SHA-256, by deadline, or by scan.

Ops calls (listing, purge by hash, purge all) read these; the hot paths never do.
"""

from __future__ import annotations

from ...item import Item
from .codec import as_map
from .keys import RedisClient, RedisKeys
from .release import Releaser, valid_ids
from .tuning import LIST_CHUNK


async def indexed_ids(client: RedisClient, keys: RedisKeys, sha256: str | None) -> list[str]:
    """Ids from the sha256 set, or from every shard of the deadline index."""
    if sha256 is not None:
        return sorted(valid_ids(await client.smembers(keys.sha(sha256))))
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards():
        pipe.zrange(shard, 0, -1)
    return sorted(valid_ids(m for shard in await pipe.execute() for m in shard))


async def scanned_ids(client: RedisClient, keys: RedisKeys) -> set[str]:
    """Every item's id with a data key, found by SCAN on every primary."""
    found: set[str] = set()
    async for key in client.scan_iter(match=keys.data_pattern, count=1000):
        item_id = keys.id_of_data_key(key)
        if item_id is not None:
            found.add(item_id)
    return found


async def items_of(
    client: RedisClient, keys: RedisKeys, releaser: Releaser, ids: list[str]
) -> list[Item]:
    """The metadata of `ids` still held, oldest first: a pipeline per LIST_CHUNK ids."""
    items: list[Item] = []
    for start in range(0, len(ids), LIST_CHUNK):
        chunk = ids[start : start + LIST_CHUNK]
        pipe = client.pipeline(transaction=False)
        for item_id in chunk:
            pipe.hgetall(keys.meta(item_id))
        for item_id, raw in zip(chunk, await pipe.execute(), strict=True):
            if raw:
                items.append(releaser.item(item_id, as_map(raw)))
    return sorted(items, key=lambda it: it.created)

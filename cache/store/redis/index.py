"""Reading the shared index: which items are held, all, by SHA-256, or found by a scan.

Ops calls (listing, purge by hash, purge all) read these; the hot paths never do.
"""

from __future__ import annotations

from ...item import Item
from .codec import COUNT_BYTES, HEADER_MAX, parse, text
from .keys import RedisClient, RedisKeys
from .release import Releaser, valid_ids
from .tuning import LIST_CHUNK


async def indexed_ids(client: RedisClient, keys: RedisKeys, sha256: str | None) -> list[str]:
    """Ids in the deadline index (the ledger), all or those held with one SHA-256. There is
    no index by hash: it would cost every upload and every purge two more calls, for an
    operator's purge by hash, which reads each item's header instead (a pipeline of
    GETRANGE per LIST_CHUNK items)."""
    ids = sorted(valid_ids(await client.zrange(keys.ledger, 0, -1)))  # type: ignore[arg-type]
    if sha256 is None:
        return ids
    matching: list[str] = []
    want = f"sha256={sha256}\t"  # the first field of every header
    for start in range(0, len(ids), LIST_CHUNK):
        chunk = ids[start : start + LIST_CHUNK]
        pipe = client.pipeline(transaction=False)
        for item_id in chunk:
            pipe.getrange(keys.item(item_id), COUNT_BYTES, COUNT_BYTES + len(want) - 1)
        held = await pipe.execute(raise_on_error=False)  # an older layout: not matched
        matching += [i for i, h in zip(chunk, held, strict=True) if text(h) == want]
    return matching


async def scanned_ids(client: RedisClient, keys: RedisKeys) -> set[str]:
    """Every item's id with a key, found by SCAN on every primary."""
    found: set[str] = set()
    async for key in client.scan_iter(match=keys.item_pattern, count=1000):
        item_id = keys.id_of_item_key(key)
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
            pipe.getrange(keys.item(item_id), 0, HEADER_MAX - 1)  # not the bytes
        replies = await pipe.execute(raise_on_error=False)  # an older layout: not listed
        for item_id, raw in zip(chunk, replies, strict=True):
            fields, _ = parse(raw)
            if fields:
                items.append(releaser.item(item_id, fields))
    return sorted(items, key=lambda it: it.created)

"""Bytes in Redis or Valkey (one server or a cluster), shared by every service node.

Both keys of an item share a hash tag, `{prefix}{<id>}:data` and `{prefix}{<id>}:meta`, so
the scripts that touch both run on a cluster too. Every key carries a PX TTL: if every
node is gone, Redis drops the bytes itself. Redis frees a deleted value without
overwriting it (overwriting first would send the whole payload to replicas once more):
unlike the memory backend, no best-effort zeroing happens here.

The client is built by the app factory (`cache.app`); this module never reads config.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ...item import is_valid_id

RedisClient: TypeAlias = "Redis | RedisCluster"

# The deadline index is split over this many sorted sets, each its own hash tag, so that on
# a cluster it is not one hot slot.
SHARDS = 16
PURGE_CHUNK = 1000  # deletes per pipeline in purge_all
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Where everything lives. One place, so the scripts and the scans cannot disagree
    (the single-server batch scripts of `cache.redis_batch` spell the same names in Lua)."""

    prefix: str

    def data(self, item_id: str) -> str:
        return f"{self.prefix}{{{item_id}}}:data"

    def meta(self, item_id: str) -> str:
        return f"{self.prefix}{{{item_id}}}:meta"

    def shard(self, n: int) -> str:
        return f"{self.prefix}{{dl:{n}}}"

    def shard_number(self, item_id: str) -> int:
        return zlib.crc32(item_id.encode()) % SHARDS

    def shard_of(self, item_id: str) -> str:
        return self.shard(self.shard_number(item_id))

    def shards(self) -> list[str]:
        return [self.shard(n) for n in range(SHARDS)]

    def sha(self, sha256: str) -> str:
        return f"{self.prefix}{{sha:{sha256}}}"

    @property
    def counters(self) -> str:
        """Hash: `bytes` and `items` reserved in the whole cache."""
        return f"{self.prefix}{{cap}}"

    @property
    def ledger(self) -> str:
        """Sorted set: every reservation by id, scored by its deadline (Unix ms)."""
        return f"{self.prefix}{{cap}}:held"

    @property
    def sizes(self) -> str:
        """Hash: the size of every reservation in the ledger."""
        return f"{self.prefix}{{cap}}:size"

    @property
    def data_pattern(self) -> str:
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "{*}:data"

    def id_of_data_key(self, key: bytes | str) -> str | None:
        text = key.decode() if isinstance(key, bytes) else key
        head, tail = self.prefix + "{", "}:data"
        if not (text.startswith(head) and text.endswith(tail)):
            return None
        item_id = text[len(head) : -len(tail)]
        return item_id if is_valid_id(item_id) else None


def payload(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """What redis-py can send without a copy (it refuses a bytearray, not a view of one)."""
    return memoryview(data) if isinstance(data, bytearray) else data


def checked(item_id: str) -> str:
    """An id becomes part of a key only if this service could have made it."""
    if not is_valid_id(item_id):
        raise ValueError("invalid item id")
    return item_id


class RedisBackend:
    """The bytes-level contract on Redis; the shared store adds metadata, deadlines and
    capacity on top of the same keys, with scripts that keep each step atomic."""

    name = "redis"

    def __init__(self, client: RedisClient, prefix: str, backstop_ms: int) -> None:
        self.client = client
        self.layout = RedisKeys(prefix)
        self.backstop_ms = backstop_ms  # PX of keys written through put(): never unbounded

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        key = self.layout.data(checked(item_id))
        if not await self.client.set(key, payload(data), nx=True, px=self.backstop_ms):
            raise KeyError(f"id already held: {item_id}")

    async def get(self, item_id: str) -> bytes | None:
        value = await self.client.get(self.layout.data(checked(item_id)))
        return value.encode() if isinstance(value, str) else value

    async def delete(self, item_id: str) -> bool:
        checked(item_id)
        deleted = await self.client.delete(self.layout.data(item_id), self.layout.meta(item_id))
        return bool(deleted)

    async def delete_many(self, item_ids: list[str]) -> int:
        """`delete` for a batch: one non-transactional pipeline (split by node on a
        cluster), not a round trip per item. How many were held."""
        if not item_ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.delete(self.layout.data(checked(item_id)), self.layout.meta(item_id))
        return sum(1 for deleted in await pipe.execute() if deleted)

    async def purge_all(self) -> int:
        """Every item's keys, found by SCAN on every primary (the indexes are the store's)."""
        ids = sorted(await self.keys())
        count = 0
        for start in range(0, len(ids), PURGE_CHUNK):
            count += await self.delete_many(ids[start : start + PURGE_CHUNK])
        return count

    async def keys(self) -> set[str]:
        found: set[str] = set()
        async for key in self.client.scan_iter(match=self.layout.data_pattern, count=1000):
            item_id = self.layout.id_of_data_key(key)
            if item_id is not None:
                found.add(item_id)
        return found

    async def close(self) -> None:
        await self.client.aclose()

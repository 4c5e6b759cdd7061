"""One item's hash, written and read with plain commands: no script touches the bytes.

The hash holds the item's metadata fields (`codec.FIELDS`) and, in DATA_FIELD, its bytes:
an upload is HSET + PEXPIRE (after its reservation), a read HINCRBY + HMGET, each one
pipeline on one key (one slot on a cluster). What the reads must get right, whatever
other readers and purges do meanwhile, is in `read`.
"""

from __future__ import annotations

from typing import Any

from .batching import Batches, checked
from .codec import FIELDS, fields_of, payload
from .keys import DATA_FIELD, RedisKeys
from .scripts import EXPIRED, LAST_READ, MISSING, SERVED, ReadResult


class ItemHash:
    def __init__(self, keys: RedisKeys, batches: Batches) -> None:
        self._keys = keys
        self._plain = batches.plain

    async def store(
        self, item_id: str, px: int, data: bytes | bytearray | memoryview, meta: dict[str, str]
    ) -> None:
        """The item's hash, metadata and bytes in one HSET, with its PX backstop, to the
        item's slot (its reservation, which is also its deadline-index entry, came first).
        The bytes go as they are: never through a script."""
        key, fields = self._keys.item(item_id), [p for pair in meta.items() for p in pair]
        write: list[list[Any]] = [
            ["HSET", key, *fields, DATA_FIELD, payload(data)],
            ["PEXPIRE", key, px],
        ]
        checked(await self._plain(write))

    async def read(self, item_id: str, now_ms: int, count: bool) -> ReadResult:
        """HINCRBY `reads` (when `count`), then HMGET the bytes and metadata: one pipeline,
        one key, no script. Each counted reader gets its own ordinal, so concurrent readers
        on any number of nodes get exactly `max_reads` bodies; the one whose ordinal is
        `max_reads` deletes the item (LAST_READ, `RedisStore.read`) and the rest are refused.
        A HINCRBY on a key that had gone makes a hash with `reads` alone: it is refused and
        deleted here (nothing else ever writes a hash without `deadline_ms`)."""
        key = self._keys.item(item_id)
        commands: list[list[Any]] = [["HMGET", key, DATA_FIELD, *FIELDS]]
        if count:
            commands.insert(0, ["HINCRBY", key, "reads", 1])
        replies = checked(await self._plain(commands))
        data, *values = replies[-1]
        meta = fields_of(values)
        if "deadline_ms" not in meta:
            if count and meta:  # made by our HINCRBY: nothing may keep it
                checked(await self._plain([["DEL", key]]))
            return ReadResult(MISSING)
        if now_ms >= int(meta["deadline_ms"]):
            return ReadResult(EXPIRED)
        status = SERVED
        if count and "max_reads" in meta:
            ordinal, limit = int(replies[0]), int(meta["max_reads"])
            if ordinal > limit:
                return ReadResult(MISSING)  # another reader took the last read
            status = LAST_READ if ordinal == limit else SERVED
        if data is None:
            return ReadResult(MISSING)
        return ReadResult(status, data, meta)

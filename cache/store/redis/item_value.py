"""One item's value, written and read with plain commands: no script touches the bytes.

The value is one string, a header (`codec.header`: the read count, then the metadata
line) and the bytes after it: an upload is one SET with its PX backstop (after its
reservation), a read BITFIELD INCRBY + GET, each one pipeline on one key (one slot on a
cluster). What the reads must get right, whatever other readers and purges do meanwhile,
is in `read`.
"""

from __future__ import annotations

from typing import Any

from .batching import Batches, checked
from .codec import COUNT_BYTES, header, parse, payload
from .keys import RedisKeys
from .scripts import EXPIRED, LAST_READ, MISSING, SERVED, ReadResult
from .wire import Joined

# Each counted reader's ordinal: the count (the value's first 4 bytes) plus one, in place.
COUNT = ("BITFIELD", "OVERFLOW", "SAT", "INCRBY", f"u{COUNT_BYTES * 8}", 0, 1)


class ItemValue:
    def __init__(self, keys: RedisKeys, batches: Batches) -> None:
        self._keys = keys
        self._plain = batches.plain
        self._wire = batches.wire is not None  # else redis-py, which takes one buffer

    async def store(
        self, item_id: str, px: int, data: bytes | bytearray | memoryview, meta: dict[str, str]
    ) -> None:
        """The item's header and bytes in one SET with its PX backstop, to the item's slot
        (its reservation, which is also its deadline-index entry, came first). The bytes go
        as they are, after the header: never through a script, and on the request path's
        wire never copied to join them."""
        head = header(meta)
        value = Joined((head, payload(data))) if self._wire else head + bytes(data)
        checked(await self._plain([["SET", self._keys.item(item_id), value, "PX", px]]))

    async def read(self, item_id: str, now_ms: int, count: bool) -> ReadResult:
        """BITFIELD INCRBY the count (when `count`), then GET the value: one pipeline, one
        key, no script. Each counted reader gets its own ordinal, so concurrent readers on
        any number of nodes get exactly `max_reads` bodies; the one whose ordinal is
        `max_reads` deletes the item (LAST_READ, `RedisStore.read`) and the rest are refused.
        A BITFIELD on a key that had gone makes a 4-byte value with no header: it is refused
        and deleted here (nothing else ever writes a value without one)."""
        key = self._keys.item(item_id)
        commands: list[list[Any]] = [["GET", key]]
        if count:
            commands.insert(0, [COUNT[0], key, *COUNT[1:]])
        replies = checked(await self._plain(commands))
        value = replies[-1]
        meta, start = parse(value)
        if not meta:
            if count and value:  # made by our BITFIELD: nothing may keep it
                checked(await self._plain([["DEL", key]]))
            return ReadResult(MISSING)
        if now_ms >= int(meta["deadline_ms"]):
            return ReadResult(EXPIRED)
        status = SERVED
        if count and "max_reads" in meta:
            ordinal, limit = int(replies[0][0]), int(meta["max_reads"])
            if ordinal > limit:
                return ReadResult(MISSING)  # another reader took the last read
            status = LAST_READ if ordinal == limit else SERVED
        return ReadResult(status, memoryview(value)[start:], meta)

"""What goes into Redis and comes back: an item's value (a header, then its bytes).

An item is one string: a header, then the image bytes as they came. The header is
- 4 bytes: the read count, a big-endian u32 that BITFIELD INCRBY moves in place (each
  counted reader gets its own ordinal, so a read needs no script: `item_value.ItemValue`);
- one line of tab-separated `name=value` fields ending in a newline, `sha256`, `size`,
  `created_ms` and `deadline_ms` first and in that order (the TAKE scripts match them with
  one pattern), never longer than HEADER_MAX in all, so one GETRANGE reads any header.
A read limit is `max_reads`, never changed: `reads_left` is its difference with the count.
A string (not a hash with a field for the bytes) because Redis keeps a large SET argument
as the value without copying it, where HSET copies it into the hash: about 11 µs of Redis
CPU per 100 KB upload, and SET takes the PX backstop too (one command, not HSET + PEXPIRE).

Times in Redis are wall-clock Unix ms: a monotonic reading means nothing on another
machine. Read back on a node, they become that node's monotonic times again, so the rest of
the service (lag, residency, `Item.ttl`) works as with a local store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...clock import Clock
from ...item import Item


def text(value: object) -> str:
    """A reply (bytes from redis-py, or anything else) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


HEADER_MAX = 1024  # bytes: the count and the line (the longest real one is about 500)
COUNT_BYTES = 4
LEAD = ("sha256", "size", "created_ms", "deadline_ms")  # first, in this order (Lua relies on it)
FACTS_END = COUNT_BYTES + 191  # the last byte a TAKE reads: the LEAD fields end before it


def header(fields: Mapping[str, str]) -> bytes:
    """An item's header from `encode`'s fields (`reads` becomes the count)."""
    rest = [k for k in fields if k not in LEAD and k != "reads"]
    joined = "\t".join(f"{k}={fields[k]}" for k in (*LEAD, *rest))
    if joined.count("\t") != len(LEAD) + len(rest) - 1 or "\n" in joined:
        raise ValueError("an item field holds a tab or a newline")
    line = joined.encode() + b"\n"
    lead = sum(len(k) + 2 + len(fields[k]) for k in LEAD)  # with "=" and the separator
    if lead > FACTS_END - COUNT_BYTES + 1:
        raise ValueError("an item's lead fields are longer than a TAKE reads")
    if len(line) + COUNT_BYTES > HEADER_MAX:
        raise ValueError(f"an item header of {len(line)} bytes is over {HEADER_MAX}")
    return int(fields.get("reads", "0")).to_bytes(COUNT_BYTES, "big") + line


def parse(value: object) -> tuple[dict[str, str], int]:
    """A value (or the start of one: GETRANGE 0 HEADER_MAX-1) -> its fields, with `reads`
    from the count, and where the bytes start; ({}, 0) for anything that is not an item's
    (no value, or the 4 bytes a BITFIELD on a gone key made)."""
    if not isinstance(value, bytes) or not value:
        return {}, 0
    end = value.find(b"\n", COUNT_BYTES, HEADER_MAX)
    if end < 0:
        return {}, 0
    pairs = (p.partition("=") for p in value[COUNT_BYTES:end].decode().split("\t"))
    fields = {name: v for name, _, v in pairs}
    if "deadline_ms" not in fields:
        return {}, 0
    fields["reads"] = str(int.from_bytes(value[:COUNT_BYTES], "big"))
    return fields, end + 1


def payload(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """What redis-py can send without a copy (it refuses a bytearray, not a view of one)."""
    return memoryview(data) if isinstance(data, bytearray) else data


def wall_ms(seconds: float) -> int:
    """Unix ms, rounded down: a deadline stored a fraction early is never served late."""
    return math.floor(seconds * 1000)


def encode(item: Item) -> dict[str, str]:
    fields = {
        "sha256": item.sha256,
        "size": str(item.size),
        "media_type": item.media_type,
        "width": str(item.width),
        "height": str(item.height),
        "frames": str(item.frames),
        "created_ms": str(wall_ms(item.created_wall)),
        "deadline_ms": str(wall_ms(item.deadline_wall)),
        "reads": str(item.reads),
        "source": item.source,
    }
    if item.reads_left is not None:
        fields["max_reads"] = str(item.reads + item.reads_left)
    if item.source_host is not None:
        fields["source_host"] = item.source_host
    if item.pdq is not None:
        fields["pdq"] = item.pdq
        fields["pdq_quality"] = str(item.pdq_quality)
    return fields


def decode(
    item_id: str, fields: Mapping[str, str], clock: Clock, local: tuple[float, float] | None
) -> Item:
    """`local` is (created, deadline) on this node's monotonic clock when this node stored
    the item: exact, where a conversion from wall ms would carry rounding."""
    created_wall = int(fields["created_ms"]) / 1000
    deadline_wall = int(fields["deadline_ms"]) / 1000
    if local is not None:
        created, deadline = local
    else:
        offset = clock.monotonic() - clock.wall()
        created, deadline = created_wall + offset, deadline_wall + offset
    reads = int(fields.get("reads", "0"))
    max_reads = fields.get("max_reads")
    pdq_quality = fields.get("pdq_quality")
    return Item(
        id=item_id,
        sha256=fields["sha256"],
        size=int(fields["size"]),
        media_type=fields["media_type"],
        width=int(fields["width"]),
        height=int(fields["height"]),
        frames=int(fields.get("frames", "1")),
        created=created,
        deadline=deadline,
        created_wall=created_wall,
        deadline_wall=deadline_wall,
        reads_left=None if max_reads is None else max(0, int(max_reads) - reads),
        source=fields.get("source", "upload"),
        source_host=fields.get("source_host"),
        pdq=fields.get("pdq"),
        pdq_quality=None if pdq_quality is None else int(pdq_quality),
        reads=reads if max_reads is None else min(reads, int(max_reads)),
    )

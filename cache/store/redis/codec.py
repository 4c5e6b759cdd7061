"""What goes into Redis and comes back: an item's metadata as a hash, replies as text.

A read count is the hash's `reads` (HINCRBY: each reader gets its own ordinal) and a read
limit is `max_reads`, never changed: `reads_left` is their difference, so a read needs no
script (see `batching.Batches.read`).

Times in Redis are wall-clock Unix ms: a monotonic reading means nothing on another
machine. Read back on a node, they become that node's monotonic times again, so the rest of
the service (lag, residency, `Item.ttl`) works as with a local store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ...clock import Clock
from ...item import Item


def text(value: object) -> str:
    """A reply (bytes from redis-py, or anything else) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


# The metadata fields a read or a listing asks for (HMGET), in this order.
FIELDS = (
    "deadline_ms",
    "max_reads",
    "reads",
    "sha256",
    "size",
    "media_type",
    "width",
    "height",
    "frames",
    "created_ms",
    "source",
    "source_host",
    "pdq",
    "pdq_quality",
)


def fields_of(values: Sequence[object]) -> dict[str, str]:
    """HMGET's values of FIELDS (nil for a field the item lacks) -> {field: value}."""
    return {name: text(v) for name, v in zip(FIELDS, values, strict=True) if v is not None}


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

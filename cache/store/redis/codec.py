"""An item's metadata as a Redis hash, and back.

Times in Redis are wall-clock Unix ms: a monotonic reading means nothing on another
machine. Read back on a node, they become that node's monotonic times again, so the rest of
the service (lag, residency, `Item.ttl`) works as with a local store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...clock import Clock
from ...item import ImageFacts, Item, new_id


def wall_ms(seconds: float) -> int:
    """Unix ms, rounded down: a deadline stored a fraction early is never served late."""
    return math.floor(seconds * 1000)


def new_item(
    clock: Clock,
    facts: ImageFacts,
    ttl: float,
    max_reads: int | None,
    source: str,
    source_host: str | None,
) -> Item:
    """A new item, stored now: monotonic times for this node, wall times for every node."""
    now, wall = clock.monotonic(), clock.wall()
    return Item(
        id=new_id(),
        sha256=facts.sha256,
        size=facts.size,
        media_type=facts.media_type,
        width=facts.width,
        height=facts.height,
        frames=facts.frames,
        created=now,
        deadline=now + ttl,
        created_wall=wall,
        deadline_wall=wall + ttl,
        reads_left=max_reads,
        source=source,
        source_host=source_host,
    )


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
        fields["reads_left"] = str(item.reads_left)
    if item.source_host is not None:
        fields["source_host"] = item.source_host
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
    reads_left = fields.get("reads_left")
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
        reads_left=None if reads_left is None else max(0, int(reads_left)),
        source=fields.get("source", "upload"),
        source_host=fields.get("source_host"),
        reads=int(fields.get("reads", "0")),
    )

"""The index of held items, their deadlines, and the accounting of what is held.

The store decides *when* bytes go; the backend holds and destroys them. Deadlines sit in a
heap, so finding what expired costs what expired, not what is stored. An item leaves the
index before its bytes are destroyed, so nothing can be served while a release is under way.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from ...clock import Clock, wall_of
from ...errors import CacheFull, NotFound, ServiceUnavailable
from ...item import ImageFacts, Item, is_valid_id, new_id
from ...proof.audit import AuditLog
from ...proof.metrics import Metrics
from ..api import Capacity, Receipt
from .backend import Backend

# Stale heap entries (items deleted before their deadline) are dropped lazily; once they
# outnumber live ones by this much, the heap is rebuilt so memory stays bounded.
_HEAP_SLACK = 1024


class Store:
    """The in-process index, for backends that one process owns (memory, tmpfs)."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        metrics: Metrics,
        audit: AuditLog,
        capacity: Capacity,
        grace: float,
    ) -> None:
        self.backend = backend
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._capacity = capacity
        self._grace = grace
        self._items: dict[str, Item] = {}  # insertion order == creation order: oldest first
        self._heap: list[tuple[float, str]] = []
        self._bytes = 0
        self._reserved_bytes = 0
        self._reserved_items = 0
        self._pending: set[str] = set()
        self._closed = False
        self._deadline_listeners: list[Callable[[float], None]] = []
        metrics.watch_oldest_age(self.oldest_age)

    # -- reading state -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def oldest_age(self) -> float:
        oldest = next(iter(self._items.values()), None)
        return 0.0 if oldest is None else max(0.0, self._clock.monotonic() - oldest.created)

    def earliest_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] not in self._items:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    async def list_items(self, sha256: str | None = None) -> list[Item]:
        """Items held, oldest first (all of them, or those with one hash).

        A scan, not an index: it serves ops calls only, and a per-hash index would cost
        every item some 300 bytes.
        """
        items = self._items.values()
        return list(items) if sha256 is None else [it for it in items if it.sha256 == sha256]

    async def meta(self, item_id: str) -> Item:
        return self.live(item_id)

    def on_new_deadline(self, listener: Callable[[float], None]) -> None:
        """`listener(deadline)` runs after every insert: the expiry timer re-arms on it."""
        self._deadline_listeners.append(listener)

    def live(self, item_id: str) -> Item:
        """The item if it may still be served; a missing, expired or odd id is one 404."""
        item = self._items.get(item_id) if is_valid_id(item_id) else None
        if item is None:
            raise NotFound()
        if self._clock.monotonic() >= item.deadline:
            self._metrics.expired_reads_refused.inc()
            raise NotFound()
        return item

    # -- writing -------------------------------------------------------------------------
    async def put(
        self,
        data: bytes | bytearray | memoryview,
        facts: ImageFacts,
        ttl: float,
        max_reads: int | None,
        source: str,
        source_host: str | None = None,
    ) -> Item:
        self._reserve(facts.size)
        item_id = new_id()
        self._pending.add(item_id)
        try:
            await self.backend.put(item_id, data)
        finally:
            self._pending.discard(item_id)
            self._reserved_bytes -= facts.size
            self._reserved_items -= 1
        if self._closed:  # shutdown began while the bytes were being written
            await self.backend.delete(item_id)
            raise ServiceUnavailable("shutting down")
        now = self._clock.monotonic()
        item = Item(
            id=item_id,
            sha256=facts.sha256,
            size=facts.size,
            media_type=facts.media_type,
            width=facts.width,
            height=facts.height,
            frames=facts.frames,
            created=now,
            deadline=now + ttl,
            created_wall=wall_of(self._clock, now),
            deadline_wall=wall_of(self._clock, now + ttl),
            reads_left=max_reads,
            source=source,
            source_host=source_host,
        )
        self._index(item)
        self._metrics.stored.labels(source).inc()
        self._audit.stored(item, ttl, max_reads)
        for listener in self._deadline_listeners:
            listener(item.deadline)
        return item

    def has_room(self, size: int) -> bool:
        return (
            not self._closed
            and len(self._items) + self._reserved_items < self._capacity.max_items
            and self._bytes + self._reserved_bytes + size <= self._capacity.max_bytes
        )

    def _reserve(self, size: int) -> None:
        if self._closed:
            raise ServiceUnavailable("shutting down")
        if not self.has_room(size):
            earliest = self.earliest_deadline()
            wait = 1.0 if earliest is None else earliest - self._clock.monotonic()
            raise CacheFull("the cache is full; retry after the earliest deadline", wait)
        self._reserved_bytes += size
        self._reserved_items += 1

    def _index(self, item: Item) -> None:
        self._items[item.id] = item
        heapq.heappush(self._heap, (item.deadline, item.id))
        self._bytes += item.size
        self._set_occupancy()

    def _unindex(self, items: list[Item]) -> None:
        for item in items:
            del self._items[item.id]
            self._bytes -= item.size
        if len(self._heap) > 2 * len(self._items) + _HEAP_SLACK:
            self._heap = [(it.deadline, it.id) for it in self._items.values()]
            heapq.heapify(self._heap)
        self._set_occupancy()

    def _set_occupancy(self) -> None:
        self._metrics.items.set(len(self._items))
        self._metrics.bytes.set(self._bytes)

    # -- reads ---------------------------------------------------------------------------
    async def read(self, item_id: str, count: bool = True) -> tuple[Item, bytes]:
        """The bytes of a live item; the read that uses the last `max_reads` purges it.

        `count=False` (thumbnails) serves without using up a read.
        """
        item = self.live(item_id)
        if count and item.reads_left is not None:
            if item.reads_left <= 0:  # the last read is being served right now
                raise NotFound()
            item.reads_left -= 1  # before any await: concurrent readers cannot overdraw
        data = await self.backend.get(item_id)
        if data is None or item.id not in self._items:
            raise NotFound()
        if self._clock.monotonic() >= item.deadline:
            self._metrics.expired_reads_refused.inc()
            raise NotFound()
        if count:
            item.reads += 1
            self._metrics.reads.inc()
            self._audit.emit("read", id=item.id, reads_left=item.reads_left)
            if item.reads_left == 0:
                await self._release(item, "read_limit")
        return item, data

    # -- releases ------------------------------------------------------------------------
    async def _release(self, item: Item, reason: str) -> Receipt:
        return (await self._release_many([item], reason))[0]

    async def _release_many(self, items: list[Item], reason: str) -> list[Receipt]:
        """Unindex first (from then on nobody can find them), destroy the bytes in one
        backend call, then record: one audit write and one gauge update per batch."""
        if not items:
            return []
        self._unindex(items)
        if len(items) == 1:
            await self.backend.delete(items[0].id)
        else:
            await self.backend.delete_many([item.id for item in items])
        now = self._clock.monotonic()
        purged_at = round(wall_of(self._clock, now), 6)
        receipts = [
            Receipt(
                id=item.id,
                sha256=item.sha256,
                size=item.size,
                stored_at=round(item.created_wall, 6),
                purged_at=purged_at,
                reason=reason,
                lag_ms=round((now - item.deadline) * 1000, 3),
            )
            for item in items
        ]
        lags = [now - item.deadline for item in items]
        self._metrics.record_releases(reason, lags, [now - item.created for item in items])
        if reason == "ttl":
            late = sum(1 for lag in lags if lag > self._grace)
            if late:
                self._metrics.ttl_violations.inc(late)
        self._audit.emit_many(
            "purged",
            [
                {
                    "id": r.id,
                    "sha256": r.sha256,
                    "size": r.size,
                    "reason": reason,
                    "lag_ms": r.lag_ms,
                    "residency_ms": round((now - item.created) * 1000, 3),
                }
                for r, item in zip(receipts, items, strict=True)
            ],
        )
        return receipts

    async def delete(self, item_id: str, reason: str = "delete") -> Receipt | None:
        """Release one item; None (a 404) when it is unknown or already past its deadline."""
        item = self._items.get(item_id) if is_valid_id(item_id) else None
        if item is None:
            return None
        if self._clock.monotonic() >= item.deadline:
            await self._release(item, "ttl")  # it was due: the purge is the TTL's, not ours
            return None
        return await self._release(item, reason)

    async def purge_expired(self) -> list[Receipt]:
        """Release every item whose deadline has passed; cost is what expired, plus stale."""
        now = self._clock.monotonic()
        due: list[Item] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, item_id = heapq.heappop(heap)
            item = self._items.get(item_id)
            if item is not None:
                due.append(item)
        return await self._release_many([it for it in due if it.id in self._items], "ttl")

    async def purge_sha256(self, sha256: str, reason: str = "admin") -> list[Receipt]:
        ids = [item.id for item in await self.list_items(sha256.lower())]
        return [r for r in [await self.delete(item_id, reason) for item_id in ids] if r]

    async def purge_ids(self, ids: list[str], reason: str = "admin") -> list[Receipt]:
        return [r for r in [await self.delete(item_id, reason) for item_id in ids] if r]

    async def purge_all(self, reason: str) -> list[Receipt]:
        receipts = await self._release_many(list(self._items.values()), reason)
        await self.backend.purge_all()  # anything the index never knew of
        return receipts

    async def purge_leftovers(self) -> int:
        """At start-up: destroy whatever a crashed process left in the backend."""
        count = await self.backend.purge_all()
        if count:
            self._metrics.purged.labels("startup").inc(count)
        self._audit.emit("purged", reason="startup", count=count)
        return count

    async def purge_orphans(self) -> int:
        """Destroy bytes that no item owns (e.g. a file written by a process now gone)."""
        orphans = await self.backend.keys() - self._items.keys() - self._pending
        count = 0
        for item_id in orphans:
            if item_id not in self._items and await self.backend.delete(item_id):
                count += 1
        if count:
            self._metrics.purged.labels("orphan").inc(count)
            self._audit.emit("purged", reason="orphan", count=count)
        return count

    async def close(self) -> list[Receipt]:
        """Refuse new items, then purge everything held (reason `shutdown`)."""
        self._closed = True
        return await self.purge_all("shutdown")

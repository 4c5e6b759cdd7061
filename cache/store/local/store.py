"""The local store: an index of held items in this process, bytes in a backend it owns.

The store decides *when* bytes go; the backend (memory or tmpfs) holds and destroys them.
Deadlines sit in one index (`store.deadlines`), so finding what expired costs what expired.
An item leaves the index before its bytes are destroyed, so nothing can be served while a
release is under way.
"""

from __future__ import annotations

from collections.abc import Callable

from ...clock import Clock
from ...errors import CacheFull, NotFound, ServiceUnavailable
from ...item import ImageFacts, Item, is_valid_id, new_item
from ...proof.audit import AuditLog
from ...proof.metrics import Metrics
from ...untracked import untrack
from ..api import Buffer, Capacity, ItemStore, Job, Receipt
from ..deadlines import Deadlines
from ..records import ReleaseRecorder, gone
from .backend import Backend

ORPHAN_SCAN_INTERVAL = 30.0  # a directory listing: cheap, but not every second
ROOM_WALK = 4096  # deadlines walked at most to tell a full cache's Retry-After


def _deadline(item: Item) -> float:
    return item.deadline


class LocalStore(ItemStore):
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        metrics: Metrics,
        audit: AuditLog,
        capacity: Capacity,
        grace: float,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._capacity = capacity
        self._recorder = ReleaseRecorder(clock, metrics, audit, grace)
        self._items: dict[str, Item] = {}  # insertion order == creation order: oldest first
        self._deadlines = Deadlines(self._items, _deadline)
        self._bytes = 0
        self._reserved_bytes = 0
        self._reserved_items = 0
        self._pending: set[str] = set()
        self._closed = False
        self._deadline_listeners: list[Callable[[float], None]] = []
        metrics.watch_oldest_age(self.oldest_age)

    @property
    def backend(self) -> Backend:
        """The bytes' holder, for this package's tools and tests; never on `ItemStore`."""
        return self._backend

    # -- reading state -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def oldest_age(self) -> float:
        oldest = next(iter(self._items.values()), None)
        return 0.0 if oldest is None else max(0.0, self._clock.monotonic() - oldest.created)

    def earliest_deadline(self) -> float | None:
        return self._deadlines.earliest()

    async def list_items(self, sha256: str | None = None) -> list[Item]:
        """A scan, not an index: it serves ops calls only, and a per-hash index would cost
        every item some 300 bytes."""
        items = self._items.values()
        return list(items) if sha256 is None else [it for it in items if it.sha256 == sha256]

    async def meta(self, item_id: str) -> Item:
        return self._live(item_id)

    def on_new_deadline(self, listener: Callable[[float], None]) -> None:
        self._deadline_listeners.append(listener)

    def _live(self, item_id: str) -> Item:
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
        try:
            self._reserve(facts.size)
        except BaseException:
            self._backend.abandon(data)  # handed over and refused: nothing of it stays
            raise
        item = new_item(self._clock, facts, ttl, max_reads, source, source_host)
        untrack(item)  # held for its TTL: kept out of the collector's walk (untracked.py)
        self._pending.add(item.id)
        try:
            await self._backend.put(item.id, data)
        finally:
            self._pending.discard(item.id)
            self._reserved_bytes -= facts.size
            self._reserved_items -= 1
        if self._closed:  # shutdown began while the bytes were being written
            await self._backend.delete(item.id)
            raise ServiceUnavailable("shutting down")
        self._index(item)
        self._metrics.stored.labels(source).inc()
        self._audit.stored(item, ttl, max_reads)
        for listener in self._deadline_listeners:
            listener(item.deadline)
        return item

    def buffer(self, size: int) -> Buffer:
        """The backend's room: pages of its own for the memory backend (see pages.py)."""
        return self._backend.buffer(size)

    def has_room(self, size: int) -> bool:
        return (
            not self._closed
            and len(self._items) + self._reserved_items < self._capacity.max_items
            and self._bytes + self._reserved_bytes + size <= self._capacity.max_bytes
        )

    def room_at(self, size: int) -> float | None:
        """Walks the deadlines in order (at most ROOM_WALK of them: past that, the last
        one walked, a lower bound) until their items' bytes and count leave room."""
        cap, items = self._capacity, self._items
        if size > cap.max_bytes:
            return None
        over_bytes = self._bytes + self._reserved_bytes + size - cap.max_bytes
        over_items = len(items) + self._reserved_items + 1 - cap.max_items
        entries = self._deadlines.in_order(ROOM_WALK)
        at, walked = self._clock.monotonic(), 0
        while over_bytes > 0 or over_items > 0:
            step = next(entries, None)
            if step is None:
                return at if walked == ROOM_WALK else None
            at, item_id = step
            over_bytes -= items[item_id].size
            over_items -= 1
            walked += 1
        return at

    def _reserve(self, size: int) -> None:
        if self._closed:
            raise ServiceUnavailable("shutting down")
        if not self.has_room(size):
            at = self.room_at(size)
            wait = 1.0 if at is None else at - self._clock.monotonic()
            raise CacheFull("the cache is full; retry after the earliest deadline", wait)
        self._reserved_bytes += size
        self._reserved_items += 1

    def _index(self, item: Item) -> None:
        self._items[item.id] = item
        self._deadlines.push(item.deadline, item.id)
        self._bytes += item.size
        self._set_occupancy()

    def _unindex(self, items: list[Item]) -> None:
        for item in items:
            del self._items[item.id]
            self._bytes -= item.size
        self._deadlines.trim()
        self._set_occupancy()

    def _set_occupancy(self) -> None:
        self._metrics.items.set(len(self._items))
        self._metrics.bytes.set(self._bytes)

    # -- reads ---------------------------------------------------------------------------
    async def read(self, item_id: str, count: bool = True) -> tuple[Item, bytes | memoryview]:
        """A counted read claims its place before any await, so concurrent readers cannot
        overdraw `max_reads`; the item is released when the last read is used up and no
        claimed read is still being served (a claimed read never finds its bytes gone)."""
        item = self._live(item_id)
        if count and item.reads_left is not None:
            if item.reads_left <= 0:  # the last read is being served right now
                raise NotFound()
            item.reads_left -= 1
        item.claims += count
        try:
            data = await self._backend.get(item_id)
        finally:
            item.claims -= count
        if data is None or item.id not in self._items:
            raise NotFound()
        if self._clock.monotonic() >= item.deadline:
            self._metrics.expired_reads_refused.inc()
            raise NotFound()
        if count:
            item.reads += 1
            self._metrics.reads.inc()
            self._audit.emit("read", id=item.id, reads_left=item.reads_left)
            if item.reads_left == 0 and item.claims == 0:
                await self._release([item], "read_limit")
        return item, data

    # -- releases ------------------------------------------------------------------------
    async def _release(self, items: list[Item], reason: str) -> list[Receipt]:
        """Unindex first (from then on nobody can find them), destroy the bytes in one
        backend call, then record: one audit write and one gauge update per batch. Each
        item's lag is taken when its own bytes went (a batch of files takes about 20 us a
        file: the batch's end is not every item's release)."""
        if not items:
            return []
        self._unindex(items)
        times = await self._backend.delete_timed([item.id for item in items], self._clock.monotonic)
        return self._recorder.record([gone(item, reason) for item in items], times)

    async def delete(self, item_id: str, reason: str = "delete") -> Receipt | None:
        item = self._items.get(item_id) if is_valid_id(item_id) else None
        if item is None:
            return None
        if self._clock.monotonic() >= item.deadline:
            await self._release([item], "ttl")  # it was due: the purge is the TTL's, not ours
            return None
        return (await self._release([item], reason))[0]

    async def purge_expired(self) -> list[Receipt]:
        self._backend.settle()
        due = self._deadlines.pop_due(self._clock.monotonic())
        items = self._items
        return await self._release([items[item_id] for _, item_id in due], "ttl")

    async def purge_sha256(self, sha256: str, reason: str = "admin") -> list[Receipt]:
        ids = [item.id for item in await self.list_items(sha256.lower())]
        return await self.purge_ids(ids, reason)

    async def purge_ids(self, ids: list[str], reason: str = "admin") -> list[Receipt]:
        return [r for r in [await self.delete(item_id, reason) for item_id in ids] if r]

    async def purge_all(self, reason: str) -> list[Receipt]:
        receipts = await self._release(list(self._items.values()), reason)
        await self._backend.purge_all()  # anything the index never knew of
        return receipts

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.purge_leftovers()

    def jobs(self) -> list[Job]:
        return [Job(ORPHAN_SCAN_INTERVAL, self.purge_orphans, "orphans")]

    async def purge_leftovers(self) -> int:
        """At start-up: destroy whatever a crashed process left in the backend."""
        count = await self._backend.purge_all()
        if count:
            self._metrics.purged.labels("startup").inc(count)
        self._audit.emit("purged", reason="startup", count=count)
        return count

    async def purge_orphans(self) -> int:
        """Destroy every entry that no item owns, whatever its name (a file written by a
        process now gone, or planted); the backend empties the service's TMPDIR too. The
        owners are read after the listing: an item being written is pending by then."""
        orphans = await self._backend.entries() - self._items.keys() - self._pending
        count = await self._backend.destroy_orphans(orphans)
        if count:
            self._metrics.purged.labels("orphan").inc(count)
            self._audit.emit("purged", reason="orphan", count=count)
        return count

    async def close(self) -> list[Receipt]:
        if self._closed:
            return []
        self._closed = True
        receipts = await self.purge_all("shutdown")
        await self._backend.close()
        return receipts

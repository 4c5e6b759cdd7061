"""The store shared by several nodes: Redis holds the items, the deadline index and the
capacity counters, so any node can serve, delete or purge any item.

Each node keeps an exact timer for the items it stored (`ownership`: a heap on its
monotonic clock); its sweep also takes due entries from the shared deadline index, so the
items of a node that died are purged by the others. Shared deadlines are wall-clock Unix
ms: monotonic clocks differ between machines. Releases (and counting each one once) are
in `release`, batched Redis work in `batching`, an item's value in `item_value`, an
upload's steps in `uploads`, the shared capacity in `reservations`, talking to a Redis
that may be gone in `link`, key names in `keys`, Lua in `scripts`, every constant in
`tuning`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...clock import Clock
from ...errors import NotFound, ServiceUnavailable, StorageUnavailable
from ...item import ImageFacts, Item, is_valid_id, new_item
from ...proof.audit import AuditLog
from ...proof.checks import CheckResult
from ...proof.metrics import Metrics
from ...wipe import zero
from ..api import Capacity, ItemStore, Job, Receipt, SharedLists
from ..records import ReleaseRecorder
from .codec import HEADER_MAX, parse, wall_ms
from .index import indexed_ids, items_of, scanned_ids
from .item_value import ItemValue
from .keys import RedisClient, RedisKeys
from .link import RedisLink
from .ownership import OwnItems
from .persistence import PersistenceWatch
from .release import Releaser
from .reservations import SharedCapacity
from .scripts import EXPIRED, LAST_READ, MISSING
from .sharedlists import RedisSharedLists
from .tuning import (
    EPOCH_CHECK_INTERVAL,
    INDEX_SWEEP_EVERY,
    LEDGER_SCAN_INTERVAL,
    LEDGER_SLACK_MS,
    PERSISTENCE_CHECK_INTERVAL,
    PROBE_TIMEOUT,
    RETRY_DELAY,
    RUN_SECONDS,
    TAKE_CHUNK,
)
from .uploads import Uploads

log = logging.getLogger(__name__)


class RedisStore(ItemStore):
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        clock: Clock,
        metrics: Metrics,
        audit: AuditLog,
        capacity: Capacity,
        grace: float,
        allow_persistence: bool = False,
        persistence_every: float = PERSISTENCE_CHECK_INTERVAL,
    ) -> None:
        self._client = client
        self._keys = keys
        self._persistence = PersistenceWatch(client, metrics, allow_persistence)
        self._persistence_every = persistence_every
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._grace = grace
        self.link = RedisLink(metrics)
        self.link.on_reconnect = self._persistence.recheck_soon
        self._shared_lists: RedisSharedLists | None = None
        self._own = OwnItems()
        self._mine = self._own.times
        self._retry_at = 0.0
        self._next_index_sweep = 0.0
        self._purging = asyncio.Lock()
        self._closed = False
        self._listeners: list[Callable[[float], None]] = []
        recorder = ReleaseRecorder(clock, metrics, audit, grace)
        self._releaser = Releaser(client, keys, clock, metrics, recorder, self._mine, self.link)
        self._scripts = self._releaser.scripts
        self._batches = self._releaser.batches
        self._value = ItemValue(keys, self._batches)
        self._room = SharedCapacity(capacity, self._scripts, self._releaser, clock)
        self._uploads = Uploads(self._room, self._value, self._releaser, grace)
        metrics.watch_oldest_age(self.oldest_age)

    @property
    def client(self) -> RedisClient:
        """For this package's tools and tests; never on `ItemStore`."""
        return self._client

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    def shared_lists(self) -> SharedLists:
        """Admin hash-list entries, shared by every node through Redis."""
        if self._shared_lists is None:
            self._shared_lists = RedisSharedLists(self._client, self._keys, self.link)
        return self._shared_lists

    # -- reading state -------------------------------------------------------------------
    def __len__(self) -> int:
        """Items in the whole shared cache, as last seen (refreshed by every sweep)."""
        return self._releaser.counters.items

    def oldest_age(self) -> float:
        """Age of the oldest item this node stored and still tracks."""
        created = self._own.oldest_created()
        return 0.0 if created is None else max(0.0, self._clock.monotonic() - created)

    def has_room(self, size: int) -> bool:
        return not self._room.hinted_full()

    def earliest_deadline(self) -> float | None:
        earliest = self._own.earliest()
        return None if earliest is None else max(earliest, self._retry_at)

    def on_new_deadline(self, listener: Callable[[float], None]) -> None:
        self._listeners.append(listener)

    async def unready_reason(self) -> str | None:
        """None when Redis answers within a second (it reads the shared counters, so
        `len()` is fresh for `/readyz`) and does not write to disk; otherwise why not."""
        if self._persistence.refusing is not None:
            return f"redis may write items to disk: {self._persistence.refusing}"
        try:
            async with self.link.call("probe"), asyncio.timeout(PROBE_TIMEOUT):
                counters = await self._releaser.read_counters()
        except StorageUnavailable:
            return f"redis unreachable: {self.link.last_error or 'no answer'}"
        self._releaser.set_counters(counters)
        return None

    async def meta(self, item_id: str) -> Item:
        if not is_valid_id(item_id):
            raise NotFound()
        async with self.link.call("meta"):
            raw = await self._client.getrange(self._keys.item(item_id), 0, HEADER_MAX - 1)
        fields, _ = parse(raw)
        if not fields:
            raise NotFound()
        item = self._releaser.item(item_id, fields)
        if item.reads_left == 0:
            raise NotFound()  # its last read was served; that reader deletes it
        if self._releaser.now_ms() >= wall_ms(item.deadline_wall):
            self._metrics.expired_reads_refused.inc()
            raise NotFound()
        return item

    async def list_items(self, sha256: str | None = None) -> list[Item]:
        """Items held by any node (all, or those with one hash), oldest first."""
        async with self.link.call("list"):
            ids = await self._ids(sha256)
            return await items_of(self._client, self._keys, self._releaser, ids)

    async def _ids(self, sha256: str | None) -> list[str]:
        return await indexed_ids(self._client, self._keys, sha256)

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
            item = new_item(self._clock, facts, ttl, max_reads, source, source_host)
            await self._write(item, data)
        finally:
            if isinstance(data, bytearray):
                zero(data)  # Redis holds the bytes now, or nothing was kept
        self._own.add(item)
        self._metrics.stored.labels(source).inc()
        self._audit.stored(item, ttl, max_reads)
        for listener in self._listeners:
            listener(item.deadline)
        return item

    async def _write(self, item: Item, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ServiceUnavailable("shutting down")
        if self._persistence.refusing is not None:
            raise ServiceUnavailable("the shared storage may write to disk; not storing")
        async with self.link.call("put"):
            await self._uploads.write(item, data)
        if self._closed:  # shutdown began while the bytes were being written
            await self._uploads.unwind(item)
            raise ServiceUnavailable("shutting down")

    def room_at(self, size: int) -> float | None:
        """While a refusal's hint lasts: the deadline its RESERVE walked the shared ledger to
        (the earliest that frees room for that upload)."""
        if self._room.hinted_full():
            return self._room.room_at()
        return super().room_at(size)

    # -- reads ---------------------------------------------------------------------------
    async def read(self, item_id: str, count: bool = True) -> tuple[Item, bytes | memoryview]:
        """The bytes of a live item; the read that uses the last `max_reads` purges it."""
        if not is_valid_id(item_id):
            raise NotFound()
        reads = self._releaser.reads
        reads.started(item_id)
        try:
            async with self.link.call("read"):
                result = await self._value.read(item_id, self._releaser.now_ms(), count)
        finally:
            purged_meanwhile = reads.ended(item_id)
        if result.status == EXPIRED:
            self._metrics.expired_reads_refused.inc()
            raise NotFound()
        if result.status == MISSING or result.meta is None:
            raise NotFound()
        if purged_meanwhile:
            raise NotFound()  # its purged line is written: a read line may not follow it
        item = self._releaser.item(item_id, dict(result.meta))
        if count and result.data is not None:
            self._metrics.reads.inc()
            self._audit.emit("read", id=item.id, reads_left=item.reads_left)
        if result.status == LAST_READ:  # this read had the last ordinal: it deletes the item
            try:
                async with self.link.call("unlink"):
                    await self._releaser.take([item.id], "read_limit", request=True)
            except StorageUnavailable:
                pass  # later readers are refused by their ordinals; the timer purges it
        assert result.data is not None
        return item, result.data

    # -- releases ------------------------------------------------------------------------
    async def delete(self, item_id: str, reason: str = "delete") -> Receipt | None:
        """Release one item; None (a 404) when it is unknown or already past its deadline."""
        receipts = await self.purge_ids([item_id], reason)
        return receipts[0] if receipts else None

    async def purge_ids(self, ids: list[str], reason: str = "admin") -> list[Receipt]:
        valid = list(dict.fromkeys(i for i in ids if is_valid_id(i)))
        async with self.link.call("purge"):
            receipts = await self._releaser.take(valid, reason, request=reason == "delete")
        return [r for r in receipts if r.reason == reason]

    async def purge_sha256(self, sha256: str, reason: str = "admin") -> list[Receipt]:
        async with self.link.call("purge"):
            receipts = await self._releaser.take(await self._ids(sha256.lower()), reason)
        return [r for r in receipts if r.reason == reason]

    async def purge_all(self, reason: str) -> list[Receipt]:
        """Every item of every node: the index, plus any item keys a SCAN finds."""
        async with self.link.call("purge"):
            ids = set(await self._ids(None)) | await scanned_ids(self._client, self._keys)
            return await self._releaser.take(sorted(ids), reason)

    async def purge_expired(self) -> list[Receipt]:
        """This node's due items first (exact), then due entries of the shared index. One
        at a time per node: the timer and the sweep would otherwise take the same batch."""
        async with self._purging:
            return await self._purge_due()

    async def _purge_due(self) -> list[Receipt]:
        """This node's due items, batch after batch while more fall due, for RUN_SECONDS
        (short: the receipts of a run die young, never reaching the GC's oldest generation;
        the re-armed timer goes on at once); then the shared index (other nodes' items, a
        backstop) when nothing of ours was due, else every INDEX_SWEEP_EVERY seconds."""
        now = self._clock.monotonic()
        run = self._own.due_run(self._clock, RUN_SECONDS, TAKE_CHUNK)
        try:
            async with self.link.call("sweep"):
                receipts = await self._releaser.take_due(run.next)
                busy = bool(run.popped)
                if not busy or now >= self._next_index_sweep:
                    self._next_index_sweep = now + INDEX_SWEEP_EVERY
                    receipts += await self._releaser.sweep_index(busy)
        except BaseException as exc:
            run.restore()  # retried once Redis answers; Redis's PX is the backstop
            if not isinstance(exc, StorageUnavailable):
                raise
            self._retry_at = now + RETRY_DELAY
            return []
        self._retry_at = 0.0
        return receipts

    async def purge_leftovers(self) -> int:
        """At start-up: only what is due. The rest are live items that other nodes serve."""
        return len(await self.purge_expired())

    async def purge_orphans(self) -> int:
        """The ledger scan: reservations past deadline + grace + clock slack (see
        `Releaser.scan_ledger`)."""
        cutoff = self._releaser.now_ms() - wall_ms(self._grace) - LEDGER_SLACK_MS
        try:
            async with self.link.call("orphans"):
                await self._releaser.scan_ledger(cutoff)
        except StorageUnavailable:
            pass  # the next scan does it
        return 0

    async def start(self) -> None:
        """Refuse a Redis that writes to disk (unless allowed), then purge what is due."""
        await self._persistence.start()
        await self._releaser.lost.adopt()
        await self.purge_leftovers()

    def jobs(self) -> list[Job]:
        return [
            Job(LEDGER_SCAN_INTERVAL, self.purge_orphans, "orphans"),
            Job(self._persistence_every, self._persistence.check, "redis_persistence"),
            Job(EPOCH_CHECK_INTERVAL, self.watch_lost, "redis_lost"),
        ]

    async def watch_lost(self) -> int:
        """Whether Redis came back empty (`lost.LostWatch`): lost lines for this node's
        items that went with it."""
        try:
            async with self.link.call("lost"):
                return await self._releaser.lost.check_epoch()
        except StorageUnavailable:
            return 0  # the next check does it, once Redis answers

    async def check_persistence(self) -> None:
        """Re-check now that Redis does not write to disk (`persistence.PersistenceWatch`)."""
        await self._persistence.check()

    def guarantee_checks(self) -> list[CheckResult]:
        result = self._persistence.result
        return [] if result is None else [result]

    async def close(self) -> list[Receipt]:
        """Refuse new items, then purge the items this node stored (reason `shutdown`).
        Items of other nodes stay: those nodes serve them and purge them on time."""
        if self._closed:
            return []
        self._closed = True
        receipts: list[Receipt] = []
        try:
            async with self.link.call("shutdown"):
                receipts = await self._releaser.take(list(self._mine), "shutdown")
        except StorageUnavailable:
            log.warning("shutdown purge failed: Redis drops the items at deadline + grace")
        await self._batches.close()
        await self._client.aclose()
        return receipts

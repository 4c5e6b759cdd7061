"""Releasing shared items: delete the keys, count each purge once, clean the indexes.

Counting once rests on two answers that Redis gives to exactly one caller: the DEL inside
the TAKE scripts (that node records the purge: metrics, audit line, receipt) and the ZREM
of the ledger inside RELEASE or UNLINK_MANY (that call gives the capacity back). Both run
a batch at a time (`redis_batch`): a purge of thousands of items is a few round trips.
The node whose TAKE deleted an item releases its capacity. A reservation that no TAKE
confirms (Redis's PX dropped the keys first, or a node died mid-put or mid-purge) is
released by the ledger scan once it is stale, and counted apart
(`cache_unconfirmed_releases_total`): never twice, never lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable

from ...clock import Clock
from ...item import Item, is_valid_id
from ...proof.metrics import Metrics
from ..api import Receipt
from ..records import Gone, ReleaseRecorder, gone
from .batching import Batches, Taken, TakeResult
from .codec import decode, text, wall_ms
from .keys import RedisClient, RedisKeys
from .link import RedisLink
from .lost import LostWatch
from .ownership import Mine
from .scripts import Counters, Scripts, member, parse_member
from .tuning import (
    BUSY_SLACK_MS,
    BUSY_SWEEP_BATCH,
    LEDGER_BATCH,
    RELEASE_CHUNK,
    SWEEP_BATCH,
    TAKE_CHUNK,
)

log = logging.getLogger(__name__)


class Releaser:
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        clock: Clock,
        metrics: Metrics,
        recorder: ReleaseRecorder,
        mine: dict[str, Mine],
        link: RedisLink,
    ) -> None:
        self._client = client
        self._keys = keys
        self.batches = self._batches = Batches(client, keys)
        self.scripts = self._scripts = Scripts(client, keys, self._batches.wire)
        self._clock = clock
        self._metrics = metrics
        self._recorder = recorder
        self._mine = mine  # the store's: items this node stored
        self._link = link
        self.counters = Counters(0, 0)  # the whole cache, as last seen
        self.lost = LostWatch(client, keys, clock, recorder, mine)
        self.reads = ReadsInFlight()

    def set_counters(self, counters: Counters, released: int = 0) -> None:
        """`counters.items` -1 (a release of one item does not read it): what was last
        seen, less `released`."""
        if counters.items < 0:
            counters = Counters(counters.bytes, max(0, self.counters.items - released))
        self.counters = counters
        self._metrics.items.set(counters.items)
        self._metrics.bytes.set(counters.bytes)

    def now_ms(self) -> int:
        return wall_ms(self._clock.wall())

    def item(self, item_id: str, fields: dict[str, str]) -> Item:
        mine = self._mine.get(item_id)
        return decode(item_id, fields, self._clock, None if mine is None else mine[:2])

    def record(self, item: Item, reason: str) -> Receipt:
        """Metrics, audit line and receipt for one item that this node deleted."""
        self._mine.pop(item.id, None)
        return self._recorder.record([gone(item, reason)])[0]

    def _gone(self, taken: list[Taken], reason: str, now_ms: int) -> list[Gone]:
        """Each item with its times on this node's monotonic clock (exact for the items it
        stored, converted from wall ms for the others) and its reason: `ttl` when it was
        due at `now_ms`, when its TAKE was sent."""
        offset = self._clock.monotonic() - self._clock.wall()
        mine, released = self._mine, []
        for t in taken:
            created_wall = t.created_ms / 1000
            local = mine.get(t.id)
            if local is not None:
                created, deadline = local[0], local[1]
            else:
                created, deadline = created_wall + offset, t.deadline_ms / 1000 + offset
            why = "ttl" if now_ms >= t.deadline_ms else reason
            released.append((t.id, t.sha256, t.size, created_wall, created, deadline, why))
        return released

    async def _settle(
        self, now_ms: int, result: TakeResult, reason: str, record: bool, at: float | None = None
    ) -> list[Receipt]:
        """After a TAKE (sent at `now_ms`, answered at `at`, default now): record what this
        node deleted, then the index and capacity updates (on one server TAKE_MANY made them
        already). Raises the TAKE's failure after cleaning up what did succeed."""
        released = self._gone(result.taken, reason, now_ms) if record else []
        receipts = self._recorder.record(released, at)
        self.reads.purged(result.taken)
        mine = self._mine
        missing = self._missing(result) if record else set()
        for item_id in result.done:
            if item_id not in missing:
                mine.pop(item_id, None)
        if result.counters is not None:
            self.set_counters(result.counters, len(result.taken))
        else:
            await self.unlink([member(t.id, t.size) for t in result.taken])
        if missing:
            await self._lost(missing)
        if result.failure is not None:
            raise result.failure
        return receipts

    def _missing(self, result: TakeResult) -> set[str]:
        """Items of this node that the TAKE found gone (taken by another node, or lost)."""
        if len(result.taken) == len(result.done):
            return set()
        taken = {t.id for t in result.taken}
        mine = self._mine
        return {i for i in result.done if i in mine and i not in taken}

    async def _lost(self, missing: set[str]) -> None:
        try:
            lost = await self.lost.missing(sorted(missing))
            if lost:  # released here: no node's TAKE confirmed them
                self._metrics.unconfirmed_releases.inc(lost)
            if self.lost.counters is not None:
                self.set_counters(self.lost.counters)
        finally:
            for item_id in missing:
                self._mine.pop(item_id, None)

    async def take(
        self, ids: list[str], reason: str, record: bool = True, request: bool = False
    ) -> list[Receipt]:
        """Delete items by id, a batch at a time; each one this node deleted gets a receipt
        (`ttl` when it was already due). `request`: a client's DELETE (`Batches.take`)."""
        receipts: list[Receipt] = []
        mine = self._mine.get(ids[0]) if request and len(ids) == 1 else None
        if mine is not None and self._batches.wire is not None:  # one server, ours: 4 calls
            now_ms = self.now_ms()
            result = await self._batches.take_known(ids[0], mine)
            return await self._settle(now_ms, result, reason, record)
        for start in range(0, len(ids), TAKE_CHUNK):
            now_ms = self.now_ms()
            result = await self._batches.take(ids[start : start + TAKE_CHUNK], request)
            receipts += await self._settle(now_ms, result, reason, record)
        return receipts

    async def take_due(self, next_due: Callable[[], list[str]]) -> list[Receipt]:
        """Take batch after batch from `next_due` (due ids, [] when there are no more).
        Each next batch is sent before the last one is recorded, so Redis runs its TAKE
        meanwhile: a purge keeps up with the slower of Redis and this node, not their sum."""
        receipts: list[Receipt] = []
        async with self._batches.stream() as stream:
            ids = next_due()
            now_ms = self.now_ms()
            await stream.send(ids)
            while ids:
                result = await stream.result()
                sent_ms, at = now_ms, self._clock.monotonic()
                try:
                    ids = next_due()
                    now_ms = self.now_ms()
                    await stream.send(ids)
                finally:  # what a TAKE deleted is recorded, whatever fails after it
                    try:
                        receipts += await self._settle(sent_ms, result, "ttl", True, at)
                    except BaseException:
                        if stream.pending:  # the batch in flight: record what it took
                            with contextlib.suppress(Exception):
                                await self._settle(now_ms, await stream.result(), "ttl", True)
                        raise
        return receipts

    async def unlink(self, taken: list[str]) -> None:
        """Give back the capacity of the items this node deleted (`taken`: their ledger
        members), and with it their deadline-index entries (the ledger is the index).
        Idempotent. One round trip."""
        counters = await self._batches.unlink(taken)
        if counters is not None:
            self.set_counters(counters, len(taken))

    async def release(self, members: list[str]) -> int:
        """Give back the reservations `members`; how many were still reserved."""
        released = 0
        for start in range(0, len(members), RELEASE_CHUNK):
            chunk = members[start : start + RELEASE_CHUNK]
            counters, count = await self._scripts.release(chunk)
            self.set_counters(counters, count)
            released += count
        return released

    async def read_counters(self) -> Counters:
        """The whole cache's bytes and items, read from Redis."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hget(self._keys.counters, "bytes")
        pipe.zcard(self._keys.ledger)
        held, items = await pipe.execute()
        return Counters(int(held or 0), int(items))

    async def sweep_index(self, busy: bool = False) -> list[Receipt]:
        """Take the due entries of the shared deadline index, except this node's own: its
        exact timer takes those. `busy` (its own items are falling due): one short round,
        of entries due a while ago, so that the timer's work is never held up by reading
        back thousands of its own entries."""
        slack_ms, batch = (BUSY_SLACK_MS, BUSY_SWEEP_BATCH) if busy else (0, SWEEP_BATCH)
        receipts: list[Receipt] = []
        while True:
            cutoff = self.now_ms() - slack_ms
            pipe = self._client.pipeline(transaction=False)
            pipe.zrangebyscore(self._keys.ledger, "-inf", cutoff, start=0, num=batch)
            pipe.hget(self._keys.counters, "bytes")
            pipe.zcard(self._keys.ledger)
            entries, held, items = await pipe.execute()
            self.set_counters(Counters(int(held or 0), int(items)))
            mine = self._mine
            due = sorted(i for i in valid_ids(entries) if i not in mine)
            if not due:
                return receipts
            taken = await self.take(due, "ttl")
            receipts += taken
            # Entries whose keys had gone stay in the ledger (its scan releases them): a
            # round that took nothing would read them again, so it is the last.
            if busy or len(entries) < batch or not taken:
                return receipts

    async def scan_ledger(self, cutoff_ms: int) -> int:
        """Reservations with deadlines before `cutoff_ms`: an item still there is purged
        (late: a TTL violation); the rest had no TAKE to confirm them (Redis's PX dropped
        the keys first, or a node died mid-put): released and counted apart."""
        ledger = self._keys.ledger
        stale = await self._client.zrangebyscore(
            ledger, "-inf", cutoff_ms, start=0, num=LEDGER_BATCH
        )
        entries = [m for m in stale if isinstance(m, bytes | str)]
        members = sorted(text(m) for m in entries if is_valid_id(parse_member(m)[0]))
        await self.take(sorted(valid_ids(entries)), "ttl")
        released = await self.lost.release(members)  # their keys went unseen: lost
        self.lost.record(released)
        if self.lost.counters is not None:
            self.set_counters(self.lost.counters)
        unconfirmed = len(released)
        if unconfirmed:
            self._metrics.unconfirmed_releases.inc(unconfirmed)
            log.warning(
                "released %d reservations that no node purged: Redis's PX backstop dropped "
                "them (no node purged in time) or a node died mid-put",
                unconfirmed,
            )
        return unconfirmed


class ReadsInFlight:
    """Reads this node has sent to Redis and not yet answered, so that a `read` line is
    never written after the item's `purged` line: a purge this node records while a read's
    reply is on its way marks the read, which then answers 404 (`RedisStore.read`)."""

    def __init__(self) -> None:
        self._reading: dict[str, int] = {}
        self._purged: set[str] = set()

    def started(self, item_id: str) -> None:
        self._reading[item_id] = self._reading.get(item_id, 0) + 1

    def purged(self, taken: list[Taken]) -> None:
        reading = self._reading
        if reading:
            self._purged.update(t.id for t in taken if t.id in reading)

    def ended(self, item_id: str) -> bool:
        """True when the item was purged (its line written) while this read was out."""
        left = self._reading[item_id] - 1
        if left:
            self._reading[item_id] = left
            return item_id in self._purged
        del self._reading[item_id]
        if item_id in self._purged:
            self._purged.discard(item_id)
            return True
        return False


def valid_ids(members: Iterable[bytes | str]) -> set[str]:
    """The ids of ledger members that could be ids (anything else never becomes a key)."""
    return {i for i in (parse_member(m)[0] for m in members) if is_valid_id(i)}

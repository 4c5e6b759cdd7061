"""Releasing shared items: delete the keys, count each purge once, clean the indexes.

Counting once rests on two answers that Redis gives to exactly one caller: the DEL inside
the TAKE script (that node records the purge: metrics, audit line, receipt) and the ZREM
inside the RELEASE script (that call gives the capacity back). The node whose TAKE deleted
an item releases its capacity. A reservation that no TAKE confirms (Redis's PX dropped the
keys first, or a node died mid-put or mid-purge) is released by the ledger scan once it is
stale, and counted apart (`cache_unconfirmed_releases_total`): never twice, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from .audit import AuditLog
from .backends.redis import RedisBackend
from .clock import Clock, wall_of
from .item import Item, is_valid_id
from .metrics import Metrics
from .redis_calls import RedisLink, gather_bounded
from .redis_meta import decode, wall_ms
from .redis_scripts import Counters, Scripts
from .store_api import Receipt

log = logging.getLogger(__name__)
SWEEP_BATCH = 500  # due entries taken per index shard per round
RELEASE_CHUNK = 1000
LEDGER_BATCH = 10_000  # stale reservations handled per ledger scan


@dataclass(frozen=True, slots=True)
class Mine:
    """An item this node stored: its times on this node's monotonic clock."""

    created: float
    deadline: float


class Releaser:
    def __init__(
        self,
        backend: RedisBackend,
        clock: Clock,
        metrics: Metrics,
        audit: AuditLog,
        grace: float,
        mine: dict[str, Mine],
        link: RedisLink,
    ) -> None:
        self._client = backend.client
        self._keys = backend.layout
        self.scripts = self._scripts = Scripts(backend.client, backend.layout)
        self._clock = clock
        self._metrics = metrics
        self._audit = audit
        self._grace = grace
        self._mine = mine  # the store's: items this node stored
        self._link = link
        self.counters = Counters(0, 0)  # the whole cache, as last seen

    def set_counters(self, counters: Counters) -> None:
        self.counters = counters
        self._metrics.items.set(counters.items)
        self._metrics.bytes.set(counters.bytes)

    def now_ms(self) -> int:
        return wall_ms(self._clock.wall())

    def item(self, item_id: str, fields: dict[str, str]) -> Item:
        mine = self._mine.get(item_id)
        return decode(item_id, fields, self._clock, None if mine is None else astuple(mine))

    def record(self, item: Item, reason: str) -> Receipt:
        """Metrics, audit line and receipt for one item that this node deleted."""
        self._mine.pop(item.id, None)
        now = self._clock.monotonic()
        lag = now - item.deadline
        if reason == "ttl" and lag > self._grace:
            self._metrics.ttl_violations.inc()
        self._metrics.record_release(reason, lag, now - item.created)
        receipt = Receipt(
            id=item.id,
            sha256=item.sha256,
            size=item.size,
            stored_at=round(item.created_wall, 6),
            purged_at=round(wall_of(self._clock, now), 6),
            reason=reason,
            lag_ms=round(lag * 1000, 3),
        )
        self._audit.emit(
            "purged",
            id=item.id,
            sha256=item.sha256,
            size=item.size,
            reason=reason,
            lag_ms=receipt.lag_ms,
            residency_ms=round((now - item.created) * 1000, 3),
        )
        return receipt

    async def take(self, ids: list[str], reason: str, record: bool = True) -> list[Receipt]:
        """Delete items by id; each one this node deleted gets a receipt (`ttl` when it was
        already due). Raises the first Redis failure after cleaning up what did succeed."""
        now_ms = self.now_ms()
        results = await gather_bounded(self._scripts.take, ids, self._link.fanout)
        receipts: list[Receipt] = []
        taken: list[Item] = []
        done: list[str] = []
        failure: BaseException | None = None
        for item_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            done.append(item_id)
            if result is not None:
                item = self.item(item_id, result)
                taken.append(item)
                if record:
                    due = now_ms >= wall_ms(item.deadline_wall)
                    receipts.append(self.record(item, "ttl" if due else reason))
            self._mine.pop(item_id, None)
        await self.unlink(done, taken)
        if failure is not None:
            raise failure
        return receipts

    async def unlink(self, ids: list[str], taken: list[Item]) -> None:
        """Remove the index entries of `ids`, and the hash-set and capacity entries of the
        items this node deleted (`taken`). Idempotent."""
        if not ids:
            return
        by_shard: dict[str, list[str]] = {}
        for item_id in ids:
            by_shard.setdefault(self._keys.shard_of(item_id), []).append(item_id)
        by_sha: dict[str, list[str]] = {}
        for item in taken:
            by_sha.setdefault(self._keys.sha(item.sha256), []).append(item.id)
        pipe = self._client.pipeline(transaction=False)
        for shard, members in by_shard.items():
            pipe.zrem(shard, *members)
        for key, members in by_sha.items():
            pipe.srem(key, *members)
        await asyncio.gather(pipe.execute(), self.release([item.id for item in taken]))

    async def release(self, ids: list[str]) -> int:
        """Give back the capacity reserved for `ids`; how many were still reserved."""
        released = 0
        for start in range(0, len(ids), RELEASE_CHUNK):
            counters, count = await self._scripts.release(ids[start : start + RELEASE_CHUNK])
            self.set_counters(counters)
            released += count
        return released

    async def sweep_index(self) -> list[Receipt]:
        """Take every entry of the shared deadline index that is due, whoever stored it."""
        receipts: list[Receipt] = []
        while True:
            pipe = self._client.pipeline(transaction=False)
            for shard in self._keys.shards():
                pipe.zrangebyscore(shard, "-inf", self.now_ms(), start=0, num=SWEEP_BATCH)
            pipe.hmget(self._keys.counters, ["bytes", "items"])
            *shards, counters = await pipe.execute()
            self.set_counters(Counters(int(counters[0] or 0), int(counters[1] or 0)))
            due = sorted(valid_ids(m for shard in shards for m in shard))
            if not due:
                return receipts
            receipts += await self.take(due, "ttl")
            if all(len(shard) < SWEEP_BATCH for shard in shards):
                return receipts

    async def scan_ledger(self, cutoff_ms: int) -> int:
        """Reservations with deadlines before `cutoff_ms`: an item still there is purged
        (late: a TTL violation); the rest had no TAKE to confirm them (Redis's PX dropped
        the keys first, or a node died mid-put): released and counted apart."""
        ledger = self._keys.ledger
        stale = await self._client.zrangebyscore(
            ledger, "-inf", cutoff_ms, start=0, num=LEDGER_BATCH
        )
        ids = sorted(valid_ids(m for m in stale if isinstance(m, bytes | str)))
        await self.take(ids, "ttl")
        unconfirmed = await self.release(ids)
        if unconfirmed:
            self._metrics.unconfirmed_releases.inc(unconfirmed)
            log.warning(
                "released %d reservations that no node purged: Redis's PX backstop dropped "
                "them (no node purged in time) or a node died mid-put",
                unconfirmed,
            )
        return unconfirmed


def astuple(mine: Mine) -> tuple[float, float]:
    return mine.created, mine.deadline


def valid_ids(members: Iterable[bytes | str]) -> set[str]:
    """Members of an index set that could be ids (anything else never becomes a key)."""
    text = (m.decode() if isinstance(m, bytes) else m for m in members)
    return {m for m in text if is_valid_id(m)}

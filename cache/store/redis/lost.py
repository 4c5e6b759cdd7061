"""Items Redis lost: a `purged` line for every stored id, even one no node purged.

Redis can drop items with no node deleting them: it restarted without its data (it must
not persist), it was flushed, a failover promoted an empty replica, or its PX backstop
dropped keys that no node took in time. The node that stored such an item never wrote
its `purged` line (2 of 2,115 items in a kill test). This node notices in two ways:

- Redis back empty: a token in `keys.epoch`, set once per Redis lifetime (SET NX), is
  read every `EPOCH_CHECK_INTERVAL`; missing or changed, each item of this node whose
  keys are gone is lost.
- Keys missing: when a TAKE (deadline, delete, purge) finds one of this node's items
  gone while its reservation is still in the ledger, no node deleted it (a node's TAKE
  releases the reservation in the same script): it is lost, and its reservation is
  released here. The ledger scan does the same for stale reservations of any node.

Each lost item gets a `purged` line with reason `lost` and counts in
`cache_purged_total{reason="lost"}` (`ReleaseRecorder.lost`). What this cannot tell apart:
on a cluster a TAKE and its release are two steps, and a last read deletes before it
releases; an item another node purged in that gap, or just before Redis came back empty,
is reported lost as well. The log may say that an id went twice, never that it stayed.
"""

from __future__ import annotations

import secrets

from ...clock import Clock
from ..records import Lost, ReleaseRecorder
from .codec import text
from .keys import RedisClient, RedisKeys
from .ownership import Mine
from .scripts import RELEASE_LOST, Counters, member
from .tuning import LOST_CHECK_CHUNK, RELEASE_CHUNK


class LostWatch:
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        clock: Clock,
        recorder: ReleaseRecorder,
        mine: dict[str, Mine],
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._recorder = recorder
        self._mine = mine  # the store's: items this node stored
        self._release_lost = client.register_script(RELEASE_LOST)
        self._epoch: str | None = None
        self.counters: Counters | None = None  # after the last release here

    async def adopt(self) -> None:
        """The epoch this node holds to: the one in Redis, or a new one if there is none."""
        await self._client.set(self._keys.epoch, secrets.token_hex(16), nx=True)
        raw = await self._client.get(self._keys.epoch)
        self._epoch = None if raw is None else text(raw)

    async def check_epoch(self) -> int:
        """Every EPOCH_CHECK_INTERVAL: when Redis lost its data since the last look, each
        item of this node whose keys are gone is lost. -> how many."""
        raw = await self._client.get(self._keys.epoch)
        if raw is not None and text(raw) == self._epoch:
            return 0
        ids = list(self._mine)
        gone: list[str] = []
        for start in range(0, len(ids), LOST_CHECK_CHUNK):
            chunk = ids[start : start + LOST_CHECK_CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for item_id in chunk:
                pipe.exists(self._keys.item(item_id))
            gone += [i for i, held in zip(chunk, await pipe.execute(), strict=True) if not held]
        self._record([(item_id, None) for item_id in gone])
        await self.adopt()
        return len(gone)

    async def missing(self, ids: list[str]) -> int:
        """`ids`: items of this node that a TAKE found gone. Those still reserved went
        with no node's TAKE: lost (their reservations released). -> how many."""
        mine = self._mine
        members = [member(i, mine[i][2]) for i in ids if i in mine]
        return len(self._record(await self.release(members)))

    async def release(self, members: list[str]) -> list[tuple[str, int | None]]:
        """Release the reservations `members` still in the ledger: (id, size) of each."""
        released: list[tuple[str, int | None]] = []
        for start in range(0, len(members), RELEASE_CHUNK):
            reply = await self._release_lost(
                keys=self._keys.capacity, args=members[start : start + RELEASE_CHUNK]
            )
            self.counters = Counters(int(reply[0]), int(reply[1]))
            lines = text(reply[2])
            for line in lines.split("\n") if lines else ():
                item_id, size = line.split(" ")
                released.append((item_id, int(size)))
        return released

    def record(self, released: list[tuple[str, int | None]]) -> list[Lost]:
        """Items of any node that went unseen (the ledger scan): lost lines for them."""
        return self._record(released)

    def _record(self, released: list[tuple[str, int | None]]) -> list[Lost]:
        lost: list[Lost] = []
        for item_id, size in released:
            mine = self._mine.pop(item_id, None)  # this node's: it knows when it came
            lost.append((item_id, size, *(mine[:2] if mine else (None, None))))
        self._recorder.lost(lost)
        return lost

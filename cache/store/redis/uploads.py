"""An upload's way into the shared store: its reservation, then its value; on any failure
after the reservation (a refused write, a lost connection, a cancel) nothing stays.

The order is what keeps the shared capacity exact: RESERVE judges the upload before a
byte is written (and is the item's deadline-index entry, so a node dying mid-put leaves
only that, which the sweeps and the ledger scan clean up); the value goes with a PX
backstop of deadline + grace; an undo deletes the value and gives the reservation back.
"""

from __future__ import annotations

import asyncio
import logging

from ...item import Item
from .codec import encode, wall_ms
from .item_value import ItemValue
from .link import RETRYABLE
from .release import Releaser
from .reservations import SharedCapacity
from .scripts import member

log = logging.getLogger(__name__)


class Uploads:
    def __init__(
        self, room: SharedCapacity, value: ItemValue, releaser: Releaser, grace: float
    ) -> None:
        self._room = room
        self._value = value
        self._releaser = releaser
        self._grace = grace

    async def write(self, item: Item, data: bytes | bytearray | memoryview) -> None:
        """Reserve capacity, then write the item's value; on failure, nothing stays."""
        try:
            await self._room.reserve(item)
        except asyncio.CancelledError:  # its RESERVE may be queued or done: undo it
            await self.unwind(item)
            raise
        try:
            await self._value.store(item.id, self._px(item), data, encode(item))
        except BaseException:
            await self.unwind(item)
            raise

    def _px(self, item: Item) -> int:
        """The backstop TTL, from now: Redis drops the keys at deadline + grace by itself."""
        return max(1, wall_ms(item.deadline_wall + self._grace) - self._releaser.now_ms())

    async def unwind(self, item: Item) -> None:
        """After a failed put: its keys and entries go, and its reservation (ours, so no
        one else counts it) is given back. On the request path's connection (one server):
        Redis runs it after the put's own RESERVE and SET, whatever step a cancel stopped
        the put at; a second time on a new connection when the put's own went down (Redis
        closes a connection that sent what it refuses). Both steps are idempotent. What
        still fails the ledger scan cleans up."""
        for attempt in (1, 2):
            try:
                await self._releaser.take([item.id], "delete", record=False, request=True)
                await self._releaser.release([member(item.id, item.size)])
                return
            except RETRYABLE as exc:
                log.debug("unwinding a failed put (attempt %d): %r", attempt, exc)
            except Exception as exc:
                log.debug("unwinding a failed put: %r", exc)
                return

"""The shared capacity as one node sees it: RESERVE judges every upload, and a refusal
leaves a short hint so that the next uploads are refused before their bodies are read.

Capacity is the whole cache's, in Redis (`scripts.RESERVE`): bytes and items across all
nodes. A refusal says which deadline frees room (RESERVE walks the ledger to it), so the
node can answer 503 with a Retry-After for FULL_HINT_SECONDS without asking Redis again;
RESERVE stays the judge of every upload whose body is read.
"""

from __future__ import annotations

from ...clock import Clock
from ...errors import CacheFull
from ...item import Item
from ..api import Capacity
from .codec import wall_ms
from .release import Releaser
from .scripts import Scripts
from .tuning import FULL_HINT_SECONDS


class SharedCapacity:
    def __init__(
        self, capacity: Capacity, scripts: Scripts, releaser: Releaser, clock: Clock
    ) -> None:
        self._capacity = capacity
        self._scripts = scripts
        self._releaser = releaser
        self._clock = clock
        self._full_until = 0.0  # monotonic: refuse unread until then
        self._room_at = 0.0  # monotonic: when the refusal's walk found room

    def hinted_full(self) -> bool:
        """A refusal's hint still holds: refuse before reading a body."""
        return self._clock.monotonic() < self._full_until

    def room_at(self) -> float:
        """While `hinted_full`: the deadline the refusal's RESERVE walked the ledger to."""
        return self._room_at

    async def reserve(self, item: Item) -> None:
        """Capacity for the whole cache, checked and taken in one step (RESERVE); raises
        CacheFull (with the wait until room) when there is none."""
        limit = self._capacity
        deadline_ms = wall_ms(item.deadline_wall)
        reservation = await self._scripts.reserve(
            item.id, item.size, deadline_ms, limit.max_bytes, limit.max_items
        )
        self._releaser.set_counters(reservation.counters)
        if not reservation.ok:
            earliest = reservation.earliest_deadline_ms
            wait = 1.0 if earliest is None else (earliest - self._releaser.now_ms()) / 1000
            now = self._clock.monotonic()
            self._full_until = now + min(max(wait, 0.0), FULL_HINT_SECONDS)
            self._room_at = now + max(wait, 0.0)
            raise CacheFull("the cache is full; retry after the earliest deadline", wait)

"""The items this node stored in the shared store, on its own monotonic clock: the
deadlines its exact timer is armed from, and the runs of due batches a purge takes.

The deadlines are those every store keeps (`store.deadlines`); what is particular here is
the run: a purge takes batch after batch while more fall due, for a bounded time, and puts
back what a failed purge did not take.
"""

from __future__ import annotations

from typing import TypeAlias

from ...clock import Clock
from ...item import Item
from ..deadlines import Deadlines, Entry
from .codec import wall_ms

# An item this node stored: (created, deadline) on this node's monotonic clock, then what
# its purge records without reading it back from Redis (`batching.TAKE_KNOWN`): size (which
# also names its reservation, `scripts.member`), sha256, created_ms and deadline_ms (wall).
Mine: TypeAlias = tuple[float, float, int, str, int, int]


def _deadline(mine: Mine) -> float:
    return mine[1]


class OwnItems:
    def __init__(self) -> None:
        self.times: dict[str, Mine] = {}  # insertion order == creation order
        self.deadlines = Deadlines(self.times, _deadline)

    def add(self, item: Item) -> None:
        created_ms, deadline_ms = wall_ms(item.created_wall), wall_ms(item.deadline_wall)
        facts = (item.created, item.deadline, item.size, item.sha256, created_ms, deadline_ms)
        self.times[item.id] = facts
        self.deadlines.push(item.deadline, item.id)

    def oldest_created(self) -> float | None:
        oldest = next(iter(self.times.values()), None)
        return None if oldest is None else oldest[0]

    def earliest(self) -> float | None:
        return self.deadlines.earliest()

    def due_run(self, clock: Clock, seconds: float, batch: int) -> DueRun:
        return DueRun(self, clock, seconds, batch)


class DueRun:
    """One purge's view of the deadlines: `next()` pops the ids due by now (at most `batch`),
    again and again while more fall due, for `seconds`; `restore()` puts back the entries
    of items that a failed purge did not take."""

    def __init__(self, own: OwnItems, clock: Clock, seconds: float, batch: int) -> None:
        self._deadlines, self._clock = own.deadlines, clock
        self._until = clock.monotonic() + seconds
        self._batch = batch
        self.popped: list[Entry] = []

    def next(self) -> list[str]:
        now = self._clock.monotonic()
        if now > self._until:
            return []  # the re-armed timer goes on from here
        due = self._deadlines.pop_due(now, self._batch)
        self.popped += due
        return [item_id for _, item_id in due]

    def restore(self) -> None:
        self._deadlines.restore(self.popped)

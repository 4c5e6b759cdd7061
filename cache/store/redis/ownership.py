"""The items this node stored in the shared store, on its own monotonic clock: the heap
its exact timer is armed from, and the batches of due ids a purge takes from it.

Plain tuples throughout: the cyclic GC stops tracking a tuple of floats and strings, so a
full collection with 100,000 items held does not walk 100,000 objects (a pause that would
hold up the timer).
"""

from __future__ import annotations

import heapq
from typing import TypeAlias

from ...clock import Clock

# An item this node stored: (created, deadline) on this node's monotonic clock.
Mine: TypeAlias = tuple[float, float]


class OwnItems:
    def __init__(self) -> None:
        self.times: dict[str, Mine] = {}  # insertion order == creation order
        self._heap: list[tuple[float, str]] = []

    def add(self, item_id: str, created: float, deadline: float) -> None:
        self.times[item_id] = (created, deadline)
        heapq.heappush(self._heap, (deadline, item_id))

    def oldest_created(self) -> float | None:
        oldest = next(iter(self.times.values()), None)
        return None if oldest is None else oldest[0]

    def earliest(self) -> float | None:
        """The earliest deadline of an item still held (entries of items gone are dropped
        here, lazily: a purge by id or by another node leaves them in the heap)."""
        heap, times = self._heap, self.times
        while heap and heap[0][1] not in times:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_run(self, clock: Clock, seconds: float, batch: int) -> DueRun:
        return DueRun(self, clock, seconds, batch)


class DueRun:
    """One purge's view of the heap: `next()` pops the ids due by now (at most `batch`),
    again and again while more fall due, for `seconds`; `restore()` puts back the entries
    of items that a failed purge did not take."""

    def __init__(self, own: OwnItems, clock: Clock, seconds: float, batch: int) -> None:
        self._own, self._clock = own, clock
        self._until = clock.monotonic() + seconds
        self._batch = batch
        self.popped: list[tuple[float, str]] = []

    def next(self) -> list[str]:
        ids: list[str] = []
        now = self._clock.monotonic()
        if now > self._until:
            return ids  # the re-armed timer goes on from here
        heap, times, popped = self._own._heap, self._own.times, self.popped
        while heap and heap[0][0] <= now and len(ids) < self._batch:
            entry = heapq.heappop(heap)
            if entry[1] in times:
                popped.append(entry)
                ids.append(entry[1])
        return ids

    def restore(self) -> None:
        heap, times = self._own._heap, self._own.times
        for entry in self.popped:
            if entry[1] in times:
                heapq.heappush(heap, entry)

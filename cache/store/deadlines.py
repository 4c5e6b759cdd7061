"""The deadline heap every store arms its exact timer from: one heap, cleaned lazily.

Finding what expired costs what expired, never a scan of what is held (cachetools'
`TTLCache` keeps its expiry order for the same reason). Entries are plain
`(deadline, id)` tuples: the cyclic GC stops tracking a tuple of a float and a str, so a
full collection with 100,000 items held does not walk 100,000 objects (a pause that would
hold up the timer).

Invariant: an id is live while it is a key of `live` (the owner's index); a heap entry
whose id is not live is stale and is dropped when it reaches the top. Items purged early
(DELETE, read limit, admin) leave stale entries behind; once those outnumber live ones by
`SLACK`, the heap is rebuilt from `live` so memory stays bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")
Entry = tuple[float, str]
SLACK = 1024


class DeadlineHeap(Generic[V]):
    def __init__(self, live: Mapping[str, V], deadline_of: Callable[[V], float]) -> None:
        self._live = live
        self._deadline_of = deadline_of
        self._heap: list[Entry] = []

    def __len__(self) -> int:
        """Entries, stale ones included (for tests of the bound)."""
        return len(self._heap)

    def push(self, deadline: float, item_id: str) -> None:
        heapq.heappush(self._heap, (deadline, item_id))

    def earliest(self) -> float | None:
        """The earliest deadline of a live item (stale entries on top are dropped)."""
        heap, live = self._heap, self._live
        while heap and heap[0][1] not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Entry]:
        """Entries of live items due by `now`, earliest first, at most `limit`."""
        heap, live = self._heap, self._live
        due: list[Entry] = []
        while heap and heap[0][0] <= now and (limit is None or len(due) < limit):
            entry = heapq.heappop(heap)
            if entry[1] in live:
                due.append(entry)
        return due

    def in_order(self, limit: int) -> Iterator[Entry]:
        """Live entries, earliest first, at most `limit` of them, without popping: a walk
        of the heap's tree in order (a small frontier heap), costing what it yields."""
        heap, live = self._heap, self._live
        frontier: list[tuple[Entry, int]] = [(heap[0], 0)] if heap else []
        while frontier and limit > 0:
            entry, at = heapq.heappop(frontier)
            if entry[1] in live:
                limit -= 1
                yield entry
            for child in (2 * at + 1, 2 * at + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))

    def restore(self, entries: Iterable[Entry]) -> None:
        """Put back popped entries whose items are still live (a purge that failed)."""
        heap, live = self._heap, self._live
        for entry in entries:
            if entry[1] in live:
                heapq.heappush(heap, entry)

    def trim(self) -> None:
        """Rebuild from `live` when stale entries outnumber live ones by SLACK."""
        live = self._live
        if len(self._heap) > 2 * len(live) + SLACK:
            deadline_of = self._deadline_of
            self._heap = [(deadline_of(value), item_id) for item_id, value in live.items()]
            heapq.heapify(self._heap)

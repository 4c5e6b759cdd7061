"""The deadlines every store arms its exact timer from: deadlines in 10 ms slots.

Finding what expired costs what expired, never a scan of what is held (cachetools'
`TTLCache` keeps its expiry order for the same reason). An entry goes into the slot of
its deadline (a list per 10 ms, appended to); a small heap orders the slot numbers. A due
slot is taken whole, the slot of `now` is sorted and cut at `now`: per item a push is an
append and a pop a list walk. A heap of all entries cost a heappop per item, about 4 us at
100,000 held (17 levels of tuple compares, cache misses), on the loop, while 25,000 items
a second fall due in the bench.

Entries are plain `(deadline, id)` tuples: the cyclic GC stops tracking a tuple of a float
and a str, so a full collection does not walk one object per item held.

Invariant: an id is live while it is a key of `live` (the owner's index); an entry whose
id is not live is stale and is dropped when its slot is reached. Items purged early
(DELETE, read limit, admin) leave stale entries behind; once those outnumber live ones by
`SLACK`, the slots are rebuilt from `live` so memory stays bounded.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")
Entry = tuple[float, str]
SLACK = 1024
SLOTS_PER_SECOND = 100  # 10 ms a slot: a slot holds what was stored in 10 ms of traffic
_AFTER_ANY_ID = "\U0010ffff"  # sorts after every id: (now, _AFTER_ANY_ID) cuts at `now`


def _slot(deadline: float) -> int:
    return int(deadline * SLOTS_PER_SECOND)


class Deadlines(Generic[V]):
    def __init__(self, live: Mapping[str, V], deadline_of: Callable[[V], float]) -> None:
        self._live = live
        self._deadline_of = deadline_of
        self._slots: dict[int, list[Entry]] = {}
        self._order: list[int] = []  # a heap of the keys of `_slots`
        self._entries = 0  # stale ones included

    def __len__(self) -> int:
        """Entries, stale ones included (for tests of the bound)."""
        return self._entries

    def push(self, deadline: float, item_id: str) -> None:
        key = _slot(deadline)
        entries = self._slots.get(key)
        if entries is None:
            self._slots[key] = [(deadline, item_id)]
            heapq.heappush(self._order, key)
        else:
            entries.append((deadline, item_id))
        self._entries += 1

    def earliest(self) -> float | None:
        """The earliest deadline of a live item (stale entries in the first slot dropped)."""
        first = self._first()
        return None if first is None else min(first)[0]

    def _first(self) -> list[Entry] | None:
        """The first slot, holding live entries only; emptied slots are dropped."""
        slots, order, live = self._slots, self._order, self._live
        while order:
            entries = slots[order[0]]
            if any(entry[1] not in live for entry in entries):
                kept = [entry for entry in entries if entry[1] in live]
                self._entries -= len(entries) - len(kept)
                entries[:] = kept
            if entries:
                return entries
            del slots[heapq.heappop(order)]
        return None

    def pop_due(self, now: float, limit: int | None = None) -> list[Entry]:
        """Entries of live items due by `now`, earliest first, at most `limit`."""
        due: list[Entry] = []
        room = limit if limit is not None else self._entries
        while room > 0:
            entries = self._first()
            if entries is None or self._order[0] > _slot(now):
                break  # no slot that holds a deadline <= now
            entries.sort()
            cut = min(bisect_right(entries, (now, _AFTER_ANY_ID)), room)
            if cut == 0:
                break
            due += entries[:cut]
            del entries[:cut]
            self._entries -= cut
            room -= cut
            if entries:
                break  # the rest of this slot is not due yet, or over the limit
            del self._slots[heapq.heappop(self._order)]
        return due

    def in_order(self, limit: int) -> Iterator[Entry]:
        """Live entries, earliest first, at most `limit` of them, without popping: a walk
        of the slot heap's tree in order (a small frontier heap), costing what it yields."""
        slots, order, live = self._slots, self._order, self._live
        frontier: list[tuple[int, int]] = [(order[0], 0)] if order else []
        while frontier and limit > 0:
            key, at = heapq.heappop(frontier)
            for entry in sorted(slots[key]):
                if entry[1] in live and limit > 0:
                    limit -= 1
                    yield entry
            for child in (2 * at + 1, 2 * at + 2):
                if child < len(order):
                    heapq.heappush(frontier, (order[child], child))

    def restore(self, entries: Iterable[Entry]) -> None:
        """Put back popped entries whose items are still live (a purge that failed)."""
        live = self._live
        for deadline, item_id in entries:
            if item_id in live:
                self.push(deadline, item_id)

    def trim(self) -> None:
        """Rebuild from `live` when stale entries outnumber live ones by SLACK."""
        live = self._live
        if self._entries > 2 * len(live) + SLACK:
            deadline_of = self._deadline_of
            self._slots, self._order, self._entries = {}, [], 0
            for item_id, value in live.items():
                self.push(deadline_of(value), item_id)

"""The deadlines every store arms its exact timer from: deadlines in 10 ms slots.

Finding what expired costs what expired, never a scan of what is held (cachetools'
`TTLCache` keeps its expiry order for the same reason). An entry goes into the slot of
its deadline (a list per 10 ms, appended to); a small heap orders the slot numbers. The
first slot is made a heap once, when it comes first, and entries are popped from it: a
pop walks a heap of what was stored in 10 ms, not of everything held. A heap of all
entries cost a heappop per item, about 4 us at 100,000 held (17 levels of tuple compares,
cache misses), on the loop, while 25,000 items a second fall due in the bench.

Entries are plain `(deadline, id)` tuples: the cyclic GC stops tracking a tuple of a float
and a str, so a full collection does not walk one object per item held.

Invariant: an id is live while it is a key of `live` (the owner's index); an entry whose
id is not live is stale and is dropped when its slot is reached. Items purged early
(DELETE, read limit, admin) leave stale entries behind; once those outnumber live ones by
`SLACK`, the slots are rebuilt from `live` so memory stays bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")
Entry = tuple[float, str]
SLACK = 1024
SLOTS_PER_SECOND = 100  # 10 ms a slot: a slot holds what was stored in 10 ms of traffic


def _slot(deadline: float) -> int:
    return int(deadline * SLOTS_PER_SECOND)


class Deadlines(Generic[V]):
    def __init__(self, live: Mapping[str, V], deadline_of: Callable[[V], float]) -> None:
        self._live = live
        self._deadline_of = deadline_of
        self._slots: dict[int, list[Entry]] = {}
        self._order: list[int] = []  # a heap of the keys of `_slots`
        # Slots whose list is kept as a heap: every slot that has been the first one.
        self._heaped: set[int] = set()
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
        elif key in self._heaped:
            heapq.heappush(entries, (deadline, item_id))
        else:
            entries.append((deadline, item_id))
        self._entries += 1

    def earliest(self) -> float | None:
        """The earliest deadline of a live item (stale entries on top are dropped)."""
        first = self._first()
        return None if first is None else first[0][0]

    def _first(self) -> list[Entry] | None:
        """The first slot, as a heap with a live entry on top; stale tops and emptied
        slots are dropped. A slot is heapified once, when it first comes first."""
        slots, order, live, heaped = self._slots, self._order, self._live, self._heaped
        while order:
            key = order[0]
            entries = slots[key]
            if key not in heaped:
                heapq.heapify(entries)
                heaped.add(key)
            while entries and entries[0][1] not in live:
                heapq.heappop(entries)
                self._entries -= 1
            if entries:
                return entries
            del slots[heapq.heappop(order)]
            heaped.discard(key)
        return None

    def pop_due(self, now: float, limit: int | None = None) -> list[Entry]:
        """Entries of live items due by `now`, earliest first, at most `limit`."""
        live = self._live
        due: list[Entry] = []
        room = limit if limit is not None else self._entries
        while room > 0:
            entries = self._first()
            if entries is None or entries[0][0] > now:
                break  # the first slot's top is the earliest live deadline of all
            while entries and entries[0][0] <= now and room > 0:
                entry = heapq.heappop(entries)
                self._entries -= 1
                if entry[1] in live:
                    due.append(entry)
                    room -= 1
        return due

    def in_order(self, limit: int) -> Iterator[Entry]:
        """Live entries, earliest first, at most `limit` of them, without popping: a walk
        of the slot heap's tree in order (a small frontier heap); each slot walked is
        sorted, which costs what it holds: what was stored in 10 ms."""
        slots, order, live = self._slots, self._order, self._live
        frontier: list[tuple[int, int]] = [(order[0], 0)] if order else []
        while frontier and limit > 0:
            key, at = heapq.heappop(frontier)
            for entry in sorted(slots[key]):
                if limit <= 0:
                    break
                if entry[1] in live:
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
            self._slots, self._order, self._heaped, self._entries = {}, [], set(), 0
            for item_id, value in live.items():
                self.push(deadline_of(value), item_id)

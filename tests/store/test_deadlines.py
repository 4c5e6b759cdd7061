"""The deadline slots (cache/store/deadlines.py) against a sorted list: same entries due,
earliest first, whatever the order of pushes, stale entries, limits and slot edges."""

from __future__ import annotations

import random

from cache.store.deadlines import SLACK, SLOTS_PER_SECOND, Deadlines


def model_due(live: dict[str, float], now: float) -> list[tuple[float, str]]:
    return sorted((d, i) for i, d in live.items() if d <= now)


def test_pop_due_matches_a_sorted_model_through_random_pushes_deletes_and_pops() -> None:
    rng = random.Random(11)
    live: dict[str, float] = {}
    deadlines = Deadlines(live, lambda d: d)
    now, serial = 100.0, 0
    for _ in range(300):
        for _ in range(rng.randrange(0, 60)):  # new items, some due in the current slot
            serial += 1
            deadline = now + rng.choice([rng.uniform(0, 0.02), rng.uniform(0, 3), 0.0])
            live[f"i{serial}"] = deadline
            deadlines.push(deadline, f"i{serial}")
        for item_id in rng.sample(sorted(live), min(len(live), rng.randrange(0, 5))):
            del live[item_id]  # purged early: its entry goes stale
        now += rng.choice([0.0, 0.001, 0.004, 0.013, 0.2])
        expected = model_due(live, now)
        assert deadlines.earliest() == (min(live.values()) if live else None)
        got = deadlines.pop_due(now)
        assert got == expected
        for _, item_id in got:
            del live[item_id]
    assert deadlines.pop_due(now + 10) == model_due(live, now + 10)


def test_limit_takes_the_earliest_and_leaves_the_rest_due() -> None:
    live = {f"i{n}": 5.0 + n / 1000 for n in range(50)}  # 50 ms: five slots
    deadlines = Deadlines(live, lambda d: d)
    for item_id, deadline in reversed(list(live.items())):
        deadlines.push(deadline, item_id)
    first = deadlines.pop_due(6.0, limit=7)
    assert [i for _, i in first] == [f"i{n}" for n in range(7)]
    rest = deadlines.pop_due(6.0, limit=100)
    assert [i for _, i in rest] == [f"i{n}" for n in range(7, 50)]
    assert len(deadlines) == 0


def test_a_slot_is_cut_exactly_at_now() -> None:
    slot = 1 / SLOTS_PER_SECOND
    live = {"a": 7.0, "b": 7.0 + slot / 2, "c": 7.0 + slot * 0.99}
    deadlines = Deadlines(live, lambda d: d)
    for item_id, deadline in live.items():
        deadlines.push(deadline, item_id)
    assert deadlines.pop_due(7.0 - 1e-9) == []
    assert deadlines.pop_due(7.0) == [(7.0, "a")]
    del live["a"]
    assert deadlines.earliest() == live["b"]
    assert deadlines.pop_due(live["b"]) == [(live["b"], "b")]


def test_stale_entries_are_bounded_by_a_rebuild() -> None:
    live: dict[str, float] = {}
    deadlines = Deadlines(live, lambda d: d)
    for n in range(SLACK * 4):
        live[f"i{n}"] = 1000.0 + n
        deadlines.push(1000.0 + n, f"i{n}")
        if n % 10:
            del live[f"i{n}"]  # nine in ten go early
        deadlines.trim()
    assert len(deadlines) <= 2 * len(live) + SLACK
    assert deadlines.pop_due(10**6) == sorted((d, i) for i, d in live.items())


def test_restore_puts_back_only_live_entries() -> None:
    live = {"a": 1.0, "b": 2.0}
    deadlines = Deadlines(live, lambda d: d)
    for item_id, deadline in live.items():
        deadlines.push(deadline, item_id)
    popped = deadlines.pop_due(5.0)
    del live["b"]
    deadlines.restore(popped)
    assert deadlines.pop_due(5.0) == [(1.0, "a")]


class CountingLive(dict[str, float]):
    """The owner's index, counting lookups: what a pop looks at."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def test_a_purge_looks_at_what_expired_not_at_what_is_held() -> None:
    live = CountingLive()
    deadlines = Deadlines(live, lambda d: d)
    for n in range(50_000):  # one far slot, as a manual clock (or a burst) makes it
        live[f"far{n}"] = 1000.0
        deadlines.push(1000.0, f"far{n}")
    assert deadlines.earliest() == 1000.0  # the far slot is heapified here, once
    for round_ in range(5):
        for n in range(100):
            live[f"due{round_}.{n}"] = 10.0 + round_
            deadlines.push(10.0 + round_, f"due{round_}.{n}")
        live.lookups = 0
        due = deadlines.pop_due(10.5 + round_)
        assert len(due) == 100
        for _, item_id in due:
            del live[item_id]
        assert deadlines.earliest() == 1000.0
        assert live.lookups < 300, f"a purge of 100 looked at {live.lookups} entries"

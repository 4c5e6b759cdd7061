"""PdqIndex (multi-index hashing): lookups at PDQ's match distance without a scan.

The brute-force cross-check is the main guarantee: MIH must return exactly what a full
scan returns, including at the pigeonhole edge (31 bits spread 2+2+...+1 over the words).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from cache.intake.pdq_index import Match, PdqIndex

U8 = npt.NDArray[np.uint8]


def _random(rng: np.random.Generator, n: int) -> U8:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def _flip(row: U8, bits: list[int]) -> U8:
    out = row.copy()
    for b in bits:  # bit b counted from the first hex digit's high bit
        out[b // 8] ^= 0x80 >> (b % 8)
    return out


def _hex(row: U8) -> str:
    return row.tobytes().hex()


def _spread(row: U8, per_word: list[int]) -> U8:
    """Flip per_word[j] bits inside 16-bit word j."""
    bits = [16 * j + k for j, n in enumerate(per_word) for k in range(n)]
    return _flip(row, bits)


@pytest.fixture(scope="module")
def listed() -> U8:
    return _random(np.random.default_rng(7), 5000)


@pytest.fixture()
def index(listed: U8) -> PdqIndex:
    return PdqIndex.build([("list-a.txt", listed[:2500]), ("list-b.txt", listed[2500:])])


def test_exact_match(index: PdqIndex, listed: U8) -> None:
    assert index.query(_hex(listed[10])) == Match(0, _hex(listed[10]), "list-a.txt")
    assert index.query(_hex(listed[4000]), 0) == Match(0, _hex(listed[4000]), "list-b.txt")


def test_match_at_31_and_not_at_32(index: PdqIndex, listed: U8) -> None:
    worst31 = _spread(listed[3], [2] * 15 + [1])  # every word >= 1 bit off; one word 1 bit
    m = index.query(_hex(worst31), 31)
    assert m is not None and m.distance == 31 and m.hash == _hex(listed[3])
    at32 = _spread(listed[3], [2] * 16)
    assert index.query(_hex(at32), 31) is None
    m = index.query(_hex(at32), 32)
    assert m is not None and m.distance == 32


def test_best_match_chosen(listed: U8) -> None:
    base = listed[0]
    far, near = _flip(base, list(range(0, 200, 10))), _flip(base, [1, 50, 100, 150, 255])
    index = PdqIndex.build([("x", np.stack([far, near, listed[1]]))])
    assert index.query(_hex(base)) == Match(5, _hex(near), "x")
    index.add(_hex(_flip(base, [7, 77])), "admin")
    assert index.query(_hex(base)) == Match(2, _hex(_flip(base, [7, 77])), "admin")


def test_query_many_takes_best_over_all_queries(index: PdqIndex, listed: U8) -> None:
    rng = np.random.default_rng(1)
    queries = [_hex(r) for r in _random(rng, 7)] + [_hex(_flip(listed[42], [0, 9, 99]))]
    assert index.query_many(queries) == Match(3, _hex(listed[42]), "list-a.txt")
    assert index.query_many([_hex(r) for r in _random(rng, 8)]) is None
    assert index.query_many([]) is None


def test_runtime_add_and_remove(index: PdqIndex, listed: U8) -> None:
    new = _random(np.random.default_rng(99), 1)[0]
    assert index.query(_hex(new)) is None
    assert index.add(_hex(new), "admin") is True
    assert index.add(_hex(new).upper(), "other") is False  # already listed
    assert len(index) == 5001
    assert index.query(_hex(_flip(new, [3]))) == Match(1, _hex(new), "admin")
    assert index.remove(_hex(new)) == 1
    assert index.query(_hex(new)) is None and len(index) == 5000
    assert index.remove(_hex(new)) == 0


def test_tombstones_hide_bulk_entries_until_re_added(index: PdqIndex, listed: U8) -> None:
    h = _hex(listed[123])
    assert index.remove(h) == 1
    assert len(index) == 4999
    assert index.query(h) is None
    assert index.query(_hex(_flip(listed[123], [5]))) is None
    assert index.add(h, "admin") is True
    assert index.query(h) == Match(0, h, "admin")
    index.compact()
    assert len(index) == 5000 and index.query(h) == Match(0, h, "admin")
    assert index.remove(h) == 1 and index.query(h) is None


def test_duplicates_across_lists_removed_together() -> None:
    row = _random(np.random.default_rng(5), 1)
    index = PdqIndex.build([("a", row), ("b", row)])
    assert len(index) == 2 and index.query(_hex(row[0])) == Match(0, _hex(row[0]), "a")
    assert index.remove(_hex(row[0])) == 2 and len(index) == 0


def test_bad_query_rejected(index: PdqIndex) -> None:
    for bad in ["", "abc", "g" * 64, "0" * 63, "00 " * 21 + "0"]:
        with pytest.raises(ValueError):
            index.query(bad)
    with pytest.raises(ValueError):
        index.query("0" * 64, 64)


def test_empty_index() -> None:
    index = PdqIndex()
    assert len(index) == 0 and index.query("0" * 64) is None
    index.add("f" * 64)
    assert index.query("f" * 63 + "e") == Match(1, "f" * 64, "admin")


@pytest.mark.parametrize("max_distance", [31, 15, 40])
def test_brute_force_cross_check(max_distance: int) -> None:
    rng = np.random.default_rng(2024 + max_distance)
    listed = _random(rng, 20_000)
    index = PdqIndex.build([("bulk", listed)])
    extra = _random(rng, 200)
    for row in extra:
        index.add(_hex(row), "admin")
    removed = rng.choice(20_000, 300, replace=False)
    for i in removed:
        index.remove(_hex(listed[i]))
    live = np.ones(20_000, bool)
    live[removed] = False
    everything = np.concatenate([listed[live], extra])
    origin = np.concatenate([np.flatnonzero(live), np.arange(20_000, 20_200)])
    bits = np.unpackbits(everything, axis=1)
    found = 0
    for k in range(500):
        target = everything[int(rng.integers(len(everything)))]
        n_flip = int(rng.integers(0, max_distance + 12)) if k % 2 == 0 else 128
        query = _flip(target, [int(b) for b in rng.choice(256, n_flip, replace=False)])
        dist = (bits != np.unpackbits(query)).sum(axis=1)
        best = int(np.argmin(dist))
        got = index.query(_hex(query), max_distance)
        if dist[best] > max_distance:
            assert got is None
            continue
        found += 1
        assert got is not None and got.distance == dist[best]
        assert got.hash == _hex(everything[best])
        assert got.source == ("bulk" if origin[best] < 20_000 else "admin")
    assert found > 100

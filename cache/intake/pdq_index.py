"""Nearest-PDQ-hash lookup over millions of listed hashes, without scanning.

Why multi-index hashing: a match is a hash within Hamming distance 31 (PDQ's recommended
threshold) of any of the 8 dihedral hashes of an upload.  Scanning 1e6 x 256 bits per
upload costs tens of ms; MIH answers in well under 2 ms.  The 256 bits are cut into 16
words of 16 bits.  If two hashes are within distance d, then by pigeonhole some word
differs in at most r = d // 16 bits (16 * (r + 1) > d), so probing every word with its
exact value and all values within r bits (17 probes per word for d = 31) finds every
candidate; a real popcount distance then verifies them.

Why this memory layout: Python dicts of lists for 1e6 x 16 words would need gigabytes.
Here one (N, 32) uint8 array holds the hashes (viewed as 4 x uint64 for popcount and as
16 big-endian uint16 words); for each word a counting sort gives `order` (row ids sorted
by word value, uint32) and `starts` (bucket offsets per value), so a probe is two array
reads.  About 100 bytes per entry.  Runtime additions go to a small overflow dict that
is scanned with numpy on each query; removals are tombstones (a bool mask) so the big
arrays never have to be rebuilt on the request path.  `compact()` folds both in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .hashlists import hex_to_rows

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
WORDS = 16
BUCKETS = 1 << 16
MAX_DISTANCE = 63  # r = 3: 697 probes per word; beyond that MIH stops paying off
_BITS_PER_VALUE = np.bitwise_count(np.arange(BUCKETS, dtype=np.uint16))
_MASKS = [np.flatnonzero(r >= _BITS_PER_VALUE).astype(np.int64) for r in range(4)]
# Every query scans the overflow with numpy (8 x 8192 x 32 bytes is ~0.3 ms); past this
# size add() folds it into the MIH arrays (about 1 s per 1e6 entries).
OVERFLOW_LIMIT = 8192


class Match(NamedTuple):
    distance: int
    hash: str
    source: str


class PdqIndex:
    """MIH index of PDQ hashes, each tagged with the list (source) it came from.

    Not locked: concurrent queries are safe only while nothing calls add/remove/compact.
    The service queries and mutates it on the event loop only, and a reload swaps in an
    index built elsewhere.
    """

    def __init__(self) -> None:
        self._names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self._set_base(np.zeros((0, 32), np.uint8), np.zeros(0, np.uint16))
        self._overflow: dict[bytes, int] = {}
        self._ov_cache: tuple[U8, npt.NDArray[np.uint16], list[bytes]] | None = None

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, parts: Iterable[tuple[str, U8]]) -> PdqIndex:
        """Bulk build from (source name, (n, 32) uint8 hash rows) pairs."""
        index = cls()
        arrays: list[U8] = []
        srcs: list[npt.NDArray[np.uint16]] = []
        for name, rows in parts:
            arrays.append(np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, 32))
            srcs.append(np.full(len(arrays[-1]), index._source_id(name), np.uint16))
        if len(arrays) == 1:  # the common single-list case: no 32 MB-per-1e6 copy
            index._set_base(arrays[0], srcs[0])
        elif arrays:
            index._set_base(np.concatenate(arrays), np.concatenate(srcs))
        return index

    def _source_id(self, name: str) -> int:
        if name not in self._name_ids:
            if len(self._names) >= 1 << 16:
                raise ValueError("more than 65536 sources")
            self._name_ids[name] = len(self._names)
            self._names.append(name)
        return self._name_ids[name]

    def _set_base(self, rows: U8, srcs: npt.NDArray[np.uint16]) -> None:
        n = len(rows)
        self._rows = rows
        self._hv = rows.view("V32").reshape(n)  # one item per hash, for fast gathers
        self._srcs = srcs
        self._alive = np.ones(n, dtype=bool)
        self._n_alive = n
        words = rows.view(">u2")  # (n, 16) big-endian: word 0 = first 4 hex digits
        self._order = np.empty(WORDS * n, dtype=np.uint32)
        starts = np.empty((WORDS, BUCKETS + 1), dtype=np.int64)
        for j in range(WORDS):
            col = words[:, j].astype(np.uint16)
            self._order[j * n : (j + 1) * n] = np.argsort(col, kind="stable")
            starts[j, 0] = j * n
            np.cumsum(np.bincount(col, minlength=BUCKETS), out=starts[j, 1:])
            starts[j, 1:] += j * n
        self._starts = starts.ravel()

    # ---------------------------------------------------------------- mutation
    def add(self, hash_hex: str, source: str = "admin") -> bool:
        """Add one hash at run time; False if it is already listed (and live)."""
        key = hex_to_rows([hash_hex])[0].tobytes()
        if key in self._overflow or len(self._live_base_rows(key)):
            return False
        self._overflow[key] = self._source_id(source)
        self._ov_cache = None
        if len(self._overflow) > OVERFLOW_LIMIT:
            self.compact()
        return True

    def remove(self, hash_hex: str) -> int:
        """Tombstone every entry with exactly this hash; returns how many were live."""
        key = hex_to_rows([hash_hex])[0].tobytes()
        rows = self._live_base_rows(key)
        self._alive[rows] = False
        self._n_alive -= len(rows)
        removed = len(rows)
        if self._overflow.pop(key, None) is not None:
            self._ov_cache = None
            removed += 1
        return removed

    def compact(self) -> None:
        """Rebuild the arrays without tombstones and with the overflow merged in."""
        live = self._alive
        ov_rows, ov_srcs, _ = self._overflow_arrays()
        self._set_base(
            np.concatenate([self._rows[live], ov_rows]),
            np.concatenate([self._srcs[live], ov_srcs]),
        )
        self._overflow.clear()
        self._ov_cache = None

    def _live_base_rows(self, key: bytes) -> I64:
        q = np.frombuffer(key, dtype=np.uint8)
        word0 = int(q.view(">u2")[0])
        lo, hi = self._starts[word0], self._starts[word0 + 1]
        rows = self._order[lo:hi].astype(np.int64)
        same: npt.NDArray[np.bool_] = (self._rows[rows] == q).all(axis=1) & self._alive[rows]
        found: I64 = rows[same]
        return found

    def _overflow_arrays(self) -> tuple[U8, npt.NDArray[np.uint16], list[bytes]]:
        if self._ov_cache is None:
            keys = list(self._overflow)
            rows = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32).copy()
            srcs = np.fromiter(self._overflow.values(), np.uint16, len(keys))
            self._ov_cache = (rows, srcs, keys)
        return self._ov_cache

    # ---------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return self._n_alive + len(self._overflow)

    def query(self, hash_hex: str, max_distance: int = 31) -> Match | None:
        """Best (closest) listed hash within max_distance of hash_hex, or None."""
        return self.query_many([hash_hex], max_distance)

    def query_many(self, hashes: Sequence[str], max_distance: int = 31) -> Match | None:
        """Best match over several query hashes, e.g. the 8 dihedral hashes of an image.

        Ties go to the smallest distance, then the earliest loaded entry.
        """
        if not 0 <= max_distance <= MAX_DISTANCE:
            raise ValueError(f"max_distance must be in 0..{MAX_DISTANCE}")
        if not hashes:
            return None
        q = hex_to_rows(hashes)
        best = self._best_base(q, max_distance)
        ov = self._best_overflow(q, max_distance)
        if ov is not None and (best is None or ov.distance < best.distance):
            return ov
        return best

    def _best_base(self, q: U8, max_distance: int) -> Match | None:
        n = len(self._rows)
        if n == 0:
            return None
        masks = _MASKS[max_distance // 16]
        qwords = q.view(">u2").astype(np.int64)  # (k, 16)
        probe = (qwords[:, :, None] ^ masks[None, None, :]) + (
            np.arange(WORDS, dtype=np.int64) * (BUCKETS + 1)
        )[None, :, None]
        lo = self._starts[probe].ravel()
        length = self._starts[probe + 1].ravel() - lo
        bounds = np.concatenate([[0], np.cumsum(length.reshape(len(q), -1).sum(axis=1))])
        total = int(bounds[-1])
        if total == 0:
            return None
        end = np.cumsum(length)
        # Concatenate the ranges order[lo_i : lo_i + length_i] without a Python loop.
        pos = np.repeat(lo - (end - length), length) + np.arange(total)
        rows = self._order[pos]
        # Gather candidate hashes as one 32-byte item each (much faster than 2-D fancy
        # indexing), then XOR column-wise so numpy's inner loop runs along candidates.
        cand = np.take(self._hv, rows).view(np.uint64).reshape(-1, 4)
        q64 = q.view(np.uint64)
        dist = np.empty(total, dtype=np.uint16)
        for k in range(len(q)):
            a, b = int(bounds[k]), int(bounds[k + 1])
            x = np.bitwise_xor(cand[a:b].T, q64[k][:, None], order="C")
            np.sum(np.bitwise_count(x), axis=0, dtype=np.uint16, out=dist[a:b])
        hits = np.flatnonzero(dist <= max_distance)
        if self._n_alive < n:
            hits = hits[self._alive[rows[hits]]]
        if len(hits) == 0:
            return None
        hit_rows = rows[hits].astype(np.int64)
        i = int(np.argmin(dist[hits].astype(np.int64) * n + hit_rows))
        row = int(hit_rows[i])
        src = self._names[self._srcs[row]]
        return Match(int(dist[hits[i]]), self._rows[row].tobytes().hex(), src)

    def _best_overflow(self, q: U8, max_distance: int) -> Match | None:
        if not self._overflow:
            return None
        rows, srcs, keys = self._overflow_arrays()
        cols = rows.view(np.uint64).T  # (4, m): XOR runs along entries, not along 4 words
        per_row = np.full(len(keys), 256, dtype=np.uint16)
        for q64 in q.view(np.uint64):
            x = np.bitwise_xor(cols, q64[:, None], order="C")
            np.minimum(per_row, np.bitwise_count(x).sum(axis=0, dtype=np.uint16), out=per_row)
        i = int(np.argmin(per_row))
        if per_row[i] > max_distance:
            return None
        return Match(int(per_row[i]), keys[i].hex(), self._names[srcs[i]])

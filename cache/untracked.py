"""Held items stay out of the cyclic garbage collector's walk, so its pauses do not grow
with the number of items held.

A full collection walks every object the collector tracks, on the event loop, with the GIL
held: no purge runs while it does. With 100,000 items held it took 53 ms (tmpfs backend;
88 ms on the memory backend, one more object per item), and in steady churn a full
collection comes every time a quarter of the long-lived objects is new: a purge-lag spike
that grows with the store, not with the work due.

Two things keep it small:

- `freeze_startup()`: after start-up (modules, the app, its routes; the start-up purge
  done) everything alive is moved to the permanent generation: about 53,000 objects that
  live as long as the process, 24 ms of every full collection. It runs one collection
  first, so no garbage is frozen.
- `untrack(obj)`: a held item's records are taken out of the collector's set. Safe only
  for objects that can never be part of a reference cycle, which is why the callers are
  the two types whose every field is an atom or points only away from them (`Item`: str,
  int, float, None; `arena.Block`: its arena, a bytearray and views, none of which ever
  points back). An untracked object still counts as an outside reference to what it
  points to, so nothing it holds is freed early; a cycle through it would only never be
  collected, which tests/store/local/test_untracked.py rules out for both types.
  CPython frees an untracked instance normally (its dealloc untracks only when tracked).
"""

from __future__ import annotations

import ctypes
import gc

_untrack = ctypes.pythonapi.PyObject_GC_UnTrack
_untrack.argtypes = [ctypes.py_object]
_untrack.restype = None


def untrack(obj: object) -> None:
    """Take `obj` out of the collector's walk (see the module docstring for when it may)."""
    if gc.is_tracked(obj):
        _untrack(obj)


def freeze_startup() -> None:
    """Collect once, then leave everything alive now out of every later collection."""
    gc.collect()
    gc.freeze()

"""Held items stay out of the cyclic collector's walk (cache/untracked.py), and may.

Untracking is safe only for an object that can never be part of a reference cycle: these
tests walk everything a held `Item` and a stored memory `Block` point to, transitively,
and check that none of it points back. If a field ever gains a container that could, they
fail here rather than as a leak in production.
"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cache.app import build_runtime
from cache.clock import ManualClock
from cache.config import build_config
from cache.item import ImageFacts
from cache.proof.audit import AuditLog
from cache.proof.metrics import Metrics
from cache.store.api import Capacity
from cache.store.local.memory import MemoryBackend
from cache.store.local.store import LocalStore
from cache.untracked import freeze_startup, untrack

LIMIT = 10_000  # objects walked before giving up: a held item points to a handful


def reachable(root: object) -> Iterator[object]:
    """Everything `root` points to, transitively (root excluded)."""
    seen: set[int] = {id(root)}
    todo = list(gc.get_referents(root))
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue  # a type points to its whole module; instances never point to a type here
        seen.add(id(obj))
        assert len(seen) < LIMIT, f"{type(root).__name__} reaches more than {LIMIT} objects"
        yield obj
        todo.extend(gc.get_referents(obj))


def assert_no_cycle_through(root: object) -> None:
    for obj in reachable(root):
        assert not any(ref is root for ref in gc.get_referents(obj)), (
            f"{type(obj).__name__} points back to the {type(root).__name__}"
        )


def facts(size: int) -> ImageFacts:
    return ImageFacts(f"{size:064x}", size, "image/png", 1, 1, pdq="ab" * 32, pdq_quality=90)


@pytest.fixture
def store() -> LocalStore:
    clock = ManualClock()
    backend = MemoryBackend()
    return LocalStore(
        backend,
        clock,
        Metrics(CollectorRegistry()),
        AuditLog(clock, io.StringIO()),
        Capacity(1 << 30, 1000),
        1.0,
    )


@pytest.mark.parametrize("size", [1000, 2 << 20])  # packed in an arena; a mapping of its own
async def test_held_items_and_their_blocks_are_untracked_and_acyclic(
    store: LocalStore, size: int
) -> None:
    item = await store.put(bytes(size), facts(size), 60, 2, "upload")
    block = store._backend._blocks[item.id]  # type: ignore[attr-defined]
    for record in (item, block):
        assert not gc.is_tracked(record)
        assert_no_cycle_through(record)
    assert all(
        isinstance(value, str | int | float | bool | type(None))
        for value in (getattr(item, name) for name in type(item).__slots__)
    ), "an Item field holds a container: it may no longer be untracked"
    await store.close()


def test_untrack_is_idempotent_and_frees_normally() -> None:
    class Record:
        __slots__ = ("__weakref__", "name")

        def __init__(self) -> None:
            self.name = "x"

    record = Record()
    untrack(record)
    untrack(record)  # already untracked: nothing happens
    assert not gc.is_tracked(record)
    gone = weakref.ref(record)
    del record
    assert gone() is None  # freed by its refcount, no collection needed


def test_freeze_startup_collects_first_so_no_garbage_is_frozen() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    node = Node()
    gone = weakref.ref(node)
    del node
    try:
        freeze_startup()
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process goes on collecting as before


async def test_lists_a_reload_replaces_are_freed_after_the_startup_freeze(tmp_path: Path) -> None:
    """Frozen objects are never collected as cycles: what start-up loaded must still go
    by its refcount when a reload (SIGHUP) replaces it, or every reload would leak it."""
    (tmp_path / "sha.txt").write_text("".join(f"{i:064x}\n" for i in range(1000)))
    (tmp_path / "pdq.txt").write_text("".join(f"{i:064x}\n" for i in range(1, 1000)))
    config = build_config(
        {
            "blocklist": {
                "sha256_files": [str(tmp_path / "sha.txt")],
                "pdq_files": [str(tmp_path / "pdq.txt")],
            }
        },
        env={},
    )
    rt = build_runtime(config, registry=CollectorRegistry(), audit_stream=io.StringIO())
    await rt.store.start()
    await rt.lists.start()
    try:
        freeze_startup()
        loaded = rt.blocklist._loaded
        replaced = [weakref.ref(loaded.pdq), *(weakref.ref(s) for s in loaded.exact.values())]
        del loaded
        await rt.lists.reload()
        assert [ref() for ref in replaced] == [None] * len(replaced)
    finally:
        gc.unfreeze()
        await rt.store.close()
        rt.lists.close()

"""The Backend contract, run against every local backend: the local store relies on all of
them alike (the redis store keeps its bytes itself; the ItemStore contract covers it).

To add a backend, write an async context manager that takes the fixture request and yields
a ready backend, and add it to BACKEND_FACTORIES; every test below then runs against it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from cache.item import new_id
from cache.store.local.backend import Backend
from cache.store.local.memory import MemoryBackend
from tests.support.system import SHM, shm_is_tmpfs


@asynccontextmanager
async def memory_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    backend = MemoryBackend()
    yield backend
    await backend.purge_all()
    await backend.close()


@asynccontextmanager
async def tmpfs_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if not shm_is_tmpfs():
        pytest.skip("tmpfs backend needs Linux with /dev/shm on tmpfs")
    from cache.store.local.tmpfs import TmpfsBackend

    parent = tempfile.mkdtemp(prefix="qc-contract-", dir=SHM)
    backend = TmpfsBackend(f"{parent}/store")
    try:
        yield backend
        await backend.purge_all()
        await backend.close()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


BackendFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Backend]]
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "memory": memory_backend,
    "tmpfs": tmpfs_backend,
}
BACKENDS = list(BACKEND_FACTORIES)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with BACKEND_FACTORIES[request.param](request) as held:
        yield held


async def test_put_then_get_returns_the_same_bytes(backend: Backend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"\x89PNG\r\n\x1a\n payload \x00\xff")
    assert await backend.get(item_id) == b"\x89PNG\r\n\x1a\n payload \x00\xff"


async def test_put_accepts_bytearray_and_memoryview(backend: Backend) -> None:
    first, second = new_id(), new_id()
    await backend.put(first, bytearray(b"abc"))
    await backend.put(second, memoryview(b"defg"))
    assert await backend.get(first) == b"abc"
    assert await backend.get(second) == b"defg"


async def test_empty_payload_round_trips(backend: Backend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"")
    assert await backend.get(item_id) == b""
    assert await backend.delete(item_id) is True


async def test_get_of_unknown_id_is_none(backend: Backend) -> None:
    assert await backend.get(new_id()) is None


async def test_delete_returns_true_then_false(backend: Backend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"bytes")
    assert await backend.delete(item_id) is True
    assert await backend.delete(item_id) is False
    assert await backend.get(item_id) is None


async def test_delete_of_unknown_id_is_false(backend: Backend) -> None:
    assert await backend.delete(new_id()) is False


async def test_purge_all_returns_count_and_leaves_nothing(backend: Backend) -> None:
    for _ in range(3):
        await backend.put(new_id(), b"x" * 100)
    assert await backend.purge_all() == 3
    assert await backend.keys() == set()
    assert await backend.purge_all() == 0


async def test_keys_lists_exactly_what_is_held(backend: Backend) -> None:
    assert await backend.keys() == set()
    held = {new_id() for _ in range(5)}
    for item_id in held:
        await backend.put(item_id, item_id.encode())
    gone = next(iter(held))
    await backend.delete(gone)
    assert await backend.keys() == held - {gone}


async def test_put_of_the_same_id_twice_fails_and_keeps_the_first(backend: Backend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"first")
    with pytest.raises(KeyError):
        await backend.put(item_id, b"second")
    assert await backend.get(item_id) == b"first"


async def test_large_payload_round_trips(backend: Backend) -> None:
    item_id = new_id()
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256) + b"tail"
    await backend.put(item_id, payload)
    assert await backend.get(item_id) == payload
    assert await backend.delete(item_id) is True


async def test_name_is_set(backend: Backend) -> None:
    assert isinstance(backend.name, str)
    assert backend.name in BACKENDS


async def test_delete_many_destroys_exactly_those_held(backend: Backend) -> None:
    ids = [new_id() for _ in range(5)]
    for item_id in ids:
        await backend.put(item_id, item_id.encode())
    assert await backend.delete_many([*ids[:3], new_id()]) == 3
    assert await backend.keys() == set(ids[3:])
    assert await backend.delete_many([]) == 0

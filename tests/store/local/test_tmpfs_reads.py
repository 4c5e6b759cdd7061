"""tmpfs reads under load: concurrent readers of one item share one load (one copy in
memory), and a delete never queues behind reads or other request work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cache.item import new_id
from cache.store.local import tmpfs
from cache.store.local.tmpfs import TmpfsBackend
from tests.support.system import needs_linux_shm

pytestmark = needs_linux_shm


@pytest.fixture
async def backend(shm: Path) -> AsyncIterator[TmpfsBackend]:
    held = TmpfsBackend(shm / "store")
    yield held
    await held.purge_all()
    await held.close()


async def test_concurrent_reads_of_one_item_share_one_load(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    item_id = new_id()
    await backend.put(item_id, bytearray(b"x" * 300_000))
    loads = 0
    real = tmpfs._load

    def counting(dir_fd: int, name: str) -> bytes | None:
        nonlocal loads
        loads += 1
        return real(dir_fd, name)

    monkeypatch.setattr(tmpfs, "_load_async", tmpfs.aiofiles.os.wrap(counting))
    bodies = await asyncio.gather(*(backend.get(item_id) for _ in range(20)))
    assert loads == 1
    assert all(body == b"x" * 300_000 for body in bodies)
    assert len({id(body) for body in bodies}) == 1  # one copy, shared


async def test_a_delete_does_not_wait_for_busy_file_threads(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    item_id = new_id()
    await backend.put(item_id, bytearray(b"y" * 1000))
    gate = threading.Event()

    def stuck(dir_fd: int, name: str) -> bytes | None:
        gate.wait(10)  # every file thread busy (a slow read)
        return None

    monkeypatch.setattr(tmpfs, "_load_async", tmpfs.aiofiles.os.wrap(stuck))
    readers = [asyncio.ensure_future(backend.get(new_id())) for _ in range(8)]
    await asyncio.sleep(0.05)
    try:
        assert await asyncio.wait_for(backend.delete(item_id), 2.0) is True
    finally:
        gate.set()
        await asyncio.gather(*readers)

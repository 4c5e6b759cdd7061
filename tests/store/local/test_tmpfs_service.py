"""The service on the tmpfs backend: same behaviour as memory, files only under storage.path,
orphan files swept, ENOSPC as 507.

The same backend under real `server.py` processes (kill -9, refusal on a disk folder) is
in tests/process/test_tmpfs_process.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import cache.store.local.tmpfs as tmpfs_module
from cache.item import new_id
from tests.support import images
from tests.support.service import ServiceFactory, make_config
from tests.support.system import files_in, needs_linux_shm

pytestmark = needs_linux_shm


async def test_files_live_only_in_storage_path_with_0600(
    make_service: ServiceFactory, shm_dir: Path
) -> None:
    service = await make_service(make_config(storage={"backend": "tmpfs", "path": str(shm_dir)}))
    created = await service.upload_ok(images.png())
    assert files_in(shm_dir) == [created["id"]]
    assert (shm_dir / created["id"]).stat().st_mode & 0o777 == 0o600
    assert shm_dir.stat().st_mode & 0o777 == 0o700
    assert (shm_dir / created["id"]).read_bytes() == images.png()
    await service.advance(60)
    assert files_in(shm_dir) == []


async def test_enospc_is_507_with_no_partial_file_and_accounting_unchanged(
    make_service: ServiceFactory, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await make_service(make_config(storage={"backend": "tmpfs", "path": str(shm_dir)}))
    kept = await service.upload_ok(images.png())
    before = await service.metrics()

    def full_disk(fd: int, data: memoryview) -> None:
        os.write(fd, bytes(data[:10]))  # a partial write, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tmpfs_module, "_write_all", full_disk)
    response = await service.upload(images.jpeg())
    assert response.status == 507
    assert (await response.json())["type"].endswith("/insufficient-storage")
    assert files_in(shm_dir) == [kept["id"]]
    after = await service.metrics()
    assert after["cache_items"] == before["cache_items"] == 1
    assert after["cache_bytes"] == before["cache_bytes"]
    monkeypatch.undo()
    await service.upload_ok(images.jpeg())  # no reservation leaked


async def test_orphan_files_are_swept(make_service: ServiceFactory, shm_dir: Path) -> None:
    service = await make_service(make_config(storage={"backend": "tmpfs", "path": str(shm_dir)}))
    held = await service.upload_ok(images.png())
    orphan = new_id()
    fd = os.open(shm_dir / orphan, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.write(fd, b"left by a process that is gone")
    os.close(fd)
    assert await service.rt.store.purge_orphans() == 1
    assert files_in(shm_dir) == [held["id"]]
    metrics = await service.metrics()
    assert metrics['cache_purged_total{reason="orphan"}'] == 1

"""The periodic orphan scan on the tmpfs backend: every entry no item owns goes, whatever
its name (files overwritten, then unlinked; folders emptied so, then removed), counted as
`orphan`; the service's own TMPDIR folder is emptied and kept; held items stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cache.item import new_id
from tests.support import images
from tests.support.service import ServiceFactory, make_config
from tests.support.system import needs_linux_shm

pytestmark = needs_linux_shm


def plant(path: Path, data: bytes = b"planted") -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_every_unowned_entry_goes_whatever_its_name(
    make_service: ServiceFactory, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmpdir = shm_dir / ".tmp"
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    service = await make_service(make_config(storage={"backend": "tmpfs", "path": str(shm_dir)}))
    held = await service.upload_ok(images.png())
    plant(shm_dir / "planted.jpg")
    plant(shm_dir / new_id())  # an id no item has
    plant(shm_dir / "folder" / "deeper" / "image.png")
    (shm_dir / "link").symlink_to("/etc/passwd")
    os.mkfifo(shm_dir / "fifo")
    plant(tmpdir / "spooled-by-a-library")
    plant(tmpdir / "sub" / "more")
    overwritten: list[str] = []
    real_pwrite = os.pwrite

    def spy(fd: int, data: bytes | memoryview, offset: int) -> int:
        overwritten.append(os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[1])
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", spy)
    removed = await service.rt.store.purge_orphans()
    # planted.jpg, the id, image.png, deeper/, folder/, link, fifo; in TMPDIR: 2 files, sub/
    assert removed == 10
    assert sorted(os.listdir(shm_dir)) == sorted([held["id"], ".tmp"])
    assert os.listdir(tmpdir) == []
    assert {"planted.jpg", "image.png", "spooled-by-a-library", "more"} <= set(overwritten)
    metrics = await service.metrics()
    assert metrics['cache_purged_total{reason="orphan"}'] == 10
    assert (await service.client.get(f"/v1/images/{held['id']}")).status == 200
    assert Path("/etc/passwd").exists()


async def test_a_folder_named_like_tmp_is_not_kept_unless_it_is_tmpdir(
    make_service: ServiceFactory, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", "/somewhere/else")
    service = await make_service(make_config(storage={"backend": "tmpfs", "path": str(shm_dir)}))
    plant(shm_dir / ".tmp" / "x")
    assert await service.rt.store.purge_orphans() == 2
    assert os.listdir(shm_dir) == []


async def test_memory_backend_scan_finds_nothing_to_do(make_service: ServiceFactory) -> None:
    service = await make_service()
    await service.upload_ok(images.png())
    assert await service.rt.store.purge_orphans() == 0

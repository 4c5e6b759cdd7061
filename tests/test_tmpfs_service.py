"""The service on the tmpfs backend: same behaviour as memory, files only under storage.path,
start-up sweep after kill -9, refusal on a disk folder, ENOSPC as 507."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import cache.store.local.tmpfs as tmpfs_module
from cache.item import new_id
from tests import images
from tests.conftest import Service, ServiceFactory, make_config, parse_metrics
from tests.serverproc import ROOT, ServerProcess
from tests.test_backend_contract import shm_is_tmpfs

pytestmark = pytest.mark.skipif(not shm_is_tmpfs(), reason="needs Linux with /dev/shm on tmpfs")


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="qc-test-", dir="/dev/shm"))
    yield parent / "store"
    shutil.rmtree(parent, ignore_errors=True)


def files_in(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))


@pytest.fixture(params=["memory", "tmpfs"])
async def any_backend(
    request: pytest.FixtureRequest, make_service: ServiceFactory, shm_dir: Path
) -> Service:
    storage = {"backend": request.param, "path": str(shm_dir), "max_items": 3}
    return await make_service(make_config(storage=storage))


async def test_ttl_capacity_reads_and_delete_on_every_backend(any_backend: Service) -> None:
    service = any_backend
    a = await service.upload_ok(images.png(), ttl=10)
    b = await service.upload_ok(images.jpeg(), ttl=20, max_reads=1)
    c = await service.upload_ok(images.gif(), ttl=30)
    full = await service.upload(images.png())
    assert full.status == 503 and full.headers["Retry-After"] == "10"
    assert (await service.client.get(f"/v1/images/{b['id']}")).status == 200
    assert (await service.client.get(f"/v1/images/{b['id']}")).status == 404
    assert (await service.client.delete(f"/v1/images/{c['id']}")).status == 204
    await service.advance(10)
    assert (await service.client.get(f"/v1/images/{a['id']}")).status == 404
    assert len(service.rt.store) == 0
    assert await service.rt.store.backend.keys() == set()
    reasons = sorted(e["reason"] for e in service.audit.events("purged") if "id" in e)
    assert reasons == ["delete", "read_limit", "ttl"]


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


def test_kill_9_then_restart_leaves_zero_files(shm_dir: Path) -> None:
    env = {"CACHE_STORAGE_BACKEND": "tmpfs", "CACHE_STORAGE_PATH": str(shm_dir)}
    first = ServerProcess(env=env).start()
    try:
        for _ in range(20):
            first.upload(images.png(), "?ttl=300")
        assert len(files_in(shm_dir)) == 20
    finally:
        first.stop(signal.SIGKILL)
    assert len(files_in(shm_dir)) == 20  # a crash leaves only tmpfs files...
    second = ServerProcess(env=env).start()  # ...start() returns once /readyz is 200
    try:
        assert files_in(shm_dir) == []
        metrics = parse_metrics(second.metrics_text())
        assert metrics['cache_purged_total{reason="startup"}'] == 20
    finally:
        assert second.stop() == 0
    startup = [e for e in second.audit("purged") if e["reason"] == "startup"]
    assert startup == [
        {"ts": startup[0]["ts"], "event": "purged", "reason": "startup", "count": 20}
    ]


def test_refuses_to_start_on_a_disk_folder() -> None:
    folder = Path(tempfile.mkdtemp(prefix=".qc-disk-", dir=ROOT)) / "store"
    try:
        proc = ServerProcess(
            env={"CACHE_STORAGE_BACKEND": "tmpfs", "CACHE_STORAGE_PATH": str(folder)}
        )
        with pytest.raises(RuntimeError, match="exited 2"):
            proc.start()
        [line] = proc.stderr.strip().splitlines()
        assert "storage.path" in line and str(folder) in line and "not tmpfs" in line
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_require_tmpfs_false_starts_and_reports_0(shm_dir: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix=".qc-disk-", dir=ROOT)) / "store"
    try:
        proc = ServerProcess(
            env={
                "CACHE_STORAGE_BACKEND": "tmpfs",
                "CACHE_STORAGE_PATH": str(folder),
                "CACHE_GUARANTEES_REQUIRE_TMPFS": "false",
            }
        ).start()
        metrics = parse_metrics(proc.metrics_text())
        assert metrics['cache_guarantee_ok{check="storage_is_ram"}'] == 0
        assert proc.stop() == 0
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)

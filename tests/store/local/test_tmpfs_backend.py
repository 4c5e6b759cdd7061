"""The tmpfs backend on a real tmpfs (/dev/shm, the `shm` fixture): modes, refusals, overwrite,
ENOSPC, hops."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cache.errors import InsufficientStorage
from cache.http.problems import problem_of
from cache.item import new_id
from cache.store.local import tmpfs
from cache.store.local.tmpfs import StorageFolderError, TmpfsBackend, prepare_folder
from tests.support.system import needs_linux_shm

pytestmark = needs_linux_shm


@pytest.fixture
async def backend(shm: Path) -> AsyncIterator[TmpfsBackend]:
    held = TmpfsBackend(shm / "store")
    yield held
    await held.close()


def _everything_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_folder_created_0700_when_missing(shm: Path) -> None:
    folder = shm / "a" / "store"
    old = os.umask(0o022)
    try:
        assert prepare_folder(folder) == folder
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_existing_private_folder_is_accepted(shm: Path) -> None:
    folder = shm / "store"
    folder.mkdir(mode=0o700)
    assert TmpfsBackend(folder).path == folder


def test_symlink_at_storage_path_is_refused(shm: Path) -> None:
    real = shm / "real"
    real.mkdir(mode=0o700)
    link = shm / "link"
    link.symlink_to(real)
    with pytest.raises(StorageFolderError, match=rf"^storage.path: {link} is a symlink"):
        TmpfsBackend(link)
    with pytest.raises(StorageFolderError, match="symlink"):
        prepare_folder(link)


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o710])
def test_group_or_world_accessible_folder_is_refused(shm: Path, mode: int) -> None:
    folder = shm / "store"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(StorageFolderError) as caught:
        TmpfsBackend(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert str(folder) in message and f"{mode:04o}" in message


def test_file_at_storage_path_is_refused(shm: Path) -> None:
    path = shm / "store"
    path.write_bytes(b"")
    with pytest.raises(StorageFolderError, match="not a directory"):
        TmpfsBackend(path)


def test_folder_of_another_owner_is_refused(shm: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown a folder to someone else")
    folder = shm / "store"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(StorageFolderError, match="owned by uid 65534"):
        TmpfsBackend(folder)


async def test_item_file_is_0600_and_named_by_id(backend: TmpfsBackend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"data")
    path = backend.path / item_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"data"
    assert os.listdir(backend.path) == [item_id]


BAD_IDS = [
    "../" + "A" * 19,
    "../../etc/passwd",
    "A" * 10 + "/" + "B" * 11,
    "A" * 21 + "\x00",
    "\x00",
    "",
    "A" * 23,
    "A" * 21 + "\n",
    "A" * 20 + "..",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_id_is_refused_before_the_filesystem(
    shm: Path, backend: TmpfsBackend, bad_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _everything_under(shm)
    touched: list[Any] = []

    def no_fs(*args: Any, **kwargs: Any) -> None:
        touched.append(args)
        raise AssertionError("filesystem reached")

    monkeypatch.setattr(os, "open", no_fs)
    monkeypatch.setattr(os, "unlink", no_fs)
    with pytest.raises(ValueError, match="not a valid item id"):
        await backend.put(bad_id, b"evil")
    with pytest.raises(ValueError):
        await backend.get(bad_id)
    with pytest.raises(ValueError):
        await backend.delete(bad_id)
    monkeypatch.undo()
    assert touched == []
    assert _everything_under(shm) == before


async def test_file_gone_after_delete(backend: TmpfsBackend) -> None:
    item_id = new_id()
    await backend.put(item_id, b"data")
    assert await backend.delete(item_id)
    assert not (backend.path / item_id).exists()
    assert os.listdir(backend.path) == []


async def test_purge_all_removes_stray_files_too(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(backend.path / ".tmp"))
    ids = [new_id() for _ in range(3)]
    for item_id in ids:
        await backend.put(item_id, b"held")
    (backend.path / "left-by-a-crash.partial").write_bytes(b"secret")
    readonly = backend.path / "readonly"
    readonly.write_bytes(b"x")
    readonly.chmod(0o400)
    (backend.path / "dangling").symlink_to(backend.path / "nowhere")
    os.mkfifo(backend.path / "fifo")
    subfolder = backend.path / ".tmp"
    subfolder.mkdir()
    assert await backend.keys() == set(ids)
    assert await backend.purge_all() == 7
    assert os.listdir(backend.path) == [".tmp"]  # the service's TMPDIR is kept (emptied)


async def test_deleted_file_is_overwritten_before_unlink(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    item_id, stray = new_id(), "stray"
    await backend.put(item_id, b"secret image bytes" * 1000)
    (backend.path / stray).write_bytes(b"crash leftover")
    seen: dict[str, bytes] = {}
    real_unlink = os.unlink

    def spy(name: str, *, dir_fd: int | None = None) -> None:
        fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
        try:
            seen[name] = os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        real_unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", spy)
    assert await backend.delete(item_id)
    assert await backend.purge_all() == 1
    assert seen == {item_id: bytes(18000), stray: bytes(14)}


async def test_enospc_raises_insufficient_storage_and_leaves_no_file(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_all = tmpfs._write_all

    def half_then_enospc(fd: int, data: memoryview) -> None:
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tmpfs, "_write_all", half_then_enospc)
    item_id = new_id()
    with pytest.raises(InsufficientStorage) as caught:
        await backend.put(item_id, b"x" * 100_000)
    assert problem_of(caught.value).status == 507
    assert "No space left on device" in caught.value.detail
    assert item_id not in caught.value.detail
    assert os.listdir(backend.path) == []
    assert await backend.get(item_id) is None


async def test_eio_also_raises_insufficient_storage(
    backend: TmpfsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def eio(fd: int, data: memoryview) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(tmpfs, "_write_all", eio)
    with pytest.raises(InsufficientStorage):
        await backend.put(new_id(), b"x")
    assert os.listdir(backend.path) == []


@pytest.fixture
async def hops(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """Every executor submission made on the running loop."""
    loop = asyncio.get_running_loop()
    calls: list[Callable[..., Any]] = []
    real = loop.run_in_executor

    def counting(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        calls.append(func)
        return real(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", counting)
    return calls


async def test_one_thread_hop_per_operation(
    backend: TmpfsBackend, hops: list[Callable[..., Any]]
) -> None:
    item_id = new_id()
    payload = os.urandom(3 * 1024 * 1024)
    await backend.put(item_id, payload)
    assert len(hops) == 1
    assert await backend.get(item_id) == payload
    assert len(hops) == 2
    assert await backend.delete(item_id)
    assert len(hops) == 3
    await backend.keys()
    await backend.purge_all()
    assert len(hops) == 5


async def test_read_racing_delete_gets_all_or_nothing(backend: TmpfsBackend) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    for _ in range(20):
        item_id = new_id()
        await backend.put(item_id, payload)
        read, deleted = await asyncio.gather(backend.get(item_id), backend.delete(item_id))
        assert deleted is True
        assert read in (payload, None)


async def test_closed_backend_refuses_work(backend: TmpfsBackend) -> None:
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await backend.get(new_id())


async def test_folder_swapped_for_symlink_does_not_redirect_writes(
    shm: Path, backend: TmpfsBackend
) -> None:
    elsewhere = shm / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    moved = shm / "moved"
    backend.path.rename(moved)
    backend.path.symlink_to(elsewhere)
    item_id = new_id()
    await backend.put(item_id, b"data")
    assert (moved / item_id).exists()
    assert os.listdir(elsewhere) == []


async def test_delete_timed_reads_the_time_after_each_file(backend: TmpfsBackend) -> None:
    """An expiry purge's lag is taken when each file went, not when the batch ended."""
    ids = [new_id() for _ in range(3)]
    for item_id in ids:
        await backend.put(item_id, b"bytes" * 100)
    seen: list[list[str]] = []

    def now() -> float:  # called right after each file: what is left tells which one
        seen.append(sorted(os.listdir(backend.path)))
        return float(len(seen))

    assert await backend.delete_timed([*ids, new_id()], now) == [1.0, 2.0, 3.0, 4.0]
    assert seen == [sorted(ids[1:]), sorted(ids[2:]), [], []]

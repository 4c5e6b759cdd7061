"""Bytes in a tmpfs folder, one file per item: a crash leaves only files the next start removes.

Every store operation is one synchronous function (open, whole read or write, close) run in
one executor hop through `aiofiles.os.wrap`, not one await per chunk. Reads and writes
(request work) and deletes (the purge path) run in thread pools of their own: a delete
never queues behind request work, or behind anything else in the default executor. Paths are the
validated id only, opened relative to a directory fd held from the start (`dir_fd`), so a
folder swapped for a symlink later cannot redirect a write.

Overwrite before unlink is best effort: tmpfs pages are zeroed in place, but the kernel may
already hold other copies (swap, unless the mount is `noswap`; pages migrated by
compaction), and every read leaves an unzeroed copy in process memory until it is freed.
Readers take a shared flock and deleters an exclusive one, so a read racing a delete gets
all the bytes or None, never a half-zeroed file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiofiles.os

from ...errors import InsufficientStorage
from ...item import is_valid_id
from ...wipe import zero
from ..api import Buffer

_CREATE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted in the folder must not hang an executor thread on open.
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ZEROS = memoryview(bytes(1 << 20))


class StorageFolderError(ValueError):
    """The storage folder is unsafe or unusable; the message is one line naming its path."""


def prepare_folder(path: str | os.PathLike[str]) -> Path:
    """Create the folder 0700 if missing, then refuse it unless it is ours alone."""
    folder = Path(os.path.abspath(path))
    created = False
    try:
        folder.mkdir(mode=0o700, parents=True)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageFolderError(f"storage.path: cannot create {folder} ({exc.strerror})") from None
    fd = _open_folder(folder)
    try:
        if created:
            os.fchmod(fd, 0o700)  # the umask may have changed the mode we asked for
        _check_folder(folder, os.fstat(fd))
    finally:
        os.close(fd)
    return folder


def _open_folder(folder: Path) -> int:
    try:
        return os.open(folder, _DIRECTORY)
    except OSError as exc:
        problem = f"cannot be opened ({exc.strerror})"
    try:  # only to word the refusal: the open above already refused
        mode = os.lstat(folder).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        problem = "is a symlink; point storage.path at a real directory"
    elif mode and not stat.S_ISDIR(mode):
        problem = "is not a directory"
    raise StorageFolderError(f"storage.path: {folder} {problem}")


def _check_folder(folder: Path, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise StorageFolderError(f"storage.path: {folder} is not a directory")
    if st.st_uid != os.geteuid():
        raise StorageFolderError(
            f"storage.path: {folder} is owned by uid {st.st_uid}, not by this process "
            f"(uid {os.geteuid()})"
        )
    if st.st_mode & 0o077:
        raise StorageFolderError(
            f"storage.path: {folder} is group/world accessible "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 700 it"
        )


def _name(item_id: str) -> str:
    """The file name for an id, checked here again: this is where an id becomes a path."""
    if not isinstance(item_id, str) or not is_valid_id(item_id):
        raise ValueError("not a valid item id")
    return item_id


def _write_all(fd: int, data: memoryview) -> None:
    """Write every byte (os.write may write fewer). Tests replace it to inject ENOSPC."""
    while data:
        written = os.write(fd, data)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data = data[written:]


def _overwrite(fd: int, size: int) -> None:
    """Zero the file in place: same length, same pages, no new allocation."""
    offset = 0
    while offset < size:
        offset += os.pwrite(fd, _ZEROS[: min(len(_ZEROS), size - offset)], offset)


def _unlink(dir_fd: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _store(dir_fd: int, name: str, data: bytes | bytearray | memoryview) -> None:
    try:
        fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise KeyError(f"id already held: {name}") from None
    except OSError as exc:
        raise InsufficientStorage(f"storage write failed: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # readers wait for the whole file
        _write_all(fd, memoryview(data).cast("B"))
    except OSError as exc:
        with contextlib.suppress(OSError):
            _overwrite(fd, os.fstat(fd).st_size)
        _unlink(dir_fd, name)
        raise InsufficientStorage(f"storage write failed: {exc.strerror}") from None
    finally:
        os.close(fd)


def _load(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | _OPEN, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        if st.st_nlink == 0 or not stat.S_ISREG(st.st_mode):
            return None  # deleted while we waited for the lock
        data = os.read(fd, st.st_size)
        while len(data) < st.st_size:
            more = os.read(fd, st.st_size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


def _destroy(dir_fd: int, name: str) -> bool:
    """Overwrite, then unlink. Anything that cannot be opened for writing (a symlink, a
    FIFO, a read-only stray) is unlinked without writing through it."""
    try:
        fd = os.open(name, os.O_WRONLY | _OPEN, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError:
        return _unlink(dir_fd, name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return False  # another delete got here first
        if stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                _overwrite(fd, st.st_size)
        return _unlink(dir_fd, name)
    finally:
        os.close(fd)


def _entries(dir_fd: int) -> list[tuple[str, bool]]:
    """(name, is_dir) for each entry, through a fresh fd: dup'ed fds share a read offset."""
    fd = os.open(".", _DIRECTORY, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    finally:
        os.close(fd)


def _destroy_many(dir_fd: int, names: list[str]) -> int:
    return sum(_destroy(dir_fd, name) for name in names)


def _destroy_timed(dir_fd: int, names: list[str], now: Callable[[], float]) -> list[float]:
    """Each file destroyed, then the time read: when that item's bytes were gone."""
    times = []
    for name in names:
        _destroy(dir_fd, name)
        times.append(now())
    return times


def _own_tmpdir(folder: Path) -> str | None:
    """The name of the service's TMPDIR when it is a folder right in `folder` (where
    guarantees.point_tmpdir puts it on the tmpfs backend), else None."""
    tmpdir = os.environ.get("TMPDIR")
    if not tmpdir or os.path.dirname(os.path.abspath(tmpdir)) != str(folder):
        return None
    return os.path.basename(os.path.abspath(tmpdir))


def _destroy_entry(dir_fd: int, name: str, is_dir: bool) -> int:
    """A file is overwritten, then unlinked; anything else that is not a folder (a
    symlink, a FIFO) unlinked; a folder emptied so, then removed. -> entries removed."""
    if not is_dir:
        return int(_destroy(dir_fd, name))
    removed = _empty(dir_fd, name)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except OSError:
        return removed
    return removed + 1


def _empty(dir_fd: int, name: str) -> int:
    """Destroy everything in the folder `name` (bottom-up, links never followed)."""
    removed = 0
    try:
        for _, folders, files, fd in os.fwalk(
            name, dir_fd=dir_fd, topdown=False, follow_symlinks=False
        ):
            removed += _destroy_many(fd, files)
            for folder in folders:
                with contextlib.suppress(OSError):
                    os.rmdir(folder, dir_fd=fd)
                    removed += 1
    except (OSError, RecursionError):
        pass  # what is left (a tree deeper than the stack) goes at the next scan
    return removed


def _destroy_names(dir_fd: int, folder: Path, names: set[str]) -> int:
    """Destroy the entries `names` (no item owns them), whatever they are, then empty the
    service's TMPDIR folder: the service writes no temp file, so anything there is a
    library's leftover."""
    keep = _own_tmpdir(folder)
    removed = sum(
        _destroy_entry(dir_fd, name, is_dir)
        for name, is_dir in _entries(dir_fd)
        if name in names and name != keep
    )
    if keep is not None:
        removed += _empty(dir_fd, keep)
    return removed


def _purge(dir_fd: int, folder: Path) -> int:
    """Every entry, ids or not: whatever a crash left behind (TMPDIR: emptied, kept)."""
    return _destroy_names(dir_fd, folder, {name for name, _ in _entries(dir_fd)})


def _names(dir_fd: int, folder: Path) -> set[str]:
    """Every entry but the service's own TMPDIR folder, ids or not."""
    keep = _own_tmpdir(folder)
    return {name for name, _ in _entries(dir_fd) if name != keep}


def _ids(dir_fd: int) -> set[str]:
    return {name for name, is_dir in _entries(dir_fd) if not is_dir and is_valid_id(name)}


_store_async = aiofiles.os.wrap(_store)
_load_async = aiofiles.os.wrap(_load)
_destroy_async = aiofiles.os.wrap(_destroy)
_destroy_many_async = aiofiles.os.wrap(_destroy_many)
_destroy_timed_async = aiofiles.os.wrap(_destroy_timed)
_purge_async = aiofiles.os.wrap(_purge)
_ids_async = aiofiles.os.wrap(_ids)
_names_async = aiofiles.os.wrap(_names)
_destroy_names_async = aiofiles.os.wrap(_destroy_names)


class TmpfsBackend:
    """One 0600 file per item in a 0700 folder that only this process's user can enter.

    The constructor creates the folder if needed (`prepare_folder`) and holds it open; it
    never reads config, so the caller decides which folder and checks it is tmpfs.
    """

    name = "tmpfs"

    def __init__(self, path: str | os.PathLike[str], file_threads: int = 4) -> None:
        self.path = prepare_folder(path)
        self._files = ThreadPoolExecutor(file_threads, thread_name_prefix="tmpfs-io")
        self._purges = ThreadPoolExecutor(1, thread_name_prefix="tmpfs-purge")
        self._loading: dict[str, asyncio.Future[bytes | None]] = {}
        self._dir_fd = _open_folder(self.path)
        try:
            _check_folder(self.path, os.fstat(self._dir_fd))  # the folder held is the one checked
        except StorageFolderError:
            os.close(self._dir_fd)
            raise

    def _fd(self) -> int:
        if self._dir_fd < 0:
            raise RuntimeError("tmpfs backend is closed")
        return self._dir_fd

    def buffer(self, size: int) -> Buffer:
        """A heap buffer: its bytes are written to a file and zeroed at `put`."""
        return Buffer(size)

    def abandon(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytearray):
            zero(data)

    async def put(self, item_id: str, data: bytes | bytearray | memoryview) -> None:
        name = _name(item_id)
        try:
            await _store_async(self._fd(), name, data, executor=self._files)
        finally:
            if isinstance(data, bytearray):
                zero(data)  # handed over, and written (or refused): no copy stays here

    async def get(self, item_id: str) -> bytes | None:
        """Concurrent reads of one item share one load (one copy in memory, not one per
        reader): the first starts it, the others await the same future."""
        name = _name(item_id)
        loading = self._loading.get(name)
        if loading is None:
            loading = asyncio.ensure_future(_load_async(self._fd(), name, executor=self._files))
            self._loading[name] = loading
            loading.add_done_callback(lambda _: self._loading.pop(name, None))
        result: bytes | None = await asyncio.shield(loading)
        return result

    def settle(self) -> int:
        return 0  # reads get their own copy of a file: nothing waits

    async def delete(self, item_id: str) -> bool:
        name = _name(item_id)
        result: bool = await _destroy_async(self._fd(), name, executor=self._purges)
        return result

    async def delete_many(self, item_ids: list[str]) -> int:
        names = [_name(item_id) for item_id in item_ids]
        result: int = await _destroy_many_async(self._fd(), names, executor=self._purges)
        return result

    async def delete_timed(self, item_ids: list[str], now: Callable[[], float]) -> list[float]:
        """A batch of files takes about 20 us each: each item's own time, not the end's."""
        names = [_name(item_id) for item_id in item_ids]
        result: list[float] = await _destroy_timed_async(
            self._fd(), names, now, executor=self._purges
        )
        return result

    async def purge_all(self) -> int:
        """Every entry in the folder goes, ids or not, files and folders: whatever a crash
        left behind. The service's TMPDIR folder (guarantees.py may put it here) is
        emptied and kept."""
        result: int = await _purge_async(self._fd(), self.path, executor=self._purges)
        return result

    async def keys(self) -> set[str]:
        result: set[str] = await _ids_async(self._fd(), executor=self._purges)
        return result

    async def entries(self) -> set[str]:
        result: set[str] = await _names_async(self._fd(), self.path, executor=self._purges)
        return result

    async def destroy_orphans(self, names: set[str]) -> int:
        result: int = await _destroy_names_async(
            self._fd(), self.path, names, executor=self._purges
        )
        return result

    async def close(self) -> None:
        self._files.shutdown(wait=True)
        self._purges.shutdown(wait=True)
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

"""Facts about this process and its filesystems that the standard library does not expose.

Every helper answers None (or raises OSError) when the platform cannot tell, so that the
guarantee checks report "unknown" instead of guessing "ok". Linux only: elsewhere `libc()`
is None and the /proc files do not exist.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import struct
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

try:
    import ctypes
except ImportError:  # pragma: no cover - some embedded builds ship without ctypes
    ctypes = None  # type: ignore[assignment]

IS_LINUX = sys.platform.startswith("linux")

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
RAM_MAGICS = frozenset({TMPFS_MAGIC, RAMFS_MAGIC})
RAM_FSTYPES = frozenset({"tmpfs", "ramfs"})
# statfs(2) f_type values an operator is likely to meet; anything else is shown in hex.
FS_NAMES: dict[int, str] = {
    TMPFS_MAGIC: "tmpfs",
    RAMFS_MAGIC: "ramfs",
    0xEF53: "ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x794C7630: "overlayfs",
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x65735546: "fuse",
    0x2FC12FC1: "zfs",
    0x01021997: "9p",
    0xCA451A4E: "bcachefs",
    0xF2F52010: "f2fs",
    0x4D44: "vfat",
    0x2011BAB0: "exfat",
    0x5346544E: "ntfs",
    0x73717368: "squashfs",
    0x9FA0: "proc",
}

CAP_IPC_LOCK = 14
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4  # Linux 4.4+: lock pages as they are touched, do not pre-fault them all

_STATFS_BUFSIZE = 512  # struct statfs is 120 bytes on 64-bit Linux; room to spare
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@cache
def libc() -> Any:
    """The C library via ctypes, or None where that is not possible (not Linux, no ctypes)."""
    if not IS_LINUX or ctypes is None:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def _libc_or_raise() -> Any:
    lib = libc()
    if lib is None:
        raise OSError(errno.ENOSYS, "libc is not reachable through ctypes on this platform")
    return lib


def statfs_magic(path: str) -> int | None:
    """statfs(2) f_type for `path` (None without libc); raises OSError when statfs fails."""
    lib = libc()
    if lib is None:
        return None
    buf = ctypes.create_string_buffer(_STATFS_BUFSIZE)
    if lib.statfs(os.fsencode(path), buf) != 0:
        _raise_errno(f"statfs {path}")
    # f_type is the first field, a native long (__fsword_t) on every 64-bit Linux we target.
    (f_type,) = struct.unpack_from("l", buf.raw)
    return int(f_type) & 0xFFFFFFFF


def describe_magic(magic: int) -> str:
    name = FS_NAMES.get(magic)
    return f"{name} ({magic:#x})" if name else f"an unknown filesystem ({magic:#x})"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: frozenset[str]  # per-mount and superblock options together


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: str, mountinfo: str) -> Mount | None:
    """The mount holding `path` per mountinfo(5): the longest mount point that prefixes it,
    the last listed on a tie (a mount stacked on top wins). None when unreadable."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    best: Mount | None = None
    for line in lines:
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 4:
            continue
        point = _unescape(fields[4])
        inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            options = frozenset(fields[5].split(",")) | frozenset(fields[dash + 3].split(","))
            best = Mount(point, fields[dash + 1], options)
    return best


def existing_ancestor(path: str) -> str:
    """`path` resolved, or its nearest existing parent: a folder not made yet lands there."""
    current = os.path.realpath(path)
    while not os.path.exists(current) and current != os.path.dirname(current):
        current = os.path.dirname(current)
    return current


@dataclass(frozen=True)
class FsInfo:
    name: str  # "ext4 (0xef53)", "tmpfs", or why it could not be told
    is_ram: bool | None  # None: could not tell


def filesystem(path: str, mountinfo: str) -> FsInfo:
    """What holds `path`: statfs first, the mount table when statfs is out of reach."""
    target = existing_ancestor(path)
    problem = "statfs is not available"
    try:
        magic = statfs_magic(target)
    except OSError as exc:
        magic, problem = None, str(exc.strerror)
    if magic is not None:
        return FsInfo(describe_magic(magic), magic in RAM_MAGICS)
    mount = mount_of(target, mountinfo)
    if mount is not None:
        return FsInfo(f"{mount.fstype} (per {mountinfo})", mount.fstype in RAM_FSTYPES)
    return FsInfo(f"{problem} and {mountinfo} is unreadable", None)


def active_swaps(swaps: str) -> list[str] | None:
    """Devices or files in use as swap (zram included: conservative), None when unreadable."""
    try:
        with open(swaps, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    return [line.split()[0] for line in lines[1:] if line.strip()]


def cap_effective(status: str) -> int | None:
    """The CapEff bit mask from /proc/<pid>/status, None when unreadable."""
    try:
        with open(status, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse_write_bytes(text: str) -> int | None:
    """`write_bytes` of /proc/<pid>/io: bytes this process caused to be sent to block devices."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "write_bytes" and value.strip().isdigit():
            return int(value)
    return None


def prctl(option: int, arg: int = 0) -> int:
    lib = _libc_or_raise()
    zero = ctypes.c_ulong(0)
    result = int(lib.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), zero, zero, zero))
    if result < 0:
        _raise_errno("prctl")
    return result


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
M_TRIM_THRESHOLD = -1


def pin_mmap_threshold(size: int) -> bool:
    """glibc: allocations of `size` bytes and more get a mapping of their own, given back
    to the kernel (munmap) when freed, also when memory is locked. Setting it also stops
    glibc from raising the threshold after each large free (its default behaviour, which
    would move decode buffers of a burst into heaps that never shrink while locked).
    False where there is no glibc mallopt."""
    lib = libc()
    mallopt = getattr(lib, "mallopt", None) if lib is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(size)))


def pin_trim_threshold(size: int) -> bool:
    """glibc: keep up to `size` free bytes at the top of the main heap before giving them
    back (brk). Pinning the mmap threshold also pins this one at its 128 KiB default, and
    requests' transient buffers then make the heap top shrink and grow again, a fresh page
    fault per 4 KiB each time (14 per lifecycle of a 100 KB upload, a quarter of the
    kernel's time). Item bytes are not in the heap (`store/local/pages.py`), and the memory
    backend calls malloc_trim(0) when its last item goes. False where there is no mallopt."""
    lib = libc()
    mallopt = getattr(lib, "mallopt", None) if lib is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(M_TRIM_THRESHOLD), ctypes.c_int(size)))


MADV_DONTNEED_LOCKED = 24  # Linux 5.18+


def locked_pages_drop() -> str:
    """How this kernel drops pages of a locked range that stays mapped: one page is
    mapped, locked, written and dropped to find out."""
    import mmap

    probe = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        probe[0] = 1
        probe.madvise(MADV_DONTNEED_LOCKED)
    except OSError:
        return "munlock, then MADV_DONTNEED: this kernel has no MADV_DONTNEED_LOCKED"
    finally:
        probe.close()
    return "MADV_DONTNEED_LOCKED"


def mlockall(flags: int) -> None:
    lib = _libc_or_raise()
    if lib.mlockall(ctypes.c_int(flags)) != 0:
        _raise_errno("mlockall")


def _size(n: int) -> str:
    if n == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{n >> 10} KiB" if n < 1 << 20 else f"{n >> 20} MiB"


def may_lock_memory(need: int, status: str) -> tuple[bool, str]:
    """Whether mlockall(MCL_FUTURE) is safe: with a memlock limit below what the process
    will hold, later allocations fail. Raises the soft limit when the hard one allows."""
    caps = cap_effective(status)
    if caps is not None and caps >> CAP_IPC_LOCK & 1:
        return True, "CAP_IPC_LOCK"
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return True, f"RLIMIT_MEMLOCK {_size(soft)}"
    if hard == resource.RLIM_INFINITY or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (need, hard))
        except (OSError, ValueError):
            pass
        else:
            return True, f"RLIMIT_MEMLOCK raised to {_size(need)}"
    return False, (
        f"RLIMIT_MEMLOCK is {_size(soft)} (hard {_size(hard)}), below the {_size(need)} "
        "needed, and no CAP_IPC_LOCK: locking would make later allocations fail; raise "
        "LimitMEMLOCK / ulimit -l or grant CAP_IPC_LOCK"
    )


def read_write_bytes(fd: int | None, path: str) -> int | None:
    """write_bytes through `fd` when one is held (a non-dumpable, non-root process cannot
    reopen /proc/self/io, but may still read an fd opened before), else through `path`."""
    try:
        if fd is not None:
            text = os.pread(fd, 4096, 0).decode("ascii", "replace")
        else:
            with open(path, encoding="ascii") as handle:
                text = handle.read()
    except OSError:
        return None
    return parse_write_bytes(text)

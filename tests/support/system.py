"""Facts about this machine that decide whether a test can run: tmpfs, disk, swap."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cache.proof import sysfacts
from tests.support import ROOT

SHM = "/dev/shm"


def fs_magic(path: Path | str) -> int | None:
    """The statfs magic of the filesystem holding `path`; None when it cannot be read."""
    try:
        return sysfacts.statfs_magic(str(path))
    except OSError:
        return None


def shm_is_tmpfs() -> bool:
    return sys.platform.startswith("linux") and fs_magic(SHM) == sysfacts.TMPFS_MAGIC


def files_in(folder: Path) -> list[str]:
    """The regular files directly in `folder` (symlinks not followed), sorted."""
    return sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))


def no_swap() -> bool:
    return sysfacts.active_swaps("/proc/swaps") == []


REPO_ON_DISK = fs_magic(ROOT) not in (*sysfacts.RAM_MAGICS, None)
SHM_IS_TMPFS = fs_magic(SHM) == sysfacts.TMPFS_MAGIC

needs_shm = pytest.mark.skipif(not SHM_IS_TMPFS, reason="needs /dev/shm on tmpfs")
needs_disk_repo = pytest.mark.skipif(not REPO_ON_DISK, reason="the checkout is not on a disk")
needs_linux_shm = pytest.mark.skipif(
    not shm_is_tmpfs(), reason="needs Linux with /dev/shm on tmpfs"
)

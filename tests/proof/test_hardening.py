"""Process hardening on this machine, in a subprocess: core dumps, TMPDIR, locked memory,
/proc/self/io.

Hardening changes the process for good (core limit, dumpable flag, TMPDIR, locked memory),
so whatever calls apply_process_hardening runs in a subprocess that prints JSON results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cache.proof import sysfacts
from tests.support import ROOT
from tests.support.system import REPO_ON_DISK, needs_disk_repo, no_swap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="G1 checks need Linux")


# -- process hardening, in a subprocess --------------------------------------------------

SCRIPT = """
import json, os, sys, tempfile
from cache.config import Config, with_overrides
from cache.proof.guarantees import Guarantees
a = json.loads(sys.argv[1])
cfg = with_overrides(Config(), storage={"backend": a["backend"], "path": a["path"]},
                     guarantees=a["guarantees"])
g = Guarantees(cfg, a["backend"], a["path"], shm=a["shm"])
g.apply_process_hardening()
out = {"before": [r.as_dict() for r in g.run_checks()]}
out["fatal"] = [r.name for r in g.startup_failures(g.results)]
if a.get("allocate"):
    block = bytearray(a["allocate"])
    block[::4096] = b"x" * len(block[::4096])
if a.get("write_to"):
    with open(a["write_to"], "wb") as handle:
        handle.write(os.urandom(a["write_bytes"]))
    os.unlink(a["write_to"])
out["after"] = [r.as_dict() for r in g.run_checks()]
out["tmpdir"] = tempfile.gettempdir()
print(json.dumps(out))
"""


# Lowers RLIMIT_MEMLOCK and drops CAP_IPC_LOCK from the bounding set, then execs the child:
# root's capabilities after exec come from the bounding set, so the child runs without it.
SMALL_MEMLOCK = (
    "import ctypes, os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536)); "
    "ctypes.CDLL(None).prctl(24, 14, 0, 0, 0); "  # PR_CAPBSET_DROP, CAP_IPC_LOCK
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _harden(
    shm: Path,
    backend: str = "memory",
    *,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Build Guarantees in a fresh interpreter, harden it, return its results by name."""
    args = {"backend": backend, "path": str(shm / "store"), "shm": str(shm), "guarantees": {}}
    args.update(extra)
    command = [*prefix, sys.executable, "-c", SCRIPT, json.dumps(args)]
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        command, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    for key in ("before", "after"):
        out[key] = {r["name"]: r for r in out[key]}
    return out


def test_default_config_starts_here(shm: Path) -> None:
    """Memory backend, strict, lock_memory: nothing fatal on an ordinary box without swap."""
    out = _harden(shm, env={"TMPDIR": str(ROOT)} if REPO_ON_DISK else None)
    results = out["before"]
    assert results["storage_is_ram"]["status"] == "ok"
    assert results["core_dumps_off"] == {
        "name": "core_dumps_off",
        "status": "ok",
        "reason": "RLIMIT_CORE 0/0, dumpable 0",
    }
    assert results["tmpdir_safe"]["status"] == "ok", results["tmpdir_safe"]
    assert results["memory_locked"]["status"] in ("ok", "skipped", "fail")
    assert results["memory_locked"]["reason"]
    if no_swap():
        assert results["swap_safe"]["status"] == "ok"
        assert out["fatal"] == []
    if REPO_ON_DISK:  # TMPDIR pointed at a disk: hardening moved it to a 0700 folder in RAM
        assert out["tmpdir"] == str(shm / f"query-cache-tmp-{os.geteuid()}")
        assert (shm / f"query-cache-tmp-{os.geteuid()}").stat().st_mode & 0o777 == 0o700


@needs_disk_repo
def test_tmpdir_name_taken_by_an_unsafe_folder_gets_a_fresh_one(shm: Path) -> None:
    taken = shm / f"query-cache-tmp-{os.geteuid()}"
    taken.mkdir(mode=0o755)
    taken.chmod(0o755)
    out = _harden(shm, env={"TMPDIR": str(ROOT)}, guarantees={"lock_memory": False})
    assert out["tmpdir"].startswith(str(shm / "query-cache-tmp-")) and out["tmpdir"] != str(taken)
    assert out["before"]["tmpdir_safe"]["status"] == "ok"


def test_tmpfs_backend_gets_its_tmpdir_inside_the_storage_folder(shm: Path) -> None:
    out = _harden(shm, "tmpfs", env={"TMPDIR": str(ROOT)} if REPO_ON_DISK else None)
    assert out["before"]["storage_is_ram"]["status"] == "ok"
    assert out["before"]["tmpdir_safe"]["status"] == "ok"
    if REPO_ON_DISK:
        assert out["tmpdir"] == str(shm / "store" / ".tmp")


def _can_drop_ipc_lock() -> bool:
    caps = sysfacts.cap_effective("/proc/self/status") or 0
    has_ipc_lock = bool(caps >> sysfacts.CAP_IPC_LOCK & 1)
    has_setpcap = bool(caps >> 8 & 1)
    return not has_ipc_lock or has_setpcap


@pytest.mark.skipif(not _can_drop_ipc_lock(), reason="cannot drop CAP_IPC_LOCK here")
def test_memory_lock_skipped_under_a_small_memlock_limit(shm: Path) -> None:
    out = _harden(
        shm,
        prefix=(sys.executable, "-c", SMALL_MEMLOCK),
        allocate=64 * 1024 * 1024,  # the process still allocates after hardening
    )
    locked = out["before"]["memory_locked"]
    assert locked["status"] == "skipped", locked
    assert locked["reason"].startswith("RLIMIT_MEMLOCK is 64 KiB (hard 64 KiB), below the 1280 MiB")
    assert "no CAP_IPC_LOCK" in locked["reason"]
    assert out["after"]["memory_locked"] == locked
    if no_swap():
        assert out["after"]["swap_safe"]["status"] == "ok"
        assert out["fatal"] == []


@needs_disk_repo
def test_no_disk_writes_fails_after_writing_to_disk(shm: Path) -> None:
    target = ROOT / f".qc-disk-write-test-{uuid.uuid4().hex}"
    try:
        out = _harden(
            shm,
            guarantees={"lock_memory": False},
            write_to=str(target),
            write_bytes=3 * 1024 * 1024,
        )
    finally:
        target.unlink(missing_ok=True)
    assert out["before"]["no_disk_writes"]["status"] == "ok", out["before"]["no_disk_writes"]
    after = out["after"]["no_disk_writes"]
    assert after["status"] == "fail" and "bound 1048576" in after["reason"]
    assert "no_disk_writes" not in out["fatal"]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_no_disk_writes_still_readable_once_undumpable_and_unprivileged(shm: Path) -> None:
    """Non-dumpable makes /proc/self/io root-owned: the fd opened before keeps it readable."""
    out = _harden(
        shm,
        env={"TMPDIR": "/dev/shm"},
        guarantees={"lock_memory": False},
        prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"),
    )
    assert out["before"]["core_dumps_off"]["status"] == "ok"
    assert out["after"]["no_disk_writes"]["status"] == "ok", out["after"]["no_disk_writes"]


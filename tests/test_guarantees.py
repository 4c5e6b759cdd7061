"""The G1 self-checks on this machine's real filesystems and /proc.

Hardening changes the process for good (core limit, dumpable flag, TMPDIR, locked memory),
so whatever calls apply_process_hardening runs in a subprocess that prints JSON results.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache.config import Config, with_overrides
from cache.proof import sysfacts
from cache.proof.guarantees import CHECKS, CheckResult, Guarantees, format_failure

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="G1 checks need Linux")


def _fs(path: Path) -> int | None:
    try:
        return sysfacts.statfs_magic(str(path))
    except OSError:
        return None


REPO_ON_DISK = _fs(REPO) not in (*sysfacts.RAM_MAGICS, None)
SHM_IS_TMPFS = _fs(Path("/dev/shm")) == sysfacts.TMPFS_MAGIC
needs_shm = pytest.mark.skipif(not SHM_IS_TMPFS, reason="needs /dev/shm on tmpfs")
needs_disk_repo = pytest.mark.skipif(not REPO_ON_DISK, reason="the checkout is not on a disk")


def _no_swap() -> bool:
    return sysfacts.active_swaps("/proc/swaps") == []


def _config(
    backend: str = "memory", path: str = "/dev/shm/query-cache", **guarantees: Any
) -> Config:
    return with_overrides(
        Config(), storage={"backend": backend, "path": path}, guarantees=guarantees
    )


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


@pytest.fixture
def shm() -> Iterator[Path]:
    if not SHM_IS_TMPFS:
        pytest.skip("needs /dev/shm on tmpfs")
    parent = Path(tempfile.mkdtemp(prefix="qc-guarantees-test-", dir="/dev/shm"))
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


# -- storage_is_ram ------------------------------------------------------------------------


@needs_shm
def test_storage_is_ram_ok_on_dev_shm(shm: Path) -> None:
    path = str(shm / "store")  # not created yet: its nearest parent decides
    result = _by_name(Guarantees(_config("tmpfs", path), "tmpfs", path).run_checks())
    assert result["storage_is_ram"].status == "ok"
    assert result["storage_is_ram"].reason == f"{path} is on tmpfs (0x1021994)"


@needs_disk_repo
def test_storage_is_ram_fails_under_the_checkout_with_one_line() -> None:
    path = str(REPO / "not-a-tmpfs")
    found = sysfacts.describe_magic(_fs(REPO) or 0)
    guarantees = Guarantees(_config("tmpfs", path), "tmpfs", path)
    results = guarantees.run_checks()
    storage = _by_name(results)["storage_is_ram"]
    assert storage.status == "fail"
    fatal = guarantees.startup_failures(results)
    assert storage in fatal
    line = format_failure(storage, path)
    assert line == (
        f"storage.path: {path} is on {found}, not tmpfs or ramfs; "
        "mount a tmpfs there or set guarantees.require_tmpfs = false"
    )
    assert "\n" not in line
    assert not (REPO / "not-a-tmpfs").exists()  # a check never creates the folder


def test_storage_is_ram_for_other_backends() -> None:
    memory = _by_name(Guarantees(_config(), "memory", None).run_checks())["storage_is_ram"]
    assert memory.status == "ok" and "memory backend" in memory.reason
    redis = _by_name(Guarantees(_config("redis"), "redis", None).run_checks())["storage_is_ram"]
    assert redis.status == "unknown"


@needs_shm
def test_mountinfo_fallback_when_statfs_is_out_of_reach(
    shm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysfacts, "libc", lambda: None)
    path = str(shm / "store")
    storage = _by_name(Guarantees(_config("tmpfs", path), "tmpfs", path).run_checks())
    assert storage["storage_is_ram"].status == "ok"
    assert "mountinfo" in storage["storage_is_ram"].reason


# -- what stops start-up -------------------------------------------------------------------


def _all(status: Any) -> list[CheckResult]:
    return [CheckResult(name, status, "test") for name in CHECKS]


@pytest.mark.parametrize(
    ("backend", "settings", "fatal"),
    [
        ("tmpfs", {}, {"storage_is_ram", "swap_safe", "core_dumps_off", "tmpdir_safe"}),
        ("tmpfs", {"require_tmpfs": False}, {"swap_safe", "core_dumps_off", "tmpdir_safe"}),
        ("memory", {}, {"swap_safe", "core_dumps_off", "tmpdir_safe"}),
        ("tmpfs", {"strict": False}, set()),
        ("memory", {"strict": False}, set()),
    ],
)
@pytest.mark.parametrize("status", ["fail", "unknown", "skipped"])
def test_startup_failures(
    backend: str, settings: dict[str, bool], fatal: set[str], status: str
) -> None:
    guarantees = Guarantees(_config(backend, "/dev/shm/x", **settings), backend, "/dev/shm/x")
    assert {r.name for r in guarantees.startup_failures(_all(status))} == fatal
    assert guarantees.startup_failures(_all("ok")) == []


def test_format_failure_for_other_checks_is_one_line() -> None:
    result = CheckResult("swap_safe", "fail", "swap is active (/dev/sda2) and memory is not locked")
    line = format_failure(result, "/dev/shm/x")
    assert line.startswith("guarantees: swap_safe is fail: swap is active") and "\n" not in line


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
    child_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run(
        command, cwd=REPO, env=child_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    for key in ("before", "after"):
        out[key] = {r["name"]: r for r in out[key]}
    return out


def test_default_config_starts_here(shm: Path) -> None:
    """Memory backend, strict, lock_memory: nothing fatal on an ordinary box without swap."""
    out = _harden(shm, env={"TMPDIR": str(REPO)} if REPO_ON_DISK else None)
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
    if _no_swap():
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
    out = _harden(shm, env={"TMPDIR": str(REPO)}, guarantees={"lock_memory": False})
    assert out["tmpdir"].startswith(str(shm / "query-cache-tmp-")) and out["tmpdir"] != str(taken)
    assert out["before"]["tmpdir_safe"]["status"] == "ok"


def test_tmpfs_backend_gets_its_tmpdir_inside_the_storage_folder(shm: Path) -> None:
    out = _harden(shm, "tmpfs", env={"TMPDIR": str(REPO)} if REPO_ON_DISK else None)
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
    if _no_swap():
        assert out["after"]["swap_safe"]["status"] == "ok"
        assert out["fatal"] == []


@needs_disk_repo
def test_no_disk_writes_fails_after_writing_to_disk(shm: Path) -> None:
    target = REPO / f".qc-disk-write-test-{uuid.uuid4().hex}"
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


# -- memory_locked and swap_safe, in-process with mlockall replaced ------------------------


def _fake_lock(monkeypatch: pytest.MonkeyPatch, outcomes: list[int]) -> list[int]:
    calls: list[int] = []

    def mlockall(flags: int) -> None:
        calls.append(flags)
        if outcomes:
            code = outcomes.pop(0)
            if code:
                raise OSError(code, f"mlockall: {os.strerror(code)}")

    monkeypatch.setattr(sysfacts, "mlockall", mlockall)
    monkeypatch.setattr(sysfacts, "may_lock_memory", lambda need, status: (True, "test"))
    return calls


def test_memory_lock_failure_reports_errno_text(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_lock(monkeypatch, [errno.ENOMEM])
    result = Guarantees(_config(), "memory", None).lock_memory()
    assert result.status == "fail"
    assert result.reason == "mlockall: Cannot allocate memory (errno 12) with test"


def test_memory_lock_falls_back_without_onfault(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lock(monkeypatch, [errno.EINVAL, 0])
    result = Guarantees(_config(), "memory", None).lock_memory()
    assert result.status == "ok" and result.reason == "mlockall(MCL_CURRENT|MCL_FUTURE) done (test)"
    assert calls == [7, 3]


def test_memory_lock_off_by_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lock(monkeypatch, [])
    result = Guarantees(_config(lock_memory=False), "memory", None).lock_memory()
    assert result.status == "skipped" and "lock_memory is false" in result.reason
    assert calls == []


def _status_file(tmp_path: Path, caps: int) -> str:
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython\nCapEff:\t{caps:016x}\n")
    return str(status)


MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("caps", "limits", "allowed", "reason", "raised_to"),
    [
        (1 << 14, (0, 0), True, "CAP_IPC_LOCK", None),
        (0, (-1, -1), True, "RLIMIT_MEMLOCK unlimited", None),
        (0, (512 * MiB, 512 * MiB), True, "RLIMIT_MEMLOCK 512 MiB", None),
        (0, (8 * MiB, -1), True, "RLIMIT_MEMLOCK raised to 300 MiB", 300 * MiB),
        (0, (8 * MiB, 400 * MiB), True, "RLIMIT_MEMLOCK raised to 300 MiB", 300 * MiB),
        (0, (8 * MiB, 8 * MiB), False, "RLIMIT_MEMLOCK is 8 MiB (hard 8 MiB), below", None),
    ],
)
def test_may_lock_memory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caps: int,
    limits: tuple[int, int],
    allowed: bool,
    reason: str,
    raised_to: int | None,
) -> None:
    monkeypatch.setattr(resource, "RLIM_INFINITY", -1)
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits)
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda which, value: raised.append(value))
    got_allowed, got_reason = sysfacts.may_lock_memory(300 * MiB, _status_file(tmp_path, caps))
    assert got_allowed is allowed
    assert got_reason.startswith(reason)
    assert raised == ([] if raised_to is None else [(raised_to, limits[1])])


def _fake_proc(root: Path, swaps: str, mountinfo: str) -> str:
    (root / "self").mkdir(parents=True)
    (root / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n" + swaps)
    (root / "self" / "mountinfo").write_text(mountinfo)
    return str(root)


MOUNTS = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "30 27 0:27 / /srv/qc rw,relatime - tmpfs tmpfs rw,size=1g\n"
    "31 27 0:28 / /srv/qc rw,relatime - tmpfs tmpfs rw,size=1g,noswap\n"
    "32 27 0:29 / /srv/with\\040space rw - tmpfs tmpfs rw\n"
)


@pytest.mark.parametrize(
    ("backend", "path", "locked", "status"),
    [
        ("memory", None, False, "fail"),
        ("memory", None, True, "ok"),
        ("tmpfs", "/srv/qc/store", True, "ok"),  # the stacked noswap mount wins
        ("tmpfs", "/srv/with space/store", True, "fail"),
        ("tmpfs", "/srv/with space/store", False, "fail"),
    ],
)
def test_swap_safe_with_active_swap(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    path: str | None,
    locked: bool,
    status: str,
) -> None:
    proc = _fake_proc(tmp_path / "proc", "/dev/sda2 partition 1024 0 -2\n", MOUNTS)
    guarantees = Guarantees(_config(backend), backend, path, proc=proc)
    _fake_lock(monkeypatch, [])
    if locked:
        assert guarantees.lock_memory().ok
    result = _by_name(guarantees.run_checks())["swap_safe"]
    assert result.status == status, result
    assert "/dev/sda2" in result.reason


def test_swap_safe_without_swap(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path / "proc", "", MOUNTS)
    result = _by_name(Guarantees(_config(), "memory", None, proc=proc).run_checks())["swap_safe"]
    assert result.status == "ok" and result.reason == "no active swap"


# -- tmpdir_safe, and nothing is "ok" when the platform cannot tell --------------------------


@needs_shm
def test_tmpdir_safe(shm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(shm))
    result = _by_name(Guarantees(_config(), "memory", None).run_checks())["tmpdir_safe"]
    assert result.status == "ok"
    if REPO_ON_DISK:
        monkeypatch.setattr(tempfile, "tempdir", str(REPO))
        result = _by_name(Guarantees(_config(), "memory", None).run_checks())["tmpdir_safe"]
        assert result.status == "fail" and str(REPO) in result.reason


def test_unknown_when_proc_and_libc_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysfacts, "libc", lambda: None)
    empty = tmp_path / "no-proc"
    empty.mkdir()
    guarantees = Guarantees(_config("tmpfs", "/dev/shm/x"), "tmpfs", "/dev/shm/x", proc=str(empty))
    monkeypatch.setattr(guarantees, "disable_core_dumps", lambda: None)  # keep this process
    guarantees.apply_process_hardening()  # no libc, no /proc: nothing else can change
    results = _by_name(guarantees.run_checks())
    assert {name: r.status for name, r in results.items()} == {
        "storage_is_ram": "unknown",
        "swap_safe": "unknown",
        "memory_locked": "unknown",
        "core_dumps_off": "unknown",
        "tmpdir_safe": "unknown",
        "no_disk_writes": "unknown",
    }
    assert guarantees.results == list(results.values())


def test_a_check_that_raises_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> list[str] | None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sysfacts, "active_swaps", broken)
    result = _by_name(Guarantees(_config(), "memory", None).run_checks())["swap_safe"]
    assert result.status == "unknown" and "boom" in result.reason


def test_mount_of_parses_escapes_and_prefers_the_top_mount(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTS)
    spaced = sysfacts.mount_of("/srv/with space/x", str(mountinfo))
    assert spaced is not None and spaced.point == "/srv/with space"
    stacked = sysfacts.mount_of("/srv/qc", str(mountinfo))
    assert stacked is not None and "noswap" in stacked.options
    root = sysfacts.mount_of("/srv/qcx", str(mountinfo))
    assert root is not None and root.fstype == "ext4"
    assert sysfacts.mount_of("/x", str(tmp_path / "missing")) is None

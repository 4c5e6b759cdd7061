"""memory_locked and swap_safe, in-process with mlockall and /proc replaced."""

from __future__ import annotations

import errno
import os
import resource
import sys
from pathlib import Path

import pytest

from cache.proof import sysfacts
from cache.proof.guarantees import Guarantees
from tests.support.guarantees import MOUNTS, by_name, checks_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="G1 checks need Linux")


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
    result = Guarantees(checks_config(), "memory", None).lock_memory()
    assert result.status == "fail"
    assert result.reason == "mlockall: Cannot allocate memory (errno 12) with test"


def test_memory_lock_falls_back_without_onfault(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lock(monkeypatch, [errno.EINVAL, 0])
    result = Guarantees(checks_config(), "memory", None).lock_memory()
    assert result.status == "ok"
    assert result.reason.startswith("mlockall(MCL_CURRENT|MCL_FUTURE) done (test); ")
    assert calls == [7, 3]


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        ("memory", "purged items' pages go back to the kernel: each item is in a mapping"),
        ("tmpfs", "purged items' pages go back to the kernel: tmpfs files, unlinked"),
        ("redis", "held by the redis server"),
    ],
)
def test_memory_locked_says_whether_purged_memory_goes_back(
    monkeypatch: pytest.MonkeyPatch, backend: str, says: str
) -> None:
    _fake_lock(monkeypatch, [0])
    result = Guarantees(checks_config(), backend, None).lock_memory()
    assert result.status == "ok" and says in result.reason
    if backend == "memory":  # this kernel (5.18+) drops locked pages in place
        assert result.reason.endswith(f"({sysfacts.locked_pages_drop()})")


def test_memory_lock_off_by_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_lock(monkeypatch, [])
    result = Guarantees(checks_config(lock_memory=False), "memory", None).lock_memory()
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
    guarantees = Guarantees(checks_config(backend), backend, path, proc=proc)
    _fake_lock(monkeypatch, [])
    if locked:
        assert guarantees.lock_memory().ok
    result = by_name(guarantees.run_checks())["swap_safe"]
    assert result.status == status, result
    assert "/dev/sda2" in result.reason


def test_swap_safe_without_swap(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path / "proc", "", MOUNTS)
    guarantees = Guarantees(checks_config(), "memory", None, proc=proc)
    result = by_name(guarantees.run_checks())["swap_safe"]
    assert result.status == "ok" and result.reason == "no active swap"


"""The G1 self-checks on this machine's real filesystems and /proc: storage_is_ram, what
stops start-up, tmpdir_safe, and "unknown" (never "ok") when the platform cannot tell.

Process hardening is in test_hardening.py; memory locking and swap in test_memory_and_swap.py.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cache.proof import sysfacts
from cache.proof.guarantees import CHECKS, CheckResult, Guarantees, format_failure
from tests.support import ROOT
from tests.support.guarantees import MOUNTS, by_name, checks_config
from tests.support.system import REPO_ON_DISK, fs_magic, needs_disk_repo, needs_shm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="G1 checks need Linux")


# -- storage_is_ram ------------------------------------------------------------------------


@needs_shm
def test_storage_is_ram_ok_on_dev_shm(shm: Path) -> None:
    path = str(shm / "store")  # not created yet: its nearest parent decides
    result = by_name(Guarantees(checks_config("tmpfs", path), "tmpfs", path).run_checks())
    assert result["storage_is_ram"].status == "ok"
    assert result["storage_is_ram"].reason == f"{path} is on tmpfs (0x1021994)"


@needs_disk_repo
def test_storage_is_ram_fails_under_the_checkout_with_one_line() -> None:
    path = str(ROOT / "not-a-tmpfs")
    found = sysfacts.describe_magic(fs_magic(ROOT) or 0)
    guarantees = Guarantees(checks_config("tmpfs", path), "tmpfs", path)
    results = guarantees.run_checks()
    storage = by_name(results)["storage_is_ram"]
    assert storage.status == "fail"
    fatal = guarantees.startup_failures(results)
    assert storage in fatal
    line = format_failure(storage, path)
    assert line == (
        f"storage.path: {path} is on {found}, not tmpfs or ramfs; "
        "mount a tmpfs there or set guarantees.require_tmpfs = false"
    )
    assert "\n" not in line
    assert not (ROOT / "not-a-tmpfs").exists()  # a check never creates the folder


def test_storage_is_ram_for_other_backends() -> None:
    memory = by_name(Guarantees(checks_config(), "memory", None).run_checks())["storage_is_ram"]
    assert memory.status == "ok" and "memory backend" in memory.reason
    redis = by_name(Guarantees(checks_config("redis"), "redis", None).run_checks())
    assert redis["storage_is_ram"].status == "unknown"


@needs_shm
def test_mountinfo_fallback_when_statfs_is_out_of_reach(
    shm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysfacts, "libc", lambda: None)
    path = str(shm / "store")
    storage = by_name(Guarantees(checks_config("tmpfs", path), "tmpfs", path).run_checks())
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
    guarantees = Guarantees(checks_config(backend, "/dev/shm/x", **settings), backend, "/dev/shm/x")
    assert {r.name for r in guarantees.startup_failures(_all(status))} == fatal
    assert guarantees.startup_failures(_all("ok")) == []


def test_format_failure_for_other_checks_is_one_line() -> None:
    result = CheckResult("swap_safe", "fail", "swap is active (/dev/sda2) and memory is not locked")
    line = format_failure(result, "/dev/shm/x")
    assert line.startswith("guarantees: swap_safe is fail: swap is active") and "\n" not in line


# -- tmpdir_safe, and nothing is "ok" when the platform cannot tell --------------------------


@needs_shm
def test_tmpdir_safe(shm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(shm))
    result = by_name(Guarantees(checks_config(), "memory", None).run_checks())["tmpdir_safe"]
    assert result.status == "ok"
    if REPO_ON_DISK:
        monkeypatch.setattr(tempfile, "tempdir", str(ROOT))
        result = by_name(Guarantees(checks_config(), "memory", None).run_checks())["tmpdir_safe"]
        assert result.status == "fail" and str(ROOT) in result.reason


def test_unknown_when_proc_and_libc_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysfacts, "libc", lambda: None)
    empty = tmp_path / "no-proc"
    empty.mkdir()
    guarantees = Guarantees(
        checks_config("tmpfs", "/dev/shm/x"), "tmpfs", "/dev/shm/x", proc=str(empty)
    )
    monkeypatch.setattr(guarantees, "disable_core_dumps", lambda: None)  # keep this process
    guarantees.apply_process_hardening()  # no libc, no /proc: nothing else can change
    results = by_name(guarantees.run_checks())
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
    result = by_name(Guarantees(checks_config(), "memory", None).run_checks())["swap_safe"]
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

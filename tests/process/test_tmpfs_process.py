"""The tmpfs backend under real `server.py` processes: start-up sweep after kill -9, refusal
on a disk folder, and `guarantees.require_tmpfs = false`.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT, images
from tests.support.serverproc import ServerFactory
from tests.support.service import parse_metrics
from tests.support.system import files_in, needs_linux_shm

pytestmark = needs_linux_shm


def test_kill_9_then_restart_leaves_zero_files(
    shm_dir: Path, server_process: ServerFactory
) -> None:
    env = {"CACHE_STORAGE_BACKEND": "tmpfs", "CACHE_STORAGE_PATH": str(shm_dir)}
    first = server_process(env=env).start()
    try:
        for _ in range(20):
            first.upload(images.png(), "?ttl=300")
        assert len(files_in(shm_dir)) == 20
    finally:
        first.stop(signal.SIGKILL)
    assert len(files_in(shm_dir)) == 20  # a crash leaves only tmpfs files...
    second = server_process(env=env).start()  # ...start() returns once /readyz is 200
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


def test_refuses_to_start_on_a_disk_folder(server_process: ServerFactory) -> None:
    folder = Path(tempfile.mkdtemp(prefix=".qc-disk-", dir=ROOT)) / "store"
    try:
        proc = server_process(
            env={"CACHE_STORAGE_BACKEND": "tmpfs", "CACHE_STORAGE_PATH": str(folder)}
        )
        with pytest.raises(RuntimeError, match="exited 2"):
            proc.start()
        [line] = proc.stderr.strip().splitlines()
        assert "storage.path" in line and str(folder) in line and "not tmpfs" in line
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_require_tmpfs_false_starts_and_reports_0(
    shm_dir: Path, server_process: ServerFactory
) -> None:
    folder = Path(tempfile.mkdtemp(prefix=".qc-disk-", dir=ROOT)) / "store"
    try:
        proc = server_process(
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

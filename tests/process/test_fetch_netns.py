"""End-to-end refusals through the real service, inside a fresh network namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT


def test_corpus_refused_end_to_end_with_no_network_at_all() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with unshare and ip: this test must run there")
        pytest.skip("needs root, unshare and ip to make a network namespace")
    script = f"ip link set lo up && exec {sys.executable} -m tests.process.netns_fetch_e2e"
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (summary, result.stderr[-2000:])
    assert summary["refused_tested"] >= 80
    assert summary["wrong"] == [] and summary["sentinel_connections"] == 0
    assert summary["control_status"] == 201

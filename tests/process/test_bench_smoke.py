"""The benches still run end to end and still produce every key of results.json.

`python -m bench --smoke` runs every bench once at its smallest sizes (about half a minute)
and writes to a temporary path. Nothing here asserts a timing or a target: only that each
key is there, a number (a bool for `flood_retry_after_present`), or null with its reason in
`na` (e.g. a backend this version lacks). Without wrk, redis-server or memcached the test
skips, except in CI (env CI set), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import KEYS, TOOLS
from tests.support import ROOT

BOOL_KEYS = {"flood_retry_after_present"}


@pytest.mark.timeout(240)
def test_smoke_run_produces_every_key(tmp_path: Path) -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not found (`make system-deps` installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "smoke" and not results["errors"]
    for key in KEYS:
        assert key in results, key
        value = results[key]
        if value is None:
            assert results["na"].get(key), f"{key} is null without a reason in `na`"
        elif key in BOOL_KEYS:
            assert isinstance(value, bool), (key, value)
        else:
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
    columns = {"metric", "service", "reference", "ratio", "target", "met"}
    assert results["rows"] and all(columns <= set(row) for row in results["rows"])

"""The soak script behind the README's picture keeps working (smallest run, no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_soak_writes_a_png_and_leaves_nothing_held(tmp_path: Path) -> None:
    out = tmp_path / "soak.png"
    result = subprocess.run(
        [sys.executable, "scripts/soak.py", "--seconds", "1", "--rate", "30", "--max-ttl", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["held_at_end"] == 0 and summary["purged"]
    assert out.read_bytes().startswith(b"\x89PNG")

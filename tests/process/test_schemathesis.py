"""The fuzzer-style run: schemathesis (installed by the `test` extra, pinned with hashes in
requirements.lock) against the OpenAPI that a real server process serves, every check,
a fixed seed and a bounded number of examples per operation, so it always runs the same.

Settings that a schema cannot carry (a schema-valid body may still be no image) are in
tests/process/schemathesis.toml, with why. The server fetches nothing (`fetch.ports` is
empty): every URL the fuzzer makes up is refused before any lookup, so no request leaves
loopback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.serverproc import ServerFactory
from tests.support.service import parse_metrics

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "20261201"
EXAMPLES = "40"  # per operation and phase: about 1,000 requests, a few seconds


def test_schemathesis_every_check_passes(server_process: ServerFactory, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    assert st.exists(), "schemathesis is in the test extra: run `make install`"
    server = server_process(env={"CACHE_FETCH_PORTS": "[]"}).start()
    run = subprocess.run(
        [
            str(st),
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            EXAMPLES,
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--continue-on-failure",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert "passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]
    metrics = parse_metrics(server.metrics_text())
    assert not [key for key in metrics if 'status="500"' in key], "a 500 was answered"
    assert server.stop() == 0
    assert "Traceback" not in server.stderr, server.stderr[-5_000:]

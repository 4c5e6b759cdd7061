"""Metrics hygiene against real tools: promtool on a real scrape, a real Prometheus.

The scraped service is the `busy_server` fixture (tests/process/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy_files import ALERTS as RULES
from tests.support.deploy_files import alert_rules_metric_names, dashboard_metric_names
from tests.support.serverproc import ServerProcess, free_port
from tests.support.service import parse_metrics
from tests.support.waiting import wait_for


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: make test installs it (scripts/system-deps.sh)")
        pytest.skip(f"{tool} is not installed (make system-deps installs it)")
    return path


def test_promtool_check_metrics_on_a_real_scrape(busy_server: ServerProcess) -> None:
    promtool = need("promtool")
    scrape = busy_server.metrics_text()
    metrics = parse_metrics(scrape)
    for reason in ("ttl", "read_limit", "delete", "admin"):
        assert metrics[f'cache_purged_total{{reason="{reason}"}}'] >= 1, reason
    assert metrics['cache_rejected_total{reason="unsupported-format"}'] == 1
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
    for line in scrape.splitlines():  # every family has HELP text
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4 and line.split(" ", 3)[3].strip(), line


def test_a_real_prometheus_scrapes_and_evaluates_a_rule(busy_server: ServerProcess) -> None:
    prometheus = need("prometheus")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="qc-prom-", dir="/dev/shm"))
    config = workdir / "prometheus.yml"
    shutil.copy(RULES, workdir / "alerts.yml")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - alerts.yml\n"
        "scrape_configs:\n  - job_name: query-cache\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{busy_server.ops_port}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        url = f"{api}/query?query={urllib.parse.quote(expr)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return list(json.load(response)["data"]["result"])
        except OSError:
            return []

    try:
        samples = wait_for(
            lambda: query('cache_purged_total{reason="ttl"}'),
            60,
            "a scraped sample of cache_purged_total",
        )
        assert float(samples[0]["value"][1]) >= 1
        ratio = wait_for(
            lambda: query("instance:cache_items_used:ratio"),
            60,
            "the recording rule instance:cache_items_used:ratio",
        )
        assert 0 < float(ratio[0]["value"][1]) < 1
        with urllib.request.urlopen(f"{api}/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert rules and all(rule["health"] == "ok" for rule in rules), rules
        assert {"CacheTTLViolation", "CacheTargetDown"} <= {r["name"] for r in rules}
        up = query('up{job="query-cache"}')
        assert float(up[0]["value"][1]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def test_dashboard_and_alerts_name_only_metrics_of_a_real_scrape(
    busy_server: ServerProcess,
) -> None:
    families = {f.name for f in text_string_to_metric_families(busy_server.metrics_text())}
    # prometheus_client names counter families without `_total`; queries use the sample name.
    scraped = families | {name + "_total" for name in families} | {"up"}
    assert dashboard_metric_names() - scraped == set()
    assert alert_rules_metric_names() - scraped == set()

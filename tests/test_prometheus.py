"""Metrics hygiene against real tools: promtool on a real scrape, a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import images
from tests.conftest import parse_metrics
from tests.serverproc import ROOT, TOKEN, ServerProcess, free_port

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: make test installs it (scripts/system-deps.sh)")
        pytest.skip(f"{tool} is not installed (make system-deps installs it)")
    return path


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def busy_server() -> Iterator[ServerProcess]:
    """A running service that has stored, read, expired, deleted, purged and rejected items."""
    server = ServerProcess(env={"CACHE_TTL_SWEEP_INTERVAL": "0.2"}).start()
    kept = server.upload(images.jpeg(), "?ttl=300")
    server.request("GET", f"/v1/images/{kept['id']}")
    once = server.upload(images.png(), "?max_reads=1")
    server.request("GET", f"/v1/images/{once['id']}")
    gone = server.upload(images.gif())
    server.request("DELETE", f"/v1/images/{gone['id']}")
    server.upload(images.webp(), "?ttl=1")
    server.request("POST", "/v1/images", images.HTML)
    server.request("POST", "/v1/images", images.png_bomb())
    server.request("GET", "/v1/images/AAAAAAAAAAAAAAAAAAAAAA")
    admin = server.upload(images.bmp())
    server.request(
        "POST",
        "/admin/purge",
        json.dumps({"ids": [admin["id"]]}).encode(),
        ops=True,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    wait_for(
        lambda: parse_metrics(server.metrics_text()).get('cache_purged_total{reason="ttl"}'),
        what="the ttl=1 item to expire",
    )
    yield server
    assert server.stop() == 0


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
    from prometheus_client.parser import text_string_to_metric_families

    from tests.test_deploy import alert_rules_metric_names, dashboard_metric_names

    families = {f.name for f in text_string_to_metric_families(busy_server.metrics_text())}
    # prometheus_client names counter families without `_total`; queries use the sample name.
    scraped = families | {name + "_total" for name in families} | {"up"}
    assert dashboard_metric_names() - scraped == set()
    assert alert_rules_metric_names() - scraped == set()

"""Static checks of the Grafana dashboard: structure, job selector, panels, valid PromQL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.support.deploy_files import (
    JOB,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    promql_metric_names,
    promtool_or_skip,
)


def test_dashboard_structure() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = list(dashboard_panels(board))
    assert panels
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel.get("title"), f"panel {panel.get('id')} has no title"
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr") for t in targets), panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in targets:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_selects_the_job() -> None:
    for expr in dashboard_exprs():
        jobs = re.findall(r'job\s*=~?\s*"([^"]*)"', expr)
        assert jobs and set(jobs) == {JOB}, expr


def test_dashboard_required_panels() -> None:
    panels = list(dashboard_panels())

    def kinds_using(metric: str) -> set[str]:
        return {
            panel["type"]
            for panel in panels
            if any(metric in promql_metric_names(t["expr"]) for t in panel["targets"])
        }

    assert "heatmap" in kinds_using("cache_purge_lag_seconds")
    heatmap = next(p for p in panels if p["type"] == "heatmap")
    assert "cache_purge_lag_seconds_bucket" in heatmap["targets"][0]["expr"]
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert kinds_using("cache_guarantee_ok") & {"table", "stat", "state-timeline"}
    for metric in (
        "cache_items",
        "cache_bytes",
        "cache_residency_seconds",
        "cache_purged_total",
        "cache_ttl_violations_total",
        "cache_fetch_total",
        "cache_expired_reads_refused_total",
        "cache_rejected_total",
    ):
        assert kinds_using(metric), f"no panel shows {metric}"
    latency = [
        t["expr"]
        for p in panels
        for t in p["targets"]
        if "cache_request_duration_seconds_bucket" in t["expr"]
    ]
    for quantile in ("0.5", "0.99"):
        assert any(f"histogram_quantile({quantile}," in e and "route" in e for e in latency)


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    promtool = promtool_or_skip()
    substitutions = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$instance": ".*",
    }
    rules = []
    for number, expr in enumerate(dashboard_exprs()):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:expr_{number}:check", "expr": expr})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

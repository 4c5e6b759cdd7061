"""The Prometheus rules, their promtool unit tests and the example scrape configuration.

promtool runs the checks for real (`check rules`, `test rules`, `check config`). Without
promtool these tests are skipped, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from cache.config import Config
from tests.support.deploy_files import (
    ALERTS,
    ALERTS_TEST,
    JOB,
    PROMETHEUS,
    PROMETHEUS_CONFIG,
    alert_rules,
    promtool_or_skip,
)

RUNBOOK = "https://github.com/example/query-cache/blob/main/README.md#runbook-{}"
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PROMETHEUS, capture_output=True, text=True, check=False)


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in alert_rules() if "alert" in rule]


def _alert_names() -> list[str]:
    return [rule["alert"] for rule in _alerts()]


def _alert_cases() -> list[tuple[str, str, bool]]:
    """(test name, alert name, fires?) for every alert_rule_test in alerts_test.yml."""
    data = yaml.safe_load(ALERTS_TEST.read_text())
    cases = []
    for test in data["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.append((test.get("name", "?"), case["alertname"], bool(case.get("exp_alerts"))))
    return cases


def test_promtool_check_rules() -> None:
    promtool = promtool_or_skip()
    result = _run([promtool, "check", "rules", ALERTS.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    promtool = promtool_or_skip()
    result = _run([promtool, "test", "rules", ALERTS_TEST.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    promtool = promtool_or_skip()
    result = _run([promtool, "check", "config", PROMETHEUS_CONFIG.name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_exist_and_are_unique() -> None:
    names = _alert_names()
    assert names
    assert len(names) == len(set(names)), "alert names must be unique"
    for name in names:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name


@pytest.mark.parametrize("name", _alert_names())
def test_alert_labels_and_annotations(name: str) -> None:
    rule = next(rule for rule in _alerts() if rule["alert"] == name)
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    missing = ANNOTATIONS - {key for key, value in annotations.items() if value}
    assert not missing, f"{name} lacks annotations {sorted(missing)}"
    # README.md has a section "### Runbook: <AlertName>", whose anchor is this.
    assert annotations["runbook"] == RUNBOOK.format(name.lower())


@pytest.mark.parametrize("name", _alert_names())
def test_alert_has_firing_and_silent_case(name: str) -> None:
    outcomes = {fires for _, alert, fires in _alert_cases() if alert == name}
    assert True in outcomes, f"no test case in {ALERTS_TEST.name} where {name} fires"
    assert False in outcomes, f"no test case in {ALERTS_TEST.name} where {name} stays silent"


def test_unit_tests_name_only_known_alerts() -> None:
    unknown = {alert for _, alert, _ in _alert_cases()} - set(_alert_names())
    assert not unknown, f"tests for alerts that alerts.yml does not define: {sorted(unknown)}"


def test_unit_tests_load_the_rules() -> None:
    data = yaml.safe_load(ALERTS_TEST.read_text())
    assert ALERTS.name in data["rule_files"]


def test_recording_rules_are_named_and_used() -> None:
    rules = alert_rules()
    recorded = [rule["record"] for rule in rules if "record" in rule]
    assert len(recorded) == len(set(recorded))
    for name in recorded:
        # level:metric:operations, the Prometheus naming convention for recorded series.
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name
    used = {
        name
        for rule in rules
        for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["expr"])
    }
    undefined = used - set(recorded)
    assert not undefined, f"rules use series that nothing records: {sorted(undefined)}"


def test_target_down_watches_the_scrape_job() -> None:
    rule = next(rule for rule in _alerts() if rule["alert"] == "CacheTargetDown")
    assert re.search(r'up\{job="([^"]+)"\}', rule["expr"]).group(1) == JOB  # type: ignore[union-attr]


def test_prometheus_config_scrapes_the_ops_listener() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert ALERTS.name in config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[JOB]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    ops_port = Config().ops.port
    assert targets and all(target.endswith(f":{ops_port}") for target in targets)

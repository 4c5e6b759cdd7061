"""Run `server.py` for real in a subprocess, on free loopback ports.

The fixtures in tests/process/conftest.py start and kill these; tests use the fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO, Any

from tests.support import ROOT

TOKEN = "proc-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        hold_stdout: bool = False,
    ) -> None:
        self.port = free_port()
        self.ops_port = free_port()
        self.env = {
            **os.environ,
            "CACHE_SERVER_PORT": str(self.port),
            "CACHE_OPS_PORT": str(self.ops_port),
            "CACHE_OPS_ADMIN_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.stdout = ""
        self.stderr = ""
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers: list[threading.Thread] = []
        # hold_stdout: nobody reads the audit log until release_stdout() (a stalled reader)
        self._stdout_gate = threading.Event()
        if not hold_stdout:
            self._stdout_gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Drain both pipes all along: a full pipe would block the server's audit writes.
        opened = threading.Event()
        opened.set()
        self._readers = [
            threading.Thread(target=self._drain, args=(stream, sink, gate), daemon=True)
            for stream, sink, gate in (
                (self.proc.stdout, self._out, self._stdout_gate),
                (self.proc.stderr, self._err, opened),
            )
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._collect()
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.stderr}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("server did not become ready")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        ops: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        base = self.ops_url if ops else self.url
        request = urllib.request.Request(
            base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def upload(self, data: bytes, query: str = "") -> dict[str, Any]:
        status, body = self.request("POST", "/v1/images" + query, data)
        assert status == 201, body
        return dict(json.loads(body))

    def metrics_text(self) -> str:
        return self.request("GET", "/metrics", ops=True)[1].decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._collect()
            raise
        self._collect()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._collect()

    def release_stdout(self) -> None:
        """Start reading the audit log (stdout) of a server started with hold_stdout."""
        self._stdout_gate.set()

    @staticmethod
    def _drain(stream: IO[str] | None, sink: list[str], gate: threading.Event) -> None:
        gate.wait()
        if stream is not None:
            for line in stream:
                sink.append(line)

    def _collect(self) -> None:
        """Wait for the process and its pipes, then expose what it printed."""
        assert self.proc is not None
        self._stdout_gate.set()
        self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        self.stdout, self.stderr = "".join(self._out), "".join(self._err)

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]
        return [e for e in lines if event is None or e["event"] == event]


ServerFactory = Callable[..., ServerProcess]  # the `server_process` fixture

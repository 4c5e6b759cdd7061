"""Real `server.py` processes on free loopback ports, started and killed by fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import images
from tests.support.nodes import ProcessNodes
from tests.support.redisproc import Topology
from tests.support.serverproc import TOKEN, ServerFactory, ServerProcess
from tests.support.service import parse_metrics
from tests.support.waiting import wait_for


@pytest.fixture
def server_process() -> Iterator[ServerFactory]:
    """`server_process(env=..., args=...)`: a ServerProcess not started yet (the test calls
    `.start()`, which raises if the server exits); every one is killed at teardown."""
    made: list[ServerProcess] = []

    def factory(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        hold_stdout: bool = False,
    ) -> ServerProcess:
        proc = ServerProcess(env=env, args=args, hold_stdout=hold_stdout)
        made.append(proc)
        return proc

    try:
        yield factory
    finally:
        for proc in made:
            proc.kill()


@pytest.fixture
def server(server_process: ServerFactory) -> ServerProcess:
    """A started server of the test's own, killed at teardown if the test did not stop it."""
    return server_process().start()


@pytest.fixture(scope="module")
def module_server() -> Iterator[ServerProcess]:
    """One server for a whole test module; it must stop cleanly (exit 0) at the end."""
    proc = ServerProcess().start()
    yield proc
    assert proc.stop() == 0


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


@pytest.fixture
def nodes(topology: Topology) -> Iterator[ProcessNodes]:
    """Service processes on one Redis (single, then cluster): `nodes.start()` adds one."""
    held = ProcessNodes(topology)
    try:
        yield held
    finally:
        held.kill_all()

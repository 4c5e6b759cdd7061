"""Shared fixtures for every folder of the suite.

In-process service: a fresh registry, a manual clock and real HTTP on loopback per test
(`clock`, `make_service`, `service`). Real Redis servers (`redis_server`, `redis_cluster`,
`topology`, `make_redis`). A private folder on tmpfs (`shm`, `shm_dir`).

The helpers behind these live in tests/support/; fixtures for real `server.py` processes
are in tests/process/conftest.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cache.app import build_runtime, create_ops_app, create_public_app
from cache.clock import ManualClock
from cache.config import Config
from tests.support.redisproc import (
    RedisClusterProcs,
    RedisFactory,
    RedisServer,
    Topology,
    flush,
    require_redis,
)
from tests.support.service import AuditCapture, Service, ServiceFactory, make_config
from tests.support.system import SHM, shm_is_tmpfs

# ------------------------------------------------------------------ the in-process service


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_service(aiohttp_client: Any, clock: ManualClock) -> ServiceFactory:
    async def factory(config: Config | None = None, **kwargs: Any) -> Service:
        audit = AuditCapture()
        rt = build_runtime(
            config or make_config(),
            clock=clock,
            registry=CollectorRegistry(),
            audit_stream=audit,
            **kwargs,
        )
        client = await aiohttp_client(create_public_app(rt))
        ops = await aiohttp_client(create_ops_app(rt))
        return Service(rt, client, ops, audit, clock)

    return factory


@pytest.fixture
async def service(make_service: ServiceFactory) -> Service:
    return await make_service()


# ------------------------------------------------------------------ real Redis servers


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One plain server for a test module; tests flush it before use."""
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    require_redis()
    cluster = RedisClusterProcs(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(params=["single", "cluster"])
def topology(request: pytest.FixtureRequest) -> Topology:
    """The module's plain server, then its 3-master cluster: freshly flushed."""
    server: Topology = request.getfixturevalue(
        "redis_server" if request.param == "single" else "redis_cluster"
    )
    flush(server)
    return server


@pytest.fixture
def make_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisFactory]:
    """`make_redis(*options)`: a started server of the test's own (options such as
    `"--save", "60 1"` added to the command line); every one is killed at teardown."""
    require_redis()
    started: list[RedisServer] = []

    def factory(*extra: str) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis-own"), list(extra))
        started.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


# ------------------------------------------------------------------ tmpfs


@pytest.fixture
def shm() -> Iterator[Path]:
    """A private parent folder on tmpfs (/dev/shm), removed afterwards. Skips without one."""
    if not shm_is_tmpfs():
        pytest.skip("needs Linux with /dev/shm on tmpfs")
    parent = Path(tempfile.mkdtemp(prefix="qc-test-", dir=SHM))
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def shm_dir(shm: Path) -> Path:
    """A storage folder path on tmpfs, not created yet (the backend creates it 0700)."""
    return shm / "store"

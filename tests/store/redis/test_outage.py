"""Redis gone mid-run, then back on the same port; and Redis servers that persist.

While Redis is gone: uploads and reads are 503 with Retry-After, `/readyz` is 503, the
exact timer and the sweep keep running without raising. When it is back, the same process
serves again. A server that writes to disk is refused at start-up unless allowed.
Every Redis here is the test's own (`own_redis`, `make_redis`).
"""

from __future__ import annotations

import asyncio
import io

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from cache.app import build_runtime, start
from cache.errors import StartupRefused
from cache.proof.metrics import Metrics
from cache.store.redis.persistence import CHECK, check_persistence, enforce_no_persistence
from tests.support import images
from tests.support.redisproc import RedisFactory, RedisServer
from tests.support.serverproc import free_port
from tests.support.service import ServiceFactory, make_config


async def test_redis_stopped_gives_503_and_restarted_serves_again(
    own_redis: RedisServer, make_service: ServiceFactory
) -> None:
    config = make_config(storage={"backend": "redis", "redis_url": own_redis.url})
    service = await make_service(config)
    created = await service.upload_ok(images.png(), ttl=30)
    own_redis.stop()

    upload = await service.upload(images.png())
    assert upload.status == 503 and upload.headers["Retry-After"] == "1"
    assert (await upload.json())["type"].endswith("/storage-unavailable")
    read = await service.client.get(f"/v1/images/{created['id']}")
    assert read.status == 503 and "Retry-After" in read.headers
    ready = await service.client.get("/readyz")
    assert ready.status == 503 and "redis unreachable" in (await ready.json())["detail"]
    service.clock.advance(31)
    assert await service.rt.timer.run_due() == []  # nothing raised, nothing served
    assert await service.rt.sweeper.sweep() == 0
    metrics = await service.metrics()
    assert metrics['cache_redis_errors_total{op="put"}'] >= 1

    own_redis.start()  # same port, empty: nothing was on disk to come back
    assert (await service.client.get("/readyz")).status == 200
    assert (await service.client.get(f"/v1/images/{created['id']}")).status == 404
    again = await service.upload_ok(images.png(), ttl=30)
    assert (await service.client.get(f"/v1/images/{again['id']}")).status == 200


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--save", "60 1"], ["save '60 1'", 'CONFIG SET save ""']),
        (["--appendonly", "yes"], ["appendonly yes", "CONFIG SET appendonly no"]),
    ],
)
async def test_a_persisting_redis_is_refused_with_the_setting_and_the_fix(
    make_redis: RedisFactory, options: list[str], names: list[str]
) -> None:
    server = make_redis(*options)
    client = Redis.from_url(server.url)
    metrics = Metrics()
    try:
        with pytest.raises(StartupRefused) as refused:
            await enforce_no_persistence(client, False, metrics)
        message = str(refused.value)
        assert message.startswith("storage.redis_url: ")
        assert "storage.redis_allow_persistence = true" in message and "\n" not in message
        for name in names:
            assert name in message
        assert metrics.registry.get_sample_value("cache_guarantee_ok", {"check": CHECK}) == 0
        await enforce_no_persistence(client, True, metrics)  # the explicit opt-in
        assert metrics.registry.get_sample_value("cache_guarantee_ok", {"check": CHECK}) == 0
    finally:
        await client.aclose()
        server.stop()


async def test_config_refused_is_unknown_and_needs_the_opt_in(make_redis: RedisFactory) -> None:
    server = make_redis("--rename-command", "CONFIG", "")
    client = Redis.from_url(server.url)
    try:
        result = await check_persistence(client)
        assert result.status == "unknown" and "CONFIG GET is refused" in result.reason
        with pytest.raises(StartupRefused, match="redis_allow_persistence"):
            await enforce_no_persistence(client, False, Metrics())
        await enforce_no_persistence(client, True, Metrics())
    finally:
        await client.aclose()
        server.stop()


async def test_a_master_with_a_replica_needs_diskless_sync(make_redis: RedisFactory) -> None:
    master = make_redis("--repl-diskless-sync", "no")
    replica = make_redis("--replicaof", "127.0.0.1", str(master.port))
    client = Redis.from_url(master.url)
    try:
        for _ in range(500):  # until the replica is attached
            if "connected_slaves:1" in master.cli("info", "replication"):
                break
            await asyncio.sleep(0.02)
        result = await check_persistence(client)
        assert result.status == "fail"
        assert "repl-diskless-sync no" in result.reason
        assert "CONFIG SET repl-diskless-sync yes" in result.reason
        master.cli("config", "set", "repl-diskless-sync", "yes")
        assert (await check_persistence(client)).ok
    finally:
        await client.aclose()
        replica.stop()
        master.stop()


async def refused_start(url: str) -> str:
    """Start a runtime the way the app's start-up does; the line it is refused with."""
    config = make_config(storage={"backend": "redis", "redis_url": url})
    rt = build_runtime(config, registry=CollectorRegistry(), audit_stream=io.StringIO())
    try:
        with pytest.raises(StartupRefused) as refused:
            await start(rt)
        assert not rt.ready
    finally:
        await rt.store.close()
    return str(refused.value)


async def test_a_service_on_a_persisting_redis_does_not_start(make_redis: RedisFactory) -> None:
    server = make_redis("--save", "60 1")
    try:
        assert "save '60 1'" in await refused_start(server.url)
    finally:
        server.stop()


async def test_an_unreachable_redis_at_start_up_is_one_clear_line() -> None:
    message = await refused_start(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    assert message.startswith("storage.redis_url: cannot check Redis") and "\n" not in message

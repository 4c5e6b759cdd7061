"""A Redis that starts writing to disk while the service runs is a failed guarantee, not a
warning: uploads are refused (503), /readyz answers 503, and /admin/guarantees and
cache_guarantee_ok{check="redis_no_persistence"} say so, until it stops."""

from __future__ import annotations

from typing import cast

from cache.store.redis.store import RedisStore
from tests.support import images
from tests.support.redisproc import RedisServer
from tests.support.service import ServiceFactory, make_config


async def test_persistence_switched_on_at_run_time_refuses_uploads(
    own_redis: RedisServer, make_service: ServiceFactory
) -> None:
    config = make_config(storage={"backend": "redis", "redis_url": own_redis.url})
    service = await make_service(config)
    store = cast(RedisStore, service.rt.store)
    kept = await service.upload_ok(images.png(), ttl=60)
    assert store.check_persistence is not None and store._persistence_every <= 2.0

    own_redis.cli("config", "set", "save", "900 1")
    await store.check_persistence()  # what the job does every ~2 s (and at a reconnect)
    refused = await service.upload(images.png())
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["type"].endswith("/unavailable")
    ready = await service.client.get("/readyz")
    assert ready.status == 503 and "disk" in (await ready.json())["detail"]
    report = await (
        await service.ops.get("/admin/guarantees", headers=service.admin_headers)
    ).json()
    check = next(c for c in report["checks"] if c["check"] == "redis_no_persistence")
    assert check["status"] == "fail" and "save" in check["reason"] and report["ok"] is False
    metrics = await service.metrics()
    assert metrics['cache_guarantee_ok{check="redis_no_persistence"}'] == 0
    # held items still serve and go on time; nothing new lands in a persisting Redis
    assert (await service.client.get(f"/v1/images/{kept['id']}")).status == 200
    assert len(service.rt.store) == 1

    own_redis.cli("config", "set", "save", "")
    await store.check_persistence()
    assert (await service.client.get("/readyz")).status == 200
    await service.upload_ok(images.png())
    metrics = await service.metrics()
    assert metrics['cache_guarantee_ok{check="redis_no_persistence"}'] == 1

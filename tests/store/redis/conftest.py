"""In-process service nodes on a real Redis, sharing the test's manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support.nodes import Nodes
from tests.support.redisproc import (
    RedisClusterProcs,
    RedisFactory,
    RedisServer,
    Topology,
    flush,
)
from tests.support.service import Service, ServiceFactory, make_config


@pytest.fixture
async def nodes(topology: Topology, make_service: ServiceFactory) -> AsyncIterator[Nodes]:
    """Two nodes (A, B) on a freshly flushed Redis (single, then cluster)."""
    cluster = isinstance(topology, RedisClusterProcs)

    async def factory(**sections: dict[str, Any]) -> tuple[Service, Service]:
        storage = {"backend": "redis", "redis_url": topology.url, "redis_cluster": cluster}
        config = make_config(storage={**storage, **sections.pop("storage", {})}, **sections)
        return await make_service(config), await make_service(config)

    yield factory


@pytest.fixture
async def pair(redis_server: RedisServer, make_service: ServiceFactory) -> AsyncIterator[Nodes]:
    """Two nodes on the module's plain server, flushed; `pair(**storage)` sets storage keys."""
    flush(redis_server)

    async def factory(**storage: Any) -> tuple[Service, Service]:
        config = make_config(storage={"backend": "redis", "redis_url": redis_server.url, **storage})
        return await make_service(config), await make_service(config)

    yield factory


@pytest.fixture
def own_redis(make_redis: RedisFactory) -> Iterator[RedisServer]:
    """A server this test may stop and start again."""
    yield make_redis()

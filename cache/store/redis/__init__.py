"""The shared store: index, counters and bytes in Redis or Valkey, for several nodes.

`build` (and `make_client`) are the only ways in from outside this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...clock import Clock
from ...config import Config, StorageConfig
from ...proof.audit import AuditLog
from ...proof.metrics import Metrics
from ..api import Capacity, ItemStore
from . import tuning

if TYPE_CHECKING:
    from .keys import RedisClient


def make_client(storage: StorageConfig) -> RedisClient:
    """redis-py's asyncio client: it reconnects by itself, with backoff, after an outage."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    backoff = ExponentialBackoff(cap=tuning.BACKOFF_CAP, base=tuning.BACKOFF_BASE)
    options: dict[str, Any] = {
        "max_connections": tuning.MAX_CONNECTIONS,
        "retry": Retry(backoff, retries=tuning.RETRIES),
        "socket_connect_timeout": tuning.CONNECT_TIMEOUT,
        "socket_timeout": tuning.SOCKET_TIMEOUT,
        "health_check_interval": tuning.HEALTH_CHECK_INTERVAL,
    }
    if storage.redis_cluster:
        return RedisCluster.from_url(storage.redis_url, **options)
    return Redis.from_url(storage.redis_url, **options)


def build(
    config: Config,
    clock: Clock,
    metrics: Metrics,
    audit: AuditLog,
    client: RedisClient | None = None,
) -> ItemStore:
    """The shared store for `storage.backend = "redis"` (`client`: tests hand one in)."""
    from .keys import RedisKeys
    from .store import RedisStore

    storage = config.storage
    return RedisStore(
        client if client is not None else make_client(storage),
        RedisKeys(storage.key_prefix),
        clock,
        metrics,
        audit,
        Capacity(storage.max_bytes, storage.max_items),
        config.ttl.grace,
        storage.redis_allow_persistence,
        max(
            tuning.PERSISTENCE_CHECK_INTERVAL,
            tuning.PERSISTENCE_CHECK_SWEEPS * config.ttl.sweep_interval,
        ),
    )

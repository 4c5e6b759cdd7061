"""Where items live until their deadline: one seam (`api.ItemStore`), two stores behind it.

`build_store` picks the store from `storage.backend`; nothing else outside this package
names a concrete store. Expiry (`expiry`) drives purges through the seam, the deadline
heap (`deadlines`) and the release recorder (`records`) are shared by both stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import Clock
from ..config import Config
from ..proof.audit import AuditLog
from ..proof.metrics import Metrics
from .api import ItemStore

if TYPE_CHECKING:
    from .local.backend import Backend
    from .redis.keys import RedisClient


def build_store(
    config: Config,
    clock: Clock,
    metrics: Metrics,
    audit: AuditLog,
    *,
    backend: Backend | None = None,
    redis_client: RedisClient | None = None,
) -> ItemStore:
    """The store `storage.backend` names. Tests may hand in a local backend or a Redis
    client of their own; the store still builds itself around it."""
    if config.storage.backend == "redis" or redis_client is not None:
        from . import redis

        return redis.build(config, clock, metrics, audit, redis_client)
    from . import local

    return local.build(config, clock, metrics, audit, backend)

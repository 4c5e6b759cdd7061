"""App factories: build the runtime once, then the public and the ops applications on it.

Start-up order is part of the guarantees: leftovers are purged and the checks run before
the public listener accepts a connection; at shutdown the listener stops accepting first,
then everything held is purged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TextIO

from aiohttp import web
from prometheus_client import CollectorRegistry

from .clock import Clock, SystemClock
from .config import Config
from .http.middleware import problems_and_timing
from .http.ops import add_ops_routes, admin_auth
from .http.public import add_public_routes
from .intake.admission import Intake
from .intake.blocklist import Blocklist
from .intake.fetch import Fetcher, Resolver, allow_hosts_warning
from .intake.inspect import Ingest
from .proof.audit import AuditLog
from .proof.guarantees import Guarantees
from .proof.metrics import Metrics
from .runtime import LISTENER, RUNTIME, Runtime
from .store.api import Capacity, ItemStore
from .store.expiry import ExpiryTimer, Scheduler, Sweeper
from .store.local.backend import Backend
from .store.local.memory import MemoryBackend
from .store.local.store import Store

if TYPE_CHECKING:
    from .config import StorageConfig
    from .store.redis.keys import RedisClient

log = logging.getLogger(__name__)

ORPHAN_SCAN_INTERVAL = 30.0  # a directory listing: cheap, but not every second
GUARANTEE_INTERVAL = 60.0
JSON_BODY_LIMIT = (
    64 * 1024
)  # fetch requests and admin calls; uploads are streamed with their own cap


def make_backend(config: Config) -> Backend:
    """The configured backend, with its folder or client ready: backends never read config."""
    kind = config.storage.backend
    if kind == "tmpfs":
        from .store.local.tmpfs import TmpfsBackend, prepare_folder

        return TmpfsBackend(prepare_folder(config.storage.path))
    if kind == "redis":
        return redis_backend(config, make_redis_client(config.storage))
    return MemoryBackend()


def make_redis_client(storage: StorageConfig) -> RedisClient:
    """redis-py's asyncio client: it reconnects by itself, with backoff, after an outage."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    from .store.redis.link import MAX_CONNECTIONS

    options: dict[str, Any] = {
        "max_connections": MAX_CONNECTIONS,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "socket_connect_timeout": 1.0,
        "socket_timeout": 2.0,
        "health_check_interval": 5,
    }
    if storage.redis_cluster:
        return RedisCluster.from_url(storage.redis_url, **options)
    return Redis.from_url(storage.redis_url, **options)


def redis_backend(config: Config, client: RedisClient) -> Backend:
    from .store.redis.keys import RedisBackend

    backstop = config.ttl.max + config.ttl.grace  # bytes written without a deadline
    return RedisBackend(client, config.storage.key_prefix, round(backstop * 1000))


def make_store(
    backend: Backend, clock: Clock, metrics: Metrics, audit: AuditLog, config: Config
) -> ItemStore:
    """The local index for memory and tmpfs; the index in Redis for the redis backend."""
    capacity = Capacity(config.storage.max_bytes, config.storage.max_items)
    if backend.name == "redis":
        from .store.redis.keys import RedisBackend
        from .store.redis.store import SharedStore

        if isinstance(backend, RedisBackend):
            return SharedStore(backend, clock, metrics, audit, capacity, config.ttl.grace)
    return Store(backend, clock, metrics, audit, capacity, config.ttl.grace)


def build_runtime(
    config: Config,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    backend: Backend | None = None,
    audit_stream: TextIO | None = None,
    resolver: Resolver | None = None,
    redis_client: RedisClient | None = None,
) -> Runtime:
    clock = clock or SystemClock()
    metrics = Metrics(registry)
    metrics.set_limits(
        config.storage.max_bytes, config.storage.max_items, config.ttl.max, config.ttl.grace
    )
    audit = AuditLog(clock, audit_stream)
    if backend is None and redis_client is not None:
        backend = redis_backend(config, redis_client)
    backend = backend or make_backend(config)
    store = make_store(backend, clock, metrics, audit, config)
    blocklist = Blocklist.from_files(config.blocklist.sha256_files)
    storage_path = config.storage.path if backend.name == "tmpfs" else None
    runtime = Runtime(
        config=config,
        clock=clock,
        metrics=metrics,
        audit=audit,
        store=store,
        intake=Intake(Ingest(config.limits), blocklist, store, metrics, audit, clock),
        blocklist=blocklist,
        fetcher=Fetcher(config.fetch, config.limits.max_upload_bytes, resolver=resolver),
        guarantees=Guarantees(config, backend.name, storage_path),
        timer=ExpiryTimer(store, clock),
        sweeper=Sweeper(store, metrics, clock),
        scheduler=Scheduler(),
    )
    runtime.scheduler.every(config.ttl.sweep_interval, runtime.sweeper.sweep, "sweep")
    runtime.scheduler.every(ORPHAN_SCAN_INTERVAL, store.purge_orphans, "orphans")
    # Partials, not lambdas: APScheduler awaits a job only if it sees a coroutine function.
    guarantees_job = functools.partial(refresh_guarantees, runtime)
    runtime.scheduler.every(GUARANTEE_INTERVAL, guarantees_job, "guarantees")
    client = shared_client(store)
    if client is not None:
        from .store.redis.persistence import refresh

        job = functools.partial(refresh, client, metrics)
        runtime.scheduler.every(GUARANTEE_INTERVAL, job, "redis_persistence")
    return runtime


def shared_client(store: ItemStore) -> RedisClient | None:
    """The Redis client behind a shared store; None for a local one."""
    if store.backend.name != "redis":
        return None
    from .store.redis.keys import RedisBackend

    return store.backend.client if isinstance(store.backend, RedisBackend) else None


async def refresh_guarantees(rt: Runtime) -> None:
    for result in rt.guarantees.run_checks():
        rt.metrics.guarantee_ok.labels(result.name).set(1 if result.ok else 0)


async def start(rt: Runtime) -> None:
    client = shared_client(rt.store)
    if client is not None:  # before anything is stored or purged
        from .store.redis.persistence import enforce_no_persistence

        rt.not_ready_reason = "checking that Redis does not persist"
        allow = rt.config.storage.redis_allow_persistence
        await enforce_no_persistence(client, allow, rt.metrics)
    rt.not_ready_reason = "purging what a previous process left"
    await rt.store.purge_leftovers()
    await refresh_guarantees(rt)
    warning = allow_hosts_warning(rt.config.fetch)
    if warning:
        log.warning(warning)
    if not rt.config.ops.admin_token:
        log.info("admin routes are off: ops.admin_token is empty")
    rt.timer.start()
    rt.scheduler.start()
    rt.ready = True


async def stop(rt: Runtime) -> None:
    rt.ready = False
    rt.not_ready_reason = "shutting down"
    rt.scheduler.stop()
    rt.timer.stop()
    await rt.timer.drain()
    await rt.store.close()
    await rt.fetcher.close()
    await rt.store.backend.close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await start(app[RUNTIME])
    yield
    await stop(app[RUNTIME])


async def _public_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Robots-Tag", "noindex, nofollow, noarchive")


def create_public_app(rt: Runtime) -> web.Application:
    """The frontend's listener; it owns the runtime's start and stop."""
    app = web.Application(middlewares=[problems_and_timing], client_max_size=JSON_BODY_LIMIT)
    app[RUNTIME] = rt
    app[LISTENER] = "public"
    add_public_routes(app)
    app.on_response_prepare.append(_public_headers)
    app.cleanup_ctx.append(_lifecycle)
    return app


def create_ops_app(rt: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[problems_and_timing, admin_auth], client_max_size=4 * JSON_BODY_LIMIT
    )
    app[RUNTIME] = rt
    app[LISTENER] = "ops"
    add_ops_routes(app)
    return app

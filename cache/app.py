"""App factories: build the runtime once, then the public and the ops applications on it.

Start-up order is part of the guarantees: the store's own checks and the purge of what a
previous process left run before the public listener accepts a connection; at shutdown
the listener stops accepting first, then everything held is purged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TextIO

from aiohttp import web
from prometheus_client import CollectorRegistry

from .clock import Clock, SystemClock
from .config import Config
from .http.middleware import problems_and_timing, public_headers
from .http.ops import add_ops_routes, admin_auth
from .http.problems import status_and_slug
from .http.public import add_public_routes
from .intake.admission import Intake
from .intake.blocklist import Blocklist
from .intake.blocklist_ops import SYNC_INTERVAL, BlocklistOps
from .intake.fetch import Fetcher, Resolver, allow_hosts_warning
from .intake.inspect import InspectorPool
from .intake.thumbnail import Thumbnails
from .intake.work import WorkPool
from .proof.audit import AuditLog
from .proof.guarantees import Guarantees
from .proof.metrics import Metrics
from .runtime import LISTENER, RUNTIME, Runtime
from .store import build_store
from .store.expiry import ExpiryTimer, Scheduler, Sweeper

if TYPE_CHECKING:
    from .store.local.backend import Backend
    from .store.redis.keys import RedisClient

log = logging.getLogger(__name__)

GUARANTEE_INTERVAL = 60.0
# Request work threads (checks, hashing, thumbnails): zlib, SHA-256 and Pillow release
# the GIL, so a thread per core keeps them busy without queueing behind the loop.
WORK_THREADS = max(2, os.cpu_count() or 2)
JSON_BODY_LIMIT = 64 * 1024  # fetch requests and admin calls; uploads have their own cap


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
    audit = AuditLog(clock, audit_stream, max_backlog=config.server.audit_backlog)
    metrics.watch_audit(lambda: audit.waiting)
    audit.on_drop = metrics.audit_dropped.inc
    store = build_store(config, clock, metrics, audit, backend=backend, redis_client=redis_client)
    kind = config.storage.backend if backend is None else backend.name
    kind = "redis" if redis_client is not None else kind
    blocklist = Blocklist.from_config(config.blocklist, metrics)  # a bad list file: exit 2
    fetcher = Fetcher(config.fetch, config.limits.max_upload_bytes, resolver=resolver)
    work = WorkPool(WORK_THREADS, config.limits.decode_budget_bytes)
    inspector = InspectorPool(config.limits, work)
    inspector.wanted = blocklist.wanted  # MD5/SHA-1/PDQ of uploads, as the lists need them
    inspector.lookup = blocklist.look_up_pdq  # in the worker thread that hashed, not the loop
    intake = Intake(
        inspector,
        blocklist,
        store,
        fetcher,
        metrics,
        audit,
        clock,
        status_and_slug,
        max_uploads=config.limits.max_uploads_in_flight,
    )
    runtime = Runtime(
        config=config,
        clock=clock,
        metrics=metrics,
        audit=audit,
        store=store,
        intake=intake,
        blocklist=blocklist,
        lists=BlocklistOps(blocklist, store, metrics, audit),
        work=work,
        thumbnails=Thumbnails(store, work),
        guarantees=Guarantees(config, kind, config.storage.path if kind == "tmpfs" else None),
        timer=ExpiryTimer(store, clock),
        sweeper=Sweeper(store, metrics, clock),
        scheduler=Scheduler(),
    )
    runtime.scheduler.every(config.ttl.sweep_interval, runtime.sweeper.sweep, "sweep")
    for job in store.jobs():
        runtime.scheduler.every(job.seconds, job.run, job.name)
    if runtime.lists.shared is not None:  # entries other nodes add reach this one in ~1 s
        runtime.scheduler.every(SYNC_INTERVAL, runtime.lists.sync, "blocklist_sync")
    # Partials, not lambdas: APScheduler awaits a job only if it sees a coroutine function.
    guarantees_job = functools.partial(refresh_guarantees, runtime)
    runtime.scheduler.every(GUARANTEE_INTERVAL, guarantees_job, "guarantees")
    return runtime


async def refresh_guarantees(rt: Runtime) -> None:
    for result in rt.guarantees.run_checks():
        rt.metrics.guarantee_ok.labels(result.name).set(1 if result.ok else 0)


async def start(rt: Runtime) -> None:
    rt.not_ready_reason = "checking the store and purging what a previous process left"
    await rt.store.start()
    await rt.lists.start()
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
    rt.lists.close()
    await rt.intake.fetcher.close()
    rt.work.close()
    await asyncio.get_running_loop().run_in_executor(None, rt.audit.close)  # the purge's lines


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await start(app[RUNTIME])
    yield
    await stop(app[RUNTIME])


def create_public_app(rt: Runtime) -> web.Application:
    """The frontend's listener; it owns the runtime's start and stop."""
    app = web.Application(middlewares=[problems_and_timing], client_max_size=JSON_BODY_LIMIT)
    app[RUNTIME] = rt
    app[LISTENER] = "public"
    add_public_routes(app)
    app.on_response_prepare.append(public_headers)
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

"""How the shared store talks to Redis when Redis may be gone: every failure becomes a 503
the client can retry, an outage is logged when it starts and when it ends (not once per
sweep), and concurrency is bounded (operations in flight, and the fan-out of batches) so
that the client's connection pool (`MAX_CONNECTIONS`) is never exhausted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import StorageUnavailable
from .metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")
OPERATIONS = 64  # store operations in flight per node; each uses at most two connections
FANOUT = 32  # per-item calls of batches (purges), shared by every batch of the node
MAX_CONNECTIONS = 256  # the client's pool (per cluster node): above the two bounds together
RETRY_AFTER = 1.0


class RedisLink:
    """Turns Redis failures into StorageUnavailable and remembers whether Redis answers."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._operations = asyncio.Semaphore(OPERATIONS)
        self.fanout = asyncio.Semaphore(FANOUT)
        self.up = True
        self.last_error = ""

    @asynccontextmanager
    async def call(self, op: str) -> AsyncIterator[None]:
        """One store operation (never nested): bounded, and failures become a 503."""
        try:
            async with self._operations:
                yield
        except (RedisError, OSError) as exc:  # OSError includes TimeoutError
            self.failed(op, exc)
            raise StorageUnavailable(
                "the shared storage cannot be reached; retry shortly", RETRY_AFTER
            ) from exc
        self.answered()

    def failed(self, op: str, exc: BaseException) -> None:
        self._metrics.redis_errors.labels(op).inc()
        self.last_error = " ".join(f"{type(exc).__name__}: {exc}".split())
        unexpected = not isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
        if unexpected:  # not an outage: a refusal (OOM, a script error) worth a traceback
            log.error("redis %s failed: %s", op, self.last_error, exc_info=exc)
            return
        if self.up:
            log.warning("redis unreachable (%s): %s; retrying with backoff", op, self.last_error)
        self.up = False

    def answered(self) -> None:
        if not self.up:
            log.warning("redis answers again")
        self.up = True


async def gather_bounded(
    call: Callable[[A], Awaitable[T]], args: Iterable[A], gate: asyncio.Semaphore
) -> list[T | BaseException]:
    """`call(arg)` for every arg, as many at a time as `gate` allows; failures come back in
    place. Each call starts only once admitted, so a cancelled batch leaves nothing behind."""

    async def one(arg: A) -> T:
        async with gate:
            return await call(arg)

    return list(await asyncio.gather(*(one(a) for a in args), return_exceptions=True))

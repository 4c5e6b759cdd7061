"""How the shared store talks to Redis when Redis may be gone: every failure becomes a 503
the client can retry, an outage is logged when it starts and when it ends (not once per
sweep), and the operations in flight are bounded so that the client's connection pool
(`tuning.MAX_CONNECTIONS`) is never exhausted; batches are pipelines, one connection each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StorageUnavailable
from ...proof.metrics import Metrics
from .codec import text
from .tuning import OPERATIONS, RETRY_AFTER

log = logging.getLogger(__name__)
T = TypeVar("T")


class RedisLink:
    """Turns Redis failures into StorageUnavailable and remembers whether Redis answers."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._operations = asyncio.Semaphore(OPERATIONS)
        self.up = True
        self.last_error = ""
        self.on_reconnect: Callable[[], object] = lambda: None  # after an outage ends

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
            self.on_reconnect()


RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class ScriptLine:
    """A connection held for a series of calls of one script, each one written before the
    last one's reply is put to use, so that Redis runs it while this node does other work
    (one call outstanding at a time). A lost connection is tried again once (as redis-py's
    retry would); a script Redis does not know (NOSCRIPT: it never ran) is loaded and sent
    again. Used as `async with`: the connection goes back to the pool at the end (closed
    if a reply was left unread or the connection failed)."""

    def __init__(self, client: Redis, script: AsyncScript, keys: Sequence[str]) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._script = script
        self._keys = keys
        self._conn: AbstractConnection | None = None
        self._args: Sequence[Any] | None = None  # of the call whose reply is not read yet
        self._broken = False

    async def __aenter__(self) -> ScriptLine:
        self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._broken or self._args is not None:
                await conn.disconnect()
            await self._pool.release(conn)

    async def send(self, args: Sequence[Any]) -> None:
        assert self._args is None, "read the last reply first"
        self._args = args
        await self._retrying(self._write)

    async def reply(self) -> Any:
        assert self._args is not None, "nothing was sent"
        try:
            return await self._retrying(self._read, resend=True)
        finally:
            if not self._broken:  # read, an error reply too: nothing is left outstanding
                self._args = None

    async def _retrying(self, step: Callable[[], Awaitable[T]], resend: bool = False) -> T:
        assert self._conn is not None
        try:
            try:
                return await step()
            except RETRYABLE:
                await self._conn.disconnect()
                if resend:
                    await self._write()  # on a new connection
                return await step()
        except ResponseError:
            raise  # an answer: the connection is fine
        except BaseException:
            self._broken = True
            raise

    async def _write(self) -> None:
        assert self._conn is not None and self._args is not None
        keys = self._keys
        await self._conn.send_command("EVALSHA", self._script.sha, len(keys), *keys, *self._args)

    async def _read(self) -> Any:
        assert self._conn is not None
        try:
            return await self._conn.read_response()
        except NoScriptError:
            loaded = await self._client.script_load(self._script.script)
            self._script.sha = text(loaded)
            await self._write()
            return await self._conn.read_response()

"""The request path's own connection to one Redis server: every call shares it, in order.

redis-py spends more CPU per call than Redis does on a read or a put: a pooled connection
taken and given back, a timeout context per reply, a command packer and response callbacks
per command, a `Pipeline` object per batch. Redis answers the commands of one connection
in the order they came, so one connection can carry every request's calls at once (as
aioredis did): a call writes its commands and waits for as many replies, which hiredis
parses in C as they arrive and which go to the calls in the order they were written.

The calls made in one pass of the event loop are written together, at the start of the
next pass (`_Line._flush`): under load one system call carries many requests' commands and
Redis reads them in one go (redis-server's CPU per lifecycle 233-267 -> 178-198 µs in A/B
runs; bench/profile.md).

What redis-py did and this keeps: a reply error is returned in place as redis-py's
exception (NOSCRIPT as `NoScriptError`); a connection that fails or stays silent past
`tuning.SOCKET_TIMEOUT` fails every call waiting on it with redis-py's `ConnectionError` /
`TimeoutError` (`link` makes them a 503), and the next call connects again (once,
for all callers). A script Redis does not know yet (NOSCRIPT: it never ran) is loaded
and its call sent again. The timer purge never uses this connection (it has its own,
through redis-py): a purge does not wait behind request work.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .tuning import CONNECT_TIMEOUT, SOCKET_TIMEOUT


class Joined(tuple[bytes | memoryview, ...]):
    """One argument that is its parts one after another (an item's header, then its bytes),
    sent part by part: never joined into one buffer."""

    __slots__ = ()


def pack(commands: Sequence[Sequence[Any]]) -> list[bytes | memoryview]:
    """RESP arrays; large bytes arguments are passed on as they are, not copied."""
    out: list[bytes | memoryview] = []
    head: list[bytes] = []
    for args in commands:
        head.append(b"*%d\r\n" % len(args))
        for arg in args:
            if isinstance(arg, Joined):
                head.append(b"$%d\r\n" % sum(memoryview(p).nbytes for p in arg))
                out.append(b"".join(head))
                out += arg
                head = [b"\r\n"]
                continue
            if isinstance(arg, str):
                value: bytes | memoryview = arg.encode()
            elif isinstance(arg, int):
                value = b"%d" % arg
            elif isinstance(arg, float):
                value = repr(arg).encode()  # as redis-py encodes a float
            elif isinstance(arg, bytes | memoryview):
                value = arg
            else:
                value = bytes(arg)
            head.append(b"$%d\r\n" % len(value))
            if len(value) > 4096:
                out.append(b"".join(head))
                out.append(value)
                head = [b"\r\n"]
            else:
                head += (value, b"\r\n")  # type: ignore[arg-type]
    out.append(b"".join(head))
    return out


def _evalsha(
    commands: Sequence[Sequence[Any]], scripts: Sequence[AsyncScript | None]
) -> list[Sequence[Any]]:
    return [
        args if script is None else ["EVALSHA", script.sha, *args]
        for args, script in zip(commands, scripts, strict=True)
    ]


def _reply(value: Any) -> Any:
    if isinstance(value, hiredis.ReplyError):
        message = str(value)
        return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
    return value


class _Line(asyncio.Protocol):
    """One connection: replies are handed to waiting calls in the order they wrote."""

    def __init__(self, timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self._timeout = timeout
        self.broken: BaseException | None = None
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[tuple[asyncio.Future[list[Any]], int, list[Any]]]
        self._waiting = collections.deque()
        self._since = 0.0  # when the oldest waiting call was written (monotonic)
        self._watch: asyncio.TimerHandle | None = None
        self._out: list[bytes | memoryview] = []  # calls of this loop pass, written at its end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed'}"))

    def fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        if self._watch is not None:
            self._watch.cancel()
        while self._waiting:
            future, _, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def send(self, parts: list[bytes | memoryview], replies: int) -> asyncio.Future[list[Any]]:
        assert self.transport is not None and self.broken is None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._since = time.monotonic()
            self._arm()
        self._waiting.append((future, replies, []))
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += parts
        return future

    def _flush(self) -> None:
        """Every call written since the last flush, in one write: under load one system
        call (and one read in Redis) carries the commands of many requests."""
        out, self._out = self._out, []
        if self.broken is None and self.transport is not None:
            self.transport.writelines(out)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while waiting:
            value = self._reader.gets()
            if value is False:
                return
            future, count, got = waiting[0]
            got.append(_reply(value))
            if len(got) == count:
                waiting.popleft()
                self._since = time.monotonic()
                if not future.done():  # a cancelled caller: its replies are dropped
                    future.set_result(got)

    def _arm(self) -> None:
        if self._watch is None or self._watch.cancelled():
            loop = asyncio.get_running_loop()
            self._watch = loop.call_later(self._timeout, self._check)

    def _check(self) -> None:
        self._watch = None
        if not self._waiting:
            return
        if time.monotonic() - self._since >= self._timeout:
            self.fail(RedisTimeoutError(f"no reply from redis in {self._timeout:g} s"))
        else:
            self._arm()


class Wire:
    """`call(commands)` -> their replies. See the module docstring."""

    def __init__(self, kwargs: dict[str, Any], timeout: float = SOCKET_TIMEOUT) -> None:
        self._kwargs = kwargs
        self._timeout = timeout
        self._line: _Line | None = None
        self._connecting: asyncio.Future[_Line] | None = None

    async def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        parts = pack(commands)
        return await (await self._connected()).send(parts, len(commands))

    async def run(
        self, commands: Sequence[Sequence[Any]], scripts: Sequence[AsyncScript | None]
    ) -> list[Any]:
        """`commands` (argument lists; for a script, in `scripts`, what follows EVALSHA and
        its sha: numkeys, keys, args) -> their replies in place."""
        replies = await self.call(_evalsha(commands, scripts))
        again = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            for script in {id(scripts[n]): scripts[n] for n in again}.values():
                assert script is not None
                (loaded,) = await self.call([["SCRIPT", "LOAD", script.script]])
                if isinstance(loaded, BaseException):
                    raise loaded
                script.sha = loaded.decode()
            picked = [commands[n] for n in again]
            fixed = await self.call(_evalsha(picked, [scripts[n] for n in again]))
            for n, reply in zip(again, fixed, strict=True):
                replies[n] = reply
        return replies

    async def _connected(self) -> _Line:
        line = self._line
        if line is not None and line.broken is None:
            return line
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Line:
        loop = asyncio.get_running_loop()
        kw = self._kwargs
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):

                def make() -> _Line:
                    return _Line(self._timeout)

                if "path" in kw:
                    _, line = await loop.create_unix_connection(make, kw["path"])
                else:
                    _, line = await loop.create_connection(make, kw["host"], kw["port"])
                hello = self._handshake()
                if hello:
                    for reply in await line.send(pack(hello), len(hello)):
                        if isinstance(reply, BaseException):
                            line.fail(RedisConnectionError(f"redis refused: {reply}"))
                            raise reply
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc!r}") from exc
        self._line = line
        return line

    def _handshake(self) -> list[list[Any]]:
        kw, out = self._kwargs, []
        if kw.get("password"):
            user = kw.get("username")
            out.append(["AUTH", user, kw["password"]] if user else ["AUTH", kw["password"]])
        if int(kw.get("db") or 0):
            out.append(["SELECT", int(kw["db"])])
        return out

    async def close(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            line.fail(RedisConnectionError("closed"))


def wire_for(client: Redis) -> Wire | None:
    """A wire to the server `client` talks to: plain TCP or a Unix socket (None for TLS
    and other connection classes: those go through redis-py)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    names = ("host", "port", "path", "db", "username", "password")
    keep: dict[str, Any] = {name: kwargs[name] for name in names if name in kwargs}
    if pool.connection_class is Connection and "host" in keep:
        return Wire(keep)
    if pool.connection_class is UnixDomainSocketConnection and "path" in keep:
        return Wire(keep)
    return None

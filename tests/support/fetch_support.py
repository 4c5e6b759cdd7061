"""Shared harness for the fetch tests: a network guard, a stub resolver, a sentinel listener.

The guard makes "no real network, ever" hold even when `cache.intake.fetch` is wrong: any connect
or name lookup that is not loopback raises and is recorded, and every test fails at
teardown if something was refused without the test expecting it. The fixtures built on
these (`net_guard`, `sentinel`) are in tests/intake/conftest.py.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_getaddrinfo = socket.getaddrinfo
_original_sock_connect = asyncio.selector_events.BaseSelectorEventLoop.sock_connect
_original_loop_getaddrinfo = asyncio.base_events.BaseEventLoop.getaddrinfo


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).partition("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class NetGuard:
    attempts: list[tuple[str, int]] = field(default_factory=list)  # every connect, any address
    blocked: list[object] = field(default_factory=list)  # refused: non-loopback connect or lookup
    expect_blocked: bool = False

    def check_connect(self, address: Any) -> None:
        if isinstance(address, tuple):
            self.attempts.append((str(address[0]), int(address[1])))
            if _is_loopback(address[0]):
                return
        self.blocked.append(address)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "test guard: non-loopback connect")

    def check_lookup(self, host: object) -> None:
        if host is None or _is_loopback(host):
            return
        self.blocked.append(("lookup", host))
        raise socket.gaierror(socket.EAI_NONAME, "test guard: no real DNS in tests")


def install_net_guard(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    """Refuse and record every non-loopback connect or lookup until `monkeypatch` undoes it."""
    guard = NetGuard()

    def connect(sock: socket.socket, address: Any) -> None:
        guard.check_connect(address)
        _original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        try:
            guard.check_connect(address)
        except ConnectionRefusedError:
            return errno.ECONNREFUSED
        return _original_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.check_lookup(host)
        return _original_getaddrinfo(host, *args, **kwargs)

    async def sock_connect(loop: Any, sock: socket.socket, address: Any) -> None:
        guard.check_connect(address)
        await _original_sock_connect(loop, sock, address)

    async def loop_getaddrinfo(loop: Any, host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.check_lookup(host)
        return await _original_loop_getaddrinfo(loop, host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)
    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", loop_getaddrinfo)
    return guard


class StubResolver:
    """Answers from a script instead of DNS and records every call.

    `answers` is the list returned for any host; `then` (if set) for every later call,
    which is how a rebinding name behaves.
    """

    def __init__(
        self, answers: list[str] | None = None, *, then: list[str] | None = None,
        hang: bool = False,
    ) -> None:
        self.answers = answers
        self.then = then
        self.hang = hang
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.hang:
            await asyncio.Event().wait()
        if self.answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "stub: unknown name")
        if self.then is not None and len(self.calls) > 1:
            return list(self.then)
        return list(self.answers)


@dataclass
class Sentinel:
    port: int
    accepted: list[object] = field(default_factory=list)


@asynccontextmanager
async def sentinel_listener() -> AsyncIterator[Sentinel]:
    """A raw listener on 127.0.0.1 that records (and drops) any connection it accepts."""
    record = Sentinel(port=0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record.accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    record.port = server.sockets[0].getsockname()[1]
    async with server:
        yield record
        server.close()


def closed_port() -> int:
    """A loopback port with (almost certainly) nobody listening: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

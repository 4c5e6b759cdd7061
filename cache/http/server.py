"""The listener under hostile load: a cap on open connections, a deadline on headers, and
parser-level errors answered as problem+json.

aiohttp gives each connection a `RequestHandler` made by its `web.Server`. Here:
- `GuardedServer` refuses a connection past `server.max_connections` at once, with a
  canned 503 (problem+json, Retry-After) and a close: a flood of connections costs a
  socket each, never a handler task and buffers.
- The header deadline is aiohttp's keep-alive timer, which it arms when a connection
  opens and re-arms only after a complete request: a client that trickles a request
  line or headers (slowloris), or sits idle, is closed `server.header_timeout` seconds
  after the connection opened or its last request ended.
- `ProblemHandler.handle_error` answers what the HTTP parser refuses (a request line
  over 8,190 bytes, too many headers, a bad chunk size) as problem+json without echoing
  the input, where aiohttp answers text/plain with its message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import BadRequest, CacheError, PayloadTooLarge
from .problems import PROBLEM_CONTENT_TYPE, problem_response

_REFUSED = json.dumps(
    {
        "type": "https://query-cache.invalid/problems/unavailable",
        "title": "Service not ready",
        "status": 503,
        "detail": "too many open connections; retry shortly",
    }
).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: " + PROBLEM_CONTENT_TYPE.encode() + b"\r\n"
    b"Content-Length: " + str(len(_REFUSED)).encode() + b"\r\n"
    b"Retry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + _REFUSED
)


class ProblemHandler(RequestHandler):
    """aiohttp's connection handler, answering its own refusals as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error: CacheError
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs it, with the cause
            error = CacheError("internal error")
        elif status in (413, 431):
            error = PayloadTooLarge("the request line or headers are too large")
        else:
            error = BadRequest("the request could not be parsed as HTTP/1.1")
        response = problem_response(error)  # never the parser's message: it echoes input
        response.force_close()
        return response


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(REFUSAL)
        transport.close()


class GuardedServer(web.Server):
    """`web.Server` with a connection cap; it adopts the state of the server aiohttp
    built (routes, request factory, handler arguments) so nothing else changes."""

    def __init__(
        self, inner: web.Server, max_connections: int, on_refused: Callable[[], object]
    ) -> None:
        self.__dict__.update(inner.__dict__)
        self.max_connections = max_connections
        self._on_refused = on_refused

    def __call__(self) -> Any:
        if len(self._connections) >= self.max_connections:
            self._on_refused()
            return _Refuse()
        return ProblemHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a GuardedServer, with the header deadline set."""

    def __init__(
        self,
        app: web.Application,
        *,
        max_connections: int,
        header_timeout: float,
        on_refused: Callable[[], object] = lambda: None,
        **kw: Any,
    ) -> None:
        super().__init__(app, keepalive_timeout=header_timeout, **kw)
        self._max_connections = max_connections
        self._on_refused = on_refused

    async def _make_server(self) -> web.Server:
        inner = await super()._make_server()
        return GuardedServer(inner, self._max_connections, self._on_refused)

    @property
    def open_connections(self) -> int:
        server = self.server
        return 0 if server is None else len(server.connections)

"""Request bodies: an upload streamed under its byte cap and its deadlines, or a small JSON
object. Every way a body can be wrong ends as a domain refusal, never a 500.

Each chunk goes through one `BodyStream`, which is where the body's limits live: the byte
cap (413), the idle and whole-body deadlines (`limits.body_idle_timeout`,
`limits.body_timeout`: 408), bytes in flight counted as they arrive (`grow`, for bodies
of unknown length: chunked), and the transport's failures: a client that hangs up is
`ClientClosed` (499, logged at INFO), a broken chunked framing is 400. A body in a
`Content-Encoding` other than identity is refused (415) before a byte of it is read: an
image is compressed already, and a decompressed size nobody declared is a bomb's.
Multipart goes through our own bounded reader (`http/multipart.py`), never
`request.post()`, which spools file fields to a temp file on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..errors import (
    BadRequest,
    ClientClosed,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedEncoding,
)
from ..runtime import RUNTIME
from ..store.api import Alloc, Buffer
from ..wipe import zero
from .multipart import read_file_part
from .sink import Sink

Grow = Callable[[int], None]  # told every byte as it arrives; raises to refuse the body
JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int
    idle_timeout: float
    total_timeout: float


def body_limits(request: web.Request, max_bytes: int | None = None) -> BodyLimits:
    """The config's limits for this request's body (`max_bytes`: default the upload cap)."""
    limits = request.app[RUNTIME].config.limits
    cap = limits.max_upload_bytes if max_bytes is None else max_bytes
    return BodyLimits(cap, limits.body_idle_timeout, limits.body_timeout)


class BodyStream:
    """The chunks of one request body, as the parser made them, under its limits."""

    def __init__(self, request: web.Request, limits: BodyLimits, grow: Grow | None) -> None:
        self._request = request
        self._content = request.content
        self._limits = limits
        self._grow = grow
        loop = asyncio.get_running_loop()
        self._time = loop.time
        self._deadline = loop.time() + limits.total_timeout
        self.received = 0

    async def chunk(self) -> bytes:
        """The next chunk (b"" at the end), or a refusal. What the parser has buffered
        already is taken without a wait, so without a timer: a deadline costs a timer
        handle, and most chunks of an upload are there when they are asked for."""
        limits = self._limits
        content = self._content
        try:
            chunk = content.read_nowait()  # the buffered chunks (one: no copy), or b""
            if chunk or content.at_eof():
                return self._counted(chunk)
        except (ConnectionError, RequestPayloadError, HttpProcessingError) as exc:
            raise self._broken(exc) from None
        left = self._deadline - self._time()
        idle = limits.idle_timeout < left
        try:
            async with asyncio.timeout(max(0.0, min(limits.idle_timeout, left))):
                chunk = await content.readany()
        except TimeoutError:
            if idle:
                raise RequestTimeout(
                    f"no byte of the body for {limits.idle_timeout:g} s (limits.body_idle_timeout)"
                ) from None
            raise RequestTimeout(
                f"the body took longer than {limits.total_timeout:g} s (limits.body_timeout)"
            ) from None
        except (ConnectionError, RequestPayloadError, HttpProcessingError) as exc:
            raise self._broken(exc) from None
        return self._counted(chunk)

    def _counted(self, chunk: bytes) -> bytes:
        limits = self._limits
        if self._time() > self._deadline:
            raise RequestTimeout(
                f"the body took longer than {limits.total_timeout:g} s (limits.body_timeout)"
            )
        self.received += len(chunk)
        if self.received > limits.max_bytes:
            raise PayloadTooLarge(f"the body is over the {limits.max_bytes}-byte limit")
        if self._grow is not None and chunk:
            self._grow(len(chunk))
        return chunk

    def _broken(self, exc: BaseException) -> Exception:
        if isinstance(exc, ConnectionError) or self._request.transport is None:
            return ClientClosed(f"the client closed the connection after {self.received} bytes")
        return BadRequest("the body's framing is malformed (chunked or content coding)")


def check_identity(request: web.Request) -> None:
    """415 for a body in any content coding but identity (see the module docstring)."""
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise UnsupportedEncoding("bodies are read as sent: Content-Encoding must be identity")


async def read_upload(
    request: web.Request, limits: BodyLimits, grow: Grow | None, alloc: Alloc
) -> Buffer:
    """The upload's bytes: the raw body, or the first multipart part named `file`, read
    into the room `alloc` gives (the store's: see http/sink.py)."""
    check_identity(request)
    length = request.content_length
    if length is not None and length > limits.max_bytes:
        raise PayloadTooLarge(f"the image is over the {limits.max_bytes}-byte limit")
    stream = BodyStream(request, limits, grow)
    if request.content_type.startswith("multipart/"):
        room = None if length is None else min(length, limits.max_bytes)
        body = await read_file_part(
            stream.chunk, _boundary(request), limits.max_bytes, lambda: Sink(alloc, room)
        )
    else:
        body = await _read_into(stream, Sink(alloc, length))
    if not body.used:
        body.discard()
        raise BadRequest("the request has no image bytes")
    return body


async def _read_into(stream: BodyStream, sink: Sink) -> Buffer:
    """Every chunk into the sink's room: one copy each, no joins."""
    try:
        while chunk := await stream.chunk():
            sink.write(chunk)
        room = sink.buffer.size
        if sink.fixed and sink.used != room:
            raise BadRequest(f"the body ended after {sink.used} of {room} declared bytes")
    except BaseException:
        sink.discard()
        raise
    return sink.buffer


def _boundary(request: web.Request) -> bytes:
    boundary = parse_mimetype(request.headers.get("Content-Type", "")).parameters.get(
        "boundary", ""
    )
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise BadRequest("a multipart body needs a boundary of 1 to 70 ASCII characters")
    return boundary.encode()


async def _read_all(stream: BodyStream, expected: int | None) -> bytearray:
    """Every chunk into one buffer. With the length known the buffer is allocated once at
    that size and each chunk copied into place: no regrowth."""
    body = bytearray(expected) if expected is not None else bytearray()
    filled = 0
    try:
        while chunk := await stream.chunk():
            end = filled + len(chunk)
            if expected is None:
                body += chunk  # grows geometrically: amortised one copy
            elif end > expected:  # more than declared: the parser should not let this happen
                raise BadRequest("the body is longer than its Content-Length")
            else:
                body[filled:end] = chunk
            filled = end
        if expected is not None and filled != expected:
            raise BadRequest(f"the body ended after {filled} of {expected} declared bytes")
    except BaseException:
        zero(body)
        raise
    return body


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (UTF-8, at most the app's client_max_size), or a 400, 408,
    413 or 415. orjson refuses nesting past 1,024 levels and numbers past a double's
    range as malformed JSON, where the stdlib raised RecursionError or ValueError."""
    check_identity(request)
    charset = (request.charset or "utf-8").strip().lower()
    if charset not in JSON_CHARSETS:
        raise UnsupportedEncoding("JSON bodies are UTF-8 (RFC 8259): drop the charset")
    limits = body_limits(request, request.client_max_size)
    if request.content_length is not None and request.content_length > limits.max_bytes:
        raise PayloadTooLarge(f"the body is over the {limits.max_bytes}-byte limit")
    raw = await _read_all(BodyStream(request, limits, None), request.content_length)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be a JSON object (UTF-8)") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body

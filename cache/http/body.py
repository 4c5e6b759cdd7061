"""Request bodies: an upload streamed under its byte cap, or a small JSON object.

Multipart goes through `request.multipart()`, never `request.post()`, which spools file
fields to a temp file on disk. A client's filename and declared part type are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from ..errors import BadRequest, PayloadTooLarge
from ..wipe import zero

_CHUNK = 64 * 1024


async def read_capped(
    read_chunk: Callable[[int], Awaitable[bytes]], max_bytes: int, expected: int | None = None
) -> bytearray:
    """Read a stream into one buffer, refusing (413) the moment it passes `max_bytes`.

    With the length known (`expected`), the buffer is allocated once at that size and each
    chunk is copied into place: one copy from the parser's chunks, no regrowth."""
    if expected is None:
        return await _read_growing(read_chunk, max_bytes)
    body = bytearray(expected)
    filled = 0
    while chunk := await read_chunk(_CHUNK):
        end = filled + len(chunk)
        if end > expected:  # more than declared: the parser should not let this happen
            zero(body)
            raise PayloadTooLarge(f"the image is over the {max_bytes}-byte limit")
        body[filled:end] = chunk
        filled = end
    if filled != expected:
        zero(body)
        raise BadRequest(f"the body ended after {filled} of {expected} declared bytes")
    return body


async def _read_growing(read_chunk: Callable[[int], Awaitable[bytes]], max_bytes: int) -> bytearray:
    body = bytearray()
    while chunk := await read_chunk(_CHUNK):
        if len(body) + len(chunk) > max_bytes:
            zero(body)
            raise PayloadTooLarge(f"the image is over the {max_bytes}-byte limit")
        body += chunk  # bytearray grows geometrically: amortised one copy
    return body


async def read_upload(request: web.Request, max_bytes: int) -> bytearray:
    """The upload's bytes: raw body, or the multipart field `file`, streamed, never spooled."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the image is over the {max_bytes}-byte limit")
    if request.content_type.startswith("multipart/"):
        body = await _read_multipart_file(request, max_bytes)
    else:
        body = await read_capped(_any(request), max_bytes, _plain_length(request))
    if not body:
        raise BadRequest("the request has no image bytes")
    return body


def _any(request: web.Request) -> Callable[[int], Awaitable[bytes]]:
    """Whole chunks as the parser made them (`readany`): `read(n)` would slice them."""
    content = request.content

    async def read(_: int) -> bytes:
        return await content.readany()

    return read


def _plain_length(request: web.Request) -> int | None:
    """The declared length of an unencoded body (None when chunked or compressed)."""
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    return request.content_length


async def _read_multipart_file(request: web.Request, max_bytes: int) -> bytearray:
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return await read_capped(lambda size: part.read_chunk(size), max_bytes)
            # Any other field is read through and dropped, under the same cap.
            await read_capped(lambda size: _drain(part, size), max_bytes)
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    raise BadRequest("the multipart body has no field named 'file'")


async def _drain(part: object, size: int) -> bytes:
    if isinstance(part, BodyPartReader):
        return await part.read_chunk(size)
    return b""


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 (413 past the app's client_max_size)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body

"""The public routes, for the frontend and its search workers: parse, call, answer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from ..errors import CacheError, InvalidParameter, NotFound, ServiceUnavailable
from ..intake.thumbnail import MIN_SIZE
from ..item import ID_PATTERN, Item
from ..runtime import RUNTIME, Runtime
from .body import body_limits, check_identity, read_json_object, read_upload
from .middleware import IMAGE_HEADERS, json_response
from .openapi import openapi_document
from .params import integer, parse_lifetime

DEFAULT_THUMBNAIL = 256
# A GET of the image answers the whole of it: no ranges (each would spend a read).
READ_HEADERS = CIMultiDict({**IMAGE_HEADERS, "Accept-Ranges": "none"})


def created_view(item: Item) -> dict[str, Any]:
    view = item.public_view()
    return {
        key: view[key]
        for key in (
            "id",
            "expires_at",
            "ttl",
            "sha256",
            "size",
            "media_type",
            "width",
            "height",
            "frames",
            "reads_left",
            "source",
            "pdq",  # with pdq_quality, only when blocklist.pdq_mode is on
            "pdq_quality",
        )
        if key in view
    }


def _created(item: Item) -> web.Response:
    return json_response(
        created_view(item), status=201, headers={"Location": f"/v1/images/{item.id}"}
    )


async def upload(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        ttl, max_reads = parse_lifetime(request.query, rt.config.ttl)
        check_identity(request)
    except CacheError as exc:
        rt.intake.reject(exc, "upload")
        raise
    item = await rt.intake.admit_upload(
        request.content_length,
        lambda grow, alloc: read_upload(request, body_limits(request), grow, alloc),
        ttl=ttl,
        max_reads=max_reads,
        max_bytes=rt.config.limits.max_upload_bytes,
    )
    return _created(item)


async def fetch(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    if not rt.config.fetch.enabled:
        rt.metrics.fetch.labels("disabled").inc()
        raise NotFound("fetch by URL is disabled on this service")
    try:
        params = await read_json_object(request)
        ttl, max_reads = parse_lifetime(params, rt.config.ttl)
        url = params.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidParameter("url must be a non-empty string")
    except CacheError as exc:
        rt.intake.reject(exc, "fetch")
        raise
    return _created(await rt.intake.admit_fetch(url, ttl=ttl, max_reads=max_reads))


class HeldBytesResponse(web.StreamResponse):
    """A response whose status line and headers go out in the same write as the body
    (aiohttp's `Response` does this; a `StreamResponse` writes its headers at `prepare`):
    one send a read instead of two. During a flood of uploads each send also pays for the
    kernel's processing of incoming traffic, and the two sends of a 100 KB read took
    the same time (py-spy --gil on the server: 19.5% and 19.0% of the loop)."""

    _send_headers_immediately = False


async def read_image(request: web.Request) -> web.StreamResponse:
    """The bytes, written straight from the held buffer; a response still being written
    at the item's deadline + ttl.grace is cut (the connection is aborted), so a slow
    reader never receives bytes, nor holds a buffer, past that. `Range` is ignored: a GET
    answers the whole image (200) and counts a read, as any GET that delivers bytes."""
    rt = request.app[RUNTIME]
    item, data = await rt.store.read(request.match_info["id"])
    response = HeldBytesResponse(headers=READ_HEADERS)
    response.content_type = item.media_type
    response.content_length = len(data)
    cut_in = item.deadline + rt.config.ttl.grace - rt.clock.monotonic()
    try:
        async with asyncio.timeout(cut_in):
            await response.prepare(request)
            await response.write(data)
            await response.write_eof()
    except TimeoutError:
        rt.metrics.reads_cut.inc()
        if request.transport is not None:
            request.transport.abort()
    finally:
        del data  # the view: its buffer may be zeroed from now on
    return response


async def head_image(request: web.Request) -> web.StreamResponse:
    """HEAD: the headers a GET would send, from the metadata alone. It never spends a
    read: link-preview bots and crawlers send HEAD first, and a one-time link must
    survive them."""
    item = await request.app[RUNTIME].store.meta(request.match_info["id"])
    response = web.StreamResponse(headers=READ_HEADERS)
    response.content_type = item.media_type
    response.content_length = item.size
    await response.prepare(request)
    await response.write_eof()
    return response


async def thumbnail(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    cap = rt.config.limits.max_thumbnail_size
    size = integer("size", request.query.get("size", str(DEFAULT_THUMBNAIL)))
    if not MIN_SIZE <= size <= cap:
        raise InvalidParameter(f"size must be between {MIN_SIZE} and {cap}", bound=cap)
    item_id = request.match_info["id"]
    body, media_type = await rt.thumbnails.make(item_id, size)
    rt.audit.emit("read", id=item_id, kind="thumbnail", size=size)
    return web.Response(body=body, content_type=media_type, headers=IMAGE_HEADERS)


async def meta(request: web.Request) -> web.Response:
    item = await request.app[RUNTIME].store.meta(request.match_info["id"])
    return json_response(item.public_view(), headers={"Cache-Control": "no-store"})


async def delete(request: web.Request) -> web.Response:
    receipt = await request.app[RUNTIME].store.delete(request.match_info["id"])
    if receipt is None:
        raise NotFound()
    return web.Response(status=204)


async def robots(request: web.Request) -> web.Response:
    return web.Response(text="User-agent: *\nDisallow: /\n")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME]
    if not rt.ready:
        raise ServiceUnavailable(f"not ready: {rt.not_ready_reason}")
    if rt.audit.backlogged:
        raise ServiceUnavailable(f"not ready: {rt.audit.waiting} audit lines waiting")
    reason = await rt.store.unready_reason()
    if reason is not None:
        raise ServiceUnavailable(f"not ready: {reason}")
    return json_response({"status": "ready", "items": len(rt.store)})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[RUNTIME].config))


def add_public_routes(app: web.Application) -> None:
    # {id} matches only what could be an id: /v1/images/fetch is not an image's path, and
    # its 405 lists only the methods it has in Allow.
    item = "/v1/images/{id:" + ID_PATTERN.pattern.strip("^$") + "}"
    app.router.add_post("/v1/images", upload)
    app.router.add_post("/v1/images/fetch", fetch)
    app.router.add_get(item, read_image, allow_head=False)
    app.router.add_head(item, head_image)
    app.router.add_delete(item, delete)
    app.router.add_get(item + "/thumbnail", thumbnail)
    app.router.add_get(item + "/meta", meta)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)

"""What both listeners share: problem+json for every error, latency per route, and the
security headers, set in one place.

Every error a handler raises (a domain refusal or aiohttp's own 404/405/413) leaves here
as problem+json; every request is timed by route, method and status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from ..errors import CacheError, ClientClosed, NotFound
from ..runtime import LISTENER, RUNTIME
from .problems import BY_STATUS, MethodNotAllowed, problem_of, problem_response

log = logging.getLogger(__name__)
# Methods with a series of their own; any other token a client sends counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

# Every public answer: nothing is cached, sniffed or indexed.
PUBLIC_HEADERS = CIMultiDict(
    {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex, nofollow, noarchive",
    }
)
# Image bytes on top of that: no script, no referrer, even if a browser renders them.
IMAGE_HEADERS = CIMultiDict(
    {
        **PUBLIC_HEADERS,
        "Content-Security-Policy": "default-src 'none'",
        "Referrer-Policy": "no-referrer",
    }
)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer encoded with orjson (a fifth of `web.json_response`'s cost: it is
    on every upload's path, and on every refusal's under a flood)."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def route_label(request: web.Request) -> str:
    route = request.match_info.route
    return route.resource.canonical if route.resource is not None else "unmatched"


@web.middleware
async def problems_and_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json (aiohttp's own 404/405/413 too); every request is
    timed. A client that hung up is no server error: 499 in the histogram, one INFO line."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except CacheError as exc:
        status = problem_of(exc).status
        if isinstance(exc, ClientClosed):
            _client_closed(request, exc.detail)
        return _unread_body_closes(request, problem_response(exc, request.path))
    except web.HTTPException as exc:
        if exc.status < 400:
            status = exc.status
            raise
        error = _aiohttp_refusal(exc)
        status = problem_of(error).status
        return _unread_body_closes(request, problem_response(error, request.path))
    except ConnectionError:  # the client went away while we answered it
        error = ClientClosed("the client closed the connection during the response")
        status = problem_of(error).status
        _client_closed(request, error.detail)
        return problem_response(error, request.path)  # nobody reads it: nothing is sent
    except Exception:
        log.exception("unhandled error on %s %s", request.method, route_label(request))
        return problem_response(CacheError("internal error"), request.path)
    finally:
        method = request.method if request.method in METHODS else "other"
        request.app[RUNTIME].metrics.request_seconds(
            request.app[LISTENER], route_label(request), method, str(status)
        ).observe(time.perf_counter() - started)


def _aiohttp_refusal(exc: web.HTTPException) -> CacheError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(exc.reason, allow=exc.headers.get("Allow", ""))
    if isinstance(exc, web.HTTPNotFound):
        return NotFound()  # the same body as an unknown id's: no difference leaks
    return BY_STATUS.get(exc.status, CacheError)(exc.reason)


def _client_closed(request: web.Request, detail: str) -> None:
    log.info("%s %s: %s (499)", request.method, route_label(request), detail)


def _unread_body_closes(request: web.Request, response: web.Response) -> web.Response:
    """A refusal that left the body unread (full, too large) closes the connection rather
    than draining what the client still sends: under a flood, nothing more is buffered.
    A body that broke (bad framing, a lost connection), stalled (408) or comes in a coding
    we do not read (415) is marked read to its end: aiohttp would otherwise linger,
    draining (and decompressing) it for seconds after the answer; a broken body's error
    would be logged as unhandled."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()
        if request.content.exception() is not None or response.status in (408, 415):
            request.content.feed_eof()
    return response


async def public_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` of the public listener: headers a handler did not set."""
    headers = response.headers
    for name, value in PUBLIC_HEADERS.items():
        if name not in headers:
            headers[name] = value

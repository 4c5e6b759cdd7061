"""What both listeners share: problem+json for every error, latency per route, JSON bodies."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import HTTP_STATUS_ERRORS, BadRequest, CacheError, problem_response
from ..runtime import LISTENER, RUNTIME

log = logging.getLogger(__name__)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    return route.resource.canonical if route.resource is not None else "unmatched"


@web.middleware
async def problems_and_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json (aiohttp's own 404/405/413 too); every request is timed."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except CacheError as exc:
        status = exc.status
        return _unread_body_closes(request, problem_response(exc, request.path))
    except web.HTTPException as exc:
        if exc.status < 400:
            status = exc.status
            raise
        error_type = HTTP_STATUS_ERRORS.get(exc.status, CacheError)
        status = error_type.status
        return problem_response(error_type(exc.reason), request.path)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, _route_label(request))
        return problem_response(CacheError("internal error"), request.path)
    finally:
        request.app[RUNTIME].metrics.request_duration.labels(
            request.app[LISTENER], _route_label(request), request.method, str(status)
        ).observe(time.perf_counter() - started)


def _unread_body_closes(request: web.Request, response: web.Response) -> web.Response:
    """A refusal that left the body unread (full, too large) closes the connection rather
    than draining what the client still sends: under a flood, nothing more is buffered."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()
    return response


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 (413 past the app's client_max_size)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body

"""Where a domain refusal becomes an HTTP answer: status, stable slug, title, headers.

RFC 9457 problem+json. Clients and alerts match on the `type` slug, never on `detail`. The
table is keyed by exception class and read along the class's MRO, so a subclass without a
row answers as its parent does. Nothing below `cache.http` knows any of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .. import errors as e

PROBLEM_BASE = "https://query-cache.invalid/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class Unauthorized(e.CacheError):
    """The ops listener's bearer token is missing or wrong."""


class MethodNotAllowed(e.CacheError):
    """The route exists, the method does not; `allow` lists the methods it has (RFC 9110
    requires the `Allow` header on every 405)."""

    def __init__(self, detail: str = "", allow: str = "") -> None:
        super().__init__(detail)
        self.allow = allow


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    slug: str
    title: str

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug


PROBLEMS: dict[type[e.CacheError], Problem] = {
    e.CacheError: Problem(500, "internal-error", "Internal error"),
    e.BadRequest: Problem(400, "bad-request", "Malformed request"),
    e.InvalidParameter: Problem(400, "invalid-parameter", "Invalid parameter"),
    e.InvalidUrl: Problem(400, "invalid-url", "URL not allowed"),
    Unauthorized: Problem(401, "unauthorized", "Missing or wrong bearer token"),
    e.FetchForbidden: Problem(403, "fetch-destination-forbidden", "Fetch destination not allowed"),
    e.NotFound: Problem(404, "not-found", "No such image"),
    MethodNotAllowed: Problem(405, "method-not-allowed", "Method not allowed"),
    e.RequestTimeout: Problem(408, "request-timeout", "Request body too slow"),
    e.PayloadTooLarge: Problem(413, "payload-too-large", "Image too large"),
    e.UnsupportedEncoding: Problem(415, "unsupported-encoding", "Body encoding not supported"),
    # nginx's 499: never sent (the client is gone), only counted and logged.
    e.ClientClosed: Problem(499, "client-closed", "Client closed the request"),
    e.UnsupportedFormat: Problem(415, "unsupported-format", "Not an allowed image format"),
    e.InvalidImage: Problem(422, "invalid-image", "Not a valid image"),
    e.ImageTooLarge: Problem(422, "image-dimensions-exceeded", "Image dimensions over the cap"),
    e.Conflict: Problem(409, "conflict", "Not possible in the present configuration"),
    e.Blocklisted: Problem(451, "blocklisted", "Image refused by the blocklist"),
    e.InvalidHashList: Problem(422, "invalid-hash-list", "Hash-list file not valid"),
    e.ServiceUnavailable: Problem(503, "unavailable", "Service not ready"),
    e.CacheFull: Problem(503, "cache-full", "Cache full"),
    e.StorageUnavailable: Problem(503, "storage-unavailable", "Storage unavailable"),
    e.InsufficientStorage: Problem(507, "insufficient-storage", "Storage write failed"),
    e.FetchFailed: Problem(502, "fetch-failed", "Remote fetch failed"),
    e.FetchTimeout: Problem(504, "fetch-timeout", "Remote fetch timed out"),
}

# aiohttp's own refusals (no route, wrong method, body over client_max_size).
BY_STATUS: dict[int, type[e.CacheError]] = {
    400: e.BadRequest,
    404: e.NotFound,
    405: MethodNotAllowed,
    413: e.PayloadTooLarge,
}


def problem_of(error: e.CacheError | type[e.CacheError]) -> Problem:
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        problem = PROBLEMS.get(klass)
        if problem is not None:
            return problem
    return PROBLEMS[e.CacheError]


def status_and_slug(error: e.CacheError) -> tuple[int, str]:
    """What the audit log and the `rejected` metric record of a refusal."""
    problem = problem_of(error)
    return problem.status, problem.slug


def headers_of(error: e.CacheError) -> dict[str, str]:
    if isinstance(error, e.ServiceUnavailable):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="query-cache-ops"'}
    if isinstance(error, e.UnsupportedEncoding):
        return {"Accept-Encoding": "identity"}  # RFC 7694: what a body may be sent in
    if isinstance(error, MethodNotAllowed):
        return {"Allow": error.allow}
    return {}


def problem_body(error: e.CacheError, instance: str | None = None) -> dict[str, Any]:
    problem = problem_of(error)
    body: dict[str, Any] = {
        "type": problem.type_uri,
        "title": problem.title,
        "status": problem.status,
        "detail": error.detail or problem.title,
    }
    if instance:
        body["instance"] = instance
    body.update(error.extra)
    return body


def problem_response(error: e.CacheError, instance: str | None = None) -> web.Response:
    """Render `error` as an application/problem+json response."""
    return web.Response(
        status=problem_of(error).status,
        body=orjson.dumps(problem_body(error, instance)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers={"Cache-Control": "no-store", **headers_of(error)},
    )

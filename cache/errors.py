"""Every error the service answers with, as RFC 9457 problem+json.

Each error class carries a stable `type` slug, so clients and alerts can match on it and
never on the human-readable `detail`, which may change.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from aiohttp import web

PROBLEM_BASE = "https://query-cache.invalid/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class CacheError(Exception):
    """Base of every error answered to a client; `slug` names it for good."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def headers(self) -> dict[str, str]:
        return {}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class BadRequest(CacheError):
    status, slug, title = 400, "bad-request", "Malformed request"


class InvalidParameter(BadRequest):
    slug, title = "invalid-parameter", "Invalid parameter"


class InvalidUrl(BadRequest):
    slug, title = "invalid-url", "URL not allowed"


class Unauthorized(CacheError):
    status, slug, title = 401, "unauthorized", "Missing or wrong bearer token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="query-cache-ops"'}


class FetchForbidden(CacheError):
    status, slug, title = 403, "fetch-destination-forbidden", "Fetch destination not allowed"


class NotFound(CacheError):
    status, slug, title = 404, "not-found", "No such image"


class MethodNotAllowed(CacheError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class PayloadTooLarge(CacheError):
    status, slug, title = 413, "payload-too-large", "Image too large"


class UnsupportedFormat(CacheError):
    status, slug, title = 415, "unsupported-format", "Not an allowed image format"


class InvalidImage(CacheError):
    status, slug, title = 422, "invalid-image", "Not a valid image"


class ImageTooLarge(CacheError):
    """Dimensions, pixel count or frame count over a cap (decompression bombs land here)."""

    status, slug, title = 422, "image-dimensions-exceeded", "Image dimensions over the cap"


class Blocklisted(CacheError):
    status, slug, title = 451, "blocklisted", "Image refused by the blocklist"


class ServiceUnavailable(CacheError):
    status, slug, title = 503, "unavailable", "Service not ready"

    def __init__(self, detail: str = "", retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class CacheFull(ServiceUnavailable):
    slug, title = "cache-full", "Cache full"


class StorageUnavailable(ServiceUnavailable):
    """The shared storage (Redis) cannot be reached: retry, any node may serve again soon."""

    slug, title = "storage-unavailable", "Storage unavailable"


class InsufficientStorage(CacheError):
    status, slug, title = 507, "insufficient-storage", "Storage write failed"


class FetchFailed(CacheError):
    status, slug, title = 502, "fetch-failed", "Remote fetch failed"


class FetchTimeout(CacheError):
    status, slug, title = 504, "fetch-timeout", "Remote fetch timed out"


class StartupRefused(Exception):
    """A start-up check failed: the message is the one line for the operator (exit 2)."""


HTTP_STATUS_ERRORS: dict[int, type[CacheError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def problem_response(error: CacheError, instance: str | None = None) -> web.Response:
    """Render `error` as an application/problem+json response."""
    return web.Response(
        status=error.status,
        text=json.dumps(error.to_problem(instance)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers={"Cache-Control": "no-store", **error.headers()},
    )


def all_error_types() -> list[type[CacheError]]:
    """Every concrete error type, for the OpenAPI description."""
    seen: list[type[CacheError]] = []
    pending: list[type[CacheError]] = [CacheError]
    while pending:
        cls = pending.pop(0)
        seen.append(cls)
        pending.extend(cls.__subclasses__())
    return seen

"""The refusals the core raises: plain domain exceptions that know nothing of HTTP.

Each class names one way a request can fail, with a human `detail` (which may change) and
`extra` facts worth showing (a bound). `audit_fields` are facts for the audit log's
`rejected` line only, never shown to the client (which list refused an image). What
status, stable slug and title a client sees is decided in one place,
`cache.http.problems`: the core only says what went wrong.
"""

from __future__ import annotations

import math
from typing import Any


class CacheError(Exception):
    """Base of every refusal; a bare CacheError is an internal error. An empty `detail`
    is answered with the problem's title."""

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or type(self).__name__)
        self.detail = detail
        self.extra = extra
        self.audit_fields: dict[str, Any] = {}


class BadRequest(CacheError):
    """The request is malformed."""


class InvalidParameter(BadRequest):
    """A parameter is missing, malformed or out of bounds."""


class InvalidUrl(BadRequest):
    """A fetch URL is malformed or uses what the policy refuses before any lookup."""


class FetchForbidden(CacheError):
    """A fetch destination is not allowed (a private address, a port, a scheme)."""


class NotFound(CacheError):
    """No such item: missing, expired and purged look the same."""


class PayloadTooLarge(CacheError):
    """A body over its byte cap."""


class RequestTimeout(CacheError):
    """A body that stalled (no byte for `limits.body_idle_timeout`) or took longer than
    `limits.body_timeout` as a whole: cut, and its reservation released."""


class UnsupportedEncoding(CacheError):
    """A body in an encoding the service does not read: a `Content-Encoding` other than
    identity, or a JSON `charset` other than UTF-8."""


class ClientClosed(CacheError):
    """The client hung up before its request was read or answered: not a server error,
    and nobody is left to answer."""


class UnsupportedFormat(CacheError):
    """The bytes are not an image in an allowed format."""


class InvalidImage(CacheError):
    """The bytes claim a format but are truncated, corrupt or padded."""


class ImageTooLarge(CacheError):
    """Dimensions, pixel count or frame count over a cap (decompression bombs land here)."""


class Conflict(CacheError):
    """The request cannot be done in the service's present configuration (e.g. a PDQ hash
    while `blocklist.pdq_mode` is off)."""


class Blocklisted(CacheError):
    """The image is on a hash list; nothing of it is stored. Which list, which entry and how
    close go to `audit_fields` (the audit log), never to the client."""

    def __init__(self, detail: str = "", audit_fields: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.audit_fields = dict(audit_fields or {})


class InvalidHashList(CacheError):
    """A hash-list file is malformed or unreadable: the lists in force did not change."""


class ServiceUnavailable(CacheError):
    """Not now: retry after `retry_after` seconds (at least one)."""

    def __init__(self, detail: str = "", retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, math.ceil(retry_after))


class CacheFull(ServiceUnavailable):
    """No room until the earliest deadline frees some."""


class StorageUnavailable(ServiceUnavailable):
    """The shared storage (Redis) cannot be reached: retry, any node may serve again soon."""


class InsufficientStorage(CacheError):
    """Writing the bytes failed for lack of space (ENOSPC on tmpfs)."""


class FetchFailed(CacheError):
    """The remote end of a fetch failed or answered with an error."""


class FetchTimeout(CacheError):
    """A fetch took longer than its budget."""


class StartupRefused(Exception):
    """A start-up check failed: the message is the one line for the operator (exit 2)."""

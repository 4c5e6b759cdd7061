"""The OpenAPI 3.1 description of the public listener, built from config and the error types."""

from __future__ import annotations

from typing import Any

from ..config import Config
from .params import MAX_READS_CAP
from .problems import PROBLEMS

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
}
READS = (
    "Only a GET of the image spends a read (`max_reads`): HEAD, `/meta` and thumbnails never "
    "do, so a link-preview bot's HEAD cannot burn a one-time link. `Range` is ignored: a GET "
    "answers the whole image (200, `Accept-Ranges: none`) and counts a read, as it delivers "
    "the bytes."
)
NUMBERS = "ASCII digits only (no `_`, no other scripts' digits); anything else is 400."
_CREATED = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "expires_at": {"type": "number"},
        "ttl": {"type": "number"},
        "sha256": {"type": "string"},
        "size": {"type": "integer"},
        "media_type": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "frames": {"type": "integer"},
        "reads_left": {"type": ["integer", "null"]},
        "source": {"type": "string"},
        # Only when blocklist.pdq_mode is on: the PDQ hash (64 hex) and its quality (0-100).
        "pdq": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "pdq_quality": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["id", "expires_at", "ttl", "sha256", "size", "media_type", "width", "height"],
}


UPLOAD = (
    "The body is read as sent: a `Content-Encoding` other than identity is 415. A body that "
    "sends nothing for `limits.body_idle_timeout` or takes longer than `limits.body_timeout` "
    "is 408. Multipart: the first part named `file` is the image; at most 8 parts, small part "
    "headers. A `Content-Length` over `limits.max_upload_bytes` is 413; a cache too full for "
    "the body now is 503 with the Retry-After of the deadline that makes room."
)


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Problem{status}"} for status in statuses}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def openapi_document(config: Config) -> dict[str, Any]:
    lifetime = [
        {
            "name": "ttl",
            "in": "query",
            "description": "Seconds the image is held. " + NUMBERS,
            "schema": {
                "type": "number",
                "minimum": 1,
                "maximum": config.ttl.max,
                "default": config.ttl.default,
            },
        },
        {
            "name": "max_reads",
            "in": "query",
            "description": "GETs of the image before it is purged. " + NUMBERS,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_READS_CAP},
        },
    ]
    image = {"description": "the image bytes", "content": {"image/*": {}}}
    created = {"description": "stored", "content": {"application/json": {"schema": _CREATED}}}
    paths: dict[str, Any] = {
        "/v1/images": {
            "post": _op(
                "Store an image (raw body or multipart field `file`)",
                {"201": created, **_errors(400, 408, 413, 415, 422, 451, 503, 507)},
                description=UPLOAD,
                parameters=lifetime,
                requestBody={
                    "required": True,
                    "content": {
                        "application/octet-stream": {},
                        "image/*": {},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"file": {"type": "string", "format": "binary"}},
                            }
                        },
                    },
                },
            )
        },
        "/v1/images/fetch": {
            "post": _op(
                "Fetch an image by URL (SSRF-safe) and store it",
                {
                    "201": created,
                    **_errors(400, 403, 404, 408, 413, 415, 422, 451, 502, 503, 504, 507),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "properties": {
                                    "url": {"type": "string", "minLength": 1},
                                    "ttl": {"type": "number"},
                                    "max_reads": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/v1/images/{id}": {
            "get": _op(
                "Read the image (counts a read)",
                {"200": image, **_errors(404)},
                parameters=[_ID],
                description=READS,
            ),
            "head": _op(
                "The headers a GET would send; never spends a read",
                {"200": {"description": "headers only"}, **_errors(404)},
                parameters=[_ID],
            ),
            "delete": _op(
                "Purge the image now",
                {"204": {"description": "purged"}, **_errors(404)},
                parameters=[_ID],
            ),
        },
        "/v1/images/{id}/thumbnail": {
            "get": _op(
                "A thumbnail re-encoded on the fly (JPEG, or PNG with alpha); never stored",
                {"200": image, **_errors(400, 404, 422, 503)},
                description="Never stored, never spends a read.",
                parameters=[
                    _ID,
                    {
                        "name": "size",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 16,
                            "maximum": config.limits.max_thumbnail_size,
                        },
                    },
                ],
            )
        },
        "/v1/images/{id}/meta": {
            "get": _op(
                "Metadata only",
                {"200": {"description": "metadata"}, **_errors(404)},
                parameters=[_ID],
            )
        },
        "/robots.txt": {"get": _op("Disallow everything", {"200": {"description": "text"}})},
        "/healthz": {"get": _op("Alive", {"200": {"description": "alive"}})},
        "/readyz": {
            "get": _op("Ready to serve", {"200": {"description": "ready"}, **_errors(503)})
        },
        "/openapi.json": {"get": _op("This document", {"200": {"description": "OpenAPI"}})},
    }
    responses = {
        f"Problem{problem.status}": {
            "description": problem.title,
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for problem in reversed(PROBLEMS.values())
        if problem.status != 499  # the client hung up: counted, never sent
    }
    problem_types = sorted({problem.slug for problem in PROBLEMS.values()})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "query-cache",
            "version": "0.1.0",
            "description": "Ephemeral query-image cache with guaranteed purge. " + READS,
        },
        "paths": paths,
        "components": {
            "responses": responses,
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {
                            "type": "string",
                            "description": "one of: " + ", ".join(problem_types),
                        },
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                }
            },
        },
    }

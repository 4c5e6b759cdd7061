"""The ops routes: metrics for Prometheus, purge and inspection for the on-call.

`/admin/*` needs `Authorization: Bearer <ops.admin_token>`, compared in constant time.
With no token configured the admin routes answer 404, as if they did not exist.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import (
    BadRequest,
    ClientClosed,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedEncoding,
)
from ..intake.blocklist import normalise, normalise_sha256
from ..intake.pdq_index import MAX_DISTANCE
from ..item import is_valid_id
from ..runtime import RUNTIME, Runtime
from .blocklist_routes import add_blocklist_routes
from .blocklist_routes import receipts_response as _receipts
from .body import read_json_object
from .middleware import json_response
from .params import integer
from .problems import Unauthorized

MAX_IDS_PER_PURGE = 10_000
MAX_LISTED_ITEMS = 10_000
SELECTORS = ("ids", "sha256", "md5", "sha1", "pdq", "all")
MALFORMED = (BadRequest, PayloadTooLarge, UnsupportedEncoding, RequestTimeout, ClientClosed)


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/admin"):
        token = request.app[RUNTIME].config.ops.admin_token
        if not token:
            raise NotFound("admin routes are off: ops.admin_token is not set")
        try:
            _check_bearer(request.headers.get("Authorization", ""), token)
            return await handler(request)
        except MALFORMED as exc:  # a malformed admin call is recorded like an upload's
            request.app[RUNTIME].intake.reject(exc, "admin")
            raise
    return await handler(request)


def _check_bearer(header: str, token: str) -> None:
    """Constant-time; a token that is not ASCII (RFC 6750's token68 is) is a malformed
    header, 400, rather than a 500 from encoding it."""
    scheme, _, given = header.partition(" ")
    try:
        given_bytes = given.strip().encode("ascii")
    except UnicodeEncodeError:
        raise BadRequest("the bearer token must be ASCII") from None
    if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode()):
        raise Unauthorized("a valid bearer token is required")


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[RUNTIME].metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def purge(request: web.Request) -> web.Response:
    """Exactly one selector: `ids`, `sha256`, `md5`, `sha1`, `pdq` (with an optional
    `max_distance`) or `all: true`; one receipt per purged item."""
    rt: Runtime = request.app[RUNTIME]
    body = await read_json_object(request)
    selectors = [key for key in SELECTORS if key in body]
    if len(selectors) != 1:
        raise BadRequest(f"give exactly one of {', '.join(SELECTORS)}")
    if "max_distance" in body and "pdq" not in body:
        raise InvalidParameter("max_distance goes with pdq only")
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InvalidParameter("ids must be a non-empty list of strings")
        if len(ids) > MAX_IDS_PER_PURGE:
            raise InvalidParameter(f"at most {MAX_IDS_PER_PURGE} ids per purge")
        receipts = await rt.store.purge_ids(ids, "admin")
        done = {r.id for r in receipts}
        return _receipts(receipts, not_found=[i for i in ids if i not in done])
    if "sha256" in body:
        return _receipts(await rt.store.purge_sha256(normalise_sha256(body["sha256"]), "admin"))
    if "pdq" in body:
        distance = body.get("max_distance")
        if distance is not None and (
            not isinstance(distance, int)
            or isinstance(distance, bool)
            or not 0 <= distance <= MAX_DISTANCE
        ):
            raise InvalidParameter(f"max_distance must be an integer 0-{MAX_DISTANCE}")
        return _receipts(await rt.lists.purge("pdq", normalise("pdq", body["pdq"]), distance))
    for kind in ("md5", "sha1"):
        if kind in body:
            return _receipts(await rt.lists.purge(kind, normalise(kind, body[kind])))
    if body["all"] is not True:
        raise InvalidParameter("all must be true")
    return _receipts(await rt.store.purge_all("admin"))


async def items(request: web.Request) -> web.Response:
    """Metadata of held items, oldest first; never bytes."""
    rt: Runtime = request.app[RUNTIME]
    limit = integer("limit", request.query.get("limit", "1000"))
    if not 1 <= limit <= MAX_LISTED_ITEMS:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LISTED_ITEMS}")
    sha256 = request.query.get("sha256")
    wanted = normalise_sha256(sha256) if sha256 else None
    selected = sorted(await rt.store.list_items(wanted), key=lambda it: it.created)
    return json_response(
        {
            "count": len(selected),
            "items": [it.public_view() for it in selected[:limit]],
            "truncated": len(selected) > limit,
        }
    )


async def item(request: web.Request) -> web.Response:
    item_id = request.match_info["id"]
    if not is_valid_id(item_id):
        raise NotFound()
    return json_response((await request.app[RUNTIME].store.meta(item_id)).public_view())


async def guarantees(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME]
    results = rt.guarantees.results + rt.store.guarantee_checks()
    return json_response(
        {
            "ok": all(r.ok for r in results),
            "checks": [
                {"check": r.name, "status": r.status, "ok": r.ok, "reason": r.reason}
                for r in results
            ],
        }
    )


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/purge", purge)
    app.router.add_get("/admin/items", items)
    app.router.add_get("/admin/items/{id}", item)
    app.router.add_get("/admin/guarantees", guarantees)
    add_blocklist_routes(app)

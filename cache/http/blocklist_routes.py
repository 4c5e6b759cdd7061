"""The hash-list routes of the ops listener: list, add, remove, reload.

`GET/POST/DELETE /admin/blocklist` take `{"sha256": [...], "md5": [...], "sha1": [...],
"pdq": [...]}` (any of them; a single string works as a one-item list). `POST` purges held
copies at once and answers their receipts; `POST /admin/blocklist/reload` (also SIGHUP)
re-reads every list file, keeps the lists in force when one is bad (422, naming the file
and line), and purges held items the new lists name. Everything is validated before
anything changes: one bad hash changes nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import InvalidParameter
from ..intake.blocklist import KINDS, normalise
from ..runtime import RUNTIME, Runtime
from ..store.api import Receipt
from .body import read_json_object
from .middleware import json_response

MAX_HASHES_PER_CALL = 100_000


def receipts_response(receipts: list[Receipt], **extra: Any) -> web.Response:
    return json_response(
        {"purged": len(receipts), "receipts": [r.as_dict() for r in receipts], **extra}
    )


def hash_entries(body: dict[str, Any]) -> dict[str, list[str]]:
    """{kind: normalised hashes} from a request body, or a 400 naming what was wrong."""
    unknown = sorted(set(body) - set(KINDS))
    if unknown:
        raise InvalidParameter(f"unknown key {unknown[0]!r}: give {', '.join(KINDS)}")
    entries: dict[str, list[str]] = {}
    for kind in KINDS:
        if kind not in body:
            continue
        values = body[kind]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            raise InvalidParameter(f"{kind} must be a hash or a non-empty list of hashes")
        entries[kind] = list(dict.fromkeys(normalise(kind, value) for value in values))
    if not entries:
        raise InvalidParameter(f"give at least one of {', '.join(KINDS)}")
    if sum(len(v) for v in entries.values()) > MAX_HASHES_PER_CALL:
        raise InvalidParameter(f"at most {MAX_HASHES_PER_CALL} hashes per call")
    return entries


async def blocklist_get(request: web.Request) -> web.Response:
    """The admin additions in full; list files by their entry counts (they may hold
    millions)."""
    rt: Runtime = request.app[RUNTIME]
    blocklist = rt.blocklist
    counts = blocklist.counts()
    config = blocklist.config
    return json_response(
        {
            "count": sum(counts.values()),
            "entries": counts,
            "files": {
                kind: {"entries": n, "paths": list(getattr(config, f"{kind}_files"))}
                for kind, n in blocklist.file_counts().items()
            },
            **{kind: blocklist.admin_entries(kind) for kind in KINDS},  # admin additions
            "pdq_mode": "on" if blocklist.pdq_on else "off",
            "pdq_max_distance": config.pdq_max_distance,
            "pdq_min_quality": config.pdq_min_quality,
            "last_reload": rt.lists.last_reload,
        }
    )


async def blocklist_add(request: web.Request) -> web.Response:
    """List hashes; items already held that they match are purged at once (receipts)."""
    rt: Runtime = request.app[RUNTIME]
    added, receipts = await rt.lists.add(hash_entries(await read_json_object(request)))
    return receipts_response(receipts, added=added)


async def blocklist_remove(request: web.Request) -> web.Response:
    """Remove admin additions (entries of list files go by editing the file, then reload)."""
    rt: Runtime = request.app[RUNTIME]
    removed = await rt.lists.remove(hash_entries(await read_json_object(request)))
    return json_response({"removed": removed})


async def blocklist_reload(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME]
    counts, receipts = await rt.lists.reload()
    return receipts_response(receipts, reloaded=True, entries=counts)


def add_blocklist_routes(app: web.Application) -> None:
    app.router.add_get("/admin/blocklist", blocklist_get)
    app.router.add_post("/admin/blocklist", blocklist_add)
    app.router.add_delete("/admin/blocklist", blocklist_remove)
    app.router.add_post("/admin/blocklist/reload", blocklist_reload)

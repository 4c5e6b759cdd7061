"""What the on-call does with the hash lists, and what follows for held items: reload the
files (SIGHUP, `POST /admin/blocklist/reload`), add and remove entries, purge by MD5,
SHA-1 or PDQ hash, and, on the redis backend, take up entries other nodes added.

Why apart from `blocklist.py`: that one answers `check(facts)` on the hot path without
awaiting anything; these await the store (a scan of held items, purges with receipts),
files (read in a thread of their own, never the request pool or the loop) and Redis.

Every change that can list a held image purges it before returning (reason `blocklist`,
with receipts). A held item is matched on the facts an upload would have had: SHA-256 and
PDQ from its metadata; MD5 and SHA-1 computed from its bytes, only when a list of that
kind is in play (items carry no MD5/SHA-1, so the hot path pays nothing for them). Held
items are matched on their stored PDQ hash as uploaded: a rotated copy held before its
hash was listed is not found (uploads are matched in all 8 orientations).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import Conflict, InvalidHashList, NotFound, StorageUnavailable
from ..item import ImageFacts, Item
from ..proof.audit import AuditLog
from ..proof.metrics import Metrics
from ..store.api import ItemStore, Receipt
from .blocklist import ADMIN, KINDS, Blocklist, ListLoadError, Match, load_files, pdq_hashes
from .digests import Wanted
from .pdq import hamming

log = logging.getLogger(__name__)
T = TypeVar("T")
SYNC_INTERVAL = 1.0  # s between two looks at the shared lists' version (redis backend)
PDQ_OFF = "PDQ is off (blocklist.pdq_mode): no upload is hashed and no held item carries a PDQ hash"


class Selection:
    """A few hashes to look for among held items (an admin add or purge): no index."""

    def __init__(self, entries: Mapping[str, Iterable[str]], max_distance: int, min_quality: int):
        self.entries = {kind: set(entries.get(kind, ())) for kind in KINDS}
        self.max_distance = max_distance
        self.min_quality = min_quality

    def wanted(self) -> Wanted:
        e = self.entries
        return Wanted(md5=bool(e["md5"]), sha1=bool(e["sha1"]), pdq=bool(e["pdq"]))

    def find(self, facts: ImageFacts) -> Match | None:
        for kind in ("sha256", "md5", "sha1"):
            value = getattr(facts, kind)
            if value is not None and value in self.entries[kind]:
                return Match(kind, value, ADMIN)
        quality = facts.pdq_quality
        if not self.entries["pdq"] or quality is None or quality < self.min_quality:
            return None
        pairs = ((h, listed) for h in pdq_hashes(facts) for listed in self.entries["pdq"])
        best = min(((hamming(h, listed), listed) for h, listed in pairs), default=None)
        if best is None or best[0] > self.max_distance:
            return None
        return Match("pdq", best[1], ADMIN, best[0])


Matcher = Blocklist | Selection


class BlocklistOps:
    def __init__(
        self, blocklist: Blocklist, store: ItemStore, metrics: Metrics, audit: AuditLog
    ) -> None:
        self.blocklist = blocklist
        self._store = store
        self._metrics = metrics
        self._audit = audit
        self.shared = store.shared_lists()
        self._version: int | None = None
        self._lock = asyncio.Lock()  # one change (and its purge) at a time
        self._tasks: set[asyncio.Task[None]] = set()
        # List files, held bytes and bulk matching run here: never on the loop, never in
        # the request work pool, never in the pools the purge path uses.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hashlists")
        self.last_reload: dict[str, Any] = {"ok": True}

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- reload --------------------------------------------------------------------------
    async def reload(self) -> tuple[dict[str, int], list[Receipt]]:
        """Re-read every file. A bad one keeps the lists in force (InvalidHashList, 422)."""
        async with self._lock:
            try:
                loaded = await self._run(load_files, self.blocklist.config)
            except ListLoadError as exc:
                self._metrics.blocklist_reload_failures.inc()
                self._metrics.blocklist_last_reload_ok.set(0)
                self.last_reload = {"ok": False, "error": str(exc)}
                log.warning("hash-list reload failed, the lists in force stay: %s", exc)
                self._audit.emit("blocklist", action="reload", ok=False, error=str(exc))
                raise InvalidHashList(f"{exc}; the lists in force did not change") from None
            self.blocklist.swap(loaded)
            self._metrics.blocklist_last_reload_ok.set(1)
            self.last_reload = {"ok": True}
            receipts = await self._purge_matching(self.blocklist, "blocklist")
        counts = self.blocklist.counts()
        self._audit.emit(
            "blocklist", action="reload", ok=True, entries=counts, purged=len(receipts)
        )
        return counts, receipts

    def reload_soon(self) -> None:
        """SIGHUP: reload in the background; the outcome goes to the log."""
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_logged(self) -> None:
        try:
            counts, receipts = await self.reload()
        except InvalidHashList:
            return  # logged by reload
        except Exception:
            log.exception("hash-list reload failed")
            return
        log.info("hash lists reloaded: %s entries, %d held items purged", counts, len(receipts))

    # -- admin entries -------------------------------------------------------------------
    def _refuse_pdq_when_off(self, entries: Mapping[str, list[str]]) -> None:
        if entries.get("pdq") and not self.blocklist.pdq_on:
            raise Conflict(PDQ_OFF)

    async def add(self, entries: Mapping[str, list[str]]) -> tuple[int, list[Receipt]]:
        """List `entries` ({kind: normalised hashes}) and purge held copies at once."""
        self._refuse_pdq_when_off(entries)
        async with self._lock:
            if self.shared is not None:
                added = 0
                for kind, hashes in entries.items():
                    added += await self.shared.change(kind, hashes, add=True)
                await self._pull()
            else:
                added = sum(len(self.blocklist.add(k, hashes)) for k, hashes in entries.items())
            receipts = await self._purge_matching(self._selection(entries), "blocklist")
        self._audit.emit("blocklist", action="add", count=added, purged=len(receipts))
        return added, receipts

    async def remove(self, entries: Mapping[str, list[str]]) -> int:
        async with self._lock:
            if self.shared is not None:
                removed = 0
                for kind, hashes in entries.items():
                    removed += await self.shared.change(kind, hashes, add=False)
                await self._pull()
            else:
                removed = sum(len(self.blocklist.remove(k, h)) for k, h in entries.items())
        self._audit.emit("blocklist", action="remove", count=removed)
        return removed

    async def purge(self, kind: str, value: str, max_distance: int | None = None) -> list[Receipt]:
        """`POST /admin/purge` by md5, sha1 or pdq (within `max_distance`, default the
        configured one): one receipt per held item (reason `admin`)."""
        self._refuse_pdq_when_off({kind: [value]})
        selection = self._selection({kind: [value]}, max_distance)
        async with self._lock:
            return await self._purge_matching(selection, "admin")

    def _selection(
        self, entries: Mapping[str, Iterable[str]], max_distance: int | None = None
    ) -> Selection:
        config = self.blocklist.config
        distance = config.pdq_max_distance if max_distance is None else max_distance
        return Selection(entries, distance, config.pdq_min_quality)

    # -- shared entries (redis backend) --------------------------------------------------
    async def start(self) -> None:
        """Before the listener accepts: take up the shared entries as they are."""
        if self.shared is not None:
            async with self._lock:
                await self._pull()

    async def sync(self) -> list[Receipt]:
        """The periodic look (every SYNC_INTERVAL): when the shared version moved, take up
        the entries and purge held items that the new ones list."""
        if self.shared is None:
            return []
        try:
            if await self.shared.version() == self._version:
                return []
        except StorageUnavailable:
            return []  # the outage is logged by the store; the next look catches up
        async with self._lock:
            new = await self._pull()
            if not any(new.values()):
                return []
            return await self._purge_matching(self._selection(new), "blocklist")

    async def _pull(self) -> dict[str, list[str]]:
        assert self.shared is not None
        version, entries = await self.shared.entries()
        new = self.blocklist.replace_admin(entries)
        self._version = version
        return new

    # -- held items ----------------------------------------------------------------------
    async def _purge_matching(self, matcher: Matcher, reason: str) -> list[Receipt]:
        """Purge every held item `matcher` lists (of every node, on a shared store)."""
        want = matcher.wanted()
        held: list[tuple[str, ImageFacts]] = []
        for item in await self._store.list_items():
            facts = await self._facts(item, want)
            if facts is not None:
                held.append((item.id, facts))
        ids = await self._run(_matching, matcher, held)
        return await self._store.purge_ids(ids, reason) if ids else []

    async def _facts(self, item: Item, want: Wanted) -> ImageFacts | None:
        """The facts an upload of this item would have had; None when it went meanwhile."""
        md5 = sha1 = None
        if want.md5 or want.sha1:
            try:
                _, data = await self._store.read(item.id, count=False)
            except NotFound:
                return None
            md5, sha1 = await self._run(_digests, data, want)
            del data
        return ImageFacts(
            sha256=item.sha256,
            size=item.size,
            media_type=item.media_type,
            width=item.width,
            height=item.height,
            frames=item.frames,
            md5=md5,
            sha1=sha1,
            pdq=item.pdq,
            pdq_quality=item.pdq_quality,
        )


def _matching(matcher: Matcher, held: list[tuple[str, ImageFacts]]) -> list[str]:
    return [item_id for item_id, facts in held if matcher.find(facts) is not None]


def _digests(data: bytes | memoryview, want: Wanted) -> tuple[str | None, str | None]:
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if want.md5 else None
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest() if want.sha1 else None
    return md5, sha1

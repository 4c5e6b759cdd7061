"""The one path every image takes: ingest -> blocklist -> store, with rejections counted.

Uploads and fetched bodies both come through here, so a rule added to one cannot be
missed by the other.
"""

from __future__ import annotations

from aiohttp import web

from ..clock import Clock
from ..errors import Blocklisted, CacheError, CacheFull
from ..item import ImageFacts, Item
from ..proof.audit import AuditLog
from ..proof.metrics import Metrics
from ..store.api import ItemStore
from ..store.local.memory import zero
from .blocklist import Blocklist
from .inspect import Ingest, read_upload


class Intake:
    def __init__(
        self,
        ingest: Ingest,
        blocklist: Blocklist,
        store: ItemStore,
        metrics: Metrics,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self.ingest = ingest
        self.blocklist = blocklist
        self.store = store
        self._metrics = metrics
        self._audit = audit
        self._clock = clock
        self._in_flight = 0  # bytes of uploads admitted early and not yet stored or refused
        self._clock = clock

    async def admit(
        self,
        data: bytearray,
        *,
        ttl: float,
        max_reads: int | None,
        source: str,
        source_host: str | None = None,
    ) -> Item:
        """Store `data` if it is an allowed image; the caller's buffer is zeroed either way."""
        facts: ImageFacts | None = None
        try:
            facts = await self.ingest.inspect(data)
            self.blocklist.check(facts)
            return await self.store.put(data, facts, ttl, max_reads, source, source_host)
        except CacheError as exc:
            if isinstance(exc, Blocklisted):
                self._metrics.blocklist_matches.labels(str(exc.extra.get("kind", "sha256"))).inc()
            self.reject(exc, source, source_host, facts.sha256 if facts else None, len(data))
            raise
        finally:
            zero(data)  # the backend holds its own copy now, or nothing was kept

    async def admit_upload(
        self, request: web.Request, max_bytes: int, *, ttl: float, max_reads: int | None
    ) -> Item:
        """An upload from its first byte: refused (503) before the body is read when it
        cannot fit, counting the bodies already being read, so under a flood a body that
        would be refused is never buffered and what is buffered stays within capacity."""
        expected = request.content_length or 1
        try:
            if not self.store.has_room(self._in_flight + expected):
                raise CacheFull("the cache is full; retry later", self._retry_after())
        except CacheFull as exc:
            self.reject(exc, "upload")
            raise
        self._in_flight += expected
        try:
            try:
                data = await read_upload(request, max_bytes)
            except CacheError as exc:
                self.reject(exc, "upload")
                raise
            return await self.admit(data, ttl=ttl, max_reads=max_reads, source="upload")
        finally:
            self._in_flight -= expected

    def _retry_after(self) -> float:
        earliest = self.store.earliest_deadline()
        return 1.0 if earliest is None else earliest - self._clock.monotonic()

    def reject(
        self,
        error: CacheError,
        source: str,
        source_host: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> None:
        self._metrics.rejected.labels(error.slug).inc()
        self._audit.emit(
            "rejected",
            reason=error.slug,
            status=error.status,
            source=source,
            source_host=source_host,
            sha256=sha256,
            size=size,
        )

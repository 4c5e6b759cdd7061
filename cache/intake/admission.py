"""The one path every image takes: inspect -> blocklist -> store, with refusals recorded.

Uploads and fetched bodies both come through here, so a rule added to one cannot be
missed by the other. Intake knows no HTTP: the route hands it a body reader (uploads) or a
URL (fetches), and a refusal leaves as a domain error that the route layer answers. How a
refusal is named in the audit log and metrics (status, slug) is the route layer's word,
handed in as `classify`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from ..clock import Clock
from ..errors import (
    Blocklisted,
    CacheError,
    CacheFull,
    ImageTooLarge,
    InvalidImage,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedFormat,
)
from ..item import ImageFacts, Item
from ..proof.audit import AuditLog
from ..proof.metrics import Metrics
from ..store.api import Alloc, Buffer, ItemStore
from .blocklist import Blocklist
from .fetch import RESULT_LABELS, Fetcher
from .inspect import InspectorPool

Classify = Callable[[CacheError], tuple[int, str]]  # a refusal -> (status, slug)
Grow = Callable[[int], None]  # told each chunk's size as it arrives; raises to refuse
ReadBody = Callable[[Grow, Alloc], Awaitable[Buffer]]  # reads into the store's own room
NOT_AN_IMAGE = (UnsupportedFormat, InvalidImage, ImageTooLarge)


class Intake:
    def __init__(
        self,
        inspector: InspectorPool,
        blocklist: Blocklist,
        store: ItemStore,
        fetcher: Fetcher,
        metrics: Metrics,
        audit: AuditLog,
        clock: Clock,
        classify: Classify,
        max_uploads: int = 64,
    ) -> None:
        self.inspector = inspector
        self.blocklist = blocklist
        self.store = store
        self.fetcher = fetcher
        self._metrics = metrics
        self._audit = audit
        self._clock = clock
        self._classify = classify
        self._in_flight = 0  # bytes of uploads admitted early and not yet stored or refused
        self._uploads = 0  # uploads whose bodies are being read or checked now
        self.max_uploads = max_uploads

    async def admit(
        self,
        body: Buffer | bytearray,
        *,
        ttl: float,
        max_reads: int | None,
        source: str,
        source_host: str | None = None,
    ) -> Item:
        """Store the body if it is an allowed image. Its buffer is handed to the store
        (which keeps it as the item's bytes, or zeroes it), or discarded (zeroed, freed)
        here when refused."""
        buffer = body if isinstance(body, Buffer) else Buffer(0, body)
        facts: ImageFacts | None = None
        size = buffer.used
        try:
            view = buffer.data()
            try:
                facts = await self.inspector.inspect(view)
            finally:
                with contextlib.suppress(BufferError):  # a check still holds a view
                    view.release()  # nothing should view the room at the hand-over
            self.blocklist.check(facts)
        except BaseException as exc:
            buffer.discard()
            if isinstance(exc, CacheError):
                self._refused(exc, source, source_host, facts, size)
            raise
        try:
            return await self.store.put(
                buffer.handover(), facts, ttl, max_reads, source, source_host
            )
        except CacheError as exc:
            self._refused(exc, source, source_host, facts, size)
            raise

    def _refused(
        self,
        exc: CacheError,
        source: str,
        source_host: str | None,
        facts: ImageFacts | None,
        size: int,
    ) -> None:
        if isinstance(exc, Blocklisted):
            kind = str(exc.audit_fields.get("kind", "sha256"))
            self._metrics.blocklist_matches.labels(kind).inc()
        self.reject(exc, source, source_host, facts.sha256 if facts else None, size)

    async def admit_upload(
        self,
        expected: int | None,
        read_body: ReadBody,
        *,
        ttl: float,
        max_reads: int | None,
        max_bytes: int,
    ) -> Item:
        """An upload from its first byte. A declared length over `max_bytes` can never be
        stored (413); one that cannot fit now is refused (503, Retry-After: when the
        deadlines make room) before the body is read, counting the bodies already being
        read, so under a flood a body that would be refused is never buffered and what is
        buffered stays within capacity. A body of unknown length (chunked) is counted as
        its bytes arrive (`read_body` is handed the counter) and refused the moment the
        store has no room for it. `expected` is the declared length (None when unknown)."""
        try:
            self.check_audit()
            if expected is not None and expected > max_bytes:
                raise PayloadTooLarge(f"the image is over the {max_bytes}-byte limit")
            if self._uploads >= self.max_uploads:
                raise ServiceUnavailable("too many uploads in flight; retry shortly", 1.0)
            self._check_room(expected or 1)
        except CacheError as exc:
            self.reject(exc, "upload")
            raise
        counted = _Counted(self, expected or 0)
        self._uploads += 1
        try:
            try:
                body = await read_body(counted.grow, self.store.buffer)
            except CacheError as exc:
                self.reject(exc, "upload")
                raise
            return await self.admit(body, ttl=ttl, max_reads=max_reads, source="upload")
        finally:
            counted.release()
            self._uploads -= 1

    def _check_room(self, size: int) -> None:
        """CacheFull unless `size` more bytes fit beside what is stored and in flight."""
        wanted = self._in_flight + size
        if not self.store.has_room(wanted):
            raise CacheFull("the cache is full; retry later", self._retry_after(wanted))

    async def admit_fetch(self, url: str, *, ttl: float, max_reads: int | None) -> Item:
        """Fetch `url` under the fetch policy, then admit the body like an upload."""
        metrics = self._metrics
        try:
            self.check_audit()
            fetched = await self.fetcher.fetch(url)
        except CacheError as exc:
            metrics.fetch.labels(RESULT_LABELS.get(type(exc), "remote_error")).inc()
            self.reject(exc, "fetch")
            raise
        try:
            item = await self.admit(
                fetched.body, ttl=ttl, max_reads=max_reads, source="fetch", source_host=fetched.host
            )
        except CacheError as exc:
            metrics.fetch.labels("not_image" if isinstance(exc, NOT_AN_IMAGE) else "refused").inc()
            raise
        metrics.fetch.labels("ok").inc()
        return item

    def check_audit(self) -> None:
        """New items wait while the audit log cannot keep up: every one must be logged."""
        if self._audit.backlogged:
            raise ServiceUnavailable("the audit log is behind; retry shortly", 1.0)

    def _retry_after(self, size: int) -> float:
        """Seconds until the deadlines free room for `size` bytes (1 when they never will
        alone: uploads in flight hold the rest)."""
        at = self.store.room_at(size)
        return 1.0 if at is None else at - self._clock.monotonic()

    def reject(
        self,
        error: CacheError,
        source: str,
        source_host: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> None:
        status, slug = self._classify(error)
        self._metrics.rejected.labels(slug).inc()
        self._audit.emit(
            "rejected",
            reason=slug,
            status=status,
            source=source,
            source_host=source_host,
            sha256=sha256,
            size=size,
            **error.audit_fields,  # e.g. which hash list refused it: for the log only
        )


class _Counted:
    """The bytes one upload holds in its intake's in-flight count: the declared length at
    once, or (chunked) each chunk as it arrives, past which the store must have room."""

    def __init__(self, intake: Intake, declared: int) -> None:
        self._intake = intake
        self._held = declared
        self._received = 0
        intake._in_flight += declared

    def grow(self, size: int) -> None:
        self._received += size
        more = self._received - self._held
        if more > 0:
            self._intake._check_room(more)
            self._intake._in_flight += more
            self._held += more

    def release(self) -> None:
        self._intake._in_flight -= self._held
        self._held = 0

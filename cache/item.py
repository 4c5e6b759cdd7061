"""An item's metadata: everything the service knows about a held image except its bytes."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock

# 16 random bytes in URL-safe base64: 22 characters, 128 bits, unguessable.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")


def new_id() -> str:
    return secrets.token_urlsafe(16)


def is_valid_id(item_id: str) -> bool:
    """True only for ids this service could have made: nothing else reaches a backend."""
    return bool(ID_PATTERN.fullmatch(item_id))


@dataclass(slots=True)
class Item:
    """Times are monotonic seconds (see clock.py); `*_wall` twins are for reporting."""

    id: str
    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    created: float
    deadline: float
    created_wall: float
    deadline_wall: float
    reads_left: int | None = None
    source: str = "upload"
    source_host: str | None = None
    frames: int = 1
    pdq: str | None = None  # PDQ hash and quality, when blocklist.pdq_mode is on
    pdq_quality: int | None = None
    reads: int = field(default=0)
    claims: int = field(default=0)  # counted reads being served right now (local store)

    @property
    def ttl(self) -> float:
        return self.deadline - self.created

    def public_view(self) -> dict[str, Any]:
        """What clients may see about an item: metadata only, never bytes."""
        view: dict[str, Any] = {
            "id": self.id,
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "ttl": round(self.ttl, 3),
            "stored_at": round(self.created_wall, 3),
            "expires_at": round(self.deadline_wall, 3),
            "reads": self.reads,
            "reads_left": self.reads_left,
            "source": self.source,
        }
        if self.source_host is not None:
            view["source_host"] = self.source_host
        if self.pdq is not None:
            view["pdq"] = self.pdq
            view["pdq_quality"] = self.pdq_quality
        return view


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What ingest learned from the bytes themselves (never from the client's word)."""

    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    frames: int = 1
    # Only what the hash lists in force need (`intake.digests`): None when not computed.
    md5: str | None = None
    sha1: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    pdq_variants: tuple[str, ...] = ()  # the 8 dihedral PDQ hashes, for the check only
    # The PDQ lookup, done in the worker thread that hashed (never on the event loop):
    # (listed hash, list, distance) or None, once `pdq_looked_up`.
    pdq_looked_up: bool = False
    pdq_match: tuple[str, str, int] | None = None


def new_item(
    clock: Clock,
    facts: ImageFacts,
    ttl: float,
    max_reads: int | None,
    source: str,
    source_host: str | None,
) -> Item:
    """A new item, stored now: monotonic times for this node, wall times for reports (and,
    on a shared store, for every node)."""
    now, wall = clock.monotonic(), clock.wall()
    return Item(
        id=new_id(),
        sha256=facts.sha256,
        size=facts.size,
        media_type=facts.media_type,
        width=facts.width,
        height=facts.height,
        frames=facts.frames,
        pdq=facts.pdq,
        pdq_quality=facts.pdq_quality,
        created=now,
        deadline=now + ttl,
        created_wall=wall,
        deadline_wall=wall + ttl,
        reads_left=max_reads,
        source=source,
        source_host=source_host,
    )

"""Known-abuse hash lists: an upload or fetch whose SHA-256, MD5, SHA-1 or PDQ hash is
listed is refused (451) and never stored.

Why one object: the hot path asks one question, `check(facts)`, over four kinds of list
from two sources, without awaiting anything: exact digests are a set lookup (admin
additions) and a binary search (`hashlists.DigestSet`, list files); PDQ is one
multi-index query of the upload's 8 dihedral hashes (`pdq_index`, about a millisecond at
10^6 listed hashes). `wanted()` tells the inspector which hashes an upload needs, so MD5,
SHA-1 and the PDQ decode are paid only when a list can use them.

Two layers, kept apart: what the files say (`Loaded`, read whole by `load_files`, off the
event loop on a reload, then swapped in at once, so a bad file never leaves half a list)
and what the admin API added (kept across reloads; DELETE removes only these: a listed
file entry goes by editing its file and reloading). On the redis backend the admin layer
mirrors entries shared through Redis (`blocklist_ops.BlocklistOps.sync`).

A PDQ hash of quality below `blocklist.pdq_min_quality` never matches (flat or tiny images
give meaningless hashes), as in Meta's Hasher-Matcher-Actioner.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import BlocklistConfig
from ..errors import Blocklisted, InvalidParameter
from ..item import ImageFacts
from ..proof.metrics import Metrics
from .digests import Wanted
from .hashlists import HEX_DIGITS, U8, DigestSet, ListFormatError, hex_to_rows, load_list
from .pdq_index import OVERFLOW_LIMIT, PdqIndex

KINDS = ("sha256", "md5", "sha1", "pdq")
EXACT_KINDS = ("sha256", "md5", "sha1")
ADMIN = "admin"  # the source of entries added through the admin API
_PATTERNS = {kind: re.compile(f"[0-9a-f]{{{digits}}}") for kind, digits in HEX_DIGITS.items()}


class ListLoadError(ValueError):
    """A list file that cannot be used: one line naming the key, the file and the line."""


def normalise(kind: str, value: object) -> str:
    """A lowercase hex digest of `kind`, or a 400 naming what was wrong."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _PATTERNS[kind].fullmatch(text):
        raise InvalidParameter(f"{kind} must be {HEX_DIGITS[kind]} hexadecimal characters")
    return text


def normalise_sha256(value: object) -> str:
    return normalise("sha256", value)


@dataclass(frozen=True)
class Loaded:
    """Everything the list files gave, read in one go."""

    exact: dict[str, DigestSet]
    pdq: PdqIndex

    @classmethod
    def empty(cls) -> Loaded:
        return cls({k: DigestSet(HEX_DIGITS[k] // 2) for k in EXACT_KINDS}, PdqIndex())

    def count(self, kind: str) -> int:
        return len(self.pdq) if kind == "pdq" else len(self.exact[kind])


def _read(config: BlocklistConfig, kind: str) -> list[tuple[str, U8]]:
    key = f"blocklist.{kind}_files"
    parts: list[tuple[str, U8]] = []
    for path in getattr(config, f"{kind}_files"):
        try:
            parts.append((path, load_list(path, kind)))
        except ListFormatError as exc:
            raise ListLoadError(f"{key}: {exc}") from None
        except OSError as exc:
            raise ListLoadError(f"{key}: {path}: cannot read ({exc.strerror or exc})") from None
    return parts


def load_files(config: BlocklistConfig) -> Loaded:
    """Every list file the config names (PDQ files only when PDQ is on). CPU and file
    work: a reload runs it off the event loop. Raises ListLoadError."""
    exact = {k: DigestSet(HEX_DIGITS[k] // 2, _read(config, k)) for k in EXACT_KINDS}
    pdq = PdqIndex.build(_read(config, "pdq")) if config.pdq_on else PdqIndex()
    return Loaded(exact, pdq)


@dataclass(frozen=True, slots=True)
class Match:
    kind: str
    listed: str  # the listed hash that matched
    source: str  # the list file, or "admin"
    distance: int | None = None  # PDQ only: Hamming distance to the closest variant

    def audit_fields(self, facts: ImageFacts) -> dict[str, Any]:
        """What the `rejected` audit line carries: which list, how close, and the upload's
        own hashes (its SHA-256 is on the line already). Never shown to the client."""
        fields: dict[str, Any] = {"kind": self.kind, "list": self.source}
        if self.kind == "pdq":
            fields.update(listed=self.listed, distance=self.distance)
        fields.update(md5=facts.md5, sha1=facts.sha1, pdq=facts.pdq, pdq_quality=facts.pdq_quality)
        return fields


def pdq_hashes(facts: ImageFacts) -> Sequence[str]:
    """The PDQ hashes to look up for an image: its 8 dihedral variants when known."""
    if facts.pdq_variants:
        return facts.pdq_variants
    return (facts.pdq,) if facts.pdq is not None else ()


class Blocklist:
    def __init__(
        self,
        config: BlocklistConfig,
        loaded: Loaded | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._loaded = loaded or Loaded.empty()
        self._admin: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self._admin_pdq = PdqIndex()
        self._metrics = metrics
        self._publish()

    @classmethod
    def from_config(cls, config: BlocklistConfig, metrics: Metrics | None = None) -> Blocklist:
        """At start-up: a bad file stops it (ListLoadError, a ValueError: exit 2)."""
        return cls(config, load_files(config), metrics)

    @property
    def pdq_on(self) -> bool:
        return self.config.pdq_on

    def wanted(self) -> Wanted:
        """The hashes an upload needs for the lists in force now."""
        return Wanted(md5=self._has("md5"), sha1=self._has("sha1"), pdq=self.pdq_on)

    def _has(self, kind: str) -> bool:
        return bool(self._admin[kind]) or self._loaded.count(kind) > 0

    # -- matching ------------------------------------------------------------------------
    def check(self, facts: ImageFacts) -> None:
        """Raise Blocklisted (451) when the image is on a list."""
        match = self.find(facts)
        if match is not None:
            raise Blocklisted(
                "this image is on the operator's blocklist", audit_fields=match.audit_fields(facts)
            )

    def find(self, facts: ImageFacts) -> Match | None:
        """The first exact match (sha256, md5, sha1), else the closest PDQ match."""
        for kind in EXACT_KINDS:
            value: str | None = getattr(facts, kind)
            if value is None:
                continue
            if value in self._admin[kind]:
                return Match(kind, value, ADMIN)
            source = self._loaded.exact[kind].find(value)
            if source is not None:
                return Match(kind, value, source)
        if not self.pdq_on:
            return None
        if facts.pdq_looked_up:  # in the worker thread that hashed it (`look_up_pdq`)
            if facts.pdq_match is None:
                return None
            listed, source, distance = facts.pdq_match
            return Match("pdq", listed, source, distance)
        return self.find_pdq(pdq_hashes(facts), facts.pdq_quality)

    def look_up_pdq(self, facts: ImageFacts) -> ImageFacts:
        """The PDQ part of `find`, for a worker thread: its answer rides on the facts, so
        `check` on the event loop does only the exact lookups. Safe beside the loop: the
        file index is swapped whole on a reload and the admin index is copied on write."""
        if not self.pdq_on:
            return facts
        found = self.find_pdq(pdq_hashes(facts), facts.pdq_quality)
        match = None if found is None else (found.listed, found.source, found.distance or 0)
        return dataclasses.replace(facts, pdq_looked_up=True, pdq_match=match)

    def find_pdq(self, hashes: Sequence[str], quality: int | None) -> Match | None:
        if not hashes or quality is None or quality < self.config.pdq_min_quality:
            return None
        best = None
        for index in (self._loaded.pdq, self._admin_pdq):
            if len(index):
                found = index.query_many(list(hashes), self.config.pdq_max_distance)
                if found is not None and (best is None or found.distance < best.distance):
                    best = found
        return None if best is None else Match("pdq", best.hash, best.source, best.distance)

    # -- the lists -----------------------------------------------------------------------
    def swap(self, loaded: Loaded) -> None:
        """Put freshly loaded file lists in force (a reload); admin entries stay."""
        self._loaded = loaded
        self._publish()

    def counts(self) -> dict[str, int]:
        """Entries in force by kind (files and admin; an entry in both counts twice)."""
        return {kind: self._loaded.count(kind) + len(self._admin[kind]) for kind in KINDS}

    def file_counts(self) -> dict[str, int]:
        return {kind: self._loaded.count(kind) for kind in KINDS}

    def admin_entries(self, kind: str) -> list[str]:
        return sorted(self._admin[kind])

    def add(self, kind: str, hashes: Iterable[str]) -> list[str]:
        """Admin additions (normalised already); returns those that were new."""
        new = sorted(set(hashes) - self._admin[kind])
        self._admin[kind].update(new)
        if kind == "pdq" and new:
            self._rebuild_admin_pdq()
        self._publish()
        return new

    def remove(self, kind: str, hashes: Iterable[str]) -> list[str]:
        """Admin removals; returns those that were there."""
        gone = sorted(set(hashes) & self._admin[kind])
        self._admin[kind].difference_update(gone)
        if kind == "pdq" and gone:
            self._rebuild_admin_pdq()
        self._publish()
        return gone

    def _rebuild_admin_pdq(self) -> None:
        """Copy on write: worker threads may be querying the index in force. A few entries
        stay in the index's overflow table (scanned with numpy); many get the arrays."""
        values = sorted(self._admin["pdq"])
        if len(values) > OVERFLOW_LIMIT:  # bulk: the multi-index arrays
            self._admin_pdq = PdqIndex.build([(ADMIN, hex_to_rows(values))])
            return
        index = PdqIndex()
        for value in values:
            index.add(value, ADMIN)
        self._admin_pdq = index

    def replace_admin(self, entries: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
        """Make the admin layer exactly `entries` (shared ones, read from Redis); returns
        what is new in it, by kind, for the purge of held matches."""
        new: dict[str, list[str]] = {}
        for kind in KINDS:
            wanted = set(entries.get(kind, ()))
            self.remove(kind, self._admin[kind] - wanted)
            new[kind] = self.add(kind, wanted)
        return new

    def _publish(self) -> None:
        if self._metrics is not None:
            for kind, count in self.counts().items():
                self._metrics.blocklist_entries.labels(kind).set(count)

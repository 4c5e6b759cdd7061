"""The lifecycle log: one JSON object per line, on stdout by default.

It is what an operator shows a hosting provider: what was held, for how long, when it went.
It never carries image bytes, a client's filename, or a fetch URL (only its host).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ..clock import Clock
from ..item import Item


class AuditLog:
    def __init__(self, clock: Clock, stream: TextIO | None = None) -> None:
        self._clock = clock
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self.emit_many(event, [fields])

    def stored(self, item: Item, ttl: float, max_reads: int | None) -> None:
        """The `stored` line, the same from every store."""
        self.emit(
            "stored",
            id=item.id,
            sha256=item.sha256,
            size=item.size,
            media_type=item.media_type,
            source=item.source,
            source_host=item.source_host,
            ttl=round(ttl, 3),
            max_reads=max_reads,
            expires_at=round(item.deadline_wall, 3),
            pdq=item.pdq,  # None (left out) unless blocklist.pdq_mode is on
            pdq_quality=item.pdq_quality,
        )

    def emit_many(self, event: str, records: list[dict[str, Any]]) -> None:
        """One line per record, written and flushed together: a purge of thousands of
        items is one write, not thousands."""
        ts = round(self._clock.wall(), 6)
        lines = []
        for fields in records:
            record = {"ts": ts, "event": event}
            record.update((key, value) for key, value in fields.items() if value is not None)
            lines.append(_encode(record))
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write("\n".join(lines) + "\n")
        stream.flush()


_encode = json.JSONEncoder(separators=(",", ":")).encode

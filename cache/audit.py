"""The lifecycle log: one JSON object per line, on stdout by default.

It is what an operator shows a hosting provider: what was held, for how long, when it went.
It never carries image bytes, a client's filename, or a fetch URL (only its host).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from .clock import Clock


class AuditLog:
    def __init__(self, clock: Clock, stream: TextIO | None = None) -> None:
        self._clock = clock
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(self._clock.wall(), 6), "event": event}
        record.update((key, value) for key, value in fields.items() if value is not None)
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        stream.flush()

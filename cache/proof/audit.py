"""The lifecycle log: one JSON object per line, on stdout by default.

It is what an operator shows a hosting provider: what was held, for how long, when it went.
It never carries image bytes, a client's filename, or a fetch URL (only its host).

Writing never blocks the event loop. Lines are encoded at once (orjson: a tenth of the
stdlib's cost) and handed to a writer thread that writes what has queued in one call; a
reader of stdout that stops reading blocks that thread, never the loop, so purges go on
and are logged when it drains. While more than `max_backlog` lines wait, `backlogged` is
true: intake refuses new uploads and `/readyz` answers 503, so the backlog stops growing
with new work. Lines are dropped (and counted) only past `hard_limit`, so that a reader
that never comes back cannot pin unbounded memory. An in-memory stream (tests) cannot
block, so it is written inline.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

import orjson

from ..clock import Clock
from ..item import Item

MAX_BACKLOG = 10_000  # lines waiting before new uploads are refused
HARD_LIMIT = 1_000_000  # lines waiting before new ones are dropped (and counted)
RETRY_WRITE = 1.0  # s: after a failed write (stdout closed), the writer tries again


class AuditLog:
    def __init__(
        self,
        clock: Clock,
        stream: TextIO | None = None,
        max_backlog: int = MAX_BACKLOG,
        hard_limit: int = HARD_LIMIT,
    ) -> None:
        self._clock = clock
        self._stream = stream
        self.max_backlog = max_backlog
        self._hard_limit = hard_limit
        self._pending: deque[bytes] = deque()
        self._waiting = 0  # lines queued and not yet written
        self.dropped = 0
        self.failed_writes = 0
        self.on_drop: Callable[[int], object] = lambda _: None
        self._wake = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._inline = stream is not None and not _has_fd(stream)

    # -- what is logged ------------------------------------------------------------------
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
        """One line per record, queued together: a purge of thousands is one write."""
        ts = round(self._clock.wall(), 6)
        lines = []
        for fields in records:
            record = {"ts": ts, "event": event}
            record.update((key, value) for key, value in fields.items() if value is not None)
            lines.append(orjson.dumps(record))
        self._queue(b"\n".join(lines) + b"\n", len(lines))

    # -- how it is written ---------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Lines queued and not written yet."""
        return self._waiting

    @property
    def backlogged(self) -> bool:
        return self._waiting > self.max_backlog

    def _queue(self, chunk: bytes, lines: int) -> None:
        if self._inline:
            assert self._stream is not None
            self._stream.write(chunk.decode())
            return
        if self._waiting + lines > self._hard_limit:
            self.dropped += lines
            self.on_drop(lines)
            return
        with self._wake:
            self._pending.append(chunk)
            self._waiting += lines
            self._start_writer()
            self._wake.notify()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="audit", daemon=True)
            self._writer.start()

    def _write_loop(self) -> None:
        out = self._binary()
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    return
                chunks = list(self._pending)
                self._pending.clear()
            data = b"".join(chunks)
            if not self._write(out, data):
                with self._wake:
                    self._pending.appendleft(data)  # kept, in order, for the next try
                if self._closing:
                    return
                time.sleep(RETRY_WRITE)
                continue
            with self._wake:
                self._waiting -= data.count(b"\n")
                self._wake.notify_all()

    def _write(self, out: BinaryIO, data: bytes) -> bool:
        """True when written. A closed or broken stdout keeps the lines queued: the
        backlog grows, uploads are refused, and nothing is lost until the hard limit."""
        try:
            out.write(data)
            out.flush()
        except (OSError, ValueError):
            self.failed_writes += 1
            return False
        return True

    def _binary(self) -> BinaryIO:
        stream = self._stream if self._stream is not None else sys.stdout
        return stream.buffer if hasattr(stream, "buffer") else stream  # type: ignore[return-value]

    def drain(self, timeout: float | None = None) -> bool:
        """Wait (in a thread, never on the loop) until every queued line is written."""
        with self._wake:
            return self._wake.wait_for(lambda: self._waiting == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most `timeout` seconds), then stop the writer."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join(timeout)


def _has_fd(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, AttributeError, ValueError):
        return False
    return True

"""The lifecycle log: one JSON object per line, on stdout by default.

It is what an operator shows a hosting provider: what was held, for how long, when it went.
It never carries image bytes, a client's filename, or a fetch URL (only its host).

Writing never blocks the event loop. Lines are encoded at once (orjson: a tenth of the
stdlib's cost) and handed to a writer thread that writes what has queued in one call; a
reader of stdout that stops reading blocks that thread, never the loop, so purges go on
and are logged when it drains. The writer wakes every 10 ms rather than once per line: a
wake-up is a context switch, which cost more than the line. While more than
`max_backlog` lines wait, `backlogged` is true: intake refuses new uploads and `/readyz`
answers 503, so the backlog stops growing with new work. Lines are dropped (and counted)
only past `hard_limit`, so that a reader that never comes back cannot pin unbounded
memory. An in-memory stream (tests) cannot block, so it is written inline.
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
WRITE_EVERY = 0.01  # s: the writer wakes this often and writes what came meanwhile


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
        self._pending: deque[tuple[bytes, int]] = deque()  # (lines, how many), in order
        self._queued = 0  # lines queued since start (only the loop adds)
        self._written = 0  # lines written since start (only the writer thread adds)
        self.dropped = 0
        self.on_drop: Callable[[int], object] = lambda _: None
        self._writer: threading.Thread | None = None
        self._closing = threading.Event()
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

    def emit_rows(self, event: str, rows: list[dict[str, Any]]) -> None:
        """`emit_many` for rows that hold no None (nothing to leave out): a purge's lines,
        built without a filtering pass per line."""
        ts = round(self._clock.wall(), 6)
        dumps = orjson.dumps
        lines = [dumps({"ts": ts, "event": event, **row}) for row in rows]
        self._queue(b"\n".join(lines) + b"\n", len(lines))

    # -- how it is written ---------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Lines queued and not written yet."""
        return self._queued - self._written

    @property
    def backlogged(self) -> bool:
        return self.waiting > self.max_backlog

    def _queue(self, chunk: bytes, lines: int) -> None:
        if self._inline:
            assert self._stream is not None
            self._stream.write(chunk.decode())
            return
        if self.waiting + lines > self._hard_limit:
            self.dropped += lines
            self.on_drop(lines)
            return
        # No lock and no wake-up per line: deque.append is atomic, `_queued` has one writer
        # (the loop) and `_written` another (the writer thread), so `waiting` needs no lock;
        # the writer collects what came within WRITE_EVERY in one write.
        self._pending.append((chunk, lines))
        self._queued += lines
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="audit", daemon=True)
            self._writer.start()

    def _write_loop(self) -> None:
        out = self._binary()
        carry: list[tuple[bytes, int]] = []  # what a failed write left, to go first
        while True:
            closing = self._closing.wait(WRITE_EVERY)
            batch, pending = carry, self._pending
            while pending:
                batch.append(pending.popleft())
            if batch and not self._write(out, b"".join(chunk for chunk, _ in batch)):
                carry = batch  # kept, in order, for the next try
                if closing:
                    return
                time.sleep(RETRY_WRITE)
                continue
            carry = []
            self._written += sum(lines for _, lines in batch)
            if closing and not self._pending:
                return

    def _write(self, out: BinaryIO, data: bytes) -> bool:
        """True when written. A closed or broken stdout keeps the lines queued: the
        backlog grows, uploads are refused, and nothing is lost until the hard limit."""
        try:
            out.write(data)
            out.flush()
        except (OSError, ValueError):
            return False
        return True

    def _binary(self) -> BinaryIO:
        stream = self._stream if self._stream is not None else sys.stdout
        return stream.buffer if hasattr(stream, "buffer") else stream  # type: ignore[return-value]

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most `timeout` seconds), then stop the writer."""
        self._closing.set()
        if self._writer is not None:
            self._writer.join(timeout)


def _has_fd(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, AttributeError, ValueError):
        return False
    return True

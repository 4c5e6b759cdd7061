"""An upload body written straight into the store's room for it, as its chunks arrive.

The room comes from `ItemStore.buffer` (for the memory backend: pages that go back to the
kernel at purge, also when memory is locked), so the parser's chunks are copied once, into
the place the item will live, and nothing of the body lingers in the heap. A body of known
size gets its room once (`room` bytes: the declared length, or for a multipart body its
upper bound, handed back at `put`); one of unknown size (chunked) starts at FIRST_ROOM and
doubles, one more copy per growth, the old room zeroed and freed at once.
"""

from __future__ import annotations

from ..errors import BadRequest
from ..store.api import Alloc, Buffer

FIRST_ROOM = 256 * 1024  # a chunked body's first room; it doubles as the body grows


class Sink:
    def __init__(self, alloc: Alloc, room: int | None) -> None:
        self._alloc = alloc
        self.fixed = room is not None  # known length: more than that is malformed
        self.buffer: Buffer = alloc(FIRST_ROOM if room is None else room)

    @property
    def used(self) -> int:
        return self.buffer.used

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        buffer = self.buffer
        end = buffer.used + len(chunk)
        if end > buffer.size:
            if self.fixed:
                raise BadRequest("the body is longer than its Content-Length")
            buffer = self._grow(end)
        buffer.room[buffer.used : end] = chunk
        buffer.used = end

    def _grow(self, needed: int) -> Buffer:
        old = self.buffer
        new = self._alloc(max(needed, 2 * old.size))
        try:
            new.room[: old.used] = old.room[: old.used]
            new.used = old.used
        except BaseException:
            new.discard()
            raise
        old.discard()
        self.buffer = new
        return new

    def discard(self) -> None:
        self.buffer.discard()

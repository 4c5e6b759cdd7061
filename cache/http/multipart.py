"""multipart/form-data uploads, read by a small bounded reader of our own.

aiohttp's reader has no bound on the number of parts and reads each part's headers line by
line on the event loop: 20,000 empty parts held the loop for seconds, and a part with no
header block, a 60 KB header line or 2,000 headers ended as 500s. Here every piece has a
bound, and each chunk costs one `bytes.find` over at most a chunk plus a delimiter:

- at most `MAX_PARTS` parts; a preamble of at most `MAX_PREAMBLE` bytes;
- a part's header block at most `MAX_HEADER_BYTES` bytes in at most `MAX_HEADERS` lines;
- the image is the first part named `file`; any other part (a form field) is read and
  dropped, at most `MAX_FIELD_BYTES` each; an epilogue at most `MAX_PREAMBLE` bytes.
Anything past a bound, or a body that is not well-formed multipart, is 400; the image part
past the upload cap is 413. A client's filename and declared part type are never read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from ..errors import BadRequest, PayloadTooLarge
from ..store.api import Buffer
from ..wipe import zero
from .sink import Sink

MAX_PARTS = 8
MAX_PREAMBLE = 1024
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 16
MAX_FIELD_BYTES = 64 * 1024
MAX_PADDING = 64  # transport padding (spaces, tabs) after a delimiter
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*")
_NAME = re.compile(r"""(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]*))""", re.IGNORECASE)

NextChunk = Callable[[], Awaitable[bytes]]


class _Reader:
    """A window on the body: what has arrived and is not consumed yet."""

    def __init__(self, next_chunk: NextChunk) -> None:
        self._next = next_chunk
        self.buf = bytearray(b"\r\n")  # so the first delimiter needs no special case
        self._eof = False

    async def fill(self, what: str) -> None:
        chunk = b"" if self._eof else await self._next()
        if not chunk:
            self._eof = True
            raise BadRequest(f"malformed multipart body: it ended inside {what}")
        self.buf += chunk

    async def until(self, marker: bytes, limit: int, what: str) -> bytes:
        """The bytes before `marker` (consumed, with it): at most `limit` of them."""
        start = 0
        while (at := self.buf.find(marker, start)) < 0:
            if len(self.buf) > limit + len(marker):
                raise BadRequest(f"malformed multipart body: {what} over {limit} bytes")
            start = max(0, len(self.buf) - len(marker) + 1)
            await self.fill(what)
        if at > limit:
            raise BadRequest(f"malformed multipart body: {what} over {limit} bytes")
        found = bytes(self.buf[:at])
        del self.buf[: at + len(marker)]
        return found

    async def move_until(self, marker: bytes, sink: Sink | None, limit: int) -> None:
        """Move what comes before `marker` into `sink` (None: drop it), consuming the
        marker; past `limit` bytes, a refusal (413 for the image, 400 for anything else)."""
        moved = 0
        while True:
            at = self.buf.find(marker)
            n = at if at >= 0 else len(self.buf) - len(marker) + 1
            if n > 0:
                moved += n
                if moved > limit:
                    if sink is not None:
                        raise PayloadTooLarge(f"the image is over the {limit}-byte limit")
                    raise BadRequest(f"a multipart part other than 'file' is over {limit} bytes")
                if sink is not None:
                    with memoryview(self.buf) as view, view[:n] as part:
                        sink.write(part)
                del self.buf[:n]
            if at >= 0:
                del self.buf[: len(marker)]
                return
            await self.fill("a part")

    async def take(self, count: int, what: str) -> bytes:
        while len(self.buf) < count:
            await self.fill(what)
        return bytes(self.buf[:count])

    async def drain(self, limit: int) -> None:
        """The epilogue: read to the end, dropped, at most `limit` bytes."""
        seen = len(self.buf)
        while not self._eof:
            chunk = await self._next()
            self._eof = not chunk
            seen += len(chunk)
            if seen > limit:
                raise BadRequest(f"malformed multipart body: an epilogue over {limit} bytes")
        self.buf.clear()


async def read_file_part(
    next_chunk: NextChunk, boundary: bytes, max_bytes: int, new_sink: Callable[[], Sink]
) -> Buffer:
    """The bytes of the first part named `file` (see the module docstring for the bounds),
    written into the sink `new_sink` makes (the store's room)."""
    reader = _Reader(next_chunk)
    delimiter = b"\r\n--" + boundary
    image: Sink | None = None
    try:
        await reader.until(delimiter, MAX_PREAMBLE, "the preamble")
        for parts in range(MAX_PARTS + 1):
            if await _closing(reader):
                await reader.drain(MAX_PREAMBLE)
                if image is None:
                    raise BadRequest("the multipart body has no part named 'file'")
                return image.buffer
            if parts == MAX_PARTS:
                break
            name = _part_name(await reader.until(b"\r\n\r\n", MAX_HEADER_BYTES, "part headers"))
            if name == "file" and image is None:
                image = new_sink()
                await reader.move_until(delimiter, image, max_bytes)
            else:
                await reader.move_until(delimiter, None, MAX_FIELD_BYTES)
        raise BadRequest(f"a multipart body may have at most {MAX_PARTS} parts")
    except BaseException:
        if image is not None:
            image.discard()
        raise
    finally:
        zero(reader.buf)


async def _closing(reader: _Reader) -> bool:
    """After a delimiter: True for the close delimiter (`--`), else skip the transport
    padding and check the line ends (its CRLF is left: it starts the header block)."""
    if await reader.take(2, "a delimiter") == b"--":
        del reader.buf[:2]
        return True
    padding = 0
    while (await reader.take(padding + 1, "a delimiter"))[padding:] in (b" ", b"\t"):
        padding += 1
        if padding > MAX_PADDING:
            raise BadRequest("malformed multipart body: a delimiter line is too long")
    del reader.buf[:padding]
    if await reader.take(2, "a delimiter") != b"\r\n":
        raise BadRequest("malformed multipart body: a delimiter is not followed by CRLF")
    return False


def _part_name(block: bytes) -> str | None:
    """The `name` of a part's Content-Disposition (None when it has none)."""
    lines = block.split(b"\r\n")[1:]  # the block starts with the delimiter line's CRLF
    if len(lines) > MAX_HEADERS:
        raise BadRequest(f"a multipart part may have at most {MAX_HEADERS} headers")
    name: str | None = None
    for line in lines:
        if not _HEADER.fullmatch(line):
            raise BadRequest("malformed multipart body: a part header is not 'Name: value'")
        field, _, value = line.decode("latin-1").partition(":")
        if field.strip().lower() == "content-disposition":
            found = _NAME.search(value)
            name = None if found is None else (found.group(1) or found.group(2))
    return name

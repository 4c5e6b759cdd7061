"""PNG: every chunk framed and CRC-checked, the pixel stream inflated to exactly its size.

Why inflate at all: a PNG whose IDAT stream is short, long or corrupt still has
perfectly good chunk framing, and a decoder would refuse it; the zlib stream is the
only part of the file where the damage can hide. It is inflated through a
`decompressobj` with `max_length`, so at most one 64 KiB window is ever held (each is
checked for its rows' filter-type bytes with a strided slice, then dropped) and the
work stops one byte past the size IHDR implies. The size caps are applied from IHDR
before the first IDAT byte is touched, so a decompression bomb costs a header parse.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .base import (
    U32BE,
    Caps,
    Data,
    Malformed,
    Shape,
    Steps,
    check_frames,
    check_size,
    expect_end,
    need,
)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip
_WINDOW = 64 * 1024
_FILTER_TYPES = bytes(range(5))
_MAX_CHUNK = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Header:
    width: int
    height: int
    pixel_bits: int
    colour: int
    interlaced: bool


def parse_ihdr(body: Data, caps: Caps) -> Header:
    if len(body) != 13:
        raise Malformed("the PNG header chunk is not 13 bytes")
    width, height = U32BE.unpack_from(body, 0)[0], U32BE.unpack_from(body, 4)[0]
    depth, colour, compression, filtering, interlace = body[8:13]
    check_size(width, height, caps)  # before anything else: a bomb costs only this
    if depth not in _DEPTHS.get(colour, ()):
        raise Malformed("the PNG bit depth and colour type do not go together")
    if compression or filtering or interlace > 1:
        raise Malformed("the PNG header names an unknown compression, filter or interlace")
    return Header(width, height, depth * _CHANNELS[colour], colour, interlace == 1)


Layout = tuple[tuple[int, int, int], ...]  # per pass: first filter byte, row size, rows


def row_layout(h: Header) -> Layout:
    """Where each pass's rows sit in the inflated stream (one pass unless interlaced)."""
    layout, offset = [], 0
    for x0, y0, dx, dy in _ADAM7 if h.interlaced else ((0, 0, 1, 1),):
        cols, rows = (h.width - x0 + dx - 1) // dx, (h.height - y0 + dy - 1) // dy
        if cols > 0 and rows > 0:  # an empty pass has no rows, hence no filter bytes
            size = 1 + (cols * h.pixel_bits + 7) // 8
            layout.append((offset, size, rows))
            offset += size * rows
    return tuple(layout)


def raw_size(h: Header) -> int:
    """Bytes the inflated stream must hold: each row is a filter byte plus packed pixels."""
    return sum(size * rows for _, size, rows in row_layout(h))


class Inflater:
    """Streams IDAT data through zlib; each window is checked for its rows' filter bytes
    (a strided slice, C speed) and dropped, so only the byte count is kept.

    The zlib wrapper is taken apart here and the deflate data inflated raw: the 2-byte
    header is checked (method 8, window, check bits, no preset dictionary) and exactly 4
    trailer bytes must follow the deflate end. The trailer's Adler-32 is not recomputed:
    every byte of it is already covered by the IDAT chunks' CRCs, and computing it was a
    tenth of the check's cost."""

    __slots__ = ("_done", "_head", "_layout", "_left", "_tail", "_z")

    def __init__(self, layout: Layout) -> None:
        self._z = zlib.decompressobj(-15)
        self._layout = layout
        self._done = 0
        self._left = sum(size * rows for _, size, rows in layout)
        self._head = b""  # the zlib header, until both bytes are in
        self._tail = 0  # trailer bytes seen after the deflate end

    def feed(self, chunk: Data) -> None:
        if len(self._head) < 2:
            chunk = self._header(chunk)
        z = self._z
        if z.eof:
            self._trailer(len(chunk))
            return
        data: Data | bytes = chunk
        try:
            while True:
                limit = min(_WINDOW, self._left + 1)  # one byte too many proves "too long"
                out = z.decompress(data, limit)
                produced = len(out)
                self._left -= produced
                if self._left < 0:
                    raise Malformed("the PNG pixel data is longer than its header says")
                self._filters(out)
                if z.eof:
                    self._trailer(len(z.unused_data))
                    return
                data = z.unconsumed_tail
                if not data and produced < limit:  # input used up and no output pending
                    return
        except zlib.error:
            raise Malformed("the PNG pixel data is not a valid zlib stream") from None

    def _filters(self, out: bytes) -> None:
        """Every row's first byte must be filter type 0-4; rows here start in `out`."""
        base, end = self._done, self._done + len(out)
        self._done = end
        for start, size, rows in self._layout:
            first = max(0, -(-(base - start) // size))
            last = min(rows, -(-(end - start) // size))
            if first < last:
                picked = out[
                    start + first * size - base : start + (last - 1) * size - base + 1 : size
                ]
                if picked.translate(None, _FILTER_TYPES):
                    raise Malformed("a PNG row has an unknown filter type")

    def _header(self, chunk: Data) -> Data:
        """Take the zlib header's bytes off the front of the stream; the rest is deflate."""
        need = 2 - len(self._head)
        self._head += bytes(chunk[:need])
        if len(self._head) == 2:
            cmf, flg = self._head
            if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf << 8 | flg) % 31 or flg & 0x20:
                raise Malformed("the PNG pixel data is not a valid zlib stream")
        return chunk[need:]

    def _trailer(self, count: int) -> None:
        self._tail += count
        if self._tail > 4:
            raise Malformed("image data follows the end of the PNG zlib stream")

    def finish(self) -> None:
        if not self._z.eof or self._tail != 4:
            raise Malformed("the PNG zlib stream is cut short")
        if self._left:
            raise Malformed("the PNG pixel data is shorter than its header says")


class Walk:
    """What the chunks seen so far allow next; one method per chunk that has rules."""

    def __init__(self, header: Header, caps: Caps) -> None:
        self.caps = caps
        self.header = header
        self.palette = False
        self.idat = 0  # 0 before the IDAT run, 1 inside it, 2 after it
        self.inflater = Inflater(row_layout(header))
        self.frames = 0  # acTL's frame count; 0 = not animated
        self.fctl = 0
        self.sequence = 0
        self.frame_pending = False
        self.frame_in_fdat = False  # the current frame's data must come as fdAT

    def chunk(self, kind: bytes, body: Data) -> None:
        if self.idat == 1 and kind != b"IDAT":
            self._end_idat()
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, body)
        elif not kind[0] & 0x20:
            raise Malformed("the PNG has a critical chunk this reader does not know")

    def plte(self, body: Data) -> None:
        if self.palette or self.idat or self.header.colour in (0, 4):
            raise Malformed("the PNG palette is repeated, late or not allowed here")
        if len(body) % 3 or not 3 <= len(body) <= 768:
            raise Malformed("the PNG palette size is not a whole number of 1 to 256 entries")
        self.palette = True

    def idat_chunk(self, body: Data) -> None:
        if self.idat == 2:
            raise Malformed("the PNG image data chunks are not consecutive")
        if self.idat == 0:
            if self.header.colour == 3 and not self.palette:
                raise Malformed("the paletted PNG has no palette")
            self.idat = 1
        self.frame_pending = False
        self.inflater.feed(body)

    def _end_idat(self) -> None:
        self.inflater.finish()
        self.idat = 2

    def iend(self, body: Data) -> None:
        if len(body):
            raise Malformed("the PNG end chunk is not empty")
        if self.idat != 2:
            raise Malformed("the PNG has no image data")
        if self.frames and (self.fctl != self.frames or self.frame_pending):
            raise Malformed("the APNG frame count does not match its frames")

    def actl(self, body: Data) -> None:
        if self.frames or self.idat or len(body) != 8:
            raise Malformed("the APNG animation chunk is repeated, late or the wrong size")
        self.frames = U32BE.unpack_from(body, 0)[0]
        if self.frames == 0:
            raise Malformed("the APNG animation has no frames")
        check_frames(self.frames, self.caps)

    def fctl_chunk(self, body: Data) -> None:
        if not self.frames:
            return  # without acTL the animation chunks are ignorable ancillary data
        if len(body) != 26:
            raise Malformed("an APNG frame control chunk has the wrong size")
        self._sequence(body)
        w, h, x, y = (U32BE.unpack_from(body, at)[0] for at in (4, 8, 12, 16))
        if self.frame_pending or self.fctl == self.frames:
            raise Malformed("an APNG frame has no data or there are too many frames")
        if not (w and h and x + w <= self.header.width and y + h <= self.header.height):
            raise Malformed("an APNG frame lies outside the canvas")
        if self.idat == 0 and (x, y, w, h) != (0, 0, self.header.width, self.header.height):
            raise Malformed("the APNG default frame does not cover the canvas")
        if body[24] > 2 or body[25] > 1:
            raise Malformed("an APNG frame has an unknown dispose or blend operation")
        self.fctl += 1
        self.frame_pending = True
        self.frame_in_fdat = self.idat == 2

    def fdat(self, body: Data) -> None:
        if not self.frames:
            return
        if not self.frame_in_fdat:
            raise Malformed("APNG frame data comes before its frame control")
        if len(body) < 4:
            raise Malformed("an APNG frame data chunk has no sequence number")
        self._sequence(body)
        self.frame_pending = False

    def _sequence(self, body: Data) -> None:
        if U32BE.unpack_from(body, 0)[0] != self.sequence:
            raise Malformed("the APNG sequence numbers are out of order")
        self.sequence += 1


def _repeated_header(_walk: Walk, _body: Data) -> None:
    raise Malformed("the PNG header chunk is repeated")


_HANDLERS = {
    b"IHDR": _repeated_header,
    b"PLTE": Walk.plte,
    b"IDAT": Walk.idat_chunk,
    b"IEND": Walk.iend,
    b"acTL": Walk.actl,
    b"fcTL": Walk.fctl_chunk,
    b"fdAT": Walk.fdat,
}


def read_chunk(data: Data, pos: int) -> tuple[bytes, int, int]:
    """The type and data span of the CRC-checked chunk at `pos`."""
    need(data, pos + 12, "a PNG chunk header")
    length = U32BE.unpack_from(data, pos)[0]
    if length > _MAX_CHUNK:
        raise Malformed("a PNG chunk length is over the format's limit")
    end = pos + 8 + length
    need(data, end + 4, "a PNG chunk")
    if zlib.crc32(data[pos + 4 : end]) != U32BE.unpack_from(data, end)[0]:
        raise Malformed(f"the PNG chunk at byte {pos} has a bad CRC")
    kind = data[pos + 4 : pos + 8].tobytes()
    if not kind.isalpha():
        raise Malformed("a PNG chunk type is not four letters")
    return kind, pos + 8, end


def check(data: Data, caps: Caps) -> Shape:
    if data[:8].tobytes() != SIGNATURE:
        raise Malformed("the PNG signature is missing")
    kind, start, end = read_chunk(data, 8)
    if kind != b"IHDR":
        raise Malformed("the first PNG chunk is not the header")
    walk, steps = Walk(parse_ihdr(data[start:end], caps), caps), Steps(data)
    while kind != b"IEND":
        steps.take()
        kind, start, end = read_chunk(data, end + 4)
        walk.chunk(kind, data[start:end])
    expect_end(data, end + 4, "PNG end chunk")
    return Shape(walk.header.width, walk.header.height, walk.frames or 1)

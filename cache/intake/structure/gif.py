"""GIF: every block from the screen descriptor to the trailer, frames counted as they come.

Why this is enough to be fast and safe: a GIF is a flat list of blocks whose variable
parts are chains of length-prefixed sub-blocks. The caps (screen, each frame's
rectangle, the frame count) are checked the moment each descriptor is read, so a
300-frame bomb is refused at frame `max_frames + 1`. Runs of full 255-byte sub-blocks,
which make up nearly all image data, are skipped with one strided slice rather than a
Python step per block. The LZW codes themselves are not decoded.
"""

from __future__ import annotations

import struct

from .base import (
    U16LE,
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

_HEADERS = (b"GIF87a", b"GIF89a")
_DESCRIPTOR = struct.Struct("<4HB")
_STRIDE_WINDOW = 256  # full sub-blocks inspected per strided slice


def _table_size(packed: int) -> int:
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def skip_sub_blocks(data: Data, pos: int, steps: Steps) -> int:
    """Position just past the zero-length block that ends the chain starting at `pos`."""
    while True:
        steps.take()
        need(data, pos + 1, "a GIF data sub-block")
        size = data[pos]
        if size == 0:
            return pos + 1
        if size == 255:
            # Length bytes of consecutive full blocks sit 256 apart: count the 0xFF run.
            lengths = data[pos : pos + 256 * _STRIDE_WINDOW : 256].tobytes()
            pos += 256 * (len(lengths) - len(lengths.lstrip(b"\xff")))
        else:
            pos += size + 1


class Walk:
    def __init__(self, data: Data, caps: Caps) -> None:
        self.data = data
        self.caps = caps
        self.steps = Steps(data)
        self.frames = 0
        self.width = 0
        self.height = 0

    def screen(self) -> int:
        """Check the header and logical screen; return where the first block starts."""
        data = self.data
        if data[:6].tobytes() not in _HEADERS:
            raise Malformed("the GIF header is missing")
        need(data, 13, "the GIF screen descriptor")
        self.width, self.height = U16LE.unpack_from(data, 6)[0], U16LE.unpack_from(data, 8)[0]
        check_size(self.width, self.height, self.caps)
        pos = 13 + _table_size(data[10])
        need(data, pos, "the GIF global colour table")
        return pos

    def image(self, pos: int) -> int:
        data = self.data
        need(data, pos + 10, "a GIF image descriptor")
        left, top, width, height, packed = _DESCRIPTOR.unpack_from(data, pos + 1)
        self.frames += 1
        check_frames(self.frames, self.caps)
        if not width or not height:
            raise Malformed("a GIF frame has no pixels")
        # A frame may reach past the logical screen; decoders grow the canvas to hold it.
        self.width, self.height = max(self.width, left + width), max(self.height, top + height)
        check_size(self.width, self.height, self.caps)
        pos += 10 + _table_size(packed)
        need(data, pos + 2, "a GIF frame")
        if not 2 <= data[pos] <= 8:
            raise Malformed("a GIF frame's LZW code size is out of range")
        if data[pos + 1] == 0:
            raise Malformed("a GIF frame has no image data")
        return skip_sub_blocks(data, pos + 1, self.steps)

    def extension(self, pos: int) -> int:
        data = self.data
        need(data, pos + 3, "a GIF extension")
        if data[pos + 1] == 0xF9 and data[pos + 2] != 4:
            raise Malformed("a GIF graphic control extension has the wrong size")
        return skip_sub_blocks(data, pos + 2, self.steps)


def check(data: Data, caps: Caps) -> Shape:
    walk = Walk(data, caps)
    pos = walk.screen()
    while True:
        walk.steps.take()
        need(data, pos + 1, "a GIF block")
        block = data[pos]
        if block == 0x2C:
            pos = walk.image(pos)
        elif block == 0x21:
            pos = walk.extension(pos)
        elif block == 0x3B:
            if not walk.frames:
                raise Malformed("the GIF has no frames")
            expect_end(data, pos + 1, "GIF trailer")
            return Shape(walk.width, walk.height, walk.frames)
        else:
            raise Malformed(f"an unknown GIF block starts at byte {pos}")

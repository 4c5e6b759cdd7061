"""Structural validation of uploaded images: walk the container, never decode pixels.

Why: a full Pillow decode in the upload path costs ~250 us per 100 KB PNG and ~7.6 ms
per 1 MB JPEG, and most of that work (filtering, IDCT, colour conversion) proves
nothing about whether the file is well formed. Each format module walks its container
with C-speed primitives (struct, zlib.crc32, a capped zlib inflate, compiled regexes)
and refuses anything malformed, truncated, trailed by extra bytes, or over the caps.
The caps are applied from the header before any bulk work, so a bomb costs a header
parse. What cannot be proven without a decoder is listed in README.md.
"""

from __future__ import annotations

from collections.abc import Callable

from . import bmp, gif, jpeg, png, webp
from .base import Caps, Data, Malformed, OverCap, Shape

__all__ = ["FORMATS", "Caps", "Malformed", "OverCap", "Shape", "check"]

_CHECKERS: dict[str, Callable[[Data, Caps], Shape]] = {
    "PNG": png.check,
    "JPEG": jpeg.check,
    "GIF": gif.check,
    "WEBP": webp.check,
    "BMP": bmp.check,
}
FORMATS = frozenset(_CHECKERS)


def check(data: bytes | bytearray | memoryview, fmt: str, caps: Caps) -> Shape:
    """The image's size and frame count, or Malformed / OverCap.

    `fmt` is the format the caller sniffed from the magic bytes; the checker still
    verifies the magic itself, so a mislabelled body is refused as Malformed.
    """
    checker = _CHECKERS.get(fmt)
    if checker is None:
        raise ValueError(f"no structural checker for format {fmt!r}")
    with memoryview(data) as view, view.cast("B") as flat:
        return checker(flat, caps)

"""The vocabulary every format walker shares: the caps, the result and the two refusals.

Two error classes because the service answers them differently: `Malformed` means the
bytes are not a well-formed image (422 invalid-image), `OverCap` means they may well be
one but describe more pixels or frames than we agree to hold (422
image-dimensions-exceeded). Messages are short sentences built only from numbers we
parsed, never from the input bytes, so nothing an attacker wrote is reflected back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

Data = memoryview  # every walker reads one flat, byte-format view of the upload

U16BE = struct.Struct(">H")
U32BE = struct.Struct(">I")
U16LE = struct.Struct("<H")
U32LE = struct.Struct("<I")


class Malformed(ValueError):
    """The bytes do not follow the container's structure."""


class OverCap(ValueError):
    """The header asks for more pixels, a longer side or more frames than allowed."""


@dataclass(frozen=True, slots=True)
class Caps:
    max_side: int
    max_pixels: int
    max_frames: int


@dataclass(frozen=True, slots=True)
class Shape:
    width: int
    height: int
    frames: int


def check_size(width: int, height: int, caps: Caps) -> None:
    """Refuse an empty image as malformed and an oversized one as over the caps."""
    if width <= 0 or height <= 0:
        raise Malformed("the image has no pixels")
    if width > caps.max_side or height > caps.max_side:
        raise OverCap(f"{width}x{height} is over the {caps.max_side}-pixel side cap")
    if width * height > caps.max_pixels:
        raise OverCap(f"{width}x{height} is over the {caps.max_pixels}-pixel cap")


def check_frames(frames: int, caps: Caps) -> None:
    if frames > caps.max_frames:
        raise OverCap(f"{frames} frames is over the {caps.max_frames}-frame cap")


class Steps:
    """A budget of Python-level parsing steps (chunks, segments, blocks) for one file.

    Each step costs about a microsecond, so a file made of nothing but empty chunks
    would buy seconds of CPU per 10 MB. Real encoders average far more than 256 bytes
    per structure once a file has thousands of them, so that is the ceiling.
    """

    __slots__ = ("left",)

    def __init__(self, data: Data) -> None:
        self.left = 4096 + len(data) // 256

    def take(self, count: int = 1) -> None:
        self.left -= count
        if self.left < 0:
            raise Malformed("the file is made of implausibly many tiny structures")


def need(data: Data, end: int, what: str) -> None:
    """Refuse when `end` (exclusive) runs past the data: the file is truncated there."""
    if end > len(data):
        raise Malformed(f"the file ends inside {what}")


def expect_end(data: Data, pos: int, what: str) -> None:
    """Nothing may follow the last structure: trailing bytes are how polyglots hide."""
    if pos != len(data):
        raise Malformed(f"{len(data) - pos} bytes follow the {what}")

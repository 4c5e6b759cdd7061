"""Turn untrusted bytes into facts about an allowed image, or into the right 4xx.

The format comes from the bytes, never from a filename or Content-Type. Pillow only ever
sees the one format the sniffer found, and the size caps are checked from the header
before any pixel is decoded, so a decompression bomb costs a header parse.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from concurrent.futures import Executor

from PIL import Image, ImageFile

from ..config import LimitsConfig
from ..errors import ImageTooLarge, InvalidImage, UnsupportedFormat
from ..item import ImageFacts

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
ImageFile.LOAD_TRUNCATED_IMAGES = False


def sniff(data: bytes | bytearray) -> str | None:
    """The image format the bytes start with, or None (text, PDF, SVG... all land here)."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "BMP"
    return None


class Inspector:
    """The CPU part of ingest: header caps, a real decode check, the SHA-256."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        # Pillow's own bomb check agrees with ours; anything it flags is refused below.
        Image.MAX_IMAGE_PIXELS = limits.max_pixels

    def inspect(self, data: bytes | bytearray) -> ImageFacts:
        fmt = sniff(data)
        if fmt is None or fmt not in self.limits.formats:
            allowed = ", ".join(self.limits.formats)
            raise UnsupportedFormat(f"the bytes are not an image in an allowed format ({allowed})")
        try:
            # One immutable copy: BytesIO shares a bytes object instead of copying it again.
            width, height, frames = self._check(bytes(data), fmt)
        except (ImageTooLarge, InvalidImage):
            raise
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"over the {self.limits.max_pixels}-pixel cap") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise InvalidImage(f"the {fmt} data does not decode ({type(exc).__name__})") from None
        return ImageFacts(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            media_type=MEDIA_TYPES[fmt],
            width=width,
            height=height,
            frames=frames,
        )

    def _check(self, data: bytes, fmt: str) -> tuple[int, int, int]:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
            self._check_size(width, height)
            frames = self._count_frames(im)
            if fmt == "PNG":
                im.verify()  # every chunk's CRC, IDAT included
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            if fmt == "JPEG":
                # DCT scaling decodes at 1/8 size: every entropy-coded block is still read.
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
        return width, height, frames

    def _check_size(self, width: int, height: int) -> None:
        limits = self.limits
        if width <= 0 or height <= 0:
            raise InvalidImage("the image has no pixels")
        if width > limits.max_side or height > limits.max_side:
            raise ImageTooLarge(f"{width}x{height} is over the {limits.max_side}-pixel side cap")
        if width * height > limits.max_pixels:
            raise ImageTooLarge(f"{width}x{height} is over the {limits.max_pixels}-pixel cap")

    def _count_frames(self, im: Image.Image) -> int:
        frames = int(getattr(im, "n_frames", 1))
        if frames > self.limits.max_frames:
            raise ImageTooLarge(f"{frames} frames is over the {self.limits.max_frames}-frame cap")
        return frames


class InspectorPool:
    """Runs the inspector off the event loop: a 20 MB decode must not stall other requests."""

    def __init__(self, limits: LimitsConfig, executor: Executor | None = None) -> None:
        self.inspector = Inspector(limits)
        self._executor = executor

    async def inspect(self, data: bytes | bytearray) -> ImageFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.inspector.inspect, data)

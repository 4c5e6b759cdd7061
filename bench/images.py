"""Valid images of noise at a chosen size, made on the fly (nothing binary is committed).

Noise does not compress, so the file size follows the pixel count; `unique_png` makes any
number of distinct files from one PNG (distinct SHA-256s) by adding a private ancillary
chunk with a counter, which costs a CRC, not an encode.
"""

from __future__ import annotations

import io
import math
import random
import struct
import zlib

from PIL import Image

KB = 1000


def _noise(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def noise_png(target_bytes: int = 100 * KB, seed: int = 1) -> bytes:
    """An RGB noise PNG of about `target_bytes` (within a few hundred bytes)."""
    side = max(8, int(math.sqrt(target_bytes / 3)))
    for _ in range(6):
        out = io.BytesIO()
        _noise(side, side, seed).save(out, format="PNG", compress_level=1)
        data = out.getvalue()
        if abs(len(data) - target_bytes) < target_bytes * 0.02:
            break
        side = max(8, int(side * math.sqrt(target_bytes / len(data))))
    return data


def noise_jpeg(target_bytes: int = 1000 * KB, seed: int = 2, quality: int = 90) -> bytes:
    """An RGB noise JPEG of about `target_bytes`, under 1 MiB for 1 MB targets."""
    side = max(8, int(math.sqrt(target_bytes / 1.5)))
    data = b""
    for _ in range(8):
        out = io.BytesIO()
        _noise(side, side, seed).save(out, format="JPEG", quality=quality)
        data = out.getvalue()
        if abs(len(data) - target_bytes) < target_bytes * 0.03:
            break
        side = max(8, int(side * math.sqrt(target_bytes / len(data))))
    return data


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def unique_png(png: bytes, counter: int) -> bytes:
    """`png` with a `bnCh` chunk (ancillary, private, safe to copy) carrying `counter`."""
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + _chunk(b"bnCh", counter.to_bytes(8, "big")) + png[iend:]

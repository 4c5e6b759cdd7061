"""A corpus of good and hostile images, made on the fly (nothing binary is committed)."""

from __future__ import annotations

import io
import os
import struct
import zlib

from PIL import Image


def encode(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: object) -> bytes:
    im = Image.new(mode, size, color=(200, 40, 90) if mode == "RGB" else 128)
    for x in range(0, size[0], 7):  # some structure so encoders do real work
        im.putpixel((x, x % size[1]), (10, 200, 30) if mode == "RGB" else 10)
    out = io.BytesIO()
    im.save(out, format=fmt, **save)
    return out.getvalue()


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("JPEG", size, quality=90)


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("PNG", size)


def gif(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("GIF", size, mode="L")


def webp(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("WEBP", size)


def bmp(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("BMP", size)


def tiff(size: tuple[int, int] = (64, 48)) -> bytes:
    return encode("TIFF", size)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header for a huge all-black image: tiny on the wire, gigabytes decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(min(height, 2000)))
    idat += compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose logical screen claims 4 G pixels."""
    good = bytearray(gif((8, 8)))
    good[6:10] = struct.pack("<HH", width, height)
    return bytes(good)


def gif_many_frames(frames: int) -> bytes:
    first = Image.new("L", (4, 4), 0)
    rest = [Image.new("L", (4, 4), (i * 37) % 256) for i in range(1, frames)]
    out = io.BytesIO()
    first.save(
        out,
        format="GIF",
        save_all=True,
        append_images=rest,
        duration=10,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return out.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg((256, 256))
    return data[: len(data) // 2]


def png_bad_crc() -> bytes:
    data = bytearray(png())
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    data[crc_at] ^= 0xFF
    return bytes(data)


SCRIPT = b"<html><script>alert(document.cookie)</script></html>"


def polyglot() -> bytes:
    """A valid JPEG carrying an HTML script in a comment segment: structurally an image to
    us, stored, and never served as HTML."""
    body = jpeg()
    comment = b"\xff\xfe" + (len(SCRIPT) + 2).to_bytes(2, "big") + SCRIPT
    return body[:2] + comment + body[2:]


def trailing_polyglot() -> bytes:
    """A valid JPEG with an HTML script after its end marker: refused (nothing may follow)."""
    return jpeg() + SCRIPT


HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script></svg>"
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _png_file(side: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def flat_png(side: int) -> bytes:
    """A side x side RGB PNG of one colour: cheap on the wire (about 150 KiB for 7000 x
    7000), costly to decode (4 bytes a pixel): what a thumbnail attack sends."""
    row = b"\x00" + bytes(3 * side)
    packer = zlib.compressobj(9)
    return _png_file(side, b"".join(packer.compress(row) for _ in range(side)) + packer.flush())


def gif_bad_pixels() -> bytes:
    """A GIF whose blocks are all sound (what the structural check walks) but whose LZW
    data is not: a few bytes of a 120x90 GIF's image data changed (found by trying,
    seeded). Only a decode refuses it ("image file is truncated")."""
    import random

    rng = random.Random(1)
    data = bytearray(gif((120, 90)))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data) // 3, len(data) - 4)] = rng.randrange(256)
    return bytes(data)


def noise_png(side: int) -> bytes:
    """A side x side RGB PNG of random pixels, barely compressed: side=1850 is ~10 MB."""
    rows = b"".join(b"\x00" + os.urandom(3 * side) for _ in range(side))
    return _png_file(side, zlib.compress(rows, 1))

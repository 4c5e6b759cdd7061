"""Shared test corpus builders: Pillow-made images plus hand-built files Pillow cannot write."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from cache.intake.structure import Caps, Shape, check

CAPS = Caps(max_side=10_000, max_pixels=40_000_000, max_frames=100)
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))  # fmt: skip


def photo(size: tuple[int, int], seed: int = 1, noise: float = 0.08) -> Image.Image:
    """Photo-like RGB: smooth random shapes upscaled, plus a little sensor noise."""
    rnd = random.Random(seed)
    w, h = size
    small = (max(1, w // 8), max(1, h // 8))
    base = Image.frombytes("RGB", small, rnd.randbytes(small[0] * small[1] * 3))
    base = base.resize(size, Image.Resampling.BICUBIC)
    grain = Image.frombytes("RGB", size, rnd.randbytes(w * h * 3))
    return Image.blend(base, grain, noise)


def encode(im: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **save)
    return out.getvalue()


def shape_of(data: bytes, fmt: str, caps: Caps = CAPS) -> tuple[int, int, int]:
    """(width, height, frames) as a plain tuple, for terse comparisons."""
    shape: Shape = check(data, fmt, caps)
    return shape.width, shape.height, shape.frames


def cut_points(data: bytes, count: int = 40) -> list[int]:
    """`count` truncation lengths spread through the file, plus the last few bytes."""
    step = max(1, len(data) // count)
    points = set(range(0, len(data), step)) | {len(data) - k for k in (1, 2, 3, 4)}
    return sorted(p for p in points if 0 <= p < len(data))


def mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    for _ in range(count):
        out = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(out))
            out[at] = rnd.randrange(256)
        yield bytes(out)


# --- PNG -------------------------------------------------------------------------------


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value)


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def png_file(header: bytes, *middle: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(middle) + chunk(b"IEND", b"")


def pack_row(samples: list[int], depth: int) -> bytes:
    """Pack sample values MSB first at `depth` bits each (depth 1, 2, 4, 8 or 16)."""
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    per = 8 // depth
    out = bytearray()
    for at in range(0, len(samples), per):
        group = samples[at : at + per] + [0] * (per - len(samples[at : at + per]))
        byte = 0
        for s in group:
            byte = (byte << depth) | s
        out.append(byte)
    return bytes(out)


def adam7_stream(rows: list[list[int]], depth: int) -> bytes:
    """The raw (unfiltered, filter type 0) Adam7 stream for one-channel sample rows."""
    height, width = len(rows), len(rows[0])
    out = bytearray()
    for x0, y0, dx, dy in ADAM7:
        if x0 >= width or y0 >= height:
            continue
        for y in range(y0, height, dy):
            out += b"\x00" + pack_row(rows[y][x0::dx], depth)
    return bytes(out)


def interlaced_grey(
    width: int, height: int, depth: int, seed: int = 1
) -> tuple[bytes, list[list[int]]]:
    rnd = random.Random(seed)
    rows = [[rnd.randrange(1 << depth) for _ in range(width)] for _ in range(height)]
    idat = zlib.compress(adam7_stream(rows, depth))
    return png_file(ihdr(width, height, depth, 0, 1), chunk(b"IDAT", idat)), rows


def reframe_png(data: bytes, edit: dict[bytes, bytes | None]) -> bytes:
    """Rebuild a PNG replacing (or dropping, with None) the first chunk of each type."""
    out, pos, done = [data[:8]], 8, set()
    while pos < len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        kind = data[pos + 4 : pos + 8]
        if kind in edit and kind not in done:
            done.add(kind)
            new = edit[kind]
            if new is not None:
                out.append(chunk(kind, new))
        else:
            out.append(data[pos : pos + 12 + length])
        pos += 12 + length
    return b"".join(out)


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the length field, data length) for each chunk."""
    found, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        found.append((data[pos + 4 : pos + 8], pos, length))
        pos += 12 + length
    return found


# --- BMP -------------------------------------------------------------------------------


def bmp_file(
    width: int,
    height: int,
    bits: int,
    pixels: bytes,
    *,
    compression: int = 0,
    palette: bytes = b"",
    header_size: int = 40,
    colours: int = 0,
    extra: bytes = b"",
    tail: bytes = b"",
) -> bytes:
    """A BMP with a 40..124-byte info header; `extra` goes after the header (masks)."""
    info = struct.pack(
        "<IiiHHIIiiII",
        header_size, width, height, 1, bits, compression, len(pixels), 2835, 2835, colours, 0,
    )  # fmt: skip
    info += bytes(header_size - 40)
    offset = 14 + len(info) + len(extra) + len(palette)
    size = offset + len(pixels) + len(tail)
    head = b"BM" + struct.pack("<III", size, 0, offset)
    return head + info + extra + palette + pixels + tail


def grey_palette(count: int) -> bytes:
    return b"".join(bytes((i * 255 // max(1, count - 1),) * 3) + b"\x00" for i in range(count))


def rle8(rows: list[list[int]]) -> bytes:
    """RLE8 stream with both encoded runs and absolute runs (bottom-up rows)."""
    out = bytearray()
    for row in reversed(rows):
        at = 0
        while at < len(row):
            run = 1
            while at + run < len(row) and row[at + run] == row[at] and run < 255:
                run += 1
            if run >= 2 or len(row) - at < 3:
                out += bytes((run, row[at]))
                at += run
            else:
                n = min(255, len(row) - at)
                out += bytes((0, n)) + bytes(row[at : at + n]) + b"\x00" * (n & 1)
                at += n
        out += b"\x00\x00"
    return bytes(out[:-2]) + b"\x00\x01"


def rle4(rows: list[list[int]]) -> bytes:
    """RLE4 stream: absolute runs of whole rows (<= 255 px) then a two-colour run."""
    out = bytearray()
    for row in reversed(rows):
        if len(row) >= 3:
            packed = pack_row(row, 4)
            out += bytes((0, len(row))) + packed + b"\x00" * (len(packed) & 1)
        else:
            for value in row:
                out += bytes((1, value << 4))
        out += b"\x00\x00"
    return bytes(out[:-2]) + b"\x00\x01"


def flat(im: Image.Image) -> list[int]:
    """Single-band samples in row order (get_flattened_data replaces getdata in Pillow 12+)."""
    getter = getattr(im, "get_flattened_data", None) or im.getdata
    values: list[int] = list(getter())
    return values


def pillow_pixels(data: bytes) -> list[int]:
    """The decoded samples (palette indices for paletted images) in row order."""
    with Image.open(io.BytesIO(data)) as im:
        return flat(im)

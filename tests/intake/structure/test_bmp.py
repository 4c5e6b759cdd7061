"""BMP: Pillow's 1/8/24/32-bit output and hand-built 4-bit, RLE8, RLE4, core, top-down,
bitfields and V5-profile files pass; size-field, offset, header and trailing-data faults fail."""

from __future__ import annotations

import io
import random
import struct

import pytest
from PIL import Image

from cache.intake.structure import Malformed, OverCap
from tests.support.structure_files import (
    bmp_file,
    cut_points,
    encode,
    pack_row,
    photo,
    pillow_pixels,
    rle4,
    rle8,
    shape_of,
)

BASE = photo((37, 23), seed=6)


def palette(count: int) -> bytes:
    """Distinct, non-grey colours, so Pillow keeps the image paletted (indices comparable)."""
    return b"".join(bytes((i * 7 % 256, 255 - i, (i * 53) % 256, 0)) for i in range(count))


def index_rows(w: int, h: int, colours: int, seed: int = 1) -> list[list[int]]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(h):
        row = [rnd.randrange(colours) for _ in range(w)]
        row[: w // 3] = [row[0]] * (w // 3)  # a run, so RLE uses encoded mode too
        rows.append(row)
    return rows


def uncompressed(rows: list[list[int]], bits: int) -> bytes:
    stride = (bits * len(rows[0]) + 31) // 32 * 4
    return b"".join(pack_row(row, bits).ljust(stride, b"\x00") for row in reversed(rows))


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA"])
def test_pillow_modes_accepted(mode: str) -> None:
    assert shape_of(encode(BASE.convert(mode), "BMP"), "BMP") == (37, 23, 1)


def test_random_sizes_accepted() -> None:
    rnd = random.Random(14)
    sizes = [(1, 1), (3000, 2000)] + [(rnd.randint(1, 900), rnd.randint(1, 900)) for _ in range(3)]
    for size in sizes:
        im = Image.new("RGB", size, (1, 2, 3)) if size[0] > 1000 else photo(size)
        for mode in ("RGB", "1"):
            assert shape_of(encode(im.convert(mode), "BMP"), "BMP") == (*size, 1)


@pytest.mark.parametrize(("w", "h"), [(1, 1), (7, 3), (8, 8), (33, 5)])
def test_four_bit_accepted_and_matches_pillow(w: int, h: int) -> None:
    rows = index_rows(w, h, 16)
    data = bmp_file(w, h, 4, uncompressed(rows, 4), palette=palette(16))
    assert shape_of(data, "BMP") == (w, h, 1)
    assert pillow_pixels(data) == [v for row in rows for v in row]


@pytest.mark.parametrize(("w", "h"), [(1, 1), (2, 3), (7, 3), (40, 9), (300, 4)])
def test_rle8_accepted_and_matches_pillow(w: int, h: int) -> None:
    rows = index_rows(w, h, 256)
    data = bmp_file(w, h, 8, rle8(rows), compression=1, palette=palette(256))
    assert shape_of(data, "BMP") == (w, h, 1)
    assert pillow_pixels(data) == [v for row in rows for v in row]


@pytest.mark.parametrize(("w", "h"), [(1, 1), (2, 2), (3, 3), (7, 3), (40, 9), (255, 2)])
def test_rle4_accepted_and_matches_pillow(w: int, h: int) -> None:
    rows = index_rows(w, h, 16)
    data = bmp_file(w, h, 4, rle4(rows), compression=2, palette=palette(16))
    assert shape_of(data, "BMP") == (w, h, 1)
    assert pillow_pixels(data) == [v for row in rows for v in row]


def test_rle_faults_refused() -> None:
    rows = index_rows(20, 4, 256)
    stream = rle8(rows)
    for bad in (stream[:-2], stream[:-2] + b"\x00\x05abc", stream + b"\x00\x00" * 40):
        data = bmp_file(20, 4, 8, bad, compression=1, palette=palette(256))
        with pytest.raises(Malformed):
            shape_of(data, "BMP")
    top_down = bmp_file(20, -4, 8, stream, compression=1, palette=palette(256))
    with pytest.raises(Malformed, match="top-down"):
        shape_of(top_down, "BMP")
    with pytest.raises(Malformed, match="compression"):
        shape_of(bmp_file(20, 4, 24, stream, compression=1), "BMP")


def test_top_down_accepted() -> None:
    rows = index_rows(9, 5, 256)
    data = bmp_file(9, -5, 8, uncompressed(rows[::-1], 8), palette=palette(256))
    assert shape_of(data, "BMP") == (9, 5, 1)
    assert pillow_pixels(data) == [v for row in rows for v in row]


def test_core_header_accepted() -> None:
    pixels = uncompressed([[1, 0, 1], [0, 1, 0]], 1)
    core = struct.pack("<IHHHH", 12, 3, 2, 1, 1) + b"\x00\x00\x00\xff\xff\xff"
    data = b"BM" + struct.pack("<III", 14 + len(core) + len(pixels), 0, 14 + len(core))
    data += core + pixels
    assert shape_of(data, "BMP") == (3, 2, 1)
    assert Image.open(io.BytesIO(data)).size == (3, 2)


@pytest.mark.parametrize(("bits", "compression", "masks"), [(16, 3, 12), (32, 3, 12), (32, 6, 16)])
def test_bitfields_accepted(bits: int, compression: int, masks: int) -> None:
    pixels = bytes(((bits * 5 + 31) // 32 * 4) * 3)
    mask_bytes = struct.pack("<4I", 0xF800, 0x07E0, 0x001F, 0)[:masks]
    data = bmp_file(5, 3, bits, pixels, compression=compression, extra=mask_bytes)
    assert shape_of(data, "BMP") == (5, 3, 1)


def _v5_with_profile(profile: bytes, start_shift: int = 0) -> bytes:
    pixels = bytes(4 * 2 * 3)
    data = bytearray(bmp_file(2, 3, 32, pixels, header_size=124, tail=profile))
    data[70:74] = b"DEBM"  # 'MBED' little-endian: the profile is embedded
    struct.pack_into("<II", data, 126, len(data) - len(profile) - 14 + start_shift, len(profile))
    return bytes(data)


def test_v5_embedded_profile_after_pixels_accepted() -> None:
    data = _v5_with_profile(b"\x00" * 500)
    assert shape_of(data, "BMP") == (2, 3, 1)
    Image.open(io.BytesIO(data)).load()
    with pytest.raises(Malformed, match="profile"):
        shape_of(_v5_with_profile(b"\x00" * 500, start_shift=10), "BMP")


def test_bf_size_must_equal_file_length() -> None:
    data = bytearray(encode(BASE, "BMP"))
    for value in (len(data) + 1, len(data) - 1, 0):
        struct.pack_into("<I", data, 2, value)
        with pytest.raises(Malformed, match="size field"):
            shape_of(bytes(data), "BMP")


@pytest.mark.parametrize("tail", [b"\x00" * 5, b"<html><script>alert(1)</script></html>"])
def test_trailing_payload_refused_even_with_matching_bf_size(tail: bytes) -> None:
    data = bytearray(encode(BASE, "BMP") + tail)
    with pytest.raises(Malformed):
        shape_of(bytes(data), "BMP")
    struct.pack_into("<I", data, 2, len(data))
    with pytest.raises(Malformed, match="follow"):
        shape_of(bytes(data), "BMP")


def test_small_padding_after_pixels_accepted() -> None:
    data = bytearray(encode(BASE, "BMP") + b"\x00\x00")
    struct.pack_into("<I", data, 2, len(data))
    assert shape_of(bytes(data), "BMP") == (37, 23, 1)


def test_truncated_everywhere_refused() -> None:
    for mode in ("RGB", "P"):
        data = encode(photo((90, 70)).convert(mode), "BMP")
        for cut in cut_points(data):
            with pytest.raises(Malformed):
                shape_of(data[:cut], "BMP")


def _patched(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(encode(BASE, "BMP"))
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "offset", "fmt", "value"),
    [
        ("header size", 14, "<I", 41),
        ("planes", 26, "<H", 2),
        ("bit depth", 28, "<H", 2),
        ("bit depth 64", 28, "<H", 64),
        ("jpeg compression", 30, "<I", 4),
        ("png compression", 30, "<I", 5),
        ("offset past end", 10, "<I", 10**6),
        ("offset in header", 10, "<I", 20),
        ("zero height", 22, "<i", 0),
        ("negative width", 18, "<i", -37),
        ("taller than the pixel array", 22, "<i", 24),
    ],
)
def test_header_faults_refused(name: str, offset: int, fmt: str, value: int) -> None:
    with pytest.raises(Malformed):
        shape_of(_patched(offset, fmt, value), "BMP")


def test_palette_must_fit_before_pixels() -> None:
    rows = index_rows(4, 4, 16)
    data = bytearray(bmp_file(4, 4, 4, uncompressed(rows, 4), palette=palette(16)))
    struct.pack_into("<I", data, 46, 17)  # 17 colours for a 4-bit image
    with pytest.raises(Malformed, match="palette"):
        shape_of(bytes(data), "BMP")


def test_huge_dimensions_refused_as_over_cap() -> None:
    for width, height in ((100_000, 100_000), (9000, 9000), (1, -(2**31))):
        data = bmp_file(width, height, 24, b"\x00" * 12)
        with pytest.raises(OverCap):
            shape_of(data, "BMP")
